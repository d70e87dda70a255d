//! The machinery behind [`export_sampler!`](crate::export_sampler): adapts a [`Sampler`] to the
//! C function table, catching panics at every entry point.

use crate::abi::{self, RawReading};
use crate::{Reading, Sampler};
use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The SDK version as a C string, for the function table.
pub const SDK_VERSION_C: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// A sampler instance plus readings that did not fit the host's buffer yet.
pub struct Instance<S> {
    sampler: S,
    pending: VecDeque<Reading>,
    scratch: Vec<Reading>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("sampler panicked: {what}")
}

/// Run `f`, turning an `Err` or a panic into a negative code and a message in `err`.
unsafe fn guarded(
    err: *mut c_char,
    err_cap: usize,
    f: impl FnOnce() -> Result<i64, String>,
) -> i64 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(n)) => n,
        Ok(Err(msg)) => {
            abi::write_c_str(&msg, err, err_cap);
            abi::ERR_FAILED
        }
        Err(p) => {
            abi::write_c_str(&panic_message(p), err, err_cap);
            abi::ERR_PANIC
        }
    }
}

/// `open` for sampler type `S`.
///
/// # Safety
/// Called by the host through the ABI with valid pointers.
pub unsafe extern "C" fn open<S: Sampler>(
    config: *const c_char,
    handle: *mut *mut c_void,
    err: *mut c_char,
    err_cap: usize,
) -> i64 {
    guarded(err, err_cap, || {
        let text = if config.is_null() {
            "{}"
        } else {
            CStr::from_ptr(config).to_str().map_err(|e| e.to_string())?
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
        let sampler = S::open(&value)?;
        let inst = Box::new(Instance {
            sampler,
            pending: VecDeque::new(),
            scratch: Vec::new(),
        });
        *handle = Box::into_raw(inst) as *mut c_void;
        Ok(0)
    })
}

/// `describe` for sampler type `S`.
///
/// # Safety
/// Called by the host through the ABI with a handle from `open`.
pub unsafe extern "C" fn describe<S: Sampler>(
    handle: *mut c_void,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
    err: *mut c_char,
    err_cap: usize,
) -> i64 {
    guarded(err, err_cap, || {
        let inst = &*(handle as *mut Instance<S>);
        let json = serde_json::to_string(&inst.sampler.channels()).map_err(|e| e.to_string())?;
        if !needed.is_null() {
            *needed = json.len() + 1;
        }
        if json.len() + 1 > cap {
            return Ok(abi::ERR_BUFFER_TOO_SMALL);
        }
        abi::write_c_str(&json, buf, cap);
        Ok(json.len() as i64)
    })
}

/// `read` for sampler type `S`.
///
/// # Safety
/// Called by the host through the ABI with a handle from `open` and `out` valid for `cap`.
pub unsafe extern "C" fn read<S: Sampler>(
    handle: *mut c_void,
    out: *mut RawReading,
    cap: usize,
    err: *mut c_char,
    err_cap: usize,
) -> i64 {
    guarded(err, err_cap, || {
        let inst = &mut *(handle as *mut Instance<S>);
        if inst.pending.is_empty() {
            inst.scratch.clear();
            inst.sampler.read(&mut inst.scratch)?;
            inst.pending.extend(inst.scratch.drain(..));
        }
        let n = inst.pending.len().min(cap);
        for (i, r) in inst.pending.drain(..n).enumerate() {
            *out.add(i) = RawReading {
                channel: r.channel,
                reserved: 0,
                timestamp_s: r.timestamp_s,
                value: r.value,
            };
        }
        Ok(n as i64)
    })
}

/// `close` for sampler type `S`.
///
/// # Safety
/// Called once by the host with a handle from `open`.
pub unsafe extern "C" fn close<S: Sampler>(handle: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(Box::from_raw(handle as *mut Instance<S>))
    }));
}

/// Export a [`Sampler`] implementation as this library's sampler, under a short name
/// (`export_sampler!(Rapl, "rapl")`).
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty, $name:literal) => {
        #[doc(hidden)]
        pub static IPW_SAMPLER_API: $crate::abi::SamplerApiV1 = $crate::abi::SamplerApiV1 {
            abi_version: $crate::abi::ABI_VERSION,
            struct_size: ::std::mem::size_of::<$crate::abi::SamplerApiV1>() as u32,
            name: concat!($name, "\0").as_ptr() as *const ::std::ffi::c_char,
            sdk_version: $crate::export::SDK_VERSION_C.as_ptr() as *const ::std::ffi::c_char,
            open: $crate::export::open::<$ty>,
            describe: $crate::export::describe::<$ty>,
            read: $crate::export::read::<$ty>,
            close: $crate::export::close::<$ty>,
        };

        /// The entry point the ipw host looks up.
        #[no_mangle]
        pub extern "C" fn ipw_sampler_api() -> *const $crate::abi::SamplerApiV1 {
            &IPW_SAMPLER_API
        }
    };
}

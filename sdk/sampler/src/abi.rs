//! The C ABI between the host and a sampler library, version 1.
//!
//! The library exports `ipw_sampler_api` (no arguments) returning a pointer to a static
//! [`SamplerApiV1`]. The host checks `abi_version` and `struct_size` before touching anything
//! else, so a later ABI can grow the struct. Strings cross the boundary as NUL-terminated UTF-8
//! written into host-owned buffers: no allocation is ever freed on the other side.
//!
//! Return values: `>= 0` success (a count or length), `< 0` failure with a message written to
//! the `err` buffer. [`ERR_PANIC`] means the plugin panicked (caught at the boundary).

use std::ffi::{c_char, c_void};

/// The ABI version this SDK implements.
pub const ABI_VERSION: u32 = 1;
/// Generic failure.
pub const ERR_FAILED: i64 = -1;
/// The plugin panicked; the message says where.
pub const ERR_PANIC: i64 = -2;
/// The output buffer is too small; call again with a larger one.
pub const ERR_BUFFER_TOO_SMALL: i64 = -3;

/// One reading as it crosses the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RawReading {
    /// Channel index.
    pub channel: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Seconds on `CLOCK_MONOTONIC`.
    pub timestamp_s: f64,
    /// Value in the channel's unit.
    pub value: f64,
}

/// The function table a sampler library exports.
#[repr(C)]
pub struct SamplerApiV1 {
    /// Must equal [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<SamplerApiV1>()` as the plugin was built.
    pub struct_size: u32,
    /// Sampler name, NUL-terminated, static.
    pub name: *const c_char,
    /// SDK version the plugin was built with, NUL-terminated, static.
    pub sdk_version: *const c_char,
    /// Open with a JSON config; on success stores a handle and returns 0.
    pub open: unsafe extern "C" fn(
        config_json: *const c_char,
        handle: *mut *mut c_void,
        err: *mut c_char,
        err_cap: usize,
    ) -> i64,
    /// Write the channel list as JSON into `buf`; returns its length, or
    /// [`ERR_BUFFER_TOO_SMALL`] with the needed length in `*needed`.
    pub describe: unsafe extern "C" fn(
        handle: *mut c_void,
        buf: *mut c_char,
        cap: usize,
        needed: *mut usize,
        err: *mut c_char,
        err_cap: usize,
    ) -> i64,
    /// Write up to `cap` readings into `out`; returns how many. Readings that did not fit are
    /// kept for the next call.
    pub read: unsafe extern "C" fn(
        handle: *mut c_void,
        out: *mut RawReading,
        cap: usize,
        err: *mut c_char,
        err_cap: usize,
    ) -> i64,
    /// Release the handle.
    pub close: unsafe extern "C" fn(handle: *mut c_void),
}

// The table is immutable static data holding only function pointers and static strings.
unsafe impl Sync for SamplerApiV1 {}

/// Copy `msg` into a C buffer of `cap` bytes, truncated and NUL-terminated.
///
/// # Safety
/// `buf` must be valid for `cap` bytes (or null).
pub unsafe fn write_c_str(msg: &str, buf: *mut c_char, cap: usize) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = msg.len().min(cap - 1);
    std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
    *buf.add(n) = 0;
}

//! Loading sampler libraries: find by name on the plugin search path, check the ABI (version,
//! struct size, entry symbol) before touching anything else, and never unload (a sampler thread
//! or a leaked pointer must never outlive its code).

use ipw_sampler_sdk::abi::{self, RawReading, SamplerApiV1, ABI_VERSION};
use ipw_sampler_sdk::Channel;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};

/// Why a sampler could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// No library of that name on the search path.
    #[error("sampler `{name}`: no {file} in {}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// Plugin name.
        name: String,
        /// File name looked for.
        file: String,
        /// Directories searched.
        searched: Vec<PathBuf>,
    },
    /// The library could not be loaded or does not fit the ABI.
    #[error("{}: {message}", path.display())]
    Library {
        /// The library.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The sampler opened but its channel list could not be had: `describe` failed, returned
    /// JSON that is not a channel list, or no channels. Its own variant so that a conformance
    /// check can tell an author which entry point is at fault.
    #[error("sampler `{name}` ({}): {message}", path.display())]
    Describe {
        /// Sampler name.
        name: String,
        /// The library.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The sampler refused to open or failed.
    #[error("sampler `{name}` ({}): {message}", path.display())]
    Plugin {
        /// Sampler name.
        name: String,
        /// The library.
        path: PathBuf,
        /// The plugin's message.
        message: String,
    },
}

/// The file name of sampler `name` on this platform: `libipw_sampler_<name>.so` etc.
pub fn library_file_name(name: &str) -> String {
    let stem = format!("ipw_sampler_{}", name.replace('-', "_"));
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Find sampler `name` in `dirs`.
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, SamplerError> {
    let file = library_file_name(name);
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| SamplerError::NotFound {
            name: name.into(),
            file,
            searched: dirs.to_vec(),
        })
}

/// A loaded, ABI-checked sampler library.
#[derive(Clone)]
pub struct SamplerLibrary {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The name it declares.
    pub name: String,
    /// The SDK version it was built with.
    pub sdk_version: String,
    api: &'static SamplerApiV1,
}

impl SamplerLibrary {
    /// Load and check a library.
    pub fn load(path: &Path) -> Result<Self, SamplerError> {
        let err = |message: String| SamplerError::Library {
            path: path.to_path_buf(),
            message,
        };
        // SAFETY: loading runs the library's initialisers; sampler libraries are trusted native
        // code by design (they read hardware counters), unlike WASM graders.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| err(format!("cannot load: {e}")))?;
        // Never unloaded: leak the handle for the life of the process.
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        let entry: libloading::Symbol<unsafe extern "C" fn() -> *const SamplerApiV1> =
            unsafe { lib.get(ipw_sampler_sdk::ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
                err(format!(
                    "not an ipw sampler: no `{}` symbol",
                    ipw_sampler_sdk::ENTRY_SYMBOL
                ))
            })?;
        let ptr = unsafe { entry() };
        if ptr.is_null() {
            return Err(err("`ipw_sampler_api` returned null".into()));
        }
        // Read only the two leading u32s until they are checked.
        let (version, size) = unsafe {
            (
                std::ptr::read(ptr as *const u32),
                std::ptr::read((ptr as *const u32).add(1)),
            )
        };
        if version != ABI_VERSION {
            return Err(err(format!("sampler ABI version {version}, this ipw speaks version {ABI_VERSION}; rebuild the plugin against ipw-sampler-sdk")));
        }
        let want = std::mem::size_of::<SamplerApiV1>() as u32;
        if size < want {
            return Err(err(format!("sampler function table is {size} bytes, ABI v{ABI_VERSION} needs {want}; the plugin is corrupt or built for another ABI")));
        }
        let api: &'static SamplerApiV1 = unsafe { &*ptr };
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            name: text(api.name),
            sdk_version: text(api.sdk_version),
            api,
        })
    }

    /// Open an instance with a JSON config and read its channel list.
    pub fn open(&self, config: &serde_json::Value) -> Result<SamplerHandle, SamplerError> {
        let plugin_err = |message: String| SamplerError::Plugin {
            name: self.name.clone(),
            path: self.path.clone(),
            message,
        };
        let config = CString::new(config.to_string()).map_err(|e| plugin_err(e.to_string()))?;
        let mut err = ErrBuf::new();
        let mut handle: *mut c_void = std::ptr::null_mut();
        let rc = unsafe { (self.api.open)(config.as_ptr(), &mut handle, err.ptr(), err.cap()) };
        if rc < 0 || handle.is_null() {
            return Err(plugin_err(err.message(rc)));
        }
        let describe_err = |message: String| SamplerError::Describe {
            name: self.name.clone(),
            path: self.path.clone(),
            message,
        };
        let mut h = SamplerHandle {
            api: self.api,
            handle,
            channels: Vec::new(),
            name: self.name.clone(),
            err: ErrBuf::new(),
        };
        let mut cap = 4096;
        let json = loop {
            let mut buf = vec![0u8; cap];
            let mut needed = 0usize;
            let rc = unsafe {
                (self.api.describe)(
                    handle,
                    buf.as_mut_ptr() as *mut c_char,
                    cap,
                    &mut needed,
                    err.ptr(),
                    err.cap(),
                )
            };
            if rc == abi::ERR_BUFFER_TOO_SMALL && needed > cap && needed < 16 << 20 {
                cap = needed;
                continue;
            }
            if rc < 0 {
                return Err(describe_err(format!("describe: {}", err.message(rc))));
            }
            buf.truncate(rc as usize);
            break String::from_utf8(buf).map_err(|e| describe_err(format!("describe: {e}")))?;
        };
        h.channels = serde_json::from_str(&json)
            .map_err(|e| describe_err(format!("describe returned bad channel JSON: {e}")))?;
        if h.channels.is_empty() {
            return Err(describe_err("no channels".into()));
        }
        Ok(h)
    }
}

/// A host-owned buffer for plugin error messages.
struct ErrBuf(Vec<u8>);

impl ErrBuf {
    fn new() -> Self {
        Self(vec![0; 1024])
    }
    fn ptr(&mut self) -> *mut c_char {
        self.0[0] = 0;
        self.0.as_mut_ptr() as *mut c_char
    }
    fn cap(&self) -> usize {
        self.0.len()
    }
    fn message(&self, rc: i64) -> String {
        let text = CStr::from_bytes_until_nul(&self.0)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (rc, text.is_empty()) {
            (_, false) => text,
            (abi::ERR_PANIC, true) => "the plugin panicked".into(),
            (rc, true) => format!("failed (code {rc})"),
        }
    }
}

/// An open sampler instance.
pub struct SamplerHandle {
    api: &'static SamplerApiV1,
    handle: *mut c_void,
    /// Its channels, as described by the plugin.
    pub channels: Vec<Channel>,
    /// Sampler name.
    pub name: String,
    /// Where a failed read's message goes, kept from read to read.
    err: ErrBuf,
}

// SAFETY: a handle is used by one thread at a time (the sampling thread owns it); the ABI
// requires instances to tolerate being moved between threads.
unsafe impl Send for SamplerHandle {}

impl SamplerHandle {
    /// Append the readings available now to `out`. Readings naming a channel that does not
    /// exist are dropped.
    pub fn read(&mut self, out: &mut Vec<RawReading>) -> Result<(), String> {
        self.read_counted(out).map(|_| ()).map_err(|e| e.message)
    }

    /// [`read`](Self::read), also saying how many readings named a channel that does not exist
    /// (dropped) and, on failure, whether the plugin panicked: the conformance check reports
    /// both, the recorder needs neither.
    pub fn read_counted(&mut self, out: &mut Vec<RawReading>) -> Result<usize, ReadFailure> {
        let mut buf = [RawReading::default(); 64];
        let err = &mut self.err;
        let mut dropped = 0;
        // Drain, bounded: a plugin that keeps producing cannot hold the thread forever.
        for _ in 0..64 {
            let rc = unsafe {
                (self.api.read)(
                    self.handle,
                    buf.as_mut_ptr(),
                    buf.len(),
                    err.ptr(),
                    err.cap(),
                )
            };
            if rc < 0 {
                return Err(ReadFailure {
                    message: err.message(rc),
                    panicked: rc == abi::ERR_PANIC,
                });
            }
            let n = (rc as usize).min(buf.len());
            let before = out.len();
            out.extend(
                buf[..n]
                    .iter()
                    .filter(|r| (r.channel as usize) < self.channels.len()),
            );
            dropped += n - (out.len() - before);
            if n < buf.len() {
                break;
            }
        }
        Ok(dropped)
    }
}

/// A `read` that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ReadFailure {
    /// The plugin's message.
    pub message: String,
    /// The plugin panicked (the SDK caught it at the boundary and returned `ERR_PANIC`).
    pub panicked: bool,
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        unsafe { (self.api.close)(self.handle) };
    }
}

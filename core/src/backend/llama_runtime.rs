//! llama.cpp's process-wide state: initialised once, its log routed to `tracing`, and its compute
//! devices listed with what their backends said while finding them (the manifest keeps that: the
//! driver and API in llama.cpp's own words).

use super::placement::{compiled_gpu_backends, ComputeDevice, DeviceKind, Inventory};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_sys_2 as sys;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

/// llama.cpp initialised, and what it found.
pub struct LlamaRuntime {
    /// The handle every model load needs.
    pub backend: LlamaBackend,
    /// The devices and the backends' own account of them.
    pub inventory: Inventory,
}

static RUNTIME: OnceLock<Result<LlamaRuntime, String>> = OnceLock::new();

/// Lines kept while the backends start (bounded: a backend that logs per kernel must not grow it).
static CAPTURE: Mutex<Option<Vec<String>>> = Mutex::new(None);
/// A line in progress (llama.cpp logs some lines in pieces).
static PARTIAL: Mutex<String> = Mutex::new(String::new());
const CAPTURE_MAX_LINES: usize = 64;

/// llama.cpp, initialised on first use. Its device list is read once here: the backends
/// enumerate their devices on first touch and log what they found.
pub fn runtime() -> Result<&'static LlamaRuntime, String> {
    RUNTIME
        .get_or_init(|| {
            // SAFETY: the callback is a plain function with no user data; setting it before
            // any other llama.cpp call means every line goes through it.
            unsafe {
                sys::ggml_log_set(Some(log_line), std::ptr::null_mut());
                sys::llama_log_set(Some(log_line), std::ptr::null_mut());
            }
            // llama.cpp's init already brings up the backends, which log their devices then.
            *CAPTURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
            let backend = LlamaBackend::init().map_err(|e| format!("llama.cpp init: {e}"))?;
            #[allow(unused_mut)] // only the Vulkan build adds to what llama.cpp says
            let mut devices = list_devices();
            #[cfg(feature = "vulkan")]
            super::vulkan_facts::annotate(&mut devices);
            let backend_log = CAPTURE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            Ok(LlamaRuntime {
                backend,
                inventory: Inventory {
                    gpu_backends: compiled_gpu_backends()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    devices,
                    backend_log,
                },
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn text(ptr: *const c_char) -> Option<String> {
    // SAFETY: llama.cpp hands out NUL-terminated strings that live as long as the device.
    (!ptr.is_null()).then(|| {
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

fn list_devices() -> Vec<ComputeDevice> {
    // SAFETY: plain queries of llama.cpp's device registry after initialisation; the props
    // struct is fully written by `ggml_backend_dev_get_props`.
    unsafe {
        (0..sys::ggml_backend_dev_count())
            .map(|i| {
                let dev = sys::ggml_backend_dev_get(i);
                let mut props: sys::ggml_backend_dev_props = std::mem::zeroed();
                sys::ggml_backend_dev_get_props(dev, &mut props);
                let reg = sys::ggml_backend_dev_backend_reg(dev);
                ComputeDevice {
                    index: i,
                    name: text(props.name).unwrap_or_default(),
                    description: text(props.description).unwrap_or_default(),
                    backend: text(sys::ggml_backend_reg_name(reg)).unwrap_or_default(),
                    kind: match props.type_ {
                        sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                        sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                        sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::Igpu,
                        _ => DeviceKind::Accel,
                    },
                    memory_total_bytes: props.memory_total as u64,
                    memory_free_bytes: props.memory_free as u64,
                    pci_bus_id: text(props.device_id).filter(|s| !s.is_empty()),
                    api_version: None,
                    driver: None,
                }
            })
            .collect()
    }
}

/// Every llama.cpp and ggml log line: to `tracing` (its chatty info level as debug), and while
/// the backends start, also kept.
unsafe extern "C" fn log_line(level: sys::ggml_log_level, msg: *const c_char, _: *mut c_void) {
    let Some(piece) = text(msg) else { return };
    let mut partial = PARTIAL.lock().unwrap_or_else(|e| e.into_inner());
    partial.push_str(&piece);
    if !partial.ends_with('\n') {
        return;
    }
    let line = std::mem::take(&mut *partial);
    drop(partial);
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    match level {
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", "{line}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama.cpp", "{line}"),
        _ => tracing::debug!(target: "llama.cpp", "{line}"),
    }
    if let Some(kept) = CAPTURE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        if kept.len() < CAPTURE_MAX_LINES {
            kept.push(line.to_string());
        }
    }
}

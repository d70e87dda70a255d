//! `amdsmi`: AMD GPUs through AMD SMI (`libamd_smi.so`), loaded at run time, so the plugin
//! builds and loads on machines without ROCm and fails only at `open`.
//!
//! Per selected GPU: `gpuN` is the board's energy accumulator (`amdsmi_get_energy_count`, in
//! units of the resolution the library reports, ~15.3 µJ), and `gpuN-power` the current socket
//! power in watts (`amdsmi_get_power_info`), telemetry that shapes the counter inside an
//! interval. `gpuN-power` exists only where the GPU reports *current* socket power (MI300-class
//! boards); Navi and MI200 report only a ~1 s average, which would smear the very steps shaping
//! is for, so those GPUs get the counter alone. `gpuN-throttle` (where the board fills the
//! throttle status of `amdsmi_get_gpu_metrics_info`) is why the GPU is slowed for power,
//! current or heat, 0 when it is not: the host flags records `throttled` from it.
//!
//! Settings: `gpus` (AMD SMI indexes, UUIDs or PCI addresses; default: the GPUs visible to HIP, see
//! [`select`]), `lib_path` (default `libamd_smi.so` on the loader path, then
//! `/opt/rocm/lib/libamd_smi.so`), `check_counter` (default true: see [`check`]),
//! `check_ms` (default 250).
//!
//! Struct layouts follow the AMD SMI 26.1 header; `amdsmi_power_info_t` of the 24.x libraries
//! (ROCm 6.2) is recognised by `amdsmi_get_lib_version` and read with its own layout.

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, pci_bus_id, Channel, ChannelKind, Domain, Reading, Sampler,
    THROTTLE_UNIT,
};
use libloading::Library;
use serde::Deserialize;
use std::ffi::{c_char, c_float, c_uint, c_void};

#[cfg(test)]
mod tests;

/// `AMDSMI_INIT_AMD_GPUS`.
const INIT_AMD_GPUS: u64 = 1 << 1;
/// `AMDSMI_STATUS_SUCCESS`.
const SUCCESS: u32 = 0;
/// `AMDSMI_STATUS_NOT_SUPPORTED`.
const NOT_SUPPORTED: u32 = 2;
/// Where ROCm installs the library when it is not on the loader path.
const ROCM_LIB: &str = "/opt/rocm/lib/libamd_smi.so";
/// Below this reported power the open check does not judge a counter: an idle reading of a
/// few watts moves the counter by too little, and the power figure is coarsest there.
const CHECK_MIN_W: f64 = 5.0;
/// The open check refuses a counter whose implied power is off the reported one by more than
/// this factor either way. Reported power is whole watts and may be a ~1 s average, so a
/// tighter bound would refuse healthy boards under changing load; a scaled counter or a wrong
/// resolution is off by 2x or more (usually by a power of 2 or 10).
const CHECK_FACTOR: f64 = 2.0;
/// `amdsmi_power_info_t` is 68 bytes in AMD SMI 24.x and 192 in 26.x: room for either.
const POWER_INFO_BYTES: usize = 256;

type InitFn = unsafe extern "C" fn(u64) -> u32;
type ShutDownFn = unsafe extern "C" fn() -> u32;
type SocketsFn = unsafe extern "C" fn(*mut u32, *mut *mut c_void) -> u32;
type ProcessorsFn = unsafe extern "C" fn(*mut c_void, *mut u32, *mut *mut c_void) -> u32;
type UuidFn = unsafe extern "C" fn(*mut c_void, *mut c_uint, *mut c_char) -> u32;
/// `amdsmi_get_gpu_device_bdf`: the PCI address packed as function:3, device:5, bus:8, domain:48.
type BdfFn = unsafe extern "C" fn(*mut c_void, *mut u64) -> u32;
type EnergyFn = unsafe extern "C" fn(*mut c_void, *mut u64, *mut c_float, *mut u64) -> u32;
type PowerInfoFn = unsafe extern "C" fn(*mut c_void, *mut u8) -> u32;
type LibVersionFn = unsafe extern "C" fn(*mut u32) -> u32;
type MetricsFn = unsafe extern "C" fn(*mut c_void, *mut u8) -> u32;

/// `amdsmi_gpu_metrics_t` grows with every release (~1.9 KB in 26.x, with partition stats):
/// room for any of them. Only the leading members are read, whose offsets have not moved.
const METRICS_BYTES: usize = 16 * 1024;
/// Offset of `throttle_status` (u32, ASIC-dependent bits) in `amdsmi_gpu_metrics_t`.
const THROTTLE_STATUS_AT: usize = 68;
/// Offset of `indep_throttle_status` (u64, ASIC-independent bits, metrics v1.3 on).
const INDEP_THROTTLE_STATUS_AT: usize = 112;

/// The functions resolved from the library; the pointers stay valid while `_lib` is loaded,
/// which is as long as this struct lives.
struct Api {
    shut_down: ShutDownFn,
    energy: EnergyFn,
    power_info: PowerInfoFn,
    /// `amdsmi_get_gpu_metrics_info`, where the library has it (throttle status).
    metrics: Option<MetricsFn>,
    /// `amdsmi_power_info_t` as AMD SMI 24.x lays it out (current, average power first).
    power_v24: bool,
    _lib: Library,
}

/// An AMD SMI processor handle: an opaque pointer the library owns.
#[derive(Clone, Copy, Debug)]
struct Handle(*mut c_void);
// SAFETY: the handle is an opaque token AMD SMI accepts from any thread; the sampler is used
// by one thread at a time (the host serialises calls).
unsafe impl Send for Handle {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    gpus: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    lib_path: Option<String>,
    #[serde(default = "yes")]
    check_counter: bool,
    #[serde(default = "check_ms")]
    check_ms: u64,
}

fn yes() -> bool {
    true
}

fn check_ms() -> u64 {
    250
}

/// One selected GPU.
struct Gpu {
    /// AMD SMI's enumeration index (sockets in order, processors in order within each).
    index: u32,
    uuid: String,
    handle: Handle,
    resolution_j: f64,
    wrap_j: Option<f64>,
    /// Current (not averaged) socket power is reported: `gpuN-power` exists.
    instant_power: bool,
    /// The throttle status is reported: `gpuN-throttle` exists.
    throttle: bool,
}

/// The sampler: the loaded library and the selected GPUs.
pub struct AmdSmi {
    gpus: Vec<Gpu>,
    api: Api,
}

/// One energy read: accumulator units, resolution (µJ), and when it was taken.
#[derive(Clone, Copy, Debug)]
struct Count {
    units: u64,
    resolution_uj: f64,
    t: f64,
}

/// Socket power from `amdsmi_get_power_info`, watts; `None` where not reported.
#[derive(Clone, Copy, Debug, Default)]
struct Power {
    current_w: Option<f64>,
    average_w: Option<f64>,
}

impl Api {
    fn load(path: &str) -> Result<Self, String> {
        // SAFETY: loading runs the library's initialisers; AMD SMI's are benign.
        let lib = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
        // SAFETY: the types are the header's signatures.
        unsafe {
            let init: InitFn = *lib.get(b"amdsmi_init\0").map_err(|e| e.to_string())?;
            let shut_down: ShutDownFn =
                *lib.get(b"amdsmi_shut_down\0").map_err(|e| e.to_string())?;
            // Every header read (24.7, 26.1) names it `amdsmi_get_energy_count`; the GPU-prefixed
            // name is accepted too in case a release renames it to match its neighbours.
            let energy: EnergyFn = match lib.get(b"amdsmi_get_energy_count\0") {
                Ok(f) => *f,
                Err(_) => *lib
                    .get(b"amdsmi_get_gpu_energy_count\0")
                    .map_err(|e| e.to_string())?,
            };
            let power_info: PowerInfoFn = *lib
                .get(b"amdsmi_get_power_info\0")
                .map_err(|e| e.to_string())?;
            let metrics: Option<MetricsFn> =
                lib.get(b"amdsmi_get_gpu_metrics_info\0").ok().map(|f| *f);
            let status = init(INIT_AMD_GPUS);
            if status != SUCCESS {
                return Err(format!(
                    "amdsmi_init failed (status {status}); is the amdgpu driver loaded and /dev/kfd readable?"
                ));
            }
            // 24.x's version struct starts with the year (24), later ones with the major
            // version (25, 26, ...). Without the function, assume the current layout.
            let power_v24 = match lib.get::<LibVersionFn>(b"amdsmi_get_lib_version\0") {
                Ok(f) => {
                    let mut v = [0u32; 16];
                    f(v.as_mut_ptr()) == SUCCESS && v[0] < 25
                }
                Err(_) => false,
            };
            Ok(Api {
                shut_down,
                energy,
                power_info,
                metrics,
                power_v24,
                _lib: lib,
            })
        }
    }

    fn count(&self, h: Handle) -> Result<Count, u32> {
        let (mut units, mut res, mut ts) = (0u64, 0f32, 0u64);
        let t = monotonic_now();
        // SAFETY: the pointers are valid for the call.
        let status = unsafe { (self.energy)(h.0, &mut units, &mut res, &mut ts) };
        if status != SUCCESS {
            return Err(status);
        }
        Ok(Count {
            units,
            resolution_uj: res as f64,
            t,
        })
    }

    fn power(&self, h: Handle) -> Power {
        // u64 backing: 8-aligned, as the 26.x struct needs.
        let mut buf = [0u64; POWER_INFO_BYTES / 8];
        // SAFETY: the buffer is larger than either layout of amdsmi_power_info_t.
        let status = unsafe { (self.power_info)(h.0, buf.as_mut_ptr() as *mut u8) };
        if status != SUCCESS {
            return Power::default();
        }
        let word = |byte: usize| {
            let b: &[u8] = bytemuck_u8(&buf);
            u32::from_ne_bytes(b[byte..byte + 4].try_into().unwrap())
        };
        let (current, average) = if self.power_v24 {
            (word(0), word(4))
        } else {
            (word(8), word(12))
        };
        // Unsupported members are UINT32_MAX (some releases fill 0xFFFF); no board draws that.
        let valid = |w: u32| (w < 0xFFFF).then_some(w as f64);
        Power {
            current_w: valid(current),
            average_w: valid(average),
        }
    }
}

impl Api {
    /// Why the GPU is slowed for power, current or heat: the ASIC-independent throttle bits
    /// (power 0-15, current 16-31, temperature 32-47, PROCHOT and others 56-63; all mean a
    /// throttle), else the ASIC-dependent ones where only those are filled; 0 = not throttled.
    /// `None` where the board reports neither (members left at all ones are unsupported).
    fn throttle(&self, h: Handle) -> Option<u64> {
        let metrics = self.metrics?;
        let mut buf = vec![0u64; METRICS_BYTES / 8];
        // SAFETY: the buffer is larger than any release's amdsmi_gpu_metrics_t.
        let status = unsafe { metrics(h.0, buf.as_mut_ptr() as *mut u8) };
        if status != SUCCESS {
            return None;
        }
        let b = bytemuck_u8(&buf);
        let indep = u64::from_ne_bytes(
            b[INDEP_THROTTLE_STATUS_AT..INDEP_THROTTLE_STATUS_AT + 8]
                .try_into()
                .ok()?,
        );
        let asic = u32::from_ne_bytes(
            b[THROTTLE_STATUS_AT..THROTTLE_STATUS_AT + 4]
                .try_into()
                .ok()?,
        );
        match (indep, asic) {
            (u64::MAX, u32::MAX) => None,
            (u64::MAX, asic) => Some(asic as u64),
            (indep, _) => Some(indep),
        }
    }
}

fn bytemuck_u8(words: &[u64]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; same memory, 8x the length.
    unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) }
}

impl Drop for Api {
    fn drop(&mut self) {
        // On the API, not the sampler, so an `open` that fails after `amdsmi_init` shuts the
        // library down too. SAFETY: initialised in `Api::load`; no handle outlives this.
        unsafe { (self.shut_down)() };
    }
}

/// Every GPU AMD SMI enumerates, in its order: (index, UUID, handle).
fn enumerate(lib: &Library) -> Result<Vec<(u32, String, Handle)>, String> {
    // SAFETY: header signatures; buffers sized from the counts the library gives.
    unsafe {
        let sockets_fn: SocketsFn = *lib
            .get(b"amdsmi_get_socket_handles\0")
            .map_err(|e| e.to_string())?;
        let processors_fn: ProcessorsFn = *lib
            .get(b"amdsmi_get_processor_handles\0")
            .map_err(|e| e.to_string())?;
        let uuid_fn: UuidFn = *lib
            .get(b"amdsmi_get_gpu_device_uuid\0")
            .map_err(|e| e.to_string())?;
        let mut n = 0u32;
        let s = sockets_fn(&mut n, std::ptr::null_mut());
        if s != SUCCESS {
            return Err(format!("cannot count sockets (status {s})"));
        }
        let mut sockets = vec![std::ptr::null_mut(); n as usize];
        let s = sockets_fn(&mut n, sockets.as_mut_ptr());
        if s != SUCCESS {
            return Err(format!("cannot list sockets (status {s})"));
        }
        sockets.truncate(n as usize);
        let mut out = Vec::new();
        for socket in sockets {
            let mut m = 0u32;
            let s = processors_fn(socket, &mut m, std::ptr::null_mut());
            if s != SUCCESS {
                return Err(format!("cannot count processors (status {s})"));
            }
            let mut procs = vec![std::ptr::null_mut(); m as usize];
            let s = processors_fn(socket, &mut m, procs.as_mut_ptr());
            if s != SUCCESS {
                return Err(format!("cannot list processors (status {s})"));
            }
            procs.truncate(m as usize);
            for p in procs {
                let index = out.len() as u32;
                let mut buf = [0 as c_char; 128];
                let mut len = buf.len() as c_uint;
                let s = uuid_fn(p, &mut len, buf.as_mut_ptr());
                if s != SUCCESS {
                    return Err(format!("GPU {index}: cannot read UUID (status {s})"));
                }
                let uuid = std::ffi::CStr::from_ptr(buf.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                out.push((index, uuid, Handle(p)));
            }
        }
        Ok(out)
    }
}

/// A `gpus` entry that is a PCI address (how samplers follow the embedded model's GPU) becomes
/// the index of the GPU at that address; any other entry is returned as it is.
fn by_pci_address(
    lib: &Library,
    all: &[(u32, String, Handle)],
    entry: &str,
) -> Result<String, String> {
    let Some(wanted) = pci_bus_id(entry) else {
        return Ok(entry.to_string());
    };
    // SAFETY: header signature; the handles come from this library's enumeration.
    let bdf_fn: BdfFn = unsafe {
        *lib.get(b"amdsmi_get_gpu_device_bdf\0").map_err(|e| {
            format!("amdsmi: `{entry}` is a PCI address, but this AMD SMI cannot read GPUs' ({e})")
        })?
    };
    let mut seen = Vec::new();
    for (index, _, handle) in all {
        let mut bdf = 0u64;
        // SAFETY: as above; `bdf` is a plain u64 out-parameter.
        if unsafe { bdf_fn(handle.0, &mut bdf) } != SUCCESS {
            continue;
        }
        let address = (
            (bdf >> 16) as u32,
            (bdf >> 8) as u8,
            ((bdf >> 3) & 0x1f) as u8,
            (bdf & 0x7) as u8,
        );
        if address == wanted {
            return Ok(index.to_string());
        }
        seen.push(format!(
            "{index}={:04x}:{:02x}:{:02x}.{}",
            address.0, address.1, address.2, address.3
        ));
    }
    Err(format!(
        "amdsmi: no GPU at PCI address `{entry}` (found: {})",
        seen.join(", ")
    ))
}

/// Does `entry` (from a setting or a visibility variable) name the GPU with `uuid`? Exact or
/// a unique-looking prefix, ignoring case; ROCm tools print ids as `GPU-<id>`, so that prefix
/// is accepted and compared without it.
fn uuid_matches(entry: &str, uuid: &str) -> bool {
    let e = entry.trim().to_ascii_lowercase();
    let u = uuid.to_ascii_lowercase();
    let bare = e.strip_prefix("gpu-").unwrap_or(&e);
    !bare.is_empty() && (u == e || u.starts_with(&e) || u.starts_with(bare))
}

/// Pick `entries` (indexes into `from`, or UUIDs) out of `from`, in the order given.
fn pick(from: &[(u32, String)], entries: &str, what: &str) -> Result<Vec<(u32, String)>, String> {
    entries
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let hit = match e.parse::<usize>() {
                Ok(i) => from.get(i),
                Err(_) => from.iter().find(|(_, u)| uuid_matches(e, u)),
            };
            hit.cloned().ok_or_else(|| {
                format!(
                    "amdsmi: {what} names `{e}`, which is not among the GPUs it indexes into ({})",
                    from.iter()
                        .enumerate()
                        .map(|(k, (i, u))| format!("{k}: GPU {i} {u}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
}

/// The GPUs to measure, from every GPU AMD SMI enumerates (`all`, by index and UUID).
///
/// - `gpus` set: exactly those, by AMD SMI index or UUID; the visibility variables are ignored
///   (an explicit list is what the user asked for).
/// - Otherwise what the model's runtime sees: `ROCR_VISIBLE_DEVICES` applies first (the ROCm
///   runtime filters the devices, by index or UUID), then `HIP_VISIBLE_DEVICES` (or, when it
///   is unset, `CUDA_VISIBLE_DEVICES`, which HIP also honours) indexes into what ROCR left:
///   `ROCR=2,3 HIP=1` is GPU 3. Unset or empty variables select everything.
///
/// Assumes AMD SMI and the ROCm runtime enumerate GPUs in the same order (both go by the KFD
/// topology on bare metal); a UUID avoids the question.
pub fn select(
    all: &[(u32, String)],
    gpus: Option<&[String]>,
    rocr: Option<&str>,
    hip: Option<&str>,
) -> Result<Vec<(u32, String)>, String> {
    if let Some(list) = gpus {
        let by_index: Vec<(u32, String)> = all.to_vec();
        return list
            .iter()
            .map(|w| {
                let w = w.trim();
                let hit = match w.parse::<u32>() {
                    Ok(i) => by_index.iter().find(|(idx, _)| *idx == i),
                    Err(_) => by_index.iter().find(|(_, u)| uuid_matches(w, u)),
                };
                hit.cloned().ok_or_else(|| {
                    format!(
                        "amdsmi: no GPU `{w}` (found: {})",
                        all.iter()
                            .map(|(i, u)| format!("{i}={u}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect();
    }
    let mut visible = all.to_vec();
    if let Some(r) = rocr.filter(|v| !v.trim().is_empty()) {
        visible = pick(&visible, r, "ROCR_VISIBLE_DEVICES")?;
    }
    if let Some(h) = hip.filter(|v| !v.trim().is_empty()) {
        visible = pick(
            &visible,
            h,
            "HIP_VISIBLE_DEVICES (after ROCR_VISIBLE_DEVICES)",
        )?;
    }
    Ok(visible)
}

/// The figures of the open check for one GPU.
#[derive(Debug, Clone, Copy)]
pub struct CheckFigures {
    /// Seconds between the two reads.
    pub dt_s: f64,
    /// Accumulator units the counter moved.
    pub units: u64,
    /// Power implied by the counter's movement, watts.
    pub implied_w: f64,
    /// Mean of the power reported at the two reads, watts.
    pub reported_w: f64,
}

/// Judge a counter against the power the GPU reports beside it. A counter stuck while the GPU
/// draws power would read every query as free; a scaled counter (firmware that counts in other
/// units than it declares, or a wrong resolution) would scale every figure. Both are refused:
/// a measurement that is wrong by a factor is worse than none.
pub fn check(name: &str, f: &CheckFigures) -> Result<(), String> {
    if f.reported_w < CHECK_MIN_W {
        return Ok(());
    }
    if f.units == 0 {
        return Err(format!(
            "amdsmi: {name}: the energy counter did not move in {:.0} ms while the GPU reported {:.0} W; its energy would read as 0 J (stuck counter; set check_counter = false to use it anyway)",
            f.dt_s * 1e3,
            f.reported_w
        ));
    }
    let ratio = f.implied_w / f.reported_w;
    if !(1.0 / CHECK_FACTOR..=CHECK_FACTOR).contains(&ratio) {
        return Err(format!(
            "amdsmi: {name}: the energy counter implies {:.1} W over {:.0} ms but the GPU reported {:.0} W ({ratio:.2}x, outside 1/{CHECK_FACTOR}..{CHECK_FACTOR}x); the counter or its declared resolution is off (set check_counter = false to use it anyway)",
            f.implied_w,
            f.dt_s * 1e3,
            f.reported_w
        ));
    }
    Ok(())
}

/// Increase of a counter that may wrap at 32 bits of units (see the wrap note in `channels`).
fn units_between(a: u64, b: u64) -> u64 {
    if b >= a {
        b - a
    } else if a <= u32::MAX as u64 {
        b + (1u64 << 32) - a
    } else {
        0
    }
}

impl Sampler for AmdSmi {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("amdsmi config: {e}"))?;
        let api = match &cfg.lib_path {
            Some(p) => Api::load(p).map_err(|e| format!("amdsmi: cannot use lib_path `{p}`: {e}"))?,
            None => Api::load("libamd_smi.so").or_else(|e1| {
                Api::load(ROCM_LIB).map_err(|e2| {
                    format!("amdsmi: cannot use `libamd_smi.so` ({e1}) nor `{ROCM_LIB}` ({e2}); install ROCm's amd-smi library or set lib_path")
                })
            })?,
        };
        let all = enumerate(&api._lib).map_err(|e| format!("amdsmi: {e}"))?;
        let wanted: Option<Vec<String>> = match &cfg.gpus {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|v| {
                        let entry = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        by_pci_address(&api._lib, &all, &entry)
                    })
                    .collect::<Result<_, String>>()?,
            ),
        };
        let env = |k: &str| std::env::var(k).ok();
        let hip = env("HIP_VISIBLE_DEVICES").or_else(|| env("CUDA_VISIBLE_DEVICES"));
        let ids: Vec<(u32, String)> = all.iter().map(|(i, u, _)| (*i, u.clone())).collect();
        let chosen = select(
            &ids,
            wanted.as_deref(),
            env("ROCR_VISIBLE_DEVICES").as_deref(),
            hip.as_deref(),
        )?;
        if chosen.is_empty() {
            return Err(
                "amdsmi: no GPUs selected (none found, or the visibility variables hide them all)"
                    .into(),
            );
        }
        let mut gpus = Vec::new();
        let mut first = Vec::new();
        for (index, uuid) in chosen {
            let handle = all[index as usize].2;
            let name = format!("GPU {index} ({uuid})");
            let c = api.count(handle).map_err(|s| {
                if s == NOT_SUPPORTED {
                    format!("amdsmi: {name} has no energy counter (NOT_SUPPORTED); a virtual function or an old board?")
                } else {
                    format!("amdsmi: {name}: cannot read the energy counter (status {s})")
                }
            })?;
            if !(c.resolution_uj.is_finite() && c.resolution_uj > 0.0) {
                return Err(format!(
                    "amdsmi: {name}: the library reports a counter resolution of {} µJ",
                    c.resolution_uj
                ));
            }
            let p = api.power(handle);
            let resolution_j = c.resolution_uj * 1e-6;
            gpus.push(Gpu {
                index,
                uuid,
                handle,
                resolution_j,
                // A value already past 32 bits proves a 64-bit accumulator; below it the
                // counter may be one of the firmware's 32-bit ones, which wrap after
                // 2^32 x ~15.3 µJ ≈ 65.5 kJ (under four minutes at 300 W).
                wrap_j: (c.units <= u32::MAX as u64).then_some(4_294_967_296.0 * resolution_j),
                instant_power: p.current_w.is_some(),
                throttle: api.throttle(handle).is_some(),
            });
            first.push((c, p));
        }
        if cfg.check_counter {
            std::thread::sleep(std::time::Duration::from_millis(cfg.check_ms));
            for (g, (c0, p0)) in gpus.iter().zip(&first) {
                let name = format!("GPU {} ({})", g.index, g.uuid);
                let c1 = api.count(g.handle).map_err(|s| {
                    format!("amdsmi: {name}: cannot read the energy counter (status {s})")
                })?;
                let p1 = api.power(g.handle);
                // Current power where reported, else the average: a check, not a measurement.
                let pick = |p: &Power| p.current_w.or(p.average_w);
                let (Some(a), Some(b)) = (pick(p0), pick(&p1)) else {
                    continue; // No power to judge against: nothing to check.
                };
                let units = units_between(c0.units, c1.units);
                let dt_s = c1.t - c0.t;
                check(
                    &name,
                    &CheckFigures {
                        dt_s,
                        units,
                        implied_w: units as f64 * g.resolution_j / dt_s,
                        reported_w: (a + b) / 2.0,
                    },
                )?;
            }
        }
        Ok(AmdSmi { gpus, api })
    }

    fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::new();
        for g in &self.gpus {
            let power = format!("gpu{}-power", g.index);
            out.push(Channel {
                name: format!("gpu{}", g.index),
                domain: Domain::Gpu,
                device: Some(g.uuid.clone()),
                kind: ChannelKind::EnergyCounter {
                    resolution_j: g.resolution_j,
                    wrap_j: g.wrap_j,
                },
                // AMD does not document the refresh; the SMU's metrics table refreshes in
                // milliseconds on recent boards. 10 ms keeps the host from reading a stale
                // value as a step of zero power.
                update_period_s: 0.01,
                // AMD declares no accuracy for these figures: none is claimed.
                accuracy: Default::default(),
                shaped_by: g.instant_power.then(|| power.clone()),
            });
            if g.instant_power {
                out.push(Channel {
                    name: power,
                    domain: Domain::Telemetry,
                    device: Some(g.uuid.clone()),
                    kind: ChannelKind::Telemetry { unit: "W".into() },
                    update_period_s: 0.01,
                    accuracy: Default::default(),
                    shaped_by: None,
                });
            }
            if g.throttle {
                out.push(Channel {
                    name: format!("gpu{}-throttle", g.index),
                    domain: Domain::Telemetry,
                    device: Some(g.uuid.clone()),
                    kind: ChannelKind::Telemetry {
                        unit: THROTTLE_UNIT.into(),
                    },
                    update_period_s: 0.01,
                    accuracy: Default::default(),
                    shaped_by: None,
                });
            }
        }
        out
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let mut ch = 0u32;
        for g in &self.gpus {
            let c = self
                .api
                .count(g.handle)
                .map_err(|s| format!("amdsmi: GPU {} energy: status {s}", g.index))?;
            out.push(Reading {
                channel: ch,
                timestamp_s: c.t,
                value: c.units as f64 * g.resolution_j,
            });
            ch += 1;
            if g.instant_power {
                // Best effort: a failed power read is left out, never a zero.
                let t = monotonic_now();
                if let Some(w) = self.api.power(g.handle).current_w {
                    out.push(Reading {
                        channel: ch,
                        timestamp_s: t,
                        value: w,
                    });
                }
                ch += 1;
            }
            if g.throttle {
                let t = monotonic_now();
                if let Some(bits) = self.api.throttle(g.handle) {
                    out.push(Reading {
                        channel: ch,
                        timestamp_s: t,
                        value: bits as f64,
                    });
                }
                ch += 1;
            }
        }
        Ok(())
    }
}

export_sampler!(AmdSmi, "amdsmi");

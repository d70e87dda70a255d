//! `nvml`: NVIDIA GPUs through NVML (nvml-wrapper).
//!
//! Per selected GPU: `gpuN` is the board's total-energy counter (millijoules since driver load,
//! the figure energy is computed from), and telemetry for timelines and context:
//! `gpuN-power` (the instant-power field, not `power_usage`, which is a 1 s average on recent
//! GPUs), `gpuN-temp`, `gpuN-mem-used`, `gpuN-sm-clock`, `gpuN-power-limit`, and
//! `gpuN-other-processes`: compute processes on the GPU other than ipw's own (queried at most
//! once a second), which the host reads as competing load, and `gpuN-throttle`: the clock event
//! reasons that mean power or heat slowed the GPU (0 when none), which flag records `throttled`.
//!
//! Settings: `gpus` (indexes, UUIDs or PCI bus ids; default: every GPU visible to CUDA, honouring
//! `CUDA_VISIBLE_DEVICES` by index or UUID), `lib_path` (default: the driver's
//! `libnvidia-ml.so.1`).

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, pci_bus_id, Accuracy, Channel, ChannelKind, Domain, Reading,
    Sampler, POWER_LIMIT_UNIT,
};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;
use serde::Deserialize;

/// `NVML_FI_DEV_POWER_INSTANT`.
const FIELD_POWER_INSTANT: u32 = 186;
/// Channels per GPU, in this order.
const PER_GPU: usize = 8;

/// The clock event reasons that mean the GPU slowed for power or heat (not idle, not an
/// application clock setting): SW power cap, HW slowdown, SW and HW thermal slowdown, HW power
/// brake.
const THROTTLE_MASK: u64 = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;

/// Process lists cost a driver call each: at most one per GPU per this many seconds.
const PROCESS_QUERY_PERIOD_S: f64 = 1.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    gpus: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    lib_path: Option<String>,
}

struct NvmlSampler {
    // Devices borrow the Nvml handle; keep indexes and look devices up per read (cheap).
    nvml: Nvml,
    gpus: Vec<(u32, String)>,
    /// When each GPU's process list was last queried.
    processes_read_at: Vec<f64>,
}

fn select(nvml: &Nvml, wanted: Option<Vec<String>>) -> Result<Vec<(u32, String)>, String> {
    let count = nvml
        .device_count()
        .map_err(|e| format!("nvml: cannot count GPUs: {e}"))?;
    let mut all = Vec::new();
    for i in 0..count {
        let uuid = nvml
            .device_by_index(i)
            .and_then(|d| d.uuid())
            .map_err(|e| format!("nvml: GPU {i}: {e}"))?;
        all.push((i, uuid));
    }
    let Some(wanted) = wanted else { return Ok(all) };
    wanted
        .iter()
        .map(|w| {
            let w = w.trim();
            let hit = match (w.parse::<u32>(), pci_bus_id(w)) {
                (Ok(i), _) => all.iter().find(|(idx, _)| *idx == i),
                (_, Some(pci)) => all.iter().find(|(idx, _)| {
                    nvml.device_by_index(*idx)
                        .and_then(|d| d.pci_info())
                        .is_ok_and(|p| pci_bus_id(&p.bus_id) == Some(pci))
                }),
                _ => all
                    .iter()
                    .find(|(_, uuid)| uuid == w || uuid.starts_with(w)),
            };
            hit.cloned().ok_or_else(|| {
                format!(
                    "nvml: no GPU `{w}` (found: {})",
                    all.iter()
                        .map(|(i, u)| format!("{i}={u}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
}

/// CUDA numbers GPUs by `CUDA_DEVICE_ORDER` (default `FASTEST_FIRST`), NVML by PCI bus. The two
/// agree when the order is `PCI_BUS_ID` or every GPU is the same model (ties go by bus id);
/// otherwise an index in `CUDA_VISIBLE_DEVICES` could name another GPU than the one that runs
/// the model, and its energy would be someone else's.
fn check_cuda_order(nvml: &Nvml, visible: &[String]) -> Result<(), String> {
    if !visible.iter().any(|v| v.parse::<u32>().is_ok()) {
        return Ok(());
    }
    if std::env::var("CUDA_DEVICE_ORDER").is_ok_and(|o| o.trim() == "PCI_BUS_ID") {
        return Ok(());
    }
    let count = nvml
        .device_count()
        .map_err(|e| format!("nvml: cannot count GPUs: {e}"))?;
    let mut names = Vec::new();
    for i in 0..count {
        names.push(
            nvml.device_by_index(i)
                .and_then(|d| d.name())
                .map_err(|e| format!("nvml: GPU {i}: {e}"))?,
        );
    }
    names.dedup();
    if names.len() <= 1 {
        return Ok(());
    }
    Err(format!(
        "nvml: CUDA_VISIBLE_DEVICES names GPUs by CUDA's index, which follows CUDA_DEVICE_ORDER (default FASTEST_FIRST) and can differ from NVML's PCI order on this machine's mixed GPUs ({}); set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs (`nvidia-smi -L`)",
        names.join(", ")
    ))
}

impl Sampler for NvmlSampler {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("nvml config: {e}"))?;
        let mut builder = Nvml::builder();
        if let Some(p) = &cfg.lib_path {
            builder.lib_path(std::ffi::OsStr::new(p));
        }
        let nvml = builder.init().map_err(|e| {
            format!("nvml: cannot initialise NVML ({e}); is an NVIDIA driver installed and loaded? (`nvidia-smi` should work)")
        })?;
        let wanted = match cfg.gpus {
            Some(list) => Some(
                list.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect(),
            ),
            None => match std::env::var("CUDA_VISIBLE_DEVICES")
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                Some(v) => {
                    let list: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                    check_cuda_order(&nvml, &list)?;
                    Some(list)
                }
                None => None,
            },
        };
        if let Some(mig) = wanted
            .iter()
            .flatten()
            .find(|w| w.trim().starts_with("MIG-"))
        {
            return Err(format!(
                "nvml: `{mig}` is a MIG instance; NVML has no energy counter per instance. Select its parent GPU by UUID (`nvidia-smi -L` lists it above the instance) and keep in mind that every instance on that GPU shares the figure"
            ));
        }
        let gpus = select(&nvml, wanted)?;
        if gpus.is_empty() {
            return Err("nvml: no GPUs selected".into());
        }
        let processes_read_at = vec![f64::NEG_INFINITY; gpus.len()];
        Ok(Self {
            nvml,
            gpus,
            processes_read_at,
        })
    }

    fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::new();
        for (i, uuid) in &self.gpus {
            let ch = |suffix: &str, domain, kind, period| Channel {
                name: format!("gpu{i}{suffix}"),
                domain,
                device: Some(uuid.clone()),
                kind,
                update_period_s: period,
                accuracy: Default::default(),
                shaped_by: None,
            };
            let telemetry = |unit: &str| ChannelKind::Telemetry { unit: unit.into() };
            out.push(Channel {
                // NVML documents its power readings as accurate to +-5% of the current draw.
                accuracy: Accuracy::relative(0.05),
                // The instant power read beside each counter read shapes the counter inside
                // an interval (a query's edges fall between two reads: there is no edge read).
                shaped_by: Some(format!("gpu{i}-power")),
                ..ch(
                    "",
                    Domain::Gpu,
                    ChannelKind::EnergyCounter {
                        resolution_j: 1e-3,
                        wrap_j: None,
                    },
                    0.02,
                )
            });
            out.push(ch("-power", Domain::Telemetry, telemetry("W"), 0.02));
            out.push(ch("-temp", Domain::Telemetry, telemetry("celsius"), 0.1));
            out.push(ch("-mem-used", Domain::Telemetry, telemetry("bytes"), 0.1));
            out.push(ch("-sm-clock", Domain::Telemetry, telemetry("MHz"), 0.1));
            out.push(ch(
                "-power-limit",
                Domain::Telemetry,
                telemetry(POWER_LIMIT_UNIT),
                1.0,
            ));
            out.push(ch(
                "-other-processes",
                Domain::Telemetry,
                telemetry(ipw_sampler_sdk::OTHER_PROCESSES_UNIT),
                PROCESS_QUERY_PERIOD_S,
            ));
            out.push(ch(
                "-throttle",
                Domain::Telemetry,
                telemetry(ipw_sampler_sdk::THROTTLE_UNIT),
                0.1,
            ));
        }
        out
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        for (g, (index, _)) in self.gpus.iter().enumerate() {
            let base = (g * PER_GPU) as u32;
            let d = self
                .nvml
                .device_by_index(*index)
                .map_err(|e| format!("nvml: GPU {index}: {e}"))?;
            let t = monotonic_now();
            let mj = d
                .total_energy_consumption()
                .map_err(|e| format!("nvml: GPU {index} energy: {e}"))?;
            out.push(Reading {
                channel: base,
                timestamp_s: t,
                value: mj as f64 * 1e-3,
            });
            // Telemetry is best effort: a field a GPU does not support is left out, not zero.
            let mut push = |offset: u32, value: Option<f64>| {
                if let Some(v) = value {
                    out.push(Reading {
                        channel: base + offset,
                        timestamp_s: monotonic_now(),
                        value: v,
                    });
                }
            };
            let instant = d
                .field_values_for(&[FieldId(FIELD_POWER_INSTANT)])
                .ok()
                .and_then(|v| v.into_iter().next());
            push(
                1,
                instant
                    .and_then(|s: Result<FieldValueSample, _>| s.ok())
                    .and_then(|s| s.value.ok())
                    .and_then(|v| match v {
                        SampleValue::U32(mw) => Some(mw as f64 * 1e-3),
                        SampleValue::U64(mw) => Some(mw as f64 * 1e-3),
                        SampleValue::F64(w) => Some(w),
                        _ => None,
                    }),
            );
            push(2, d.temperature(TemperatureSensor::Gpu).ok().map(f64::from));
            push(3, d.memory_info().ok().map(|m| m.used as f64));
            push(4, d.clock_info(Clock::SM).ok().map(f64::from));
            push(5, d.enforced_power_limit().ok().map(|mw| mw as f64 * 1e-3));
            push(
                7,
                d.current_throttle_reasons()
                    .ok()
                    .map(|r| (r.bits() & THROTTLE_MASK) as f64),
            );
            if t - self.processes_read_at[g] >= PROCESS_QUERY_PERIOD_S {
                self.processes_read_at[g] = t;
                let me = std::process::id();
                // Not supported (some boards, containers without the PID namespace): left
                // out, never read as "no other process".
                push(
                    6,
                    d.running_compute_processes()
                        .ok()
                        .map(|ps| ps.iter().filter(|p| p.pid != me).count() as f64),
                );
            }
        }
        Ok(())
    }
}

export_sampler!(NvmlSampler, "nvml");

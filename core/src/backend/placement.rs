//! Where the embedded model runs: which compute backends this build has, which devices they see,
//! and how many layers go to which GPU. The decision is a pure function of the model's settings
//! and the inventory, so it is made (and refused) before anything is measured, and the manifest
//! records the devices the model actually ran on.

use crate::config::{GpuLayers, ModelConfig, SamplerConfig};
use serde::{Deserialize, Serialize};

/// The GPU backends compiled into this build (cargo features `cuda`, `metal`, `vulkan`, `rocm`),
/// by llama.cpp's backend names. Empty: the embedded model can only run on the CPU.
pub fn compiled_gpu_backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "cuda") {
        out.push("CUDA");
    }
    if cfg!(feature = "metal") {
        out.push("Metal");
    }
    if cfg!(feature = "vulkan") {
        out.push("Vulkan");
    }
    if cfg!(feature = "rocm") {
        out.push("ROCm");
    }
    out
}

/// What kind of device llama.cpp says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The host CPU backend.
    Cpu,
    /// A discrete GPU.
    Gpu,
    /// An integrated GPU sharing host memory (Apple M-series, APUs).
    Igpu,
    /// An accelerator that helps the CPU (BLAS and the like), not one layers go to.
    Accel,
}

impl DeviceKind {
    /// Whether layers can be offloaded to it.
    pub fn takes_layers(self) -> bool {
        matches!(self, DeviceKind::Gpu | DeviceKind::Igpu)
    }
}

/// One compute device llama.cpp sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeDevice {
    /// Its index among llama.cpp's devices (what the model parameters take).
    pub index: usize,
    /// llama.cpp's name for it: `CPU`, `Vulkan0`, `CUDA1`, `MTL0`.
    pub name: String,
    /// What the driver calls it, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub description: String,
    /// The backend (API) it is driven through: `CPU`, `Vulkan`, `CUDA`, `Metal`, `ROCm`.
    pub backend: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// Its memory, bytes.
    pub memory_total_bytes: u64,
    /// Its free memory when ipw looked, bytes.
    pub memory_free_bytes: u64,
    /// Its PCI bus id (`0000:c1:00.0`) where the backend reports one: how a GPU sampler finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// The graphics/compute API version the driver offers for it (Vulkan devices: `1.3.230`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The driver that runs it, in the driver's words (`llvmpipe (Mesa 22.3.6 (LLVM 15.0.6))`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// What this build has and what it sees, once per process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// GPU backends compiled in.
    pub gpu_backends: Vec<String>,
    /// Every device llama.cpp sees, the CPU included.
    pub devices: Vec<ComputeDevice>,
    /// What the backends logged while they found their devices (driver, API version, device
    /// features, in llama.cpp's own words), kept for the manifest.
    pub backend_log: Vec<String>,
}

impl Inventory {
    /// The devices layers can go to.
    pub fn gpus(&self) -> impl Iterator<Item = &ComputeDevice> {
        self.devices.iter().filter(|d| d.kind.takes_layers())
    }
}

/// Where one embedded model's layers go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The setting as written (`None`: the default).
    pub requested: Option<GpuLayers>,
    /// The layer count given to llama.cpp (0: CPU only).
    pub gpu_layers: u32,
    /// The GPUs that hold the offloaded layers (empty: CPU only).
    pub devices: Vec<ComputeDevice>,
    /// Whether the devices were named in the experiment (then only they are given to llama.cpp).
    pub devices_named: bool,
    /// Why: which rule chose this.
    pub rule: String,
}

/// Decide where `model` runs on a machine with `inventory`. Errors (the experiment asks for a GPU
/// this build or machine does not have, or names a device nobody sees) say what to build or
/// install.
pub fn plan(model: &ModelConfig, inventory: &Inventory) -> Result<Placement, String> {
    let gpus: Vec<&ComputeDevice> = inventory.gpus().collect();
    let cpu_only = |rule: &str| Placement {
        requested: model.gpu_layers,
        gpu_layers: 0,
        devices: Vec::new(),
        devices_named: false,
        rule: rule.to_string(),
    };
    let wants_gpu = match model.gpu_layers {
        Some(GpuLayers::Count(0)) => {
            if model.devices.is_some() {
                return Err("`devices` names GPUs but `gpu_layers = 0` puts no layer on them; drop one of the two".into());
            }
            return Ok(cpu_only("gpu_layers = 0: CPU only"));
        }
        Some(_) => true,
        None => model.devices.is_some(),
    };
    if inventory.gpu_backends.is_empty() {
        if wants_gpu {
            return Err(format!(
                "{} but this ipw was built without a GPU backend; rebuild it with one: `cargo build --release --features vulkan` (or `cuda`, `metal`, `rocm`; see the README, \"GPUs for the embedded backend\"), or set `gpu_layers = 0`",
                asked(model)
            ));
        }
        return Ok(cpu_only(
            "default: this build has no GPU backend, so CPU only",
        ));
    }
    if gpus.is_empty() {
        if wants_gpu {
            return Err(format!(
                "{} but this ipw's GPU backend ({}) sees no device; install the driver ({}) or set `gpu_layers = 0`",
                asked(model),
                inventory.gpu_backends.join(", "),
                driver_hint(&inventory.gpu_backends)
            ));
        }
        return Ok(cpu_only(&format!(
            "default: the {} backend sees no GPU, so CPU only",
            inventory.gpu_backends.join(", ")
        )));
    }
    let (devices, devices_named) = match &model.devices {
        None => (gpus.into_iter().cloned().collect::<Vec<_>>(), false),
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let found = inventory
                    .devices
                    .iter()
                    .find(|d| d.name == *name || d.pci_bus_id.as_deref() == Some(name.as_str()))
                    .ok_or_else(|| {
                        format!(
                            "`devices` names `{name}`, which this machine does not have; it sees {}",
                            seen(inventory)
                        )
                    })?;
                if !found.kind.takes_layers() {
                    return Err(format!(
                        "`devices` names `{name}` ({}), which is not a GPU; layers go to GPUs only (it sees {})",
                        found.description,
                        seen(inventory)
                    ));
                }
                if !chosen.contains(found) {
                    chosen.push(found.clone());
                }
            }
            (chosen, true)
        }
    };
    let (gpu_layers, rule) = match model.gpu_layers {
        None => (
            GpuLayers::All.as_llama(),
            "default: every layer on the GPU(s) this build sees",
        ),
        Some(g) => (g.as_llama(), "gpu_layers as set"),
    };
    Ok(Placement {
        requested: model.gpu_layers,
        gpu_layers,
        devices,
        devices_named,
        rule: rule.to_string(),
    })
}

/// The GPU samplers that select GPUs by PCI bus id (their `gpus` setting).
const FOLLOWING_SAMPLERS: [&str; 2] = ["nvml", "amdsmi"];

/// Point GPU samplers (`nvml`, `amdsmi`) that were not told which GPUs to read (no `gpus`
/// setting) at the GPUs the embedded model runs on, by PCI bus id, so a model on GPU 1 of 8 is
/// measured on GPU 1 and not on all eight. Returns what was changed, for the log.
pub fn follow(samplers: &mut [SamplerConfig], placement: &Placement) -> Vec<String> {
    let ids: Vec<&str> = placement
        .devices
        .iter()
        .filter_map(|d| d.pci_bus_id.as_deref())
        .collect();
    if ids.is_empty() || ids.len() != placement.devices.len() {
        return Vec::new(); // a device without a PCI id cannot be matched: leave the default
    }
    let mut changed = Vec::new();
    for s in samplers.iter_mut() {
        let Some(plugin) = s.plugin.as_deref() else {
            continue;
        };
        if !FOLLOWING_SAMPLERS.contains(&plugin) {
            continue;
        }
        let Some(config) = s.config.as_object_mut() else {
            continue;
        };
        if config.contains_key("gpus") {
            continue;
        }
        config.insert("gpus".into(), serde_json::json!(ids));
        changed.push(format!(
            "{plugin}: gpus = {ids:?} (the embedded model's devices)"
        ));
    }
    changed
}

fn asked(model: &ModelConfig) -> String {
    match (model.gpu_layers, &model.devices) {
        (Some(g), _) => format!(
            "model `{}` asks for `gpu_layers = {}`",
            model.name,
            serde_json::to_string(&g).unwrap_or_default()
        ),
        (None, _) => format!("model `{}` names `devices`", model.name),
    }
}

fn driver_hint(backends: &[String]) -> String {
    backends
        .iter()
        .map(|b| match b.as_str() {
            "Vulkan" => "Vulkan: the GPU vendor's driver or Mesa (`mesa-vulkan-drivers`); `vulkaninfo --summary` lists devices; Mesa's software device (llvmpipe) is used only when GGML_VK_VISIBLE_DEVICES names it",
            "CUDA" => "CUDA: the NVIDIA driver; `nvidia-smi` lists GPUs",
            "ROCm" => "ROCm: the amdgpu driver and ROCm runtime; `rocm-smi` lists GPUs",
            "Metal" => "Metal: a Mac with Apple silicon",
            _ => "the backend's driver",
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn seen(inventory: &Inventory) -> String {
    if inventory.devices.is_empty() {
        return "no device".into();
    }
    inventory
        .devices
        .iter()
        .map(|d| format!("`{}` ({})", d.name, d.description))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;

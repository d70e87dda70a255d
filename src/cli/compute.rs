//! What the embedded backend can run on: the GPU backends compiled in and the devices they see
//! (shared by `ipw doctor` and `ipw list`).

use ipw_core::backend::placement::DeviceKind;

/// Print the compute backends and devices, indented under `embedded compute:`.
pub fn print() {
    let backends = ipw_core::backend::placement::compiled_gpu_backends();
    println!(
        "embedded compute: GPU backends in this build: {}",
        if backends.is_empty() {
            "none (CPU only; build with `--features vulkan`, `cuda`, `metal` or `rocm` for a GPU)"
                .to_string()
        } else {
            backends.join(", ")
        }
    );
    if !cfg!(feature = "embedded") {
        println!("  (this ipw has no embedded backend)");
        return;
    }
    match ipw_core::backend::compute_inventory() {
        Err(e) => println!("  llama.cpp cannot start: {e}"),
        Ok(inv) => {
            for d in &inv.devices {
                let kind = match d.kind {
                    DeviceKind::Cpu => "cpu",
                    DeviceKind::Gpu => "gpu",
                    DeviceKind::Igpu => "integrated gpu",
                    DeviceKind::Accel => "accelerator",
                };
                println!(
                    "  {:<10} {:<8} {:<16} {:<44} {:.1} GiB{}",
                    d.name,
                    d.backend,
                    kind,
                    d.description,
                    d.memory_total_bytes as f64 / (1u64 << 30) as f64,
                    d.pci_bus_id
                        .as_deref()
                        .map(|p| format!("  pci {p}"))
                        .unwrap_or_default()
                );
                if let (Some(api), Some(driver)) = (&d.api_version, &d.driver) {
                    println!("  {:<10} API {api}, driver {driver}", "");
                }
            }
            if inv.gpus().next().is_none() && !backends.is_empty() {
                println!(
                    "  no GPU seen: embedded models run on the CPU (`gpu_layers` > 0 is refused)"
                );
            }
        }
    }
}

//! What machine a run happened on, for the manifest: CPU model, cores, memory, OS, kernel.
//! Read from /proc and /etc on Linux; fields that cannot be read are `null`, never guessed.

pub use crate::records::HostInfo;
use std::path::Path;

impl HostInfo {
    /// Inspect this machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| {
                l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware")
            })
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let mut cores = std::collections::HashSet::new();
        let mut package = String::new();
        for line in cpuinfo.lines() {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim() {
                    "physical id" => package = v.trim().to_string(),
                    "core id" => {
                        cores.insert((package.clone(), v.trim().to_string()));
                    }
                    _ => {}
                }
            }
        }
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("PRETTY_NAME="))
                    .map(|l| l["PRETTY_NAME=".len()..].trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let read_trim = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        HostInfo {
            hostname: read_trim("/proc/sys/kernel/hostname"),
            cpu_model,
            logical_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            physical_cores: (!cores.is_empty()).then_some(cores.len()),
            memory_bytes,
            os,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            arch: std::env::consts::ARCH.to_string(),
            accelerators: accelerators(
                Path::new("/proc/driver/nvidia/gpus"),
                Path::new("/sys/class/drm"),
                std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
            ),
        }
    }
}

/// Accelerator model names, without any vendor library: NVIDIA's driver lists each GPU under
/// `/proc/driver/nvidia/gpus/<bus id>/information` (`Model: ...`), and amdgpu names its cards in
/// `/sys/class/drm/card<N>/device/product_name`. In bus-id and card order. NVIDIA GPUs are
/// only those `cuda_visible` (CUDA_VISIBLE_DEVICES) names, by UUID or index, so a task given one
/// GPU of a node is described by that GPU (an index counts in bus order, which is CUDA's order
/// under CUDA_DEVICE_ORDER=PCI_BUS_ID; a MIG name keeps every GPU listed).
fn accelerators(nvidia: &Path, drm: &Path, cuda_visible: Option<&str>) -> Vec<String> {
    let sorted = |dir: &Path| {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
    };
    let field = |info: &str, key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let gpus: Vec<(String, Option<String>)> = sorted(nvidia)
        .into_iter()
        .filter_map(|gpu| {
            let info = std::fs::read_to_string(gpu.join("information")).ok()?;
            Some((field(&info, "Model:")?, field(&info, "GPU UUID:")))
        })
        .collect();
    let mut out: Vec<String> = match cuda_visible.map(str::trim) {
        Some(v) if !v.contains("MIG-") => v
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .filter_map(|e| match e.parse::<usize>() {
                Ok(i) => gpus.get(i).map(|g| g.0.clone()),
                Err(_) => gpus
                    .iter()
                    .find(|g| g.1.as_deref().is_some_and(|u| u.starts_with(e)))
                    .map(|g| g.0.clone()),
            })
            .collect(),
        _ => gpus.into_iter().map(|g| g.0).collect(),
    };
    for card in sorted(drm) {
        let name = card.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // card0, card1: not the connectors (card0-DP-1) or render nodes.
        if name
            .strip_prefix("card")
            .is_none_or(|n| n.parse::<u32>().is_err())
        {
            continue;
        }
        if let Ok(p) = std::fs::read_to_string(card.join("device/product_name")) {
            if !p.trim().is_empty() {
                out.push(p.trim().to_string());
            }
        }
    }
    out
}

/// This process's CPU time (user + system, seconds) and peak resident memory (bytes), from
/// `getrusage`. The profiler reports its own overhead with these.
pub fn self_usage() -> (f64, u64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let max_rss = if cfg!(target_os = "macos") {
        ru.ru_maxrss as u64
    } else {
        ru.ru_maxrss as u64 * 1024
    };
    (secs(ru.ru_utime) + secs(ru.ru_stime), max_rss)
}

#[cfg(test)]
mod accelerator_tests {
    use super::accelerators;

    #[test]
    fn gpus_are_read_from_the_nvidia_and_drm_trees() {
        let root = tempfile::tempdir().unwrap();
        let nv = root.path().join("nvidia");
        for (bus, model, uuid) in [
            ("0000:41:00.0", "NVIDIA H100 80GB HBM3", "GPU-bbbb"),
            ("0000:01:00.0", "NVIDIA A100", "GPU-aaaa"),
        ] {
            std::fs::create_dir_all(nv.join(bus)).unwrap();
            std::fs::write(
                nv.join(bus).join("information"),
                format!("Model: \t\t {model}\nIRQ:   42\nGPU UUID: \t {uuid}\n"),
            )
            .unwrap();
        }
        let drm = root.path().join("drm");
        std::fs::create_dir_all(drm.join("card1/device")).unwrap();
        std::fs::write(
            drm.join("card1/device/product_name"),
            "AMD Instinct MI300X\n",
        )
        .unwrap();
        std::fs::create_dir_all(drm.join("card1-DP-1/device")).unwrap();
        std::fs::write(drm.join("card1-DP-1/device/product_name"), "not a card").unwrap();
        let amd = "AMD Instinct MI300X";
        assert_eq!(
            accelerators(&nv, &drm, None),
            ["NVIDIA A100", "NVIDIA H100 80GB HBM3", amd]
        );
        // A task given one GPU is described by that GPU, by index or UUID.
        assert_eq!(
            accelerators(&nv, &drm, Some("1")),
            ["NVIDIA H100 80GB HBM3", amd]
        );
        assert_eq!(
            accelerators(&nv, &drm, Some("GPU-aaaa")),
            ["NVIDIA A100", amd]
        );
        assert_eq!(accelerators(&nv, &drm, Some("MIG-x")).len(), 3);
        let none = root.path().join("none");
        assert!(accelerators(&none, &none, None).is_empty());
    }
}

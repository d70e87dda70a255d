//! A fake Linux powercap tree whose RAPL counters keep running (with a 20 J wrap, the way the
//! kernel's would) until dropped: stands in for RAPL hardware in the tests.

/// A running fake powercap tree.
pub struct FakePowercap {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakePowercap {
    /// Write `zones` (directory under `root`, zone name, watts) and start their counters.
    pub fn start(root: &std::path::Path, zones: &[(&'static str, &'static str, f64)]) -> Self {
        let zones = zones.to_vec();
        let range_uj: u64 = 20_000_000;
        for &(path, name, _) in &zones {
            let d = root.join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(d.join("max_energy_range_uj"), format!("{range_uj}\n")).unwrap();
            std::fs::write(d.join("energy_uj"), "0\n").unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let t = t0.elapsed().as_secs_f64();
                for &(path, _, watts) in &zones {
                    let uj = (watts * 1e6 * t) as u64 % range_uj;
                    let file = root.join(path).join("energy_uj");
                    let tmp = file.with_extension("tmp");
                    std::fs::write(&tmp, format!("{uj}\n")).unwrap();
                    std::fs::rename(&tmp, &file).unwrap(); // atomic, like a sysfs read
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakePowercap {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

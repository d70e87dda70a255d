//! `rapl`: Intel/AMD RAPL energy counters through Linux powercap.
//!
//! Channels: `package-N` and `dram-N` per socket (energy counters in joules, 1 uJ resolution,
//! wrapping at `max_energy_range_uj`). `core`, `uncore` and `psys` zones are left out: they
//! overlap the package (or the whole platform) and would double count. Zones exposed twice (the
//! MMIO interface `intel-rapl-mmio:N` mirrors `intel-rapl:N`) are read once. Settings: `root`
//! (default `/sys/class/powercap`).

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, Channel, ChannelKind, Domain, Reading, Sampler,
};
use serde::Deserialize;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_root")]
    root: PathBuf,
}

fn default_root() -> PathBuf {
    PathBuf::from("/sys/class/powercap")
}

struct Zone {
    energy_file: PathBuf,
    /// `energy_file`, kept open: a read is one `pread` at offset 0 (sysfs renders the value
    /// anew for each read from the start) instead of a path walk, an open, a read and a close.
    file: File,
    /// Not on sysfs: the file may be replaced (see [`Zone::read_uj`]).
    may_be_replaced: bool,
    channel: Channel,
}

impl Zone {
    fn open(energy_file: PathBuf, channel: Channel) -> Result<Self, String> {
        let file = File::open(&energy_file).map_err(|e| io_error(&energy_file, e))?;
        Ok(Self {
            may_be_replaced: !on_sysfs(&file),
            energy_file,
            file,
            channel,
        })
    }

    fn read_uj(&mut self) -> Result<f64, String> {
        // Outside sysfs, a file replaced since it was opened (its link count is 0) is opened
        // again: a test tree that writes each value to a new file and renames it over the old
        // one (an atomic update) does that, and the kept handle would read the old value.
        if self.may_be_replaced && self.file.metadata().map_or(true, |m| m.nlink() == 0) {
            self.file =
                File::open(&self.energy_file).map_err(|e| io_error(&self.energy_file, e))?;
        }
        let mut buf = [0u8; 32];
        let n = self
            .file
            .read_at(&mut buf, 0)
            .map_err(|e| io_error(&self.energy_file, e))?;
        let digits = buf[..n].trim_ascii();
        match std::str::from_utf8(digits)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        {
            Some(uj) => Ok(uj as f64),
            None => Err(format!(
                "{}: not a number: `{}`",
                self.energy_file.display(),
                String::from_utf8_lossy(digits)
            )),
        }
    }
}

struct Rapl {
    zones: Vec<Zone>,
}

/// Whether `file` is on sysfs, whose attribute files are never replaced.
fn on_sysfs(file: &File) -> bool {
    const SYSFS_MAGIC: u64 = 0x6265_6572;
    // SAFETY: fstatfs writes only into `st`, on a descriptor `file` keeps open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(std::os::fd::AsRawFd::as_raw_fd(file), &mut st) };
    rc == 0 && st.f_type as u64 == SYSFS_MAGIC
}

fn io_error(p: &Path, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "cannot read {}: permission denied (RAPL energy is root-only since Linux 5.10; run as root, \
             or grant read access: sudo chmod a+r /sys/class/powercap/*/energy_uj)",
            p.display()
        )
    } else {
        format!("cannot read {}: {e}", p.display())
    }
}

fn read_text(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| io_error(p, e))
}

fn parse_uj(p: &Path, t: &str) -> Result<f64, String> {
    t.parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| format!("{}: not a number: `{t}`", p.display()))
}

fn read_uj(p: &Path) -> Result<f64, String> {
    parse_uj(p, &read_text(p)?)
}

/// Socket number from a package zone directory name `intel-rapl:N` / `intel-rapl-mmio:N`.
fn socket_of(dir_name: &str) -> Option<String> {
    dir_name.split(':').nth(1).map(str::to_string)
}

impl Sampler for Rapl {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("rapl config: {e}"))?;
        let entries = std::fs::read_dir(&cfg.root).map_err(|e| {
            format!(
                "no powercap at {}: {e} (no RAPL on this machine?)",
                cfg.root.display()
            )
        })?;
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        // intel-rapl before intel-rapl-mmio, so the MSR zone wins over its MMIO mirror.
        dirs.sort_by_key(|p| (p.to_string_lossy().contains("mmio"), p.clone()));
        let mut zones: Vec<Zone> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for dir in dirs {
            let dname = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !dname.starts_with("intel-rapl") || dname.matches(':').count() != 1 {
                continue; // top-level package zones only; their dram subzones are found below
            }
            let Ok(name) = read_text(&dir.join("name")) else {
                continue;
            };
            if !name.starts_with("package") {
                continue; // psys: whole platform, overlaps everything
            }
            let socket = socket_of(&dname).unwrap_or_default();
            let mut candidates =
                vec![(dir.clone(), Domain::CpuPackage, format!("package-{socket}"))];
            if let Ok(sub) = std::fs::read_dir(&dir) {
                let mut subs: Vec<PathBuf> = sub.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                subs.sort();
                for s in subs {
                    let sname = s
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    if sname.starts_with(&format!("{dname}:"))
                        && read_text(&s.join("name")).is_ok_and(|n| n == "dram")
                    {
                        candidates.push((s, Domain::Dram, format!("dram-{socket}")));
                    }
                }
            }
            for (path, domain, channel_name) in candidates {
                if !seen.insert(channel_name.clone()) {
                    continue; // mirrored zone
                }
                let energy_file = path.join("energy_uj");
                read_uj(&energy_file)?; // fail at open, with the reason, not at every read
                let wrap = read_uj(&path.join("max_energy_range_uj"))
                    .ok()
                    .map(|uj| uj * 1e-6);
                zones.push(Zone::open(
                    energy_file,
                    Channel {
                        name: channel_name,
                        domain,
                        device: Some(format!("socket {socket}")),
                        kind: ChannelKind::EnergyCounter {
                            resolution_j: 1e-6,
                            wrap_j: wrap,
                        },
                        update_period_s: 0.001,
                        // Intel and AMD publish no error figure for RAPL.
                        accuracy: Default::default(),
                        shaped_by: None,
                    },
                )?);
            }
        }
        if zones.is_empty() {
            return Err(format!(
                "no RAPL package zones under {}",
                cfg.root.display()
            ));
        }
        Ok(Self { zones })
    }

    fn channels(&self) -> Vec<Channel> {
        self.zones.iter().map(|z| z.channel.clone()).collect()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        for (i, z) in self.zones.iter_mut().enumerate() {
            let v = z.read_uj()?;
            out.push(Reading {
                channel: i as u32,
                timestamp_s: monotonic_now(),
                value: v * 1e-6,
            });
        }
        Ok(())
    }
}

export_sampler!(Rapl, "rapl");

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Rewrite `path` in place, as sysfs renders a counter: the same file (inode), new
    /// contents from offset 0, longer or shorter than before.
    fn rewrite_in_place(path: &Path, uj: u64) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        writeln!(f, "{uj}").unwrap();
    }

    /// Read once and check the reading is `uj` microjoules (in joules, to the last bit of
    /// the conversion, so a stale or truncated digit fails).
    fn assert_reads(rapl: &mut Rapl, uj: u64) {
        let mut out = Vec::new();
        rapl.read(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        let want = uj as f64 * 1e-6;
        assert!(
            (out[0].value - want).abs() <= want * 1e-12,
            "read {} J, the file says {uj} uJ",
            out[0].value
        );
    }

    /// The production path: on sysfs a counter file is never replaced, so the plugin keeps it
    /// open and reads it with one `pread` at offset 0 each time. Here the file is rewritten in
    /// place (never replaced, so the reopen path is not taken), and then moved away: the
    /// readings follow the kept descriptor, not the path, every read from the start.
    #[test]
    fn a_counter_file_kept_open_is_read_again_from_its_start() {
        let root = tempfile::tempdir().unwrap();
        let zone = root.path().join("intel-rapl:0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("name"), "package-0\n").unwrap();
        std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n").unwrap();
        let energy = zone.join("energy_uj");
        std::fs::write(&energy, "999\n").unwrap();
        let mut rapl = Rapl::open(&serde_json::json!({ "root": root.path() })).unwrap();
        assert_reads(&mut rapl, 999);
        // Longer, then shorter (a wrap): no stale digits, no offset carried between reads.
        rewrite_in_place(&energy, 1_234_567);
        assert_reads(&mut rapl, 1_234_567);
        rewrite_in_place(&energy, 42);
        assert_reads(&mut rapl, 42);
        for uj in [43, 10_000, 10_001] {
            rewrite_in_place(&energy, uj);
            assert_reads(&mut rapl, uj);
        }
        // Moved away (still linked, so not "replaced"): the kept descriptor still reads it.
        let moved = zone.join("energy_uj.moved");
        std::fs::rename(&energy, &moved).unwrap();
        rewrite_in_place(&moved, 77_777);
        assert_reads(&mut rapl, 77_777);
    }
}

//! Files replaced whole: a reader, or a crash, sees the old file or the complete new one, never
//! a mix. Every file ipw rewrites goes through [`AtomicFile`] (or [`write_atomic`] for bytes
//! already in memory): the manifest, records, summaries, Parquet files, a merged power log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file being written to a temporary name beside its final path; [`AtomicFile::commit`]
/// syncs it, renames it over the path and syncs the directory. Dropped without a commit (an
/// error on the way), the temporary file is removed and the old file is left as it was.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Start writing what will replace `path`: a temporary file beside it, named uniquely per
    /// host, process and call (shards on several machines may write one shared file system).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut open = OpenOptions::new();
        open.write(true).create(true).truncate(true);
        Self::create_with(path, &open)
    }

    /// [`AtomicFile::create`] for a file only this user may read or write: the temporary file
    /// is new (never one someone else placed there) and has mode 0600 from its creation.
    pub fn create_private(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut open = OpenOptions::new();
        open.write(true).create_new(true).mode(0o600);
        Self::create_with(path, &open)
    }

    fn create_with(path: &Path, open: &OpenOptions) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{}: not a file path", path.display())))?
            .to_string_lossy();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().replace(['/', '.'], "_"))
                .unwrap_or_default()
        });
        let tmp = path.with_file_name(format!(
            ".{name}.{host}.{}.{}.part",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = open.open(&tmp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// The file's final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sync the data, rename it over the path, then sync the directory so the rename itself
    /// survives a power loss.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("open until committed");
        let renamed = file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
            return renamed;
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Some file systems cannot sync a directory; the data itself is already synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until committed")
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Replace `path` with `bytes` (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// [`write_atomic`] for a file only this user may read or write (see
/// [`AtomicFile::create_private`]): the WASM sandbox's compiled-code cache, which refuses on
/// reading any entry someone else could have written.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create_private(path)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".part"))
            .collect()
    }

    #[test]
    fn the_old_file_stays_until_the_commit_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomic(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "not replaced yet");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_file_dropped_without_a_commit_leaves_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomic(&path, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }
}

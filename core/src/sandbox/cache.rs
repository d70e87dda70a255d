//! Compiled components kept on disk (`.cwasm`), so a plugin is compiled once per machine and
//! engine, not once per process. An entry is used only after it is verified: the directory
//! and file belong to this user and nobody else may write them, the entry names the exact wasm
//! it was compiled from, and its payload matches its checksum.

use super::error::SandboxError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// First bytes of a cache entry: names the format, so an entry of another layout (or an old
/// bare `.cwasm`) is rejected before anything else is read.
const CACHE_MAGIC: &[u8; 16] = b"ipw-cwasm-v1\0\0\0\n";

/// Why a cache entry was not used.
#[derive(Debug, thiserror::Error)]
enum CacheReject {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is owned by uid {1}, not by this user")]
    Owner(PathBuf, u32),
    #[error("{0} is writable by group or others (mode {1:o})")]
    Writable(PathBuf, u32),
    #[error("not an ipw cache entry")]
    Magic,
    #[error("compiled from other wasm than this plugin's")]
    Source,
    #[error("payload does not match its checksum")]
    Checksum,
}

/// Refuse a cache path that someone else could have written: it must be ours and writable by
/// nobody else (a symlink is not followed, it is refused).
fn check_owned(path: &Path, want_file: bool) -> Result<(), CacheReject> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let right_kind = if want_file {
        meta.file_type().is_file()
    } else {
        meta.file_type().is_dir()
    };
    if !right_kind {
        return Err(CacheReject::NotAFile(path.into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(CacheReject::Owner(path.into(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheReject::Writable(path.into(), meta.mode() & 0o7777));
    }
    Ok(())
}

/// Where compiled components are kept, for one engine.
#[derive(Clone)]
pub(super) struct ComponentCache {
    /// `None`: no disk cache, every load compiles.
    pub(super) dir: Option<PathBuf>,
}

impl ComponentCache {
    /// The default directory: `$IPW_CACHE/wasm` or `~/.cache/ipw/wasm`.
    pub(super) fn default_dir() -> Option<PathBuf> {
        std::env::var_os("IPW_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ipw")))
            .map(|d| d.join("wasm"))
    }

    /// The entry of wasm `sha256` compiled by `engine` (entries of other engines or wasmtime
    /// versions have other names).
    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    /// A cache entry, verified: the directory and file are ours and nobody else's to write,
    /// the entry says it was compiled from exactly `source` (the wasm's sha256), and its
    /// payload matches the checksum beside it. Only then is it deserialised, from the bytes
    /// that were checked (not the file again, which could change in between).
    fn read(engine: &Engine, path: &Path, source: &[u8; 32]) -> Result<Component, CacheReject> {
        check_owned(path.parent().unwrap_or(Path::new(".")), false)?;
        check_owned(path, true)?;
        let bytes = std::fs::read(path)?;
        let header = CACHE_MAGIC.len() + 64;
        if bytes.len() < header || !bytes.starts_with(CACHE_MAGIC) {
            return Err(CacheReject::Magic);
        }
        let (from, rest) = bytes[CACHE_MAGIC.len()..].split_at(32);
        let (sum, payload) = rest.split_at(32);
        if from != source {
            return Err(CacheReject::Source);
        }
        if Sha256::digest(payload).as_slice() != sum {
            return Err(CacheReject::Checksum);
        }
        // SAFETY: wasmtime trusts serialised code; these bytes are what this user's ipw wrote
        // for this very wasm (ownership, source hash and checksum were checked above), and
        // wasmtime itself refuses an engine-incompatible payload.
        unsafe { Component::deserialize(engine, payload) }.map_err(|e| {
            CacheReject::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{e:#}"),
            ))
        })
    }

    /// Write a cache entry atomically (readers see a whole entry or none, writers never share
    /// a temporary file), readable and writable by this user only, in a directory only this
    /// user may enter.
    fn write(path: &Path, source: &[u8; 32], payload: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // Never write into a directory that would be refused on reading.
        check_owned(dir, false).map_err(std::io::Error::other)?;
        let mut entry = Vec::with_capacity(CACHE_MAGIC.len() + 64 + payload.len());
        entry.extend_from_slice(CACHE_MAGIC);
        entry.extend_from_slice(source);
        entry.extend_from_slice(&Sha256::digest(payload));
        entry.extend_from_slice(payload);
        crate::records::write_atomic_private(path, &entry)
    }

    /// The component compiled from `bytes` (whose sha256 is `source`, `sha256` in hex): from
    /// the cache when a verified entry is there, else compiled and (best effort) cached. The
    /// flag says whether it came from the cache.
    pub(super) fn component(
        &self,
        engine: &Engine,
        kind: &'static str,
        id: &str,
        bytes: &[u8],
        source: &[u8; 32],
        sha256: &str,
    ) -> Result<(Component, bool), SandboxError> {
        let compile = || {
            Component::new(engine, bytes).map_err(|e| SandboxError::Load {
                kind,
                id: id.into(),
                message: format!("not a valid component: {e:#}"),
            })
        };
        let Some(path) = self.path(engine, sha256) else {
            return compile().map(|c| (c, false));
        };
        if path.exists() {
            match Self::read(engine, &path, source) {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "not using cached component ({e}); compiling again"
                ),
            }
        }
        let component = compile()?;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(e) = Self::write(&path, source, &serialized) {
                    tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot serialise compiled component: {e:#}"),
        }
        Ok((component, false))
    }
}

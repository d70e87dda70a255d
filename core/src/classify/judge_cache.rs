//! Judge replies kept by prompt and model, so classifying the same queries again (another run
//! of the same queries, a re-classification) asks the judge nothing. One JSON-lines file per
//! judge model under `$IPW_CACHE/judge/`, appended as replies arrive; a torn last line (a
//! crash mid-write) is skipped when read.

use crate::config::ModelConfig;
use crate::sandbox::{JudgeFn, JudgeFuture};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The replies of one judge model, in memory and on disk.
pub struct JudgeCache {
    path: PathBuf,
    replies: Mutex<HashMap<String, String>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    key: String,
    reply: String,
}

/// What identifies a judge model's replies: its name, backend, file or endpoint and served
/// model (never its key). The judge asks greedily, so one prompt has one reply per model.
pub fn judge_identity(model: &ModelConfig) -> String {
    format!(
        "{}|{:?}|{}|{}|{}",
        model.name,
        model.backend,
        model
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        model.base_url.as_deref().unwrap_or(""),
        model.model.as_deref().unwrap_or("")
    )
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl JudgeCache {
    /// The cache of the judge identified by `identity` under `dir` (created if missing).
    pub fn open(dir: &Path, identity: &str) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.jsonl", &hex(identity)[..32]));
        let mut replies = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<Line>(line) {
                    replies.insert(l.key, l.reply);
                }
            }
        }
        Ok(Arc::new(Self {
            path,
            replies: Mutex::new(replies),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }))
    }

    /// `$IPW_CACHE/judge` (or `~/.cache/ipw/judge`).
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("IPW_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ipw")))
            .map(|d| d.join("judge"))
    }

    /// Prompts answered from the cache, and prompts the judge was asked, so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn get(&self, key: &str) -> Option<String> {
        self.replies.lock().expect("cache lock").get(key).cloned()
    }

    fn put(&self, key: String, reply: String) {
        let line = serde_json::to_string(&Line {
            key: key.clone(),
            reply: reply.clone(),
        })
        .expect("a line serialises");
        let mut replies = self.replies.lock().expect("cache lock");
        // Appended under the lock, one whole line per write, so concurrent replies never
        // interleave; a failed write only costs asking again next time.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            tracing::warn!(path = %self.path.display(), "cannot keep a judge reply: {e}");
        }
        replies.insert(key, reply);
    }

    /// `judge` with this cache in front: a prompt seen before is answered from the cache; a
    /// new one is asked and its reply kept (errors are not kept: the next try asks again).
    pub fn wrap(self: &Arc<Self>, judge: JudgeFn) -> JudgeFn {
        let cache = self.clone();
        Arc::new(move |prompt: String| -> JudgeFuture {
            let key = hex(&prompt);
            if let Some(reply) = cache.get(&key) {
                cache.hits.fetch_add(1, Ordering::Relaxed);
                return Box::pin(async move { Ok(reply) });
            }
            cache.misses.fetch_add(1, Ordering::Relaxed);
            let (cache, ask) = (cache.clone(), judge(prompt));
            Box::pin(async move {
                let reply = ask.await?;
                cache.put(key, reply.clone());
                Ok(reply)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_asked_once_across_caches_of_the_same_judge() {
        let dir = tempfile::tempdir().unwrap();
        let asked = Arc::new(AtomicU64::new(0));
        let counter = asked.clone();
        let judge: JudgeFn = Arc::new(move |p: String| -> JudgeFuture {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move { Ok(format!("reply to {p}")) })
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = JudgeCache::open(dir.path(), "m").unwrap();
        let j = first.wrap(judge.clone());
        assert_eq!(rt.block_on(j("a".into())).unwrap(), "reply to a");
        assert_eq!(rt.block_on(j("a".into())).unwrap(), "reply to a");
        assert_eq!((asked.load(Ordering::Relaxed), first.counts()), (1, (1, 1)));
        // Read back from disk by a new cache of the same judge; another judge asks again.
        let again = JudgeCache::open(dir.path(), "m")
            .unwrap()
            .wrap(judge.clone());
        assert_eq!(rt.block_on(again("a".into())).unwrap(), "reply to a");
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        let other = JudgeCache::open(dir.path(), "other").unwrap().wrap(judge);
        rt.block_on(other("a".into())).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 2);
    }
}

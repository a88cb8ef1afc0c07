//! Repository locks: shared for readers and writers of new data, exclusive for anything that
//! deletes (prune). A lock is an object under `locks/` refreshed while its holder runs; one
//! whose holder is gone (dead pid on this host, or not refreshed for `STALE_AFTER`) is stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use cairn_storage::{PutMode, Storage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::layout::{self, Kind};

pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl LockInfo {
    fn new(exclusive: bool) -> LockInfo {
        let now = Utc::now();
        LockInfo {
            exclusive,
            host: hostname(),
            pid: std::process::id(),
            user: username(),
            created: now,
            refreshed: now,
        }
    }

    /// Whether the holder is certainly or very probably gone.
    pub fn is_stale(&self) -> bool {
        if self.host == hostname() && !process_alive(self.pid) {
            return true;
        }
        let age = Utc::now().signed_duration_since(self.refreshed);
        age.to_std().is_ok_and(|age| age > STALE_AFTER)
    }

    pub fn describe(&self) -> String {
        let kind = if self.exclusive { "exclusive" } else { "shared" };
        format!(
            "{kind} lock of pid {} on {} (user {}) since {}",
            self.pid,
            self.host,
            self.user,
            self.created.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held lock; released (deleted) on drop.
#[derive(Debug)]
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    path: String,
    lost: Arc<AtomicBool>,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// Takes a shared or exclusive lock, removing stale locks that stand in the way.
    pub fn acquire(storage: Arc<dyn Storage>, exclusive: bool) -> Result<LockGuard> {
        check_conflicts(storage.as_ref(), exclusive, None)?;
        let id = Id::random();
        let path = layout::path(Kind::Lock, &id);
        let info = LockInfo::new(exclusive);
        storage.put(&path, Bytes::from(serde_json::to_vec(&info).unwrap_or_default()), PutMode::Overwrite)?;
        // Someone may have locked between our look and our write: look again, and back off.
        if let Err(e) = check_conflicts(storage.as_ref(), exclusive, Some(&id)) {
            let _ = storage.delete(&path);
            return Err(e);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let (storage, path, lost) = (storage.clone(), path.clone(), lost.clone());
            std::thread::spawn(move || {
                let mut info = info;
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(REFRESH_EVERY)
                {
                    // A lock removed by someone else (judged stale) is lost: the holder must stop.
                    if storage.stat(&path).is_err() {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    info.refreshed = Utc::now();
                    let body = Bytes::from(serde_json::to_vec(&info).unwrap_or_default());
                    if let Err(e) = storage.put(&path, body, PutMode::Overwrite) {
                        tracing::warn!("could not refresh lock {path}: {e}");
                    }
                }
            })
        };
        Ok(LockGuard { storage, path, lost, stop: Some(stop), refresher: Some(refresher) })
    }

    /// Fails unless the lock is still there, unchanged: checked against the storage now,
    /// not just by the refresher, so a holder whose lock was judged stale and removed never
    /// records a result that a prune may already have undermined.
    pub fn ensure_held(&self) -> Result<()> {
        let lost = || {
            RepoError::Invalid(format!(
                "lock {} was removed by another process while this one worked; nothing was recorded",
                self.path
            ))
        };
        if self.lost.load(Ordering::SeqCst) {
            return Err(lost());
        }
        match self.storage.get(&self.path) {
            Ok(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
                Ok(info) if info.pid == std::process::id() && info.host == hostname() => Ok(()),
                _ => Err(lost()),
            },
            Err(e) if e.is_not_found() => Err(lost()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Err(e) = self.storage.delete(&self.path) {
            tracing::warn!("could not remove lock {}: {e}", self.path);
        }
    }
}

/// Every lock in the repository with its id; unreadable lock objects are reported as errors.
pub fn list_locks(storage: &dyn Storage) -> Result<Vec<(Id, LockInfo)>> {
    let mut out = Vec::new();
    for meta in storage.list(layout::LOCKS) {
        let meta = meta?;
        let Some(id) = layout::id_of(Kind::Lock, &meta.path) else {
            continue;
        };
        match storage.get(&meta.path) {
            Ok(bytes) => {
                let info = serde_json::from_slice(&bytes)
                    .map_err(|e| RepoError::damaged("lock", meta.path.clone(), e.to_string()))?;
                out.push((id, info));
            }
            Err(e) if e.is_not_found() => {} // released meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn check_conflicts(storage: &dyn Storage, exclusive: bool, own: Option<&Id>) -> Result<()> {
    for (id, info) in list_locks(storage)? {
        if Some(&id) == own || !(exclusive || info.exclusive) {
            continue;
        }
        if info.is_stale() {
            tracing::warn!("removing stale {}", info.describe());
            storage.delete(&layout::path(Kind::Lock, &id))?;
            continue;
        }
        return Err(RepoError::Locked { holder: info.describe() });
    }
    Ok(())
}

/// Removes stale locks (or all locks with `all`); returns what was removed.
pub fn remove_locks(storage: &dyn Storage, all: bool) -> Result<Vec<LockInfo>> {
    let mut removed = Vec::new();
    for (id, info) in list_locks(storage)? {
        if all || info.is_stale() {
            storage.delete(&layout::path(Kind::Lock, &id))?;
            removed.push(info);
        }
    }
    Ok(removed)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn username() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

fn process_alive(pid: u32) -> bool {
    // Where /proc is missing we cannot tell, so we assume the holder lives.
    !std::path::Path::new("/proc/self").exists() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

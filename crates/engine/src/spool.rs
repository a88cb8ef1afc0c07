//! Asynchronous archiving. The server's `archive_command` (`archive-push --async`) returns as
//! soon as a background worker has stored its file; the worker opens the repository once and
//! pushes every file the server has marked ready (`archive_status/*.ready`), several at a
//! time, so that a busy server does not wait on one repository open and one upload per
//! segment. The spool directory beside the WAL (`pg_wal/cairn-spool/`) carries the outcome of
//! each push, `<file>.ok` (written only once the file is durable) or `<file>.error`, and the
//! worker's pid while it runs.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_repo::{Compression, Repository};

use crate::archive;
use crate::error::{EngineError, Result};

const WORKER_PID: &str = "worker.pid";

#[derive(Debug, Clone)]
pub struct Spool {
    /// The server's WAL directory (`%p`'s directory).
    wal_dir: PathBuf,
    dir: PathBuf,
}

impl Spool {
    pub fn new(wal_dir: &Path) -> Spool {
        Spool { wal_dir: wal_dir.to_path_buf(), dir: wal_dir.join("cairn-spool") }
    }

    /// The spool of the WAL file at `path` (`%p`).
    pub fn of_wal_file(path: &Path) -> Spool {
        Spool::new(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The outcome of pushing `name`, if the worker has one; taking it removes it.
    pub fn take_outcome(&self, name: &str) -> Option<std::result::Result<(), String>> {
        let ok = self.dir.join(format!("{name}.ok"));
        if fs::remove_file(&ok).is_ok() {
            return Some(Ok(()));
        }
        let error = self.dir.join(format!("{name}.error"));
        let message = fs::read_to_string(&error).ok()?;
        let _ = fs::remove_file(&error);
        Some(Err(message))
    }

    /// Whether a worker is running for this spool.
    pub fn worker_running(&self) -> bool {
        WorkerClaim::is_held(&self.dir, WORKER_PID)
    }

    /// Files the server has marked ready and that have no outcome yet, history files first,
    /// then in name (that is, WAL) order, as the server itself archives them.
    fn ready(&self) -> Vec<String> {
        let Ok(listing) = fs::read_dir(self.wal_dir.join("archive_status")) else { return Vec::new() };
        let mut names: Vec<String> = listing
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".ready").map(str::to_string))
            .filter(|n| {
                !self.dir.join(format!("{n}.ok")).exists() && !self.dir.join(format!("{n}.error")).exists()
            })
            .collect();
        names.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
        names
    }

    fn record(&self, name: &str, outcome: &Result<()>) -> Result<()> {
        let (suffix, text) = match outcome {
            Ok(()) => ("ok", String::new()),
            Err(e) => ("error", e.to_string()),
        };
        let path = self.dir.join(format!("{name}.{suffix}"));
        let temp = self.dir.join(format!("{name}.{suffix}.tmp"));
        fs::write(&temp, text)
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(|e| EngineError::io(format!("writing {}", path.display()), e))
    }
}

/// Being the one process doing some background work in a directory: a pid file made with
/// create-only semantics, removed on drop; one left by a dead process is taken over.
#[derive(Debug)]
pub struct WorkerClaim(PathBuf);

impl WorkerClaim {
    pub fn acquire(dir: &Path, file: &str) -> Result<Option<WorkerClaim>> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(file);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Some(WorkerClaim(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if WorkerClaim::is_held(dir, file) {
                        return Ok(None);
                    }
                    // Left by a process that died.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(EngineError::io(format!("creating {}", path.display()), e)),
            }
        }
        Ok(None)
    }

    /// Whether a live process holds the claim.
    pub fn is_held(dir: &Path, file: &str) -> bool {
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }
}

impl Drop for WorkerClaim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The worker: pushes every ready file, `jobs` at a time, recording each outcome, until none
/// is left. Returns how many files it pushed (0 if another worker runs).
pub fn push_ready(
    repo: &Repository,
    instance: &str,
    spool: &Spool,
    jobs: usize,
    compression: Compression,
) -> Result<usize> {
    let mut pushed = 0;
    loop {
        let Some(claim) = WorkerClaim::acquire(&spool.dir, WORKER_PID)? else { return Ok(pushed) };
        loop {
            let ready = spool.ready();
            if ready.is_empty() {
                break;
            }
            cairn_repo::parallel_map(&ready, jobs.max(1), |name| {
                let outcome =
                    archive::push(repo, instance, &spool.wal_dir.join(name), name, compression).map(|_| ());
                spool.record(name, &outcome)
            })?;
            pushed += ready.len();
        }
        drop(claim);
        // A file marked ready while the claim was being given up would wait for nobody.
        if spool.ready().is_empty() {
            return Ok(pushed);
        }
    }
}

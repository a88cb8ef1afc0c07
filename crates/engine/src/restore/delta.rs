//! Delta restore: a backup written over an existing data directory (a stopped cluster),
//! touching only what differs. Each file on disk is cut into chunks as the backup cut it and
//! compared by chunk id; a relation file gets only its differing chunks written in place, any
//! other differing file is rewritten whole; files the backup does not have are removed. The
//! result is the same as a clean restore.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use cairn_repo::{ChunkerKind, FileEntry, RepoError, Repository};

use crate::error::{EngineError, Result};
use crate::progress::Progress;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeltaStats {
    /// Bytes of the backup's files (as a clean restore would write).
    pub bytes_restored: u64,
    /// Bytes actually written.
    pub bytes_written: u64,
    pub files_unchanged: u64,
    pub files_removed: u64,
}

impl DeltaStats {
    pub fn add(&mut self, other: DeltaStats) {
        self.bytes_restored += other.bytes_restored;
        self.bytes_written += other.bytes_written;
        self.files_unchanged += other.files_unchanged;
        self.files_removed += other.files_removed;
    }
}

/// A file to restore: where it goes, and what it must hold.
type Target = (PathBuf, FileEntry);

/// Brings every file of `files` to the backup's content; pg_control last.
pub fn restore(
    repo: &Repository,
    files: &[Target],
    channels: usize,
    progress: &dyn Progress,
) -> Result<DeltaStats> {
    let written = AtomicU64::new(0);
    let unchanged = AtomicU64::new(0);
    let (control, rest): (Vec<&Target>, Vec<&Target>) =
        files.iter().partition(|(_, e)| e.path == "global/pg_control");
    for (batch, threads) in [(rest, channels.min(cairn_repo::MAX_READERS)), (control, 1)] {
        cairn_repo::parallel_map(&batch, threads, |(path, entry)| {
            let n = bring(repo, path, entry)?;
            if n == 0 {
                unchanged.fetch_add(1, Ordering::Relaxed);
            }
            written.fetch_add(n, Ordering::Relaxed);
            progress.advance(entry.size);
            Ok::<_, EngineError>(())
        })?;
    }
    Ok(DeltaStats {
        bytes_restored: files.iter().map(|(_, e)| e.size).sum(),
        bytes_written: written.into_inner(),
        files_unchanged: unchanged.into_inner(),
        files_removed: 0,
    })
}

/// Makes `path` hold `entry`'s content; returns the bytes written.
fn bring(repo: &Repository, path: &Path, entry: &FileEntry) -> Result<u64> {
    let io = |what: &str, e| EngineError::io(format!("{what} {}", path.display()), e);
    let relation = entry.meta.get("relation").is_some_and(|v| v == true);
    let kind = if relation { ChunkerKind::Fixed } else { ChunkerKind::ContentDefined };
    let on_disk = match File::open(path) {
        Ok(mut f) if f.metadata().is_ok_and(|m| m.is_file()) => Some(repo.chunk_ids(&mut f, kind)?),
        Ok(_) => {
            fs::remove_dir_all(path).map_err(|e| io("removing", e))?;
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", e)),
    };
    let same = |ids: &[(cairn_repo::ChunkId, usize)]| {
        ids.len() == entry.chunks.len() && ids.iter().zip(&entry.chunks).all(|((a, _), b)| a == b)
    };
    let mut written = 0u64;
    match &on_disk {
        Some(ids) if same(ids) => {}
        // Fixed chunks sit at fixed offsets: write only the ones that differ.
        Some(ids) if relation => {
            let file = OpenOptions::new().write(true).open(path).map_err(|e| io("opening", e))?;
            let step = repo.config().chunker.fixed_size as u64;
            for (i, chunk) in entry.chunks.iter().enumerate() {
                if ids.get(i).map(|(id, _)| id) != Some(chunk) {
                    let data = repo.read_chunk(chunk)?;
                    file.write_all_at(&data, i as u64 * step).map_err(|e| io("writing", e))?;
                    written += data.len() as u64;
                }
            }
            file.set_len(entry.size).map_err(|e| io("truncating", e))?;
        }
        _ => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(entry.mode & 0o7777)
                .open(path)
                .map_err(|e| io("creating", e))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            written = repo.restore_file(&entry.chunks, &mut out)?;
            out.flush().map_err(|e| io("writing", e))?;
            if written != entry.size {
                return Err(RepoError::damaged(
                    "manifest",
                    entry.path.clone(),
                    format!("restored {written} bytes, the entry says {}", entry.size),
                )
                .into());
            }
        }
    }
    let file = OpenOptions::new().write(true).open(path).map_err(|e| io("opening", e))?;
    file.set_permissions(fs::Permissions::from_mode(entry.mode & 0o7777))
        .map_err(|e| io("setting the mode of", e))?;
    file.set_modified(UNIX_EPOCH + Duration::from_nanos(entry.mtime_ns.max(0) as u64))
        .map_err(|e| io("setting the time of", e))?;
    if written > 0 {
        file.sync_all().map_err(|e| io("syncing", e))?;
    }
    Ok(written)
}

/// Removes what lies under `root` but is not in `kept` (files and directories of the backup;
/// a directory is kept when anything under it is). Returns the number of files removed.
pub fn remove_extra(root: &Path, kept: &BTreeSet<PathBuf>) -> Result<u64> {
    let mut removed = 0;
    let listing =
        fs::read_dir(root).map_err(|e| EngineError::io(format!("reading {}", root.display()), e))?;
    for item in listing {
        let path = item.map_err(|e| EngineError::io(format!("reading {}", root.display()), e))?.path();
        let wanted =
            kept.contains(&path) || kept.range(path.clone()..).next().is_some_and(|k| k.starts_with(&path));
        let is_dir = path.is_dir() && !path.is_symlink();
        if !wanted {
            let gone = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            gone.map_err(|e| EngineError::io(format!("removing {}", path.display()), e))?;
            removed += 1;
        } else if is_dir {
            removed += remove_extra(&path, kept)?;
        }
    }
    Ok(removed)
}

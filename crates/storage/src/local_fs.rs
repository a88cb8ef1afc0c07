//! Atomic, durable publication and removal of objects on a local filesystem: write a temp
//! file under `<root>/.cairn-tmp/`, fsync it, link or rename it into place, fsync the
//! directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::PutMode;

/// Directory (relative to the root) holding in-flight writes. Listing skips it; files left
/// there by a crashed or killed writer are garbage and may be removed when no writer runs.
pub(crate) const TEMP_DIR: &str = ".cairn-tmp";

/// Whether a root-relative path belongs to the storage's own bookkeeping.
pub(crate) fn is_internal(path: &str) -> bool {
    path.strip_prefix(TEMP_DIR).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Writes `data` to `root/rel` so that the object is either absent or complete, and durable
/// when this returns. `Create` publishes with `link(2)`, which fails atomically with
/// `AlreadyExists` if the target exists, so two writers can never both succeed.
pub(crate) fn put(root: &Path, rel: &str, data: &[u8], mode: PutMode) -> io::Result<()> {
    let target = root.join(rel);
    let parent = target.parent().unwrap_or(root).to_path_buf();
    let temp_dir = root.join(TEMP_DIR);
    create_dirs_durably(&temp_dir)?;
    create_dirs_durably(&parent)?;

    let (temp, file) = create_temp(&temp_dir, &target)?;
    crate::direct::write_new(&file, data)?;
    file.sync_all()?;
    drop(file);

    match mode {
        PutMode::Overwrite => fs::rename(&temp.0, &target)?,
        PutMode::Create => match fs::hard_link(&temp.0, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // Filesystems without hard links (some FUSE, SMB, exFAT mounts): fall back to
            // check-then-rename, which can race with a concurrent writer of the same path.
            Err(e) if matches!(e.kind(), io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied) => {
                if target.symlink_metadata().is_ok() {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "object exists"));
                }
                fs::rename(&temp.0, &target)?;
            }
            Err(e) => return Err(e),
        },
    }
    sync_dir(&parent)
    // `temp` drops here: removes the temp name left behind by `hard_link`.
}

/// Bytes `range` of `root/rel` into `buf` (its content replaced), with one positional read
/// on the calling thread. A range past the end is [`io::ErrorKind::UnexpectedEof`]; a
/// directory is not found.
pub(crate) fn read_range(root: &Path, rel: &str, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let file = File::open(root.join(rel))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    if range.end > meta.len() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(io::Error::other)?;
    // A reused buffer of this size is overwritten, not zeroed again.
    buf.resize(len, 0);
    let read = file.read_exact_at(buf, range.start);
    if read.is_err() {
        buf.clear();
    }
    read
}

/// Asks the kernel to start reading `range` of `root/rel` into the page cache (best effort).
pub(crate) fn will_read(root: &Path, rel: &str, range: Range<u64>) {
    // An empty length would mean "to the end of the file".
    let Some(len) = std::num::NonZeroU64::new(range.end.saturating_sub(range.start)) else { return };
    if let Ok(file) = File::open(root.join(rel)) {
        let _ = rustix::fs::fadvise(&file, range.start, Some(len), rustix::fs::Advice::WillNeed);
    }
}

/// Removes `root/rel`; an absent object (or absent root) is not an error.
pub(crate) fn delete(root: &Path, rel: &str) -> io::Result<()> {
    let target = root.join(rel);
    match fs::remove_file(&target) {
        Ok(()) => sync_dir(target.parent().unwrap_or(root)),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes its path on drop: cleans up after failed writes and after `hard_link`.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: after a rename the name is already gone.
        let _ = fs::remove_file(&self.0);
    }
}

fn create_temp(temp_dir: &Path, target: &Path) -> io::Result<(TempFile, File)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = target.file_name().and_then(|n| n.to_str()).unwrap_or("object");
    let pid = std::process::id();
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = temp_dir.join(format!("{base}.{pid}.{seq}"));
        // create_new: a leftover from a dead process with the same pid is never reused.
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((TempFile(path), file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `create_dir_all`, plus an fsync of the parent of every directory it creates, so the
/// new directory entries survive a crash together with the object put into them.
fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        cursor = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Another writer created it; it may not have fsynced the parent yet, so do it too.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let msg = format!("cannot create directory {}: a file is in the way", d.display());
                return Err(io::Error::new(io::ErrorKind::NotADirectory, msg));
            }
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Windows cannot open directories as files; NTFS journals metadata anyway.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn internal_paths() {
        assert!(is_internal(".cairn-tmp"));
        assert!(is_internal(".cairn-tmp/x.1.2"));
        assert!(!is_internal(".cairn-tmpfoo"));
        assert!(!is_internal("data/.cairn-tmp"));
    }

    #[test]
    fn put_creates_root_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b/repo");
        put(&root, "data/ab/cd", b"hello", PutMode::Create).unwrap();
        assert_eq!(fs::read(root.join("data/ab/cd")).unwrap(), b"hello");
        let err = put(&root, "data/ab/cd", b"other", PutMode::Create).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(root.join("data/ab/cd")).unwrap(), b"hello");
        put(&root, "data/ab/cd", b"other", PutMode::Overwrite).unwrap();
        assert_eq!(fs::read(root.join("data/ab/cd")).unwrap(), b"other");
        assert_eq!(fs::read_dir(root.join(TEMP_DIR)).unwrap().count(), 0);
        delete(&root, "data/ab/cd").unwrap();
        delete(&root, "data/ab/cd").unwrap();
        delete(&root, "data/ab/cd/deeper").unwrap();
        delete(&dir.path().join("missing"), "x").unwrap();
    }
}

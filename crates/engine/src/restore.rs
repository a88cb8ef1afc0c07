//! Restore: writes a backup's files into a target data directory (tablespaces and external
//! directories at their own, possibly remapped, places), refusing to overwrite anything unless
//! told to, and never into a directory where a server runs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;

use cairn_repo::{ChunkLists, EntryKind, FileEntry, ListRef, Repository};

use crate::catalog::{self, BackupInfo, BackupStatus};
use crate::error::{EngineError, Result};
use crate::progress::Progress;
use crate::recovery::{self, RecoveryOptions};

mod delta;
pub use delta::DeltaStats;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub instance: String,
    pub backup_id: Option<String>,
    pub target: PathBuf,
    pub channels: usize,
    /// `-T OLDDIR=NEWDIR`: tablespace locations to move.
    pub tablespace_mapping: Vec<(String, String)>,
    /// `--external-mapping OLDDIR=NEWDIR`.
    pub external_mapping: Vec<(String, String)>,
    pub skip_external_dirs: bool,
    /// Restore into a non-empty target, removing what is there.
    pub force: bool,
    /// Delta restore (`-I checksum`): into an existing data directory, writing only the parts
    /// of files that differ from the backup and removing files the backup does not have.
    pub delta: bool,
    /// Recover from the WAL archive to a target (without: to the backup's consistent point,
    /// from the WAL kept with the backup).
    pub recovery: Option<RecoveryOptions>,
    pub archive_mode: ArchiveMode,
}

/// Whether the restored cluster archives WAL as its source did (`--archive-mode`, pgBackRest's
/// option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveMode {
    /// Its settings as backed up: a cluster restored in its source's place goes on archiving.
    #[default]
    Preserve,
    /// `archive_mode = off`: a copy (a drill, a clone) never writes into its source's archive.
    Off,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub backup_id: String,
    pub target: String,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Delta restore: bytes actually written, files left as they were, files removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaStats>,
    /// The recovery target written for the server, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<String>,
    /// Where replay is expected to end, when the archive tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_stop_lsn: Option<cairn_pg::Lsn>,
    pub archive_mode: ArchiveMode,
}

pub fn restore(
    repo: &Repository,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    // Before choosing: a delete, merge or prune cannot then remove the backup under us.
    let _lock = cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), false)?;
    let (backup, expected_stop_lsn) = match &options.recovery {
        Some(recovery) => {
            let backups = catalog::list(repo, Some(&options.instance))?;
            let listing = crate::archive::list(repo, &options.instance)?;
            let plan = recovery::plan(
                repo,
                &options.instance,
                &listing,
                &backups,
                options.backup_id.as_deref(),
                &recovery.target,
                recovery.timeline,
            )?;
            (plan.backup, plan.stop_lsn)
        }
        None => (catalog::find(repo, &options.instance, options.backup_id.as_deref())?, None),
    };
    if !backup.record.mode.is_physical() {
        return Err(EngineError::Refused(format!(
            "backup {} is a logical dump: restore it with 'cairn restore -b LOGICAL'",
            backup.record.id
        )));
    }
    if !backup.record.status.is_restorable() || !backup.has_files {
        let (id, instance) = (&backup.record.id, &options.instance);
        let what_to_do = match backup.record.status {
            BackupStatus::Orphan => {
                format!("; it restores once 'cairn validate --instance {instance} -i {id}' finds it OK")
            }
            BackupStatus::Deleting => format!(
                "; it is being deleted: 'cairn delete --instance {instance} --status DELETING' finishes that"
            ),
            _ => String::new(),
        };
        return Err(EngineError::Refused(format!(
            "backup {id} has status {}{}{what_to_do}",
            backup.record.status,
            backup.record.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    let places = Places::new(&backup, options)?;
    // Tablespace and external directories are never emptied, even with --force: without a
    // mapping they are the source cluster's own directories.
    for dir in places.other_roots().iter().filter(|_| !options.delta) {
        prepare_target(dir, false).map_err(|e| match e {
            EngineError::Refused(reason) => EngineError::Refused(format!(
                "{reason}; tablespaces and external directories are never overwritten: move them with -T or --external-mapping OLDDIR=NEWDIR"
            )),
            other => other,
        })?;
    }
    if options.delta {
        for dir in std::iter::once(options.target.clone()).chain(places.other_roots()) {
            refuse_running_server(&dir)?;
        }
    } else {
        prepare_target(&options.target, options.force)?;
    }

    repo.load_index()?;
    let Listed { entries, lists } = Listed::read(repo, &backup)?;
    let mut files: Vec<FileToRestore> = Vec::new();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for (entry, list) in entries {
        // The tablespace links are made here, at their (remapped) places; a tablespace_map
        // would make the server relink them to the source's locations.
        if entry.path == "tablespace_map" {
            continue;
        }
        let Some(path) = places.map(&entry.path) else { continue };
        match entry.kind {
            EntryKind::Dir => {
                fs::create_dir_all(&path)
                    .map_err(|e| EngineError::io(format!("creating {}", path.display()), e))?;
                dirs.push((path, entry));
            }
            EntryKind::Symlink => {
                let target = places.symlink_target(&entry);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| EngineError::io(format!("creating {}", parent.display()), e))?;
                }
                if options.delta && path.is_symlink() {
                    fs::remove_file(&path)
                        .map_err(|e| EngineError::io(format!("replacing {}", path.display()), e))?;
                }
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| EngineError::io(format!("linking {} to {target}", path.display()), e))?;
                links.push(path);
            }
            EntryKind::File => files.push((path, entry, list)),
        }
    }
    for (path, ..) in &files {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| EngineError::io(format!("creating {}", parent.display()), e))?;
        }
    }

    let total: u64 = files.iter().map(|(_, e, _)| e.size).sum();
    progress.begin("restore", total);
    let paths: BTreeMap<&str, &Path> = files.iter().map(|(p, e, _)| (e.path.as_str(), p.as_path())).collect();
    // pg_control last: a directory left by a failed restore must not look startable.
    let (control, rest): (Vec<&FileToRestore>, Vec<&FileToRestore>) =
        files.iter().partition(|(_, e, _)| e.path == "global/pg_control");
    let create = |entry: &FileEntry| {
        let path = paths[entry.path.as_str()];
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry.mode & 0o7777)
            .open(path)
            .map_err(|e| cairn_repo::RepoError::io(format!("creating {}", path.display()), e))
    };
    // Each file gets its time once whole.
    let finish = |entry: &FileEntry, file: &File| {
        let mtime = UNIX_EPOCH + Duration::from_nanos(entry.mtime_ns.max(0) as u64);
        file.set_modified(mtime)
            .map_err(|e| cairn_repo::RepoError::io(format!("finishing {}", entry.path), e))
    };
    let advance = |n: u64| progress.advance(n);
    let (bytes, delta) = if options.delta {
        let kept: std::collections::BTreeSet<PathBuf> = files
            .iter()
            .map(|(p, ..)| p.clone())
            .chain(dirs.iter().map(|(p, _)| p.clone()))
            .chain(links.iter().cloned())
            .collect();
        let mut stats = delta::DeltaStats::default();
        for (files, channels) in [(&rest, options.channels.max(1)), (&control, 1)] {
            for batch in batches(files, |(.., list)| list.len()) {
                let targets = batch
                    .iter()
                    .map(|(path, entry, list)| Ok((path.clone(), lists.filled(entry, *list)?)))
                    .collect::<Result<Vec<_>>>()?;
                stats.add(delta::restore(repo, &targets, channels, progress)?);
            }
        }
        for root in std::iter::once(options.target.clone()).chain(places.other_roots()) {
            stats.files_removed += delta::remove_extra(&root, &kept)?;
        }
        (stats.bytes_restored, Some(stats))
    } else {
        let filled = |batch: &[&FileToRestore]| -> Result<Vec<FileEntry>> {
            batch.iter().map(|(_, entry, list)| Ok(lists.filled(entry, *list)?)).collect()
        };
        let mut bytes = 0;
        for batch in batches(&rest, |(.., list)| list.len()) {
            bytes += repo.write_files(&filled(batch)?, options.channels.max(1), create, finish, advance)?;
        }
        // Everything on disk before pg_control is: a restore cut short never looks startable.
        // Flushing is waiting on the disk, not work: many at once, after the copy. (Flushing
        // each file as soon as it was whole measured no faster.)
        let written: Vec<&Path> = rest.iter().map(|(p, ..)| p.as_path()).collect();
        cairn_repo::parallel_map(&written, 16, |path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(|e| EngineError::io(format!("flushing {}", path.display()), e))
        })?;
        let control_sync = |entry: &FileEntry, file: &File| {
            finish(entry, file)?;
            file.sync_all().map_err(|e| cairn_repo::RepoError::io(format!("flushing {}", entry.path), e))
        };
        for batch in batches(&control, |(.., list)| list.len()) {
            bytes += repo.write_files(&filled(batch)?, 1, create, control_sync, advance)?;
        }
        (bytes, None)
    };
    progress.end();
    // Directory modes last (a read-only directory could not be filled), each flushed to disk
    // so that the files' names survive a crash too.
    for (path, entry) in dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode & 0o7777))
            .map_err(|e| EngineError::io(format!("setting the mode of {}", path.display()), e))?;
        sync_dir(path)?;
    }
    let flavor = || {
        cairn_pg::Flavor::detect(backup.record.server_version, &backup.record.flavor)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    };
    if let Some(recovery) = &options.recovery {
        recovery::write_settings(&options.target, flavor()?, recovery)?;
    }
    match options.archive_mode {
        ArchiveMode::Off => recovery::disable_archiving(&options.target, flavor()?)?,
        ArchiveMode::Preserve => warn_of_a_copy_archiving(repo, options),
    }
    for root in std::iter::once(options.target.clone()).chain(places.other_roots()) {
        sync_dir(&root)?;
    }
    Ok(RestoreSummary {
        backup_id: backup.record.id,
        target: options.target.display().to_string(),
        files: files.len() as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        delta,
        recovery_target: options.recovery.as_ref().map(|r| r.target.to_string()),
        expected_stop_lsn,
        archive_mode: options.archive_mode,
    })
}

/// Warns when a restore that keeps the source's archiving settings is not into the instance's
/// own data directory: a copy started beside its source would archive into the same archive.
fn warn_of_a_copy_archiving(repo: &Repository, options: &RestoreOptions) {
    let Ok((_, instance)) = crate::instance::find(repo, &options.instance) else { return };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(&options.target, Path::new(&instance.pgdata)) {
        tracing::warn!(
            "{} is not the data directory of instance '{}' ({}): restored with its source's archive \
             settings, a copy started beside its source archives into the same archive; \
             'restore --archive-mode off' makes a copy that does not",
            options.target.display(),
            options.instance,
            instance.pgdata
        );
    }
}

/// A file to restore: where it goes, its entry (without chunks), and its chunk list.
type FileToRestore = (PathBuf, FileEntry, ListRef);

/// Chunks whose lists a restore or validation holds in memory at once: 32 MiB of ids, 128 GiB
/// of data in 128 KiB chunks. A batch's last files limit parallelism a moment, once per batch.
const BATCH_CHUNKS: usize = 1 << 20;

/// A backup's entries, in order, each without its chunk list, which waits in `lists`.
pub(crate) struct Listed {
    pub entries: Vec<(FileEntry, ListRef)>,
    pub lists: ChunkLists,
}

impl Listed {
    /// The repository's index must be loaded.
    pub fn read(repo: &Repository, backup: &BackupInfo) -> Result<Listed> {
        let mut lists = ChunkLists::new()?;
        let mut entries = Vec::new();
        let manifest = repo.load_manifest(&backup.manifest)?;
        repo.for_each_entry(&backup.manifest, &manifest, &mut |mut entry| {
            let list = lists.push(&std::mem::take(&mut entry.chunks))?;
            entries.push((entry, list));
            Ok(())
        })?;
        Ok(Listed { entries, lists })
    }
}

/// `items` in consecutive batches of about [`BATCH_CHUNKS`] chunks (at least one item each).
pub(crate) fn batches<T>(items: &[T], chunks: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    batches_of(items, chunks, BATCH_CHUNKS)
}

fn batches_of<T>(items: &[T], chunks: impl Fn(&T) -> usize, max_chunks: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut end, mut held) = (0, 0);
        while end < rest.len() && (end == 0 || held < max_chunks) {
            held += chunks(&rest[end]);
            end += 1;
        }
        let (batch, after) = rest.split_at(end);
        rest = after;
        Some(batch)
    })
}

/// Every entry of a backup, in order. The repository's index must be loaded.
pub fn entries_of(repo: &Repository, backup: &BackupInfo) -> Result<Vec<FileEntry>> {
    let manifest = repo.load_manifest(&backup.manifest)?;
    let mut entries = Vec::new();
    repo.for_each_entry(&backup.manifest, &manifest, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    Ok(entries)
}

fn refuse_running_server(dir: &Path) -> Result<()> {
    match running_postmaster(dir) {
        Some(pid) => Err(EngineError::Refused(format!(
            "a PostgreSQL server (pid {pid}) is running in {}; stop it first",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Refuses a target where a server runs, or one that is not empty (unless `force`, which
/// empties it). Creates it if missing, with the mode PostgreSQL insists on.
fn prepare_target(dir: &Path, force: bool) -> Result<()> {
    refuse_running_server(dir)?;
    match fs::read_dir(dir) {
        Ok(mut listing) => {
            if listing.next().is_some() {
                if !force {
                    return Err(EngineError::Refused(format!(
                        "{} is not empty; restore into an empty directory, or give --force to replace its contents",
                        dir.display()
                    )));
                }
                for item in
                    fs::read_dir(dir).map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?
                {
                    let path =
                        item.map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?.path();
                    let removed = if path.is_dir() && !path.is_symlink() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    removed.map_err(|e| EngineError::io(format!("removing {}", path.display()), e))?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        }
        Err(e) => return Err(EngineError::io(format!("reading {}", dir.display()), e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| EngineError::io(format!("setting the mode of {}", dir.display()), e))
}

/// The pid in `dir/postmaster.pid`, if that process is alive.
fn running_postmaster(dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(format!("syncing {}", dir.display()), e))
}

/// Where each backed-up path goes.
struct Places {
    target: PathBuf,
    /// Tablespace oid -> restore location.
    tablespaces: BTreeMap<u32, PathBuf>,
    /// External directory number -> restore location (absent when skipped).
    externals: BTreeMap<usize, PathBuf>,
}

impl Places {
    fn new(backup: &BackupInfo, options: &RestoreOptions) -> Result<Places> {
        let remap = |mapping: &[(String, String)], old: &str| -> PathBuf {
            let old_norm = old.trim_end_matches('/');
            mapping
                .iter()
                .find(|(from, _)| from.trim_end_matches('/') == old_norm)
                .map_or_else(|| PathBuf::from(old), |(_, to)| PathBuf::from(to))
        };
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        for (from, _) in &options.tablespace_mapping {
            if !backup.record.tablespaces.iter().any(|t| same(&t.location, from)) {
                return Err(EngineError::Invalid(format!(
                    "-T {from}=...: the backup has no tablespace at {from}"
                )));
            }
        }
        for (from, _) in &options.external_mapping {
            if !backup.record.external_dirs.iter().any(|d| same(d, from)) {
                return Err(EngineError::Invalid(format!(
                    "--external-mapping {from}=...: the backup has no external directory {from}"
                )));
            }
        }
        let tablespaces = backup
            .record
            .tablespaces
            .iter()
            .map(|t| (t.oid, remap(&options.tablespace_mapping, &t.location)))
            .collect();
        let externals = if options.skip_external_dirs {
            BTreeMap::new()
        } else {
            backup
                .record
                .external_dirs
                .iter()
                .enumerate()
                .map(|(n, d)| (n + 1, remap(&options.external_mapping, d)))
                .collect()
        };
        Ok(Places { target: options.target.clone(), tablespaces, externals })
    }

    /// Directories outside the target that the restore fills.
    fn other_roots(&self) -> Vec<PathBuf> {
        self.tablespaces.values().chain(self.externals.values()).cloned().collect()
    }

    fn map(&self, path: &str) -> Option<PathBuf> {
        // External directories sit at `external/<n>/...`, numbered from 1 (the walk's layout).
        if let Some(rest) =
            path.strip_prefix(cairn_pg::datadir::EXTERNAL_PREFIX).and_then(|p| p.strip_prefix('/'))
        {
            let (n, inner) = rest.split_once('/').unwrap_or((rest, ""));
            let root = self.externals.get(&n.parse().ok()?)?;
            return Some(if inner.is_empty() { root.clone() } else { root.join(inner) });
        }
        if let Some(rest) = path.strip_prefix("pg_tblspc/") {
            if let Some((oid, inner)) = rest.split_once('/') {
                if let Some(root) = oid.parse().ok().and_then(|oid: u32| self.tablespaces.get(&oid)) {
                    return Some(root.join(inner));
                }
            }
        }
        Some(self.target.join(path))
    }

    /// A tablespace link points at its (remapped) location; other links as they were.
    fn symlink_target(&self, entry: &FileEntry) -> String {
        let oid = entry.path.strip_prefix("pg_tblspc/").and_then(|o| o.parse::<u32>().ok());
        match oid.and_then(|oid| self.tablespaces.get(&oid)) {
            Some(location) => location.display().to_string(),
            None => entry.target.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_every_item_once_in_order() {
        let chunks = [0, 3, 6, 9, 12, 15, 18, 25];
        let batches: Vec<&[usize]> = batches_of(&chunks, |n| *n, 10).collect();
        // 0+3+6+9 reach 10 only with the fourth; a batch holds one item at least.
        assert_eq!(batches, vec![&[0, 3, 6, 9][..], &[12], &[15], &[18], &[25]]);
        assert_eq!(batches_of(&[] as &[usize], |n| *n, 10).count(), 0);
    }

    #[test]
    fn listed_entries_get_their_chunks_back() {
        let mut lists = ChunkLists::new().unwrap();
        let chunks: Vec<cairn_repo::ChunkId> =
            (0..5u32).map(|c| cairn_repo::Id::of_object(&c.to_le_bytes())).collect();
        let entry = FileEntry::file("f", 0o600, 0, 0, Vec::new());
        let list = lists.push(&chunks).unwrap();
        assert_eq!(lists.filled(&entry, list).unwrap(), FileEntry { chunks, ..entry });
    }
}

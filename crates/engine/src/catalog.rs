//! The catalog of backups: each backup is a manifest of kind `backup` whose metadata is a
//! [`BackupRecord`]. A backup in progress is announced by a record without files (status
//! RUNNING) that the finished backup replaces; one left behind by a dead process is ERROR.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use cairn_pg::{Lsn, TimelineId};
use cairn_repo::{Id, Repository, WriteStats, Writer};

use crate::error::{EngineError, Result};

pub const KIND: &str = "backup";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackupMode {
    #[default]
    Full,
    /// Reads only the files changed since its parent (size or modification time); every
    /// other file's chunks are the parent's. Restores on its own, like a full backup.
    Delta,
    /// A dump taken by the server's dump tool (docs/format.md §9): restored with pg_restore,
    /// never a parent, never a starting point for WAL replay.
    Logical,
}

impl BackupMode {
    /// A copy of the data directory (FULL or DELTA), as opposed to a logical dump.
    pub fn is_physical(self) -> bool {
        self != BackupMode::Logical
    }
}

/// gs_probackup's statuses (docs/format.md §9 says what each means in cairn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackupStatus {
    /// Being taken now.
    Running,
    /// Finished, not validated.
    Done,
    /// Finished and validated.
    Ok,
    /// Failed or interrupted; not restorable.
    Error,
    /// Validation found damage; not restorable.
    Corrupt,
    /// An ancestor was found corrupt after this backup was last validated: whether it shares
    /// the damage is unknown until it is validated itself. Not restorable until then.
    Orphan,
    /// The target of a merge that has not finished; its data is complete.
    Merging,
    /// Being deleted (its deletion is finished by the next `delete`); never used again.
    Deleting,
}

impl BackupStatus {
    /// Whether restore and DELTA backups may use it without being told to.
    pub fn is_restorable(self) -> bool {
        matches!(self, BackupStatus::Ok | BackupStatus::Done | BackupStatus::Merging)
    }
}

impl std::fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format!("{self:?}").to_uppercase())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    pub oid: u32,
    /// Where the tablespace was on the source host.
    pub location: String,
}

/// A backup's record, stored as its manifest's metadata (docs/format.md §9 "meta").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub instance: String,
    pub id: String,
    pub mode: BackupMode,
    /// The backup a DELTA backup compared its files with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub status: BackupStatus,
    pub start_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineId>,
    /// The server's clock when the backup stopped: every commit before `stop_lsn` is older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<DateTime<Utc>>,
    /// The first transaction id not yet assigned at the stop (xmax of a snapshot then):
    /// every transaction from it on commits after `stop_lsn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_xid: Option<u64>,
    /// DELTA: how changed pages were found (`wal-summaries` or `page-lsn`); absent when
    /// changed files were read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<String>,
    #[serde(default)]
    pub server_version: u32,
    #[serde(default)]
    pub flavor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<u64>,
    /// Bytes of the files backed up (data directory, WAL, external directories).
    #[serde(default)]
    pub data_bytes: u64,
    /// Bytes this backup added to the repository (after dedup, compression, encryption).
    #[serde(default)]
    pub stored_bytes: u64,
    #[serde(default)]
    pub wal_segments: u64,
    #[serde(default)]
    pub checksums: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespaces: Vec<Tablespace>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_dirs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Pinned: retention keeps the backup until then (`set-backup --ttl | --expire-time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<DateTime<Utc>>,
    /// `host:pid` of the process taking the backup (RUNNING records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Why the backup failed (ERROR records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub program_version: String,
    /// LOGICAL: what was dumped, and with which tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical: Option<crate::logical::LogicalScope>,
}

/// A backup as listed: its record and the manifest that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    #[serde(flatten)]
    pub record: BackupRecord,
    #[serde(skip)]
    pub manifest: Id,
    /// Whether the manifest lists files (false for RUNNING and ERROR records).
    #[serde(skip)]
    pub has_files: bool,
    /// When the manifest was written.
    #[serde(skip)]
    pub created: DateTime<Utc>,
    /// Other manifests recording the same backup (left by a crash), hidden from listings.
    #[serde(skip)]
    pub duplicates: Vec<Id>,
}

impl BackupRecord {
    /// The record of a backup starting now, RUNNING in this process; the caller fills in what
    /// it knows of the server and the kind of backup.
    pub fn starting(instance: &str, existing: &[BackupInfo], mode: BackupMode) -> BackupRecord {
        let now = Utc::now();
        BackupRecord {
            instance: instance.to_string(),
            id: new_id(existing, now),
            mode,
            parent: None,
            status: BackupStatus::Running,
            start_time: now,
            end_time: None,
            start_lsn: None,
            stop_lsn: None,
            timeline: None,
            stop_time: None,
            recovery_xid: None,
            change_source: None,
            server_version: 0,
            flavor: String::new(),
            system_identifier: None,
            data_bytes: 0,
            stored_bytes: 0,
            wal_segments: 0,
            checksums: false,
            tablespaces: Vec::new(),
            external_dirs: Vec::new(),
            note: None,
            expire_time: None,
            holder: Some(format!("{}:{}", cairn_repo::lock::hostname(), std::process::id())),
            error: None,
            program_version: env!("CARGO_PKG_VERSION").to_string(),
            logical: None,
        }
    }

    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

/// Takes a backup into `writer` and records it: RUNNING while `take` runs (fills in `record`),
/// then committed as DONE; on failure an ERROR record with the reason. Returns what `take`
/// returned, the backup's manifest and what the writer stored (`record.stored_bytes` set).
pub fn record_backup<'r, T>(
    repo: &'r Repository,
    writer: Writer<'r>,
    record: &mut BackupRecord,
    take: impl FnOnce(&Writer<'r>, &mut BackupRecord) -> Result<T>,
) -> Result<(T, Id, WriteStats)> {
    let running = repo.put_record(KIND, record.to_json()?)?;
    let result = take(&writer, record).and_then(|taken| {
        record.status = BackupStatus::Done;
        record.end_time = Some(Utc::now());
        record.holder = None;
        let (manifest, stats) = writer.commit(KIND, record.to_json()?)?;
        Ok((taken, manifest, stats))
    });
    // Whatever happened, the RUNNING announcement goes; a failure leaves an ERROR record.
    let _ = repo.delete_manifest(&running);
    match result {
        Ok((taken, manifest, stats)) => {
            record.stored_bytes = stats.stored_bytes;
            Ok((taken, manifest, stats))
        }
        Err(e) => {
            record.status = BackupStatus::Error;
            record.end_time = Some(Utc::now());
            record.holder = None;
            record.error = Some(e.to_string());
            if let Ok(meta) = record.to_json() {
                let _ = repo.put_record(KIND, meta);
            }
            Err(e)
        }
    }
}

/// A new backup id: the start time in seconds, base 36, so ids sort by time and are short
/// (`T4XK2M`); later than every existing id of the instance.
pub fn new_id(existing: &[BackupInfo], now: DateTime<Utc>) -> String {
    let newest = existing.iter().filter_map(|b| from_base36(&b.record.id)).max().unwrap_or(0);
    to_base36((now.timestamp().max(0) as u64).max(newest + 1))
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    while n > 0 || out.is_empty() {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn from_base36(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 36).ok()
}

/// The backups of `instance` (all instances if `None`), oldest first, with RUNNING records of
/// processes that are gone shown as ERROR.
pub fn list(repo: &Repository, instance: Option<&str>) -> Result<Vec<BackupInfo>> {
    let locks = cairn_repo::lock::list_locks(repo.storage().as_ref())?;
    let mut out = Vec::new();
    for (id, manifest) in repo.load_manifests()? {
        if manifest.kind != KIND {
            continue;
        }
        let mut record: BackupRecord = serde_json::from_value(manifest.meta).map_err(|e| {
            EngineError::Invalid(format!("backup record in manifest {} is unreadable: {e}", id.short()))
        })?;
        if instance.is_some_and(|name| name != record.instance) {
            continue;
        }
        if record.status == BackupStatus::Running {
            let alive = locks.iter().any(|(_, l)| {
                !l.is_stale() && record.holder.as_deref() == Some(&format!("{}:{}", l.host, l.pid))
            });
            if !alive {
                record.status = BackupStatus::Error;
                record.error.get_or_insert_with(|| "interrupted: the process taking it is gone".into());
            }
        }
        out.push(BackupInfo {
            record,
            manifest: id,
            has_files: !manifest.tree.is_empty() || manifest.entries > 0,
            created: manifest.created,
            duplicates: Vec::new(),
        });
    }
    // A crash between recording a backup and removing its RUNNING record, or during a status
    // change, leaves two records of one backup: the newest one with files is the truth.
    out.sort_by(|a, b| {
        let key = |x: &BackupInfo| (from_base36(&x.record.id), x.record.instance.clone());
        key(a).cmp(&key(b)).then_with(|| (b.has_files, b.created).cmp(&(a.has_files, a.created)))
    });
    out.dedup_by(|later, kept| {
        let same = later.record.id == kept.record.id && later.record.instance == kept.record.instance;
        if same {
            kept.duplicates.push(later.manifest);
        }
        same
    });
    Ok(out)
}

/// Removes a backup's manifest (and any duplicates a crash left); its data goes at the next
/// prune.
pub fn delete(repo: &Repository, backup: &BackupInfo) -> Result<()> {
    for manifest in std::iter::once(&backup.manifest).chain(&backup.duplicates) {
        repo.delete_manifest(manifest)?;
    }
    Ok(())
}

/// Stores `record` as the metadata of `backup`'s manifest (a status change), leaving it the
/// backup's only record: duplicates a crash left could otherwise be listed instead of it.
pub fn rewrite(repo: &Repository, backup: &BackupInfo, record: &BackupRecord) -> Result<Id> {
    let meta = serde_json::to_value(record).map_err(|e| EngineError::Invalid(e.to_string()))?;
    let new = repo.replace_meta(&backup.manifest, meta)?;
    // Only once the change is stored: a crash before leaves the older records, never none.
    for duplicate in &backup.duplicates {
        repo.delete_manifest(duplicate)?;
    }
    Ok(new)
}

/// Rewrites `backup` with `status` (and `error`), returning it as now stored.
pub fn set_status(
    repo: &Repository,
    backup: &BackupInfo,
    status: BackupStatus,
    error: Option<String>,
) -> Result<BackupInfo> {
    let mut changed = backup.clone();
    changed.record.status = status;
    changed.record.error = error;
    changed.manifest = rewrite(repo, backup, &changed.record)?;
    changed.duplicates.clear();
    Ok(changed)
}

/// `backup`'s ancestors, nearest first, following `parent` up to and including
/// the first FULL backup. A parent that is gone (deleted) ends the chain there.
pub fn ancestors<'a>(backups: &'a [BackupInfo], backup: &BackupInfo) -> Vec<&'a BackupInfo> {
    let mut chain: Vec<&BackupInfo> = Vec::new();
    let mut next = backup.record.parent.as_deref();
    while let Some(id) = next {
        let found = backups.iter().find(|b| b.record.id == id && b.record.instance == backup.record.instance);
        // A chain longer than the catalog would be a cycle (a hand-edited repository).
        let Some(parent) = found.filter(|_| chain.len() < backups.len()) else { break };
        chain.push(parent);
        // Only a DELTA has a parent: a FULL (a merged one too) ends the chain.
        next = parent.record.parent.as_deref();
    }
    chain
}

/// Backup `id` (in any case) among `backups` of `instance`.
pub fn by_id<'a>(backups: &'a [BackupInfo], instance: &str, id: &str) -> Result<&'a BackupInfo> {
    backups
        .iter()
        .find(|b| b.record.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| EngineError::UnknownBackup { instance: instance.into(), id: id.into() })
}

/// The backup `id` of `instance`, or its newest restorable physical backup.
pub fn find(repo: &Repository, instance: &str, id: Option<&str>) -> Result<BackupInfo> {
    let backups = list(repo, Some(instance))?;
    match id {
        Some(id) => by_id(&backups, instance, id).cloned(),
        None => backups
            .into_iter()
            .rev()
            .find(|b| b.record.status.is_restorable() && b.has_files && b.record.mode.is_physical())
            .ok_or_else(|| EngineError::NoBackup(instance.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_sortable_and_unique() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T05:00:00Z").unwrap().with_timezone(&Utc);
        let a = new_id(&[], now);
        assert_eq!(a.len(), 6);
        assert_eq!(from_base36(&a), Some(now.timestamp() as u64));
        let later = new_id(&[], now + chrono::Duration::seconds(1));
        assert!(later > a);
    }
}

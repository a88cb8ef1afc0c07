//! Validate: reads every chunk of a backup back, decrypting and re-hashing it, checks every
//! file's length against its manifest and, when the cluster has checksums, every data page's
//! checksum again. A damaged backup becomes CORRUPT (restore skips it); a DONE one becomes OK.
//! The DELTA backups descending from one newly found CORRUPT become ORPHAN unless the same
//! run validated them: they may share its damaged chunks, and only their own validation says.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use cairn_pg::{page_lsn, relation_block, verify_page, Lsn, PageVerdict, BLCKSZ};
use cairn_repo::{ChunkId, FileEntry, RepoError, Repository};

use crate::catalog::{self, BackupInfo, BackupMode, BackupStatus};
use crate::error::{EngineError, Result};
use crate::progress::Progress;
use crate::restore::{batches, Listed};

#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    pub channels: usize,
    /// Do not re-check data pages' checksums.
    pub skip_block_validation: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidateSummary {
    pub backup_id: String,
    pub files: u64,
    pub bytes: u64,
    /// Data pages whose checksum was verified.
    pub pages: u64,
    pub seconds: f64,
    pub status: BackupStatus,
}

/// Validates backup `id` (the newest if `None`) and records it as OK.
pub fn validate(
    repo: &Repository,
    instance: &str,
    id: Option<&str>,
    options: &ValidateOptions,
    progress: &dyn Progress,
) -> Result<ValidateSummary> {
    let _lock = cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), false)?;
    let backup = catalog::find(repo, instance, id)?;
    if backup.record.status == BackupStatus::Deleting {
        return Err(EngineError::Invalid(format!(
            "backup {} is being deleted (status DELETING); 'cairn delete --instance {instance} --status DELETING' finishes it",
            backup.record.id
        )));
    }
    repo.load_index()?;
    let mut found = Findings::default();
    let outcome = validate_backup(repo, &backup, options, progress, &mut found);
    let marked = found.mark_others(repo, Some(instance), &[key(&backup)]);
    // The verdict on the backup matters more than a failure to mark the others.
    let summary = outcome?;
    marked?;
    Ok(summary)
}

/// A backup's identity across instances.
type Key = (String, String);

fn key(backup: &BackupInfo) -> Key {
    (backup.record.instance.clone(), backup.record.id.clone())
}

/// The outcome of validating one of many backups.
#[derive(Debug, Clone, Serialize)]
pub struct Validated {
    pub instance: String,
    pub backup_id: String,
    pub status: BackupStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Validates every finished backup of `instance` (of every instance if `None`). Failures are
/// reported per backup; the others go on.
pub fn validate_all(
    repo: &Repository,
    instance: Option<&str>,
    options: &ValidateOptions,
    progress: &dyn Progress,
) -> Result<Vec<Validated>> {
    let _lock = cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), false)?;
    if let Some(name) = instance {
        crate::instance::find(repo, name)?;
    }
    repo.load_index()?;
    let mut out = Vec::new();
    let mut validated = Vec::new();
    let mut found = Findings::default();
    for backup in catalog::list(repo, instance)? {
        let r = &backup.record;
        let finished =
            !matches!(r.status, BackupStatus::Running | BackupStatus::Error | BackupStatus::Deleting);
        if !finished || !backup.has_files {
            continue;
        }
        let outcome = validate_backup(repo, &backup, options, progress, &mut found);
        validated.push(key(&backup));
        out.push(Validated {
            instance: r.instance.clone(),
            backup_id: r.id.clone(),
            status: outcome.as_ref().map_or(BackupStatus::Corrupt, |s| s.status),
            error: outcome.err().map(|e| e.to_string()),
        });
    }
    // Every finished backup got its own verdict; this only reaches what was not validated
    // (other instances' backups sharing damaged chunks).
    found.mark_others(repo, instance, &validated)?;
    Ok(out)
}

/// What validation found damaged: backups newly CORRUPT, and the chunks that do not read back.
#[derive(Default)]
struct Findings {
    corrupted: Vec<Key>,
    damaged: BTreeSet<ChunkId>,
}

impl Findings {
    /// Marks the backups not among `validated` that the damage reaches: CORRUPT every one
    /// (of any instance: chunks are shared across the repository) that names a damaged
    /// chunk, then ORPHAN the DELTAs descending from a corrupt one.
    fn mark_others(mut self, repo: &Repository, instance: Option<&str>, validated: &[Key]) -> Result<()> {
        if !self.damaged.is_empty() {
            for backup in catalog::list(repo, None)? {
                let usable = matches!(
                    backup.record.status,
                    BackupStatus::Done | BackupStatus::Ok | BackupStatus::Orphan | BackupStatus::Merging
                );
                if !usable || !backup.has_files || validated.contains(&key(&backup)) {
                    continue;
                }
                let mut shared = None;
                let manifest = repo.load_manifest(&backup.manifest)?;
                repo.for_each_entry(&backup.manifest, &manifest, &mut |e| {
                    shared = shared.or_else(|| e.chunks.iter().find(|c| self.damaged.contains(*c)).copied());
                    Ok(())
                })?;
                if let Some(chunk) = shared {
                    let why = format!("it holds chunk {}, which validation found damaged", chunk.short());
                    catalog::set_status(repo, &backup, BackupStatus::Corrupt, Some(why))?;
                    self.corrupted.push(key(&backup));
                }
            }
        }
        orphan_descendants(repo, instance, &self.corrupted, validated)
    }
}

/// Marks ORPHAN every DONE or OK DELTA backup descending from one of `corrupted` that is not
/// among `validated`.
fn orphan_descendants(
    repo: &Repository,
    instance: Option<&str>,
    corrupted: &[Key],
    validated: &[Key],
) -> Result<()> {
    if corrupted.is_empty() {
        return Ok(());
    }
    let backups = catalog::list(repo, instance)?;
    for backup in &backups {
        let r = &backup.record;
        if r.mode != BackupMode::Delta
            || !matches!(r.status, BackupStatus::Done | BackupStatus::Ok)
            || validated.contains(&key(backup))
        {
            continue;
        }
        let ancestors = catalog::ancestors(&backups, backup);
        if let Some(bad) = ancestors.iter().find(|a| corrupted.contains(&key(a))) {
            let why = format!(
                "its ancestor {} is corrupt; validate this backup to know whether it shares the damage",
                bad.record.id
            );
            catalog::set_status(repo, backup, BackupStatus::Orphan, Some(why))?;
        }
    }
    Ok(())
}

/// Validates one backup and records the verdict; one newly found CORRUPT, and the chunks of
/// it that do not read back, are added to `found`.
fn validate_backup(
    repo: &Repository,
    backup: &BackupInfo,
    options: &ValidateOptions,
    progress: &dyn Progress,
    found: &mut Findings,
) -> Result<ValidateSummary> {
    let started = Instant::now();
    let check_pages = backup.record.checksums && !options.skip_block_validation;
    let start_lsn = backup.record.start_lsn.unwrap_or_default();
    let corrupt = Mutex::new(Vec::new());
    let pages = std::sync::atomic::AtomicU64::new(0);
    let read = Listed::read(repo, backup).and_then(|Listed { entries, lists }| {
        progress.begin("validate", entries.iter().map(|(e, _)| e.size).sum());
        let mut bytes = 0;
        for batch in batches(&entries, |(_, list)| list.len()) {
            let batch = batch
                .iter()
                .map(|(entry, list)| lists.filled(entry, *list))
                .collect::<Result<Vec<_>, _>>()?;
            bytes += repo.restore_files(&batch, options.channels.max(1), |entry| {
                let relation = check_pages && entry.meta.get("relation").is_some_and(|v| v == true);
                Ok(Checked::new(entry, relation, start_lsn, progress, &corrupt, &pages))
            })?;
        }
        progress.end();
        Ok((entries.len(), bytes))
    });
    let mut unreadable = |e: String| {
        // Which of its chunks are damaged: other backups naming them are damaged too.
        let mut ids = std::collections::BTreeSet::new();
        if let Ok(manifest) = repo.load_manifest(&backup.manifest) {
            let _ = repo.for_each_entry(&backup.manifest, &manifest, &mut |e| {
                ids.extend(e.chunks);
                Ok(())
            });
        }
        let ids: Vec<ChunkId> = ids.into_iter().collect();
        found.damaged.extend(repo.damaged_chunks(&ids, options.channels.max(1)).unwrap_or_default());
        Some(e)
    };
    let damage = match &read {
        // Damage (not a passing I/O error) makes the backup CORRUPT, so restore skips it.
        Err(EngineError::Repo(e @ RepoError::Damaged { .. })) => unreadable(e.to_string()),
        Err(EngineError::Repo(RepoError::Storage(s))) if s.is_not_found() => unreadable(s.to_string()),
        Err(_) => None,
        Ok(_) => {
            let bad = corrupt.into_inner().unwrap_or_else(|e| e.into_inner());
            (!bad.is_empty()).then(|| format!("data pages fail their checksum: {}", bad.join(", ")))
        }
    };
    if let Some(reason) = damage {
        catalog::set_status(repo, backup, BackupStatus::Corrupt, Some(reason.clone()))?;
        if backup.record.status != BackupStatus::Corrupt {
            found.corrupted.push(key(backup));
        }
        return Err(match read {
            Err(e) => e,
            Ok(_) => EngineError::CorruptPages(format!("backup {}: {reason}", backup.record.id)),
        });
    }
    let (files, bytes) = read?;
    let mut status = backup.record.status;
    // Read back whole: OK (a backup once marked CORRUPT by a passing failure recovers, an
    // ORPHAN gets its own verdict). A MERGING one stays so until its merge finishes.
    if matches!(status, BackupStatus::Done | BackupStatus::Corrupt | BackupStatus::Orphan) {
        catalog::set_status(repo, backup, BackupStatus::Ok, None)?;
        status = BackupStatus::Ok;
    }
    Ok(ValidateSummary {
        backup_id: backup.record.id.clone(),
        files: files as u64,
        bytes,
        pages: pages.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        status,
    })
}

/// Takes a restored file's bytes, counting progress and, for relation files, verifying each
/// page's checksum. A page that fails is corrupt unless it was written during the backup (its
/// LSN at or after the start): those are rewritten by WAL replay.
struct Checked<'a> {
    progress: &'a dyn Progress,
    relation: Option<(String, u32)>,
    start_lsn: Lsn,
    page: Vec<u8>,
    block: u32,
    corrupt: &'a Mutex<Vec<String>>,
    pages: &'a std::sync::atomic::AtomicU64,
}

impl<'a> Checked<'a> {
    fn new(
        entry: &FileEntry,
        relation: bool,
        start_lsn: Lsn,
        progress: &'a dyn Progress,
        corrupt: &'a Mutex<Vec<String>>,
        pages: &'a std::sync::atomic::AtomicU64,
    ) -> Self {
        let name = entry.path.rsplit('/').next().unwrap_or_default();
        let segment = cairn_pg::relfile::parse_relation_file_name(name).map_or(0, |r| r.segment);
        Checked {
            progress,
            relation: relation.then(|| (entry.path.clone(), relation_block(segment, 0))),
            start_lsn,
            page: Vec::with_capacity(if relation { BLCKSZ } else { 0 }),
            block: 0,
            corrupt,
            pages,
        }
    }

    fn check_page(&mut self) {
        let Some((path, first)) = &self.relation else { return };
        let block = first + self.block;
        if let Ok(page) = <&[u8; BLCKSZ]>::try_from(self.page.as_slice()) {
            let fine = matches!(verify_page(page, block), PageVerdict::Valid | PageVerdict::New);
            if !fine && page_lsn(page) < self.start_lsn {
                self.corrupt.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{path} block {block}"));
            }
            self.pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.page.clear();
        self.block += 1;
    }
}

impl std::io::Write for Checked<'_> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        self.progress.advance(n as u64);
        while self.relation.is_some() && !buf.is_empty() {
            let take = (BLCKSZ - self.page.len()).min(buf.len());
            self.page.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.page.len() == BLCKSZ {
                self.check_page();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

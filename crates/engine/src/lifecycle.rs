//! The backup lifecycle: deleting backups (by id, by status, or as a retention policy
//! expires them), merging a DELTA with its ancestors, and pinning. Backups are marked
//! DELETING, then their manifests go, then the data no manifest needs is pruned: a crash
//! anywhere loses nothing still referenced, and the next `delete` finishes what it left.

use chrono::{DateTime, Utc};
use serde::Serialize;

use cairn_repo::lock::LockGuard;
use cairn_repo::{PruneOptions, PruneSummary, Repository};

use crate::catalog::{self, BackupInfo, BackupMode, BackupStatus};
use crate::error::{EngineError, Result};
use crate::retention::{self, Candidate, RetentionPolicy};

/// Which backups `delete` removes.
#[derive(Debug, Clone)]
pub enum Selection {
    Id(String),
    /// Every backup of this status (ERROR, CORRUPT ...).
    Status(BackupStatus),
    /// What the policy expires.
    Expired(RetentionPolicy),
    /// What the policy expires, after making FULL the oldest kept DELTA descending from
    /// expired backups (so that the policy counts it as FULL from then on).
    MergeExpired(RetentionPolicy),
}

/// A backup `delete` chose, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeleteSummary {
    pub instance: String,
    pub deleted: Vec<Chosen>,
    /// DELTA backups made FULL (`--merge-expired`).
    pub merged: Vec<Chosen>,
    pub dry_run: bool,
    /// What the prune after the deletion freed (absent on a dry run or when nothing went).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
}

/// Deletes the selected backups of `instance`, then prunes. A pinned backup is never deleted
/// by id (unpin it first), nor expired. Deletions a crash interrupted (status DELETING) are
/// finished whatever the selection.
pub fn delete(
    repo: &Repository,
    instance: &str,
    selection: &Selection,
    dry_run: bool,
) -> Result<DeleteSummary> {
    crate::instance::find(repo, instance)?;
    let mut summary = {
        let _lock = if dry_run { None } else { Some(LockGuard::acquire(repo.storage().clone(), true)?) };
        let backups = catalog::list(repo, Some(instance))?;
        let (mut deleted, merged) = choose(&backups, instance, selection)?;
        for b in backups.iter().filter(|b| b.record.status == BackupStatus::Deleting) {
            if !deleted.iter().any(|(c, _)| c.record.id == b.record.id) {
                deleted.push((b, "unfinished deletion".into()));
            }
        }
        if !dry_run {
            // FULL first: a crash before the deletions leaves the expired backups to the next
            // run, never a kept DELTA that should have become FULL and can no longer tell.
            for (backup, _) in &merged {
                make_full(repo, backup, backup.record.status)?;
            }
            remove(repo, deleted.iter().map(|(b, _)| *b))?;
        }
        let listed = |list: Vec<(&BackupInfo, String)>| {
            list.into_iter().map(|(b, reason)| Chosen { id: b.record.id.clone(), reason }).collect()
        };
        DeleteSummary {
            instance: instance.into(),
            deleted: listed(deleted),
            merged: listed(merged),
            dry_run,
            prune: None,
        }
    };
    if !dry_run && !summary.deleted.is_empty() {
        summary.prune = Some(cairn_repo::prune(repo, &PruneOptions { dry_run: false })?);
    }
    Ok(summary)
}

/// Backups, each with why it was chosen.
type Choice<'a> = Vec<(&'a BackupInfo, String)>;

/// The backups `selection` deletes, and those it makes FULL first.
fn choose<'a>(
    backups: &'a [BackupInfo],
    instance: &str,
    selection: &Selection,
) -> Result<(Choice<'a>, Choice<'a>)> {
    let now = Utc::now();
    let by_id = |id: &str| backups.iter().find(|b| b.record.id == id);
    match selection {
        Selection::Id(id) => {
            let b = catalog::by_id(backups, instance, id)?;
            refuse_pinned(instance, &[b], now, "cannot delete pinned backup")?;
            Ok((vec![(b, "asked for".into())], Vec::new()))
        }
        Selection::Status(status) => {
            let chosen = backups.iter().filter(|b| b.record.status == *status);
            Ok((chosen.map(|b| (b, format!("status {status}"))).collect(), Vec::new()))
        }
        Selection::Expired(policy) | Selection::MergeExpired(policy) => {
            let candidates: Vec<Candidate> = backups.iter().map(Candidate::of).collect();
            let expired = retention::expired(&candidates, *policy, now);
            let mut merged = Vec::new();
            if matches!(selection, Selection::MergeExpired(_)) {
                for merge in retention::to_merge(&candidates, &expired) {
                    let ancestors = merge.expired_ancestors.join(", ");
                    let reason = format!("the oldest kept DELTA descending from expired {ancestors}");
                    merged.extend(by_id(&merge.id).map(|b| (b, reason)));
                }
            }
            let deleted = expired.into_iter().filter_map(|e| Some((by_id(&e.id)?, e.reason))).collect();
            Ok((deleted, merged))
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MergeSummary {
    pub instance: String,
    pub backup_id: String,
    /// The ancestors folded into the backup and deleted, nearest first.
    pub removed: Vec<String>,
    /// The backup's status now that it is FULL.
    pub status: BackupStatus,
    /// What the prune after the merge freed (absent when no ancestor was left to delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
}

/// Makes DELTA backup `id` FULL and deletes its ancestors (following `parent` up to and
/// including a FULL). Every backup lists all its files, so no data is read or copied: the
/// backup's record changes, the ancestors' manifests go, and a prune frees what only they
/// used. The backup is MERGING meanwhile; a crash leaves it so, and merging it again
/// finishes the job.
pub fn merge(repo: &Repository, instance: &str, id: &str) -> Result<MergeSummary> {
    crate::instance::find(repo, instance)?;
    let (mut summary, was_merging) = {
        let _lock = LockGuard::acquire(repo.storage().clone(), true)?;
        let backups = catalog::list(repo, Some(instance))?;
        let target = catalog::by_id(&backups, instance, id)?;
        let r = &target.record;
        if r.mode == BackupMode::Logical {
            return Err(EngineError::Invalid(format!(
                "backup {} is a LOGICAL dump: it has no chain to merge",
                r.id
            )));
        }
        if r.mode == BackupMode::Full {
            return Err(EngineError::Invalid(format!(
                "backup {} is already FULL: there is nothing to merge",
                r.id
            )));
        }
        match r.status {
            BackupStatus::Ok | BackupStatus::Done | BackupStatus::Merging => {}
            BackupStatus::Orphan => {
                return Err(EngineError::Invalid(format!(
                    "backup {} is ORPHAN; validate it first: 'cairn validate --instance {instance} -i {}'",
                    r.id, r.id
                )))
            }
            other => {
                return Err(EngineError::Invalid(format!(
                    "backup {} has status {other}: only an OK or DONE backup can be merged",
                    r.id
                )))
            }
        }
        let ancestors = catalog::ancestors(&backups, target);
        let what = format!("merging backup {} would delete pinned backup(s)", r.id);
        refuse_pinned(instance, &ancestors, Utc::now(), &what)?;
        let merging = match r.status {
            BackupStatus::Merging => target.clone(),
            _ => catalog::set_status(repo, target, BackupStatus::Merging, None)?,
        };
        // Farthest first: a crash part-way leaves the chain from the target intact up to what
        // is left, so merging again (or any delete, for what was marked) finishes the job.
        remove(repo, ancestors.iter().rev().copied())?;
        let summary = MergeSummary {
            instance: instance.into(),
            backup_id: r.id.clone(),
            removed: ancestors.iter().map(|a| a.record.id.clone()).collect(),
            status: make_full(repo, &merging, r.status)?,
            prune: None,
        };
        (summary, r.status == BackupStatus::Merging)
    };
    // An interrupted merge may have deleted manifests without pruning after them.
    if !summary.removed.is_empty() || was_merging {
        summary.prune = Some(cairn_repo::prune(repo, &PruneOptions { dry_run: false })?);
    }
    Ok(summary)
}

/// Refuses when any of `backups` is pinned; `what` starts the message.
fn refuse_pinned(instance: &str, backups: &[&BackupInfo], now: DateTime<Utc>, what: &str) -> Result<()> {
    let pinned: Vec<String> = backups
        .iter()
        .filter_map(|b| Some((b, b.record.expire_time.filter(|&t| t > now)?)))
        .map(|(b, until)| format!("{} (until {until})", b.record.id))
        .collect();
    match pinned.is_empty() {
        true => Ok(()),
        false => Err(EngineError::Invalid(format!(
            "{what} {}; unpin first with 'cairn set-backup --instance {instance} -i ID --ttl 0'",
            pinned.join(", ")
        ))),
    }
}

/// Deletes backups: all are marked DELETING first (restore, validate and DELTA backups skip
/// them, and the next `delete` finishes them after a crash), then their manifests go.
fn remove<'a>(repo: &Repository, backups: impl IntoIterator<Item = &'a BackupInfo>) -> Result<()> {
    let mut marked = Vec::new();
    for b in backups {
        marked.push(match b.record.status {
            BackupStatus::Deleting => b.clone(),
            _ => catalog::set_status(repo, b, BackupStatus::Deleting, b.record.error.clone())?,
        });
    }
    for b in &marked {
        catalog::delete(repo, b)?;
    }
    Ok(())
}

/// Rewrites a DELTA backup as FULL with `status` (what it was before the merge): the same
/// files, id, times and LSNs, no parent. It already lists every file, so only its record
/// changes. Returns the status it now has.
fn make_full(repo: &Repository, backup: &BackupInfo, status: BackupStatus) -> Result<BackupStatus> {
    let mut record = backup.record.clone();
    record.mode = BackupMode::Full;
    record.parent = None;
    record.status = match status {
        // An interrupted merge did not record whether its backup had been validated.
        BackupStatus::Merging => BackupStatus::Done,
        other => other,
    };
    catalog::rewrite(repo, backup, &record)?;
    Ok(record.status)
}

/// Changes a backup's note and pin (`expire_time`: kept by retention until then; `None`
/// unpins). Returns the updated record.
pub fn set_backup(
    repo: &Repository,
    instance: &str,
    id: &str,
    note: Option<String>,
    expire_time: Option<Option<DateTime<Utc>>>,
) -> Result<catalog::BackupRecord> {
    // Exclusive: a pin must not race a merge or delete of the same backup.
    let _lock = LockGuard::acquire(repo.storage().clone(), true)?;
    let backup = catalog::find(repo, instance, Some(id))?;
    let mut record = backup.record.clone();
    if let Some(note) = note {
        record.note = Some(note).filter(|n| !n.is_empty());
    }
    if let Some(expire_time) = expire_time {
        record.expire_time = expire_time;
    }
    catalog::rewrite(repo, &backup, &record)?;
    Ok(record)
}

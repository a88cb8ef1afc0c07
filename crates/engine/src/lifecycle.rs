//! The backup lifecycle: deleting backups (by id, by status, or as a retention policy
//! expires them) and pinning them. Deletion removes manifests first and prunes the data no
//! manifest needs afterwards, so a crash in between loses nothing still referenced.

use chrono::{DateTime, Utc};
use serde::Serialize;

use cairn_repo::lock::LockGuard;
use cairn_repo::{PruneOptions, PruneSummary, Repository};

use crate::catalog::{self, BackupInfo, BackupStatus};
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeleteSummary {
    pub instance: String,
    pub deleted: Vec<Deleted>,
    pub dry_run: bool,
    /// What the prune after the deletion freed (absent on a dry run or when nothing went).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
}

/// Deletes the selected backups of `instance`, then prunes. A pinned backup is never deleted
/// by id (unpin it first), nor expired.
pub fn delete(
    repo: &Repository,
    instance: &str,
    selection: &Selection,
    dry_run: bool,
) -> Result<DeleteSummary> {
    crate::instance::find(repo, instance)?;
    let mut summary = DeleteSummary { instance: instance.into(), deleted: Vec::new(), dry_run, prune: None };
    {
        let _lock = if dry_run { None } else { Some(LockGuard::acquire(repo.storage().clone(), true)?) };
        let backups = catalog::list(repo, Some(instance))?;
        let now = Utc::now();
        let chosen: Vec<(&BackupInfo, String)> = match selection {
            Selection::Id(id) => {
                let b = backups.iter().find(|b| b.record.id.eq_ignore_ascii_case(id)).ok_or_else(|| {
                    EngineError::UnknownBackup { instance: instance.into(), id: id.clone() }
                })?;
                if let Some(until) = b.record.expire_time.filter(|&t| t > now) {
                    return Err(EngineError::Invalid(format!(
                        "backup {} is pinned until {until}; unpin it first with 'cairn set-backup -i {} --ttl 0'",
                        b.record.id, b.record.id
                    )));
                }
                vec![(b, "asked for".into())]
            }
            Selection::Status(status) => backups
                .iter()
                .filter(|b| b.record.status == *status)
                .map(|b| (b, format!("status {status:?}").to_uppercase()))
                .collect(),
            Selection::Expired(policy) => {
                let candidates: Vec<Candidate> = backups.iter().map(Candidate::of).collect();
                retention::expired(&candidates, *policy, now)
                    .into_iter()
                    .filter_map(|e| Some((backups.iter().find(|b| b.record.id == e.id)?, e.reason)))
                    .collect()
            }
        };
        for (backup, reason) in chosen {
            if !dry_run {
                catalog::delete(repo, backup)?;
            }
            summary.deleted.push(Deleted { id: backup.record.id.clone(), reason });
        }
    }
    if !dry_run && !summary.deleted.is_empty() {
        summary.prune = Some(cairn_repo::prune(repo, &PruneOptions { dry_run: false })?);
    }
    Ok(summary)
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

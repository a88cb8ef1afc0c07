//! Validate: reads every chunk of a backup back, decrypting and re-hashing it, and checks
//! every file's length against its manifest.

use std::time::Instant;

use serde::Serialize;

use cairn_repo::{RepoError, Repository};

use crate::catalog::{self, BackupStatus};
use crate::error::{EngineError, Result};
use crate::progress::Progress;
use crate::restore::entries_of;

#[derive(Debug, Clone, Serialize)]
pub struct ValidateSummary {
    pub backup_id: String,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub status: BackupStatus,
}

/// Validates backup `id` (the newest if `None`) and records it as OK.
pub fn validate(
    repo: &Repository,
    instance: &str,
    id: Option<&str>,
    channels: usize,
    progress: &dyn Progress,
) -> Result<ValidateSummary> {
    let started = Instant::now();
    let _lock = cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), false)?;
    let backup = catalog::find(repo, instance, id)?;
    let read = entries_of(repo, &backup).and_then(|entries| {
        progress.begin("validate", entries.iter().map(|e| e.size).sum());
        let bytes = repo.restore_files(&entries, channels.max(1), |_| Ok(Counted { progress }))?;
        progress.end();
        Ok((entries, bytes))
    });
    let (entries, bytes) = match read {
        Ok(done) => done,
        // Damage (not a passing I/O error) makes the backup CORRUPT, so restore skips it.
        Err(EngineError::Repo(e @ (RepoError::Damaged { .. } | RepoError::Storage(_))))
            if matches!(&e, RepoError::Damaged { .. })
                || matches!(&e, RepoError::Storage(s) if s.is_not_found()) =>
        {
            let mut record = backup.record.clone();
            record.status = BackupStatus::Corrupt;
            record.error = Some(e.to_string());
            catalog::rewrite(repo, &backup, &record)?;
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    let mut status = backup.record.status;
    if status == BackupStatus::Done {
        let mut record = backup.record.clone();
        record.status = BackupStatus::Ok;
        catalog::rewrite(repo, &backup, &record)?;
        status = BackupStatus::Ok;
    }
    Ok(ValidateSummary {
        backup_id: backup.record.id,
        files: entries.len() as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        status,
    })
}

/// Discards what it is given, reporting progress.
struct Counted<'p> {
    progress: &'p dyn Progress,
}

impl std::io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.progress.advance(buf.len() as u64);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

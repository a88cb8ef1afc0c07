//! Stable error codes and exit statuses (docs/errors.md is the contract).

use cairn_repo::RepoError;
use cairn_storage::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode {
    pub status: i32,
    pub code: &'static str,
}

pub fn code_of(error: &anyhow::Error) -> ExitCode {
    let code = if let Some(e) = error.downcast_ref::<cairn_engine::EngineError>() {
        e.code()
    } else if let Some(e) = error.downcast_ref::<RepoError>() {
        e.code()
    } else if let Some(e) = error.downcast_ref::<StorageError>() {
        RepoError::Storage(StorageError::new(e.kind, "")).code()
    } else if let Some(e) = error.downcast_ref::<UsageError>() {
        e.code
    } else {
        "internal"
    };
    ExitCode { status: status_of(code), code }
}

/// The exit status for an error code.
pub fn status_of(code: &str) -> i32 {
    match code {
        "invalid-argument" | "usage" => 2,
        "repo-not-found" | "repo-exists" => 3,
        "password-required" | "wrong-password" => 4,
        "locked" => 5,
        "storage-unreachable" | "storage-denied" | "storage-config" | "storage" | "object-exists" => 6,
        "damaged" | "object-not-found" | "corrupt-pages" => 7,
        "instance-not-found" | "instance-exists" | "backup-not-found" => 8,
        "db-unreachable" | "db-error" => 9,
        "restore-refused" => 10,
        "wal-mismatch" | "conflict" => 11,
        "tool-missing" | "tool-too-old" | "tool-failed" => 12,
        _ => 1,
    }
}

/// An error the CLI itself raises, with its code.
#[derive(Debug)]
pub struct UsageError {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError { code: "invalid-argument", message: message.into() }.into()
}

pub fn damaged(message: impl Into<String>) -> anyhow::Error {
    UsageError { code: "damaged", message: message.into() }.into()
}

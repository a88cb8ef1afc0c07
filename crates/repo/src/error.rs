//! The repository's errors, each with a stable code (listed in docs/errors.md).

use cairn_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no repository at {location}: create one with 'cairn init -B {location}'")]
    NotInitialised { location: String },
    #[error("a repository already exists at {location}; nothing was changed")]
    AlreadyExists { location: String },
    #[error("the repository at {location} is encrypted: give its password (--password-file, CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or the prompt)")]
    PasswordRequired { location: String },
    #[error("wrong password: none of the {keys} key(s) of {location} opens with it")]
    WrongPassword { location: String, keys: usize },
    #[error("damaged {what} {path}: {reason}")]
    Damaged { what: &'static str, path: String, reason: String },
    #[error("the repository is locked by {holder}; if that process is gone, run 'cairn unlock'")]
    Locked { holder: String },
    #[error("{0}")]
    Invalid(String),
    /// A write-once object exists with other content.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl RepoError {
    pub fn damaged(what: &'static str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        RepoError::Damaged { what, path: path.into(), reason: reason.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RepoError::Io { context: context.into(), source }
    }

    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        use cairn_storage::ErrorKind as K;
        match self {
            RepoError::NotInitialised { .. } => "repo-not-found",
            RepoError::AlreadyExists { .. } => "repo-exists",
            RepoError::PasswordRequired { .. } => "password-required",
            RepoError::WrongPassword { .. } => "wrong-password",
            RepoError::Damaged { .. } => "damaged",
            RepoError::Locked { .. } => "locked",
            RepoError::Invalid(_) => "invalid-argument",
            RepoError::Conflict(_) => "conflict",
            RepoError::Io { .. } => "io",
            RepoError::Storage(e) => match e.kind {
                K::NotFound => "object-not-found",
                K::AlreadyExists => "object-exists",
                K::PermissionDenied => "storage-denied",
                K::Unreachable => "storage-unreachable",
                K::Config => "storage-config",
                K::Other => "storage",
            },
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

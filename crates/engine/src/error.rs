//! The engine's errors: what went wrong with an instance, a backup or a restore, each with a
//! stable code (docs/errors.md).

use cairn_repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("instance '{0}' is not in this repository: add it with 'cairn add-instance'")]
    UnknownInstance(String),
    #[error("instance '{0}' already exists in this repository; change it with 'cairn set-config'")]
    InstanceExists(String),
    #[error("no backup '{id}' of instance '{instance}'; 'cairn show --instance {instance}' lists them")]
    UnknownBackup { instance: String, id: String },
    #[error("instance '{0}' has no usable backup (status OK or DONE)")]
    NoBackup(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot connect to the database server at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("the database server cannot be backed up: {0}")]
    Server(String),
    /// Not a `source`: [`describe`] gives the whole story once, where the error chain would
    /// repeat tokio-postgres's words.
    #[error("database error during {during}: {}", describe(error))]
    Database { during: &'static str, error: postgres::Error },
    #[error(
        "corrupt data page(s) found: {0}; fix the cluster, or back up anyway with --skip-block-validation"
    )]
    CorruptPages(String),
    /// WAL that does not belong where it is being put.
    #[error("{0}")]
    WalMismatch(String),
    #[error("restore refused: {0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A dump tool (pg_dump, pg_restore, ...) that is not installed where cairn looks.
    #[error("{0}")]
    ToolMissing(String),
    /// A dump tool of an older major version than the server (or than the dump it reads).
    #[error("{0}")]
    ToolTooOld(String),
    /// A dump tool that ran and failed; the message ends with what it said.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed { tool: String, status: String, stderr: String },
}

impl EngineError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io { context: context.into(), source }
    }

    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Repo(e) => e.code(),
            EngineError::UnknownInstance(_) => "instance-not-found",
            EngineError::InstanceExists(_) => "instance-exists",
            EngineError::UnknownBackup { .. } | EngineError::NoBackup(_) => "backup-not-found",
            EngineError::Invalid(_) => "invalid-argument",
            EngineError::Connect { .. } => "db-unreachable",
            EngineError::Server(_) | EngineError::Database { .. } => "db-error",
            EngineError::CorruptPages(_) => "corrupt-pages",
            EngineError::Refused(_) => "restore-refused",
            EngineError::WalMismatch(_) => "wal-mismatch",
            EngineError::Io { .. } => "io",
            EngineError::ToolMissing(_) => "tool-missing",
            EngineError::ToolTooOld(_) => "tool-too-old",
            EngineError::ToolFailed { .. } => "tool-failed",
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What a database error says: the server's own message (with its detail and hint), or, when
/// the connection broke, that it did and what to do.
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text += &format!(" ({detail})");
        }
        if let Some(hint) = db.hint() {
            text += &format!("; hint: {hint}");
        }
        if db.code() == &postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
            text += "; connect as a superuser (-U), or have one GRANT EXECUTE ON FUNCTION to this role \
                     for each function a backup calls (docs/cli.md, 'A backup role')";
        }
        return text;
    }
    let mut text = error.to_string();
    let mut lost = error.is_closed();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        lost |= c.is::<std::io::Error>();
        let said = c.to_string();
        if !text.contains(&said) {
            text += &format!(": {said}");
        }
        cause = c.source();
    }
    if lost {
        text = format!(
            "the connection to the server was lost ({text}): the server was stopped or restarted, or the \
             session was ended (pg_terminate_backend, a timeout, the network); run the command again once \
             the server is reachable"
        );
    }
    text
}

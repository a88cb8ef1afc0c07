//! cairn's operations, one module each: instances, backup, restore, validate, and the catalog
//! of backups kept in the repository. The CLI and the server call these; they hold no
//! business logic of their own.

pub mod archive;
pub mod backup;
pub mod catalog;
mod connect;
pub mod error;
pub mod instance;
pub mod lifecycle;
pub mod logical;
pub mod progress;
pub mod recovery;
pub mod restore;
pub mod retention;
pub mod spool;
pub mod validate;

pub use backup::{backup, BackupOptions, BackupSummary};
pub use catalog::{BackupInfo, BackupRecord, BackupStatus};
pub use error::{EngineError, Result};
pub use instance::{Connection, InstanceConfig};
pub use progress::{Progress, Silent};
pub use restore::{restore, ArchiveMode, RestoreOptions, RestoreSummary};
pub use validate::{validate, validate_all, ValidateOptions, ValidateSummary, Validated};

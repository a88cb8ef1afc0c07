//! Object storage for cairn repositories: one small synchronous trait, backed by OpenDAL
//! (local filesystem, S3-compatible object storage), plus retry, bandwidth limit and a
//! fault-injecting wrapper for tests. Knows nothing of repositories or PostgreSQL.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

pub mod conformance;
pub mod direct;
mod error_map;
mod faulty;
mod local_fs;
mod location;
mod opendal_backend;
mod options;
mod throttle;

pub use faulty::{CallRecord, Fault, FaultRule, FaultyStorage, OpKind, Trigger};
pub use location::Location;
pub use opendal_backend::OpendalStorage;
pub use options::StorageOptions;
pub use throttle::Throttled;

/// Opens the storage at `location`: a local directory (absolute or relative path, or
/// `file:///path`) or `s3://bucket/prefix`, configured by `options` (S3 endpoint and
/// credentials, retries, timeouts; a bandwidth limit wraps the result in [`Throttled`]).
///
/// Nothing is created or contacted: a missing local directory opens fine (it is created by
/// the first `put`), and an unreachable S3 endpoint is reported by the first call. Any
/// scheme other than `file` and `s3` is an [`ErrorKind::Config`] error. See
/// [`OpendalStorage`] for the guarantees of each backend.
pub fn open(location: &str, options: &StorageOptions) -> Result<Arc<dyn Storage>, StorageError> {
    let location = Location::parse(location)?;
    let storage: Arc<dyn Storage> = Arc::new(OpendalStorage::new(&location, options)?);
    Ok(match options.bandwidth_limit {
        Some(limit) => Arc::new(Throttled::new(storage, limit)),
        None => storage,
    })
}

/// How `put` treats an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with [`ErrorKind::AlreadyExists`] if the object exists (immutable objects).
    Create,
    /// Replace the object if it exists (locks).
    Overwrite,
}

/// What a listing returns for each object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the storage root, `/`-separated, e.g. `data/ab/ab12...`.
    pub path: String,
    pub size: u64,
}

/// Object storage as the repository sees it. Paths are relative to the storage root and use
/// `/` as separator. Every call is blocking: call it from ordinary threads, not from inside
/// an async runtime.
///
/// Atomicity: an object is either absent or present with its complete content; a `put`
/// interrupted at any point (error, crash, kill) never leaves a partial object visible.
/// `put` returns only after the object is durable.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Where this storage points, for messages: `/srv/repo` or `s3://bucket/prefix (http://127.0.0.1:9000)`.
    fn location(&self) -> String;
    fn put(&self, path: &str, data: Bytes, mode: PutMode) -> Result<(), StorageError>;
    /// The whole object; [`ErrorKind::NotFound`] if absent.
    fn get(&self, path: &str) -> Result<Bytes, StorageError>;
    /// Bytes `range` of the object; a range past the end is an error.
    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, StorageError>;
    /// [`get_range`](Self::get_range) into `buf`, replacing its content: a caller reading
    /// range after range (a restore) reuses one allocation. On error `buf` holds nothing
    /// of the object.
    fn get_range_into(&self, path: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        buf.clear();
        buf.extend_from_slice(&self.get_range(path, range)?);
        Ok(())
    }
    /// A hint that `range` of `path` is read soon: a local filesystem starts reading it into
    /// the page cache meanwhile; other storage ignores it. Never fails.
    fn will_read(&self, _path: &str, _range: Range<u64>) {}
    /// Size of the object; [`ErrorKind::NotFound`] if absent.
    fn stat(&self, path: &str) -> Result<ObjectMeta, StorageError>;
    /// Every object whose path starts with `prefix` (recursively), streamed, in no set order.
    fn list(&self, prefix: &str) -> Box<dyn Iterator<Item = Result<ObjectMeta, StorageError>> + Send + '_>;
    /// Remove the object; removing an absent object succeeds.
    fn delete(&self, path: &str) -> Result<(), StorageError>;
}

/// What went wrong, coarse enough to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// Credentials refused or access denied.
    PermissionDenied,
    /// Endpoint could not be reached (after retries).
    Unreachable,
    /// Bad configuration: unknown scheme, missing bucket, malformed URL.
    Config,
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: ErrorKind,
    /// Full human message, naming the location and the object.
    pub message: String,
    /// Whether retrying the same call may succeed.
    pub retryable: bool,
}

impl StorageError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StorageError { kind, message: message.into(), retryable: false }
    }
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

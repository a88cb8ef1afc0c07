//! The [`Storage`] implementation over OpenDAL (services `fs` and `s3`), driven by a small
//! private tokio runtime so callers stay synchronous.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{Buffer, EntryMode, HttpTransporter, Lister, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;
use tokio::runtime::Runtime;

use crate::error_map::{lower, Op, Target};
use crate::local_fs;
use crate::{ErrorKind, Location, ObjectMeta, PutMode, Storage, StorageError, StorageOptions};

/// Objects larger than this are uploaded to S3 as a multipart upload of parts this size,
/// so one slow part (not the whole object) is what the per-attempt timeout bounds and
/// what a retry repeats.
const S3_PART_SIZE: usize = 8 * 1024 * 1024;

/// Storage on a local directory or an S3 bucket, through OpenDAL.
///
/// # Guarantees
///
/// * **Atomic objects.** A reader sees an object either absent or complete, whatever
///   happens to the writer (error, crash, `kill -9`, power loss).
///   * Local filesystem: `put` writes a temp file under `<root>/.cairn-tmp/`, fsyncs it,
///     publishes it with `link(2)` (`Create`) or `rename(2)` (`Overwrite`), then fsyncs the
///     target directory (and the parents of any directory it had to create). `list` never
///     shows `.cairn-tmp/`; files there are debris from killed writers and can be removed
///     when no writer is running.
///   * S3: a `PutObject` is atomic by itself; objects above 8 MiB use a multipart upload,
///     which only becomes visible on completion (a killed upload leaves an invisible
///     incomplete upload; a bucket lifecycle rule `AbortIncompleteMultipartUpload` reclaims
///     it).
/// * **Durable.** `put` returns after the data and the directory entry are fsynced (local)
///   or after the server acknowledged the write (S3).
/// * **`PutMode::Create`.** Local: atomic, exactly one of several concurrent creators
///   succeeds and the others get [`ErrorKind::AlreadyExists`]. S3: sent as a conditional
///   write (`If-None-Match: *`, also on multipart completion); HTTP 412 becomes
///   `AlreadyExists`. AWS S3 evaluates it atomically. s3s-fs honours it but checks then
///   writes, so creators racing on one key there may all succeed (last one wins); any
///   later `Create` is refused. If a server answers that conditional writes are not
///   implemented, this storage falls back to stat-then-put from then on, which races the
///   same way: two concurrent creators may both succeed and the last one wins. That is
///   harmless for content-addressed objects (both wrote the same bytes) but not for locks.
///   A server that silently ignores the header behaves like `Overwrite`. Also, when a
///   `Create` is retried after a network failure, the first attempt may have landed, so the
///   retry reports `AlreadyExists` for an object this very call wrote.
/// * **`delete`** of an absent object succeeds; on the local filesystem the removal is
///   fsynced too.
/// * **`list`** streams (S3 pages of 1000 keys, directory by directory locally), recurses,
///   returns paths relative to the root, and only objects (never directories or temp files).
///   Paths are matched against the prefix as strings: `data/a` matches `data/ab/..`.
/// * **`get_range`** fails if the range reaches past the end of the object. Locally, ranges
///   are read directly (one `pread(2)` on the calling thread), not through OpenDAL.
/// * **Missing local root.** Opening a directory that does not exist succeeds and creates
///   nothing: reads find nothing, listing is empty. The first `put` creates it.
///
/// # Retries and timeouts
///
/// Transient failures (connection errors, timeouts, HTTP 5xx/429) are retried
/// [`StorageOptions::retries`] times with exponential backoff (100 ms doubling to at most
/// 1 s, with jitter); each attempt is bounded by [`StorageOptions::timeout`] and each
/// connection attempt by [`StorageOptions::connect_timeout`]. Definite answers (404, 403,
/// 412) are not retried. An endpoint that refuses connections fails in about 1 s (default
/// 3 retries) with [`ErrorKind::Unreachable`].
///
/// All methods block; call them from ordinary threads, never from inside an async runtime
/// (that panics).
#[derive(Debug)]
pub struct OpendalStorage {
    backend: Backend,
    target: Target,
    runtime: Runtime,
}

#[derive(Debug)]
enum Backend {
    Local {
        root: PathBuf,
        /// Built on first use once the root exists, because OpenDAL's fs service creates
        /// its root when built and opening must not create anything.
        op: OnceLock<Operator>,
        retries: u32,
        timeout: Duration,
    },
    S3 {
        op: Operator,
        /// Cleared if the server rejects `If-None-Match: *` as not implemented.
        conditional_put: AtomicBool,
    },
}

impl OpendalStorage {
    /// Opens the storage at `location`. Talks to nothing yet: configuration errors are
    /// reported here, connection problems by the first call.
    pub fn new(location: &Location, options: &StorageOptions) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-storage")
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::new(
                    ErrorKind::Other,
                    format!("cannot start storage runtime: {}", lower(&e.to_string())),
                )
            })?;
        let attempts = options.retries.saturating_add(1);
        match location {
            Location::Local(root) => {
                if root.exists() && !root.is_dir() {
                    return Err(StorageError::new(
                        ErrorKind::Config,
                        format!("{} exists and is not a directory", root.display()),
                    ));
                }
                if root.to_str().is_none() {
                    return Err(StorageError::new(
                        ErrorKind::Config,
                        format!("repository path {} is not valid UTF-8", root.display()),
                    ));
                }
                Ok(OpendalStorage {
                    target: Target { location: location.to_string(), remote: None, attempts },
                    backend: Backend::Local {
                        root: root.clone(),
                        op: OnceLock::new(),
                        retries: options.retries,
                        timeout: options.timeout,
                    },
                    runtime,
                })
            }
            Location::S3 { bucket, prefix } => {
                let region = options.region.as_deref().unwrap_or("us-east-1");
                let endpoint = match options.endpoint.as_deref() {
                    Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
                    Some(e) => format!("https://{}", e.trim_end_matches('/')),
                    None => format!("https://s3.{region}.amazonaws.com"),
                };
                let config_error = |what: &str, e: &dyn std::fmt::Display| {
                    StorageError::new(
                        ErrorKind::Config,
                        format!("invalid s3 configuration for {location}: {what}: {}", lower(&e.to_string())),
                    )
                };
                // Credentials only from the options (see `StorageOptions::fill_from_env`):
                // no ~/.aws files, no instance metadata probing.
                let mut builder = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .endpoint(&endpoint)
                    .disable_config_load()
                    .disable_ec2_metadata();
                // Virtual-host addressing cannot work with an IP address or localhost.
                if !options.path_style && !is_ip_or_localhost(&endpoint) {
                    builder = builder.enable_virtual_host_style();
                }
                match (&options.access_key_id, &options.secret_access_key) {
                    (Some(key), Some(secret)) => {
                        builder = builder.access_key_id(key).secret_access_key(secret);
                        if let Some(token) = &options.session_token {
                            builder = builder.session_token(token);
                        }
                    }
                    (None, None) => builder = builder.skip_signature(),
                    _ => {
                        return Err(StorageError::new(
                            ErrorKind::Config,
                            format!(
                                "incomplete s3 credentials for {location}: set both the access key id and the secret access key"
                            ),
                        ))
                    }
                }
                let client = http_client(options).map_err(|e| config_error("http client", &e))?;
                let _guard = runtime.enter();
                let op = Operator::new(builder).map_err(|e| config_error("s3", &e))?;
                let ctx = op
                    .base_context()
                    .with_http_transport(HttpTransporter::new(ReqwestTransport::new(client)));
                let op = with_layers(op.with_context(ctx), options.retries, options.timeout);
                Ok(OpendalStorage {
                    target: Target {
                        location: format!("{location} ({endpoint})"),
                        remote: Some(format!("s3 endpoint {endpoint} (bucket {bucket})")),
                        attempts,
                    },
                    backend: Backend::S3 { op, conditional_put: AtomicBool::new(true) },
                    runtime,
                })
            }
        }
    }

    /// The operator, or `None` for a local root that does not exist (yet).
    fn op(&self) -> Result<Option<&Operator>, StorageError> {
        match &self.backend {
            Backend::S3 { op, .. } => Ok(Some(op)),
            Backend::Local { root, op, retries, timeout } => {
                if let Some(op) = op.get() {
                    return Ok(Some(op));
                }
                if !root.is_dir() {
                    return Ok(None);
                }
                let root_str = root.to_str().unwrap_or_default();
                let built = Operator::new(opendal::services::Fs::default().root(root_str))
                    .map_err(|e| self.target.opendal_error(Op::List, "", &e))?;
                let _ = op.set(with_layers(built, *retries, *timeout));
                Ok(op.get())
            }
        }
    }

    fn block_on<F: std::future::IntoFuture>(&self, future: F) -> F::Output {
        self.runtime.block_on(future.into_future())
    }

    fn s3_put(
        &self,
        op: &Operator,
        conditional: &AtomicBool,
        path: &str,
        data: Bytes,
        mode: PutMode,
    ) -> Result<(), StorageError> {
        let write = |if_not_exists: bool| {
            let data = Buffer::from(data.clone());
            self.block_on(async {
                op.write_with(path, data).chunk(S3_PART_SIZE).if_not_exists(if_not_exists).await
            })
        };
        let result = match mode {
            PutMode::Overwrite => write(false),
            PutMode::Create if conditional.load(Ordering::Relaxed) => match write(true) {
                Err(e) if rejects_conditional(&e) => {
                    conditional.store(false, Ordering::Relaxed);
                    self.s3_stat_then_put(op, path, &write)
                }
                other => other,
            },
            PutMode::Create => self.s3_stat_then_put(op, path, &write),
        };
        result.map(drop).map_err(|e| self.target.opendal_error(Op::Put, path, &e))
    }

    fn s3_stat_then_put(
        &self,
        op: &Operator,
        path: &str,
        write: &dyn Fn(bool) -> opendal::Result<opendal::Metadata>,
    ) -> opendal::Result<opendal::Metadata> {
        match self.block_on(op.stat(path)) {
            Ok(_) => Err(opendal::Error::new(opendal::ErrorKind::AlreadyExists, "object exists")),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => write(false),
            Err(e) => Err(e),
        }
    }

    /// A range of a local object, read on the calling thread into the caller's buffer:
    /// through OpenDAL each read is handed to a blocking task and comes back in a fresh
    /// zeroed buffer, which profiling found to be a tenth of a restore's CPU time (mostly
    /// faulting in the new pages).
    fn read_local(
        &self,
        root: &Path,
        path: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        local_fs::read_range(root, path, range.clone(), buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                let size = std::fs::metadata(root.join(path)).ok().map(|m| m.len());
                self.past_end(path, &range, size)
            }
            _ => self.target.io_error(Op::GetRange, path, &e),
        })
    }

    fn check_range(&self, path: &str, range: &Range<u64>) -> Result<(), StorageError> {
        if range.start > range.end {
            let detail = format!("invalid range {}..{}", range.start, range.end);
            return Err(self.target.other(Op::GetRange, path, &detail));
        }
        Ok(())
    }

    fn past_end(&self, path: &str, range: &Range<u64>, size: Option<u64>) -> StorageError {
        let size = size.map(|s| format!(" (size {s})")).unwrap_or_default();
        let detail = format!("range {}..{} reaches past the end of the object{size}", range.start, range.end);
        self.target.other(Op::GetRange, path, &detail)
    }

    fn validate(&self, op: Op, path: &str) -> Result<(), StorageError> {
        let valid = !path.is_empty()
            && !path.starts_with('/')
            && !path.ends_with('/')
            && !path.contains('\\')
            && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && !local_fs::is_internal(path);
        if valid {
            Ok(())
        } else {
            Err(self.target.other(op, path, "invalid object path"))
        }
    }
}

/// `TimeoutLayer` must sit below `RetryLayer` so each attempt (not the whole retried call)
/// is bounded and a timed-out attempt is retried.
fn with_layers(op: Operator, retries: u32, timeout: Duration) -> Operator {
    op.layer(TimeoutLayer::new().with_timeout(timeout).with_io_timeout(timeout)).layer(
        RetryLayer::new()
            .with_max_times(retries as usize)
            .with_factor(2.0)
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter(),
    )
}

fn http_client(options: &StorageOptions) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        // Detect dead peers on idle pooled connections.
        .tcp_keepalive(Duration::from_secs(15));
    // Unacknowledged data for this long means the path is dead: fail the attempt.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let builder = builder.tcp_user_timeout(options.timeout);
    builder.build()
}

fn is_ip_or_localhost(endpoint: &str) -> bool {
    let authority = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    if authority.starts_with('[') {
        return true; // IPv6 literal
    }
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// A server that does not implement conditional writes answers 501 Not Implemented
/// (OpenDAL: `Unsupported`) rather than 412.
fn rejects_conditional(err: &opendal::Error) -> bool {
    err.kind() == opendal::ErrorKind::Unsupported
        || err.message().contains("NotImplemented")
        || err.to_string().contains("status: 501")
}

impl Storage for OpendalStorage {
    fn location(&self) -> String {
        self.target.location.clone()
    }

    fn put(&self, path: &str, data: Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.validate(Op::Put, path)?;
        match &self.backend {
            Backend::Local { root, .. } => {
                local_fs::put(root, path, &data, mode).map_err(|e| self.target.io_error(Op::Put, path, &e))
            }
            Backend::S3 { op, conditional_put } => self.s3_put(op, conditional_put, path, data, mode),
        }
    }

    fn get(&self, path: &str) -> Result<Bytes, StorageError> {
        self.validate(Op::Get, path)?;
        let Some(op) = self.op()? else {
            return Err(self.target.not_found(path));
        };
        self.block_on(op.read(path))
            .map(|buf| buf.to_bytes())
            .map_err(|e| self.target.opendal_error(Op::Get, path, &e))
    }

    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.validate(Op::GetRange, path)?;
        self.check_range(path, &range)?;
        if let Backend::Local { root, .. } = &self.backend {
            let mut buf = Vec::new();
            self.read_local(root, path, range, &mut buf)?;
            return Ok(Bytes::from(buf));
        }
        if range.is_empty() {
            // Nothing to read, but the object must exist and the range must be inside it.
            let meta = self.stat(path)?;
            return match range.start <= meta.size {
                true => Ok(Bytes::new()),
                false => Err(self.past_end(path, &range, Some(meta.size))),
            };
        }
        let Some(op) = self.op()? else {
            return Err(self.target.not_found(path));
        };
        let wanted = range.end - range.start;
        let size = || self.stat(path).ok().map(|m| m.size);
        match self.block_on(op.read_with(path).range(range.clone())) {
            Ok(buf) if buf.len() as u64 == wanted => Ok(buf.to_bytes()),
            Ok(_) => Err(self.past_end(path, &range, size())),
            Err(e) if e.kind() == opendal::ErrorKind::RangeNotSatisfied => {
                Err(self.past_end(path, &range, size()))
            }
            Err(e) => {
                let err = self.target.opendal_error(Op::GetRange, path, &e);
                // OpenDAL reports a short body on a bounded read as an error of its own.
                if err.kind == ErrorKind::Other {
                    if let Some(size) = size() {
                        if range.end > size {
                            return Err(self.past_end(path, &range, Some(size)));
                        }
                    }
                }
                Err(err)
            }
        }
    }

    fn get_range_into(&self, path: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        let Backend::Local { root, .. } = &self.backend else {
            buf.clear();
            buf.extend_from_slice(&self.get_range(path, range)?);
            return Ok(());
        };
        self.validate(Op::GetRange, path)?;
        self.check_range(path, &range)?;
        self.read_local(root, path, range, buf)
    }

    fn will_read(&self, path: &str, range: Range<u64>) {
        if let (Backend::Local { root, .. }, Ok(())) = (&self.backend, self.validate(Op::GetRange, path)) {
            local_fs::will_read(root, path, range);
        }
    }

    fn stat(&self, path: &str) -> Result<ObjectMeta, StorageError> {
        self.validate(Op::Stat, path)?;
        let Some(op) = self.op()? else {
            return Err(self.target.not_found(path));
        };
        match self.block_on(op.stat(path)) {
            Ok(meta) if meta.mode() == EntryMode::FILE => {
                Ok(ObjectMeta { path: path.to_string(), size: meta.content_length() })
            }
            Ok(_) => Err(self.target.not_found(path)),
            Err(e) => Err(self.target.opendal_error(Op::Stat, path, &e)),
        }
    }

    fn list(&self, prefix: &str) -> Box<dyn Iterator<Item = Result<ObjectMeta, StorageError>> + Send + '_> {
        let fail = |err| Box::new(std::iter::once(Err(err))) as Box<dyn Iterator<Item = _> + Send>;
        if prefix.starts_with('/') || prefix.split('/').any(|c| c == "." || c == "..") {
            return fail(self.target.other(Op::List, prefix, "invalid prefix"));
        }
        let op = match self.op() {
            Ok(Some(op)) => op,
            Ok(None) => return Box::new(std::iter::empty()),
            Err(e) => return fail(e),
        };
        // List the directory part and filter by the full prefix, so that `data/a` means
        // "keys starting with data/a" on every backend.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "/",
        };
        match self.block_on(op.lister_with(dir).recursive(true)) {
            Ok(lister) => {
                Box::new(ListIter { storage: self, lister: Some(lister), prefix: prefix.to_string() })
            }
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Box::new(std::iter::empty()),
            Err(e) => fail(self.target.opendal_error(Op::List, prefix, &e)),
        }
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.validate(Op::Delete, path)?;
        match &self.backend {
            Backend::Local { root, .. } => {
                local_fs::delete(root, path).map_err(|e| self.target.io_error(Op::Delete, path, &e))
            }
            Backend::S3 { op, .. } => {
                self.block_on(op.delete(path)).map_err(|e| self.target.opendal_error(Op::Delete, path, &e))
            }
        }
    }
}

/// Pulls listing pages lazily: one `block_on` per entry, so memory stays flat however
/// many objects there are.
struct ListIter<'a> {
    storage: &'a OpendalStorage,
    /// `None` once exhausted or failed.
    lister: Option<Lister>,
    prefix: String,
}

impl Iterator for ListIter<'_> {
    type Item = Result<ObjectMeta, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let lister = self.lister.as_mut()?;
            match self.storage.block_on(lister.next()) {
                None => {
                    self.lister = None;
                    return None;
                }
                Some(Err(e)) => {
                    self.lister = None;
                    return Some(Err(self.storage.target.opendal_error(Op::List, &self.prefix, &e)));
                }
                Some(Ok(entry)) => {
                    let meta = entry.metadata();
                    let path = entry.path().trim_start_matches('/');
                    if meta.mode() != EntryMode::FILE
                        || !path.starts_with(&self.prefix)
                        || local_fs::is_internal(path)
                    {
                        continue;
                    }
                    return Some(Ok(ObjectMeta { path: path.to_string(), size: meta.content_length() }));
                }
            }
        }
    }
}

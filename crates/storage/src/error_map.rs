//! Turning OpenDAL and I/O errors into [`StorageError`]s with a coarse kind and a
//! lower-case message that names the storage location and the object.

use std::error::Error as _;
use std::io;

use crate::{ErrorKind, OpKind, StorageError};

/// The operation an error happened in.
pub(crate) type Op = OpKind;

impl OpKind {
    /// What was being done, for messages.
    fn verb(self) -> &'static str {
        match self {
            OpKind::Put => "writing",
            OpKind::Get => "reading",
            OpKind::GetRange => "reading a range of",
            OpKind::Stat => "checking",
            OpKind::List => "listing",
            OpKind::Delete => "deleting",
        }
    }
}

/// Where errors happen: the human location and, for remote storage, how to name the
/// server (`s3 endpoint http://.. (bucket b)`).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub location: String,
    pub remote: Option<String>,
    /// Attempts made when the retry layer gave up (`retries + 1`).
    pub attempts: u32,
}

impl Target {
    fn object(&self, op: Op, path: &str) -> String {
        if op == Op::List {
            format!("{} '{}' prefix in {}", op.verb(), path, self.location)
        } else {
            format!("{} '{}' in {}", op.verb(), path, self.location)
        }
    }

    pub(crate) fn not_found(&self, path: &str) -> StorageError {
        StorageError::new(ErrorKind::NotFound, format!("object '{path}' not found in {}", self.location))
    }

    pub(crate) fn already_exists(&self, path: &str) -> StorageError {
        StorageError::new(
            ErrorKind::AlreadyExists,
            format!("object '{path}' already exists in {}", self.location),
        )
    }

    pub(crate) fn other(&self, op: Op, path: &str, detail: &str) -> StorageError {
        StorageError::new(ErrorKind::Other, format!("{} failed: {detail}", self.object(op, path)))
    }

    pub(crate) fn io_error(&self, op: Op, path: &str, err: &io::Error) -> StorageError {
        let detail = lower(&err.to_string());
        match err.kind() {
            // For a put, ENOENT means a directory could not be made or vanished.
            io::ErrorKind::NotFound if op != Op::Put => self.not_found(path),
            io::ErrorKind::AlreadyExists => self.already_exists(path),
            io::ErrorKind::PermissionDenied => StorageError::new(
                ErrorKind::PermissionDenied,
                format!("permission denied {}: {detail}", self.object(op, path)),
            ),
            kind => StorageError {
                kind: ErrorKind::Other,
                message: format!("{} failed: {detail}", self.object(op, path)),
                retryable: matches!(kind, io::ErrorKind::Interrupted | io::ErrorKind::TimedOut),
            },
        }
    }

    pub(crate) fn opendal_error(&self, op: Op, path: &str, err: &opendal::Error) -> StorageError {
        use opendal::ErrorKind as K;
        if is_not_an_object(err) {
            return self.not_found(path);
        }
        let detail = detail(err);
        let retried = err.is_persistent();
        if detail.starts_with("NoSuchBucket") {
            let remote = self.remote.as_deref().unwrap_or(&self.location);
            return StorageError::new(
                ErrorKind::Config,
                format!("bucket does not exist: {remote} answered NoSuchBucket {} '{path}'", op.verb()),
            );
        }
        match err.kind() {
            // A directory (or a file used as a directory) is not an object.
            K::NotFound | K::IsADirectory | K::NotADirectory => self.not_found(path),
            K::AlreadyExists | K::ConditionNotMatch => self.already_exists(path),
            K::PermissionDenied => StorageError::new(
                ErrorKind::PermissionDenied,
                match &self.remote {
                    Some(remote) => {
                        format!("access denied by {remote} {} '{path}': {detail}", op.verb())
                    }
                    None => format!("permission denied {}: {detail}", self.object(op, path)),
                },
            ),
            K::ConfigInvalid => StorageError::new(
                ErrorKind::Config,
                format!("invalid storage configuration for {}: {detail}", self.location),
            ),
            K::RangeNotSatisfied => self.other(op, path, &format!("range not satisfiable: {detail}")),
            _ if is_network_failure(err) => {
                let remote = self.remote.as_deref().unwrap_or(&self.location);
                let attempts = if retried { self.attempts } else { 1 };
                let plural = if attempts == 1 { "attempt" } else { "attempts" };
                StorageError {
                    kind: ErrorKind::Unreachable,
                    message: format!(
                        "cannot reach {remote}: {detail} after {attempts} {plural} ({} '{path}')",
                        op.verb()
                    ),
                    retryable: true,
                }
            }
            kind => StorageError {
                kind: ErrorKind::Other,
                message: format!("{} failed: {detail}", self.object(op, path)),
                retryable: retried || err.is_temporary() || kind == K::RateLimited,
            },
        }
    }
}

/// Reading a directory, or through a file as if it were one: OpenDAL's fs service
/// reports the raw I/O error as `Unexpected`.
fn is_not_an_object(err: &opendal::Error) -> bool {
    std::iter::successors(err.source(), |e| (*e).source()).any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| matches!(io.kind(), io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory))
    })
}

/// Transport-level failures: the request never got a proper answer (connection refused,
/// DNS, reset, timeout). OpenDAL reports them as `Unexpected` with a transport message.
fn is_network_failure(err: &opendal::Error) -> bool {
    if err.kind() != opendal::ErrorKind::Unexpected {
        return false;
    }
    let message = err.message();
    message.contains("send http request")
        || message.contains("read data from http response")
        || message.contains("timeout reached")
}

/// The most useful short description of an OpenDAL error: the root cause for network
/// errors (`connection refused`), the server's message for service errors.
fn detail(err: &opendal::Error) -> String {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                io::ErrorKind::TimedOut => return "connection timed out".into(),
                io::ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
        let text = cause.to_string().to_lowercase();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return "cannot resolve host name".into();
        }
        if text.contains("connection refused") {
            return "connection refused".into();
        }
        source = cause.source();
    }
    let message = err.message();
    if message.contains("timeout reached") {
        return "timed out".into();
    }
    if let Some(service) = s3_error(message) {
        return service;
    }
    let root = std::iter::successors(err.source(), |e| (*e).source()).last();
    match root {
        Some(root) if is_network_failure(err) => lower(&root.to_string()),
        _ if !message.is_empty() => lower(message),
        // HEAD responses have no body: all there is to say is the status.
        _ => http_status(&err.to_string()).map_or_else(
            || format!("{} error", err.kind()).to_lowercase(),
            |status| format!("http status {status}"),
        ),
    }
}

/// `S3Error { code: "NoSuchKey", message: "The key..", .. }` (OpenDAL's rendering of an
/// S3 error response) as `NoSuchKey: The key..`. The code keeps its case: it is an
/// identifier users search for.
fn s3_error(message: &str) -> Option<String> {
    let field = |name: &str| {
        let start = message.find(&format!("{name}: \""))? + name.len() + 3;
        let len = message[start..].find('"')?;
        Some(&message[start..start + len]).filter(|v| !v.is_empty())
    };
    message.contains("S3Error {").then_some(())?;
    let code = field("code")?;
    Some(match field("message") {
        Some(text) => format!("{code}: {}", lower(text)),
        None => code.to_string(),
    })
}

/// The HTTP status from OpenDAL's context rendering (`response: Parts { status: 500, ..`).
fn http_status(display: &str) -> Option<u16> {
    let start = display.find("status: ")? + "status: ".len();
    display[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Lower-cases the first character, so OS messages read well after a colon.
pub(crate) fn lower(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

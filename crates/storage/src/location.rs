//! Parsing repository locations: a local path (`/srv/repo`, `repo`, `file:///srv/repo`) or
//! `s3://bucket/prefix`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{ErrorKind, StorageError};

/// Where a repository lives, parsed from what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local (or locally mounted) filesystem; always absolute.
    Local(PathBuf),
    /// A bucket on an S3-compatible object store, with an optional key prefix
    /// (no leading or trailing `/`, may be empty).
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses a location. Relative local paths are made absolute against the current
    /// directory (without touching the filesystem: the directory may not exist yet).
    pub fn parse(input: &str) -> Result<Location, StorageError> {
        let config_error = |msg: String| StorageError::new(ErrorKind::Config, msg);
        if input.trim().is_empty() {
            return Err(config_error("empty repository location".to_string()));
        }
        let Some((scheme, rest)) = split_scheme(input) else {
            return local(Path::new(input), input);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // Only `file:///abs/path` (empty authority) or `file://localhost/abs/path`.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(config_error(format!(
                        "invalid file URL '{input}': expected file:///absolute/path"
                    )));
                }
                local(Path::new(path), input)
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(config_error(format!("missing bucket in '{input}': use s3://bucket/prefix")));
                }
                if bucket.contains(['?', '#', '@', ':']) || prefix.contains(['?', '#']) {
                    return Err(config_error(format!(
                        "invalid s3 URL '{input}': use s3://bucket/prefix (options such as the endpoint are set separately)"
                    )));
                }
                let prefix = prefix.split('/').filter(|part| !part.is_empty()).collect::<Vec<_>>().join("/");
                if prefix.split('/').any(|part| part == "." || part == "..") {
                    return Err(config_error(format!(
                        "invalid s3 prefix in '{input}': '.' and '..' are not allowed"
                    )));
                }
                Ok(Location::S3 { bucket: bucket.to_string(), prefix })
            }
            other => Err(config_error(format!(
                "unknown repository URL scheme '{other}' in '{input}': use a local path or s3://bucket/prefix"
            ))),
        }
    }
}

/// `scheme://rest` if `input` looks like a URL; a scheme is a letter followed by letters,
/// digits, `+`, `-`, `.` (RFC 3986), so `C:\repo` or `./a://b` are paths.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = input.split_once("://")?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some((scheme, rest))
}

fn local(path: &Path, input: &str) -> Result<Location, StorageError> {
    let absolute = std::path::absolute(path).map_err(|e| {
        StorageError::new(
            ErrorKind::Config,
            format!("cannot resolve local path '{input}': {}", crate::error_map::lower(&e.to_string())),
        )
    })?;
    Ok(Location::Local(clean(&absolute)))
}

/// Removes `.` components and resolves `..` lexically, so messages show `/srv/repo`
/// rather than `/home/me/../../srv/./repo/`.
fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_paths() {
        assert_eq!(Location::parse("/srv/repo/").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(Location::parse("/srv/./x/../repo").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(Location::parse("file:///srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Location::parse("repo").unwrap(), Location::Local(cwd.join("repo")));
        assert_eq!(Location::parse("./a://b").unwrap(), Location::Local(cwd.join("a:/b")));
        assert_eq!(Location::parse("/srv/repo").unwrap().to_string(), "/srv/repo");
    }

    #[test]
    fn s3_urls() {
        let loc = Location::parse("s3://backups/pg/main/").unwrap();
        assert_eq!(loc, Location::S3 { bucket: "backups".into(), prefix: "pg/main".into() });
        assert_eq!(loc.to_string(), "s3://backups/pg/main");
        let loc = Location::parse("S3://backups").unwrap();
        assert_eq!(loc, Location::S3 { bucket: "backups".into(), prefix: String::new() });
        assert_eq!(loc.to_string(), "s3://backups");
    }

    #[test]
    fn errors() {
        let err = Location::parse("ftp://host/x").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert_eq!(
            err.message,
            "unknown repository URL scheme 'ftp' in 'ftp://host/x': use a local path or s3://bucket/prefix"
        );
        assert_eq!(Location::parse("s3://").unwrap_err().kind, ErrorKind::Config);
        assert_eq!(Location::parse("s3:///x").unwrap_err().kind, ErrorKind::Config);
        assert_eq!(Location::parse("file://host/x").unwrap_err().kind, ErrorKind::Config);
        assert_eq!(Location::parse("").unwrap_err().kind, ErrorKind::Config);
    }
}

//! Settings for opening storage: S3 endpoint and credentials, bandwidth limit, retries and
//! timeouts. Nothing here is read implicitly from the environment; see
//! [`StorageOptions::fill_from_env`].

use std::fmt;
use std::time::Duration;

/// How to reach and use the storage. `Default` gives no S3 settings, no bandwidth limit,
/// 3 retries (4 attempts), 5 s connect timeout and 60 s per-attempt timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// S3 endpoint URL, e.g. `http://127.0.0.1:9000`; `None` means AWS
    /// (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// S3 region; `None` means `us-east-1` (most S3-compatible servers ignore it).
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Address buckets as `endpoint/bucket/key` (path style, what MinIO, s3s and most
    /// self-hosted servers want) instead of `bucket.endpoint/key` (virtual-host style, AWS).
    /// Endpoints given as an IP address or `localhost` always use path style.
    pub path_style: bool,
    /// Bytes per second, applied separately to reads and to writes; `None` is unlimited.
    pub bandwidth_limit: Option<u64>,
    /// How many times a transiently failing call is retried (so `retries + 1` attempts),
    /// with exponential backoff and jitter starting at 100 ms, capped at 1 s per wait.
    pub retries: u32,
    /// Bound on establishing one TCP/TLS connection to the S3 endpoint.
    pub connect_timeout: Duration,
    /// Bound on one attempt of one request (and on each part of a multipart upload, which
    /// uses 8 MiB parts), so a hung endpoint cannot hang the caller forever.
    pub timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: false,
            bandwidth_limit: None,
            retries: 3,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        }
    }
}

impl StorageOptions {
    /// Fills the S3 fields that are still `None` from the usual AWS environment variables:
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`. Values set
    /// explicitly (command line, config file) win. `~/.aws` files and instance metadata
    /// are deliberately never consulted.
    pub fn fill_from_env(&mut self) {
        self.fill_from(|name| std::env::var(name).ok());
    }

    /// [`fill_from_env`](Self::fill_from_env) in builder style.
    pub fn with_env(mut self) -> Self {
        self.fill_from_env();
        self
    }

    /// Like [`fill_from_env`](Self::fill_from_env) with a custom lookup (for tests).
    pub fn fill_from(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let first =
            |names: &[&str]| names.iter().find_map(|name| lookup(name).filter(|value| !value.is_empty()));
        fill(&mut self.endpoint, || first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]));
        fill(&mut self.region, || first(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
        // Credentials come as a set: never pair an explicit key id with an env secret.
        if self.access_key_id.is_none() && self.secret_access_key.is_none() {
            self.access_key_id = first(&["AWS_ACCESS_KEY_ID"]);
            self.secret_access_key = first(&["AWS_SECRET_ACCESS_KEY"]);
            fill(&mut self.session_token, || first(&["AWS_SESSION_TOKEN"]));
        }
    }
}

fn fill(field: &mut Option<String>, value: impl FnOnce() -> Option<String>) {
    if field.is_none() {
        *field = value();
    }
}

// Hand-written so secrets never end up in logs or panic messages.
impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("StorageOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("path_style", &self.path_style)
            .field("bandwidth_limit", &self.bandwidth_limit)
            .field("retries", &self.retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn fills_only_missing_fields() {
        let vars = [
            ("AWS_ENDPOINT_URL", "http://generic"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-specific"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
        ];
        let mut opts = StorageOptions { region: Some("us-east-2".into()), ..Default::default() };
        opts.fill_from(env(&vars));
        assert_eq!(opts.endpoint.as_deref(), Some("http://s3-specific"));
        assert_eq!(opts.region.as_deref(), Some("us-east-2"));
        assert_eq!(opts.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(opts.secret_access_key.as_deref(), Some("SECRET"));
        assert_eq!(opts.session_token.as_deref(), Some("TOKEN"));
    }

    #[test]
    fn explicit_credentials_are_not_mixed_with_env() {
        let vars = [("AWS_ACCESS_KEY_ID", "ENVKEY"), ("AWS_SECRET_ACCESS_KEY", "ENVSECRET")];
        let mut opts = StorageOptions { access_key_id: Some("MINE".into()), ..Default::default() };
        opts.fill_from(env(&vars));
        assert_eq!(opts.access_key_id.as_deref(), Some("MINE"));
        assert_eq!(opts.secret_access_key, None);
    }

    #[test]
    fn debug_redacts_secrets() {
        let opts = StorageOptions {
            secret_access_key: Some("hunter2".into()),
            session_token: Some("tok".into()),
            ..Default::default()
        };
        let shown = format!("{opts:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tok\""), "{shown}");
    }
}

//! `S3Server`: runs the s3s-fs S3 server on 127.0.0.1 with a temp root, a test bucket and
//! fixed credentials, for tests against a real S3 implementation. Killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use cairn_storage::{Storage, StorageOptions};

/// A running s3s-fs server. s3s-fs keeps each bucket as a directory under its root and
/// checks SigV4 signatures against one access key / secret key pair.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl S3Server {
    pub const ACCESS_KEY: &'static str = "cairn-test-access-key";
    pub const SECRET_KEY: &'static str = "cairn-test-secret-key";
    pub const BUCKET: &'static str = "cairn-test";
    pub const REGION: &'static str = "us-east-1";

    /// Starts a server on a free port with bucket [`S3Server::BUCKET`] and returns once it
    /// accepts requests. Panics if the s3s-fs binary cannot be found (run
    /// `scripts/install-s3s-fs`) or the server does not come up.
    pub fn start() -> S3Server {
        let binary = find_binary();
        let root = tempfile::Builder::new()
            .prefix("cairn-s3s-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir for s3s-fs: {e}"));
        // Port 0: the kernel picks a free port, s3s-fs logs it; no race with other tests.
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", Self::ACCESS_KEY, "--secret-key", Self::SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let endpoint = match wait_for_endpoint(&mut child) {
            Ok(endpoint) => endpoint,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!("s3s-fs ({}) did not start: {why}\nstderr:\n{stderr}", binary.display());
            }
        };
        if let Some(mut stderr) = child.stderr.take() {
            // Drain so a chatty server never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        }
        let server = S3Server { child, root, endpoint };
        server.create_bucket(Self::BUCKET);
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn bucket(&self) -> &str {
        Self::BUCKET
    }

    pub fn access_key(&self) -> &str {
        Self::ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        Self::SECRET_KEY
    }

    /// The directory s3s-fs stores into (bucket `b`, key `k` is the file `<root>/b/k`).
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// Creates another bucket (s3s-fs maps a bucket to a directory under its root).
    pub fn create_bucket(&self, name: &str) {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create bucket directory {}: {e}", dir.display()));
    }

    /// Options reaching this server: endpoint, region, credentials, path-style addressing,
    /// and short retries/timeouts suited to tests.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            region: Some(Self::REGION.to_string()),
            access_key_id: Some(Self::ACCESS_KEY.to_string()),
            secret_access_key: Some(Self::SECRET_KEY.to_string()),
            session_token: None,
            path_style: true,
            retries: 2,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(20),
            ..StorageOptions::default()
        }
    }

    /// `s3://<bucket>/<prefix>` (just `s3://<bucket>` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", Self::BUCKET)
        } else {
            format!("s3://{}/{prefix}", Self::BUCKET)
        }
    }

    /// Storage on this server's bucket under `prefix`, via [`cairn_storage::open`].
    pub fn open(&self, prefix: &str) -> Arc<dyn Storage> {
        cairn_storage::open(&self.url(prefix), &self.storage_options())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.url(prefix)))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$CAIRN_S3S_FS`, else `s3s-fs` on `PATH`, else `$CARGO_HOME/bin` or `~/.cargo/bin`.
fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CAIRN_S3S_FS") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
        panic!("CAIRN_S3S_FS={} is not a file: run scripts/install-s3s-fs", path.display());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|dir| dir.join("s3s-fs")).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin/s3s-fs"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the s3s-fs S3 test server is not installed (looked at $CAIRN_S3S_FS, PATH, ~/.cargo/bin): \
             run scripts/install-s3s-fs"
        )
    })
}

/// Reads s3s-fs's log until it prints its address, then keeps draining the pipe in the
/// background so the server never blocks on a full stdout.
fn wait_for_endpoint(child: &mut Child) -> Result<String, String> {
    const MARKER: &str = "server is running at ";
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(MARKER) {
                let endpoint = line[at + MARKER.len()..].trim().to_string();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(endpoint);
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(endpoint) if endpoint.starts_with("http://") => Ok(endpoint),
        Ok(other) => Err(format!("unexpected address {other:?}")),
        Err(_) => match child.try_wait() {
            Ok(Some(status)) => Err(format!("it exited with {status}")),
            _ => Err("no \"server is running\" line within 15 s".to_string()),
        },
    }
}

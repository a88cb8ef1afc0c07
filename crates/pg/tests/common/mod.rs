//! A throwaway PostgreSQL cluster for this crate's real-server tests: `initdb --data-checksums`
//! in a temporary directory, run as the `postgres` user when the tests run as root, reachable
//! only over a Unix socket inside that directory. Stopped (immediately) when dropped.
//!
//! The server binaries come from `CAIRN_PG_BINDIR`, or PostgreSQL 15's Debian location. A
//! missing server is a test failure, not a skip: CI installs PostgreSQL.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEFAULT_BINDIR: &str = "/usr/lib/postgresql/15/bin";

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub bindir: PathBuf,
    running: bool,
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("cannot run `id -u`");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs `program` as the postgres user when we are root, as ourselves otherwise.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Gives a directory we made to the postgres user (when we are root).
pub fn give_to_postgres(path: &Path) {
    if is_root() {
        let out = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).output().expect("chown");
        check("chown", out);
    }
}

pub fn bindir() -> PathBuf {
    let dir = std::env::var_os("CAIRN_PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINDIR));
    let initdb = dir.join("initdb");
    assert!(
        initdb.is_file(),
        "PostgreSQL server binaries not found: {} does not exist. These tests need a real server: \
         install PostgreSQL (apt-get install postgresql-15) or point CAIRN_PG_BINDIR at a bin \
         directory holding initdb, pg_ctl, postgres and pg_controldata.",
        initdb.display()
    );
    dir
}

impl PgCluster {
    /// `initdb --data-checksums` plus `extra` initdb arguments; not started.
    pub fn init(extra: &[&str]) -> PgCluster {
        let bindir = bindir();
        let dir = tempfile::Builder::new().prefix("cairn-pg-").tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        give_to_postgres(&root);
        let data = root.join("data");
        let out = as_postgres(&bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "--data-checksums",
                "--no-sync",
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(extra)
            .output()
            .expect("cannot run initdb");
        check("initdb", out);
        PgCluster { dir, socket_dir: root.clone(), root, data, bindir, running: false }
    }

    pub fn start(&mut self) {
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c port=5432",
            self.socket_dir.display()
        );
        let out = as_postgres(&self.bindir.join("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-o", &opts])
            .output()
            .expect("cannot run pg_ctl start");
        if !out.status.success() {
            let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
            panic!("pg_ctl start failed: {}\nserver log:\n{log}", String::from_utf8_lossy(&out.stderr));
        }
        self.running = true;
    }

    pub fn stop(&mut self) {
        let out = as_postgres(&self.bindir.join("pg_ctl"))
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data)
            .output()
            .expect("cannot run pg_ctl stop");
        check("pg_ctl stop", out);
        self.running = false;
    }

    /// Runs SQL with psql, statement by statement (each in its own transaction), returning
    /// unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        use std::io::Write;
        let mut child = as_postgres(&self.client("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run psql");
        child.stdin.take().expect("psql stdin").write_all(sql.as_bytes()).expect("write to psql");
        let out = child.wait_with_output().expect("psql");
        check(&format!("psql {sql:?}"), out).trim().to_string()
    }

    /// A client tool: from the server's bin directory if there, else the PostgreSQL 15 one.
    pub fn client(&self, name: &str) -> PathBuf {
        let own = self.bindir.join(name);
        if own.is_file() {
            own
        } else {
            Path::new(DEFAULT_BINDIR).join(name)
        }
    }

    /// A tool that can serve as an oracle for this cluster: of the cluster's own major, or
    /// (with `newer_ok`, for protocol clients such as pg_basebackup) of a later one. `None`,
    /// with a note on stderr, when there is none: the caller then skips only that oracle.
    pub fn oracle_tool(&self, name: &str, newer_ok: bool) -> Option<PathBuf> {
        let tool = self.client(name);
        let out = Command::new(&tool).arg("--version").output().ok()?;
        // "pg_checksums (PostgreSQL) 15.4 (Debian 15.4-2)"
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.split(") ").nth(1)?;
        let major: u32 = version.split(['.', ' ']).next()?.trim().parse().ok()?;
        let fits = major == self.major() || (newer_ok && major > self.major());
        if !fits {
            eprintln!(
                "NOTE: no {name} for PostgreSQL {} ({} is {major}); that oracle is not consulted",
                self.major(),
                tool.display()
            );
        }
        fits.then_some(tool)
    }

    /// Runs a tool as postgres, returning its output whatever its status.
    pub fn run(&self, tool: &Path, args: &[&std::ffi::OsStr]) -> Output {
        as_postgres(tool).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
    }

    /// `pg_controldata` output as label -> value, when there is a pg_controldata of this major.
    pub fn controldata(&self) -> Option<BTreeMap<String, String>> {
        let tool = self.oracle_tool("pg_controldata", false)?;
        let out = self.run(&tool, &["-D".as_ref(), self.data.as_os_str()]);
        let text = check("pg_controldata", out);
        Some(
            text.lines()
                .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
                .collect(),
        )
    }

    /// A fresh directory under the cluster's root owned by postgres.
    pub fn make_dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        give_to_postgres(&p);
        p
    }

    pub fn major(&self) -> u32 {
        let v = std::fs::read_to_string(self.data.join("PG_VERSION")).expect("PG_VERSION");
        v.trim().parse().expect("PG_VERSION is a number")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.bindir.join("pg_ctl"))
                .args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&self.data)
                .output();
        }
    }
}

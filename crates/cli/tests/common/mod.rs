//! What the binary's tests share: running `cairn` on a repository with JSON output, and
//! reading its success or its error.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use cairn_testkit::PgCluster;
use serde_json::Value;

/// `cairn ARGS -B REPO --format json`, with the tests' password.
pub fn cairn(repo: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("cairn")
        .unwrap()
        .env_remove("BACKUP_PATH")
        // The machine's connection settings must not reach the tests' servers.
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("CAIRN_PASSWORD", "demo password")
        .args(args)
        .args(["-B", repo.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap()
}

/// The JSON of a command that must succeed.
pub fn ok(out: Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap()
}

/// The message of a command that must fail with exit `status` and error `code`.
pub fn fails(out: Output, status: i32, code: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(status),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

/// `add-instance --instance main` for `cluster`'s data directory and connection, with `extra`
/// options.
pub fn add_instance(repo: &Path, cluster: &PgCluster, extra: &[&str]) -> Value {
    let (port, pgdata) = (cluster.port().to_string(), cluster.data_dir().to_str().unwrap().to_string());
    let mut args = vec!["add-instance", "--instance", "main", "-D", &pgdata];
    args.extend(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"]);
    args.extend(extra);
    ok(cairn(repo, &args))
}

/// A new repository under `work` (`init` with `init_args`) with instance `main` for `cluster`.
pub fn repository(work: &Path, cluster: &PgCluster, init_args: &[&str]) -> PathBuf {
    let repo = work.join("repo");
    ok(cairn(&repo, &[&["init"][..], init_args].concat()));
    add_instance(&repo, cluster, &[]);
    repo
}

/// A command's standard output: `{"progress": ...}` lines, then the result's JSON document.
pub fn progress_and_result(out: &Output) -> (Vec<Value>, Value) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.iter().take_while(|l| l.starts_with("{\"progress\"")).count();
    let progress = lines[..n].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    (progress, serde_json::from_str(&lines[n..].join("\n")).unwrap())
}

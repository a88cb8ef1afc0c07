//! What the binary's tests share: running `cairn` on a repository with JSON output, and
//! reading its success or its error.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// `cairn ARGS -B REPO --format json`, with the tests' password.
pub fn cairn(repo: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("cairn")
        .unwrap()
        .env_remove("BACKUP_PATH")
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

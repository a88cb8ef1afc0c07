//! The `cairn` binary end to end: commands, JSON output, error codes and exit statuses, on a
//! local directory and on a real S3-compatible server.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use cairn_testkit::S3Server;
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn repo(&self) -> String {
        self.dir.path().join("repo").to_str().unwrap().to_string()
    }

    fn password_file(&self, name: &str, password: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{password}\n")).unwrap();
        path
    }
}

fn cairn() -> Command {
    let mut cmd = Command::cargo_bin("cairn").unwrap();
    for var in [
        "BACKUP_PATH",
        "CAIRN_PASSWORD",
        "CAIRN_PASSWORD_FILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `args`, expects exit status `status`, returns stdout parsed as JSON.
fn json(args: &[&str], status: i32) -> Value {
    let out = cairn().args(args).arg("--format").arg("json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(status),
        "cairn {args:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn init(env: &Env, pw: &Path) {
    json(&["init", "-B", &env.repo(), "--password-file", pw.to_str().unwrap()], 0);
}

#[test]
fn init_check_and_keys_through_the_binary() {
    let env = Env::new();
    let pw = env.password_file("pw", "first secret");
    let config = json(&["init", "-B", &env.repo(), "--password-file", pw.to_str().unwrap()], 0);
    assert_eq!(config["encryption"], "aes-256-gcm");
    assert_eq!(config["version"], 2);

    // Plain output for people.
    let out =
        cairn().args(["check", "-B", &env.repo(), "--password-file", pw.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no errors found"));
    let report =
        json(&["check", "-B", &env.repo(), "--password-file", pw.to_str().unwrap(), "--read-data"], 0);
    assert_eq!(report["keys"], 1);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);

    let second = env.password_file("pw2", "second secret");
    let added = json(
        &[
            "key",
            "add",
            "-B",
            &env.repo(),
            "--password-file",
            pw.to_str().unwrap(),
            "--new-password-file",
            second.to_str().unwrap(),
        ],
        0,
    );
    let added = added["added"].as_str().unwrap().to_string();
    // The repository path also comes from BACKUP_PATH, the password from CAIRN_PASSWORD.
    let out = cairn()
        .env("BACKUP_PATH", env.repo())
        .env("CAIRN_PASSWORD", "second secret")
        .args(["key", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let current: Vec<&Value> = keys.as_array().unwrap().iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], added.as_str());
    let first = keys.as_array().unwrap().iter().find(|k| k["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Remove the first key while opened with the second; then the last one is refused.
    json(&["key", "remove", "-B", &env.repo(), "--password-file", second.to_str().unwrap(), &first[..8]], 0);
    let wrong = json(&["check", "-B", &env.repo(), "--password-file", pw.to_str().unwrap()], 4);
    assert_eq!(error_code(&wrong), "wrong-password");
    let refused = json(
        &["key", "remove", "-B", &env.repo(), "--password-file", second.to_str().unwrap(), &added[..8]],
        2,
    );
    assert!(refused["error"]["message"].as_str().unwrap().contains("last key"), "{refused}");

    // A fast key for a machine: refused for a short password, and tried first when opening.
    let short = env.password_file("short", "too short for fast");
    let add_fast = |file: &Path, status| {
        json(
            &[
                "key",
                "add",
                "-B",
                &env.repo(),
                "--password-file",
                second.to_str().unwrap(),
                "--fast-kdf",
                "--new-password-file",
                file.to_str().unwrap(),
            ],
            status,
        )
    };
    assert!(add_fast(&short, 2)["error"]["message"].as_str().unwrap().contains("24 random characters"));
    let machine = env.password_file("machine", "Zk3vQ9pLx2Rw8Ty6Bn4Mc1Hd7Gf5Js0A");
    add_fast(&machine, 0);
    let keys = json(&["key", "list", "-B", &env.repo(), "--password-file", machine.to_str().unwrap()], 0);
    let fast: Vec<&Value> =
        keys.as_array().unwrap().iter().filter(|k| k["kdf"]["memory_kib"] == 8192).collect();
    assert_eq!(fast.len(), 1, "{keys}");
    assert_eq!(fast[0]["current"], true, "{keys}");
}

#[test]
fn bad_input_gets_a_clear_error_and_a_documented_exit_status() {
    let env = Env::new();
    let pw = env.password_file("pw", "secret");
    let pw = pw.to_str().unwrap();

    let missing = json(&["check", "-B", &env.repo(), "--password-file", pw], 3);
    assert_eq!(error_code(&missing), "repo-not-found");
    assert!(missing["error"]["message"].as_str().unwrap().contains("cairn init"));

    init(&env, Path::new(pw));
    let again = json(&["init", "-B", &env.repo(), "--password-file", pw, "--encryption", "none"], 3);
    assert_eq!(error_code(&again), "repo-exists");

    // No password and no terminal to ask on.
    let none = json(&["check", "-B", &env.repo()], 4);
    assert_eq!(error_code(&none), "password-required");

    let scheme = json(&["check", "-B", "ftp://host/repo"], 6);
    assert_eq!(error_code(&scheme), "storage-config");
    assert!(scheme["error"]["message"].as_str().unwrap().contains("ftp"));

    let started = Instant::now();
    let unreachable = json(
        &[
            "init",
            "-B",
            "s3://bucket/repo",
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--s3-path-style",
            "--encryption",
            "none",
        ],
        6,
    );
    assert_eq!(error_code(&unreachable), "storage-unreachable");
    assert!(unreachable["error"]["message"].as_str().unwrap().contains("127.0.0.1:9"), "{unreachable}");
    assert!(started.elapsed() < Duration::from_secs(30), "gave up after {:?}", started.elapsed());

    let empty = env.password_file("empty", "");
    let refused =
        json(&["init", "-B", &format!("{}-2", env.repo()), "--password-file", empty.to_str().unwrap()], 2);
    assert_eq!(error_code(&refused), "invalid-argument");
    assert!(!Path::new(&format!("{}-2", env.repo())).join("config").exists());

    // The only key damaged: damage, not "wrong password".
    let keys = Path::new(&env.repo()).join("keys");
    let key = std::fs::read_dir(&keys).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&key).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&key, bytes).unwrap();
    let damaged = json(&["check", "-B", &env.repo(), "--password-file", pw], 7);
    assert_eq!(error_code(&damaged), "damaged");

    // clap's own errors: exit 2.
    cairn().args(["check"]).assert().code(2);
    cairn().args(["frobnicate"]).assert().code(2);
}

#[test]
fn unencrypted_repository_prune_unlock_and_version() {
    let env = Env::new();
    let config = json(&["init", "-B", &env.repo(), "--encryption", "none", "--compress-algorithm", "lz4"], 0);
    assert_eq!(config["encryption"], "none");
    assert_eq!(config["compression"]["algorithm"], "lz4");
    let pruned = json(&["prune", "-B", &env.repo(), "--dry-run"], 0);
    assert_eq!(pruned["dry_run"], true);

    // A lock left by a process that no longer exists is stale.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let lock = serde_json::json!({"exclusive": true, "host": host, "pid": pid, "user": "x",
        "created": "2026-01-01T00:00:00Z", "refreshed": "2026-01-01T00:00:00Z"});
    let locks = Path::new(&env.repo()).join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(locks.join("ab".repeat(32)), lock.to_string()).unwrap();
    let removed = json(&["unlock", "-B", &env.repo()], 0);
    assert_eq!(removed.as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(&locks).unwrap().count(), 0);

    let version = json(&["version"], 0);
    assert_eq!(version["repository_format"], 2);
    cairn().args(["init", "--help"]).assert().success();
}

#[test]
fn a_repository_on_s3() {
    let s3 = S3Server::start();
    let env = Env::new();
    let pw = env.password_file("pw", "s3 secret");
    let url = s3.url("team/pg");
    let with_s3 = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
            .env("AWS_REGION", "us-east-1")
            .args([
                "--s3-endpoint",
                s3.endpoint(),
                "--s3-path-style",
                "--password-file",
                pw.to_str().unwrap(),
                "--format",
                "json",
            ]);
    };
    let mut init = cairn();
    init.args(["init", "-B", &url]);
    with_s3(&mut init);
    init.assert().success();
    assert!(s3.root_dir().join(s3.bucket()).join("team/pg/config").exists());

    let mut check = cairn();
    check.args(["check", "-B", &url, "--read-data"]);
    with_s3(&mut check);
    check.assert().success();

    let mut again = cairn();
    again.args(["init", "-B", &url]);
    with_s3(&mut again);
    again.assert().code(3);

    // s3s-fs checks signatures: a wrong secret is refused.
    let mut denied = cairn();
    denied.args(["check", "-B", &url]);
    with_s3(&mut denied);
    let out = denied.env("AWS_SECRET_ACCESS_KEY", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stdout));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error_code(&v), "storage-denied");
}

#[test]
fn archive_commands_refuse_bad_input_clearly() {
    let env = Env::new();
    let pw = env.password_file("pw", "secret");
    let pw = pw.to_str().unwrap();
    init(&env, Path::new(pw));
    let repo = env.repo();
    let file = env.dir.path().join("some-file");
    std::fs::write(&file, vec![7u8; 16 << 20]).unwrap();
    let file = file.to_str().unwrap();
    let push = |instance: &str, name: &str, status| {
        json(
            &["archive-push", "-B", &repo, "--password-file", pw, "--instance", instance, file, name],
            status,
        )
    };
    // Not a WAL file name; not a WAL segment; an instance the repository does not have.
    assert!(push("main", "notes.txt", 2)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a WAL file name"));
    let v = push("main", "000000010000000000000001", 11);
    assert_eq!(error_code(&v), "wal-mismatch");
    assert!(v["error"]["message"].as_str().unwrap().contains("000000010000000000000001"), "{v}");
    assert_eq!(error_code(&push("nosuch", "00000002.history", 8)), "instance-not-found");

    // archive-get: a missing file is exit 1 and silent; any failure is above 128, so that the
    // server stops recovery rather than ending it.
    let dest = env.dir.path().join("fetched");
    let dest = dest.to_str().unwrap();
    let out = cairn()
        .args(["archive-get", "-B", &repo, "--password-file", pw, "--instance", "main"])
        .args(["000000010000000000000001", dest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let missing = env.dir.path().join("no-repo");
    let v = json(
        &[
            "archive-get",
            "-B",
            missing.to_str().unwrap(),
            "--instance",
            "main",
            "000000010000000000000001",
            dest,
        ],
        128 + 3,
    );
    assert_eq!(error_code(&v), "repo-not-found");
}

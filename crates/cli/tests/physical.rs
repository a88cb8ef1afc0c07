//! The physical backup commands through the binary, against a real PostgreSQL 15 cluster:
//! add-instance, backup, show, validate, restore, and the errors a DBA meets.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;

use cairn_testkit::PgCluster;
use serde_json::Value;

mod common;
use common::{add_instance, cairn, fails, ok, repository};

#[test]
fn backup_show_validate_restore_and_refusals() {
    let cluster = PgCluster::start(15);
    cluster.psql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 10000) g");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    ok(cairn(&repo, &["init"]));
    let pgdata = cluster.data_dir().to_str().unwrap().to_string();
    let port = cluster.port().to_string();
    let conn = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];

    // A backup of an instance the repository does not know.
    fails(cairn(&repo, &["backup", "--instance", "main"]), 8, "instance-not-found");
    // A data directory that is not one.
    let msg = fails(
        cairn(&repo, &["add-instance", "--instance", "main", "-D", work.path().to_str().unwrap()]),
        2,
        "invalid-argument",
    );
    assert!(msg.contains("PG_VERSION"), "{msg}");

    let mut add = vec!["add-instance", "--instance", "main", "-D", pgdata.as_str()];
    add.extend(conn);
    ok(cairn(&repo, &add));
    fails(cairn(&repo, &add), 8, "instance-exists");
    let config = ok(cairn(&repo, &["show-config", "--instance", "main"]));
    assert_eq!(config["connection"]["port"], cluster.port());

    let backup = ok(cairn(&repo, &["backup", "--instance", "main", "-j", "2", "--note", "first"]));
    assert_eq!(backup["status"], "OK");
    let id = backup["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 6);
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 1);
    assert_eq!(shown[0]["note"], "first");
    assert!(shown[0]["start_lsn"].as_str().unwrap().contains('/'));
    let validated = ok(cairn(&repo, &["validate", "--instance", "main", "-i", &id]));
    assert!(validated["pages"].as_u64().unwrap() > 80, "every data page re-checked: {validated}");
    let all = ok(cairn(&repo, &["validate"]));
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    fails(cairn(&repo, &["validate", "--instance", "main", "-i", "NOSUCH"]), 8, "backup-not-found");

    // Restore: refused into a running cluster and a non-empty directory; fine into a new one.
    let msg = fails(
        cairn(&repo, &["restore", "--instance", "main", "-D", &pgdata, "--force"]),
        10,
        "restore-refused",
    );
    assert!(msg.contains("running"), "{msg}");
    let busy = work.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("precious"), "x").unwrap();
    let msg = fails(
        cairn(&repo, &["restore", "--instance", "main", "-D", busy.to_str().unwrap()]),
        10,
        "restore-refused",
    );
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(std::fs::read_to_string(busy.join("precious")).unwrap(), "x", "nothing was touched");
    let target = work.path().join("restored");
    let restored =
        ok(cairn(&repo, &["restore", "--instance", "main", "-D", target.to_str().unwrap(), "-j", "2"]));
    assert_eq!(restored["backup_id"], id.as_str());
    assert_eq!(restored["files"], backup["files"], "backup and restore count the same files");
    assert_eq!(restored["bytes"], backup["data_bytes"], "what was read is what comes back");
    assert!(target.join("backup_label").exists() && target.join("global/pg_control").exists());

    // The server down: a clear error, and an ERROR record, never an OK backup.
    drop(cluster);
    let msg = fails(cairn(&repo, &["backup", "--instance", "main"]), 9, "db-unreachable");
    assert!(msg.contains("127.0.0.1"), "{msg}");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert!(shown.as_array().unwrap().iter().all(|b| b["status"] == "OK"), "{shown}");
}

/// A cluster with a first backup (DONE) and new data since, so that the next backup writes
/// packs for seconds: for interrupting it.
struct Interrupted {
    cluster: PgCluster,
    work: tempfile::TempDir,
    repo: std::path::PathBuf,
    first: Value,
}

impl Interrupted {
    fn new() -> Interrupted {
        let cluster = PgCluster::start(15);
        // Enough incompressible data that the backup takes a while and writes several packs.
        cluster.psql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 600000) g");
        let work = tempfile::tempdir().unwrap();
        // Small packs: the writer buffers only a few, so a rate-limited backup is held back
        // while it copies, not after pg_backup_stop while its last packs upload.
        let repo = repository(work.path(), &cluster, &["--pack-size", "1M"]);
        let first = ok(cairn(&repo, &["backup", "--instance", "main", "--no-validate"]));
        // New data since the first backup (so the next one writes packs while copying); the
        // old table is unchanged, so its chunks are reused.
        cluster.psql("CREATE TABLE more AS SELECT g, md5((g * 3)::text) || md5((g * 5)::text) AS v FROM generate_series(1, 900000) g; CHECKPOINT");
        Interrupted { cluster, work, repo, first }
    }

    fn manifests(&self) -> usize {
        std::fs::read_dir(self.repo.join("manifests")).map_or(0, |d| d.count())
    }

    fn packs(&self) -> usize {
        let dirs = std::fs::read_dir(self.repo.join("data")).into_iter().flatten().flatten();
        dirs.map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count())).sum::<usize>()
    }

    /// A backup (with `extra` options) started in the background, once it has begun its copy
    /// and stored a new pack.
    fn backup_under_way(&self, extra: &[&str]) -> std::process::Child {
        let (manifests, packs) = (self.manifests(), self.packs());
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
            .env("CAIRN_PASSWORD", "demo password")
            .args(["backup", "--instance", "main", "-B", self.repo.to_str().unwrap(), "--format", "json"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The RUNNING record appears as the copy starts; the copy then takes seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while (self.manifests() == manifests || self.packs() == packs)
            && std::time::Instant::now() < deadline
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be interrupted");
        child
    }

    /// The interrupted backup shows as ERROR, never OK; the repository checks clean, the
    /// first backup validates, and the next backup succeeds, reusing what the first stored.
    fn nothing_is_harmed(&self) {
        let shown = ok(cairn(&self.repo, &["show", "--instance", "main"]));
        let statuses: Vec<&str> =
            shown.as_array().unwrap().iter().map(|b| b["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["DONE", "ERROR"], "{shown}");
        ok(cairn(&self.repo, &["check", "--read-data"]));
        ok(cairn(&self.repo, &["validate", "--instance", "main", "-i", self.first["id"].as_str().unwrap()]));
        let next = ok(cairn(&self.repo, &["backup", "--instance", "main"]));
        assert_eq!(next["status"], "OK");
        assert!(next["reused_chunks"].as_u64().unwrap() * 2 > next["chunks"].as_u64().unwrap(), "{next}");
        let target = self.work.path().join("restored");
        ok(cairn(&self.repo, &["restore", "--instance", "main", "-D", target.to_str().unwrap()]));
    }
}

#[test]
fn a_backup_killed_mid_way_damages_nothing_and_the_next_one_succeeds() {
    let setup = Interrupted::new();
    let mut child = setup.backup_under_way(&[]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    setup.nothing_is_harmed();
}

#[test]
fn a_backup_that_loses_its_connection_fails_clearly_and_damages_nothing() {
    let setup = Interrupted::new();
    // Slowed down, so that the connection is ended while the backup still needs it (a
    // backup past pg_backup_stop may finish without it).
    let child = setup.backup_under_way(&["--limit-rate", "10M"]);
    let ended = setup.cluster.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'cairn'",
    );
    assert_eq!(ended, "1", "the backup's connection");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a backup without its connection cannot finish");
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("connection to the server was lost"), "{error}");
    setup.nothing_is_harmed();
}

#[test]
fn retention_deletes_only_what_the_policy_expires() {
    let cluster = PgCluster::start(15);
    cluster.psql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    ok(cairn(&repo, &["init"]));
    let external = work.path().join("external");
    std::fs::create_dir(&external).unwrap();
    add_instance(&repo, &cluster, &["-E", external.to_str().unwrap()]);
    let mut ids = Vec::new();
    for mode in ["FULL", "DELTA", "FULL", "DELTA"] {
        cluster.psql("UPDATE t SET md5 = md5(md5) WHERE g % 50 = 0");
        let b = ok(cairn(&repo, &["backup", "--instance", "main", "-b", mode, "--no-validate"]));
        assert_eq!(b["mode"], mode, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // A backup that fails once started (its external directory is gone) leaves an ERROR record.
    std::fs::remove_dir(&external).unwrap();
    let out = cairn(&repo, &["backup", "--instance", "main"]);
    assert!(!out.status.success());
    std::fs::create_dir(&external).unwrap();
    // Pin the first backup for a day.
    let pinned = ok(cairn(
        &repo,
        &["set-backup", "--instance", "main", "-i", &ids[0], "--ttl", "1d", "--note", "audit"],
    ));
    assert!(pinned["expire_time"].is_string(), "{pinned}");
    assert_eq!(pinned["note"], "audit");

    // Redundancy 1: the newest FULL and what follows stay; the pinned one stays; the ERROR
    // backup is not the policy's business. A dry run first.
    let expire = ["delete", "--instance", "main", "--delete-expired", "--retention-redundancy", "1"];
    let dry = ok(cairn(&repo, &[&expire[..], &["--dry-run"]].concat()));
    let gone = |v: &Value| -> Vec<String> {
        v["backups"]["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(gone(&dry), [ids[1].clone()], "{dry}");
    assert_eq!(ok(cairn(&repo, &["show", "--instance", "main"])).as_array().unwrap().len(), 5);
    let done = ok(cairn(&repo, &expire));
    assert_eq!(gone(&done), [ids[1].clone()], "{done}");
    assert!(done["backups"]["prune"].is_object(), "{done}");
    let statuses = |repo: &Path| -> Vec<String> {
        ok(cairn(repo, &["show", "--instance", "main"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{}:{}", b["mode"].as_str().unwrap(), b["status"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(statuses(&repo), ["FULL:DONE", "FULL:DONE", "DELTA:DONE", "FULL:ERROR"]);

    // By status, then by id: a pinned backup must be unpinned first.
    ok(cairn(&repo, &["delete", "--instance", "main", "--status", "ERROR"]));
    assert_eq!(statuses(&repo).len(), 3);
    let msg = fails(cairn(&repo, &["delete", "--instance", "main", "-i", &ids[0]]), 2, "invalid-argument");
    assert!(msg.contains("pinned"), "{msg}");
    ok(cairn(&repo, &["set-backup", "--instance", "main", "-i", &ids[0], "--ttl", "0"]));
    ok(cairn(&repo, &["delete", "--instance", "main", "-i", &ids[0]]));
    assert_eq!(statuses(&repo), ["FULL:DONE", "DELTA:DONE"]);

    // What is left is whole: the DELTA (whose parent is gone) validates and the repository checks.
    ok(cairn(&repo, &["check", "--read-data"]));
    ok(cairn(&repo, &["validate", "--instance", "main", "-i", &ids[3]]));
    fails(cairn(&repo, &["delete", "--instance", "main"]), 2, "invalid-argument");
}

#[test]
fn merge_makes_a_delta_full_and_removes_its_ancestors() {
    let cluster = PgCluster::start(15);
    cluster.psql("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    let work = tempfile::tempdir().unwrap();
    let repo = repository(work.path(), &cluster, &[]);
    let mut ids = Vec::new();
    for mode in ["FULL", "DELTA", "DELTA"] {
        cluster.psql("UPDATE t SET md5 = md5(md5) WHERE g % 50 = 0");
        let b = ok(cairn(&repo, &["backup", "--instance", "main", "-b", mode, "--no-validate"]));
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    let msg = fails(cairn(&repo, &["merge", "--instance", "main", "-i", &ids[0]]), 2, "invalid-argument");
    assert!(msg.contains("already FULL"), "{msg}");
    fails(cairn(&repo, &["merge", "--instance", "main", "-i", "NOSUCH"]), 8, "backup-not-found");
    // --merge-expired with one FULL kept: nothing to merge or delete, said as such.
    let expire =
        ["delete", "--instance", "main", "--merge-expired", "--retention-redundancy", "1", "--dry-run"];
    let dry = ok(cairn(&repo, &expire));
    assert_eq!(
        (dry["backups"]["merged"].as_array().unwrap().len(), dry["backups"]["dry_run"].as_bool()),
        (0, Some(true))
    );

    let merged = ok(cairn(&repo, &["merge", "--instance", "main", "-i", &ids[2]]));
    assert_eq!(merged["backup_id"], ids[2].as_str());
    assert_eq!(merged["removed"], serde_json::json!([ids[1], ids[0]]), "{merged}");
    assert_eq!(merged["status"], "DONE");
    assert!(merged["prune"]["bytes_before"].as_u64() > merged["prune"]["bytes_after"].as_u64(), "{merged}");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!((&shown[0]["mode"], &shown[0]["status"]), (&"FULL".into(), &"DONE".into()));
    assert!(shown[0].get("parent").is_none(), "{shown}");
    ok(cairn(&repo, &["check", "--read-data"]));
    ok(cairn(&repo, &["validate", "--instance", "main", "-i", &ids[2]]));
}

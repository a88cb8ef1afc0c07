//! The physical backup commands through the binary, against a real PostgreSQL 15 cluster:
//! add-instance, backup, show, validate, restore, and the errors a DBA meets.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;

use cairn_testkit::{give_to_postgres, PgCluster};
use serde_json::Value;

mod common;
use common::{add_instance, cairn, fails, ok, progress_and_result, repository};

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

    // The server down: a clear error, and no new record (the backup never began).
    drop(cluster);
    let msg = fails(cairn(&repo, &["backup", "--instance", "main"]), 9, "db-unreachable");
    assert!(msg.contains("127.0.0.1"), "{msg}");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown[0]["status"], "OK");
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
        // The interrupted backup's temporary replication slot went with its connection.
        assert_eq!(self.cluster.psql("SELECT count(*) FROM pg_replication_slots"), "0");
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

/// The backup, restore and instance options a DBA types, through the binary: compression from
/// the command line and from set-config, -C, --progress (JSON lines and plain lines), show -i,
/// -E with two directories, -T, --external-mapping, --skip-external-dirs, --force, del-instance.
#[test]
fn options_progress_and_mappings_through_the_binary() {
    // No autovacuum: a spread checkpoint (-C) spends 100 ms per dirty buffer it writes.
    let cluster = PgCluster::start_with(15, cairn_testkit::PgOptions::new().setting("autovacuum", "off"));
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let (tablespace, ext1, ext2) = (path("tblspc"), path("ext1"), path("ext2"));
    std::fs::create_dir(&tablespace).unwrap();
    std::fs::create_dir_all(Path::new(&ext2).join("sub")).unwrap();
    std::fs::create_dir(&ext1).unwrap();
    std::fs::write(Path::new(&ext1).join("a.conf"), "a = 1\n").unwrap();
    std::fs::write(Path::new(&ext2).join("sub/b.conf"), "b = 2\n").unwrap();
    give_to_postgres(work.path());
    cluster.psql(&format!("CREATE TABLESPACE extra LOCATION '{tablespace}'"));
    cluster.psql("CREATE TABLE spaced TABLESPACE extra AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g");
    let oid = cluster.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'");
    let repo = work.path().join("repo");
    ok(cairn(&repo, &["init"]));
    let added = add_instance(&repo, &cluster, &["-E", &format!("{ext1}:{ext2}")]);
    assert_eq!(added["external_dirs"], serde_json::json!([ext1, ext2]));

    // Compression as asked: none stores chunks as they are, lz4 and zstd shrink them; each
    // backup has a new, very compressible table to store.
    let stored_share = |b: &Value| b["stored_bytes"].as_f64().unwrap() / b["new_bytes"].as_f64().unwrap();
    let backup_of_new_table = |table: &str, args: &[&str]| -> Value {
        cluster.psql(&format!(
            "CREATE TABLE {table} AS SELECT g, repeat('y', 300) AS pad FROM generate_series(1, 30000) g"
        ));
        ok(cairn(&repo, &[&["backup", "--instance", "main", "--no-validate"][..], args].concat()))
    };
    let none = backup_of_new_table("t1", &["--compress-algorithm", "none"]);
    assert!(stored_share(&none) > 0.95, "{none}");
    let lz4 = backup_of_new_table("t2", &["--compress-algorithm", "lz4"]);
    assert!(stored_share(&lz4) < 0.3, "{lz4}");
    let zstd = backup_of_new_table("t3", &["--compress-algorithm", "zstd", "--compress-level", "9"]);
    assert!(stored_share(&zstd) < 0.3, "{zstd}");
    let msg = fails(
        cairn(
            &repo,
            &["backup", "--instance", "main", "--compress-algorithm", "zstd", "--compress-level", "99"],
        ),
        2,
        "invalid-argument",
    );
    assert!(msg.contains("level"), "{msg}");
    // set-config: the instance's default from now on.
    ok(cairn(&repo, &["set-config", "--instance", "main", "--compress-algorithm", "none"]));
    let config = ok(cairn(&repo, &["show-config", "--instance", "main"]));
    assert!(config["compression"].to_string().to_lowercase().contains("none"), "{config}");
    let by_config = backup_of_new_table("t4", &[]);
    assert!(stored_share(&by_config) > 0.95, "{by_config}");

    // -C: the server is asked for a spread checkpoint, not an immediate one.
    cluster.psql("CHECKPOINT"); // nothing left to spread: the smooth checkpoint ends at once
    let log_before = cluster.log().len();
    ok(cairn(&repo, &["backup", "--instance", "main", "-C", "--no-validate"]));
    let log = cluster.log()[log_before..].to_string();
    assert!(log.contains("checkpoint starting: force wait"), "{log}");
    assert!(!log.contains("immediate"), "{log}");

    // --progress with --format json: progress lines, the last one whole, then the result.
    let out = cairn(&repo, &["backup", "--instance", "main", "--progress", "-j", "2"]);
    let (progress, backup) = progress_and_result(&out);
    let last_of = |phase: &str| {
        let line = progress.iter().rev().map(|p| &p["progress"]).find(|p| p["phase"] == phase);
        line.unwrap_or_else(|| panic!("no {phase} progress in {progress:?}")).clone()
    };
    for phase in ["backup", "validate"] {
        let last = last_of(phase);
        assert_eq!(last["done_bytes"], last["total_bytes"], "{last}");
    }
    // The copy's progress covers the data directory; the WAL segments and the backup_label kept
    // with the backup come after it.
    let after_copy =
        backup["data_bytes"].as_u64().unwrap() - last_of("backup")["done_bytes"].as_u64().unwrap();
    let wal = backup["wal_segments"].as_u64().unwrap() << 24;
    assert!(after_copy >= wal && after_copy - wal < 4096, "{after_copy} {backup}");
    assert_eq!(backup["status"], "OK");
    let id = backup["id"].as_str().unwrap();
    let shown = ok(cairn(&repo, &["show", "--instance", "main", "-i", id]));
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!((&shown[0]["id"], &shown[0]["status"]), (&backup["id"], &"OK".into()));

    // Restore with the tablespace and both external directories moved, with plain progress
    // lines on standard error.
    let (moved, moved1, moved2, target) =
        (path("tblspc-moved"), path("ext1-moved"), path("ext2-moved"), path("r1"));
    let out = assert_cmd::Command::cargo_bin("cairn")
        .unwrap()
        .env("CAIRN_PASSWORD", "demo password")
        .args(["restore", "-B", repo.to_str().unwrap(), "--instance", "main", "-D", &target, "--progress"])
        .args(["-T", &format!("{tablespace}={moved}")])
        .args([
            "--external-mapping",
            &format!("{ext1}={moved1}"),
            "--external-mapping",
            &format!("{ext2}={moved2}"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("restore: 100% (")), "{stderr}");
    assert_eq!(std::fs::read_to_string(Path::new(&moved1).join("a.conf")).unwrap(), "a = 1\n");
    assert_eq!(std::fs::read_to_string(Path::new(&moved2).join("sub/b.conf")).unwrap(), "b = 2\n");
    let link = Path::new(&target).join("pg_tblspc").join(&oid);
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(&moved));
    give_to_postgres(work.path());
    let copy = PgCluster::from_data_dir(15, &target);
    assert_eq!(copy.psql("SELECT count(*) FROM spaced"), "20000");
    drop(copy);

    // --skip-external-dirs: the external directories are left alone (here: their originals,
    // which a restore would otherwise refuse to overwrite).
    let (moved_again, target2) = (path("tblspc-2"), path("r2"));
    let restore2 =
        ["restore", "--instance", "main", "-D", &target2, "-T", &format!("{tablespace}={moved_again}")];
    let msg = fails(cairn(&repo, &restore2), 10, "restore-refused");
    assert!(msg.contains(&ext1) || msg.contains(&ext2), "{msg}");
    ok(cairn(&repo, &[&restore2[..], &["--skip-external-dirs"]].concat()));
    assert_eq!(std::fs::read_dir(&ext1).unwrap().count(), 1, "ext1 untouched");
    assert!(Path::new(&target2).join("PG_VERSION").exists());

    // --force: a non-empty directory is emptied and restored into.
    let target3 = path("r3");
    std::fs::create_dir(&target3).unwrap();
    std::fs::write(Path::new(&target3).join("stale"), "x").unwrap();
    let restore3 = ["restore", "--instance", "main", "-D", &target3, "--skip-external-dirs"];
    let remap = format!("{tablespace}={}", path("tblspc-3"));
    fails(cairn(&repo, &[&restore3[..], &["-T", &remap]].concat()), 10, "restore-refused");
    ok(cairn(&repo, &[&restore3[..], &["-T", &remap, "--force"]].concat()));
    assert!(!Path::new(&target3).join("stale").exists());
    assert!(Path::new(&target3).join("global/pg_control").exists());

    // del-instance: the instance and its backups go; what they stored is prune's to free.
    let deleted = ok(cairn(&repo, &["del-instance", "--instance", "main"]));
    assert_eq!(deleted["backups_deleted"], 6, "{deleted}");
    fails(cairn(&repo, &["show", "--instance", "main"]), 8, "instance-not-found");
    ok(cairn(&repo, &["check"]));
}

/// Connection settings from the environment at backup time, a password from a password file,
/// and the roles and servers a backup cannot use, each with an error that says what to do.
#[test]
fn connections_from_the_environment_and_a_password_file_and_what_cannot_back_up() {
    let cluster = PgCluster::start(15);
    // Password authentication for role keeper over TCP; trust for the others, as before.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all keeper 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    cluster.psql(
        "SELECT pg_reload_conf(); CREATE ROLE keeper LOGIN SUPERUSER PASSWORD 'open sesame'; \
         CREATE ROLE plain LOGIN; CREATE ROLE replicator LOGIN REPLICATION",
    );
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    ok(cairn(&repo, &["init"]));
    // No connection options stored: each backup connects as its environment says.
    let pgdata = cluster.data_dir().to_str().unwrap();
    let added = ok(cairn(&repo, &["add-instance", "--instance", "main", "-D", pgdata]));
    assert!(added["connection"]["port"].is_null(), "{added}");
    let backup = |env: &[(&str, &str)]| {
        let mut cmd = assert_cmd::Command::cargo_bin("cairn").unwrap();
        for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE"] {
            cmd.env_remove(var);
        }
        cmd.env("CAIRN_PASSWORD", "demo password")
            .env("HOME", work.path()) // no ~/.pgpass of the machine's
            .envs(env.iter().copied())
            .args([
                "backup",
                "-B",
                repo.to_str().unwrap(),
                "--instance",
                "main",
                "--no-validate",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    };
    let port = cluster.port().to_string();
    let server = [("PGHOST", "127.0.0.1"), ("PGPORT", port.as_str())];
    let as_role = |user: &'static str| [&server[..], &[("PGUSER", user)]].concat();

    assert_eq!(ok(backup(&as_role("postgres")))["status"], "DONE");
    let msg = fails(backup(&as_role("keeper")), 9, "db-unreachable");
    assert!(msg.contains("password"), "{msg}");
    let passfile = work.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("# comment\nelsewhere:*:*:keeper:wrong\n127.0.0.1:{port}:*:keeper:open sesame\n"),
    )
    .unwrap();
    let passfile = passfile.to_str().unwrap();
    assert_eq!(ok(backup(&[&as_role("keeper")[..], &[("PGPASSFILE", passfile)]].concat()))["status"], "DONE");
    assert_eq!(
        ok(backup(&[&as_role("keeper")[..], &[("PGPASSWORD", "open sesame")]].concat()))["status"],
        "DONE"
    );

    // Roles that may not take a backup: refused before anything starts, saying what to do.
    let msg = fails(backup(&as_role("plain")), 9, "db-error");
    assert!(msg.contains("superuser") && msg.contains("-U"), "{msg}");
    let msg = fails(backup(&as_role("replicator")), 9, "db-error");
    assert!(msg.contains("pg_backup_start") && msg.contains("GRANT EXECUTE"), "{msg}");
    // The backup role docs/cli.md describes: a replication role with the backup functions.
    cluster.psql(
        "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean) TO replicator",
    );
    assert_eq!(ok(backup(&as_role("replicator")))["status"], "DONE");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    let statuses: Vec<&str> =
        shown.as_array().unwrap().iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s != "OK" && *s != "RUNNING"), "{shown}");
    assert_eq!(statuses.iter().filter(|s| **s == "DONE").count(), 4, "{shown}");

    // A server without the WAL a backup needs.
    let minimal = PgCluster::start_with(
        15,
        cairn_testkit::PgOptions::new().setting("wal_level", "minimal").setting("max_wal_senders", "0"),
    );
    let repo2 = repository(work.path().join("second").as_path(), &minimal, &[]);
    let msg = fails(cairn(&repo2, &["backup", "--instance", "main"]), 9, "db-error");
    assert!(msg.contains("wal_level") && msg.contains("replica"), "{msg}");
    // A data directory that is not the server's own: refused, naming both clusters.
    let other_dir = minimal.data_dir().to_str().unwrap();
    let mixed = ["add-instance", "--instance", "mixed", "-D", other_dir, "-h", "127.0.0.1", "-p", &port];
    ok(cairn(&repo2, &[&mixed[..], &["-U", "postgres"]].concat()));
    let msg = fails(cairn(&repo2, &["backup", "--instance", "mixed"]), 2, "invalid-argument");
    assert!(msg.contains(other_dir) && msg.contains("wrong data directory or wrong server"), "{msg}");
}

/// The least-privileged role docs/cli.md describes takes a backup on every supported major.
#[test]
fn the_documented_backup_role_backs_up_on_every_major() {
    for major in cairn_pg::SUPPORTED_POSTGRES_MAJORS {
        let cluster = PgCluster::start(major);
        let grant = if major >= 15 {
            "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean) TO backup"
        } else {
            "GRANT EXECUTE ON FUNCTION pg_start_backup(text, boolean, boolean), pg_stop_backup(boolean, boolean) TO backup"
        };
        cluster.psql(&format!("CREATE ROLE backup LOGIN REPLICATION; {grant}"));
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        ok(cairn(&repo, &["init"]));
        let (port, pgdata) = (cluster.port().to_string(), cluster.data_dir().to_str().unwrap().to_string());
        let add = ["add-instance", "--instance", "main", "-D", &pgdata, "-h", "127.0.0.1", "-p", &port];
        ok(cairn(&repo, &[&add[..], &["-U", "backup"]].concat()));
        let backup = ok(cairn(&repo, &["backup", "--instance", "main"]));
        assert_eq!(backup["status"], "OK", "PostgreSQL {major}: {backup}");
    }
}

//! WAL archiving and point-in-time recovery through the binary, against a real PostgreSQL 15
//! whose `archive_command` is `cairn archive-push`: restores to times, xids, LSNs and a named
//! restore point hold exactly the ledger rows committed before the target; timelines are
//! followed; gaps are found; archive-push is idempotent and never serves half a segment.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_testkit::{PgCluster, PgOptions};
use serde_json::Value;

const INSTANCE: &str = "main";

/// A cluster archiving into a fresh repository, with a backup taken under pgbench load and a
/// ledger written after it: one row per transaction, from one session, so the order of ids is
/// the order of commits.
struct Setup {
    work: tempfile::TempDir,
    repo: PathBuf,
    password_file: PathBuf,
    cluster: PgCluster,
}

fn is_root() -> bool {
    // SAFETY-free check: root's home is /root and `id -u` says 0.
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Runs cairn as the user the server runs as (the archive is written by both).
fn cairn_command(setup_repo: &Path, password_file: &Path, args: &[&str]) -> Command {
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.env_remove("BACKUP_PATH")
        .env_remove("CAIRN_PASSWORD")
        .args(args)
        .arg("-B")
        .arg(setup_repo)
        .arg("--password-file")
        .arg(password_file)
        .args(["--format", "json"]);
    cmd
}

impl Setup {
    fn cairn(&self, args: &[&str]) -> Output {
        cairn_command(&self.repo, &self.password_file, args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.cairn(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cairn {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or(Value::Null)
    }

    fn fails(&self, args: &[&str], status: i32) -> String {
        let out = self.cairn(args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Restores with the given target options into a new directory, starts the server there,
    /// waits until recovery is over, and returns the cluster.
    /// Restored copies do not archive (they would add timelines to the archive under test:
    /// `restore --archive-mode off`) unless `archive` says so.
    fn restore_and_start(&self, name: &str, target: &[&str], archive: bool) -> (PgCluster, Value) {
        let dir = self.dir(name);
        let mut args = vec!["restore", "--instance", INSTANCE, "-D", dir.to_str().unwrap(), "-j", "2"];
        args.extend(target);
        if !archive {
            args.extend(["--archive-mode", "off"]);
        }
        let summary = self.ok(&args);
        assert_eq!(summary["archive_mode"], if archive { "preserve" } else { "off" });
        let options = PgOptions::new().start_timeout(Duration::from_secs(120));
        let restored = PgCluster::from_data_dir_with(15, &dir, options);
        wait_until(&restored, "SELECT NOT pg_is_in_recovery()", "promotion after recovery");
        let archiving = if archive { "on" } else { "off" };
        assert_eq!(restored.psql("SHOW archive_mode"), archiving, "restored with {args:?}");
        assert!(
            !dir.join("pg_wal/cairn-prefetch").exists(),
            "segments fetched ahead are removed when recovery ends"
        );
        (restored, summary)
    }
}

fn wait_until(cluster: &PgCluster, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.try_psql_db("postgres", sql).ok().as_deref() != Some("t") {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", cluster.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Switches to a new segment and waits until the finished one is archived.
fn switch_and_wait_archived(cluster: &PgCluster) {
    let segment = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())");
    wait_until(
        cluster,
        &format!("SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver"),
        &format!("archiving of {segment}"),
    );
}

/// `n` ledger rows of `phase`, each its own transaction.
fn ledger(cluster: &PgCluster, phase: &str, n: u32) {
    cluster.psql(&format!(
        "DO $$ BEGIN FOR i IN 1..{n} LOOP \
           INSERT INTO ledger(phase) VALUES ('{phase}'); COMMIT; PERFORM pg_sleep(0.002); \
         END LOOP; END $$"
    ));
}

fn rows(cluster: &PgCluster, filter: &str) -> String {
    cluster.psql(&format!(
        "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ledger WHERE {filter}"
    ))
}

fn chown_postgres(path: &Path) {
    if is_root() {
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap()
            .success());
    }
}

/// `asynchronous`: archive through `archive-push --async` (a background worker).
fn setup(asynchronous: bool) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let password_file = work.path().join("password");
    std::fs::write(&password_file, "pitr password\n").unwrap();
    chown_postgres(work.path());
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let archive_command = format!(
        "{} archive-push{} -B {} --password-file {} --instance {INSTANCE} %p %f",
        bin.display(),
        if asynchronous { " --async" } else { "" },
        repo.display(),
        password_file.display()
    );
    let cluster = PgCluster::start_with(
        15,
        PgOptions::new()
            .setting("archive_mode", "on")
            .setting("archive_command", archive_command)
            .setting("track_commit_timestamp", "on"),
    );
    let setup = Setup { work, repo, password_file, cluster };
    let c = &setup.cluster;
    setup.ok(&["init"]);
    let port = c.port().to_string();
    setup.ok(&[
        "add-instance",
        "--instance",
        INSTANCE,
        "-D",
        c.data_dir().to_str().unwrap(),
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        "postgres",
    ]);
    c.psql("CREATE TABLE ledger(id serial PRIMARY KEY, phase text NOT NULL)");
    let pgbench = PgCluster::client_bin_dir().join("pgbench");
    let bench = |args: &[&str]| {
        Command::new(&pgbench)
            .envs(c.env())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    assert!(bench(&["-i", "-s", "2", "-q"]).wait().unwrap().success());
    let mut load = bench(&["-c", "2", "-T", "4", "-n"]);
    setup.ok(&["backup", "--instance", INSTANCE, "-j", "2"]);
    assert!(load.wait().unwrap().success());
    setup
}

#[test]
fn restores_to_times_xids_lsns_and_restore_points() {
    // Archived by the background worker: recovery proves it stored every segment whole.
    let s = setup(true);
    assert!(s.cluster.data_dir().join("pg_wal/cairn-spool").is_dir());
    let c = &s.cluster;
    ledger(c, "one", 60);
    c.psql("SELECT pg_create_restore_point('before-two')");
    let at_restore_point = rows(c, "true");
    ledger(c, "two", 40);
    let lsn = c.psql("SELECT pg_current_wal_lsn()");
    let at_lsn = rows(c, "true");
    ledger(c, "three", 40);
    switch_and_wait_archived(c);

    let commit_ts = |id: u32| {
        c.psql(&format!(
            "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM ledger WHERE id = {id}"
        ))
    };
    let xid_of = |id: u32| c.psql(&format!("SELECT xmin FROM ledger WHERE id = {id}"));
    let upto = |last: u32| rows(c, &format!("id <= {last}"));

    let time = commit_ts(30);
    let xid = xid_of(90);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--recovery-target-time", &time], upto(30)),
        (vec!["--recovery-target-time", &time, "--recovery-target-inclusive", "false"], upto(29)),
        (vec!["--recovery-target-xid", &xid], upto(90)),
        (vec!["--recovery-target-xid", &xid, "--recovery-target-inclusive", "false"], upto(89)),
        (vec!["--recovery-target-lsn", &lsn], at_lsn.clone()),
        (vec!["--recovery-target-name", "before-two"], at_restore_point.clone()),
        (vec!["--recovery-target", "latest"], upto(140)),
    ];
    for (n, (target, expected)) in cases.into_iter().enumerate() {
        let mut args = target.clone();
        args.extend(["--recovery-target-action", "promote"]);
        let (restored, _) = s.restore_and_start(&format!("r{n}"), &args, false);
        assert_eq!(rows(&restored, "true"), expected, "restore with {target:?}");
    }

    // validate answers "can it be restored to that point?" without restoring.
    let answer = s.ok(&["validate", "--instance", INSTANCE, "--recovery-target-xid", &xid]);
    assert_eq!(answer["restorable"], true, "{answer}");
    let msg = s.fails(&["validate", "--instance", INSTANCE, "--recovery-target-name", "nosuch"], 10);
    assert!(msg.contains("no restore point named 'nosuch'"), "{msg}");

    // A standby restored from the archive keeps replaying it, read-only.
    let dir = s.dir("replica");
    s.ok(&[
        "restore",
        "--instance",
        INSTANCE,
        "-D",
        dir.to_str().unwrap(),
        "--restore-as-replica",
        "--archive-mode",
        "off",
    ]);
    assert!(dir.join("standby.signal").exists() && !dir.join("recovery.signal").exists());
    let replica = PgCluster::from_data_dir(15, &dir);
    wait_until(&replica, "SELECT count(*) = 140 FROM ledger", "the standby to replay the archive");
    assert_eq!(replica.psql("SELECT pg_is_in_recovery()"), "t");
    drop(replica);

    // Targets the archive cannot reach are refused before anything is written.
    for (target, value, reason) in [
        ("--recovery-target-time", "2099-01-01T00:00:00Z", "archive ends before"),
        ("--recovery-target-name", "nosuch", "no restore point named 'nosuch'"),
        ("--recovery-target-time", "2000-01-01T00:00:00Z", "no backup can reach"),
    ] {
        let msg = s.fails(
            &["restore", "--instance", INSTANCE, "-D", s.dir("x").to_str().unwrap(), target, value],
            10,
        );
        assert!(msg.contains(reason), "{target} {value}: {msg}");
    }
    assert!(!s.dir("x").exists() || std::fs::read_dir(s.dir("x")).unwrap().next().is_none());
}

#[test]
fn timelines_gaps_restore_wal_and_idempotent_push() {
    let s = setup(false);
    let a = &s.cluster;
    ledger(a, "one", 50);
    let lsn_after_one = a.psql("SELECT pg_current_wal_lsn()");
    switch_and_wait_archived(a);
    let switch_time = a.psql(
        "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM ledger WHERE id = 25",
    );
    // B: restored to row 25 and promoted: timeline 2, archiving into the same instance.
    let (b, _) = s.restore_and_start(
        "b",
        &["--recovery-target-time", &switch_time, "--recovery-target-action", "promote"],
        true,
    );
    assert_eq!(b.psql("SELECT timeline_id FROM pg_control_checkpoint()"), "2");
    b.psql("CREATE TABLE on_two(x int); INSERT INTO on_two VALUES (2)");
    ledger(&b, "two", 10);
    switch_and_wait_archived(&b);
    let on_two = rows(&b, "true");
    // A goes on on timeline 1.
    ledger(a, "one-more", 20);
    let lsn_on_one = a.psql("SELECT pg_current_wal_lsn()");
    let on_one = rows(a, "true");
    switch_and_wait_archived(a);

    let report = s.ok(&["show", "--instance", INSTANCE, "--archive"]);
    let timelines: Vec<u64> =
        report["timelines"].as_array().unwrap().iter().map(|t| t["timeline"].as_u64().unwrap()).collect();
    assert_eq!(timelines, [1, 2], "{report}");
    assert!(
        report["timelines"].as_array().unwrap().iter().all(|t| t["gaps"].as_array().unwrap().is_empty()),
        "{report}"
    );
    assert_eq!(report["backups"][0]["reaches_present"], true, "{report}");

    // The newest timeline by default; timeline 1 past the switch when asked.
    let (c, _) = s.restore_and_start(
        "c",
        &["--recovery-target", "latest", "--recovery-target-action", "promote"],
        false,
    );
    assert_eq!(rows(&c, "true"), on_two);
    assert_eq!(c.psql("SELECT count(*) FROM on_two"), "1");
    drop(c);
    let (d, _) = s.restore_and_start(
        "d",
        &[
            "--recovery-target-lsn",
            &lsn_on_one,
            "--recovery-target-timeline",
            "1",
            "--recovery-target-action",
            "promote",
        ],
        false,
    );
    assert_eq!(rows(&d, "true"), on_one);
    assert!(d.try_psql_db("postgres", "SELECT * FROM on_two").is_err());
    drop(d);

    // restore-wal: exactly the segments of an LSN range (timeline 1, after the backup).
    let first = a.psql(&format!("SELECT pg_walfile_name('{lsn_after_one}')"));
    let last = a.psql(&format!("SELECT pg_walfile_name('{lsn_on_one}')"));
    let wal_dir = s.dir("wal-range");
    s.ok(&[
        "restore-wal",
        "--instance",
        INSTANCE,
        "--from-lsn",
        &lsn_after_one,
        "--to-lsn",
        &lsn_on_one,
        "--timeline",
        "1",
        "--target-dir",
        wal_dir.to_str().unwrap(),
    ]);
    let mut got: Vec<String> =
        std::fs::read_dir(&wal_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    got.sort();
    let segno = |name: &str| u64::from_str_radix(&name[16..], 16).unwrap();
    assert_eq!(got.first(), Some(&first), "{got:?}");
    assert_eq!(got.last(), Some(&last), "{got:?}");
    assert_eq!(got.len() as u64, segno(&last) - segno(&first) + 1, "{got:?}");
    assert!(got.len() >= 2, "{got:?}");
    let start = first.clone();

    // restore-wal by time: the commits of "one-more" all went to the segment of lsn_on_one.
    let commit_ts = |id: u32| {
        a.psql(&format!(
            "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM ledger WHERE id = {id}"
        ))
    };
    let by_time = s.dir("wal-by-time");
    let range = s.ok(&[
        "restore-wal",
        "--instance",
        INSTANCE,
        "--from",
        &commit_ts(51),
        "--to",
        &commit_ts(70),
        "--timeline",
        "1",
        "--target-dir",
        by_time.to_str().unwrap(),
    ]);
    assert_eq!(range["segments"], serde_json::json!([last]), "{range}");

    // Pushing an archived segment again: fine; other content under its name: refused.
    let copy = s.dir("again");
    std::fs::copy(wal_dir.join(&start), &copy).unwrap();
    chown_postgres(&copy);
    s.ok(&["archive-push", "--instance", INSTANCE, copy.to_str().unwrap(), &start]);
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let msg = s.fails(&["archive-push", "--instance", INSTANCE, copy.to_str().unwrap(), &start], 11);
    assert!(msg.contains("different content"), "{msg}");

    // A gap on timeline 1: shown, and a restore that needs the segment is refused.
    let gap = first.clone();
    std::fs::remove_file(s.repo.join("files/wal").join(INSTANCE).join(&gap)).unwrap();
    let report = s.ok(&["show", "--instance", INSTANCE, "--archive"]);
    let gaps = report["timelines"][0]["gaps"].to_string();
    assert!(gaps.contains(&gap), "{report}");
    let msg = s.fails(
        &[
            "restore",
            "--instance",
            INSTANCE,
            "-D",
            s.dir("e").to_str().unwrap(),
            "--recovery-target-lsn",
            &lsn_on_one,
            "--recovery-target-timeline",
            "1",
        ],
        10,
    );
    assert!(msg.contains(&gap), "{msg}");
}

#[test]
fn a_killed_archive_push_leaves_nothing_archive_get_would_serve() {
    let s = setup(false);
    // The segment being written now: not archived yet.
    let name = s.cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let copy = s.dir("segment");
    std::fs::copy(s.cluster.data_dir().join("pg_wal").join(&name), &copy).unwrap();
    chown_postgres(&copy);
    let fetched = s.dir("fetched");
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    // Kill pushes ever later until one gets through: every killed one must leave nothing
    // that archive-get serves, and the one that finishes must store the segment whole.
    let mut killed = 0;
    for delay_ms in (0..100).map(|i| i * 15) {
        let mut push = Command::new(&bin)
            .args(["archive-push", "--instance", INSTANCE, "--compress-algorithm", "none", "-B"])
            .arg(&s.repo)
            .arg("--password-file")
            .arg(&s.password_file)
            .arg(&copy)
            .arg(&name)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = push.try_wait().unwrap().is_some();
        if !finished {
            push.kill().unwrap();
            killed += 1;
        }
        let status = push.wait().unwrap();
        let out = s.cairn(&["archive-get", "--instance", INSTANCE, &name, fetched.to_str().unwrap()]);
        if out.status.code() == Some(0) {
            assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(&copy).unwrap(), "served whole");
            assert!(killed > 0, "the first push finished before any could be killed");
            return;
        }
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(!status.success(), "a finished push must have stored the segment");
        assert!(!fetched.exists());
    }
    panic!("no push finished within 1.5 s");
}

#[test]
fn wal_retention_keeps_what_kept_backups_need() {
    let s = setup(false);
    let c = &s.cluster;
    ledger(c, "one", 20);
    switch_and_wait_archived(c);
    let first = s.ok(&["show", "--instance", INSTANCE])[0].clone();
    let between = c.psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    ledger(c, "two", 20);
    let second = s.ok(&["backup", "--instance", INSTANCE, "--delete-wal"]);
    ledger(c, "three", 20);
    switch_and_wait_archived(c);
    let segno = |name: &str| u64::from_str_radix(&name[8..], 16).unwrap();
    let lsn_segno = |lsn: &str| {
        let (hi, lo) = lsn.split_once('/').unwrap();
        ((u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()) >> 24
    };
    // The backup's --delete-wal removed only what precedes the first backup.
    let deleted = &second["wal_deletion"]["deleted"];
    let first_start = lsn_segno(first["start_lsn"].as_str().unwrap());
    assert!(!deleted.as_array().unwrap().is_empty(), "{second}");
    assert!(
        deleted.as_array().unwrap().iter().all(|n| segno(&n.as_str().unwrap()[..24]) < first_start),
        "{second}"
    );
    let report = s.ok(&["show", "--instance", INSTANCE, "--archive"]);
    assert!(report["backups"].as_array().unwrap().iter().all(|b| b["reaches_present"] == true), "{report}");

    // Depth 1: only the newest backup keeps point-in-time recovery. A dry run first.
    let dry = s.ok(&["delete", "--instance", INSTANCE, "--delete-wal", "--wal-depth", "1", "--dry-run"]);
    let second_start = lsn_segno(second["start_lsn"].as_str().unwrap());
    let would: Vec<u64> =
        dry["wal"]["deleted"].as_array().unwrap().iter().map(|n| segno(&n.as_str().unwrap()[..24])).collect();
    assert!(!would.is_empty() && would.iter().all(|&n| n < second_start), "{dry}");
    let done = s.ok(&["delete", "--instance", INSTANCE, "--delete-wal", "--wal-depth", "1"]);
    assert_eq!(done["wal"]["deleted"], dry["wal"]["deleted"]);
    let report = s.ok(&["show", "--instance", INSTANCE, "--archive"]);
    assert_eq!(report["backups"][0]["reaches_present"], false, "{report}");
    assert_eq!(report["backups"][1]["reaches_present"], true, "{report}");
    // Between the backups is out of reach now; the end of the archive still is.
    let msg = s.fails(
        &[
            "restore",
            "--instance",
            INSTANCE,
            "-D",
            s.dir("x").to_str().unwrap(),
            "--recovery-target-time",
            &between,
        ],
        10,
    );
    assert!(msg.contains("missing"), "{msg}");
    let (restored, _) = s.restore_and_start(
        "latest",
        &["--recovery-target", "latest", "--recovery-target-action", "promote"],
        false,
    );
    assert_eq!(rows(&restored, "true"), rows(c, "true"));
}

//! PgCluster against every supported PostgreSQL major. Required in CI: a major whose binaries
//! are missing fails the test (run scripts/install-postgres), it is never skipped.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_testkit::{PgCluster, PgOptions};

const MAJORS: [u32; 6] = [13, 14, 15, 16, 17, 18];

/// Start, check version and checksums, write, restart, read back, drop: for every major.
/// Two clusters at a time (the machines have 2 cores); each major's failure is collected so one
/// run names every broken major.
#[test]
fn every_major_starts_restarts_and_keeps_data() {
    let queue = Mutex::new(MAJORS.into_iter().collect::<VecDeque<u32>>());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(major) = queue.lock().unwrap().pop_front() else { break };
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check_major(major))) {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.lock().unwrap().push(format!("PostgreSQL {major}: {message}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} major(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

fn check_major(major: u32) {
    let started = Instant::now();
    let mut pg = PgCluster::start(major);
    let start_time = started.elapsed();

    let version = pg.psql("SHOW server_version_num");
    let version_num: u32 = version.parse().unwrap_or_else(|e| panic!("server_version_num {version:?}: {e}"));
    assert_eq!(version_num / 10000, major, "server_version_num {version_num}");
    assert_eq!(pg.psql("SHOW data_checksums"), "on");
    assert_eq!(pg.psql("SHOW wal_level"), "replica");
    assert_eq!(pg.psql("SHOW port"), pg.port().to_string());
    assert!(pg.bin_dir().join("postgres").is_file());
    assert!(pg.data_dir().join("PG_VERSION").is_file());

    pg.psql("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    let restart = Instant::now();
    pg.restart();
    let restart_time = restart.elapsed();
    assert!(pg.is_running());
    assert_eq!(pg.psql("SELECT id, note FROM t ORDER BY id"), "1|one\n2|two");

    let data_dir = pg.data_dir().to_path_buf();
    let socket_dir = pg.socket_dir().to_path_buf();
    drop(pg);
    assert!(!data_dir.exists() && !socket_dir.exists(), "temp dir left behind after drop");
    eprintln!(
        "PostgreSQL {major}: start {:.2} s, restart {:.2} s, total {:.2} s",
        start_time.as_secs_f64(),
        restart_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Extra settings, the env for child processes, kill -9 and crash recovery, then a copy of the
/// data directory started as a second cluster, as a restore test would.
#[test]
fn options_kill9_and_restored_copy() {
    let options = PgOptions::new()
        .setting("summarize_wal", "on")
        .setting("archive_mode", "on")
        .setting("archive_command", "/bin/true 'quoted %p'");
    let mut pg = PgCluster::start_with(17, options);
    assert_eq!(pg.psql("SHOW summarize_wal"), "on");
    assert_eq!(pg.psql("SHOW archive_command"), "/bin/true 'quoted %p'");
    assert_eq!(
        pg.connection_string(),
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", pg.port())
    );

    // A client tool run with env() reaches this server.
    let out = Command::new(PgCluster::client_bin_dir().join("psql"))
        .args(["-X", "-A", "-t", "-c", "SELECT current_user || '@' || current_database()"])
        .envs(pg.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres@postgres");

    pg.psql("CREATE DATABASE other");
    pg.psql_db("other", "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    assert!(pg.try_psql_db("other", "SELECT * FROM missing").unwrap_err().contains("does not exist"));

    // Committed data survives a crash (synchronous_commit is on).
    pg.kill9();
    assert!(!pg.is_running());
    pg.start_again();
    assert_eq!(pg.psql_db("other", "SELECT count(*) FROM t"), "1000");
    assert!(pg.log().contains("database system was interrupted"), "no crash recovery in log");

    // A cold copy of the data dir, as a restore would write it (as root: owned by root), starts
    // on its own port while the original keeps running.
    pg.stop();
    let restore = tempfile::tempdir().unwrap();
    let copy = restore.path().join("data");
    let status = Command::new("cp").arg("-a").arg(pg.data_dir()).arg(&copy).status().unwrap();
    assert!(status.success());
    pg.start_again();
    let started = Instant::now();
    let mut restored = PgCluster::from_data_dir_with(
        17,
        &copy,
        PgOptions::new().setting("work_mem", "8MB").start_timeout(Duration::from_secs(30)),
    );
    eprintln!("restored copy started in {:.2} s", started.elapsed().as_secs_f64());
    assert_ne!(restored.port(), pg.port());
    assert_eq!(restored.psql("SHOW port"), restored.port().to_string());
    assert_eq!(restored.psql("SHOW work_mem"), "8MB");
    assert_eq!(restored.psql_db("other", "SELECT count(*) FROM t"), "1000");
    restored.psql_db("other", "INSERT INTO t VALUES (1001)");
    assert_eq!(pg.psql_db("other", "SELECT count(*) FROM t"), "1000", "copy is independent");
    restored.restart();
    assert_eq!(restored.psql_db("other", "SELECT count(*) FROM t"), "1001");

    drop(restored);
    // The caller's data directory stays; only the cluster's socket/log dir goes.
    assert!(copy.join("PG_VERSION").is_file());

    // Someone took our port while the server was down: it comes back on another one.
    pg.stop();
    let old_port = pg.port();
    let _squatter = TcpListener::bind(("127.0.0.1", old_port)).unwrap();
    pg.start_again();
    assert_ne!(pg.port(), old_port);
    assert_eq!(pg.psql("SHOW port"), pg.port().to_string());
    let conf = std::fs::read_to_string(pg.data_dir().join("postgresql.conf")).unwrap();
    assert!(conf.contains(&format!("port = '{}'", pg.port())), "postgresql.conf keeps the new port");
    assert!(conf.contains("summarize_wal = 'on'"), "rewritten settings keep the caller's");
}

#[test]
#[should_panic(expected = "scripts/install-postgres")]
fn missing_major_panics_with_install_hint() {
    PgCluster::start(99);
}

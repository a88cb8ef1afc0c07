//! Full backup of a live cluster under load, restored into a cluster that starts, passes the
//! server's own checks, and holds the source's data at the backup's consistency point. Runs on
//! every supported PostgreSQL major.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Command;
use std::sync::Arc;

mod common;

use cairn_engine::instance::{self, InstanceConfig};
use cairn_engine::{backup, restore, BackupOptions, BackupStatus, Connection, RestoreOptions, Silent};
use cairn_testkit::{give_to_postgres, PgCluster};
use common::{add_instance, repository};

fn checksum_of(cluster: &PgCluster, table: &str) -> String {
    cluster.psql(&format!("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"))
}

fn backup_under_load_restores_consistently(major: u32) {
    let cluster = PgCluster::start(major);
    let work = tempfile::tempdir().unwrap();
    let tablespace = work.path().join("tblspc");
    std::fs::create_dir(&tablespace).unwrap();
    give_to_postgres(work.path());
    cluster.psql(&format!("CREATE TABLESPACE extra LOCATION '{}'", tablespace.display()));
    cluster.psql(
        "CREATE TABLE quiet AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g;
         CREATE TABLE in_tablespace TABLESPACE extra AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 20000) g;
         CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 1000) g;
         CREATE TABLE ledger (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(), note text);",
    );
    let quiet = checksum_of(&cluster, "quiet");
    let spaced = checksum_of(&cluster, "in_tablespace");

    // pgbench's TPC-B transactions run during the whole backup: in the copy, the money moved
    // must balance (accounts, tellers, branches and history agree).
    let pgbench = PgCluster::client_bin_dir().join("pgbench");
    let init = Command::new(&pgbench).envs(cluster.env()).args(["-i", "-q", "-s", "1"]).output().unwrap();
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    let mut load = Command::new(&pgbench)
        .envs(cluster.env())
        .args(["-n", "-c", "2", "-T", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // And a ledger of committed rows, for what must be there.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, conn) = (stop.clone(), cluster.connection_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.execute("INSERT INTO ledger (note) VALUES (repeat('y', 200))", &[]).unwrap();
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before: i64 = cluster.psql("SELECT count(*) FROM ledger").parse().unwrap();

    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repository(repo_dir.path());
    let external = work.path().join("etc-extra");
    std::fs::create_dir_all(external.join("conf.d")).unwrap();
    std::fs::write(external.join("conf.d/extra.conf"), "work_mem = '8MB'\n").unwrap();
    add_instance(&repo, &cluster, vec![external.display().to_string()]);
    let options = BackupOptions { instance: "main".into(), channels: 2, ..Default::default() };
    let summary = backup(&repo, &options, &Silent).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = writer.join().unwrap();
    assert!(inserted > 0);
    let running = load.try_wait().unwrap().is_none();
    load.kill().unwrap();
    load.wait().unwrap();
    assert!(running, "pgbench ran during the whole backup");
    // The backup's temporary replication slot went with it.
    assert_eq!(cluster.psql("SELECT count(*) FROM pg_replication_slots"), "0");
    assert_eq!(summary.record.status, BackupStatus::Ok);
    assert!(summary.record.wal_segments >= 1);
    assert_eq!(summary.record.tablespaces.len(), 1);
    // The backup_label and tablespace_map pg_backup_stop returned are kept with the backup.
    let info = cairn_engine::catalog::find(&repo, "main", Some(&summary.record.id)).unwrap();
    let entries = cairn_engine::restore::entries_of(&repo, &info).unwrap();
    let size_of = |name: &str| entries.iter().find(|e| e.path == name).map(|e| e.size);
    let oid = cluster.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'");
    let map_line = format!("{oid} {}\n", tablespace.display());
    assert_eq!(size_of("tablespace_map"), Some(map_line.len() as u64), "{map_line}");
    assert!(size_of("backup_label").is_some_and(|n| n > 100));

    // Restore with the tablespace moved, and start it.
    let restored = work.path().join("restored");
    let moved = work.path().join("tblspc-moved");
    let options = RestoreOptions {
        instance: "main".into(),
        target: restored.clone(),
        channels: 2,
        tablespace_mapping: vec![(tablespace.display().to_string(), moved.display().to_string())],
        ..Default::default()
    };
    // The external directory still exists at its old place: restoring over it is refused.
    let refused = restore(&repo, &options, &Silent).unwrap_err();
    assert_eq!(refused.code(), "restore-refused", "{refused}");
    assert!(
        std::fs::read_dir(&restored).map_or(true, |mut d| d.next().is_none()),
        "nothing written before refusing"
    );
    let moved_external = work.path().join("etc-extra-moved");
    let options = RestoreOptions {
        external_mapping: vec![(external.display().to_string(), moved_external.display().to_string())],
        ..options
    };
    restore(&repo, &options, &Silent).unwrap();
    assert_eq!(
        std::fs::read_to_string(moved_external.join("conf.d/extra.conf")).unwrap(),
        "work_mem = '8MB'\n"
    );
    assert!(!restored.join("postmaster.pid").exists());
    give_to_postgres(work.path());
    let mut copy = PgCluster::from_data_dir(major, &restored);
    assert_eq!(checksum_of(&copy, "quiet"), quiet);
    assert_eq!(checksum_of(&copy, "in_tablespace"), spaced);
    assert_eq!(
        copy.psql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'"),
        moved.display().to_string()
    );
    // Every ledger row committed before the backup began is there, and every row there is real.
    let restored_rows: i64 = copy.psql("SELECT count(*) FROM ledger").parse().unwrap();
    assert!(
        restored_rows >= before,
        "{restored_rows} rows restored, {before} were committed before the backup"
    );
    let source_rows: i64 = cluster.psql("SELECT count(*) FROM ledger").parse().unwrap();
    assert!(restored_rows <= source_rows);
    let restored_ledger =
        copy.psql("SELECT md5(string_agg(id || ':' || at || ':' || note, ',' ORDER BY id)) FROM ledger");
    let source_prefix = cluster.psql(&format!(
        "SELECT md5(string_agg(id || ':' || at || ':' || note, ',' ORDER BY id)) FROM ledger WHERE id IN ({})",
        copy.psql("SELECT coalesce(string_agg(id::text, ','), '0') FROM ledger")
    ));
    assert_eq!(restored_ledger, source_prefix, "restored ledger rows differ from the source's");
    let balanced = copy.psql(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches) \
         AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(bbalance) FROM pgbench_branches) \
         AND (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(bbalance) FROM pgbench_branches)",
    );
    assert_eq!(balanced, "t", "pgbench's balances disagree in the restored cluster");
    let transactions: u64 = copy.psql("SELECT count(*) FROM pgbench_history").parse().unwrap();
    assert!(transactions > 0, "pgbench committed transactions before the backup's end");
    // The unlogged table exists, empty (its init fork only).
    assert_eq!(copy.psql("SELECT count(*) FROM scratch"), "0");

    // The server's own checks: amcheck online, checksums offline.
    if major >= 14 {
        let amcheck = Command::new(PgCluster::client_bin_dir().join("pg_amcheck"))
            .args([
                "-h",
                copy.host(),
                "-p",
                &copy.port().to_string(),
                "-U",
                "postgres",
                "--all",
                "--install-missing",
            ])
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&amcheck.stdout),
            String::from_utf8_lossy(&amcheck.stderr)
        );
        assert!(amcheck.status.success(), "pg_amcheck: {output}");
    } else {
        // PostgreSQL 13's amcheck checks B-tree indexes only (pg_amcheck needs 14).
        copy.psql("CREATE EXTENSION amcheck");
        let checked = copy.psql(
            "SELECT count(bt_index_check(c.oid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree' AND c.relpersistence <> 't'",
        );
        assert!(checked.parse::<u32>().unwrap() > 100, "{checked} indexes checked");
    }
    copy.stop();
    if major == 15 {
        let checksums = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(PgCluster::client_bin_dir().join("pg_checksums"))
            .args(["--check", "-D"])
            .arg(&restored)
            .output()
            .unwrap();
        assert!(checksums.status.success(), "pg_checksums: {}", String::from_utf8_lossy(&checksums.stderr));
    }
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_15() {
    backup_under_load_restores_consistently(15);
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_13() {
    backup_under_load_restores_consistently(13);
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_14() {
    backup_under_load_restores_consistently(14);
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_16() {
    backup_under_load_restores_consistently(16);
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_17() {
    backup_under_load_restores_consistently(17);
}

#[test]
fn backup_under_load_restores_consistently_on_postgres_18() {
    backup_under_load_restores_consistently(18);
}

/// Every major in the flavor table has a run above: adding a major without a test fails here.
#[test]
fn every_supported_major_is_tested() {
    let source = include_str!("backup_restore.rs");
    for major in cairn_pg::SUPPORTED_POSTGRES_MAJORS {
        // A test (not ignored) that runs the whole check on that major.
        let test = format!(
            "\n#[test]\nfn backup_under_load_restores_consistently_on_postgres_{major}() {{\n    \
             backup_under_load_restores_consistently({major});\n}}\n"
        );
        assert!(source.contains(&test), "PostgreSQL {major} is supported but has no backup/restore test");
    }
}

#[test]
fn a_corrupt_page_fails_the_backup_naming_file_and_block() {
    let mut cluster = PgCluster::start(15);
    cluster.psql(
        "CREATE TABLE victim AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g; CHECKPOINT",
    );
    let file = cluster.psql("SELECT pg_relation_filepath('victim')");
    cluster.stop();
    // Damage block 3 of the table, as a bad disk would: the server does not notice until read.
    let path = cluster.data_dir().join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3 * 8192 + 4000] ^= 0xff;
    // Block 5 fails its checksum too, but its LSN is past the backup's start: a page the
    // server was writing while it was read, which WAL replay rewrites. Not corrupt.
    bytes[5 * 8192..5 * 8192 + 4].copy_from_slice(&0xffff_ff00u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    cluster.start_again();

    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repository(repo_dir.path());
    add_instance(&repo, &cluster, Vec::new());
    let options = BackupOptions { instance: "main".into(), ..Default::default() };
    let err = backup(&repo, &options, &Silent).unwrap_err();
    let message = err.to_string();
    assert_eq!(err.code(), "corrupt-pages");
    assert!(message.contains(&format!("{file} block 3")), "{message}");
    assert!(!message.contains("block 5"), "{message}");
    let listed = cairn_engine::catalog::list(&repo, Some("main")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].record.status, BackupStatus::Error, "a failed backup is recorded as ERROR");

    let skipping = BackupOptions { skip_block_validation: true, ..options };
    let taken = backup(&repo, &skipping, &Silent).unwrap();
    assert_eq!(taken.record.status, BackupStatus::Ok);

    // validate re-checks every page it reads back: the corrupt one makes the backup CORRUPT.
    let id = taken.record.id.clone();
    let lenient = cairn_engine::ValidateOptions { channels: 2, skip_block_validation: true };
    let read = cairn_engine::validate(&repo, "main", Some(&id), &lenient, &Silent).unwrap();
    assert_eq!((read.status, read.pages), (BackupStatus::Ok, 0));
    let strict = cairn_engine::ValidateOptions { channels: 2, skip_block_validation: false };
    let err = cairn_engine::validate(&repo, "main", Some(&id), &strict, &Silent).unwrap_err();
    assert!(err.to_string().contains(&format!("{file} block 3")), "{err}");
    let listed = cairn_engine::catalog::list(&repo, Some("main")).unwrap();
    assert_eq!(listed.last().unwrap().record.status, BackupStatus::Corrupt);
    let all = cairn_engine::validate_all(&repo, None, &strict, &Silent).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].status, BackupStatus::Corrupt);
}

#[test]
fn four_channels_give_the_same_backup_and_restore_as_one() {
    let cluster = PgCluster::start_with(15, cairn_testkit::PgOptions::new().setting("autovacuum", "off"));
    cluster.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 200000) g");
    cluster.psql("VACUUM FREEZE");
    cluster.psql("CHECKPOINT");
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repository(repo_dir.path());
    add_instance(&repo, &cluster, Vec::new());
    let mut ids = Vec::new();
    for channels in [1, 4] {
        let options = BackupOptions { instance: "main".into(), channels, ..Default::default() };
        ids.push(backup(&repo, &options, &Silent).unwrap().record.id);
    }
    // Same data files, same content (the backups differ only in pg_control, backup_label and WAL).
    let contents = |id: &str| {
        let info = cairn_engine::catalog::find(&repo, "main", Some(id)).unwrap();
        let entries = cairn_engine::restore::entries_of(&repo, &info).unwrap();
        entries
            .into_iter()
            .filter(|e| e.path.starts_with("base/"))
            .map(|e| (e.path, e.chunks))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (one, four) = (contents(&ids[0]), contents(&ids[1]));
    assert!(one.len() > 100);
    assert_eq!(one, four, "a backup with 4 channels records the same files as with 1");

    let work = tempfile::tempdir().unwrap();
    let mut restored = Vec::new();
    for channels in [1, 4] {
        let target = work.path().join(format!("j{channels}"));
        let options = RestoreOptions {
            instance: "main".into(),
            backup_id: Some(ids[1].clone()),
            target: target.clone(),
            channels,
            ..Default::default()
        };
        restore(&repo, &options, &Silent).unwrap();
        restored.push(cairn_testkit::file_tree(&target));
    }
    assert_eq!(restored[0].len(), restored[1].len());
    assert!(restored[0] == restored[1], "restores with 1 and 4 channels differ");
}

#[test]
fn a_standby_data_directory_with_a_connection_to_its_primary_is_refused() {
    let primary = PgCluster::start(15);
    let work = tempfile::tempdir().unwrap();
    let standby_dir = work.path().join("standby");
    give_to_postgres(work.path());
    let cloned = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(PgCluster::client_bin_dir().join("pg_basebackup"))
        .args([
            "-R",
            "-X",
            "stream",
            "-h",
            primary.host(),
            "-p",
            &primary.port().to_string(),
            "-U",
            "postgres",
            "-D",
        ])
        .arg(&standby_dir)
        .output()
        .unwrap();
    assert!(cloned.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&cloned.stderr));
    let standby = PgCluster::from_data_dir(15, &standby_dir);
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "t");

    // Same system identifier, wrong server: copying the standby's files under the primary's
    // backup would restore silently wrong data.
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = repository(repo_dir.path());
    let mut config = InstanceConfig {
        name: "main".into(),
        pgdata: standby_dir.display().to_string(),
        connection: Connection {
            host: Some(primary.host().into()),
            port: Some(primary.port()),
            user: Some("postgres".into()),
            database: None,
        },
        external_dirs: Vec::new(),
        compression: None,
        system_identifier: None,
        retention: Default::default(),
    };
    instance::add(&repo, &config).unwrap();
    let options = BackupOptions { instance: "main".into(), ..Default::default() };
    let err = backup(&repo, &options, &Silent).unwrap_err();
    assert!(err.to_string().contains("standby"), "{err}");

    // Pointed at the standby itself, the backup is taken from the standby.
    config.connection.port = Some(standby.port());
    instance::update(&repo, &config).unwrap();
    assert_eq!(backup(&repo, &options, &Silent).unwrap().record.status, BackupStatus::Ok);
}

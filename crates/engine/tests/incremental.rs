//! DELTA backups: a full, then deltas after small changes. Each delta reads only the files
//! that changed (and, inside them, takes unchanged pieces from its parent: by WAL summaries on
//! PostgreSQL 17+, by page LSNs before), stores about as much as changed, and restores on its
//! own to the source's data at its point.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::Command;

mod common;

use cairn_engine::catalog::BackupMode;
use cairn_engine::{backup, restore, BackupOptions, BackupSummary, RestoreOptions, Silent};
use cairn_repo::Repository;
use cairn_testkit::{PgCluster, PgOptions};
use common::{add_instance, repository};

fn take(repo: &Repository, mode: BackupMode) -> BackupSummary {
    take_with(repo, mode, false).unwrap()
}

/// `require_wal_summaries`: `-b PAGE` / `-b PTRACK`.
fn take_with(
    repo: &Repository,
    mode: BackupMode,
    require_wal_summaries: bool,
) -> cairn_engine::Result<BackupSummary> {
    let options = BackupOptions {
        instance: "main".into(),
        channels: 2,
        mode,
        require_wal_summaries,
        ..Default::default()
    };
    backup(repo, &options, &Silent)
}

fn state(cluster: &PgCluster) -> String {
    let main = cluster.psql(
        "SELECT md5(string_agg(a::text, ',' ORDER BY aid)) || ':' || (SELECT count(*) FROM pgbench_history) \
         || ':' || (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM shrinking t) \
         || ':' || (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM spaced t) FROM pgbench_accounts a",
    );
    let created = cluster.psql("SELECT count(*) FROM pg_database WHERE datname = 'later'");
    let later = if created == "1" { cluster.psql_db("later", "SELECT sum(id) FROM t") } else { "-".into() };
    format!("{main}:{later}")
}

#[test]
fn deltas_by_page_lsn_on_15() {
    deltas_restore_and_store_only_what_changed(15, "page-lsn");
}

#[test]
fn deltas_by_wal_summaries_on_17() {
    deltas_restore_and_store_only_what_changed(17, "wal-summaries");
}

#[test]
fn deltas_by_wal_summaries_on_18() {
    deltas_restore_and_store_only_what_changed(18, "wal-summaries");
}

fn deltas_restore_and_store_only_what_changed(major: u32, change_source: &str) {
    // No autovacuum: what each delta stores is what the test changed.
    let options = PgOptions::new().setting("autovacuum", "off");
    let options = if major >= 17 { options.setting("summarize_wal", "on") } else { options };
    let cluster = PgCluster::start_with(major, options);
    let pgbench = PgCluster::client_bin_dir().join("pgbench");
    let init = Command::new(pgbench).envs(cluster.env()).args(["-i", "-q", "-s", "5"]).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let work = tempfile::tempdir().unwrap();
    // A tablespace: its relation files are found by their tablespace OID in the summaries.
    let tablespace = work.path().join("tblspc");
    std::fs::create_dir(&tablespace).unwrap();
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
    assert!(status.success());
    cluster.psql(&format!("CREATE TABLESPACE extra LOCATION '{}'", tablespace.display()));
    cluster.psql(
        "CREATE TABLE shrinking AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 40000) g; \
         ALTER TABLE shrinking SET (autovacuum_enabled = off); \
         CREATE TABLE spaced TABLESPACE extra AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 30000) g; \
         CHECKPOINT",
    );
    let repo = repository(&work.path().join("repo"));
    add_instance(&repo, &cluster, Vec::new());

    // With no backup before it, a DELTA is a FULL.
    let expected = state(&cluster);
    let full = take(&repo, BackupMode::Delta);
    assert_eq!(full.record.mode, BackupMode::Full);
    assert_eq!(full.record.parent, None);
    let mut points = vec![(full.record.id.clone(), expected)];

    // A day's work: 1 % of the accounts (contiguous), then the next delta; the first day also
    // 100 pgbench transactions, a truncation and a new database.
    let mut parent = full.record.id.clone();
    for day in 0..2 {
        // Files untouched since just now must be older than the parent's start by the guard.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let from = 1 + day * 5000;
        cluster.psql(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {from} AND {} ; \
             UPDATE spaced SET v = 'day {day}' WHERE id <= 100; \
             INSERT INTO pgbench_history SELECT 1, 1, aid, 1, now() FROM generate_series(1, 100) aid; CHECKPOINT",
            from + 4999
        ));
        if day == 0 {
            let run = Command::new(PgCluster::client_bin_dir().join("pgbench"))
                .envs(cluster.env())
                .args(["-n", "-c", "2", "-t", "50"])
                .output()
                .unwrap();
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
            // A relation truncated by VACUUM and grown again with other rows, and a new database:
            // the pieces past the truncation and the new database's files are new.
            for sql in [
                "DELETE FROM shrinking WHERE id > 20000",
                "VACUUM shrinking",
                "INSERT INTO shrinking SELECT g, repeat('y', 200) FROM generate_series(20001, 30000) g",
                "CREATE DATABASE later",
            ] {
                cluster.psql(sql);
            }
            cluster.psql_db(
                "later",
                "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g; CHECKPOINT",
            );
        }
        let accounts: u64 = cluster.psql("SELECT pg_relation_size('pgbench_accounts')").parse().unwrap();
        // Read before the backup: reading can change pages (hint bits, pruning on access),
        // which would then count as the next day's change.
        let expected = state(&cluster);
        // PAGE/PTRACK need WAL summaries: refused before anything starts where there are none.
        let summaries = change_source == "wal-summaries";
        if !summaries && day == 0 {
            let before = cairn_engine::catalog::list(&repo, Some("main")).unwrap().len();
            let refused = take_with(&repo, BackupMode::Delta, true).unwrap_err().to_string();
            assert!(refused.contains("WAL summaries") && refused.contains("-b DELTA"), "{refused}");
            assert_eq!(cairn_engine::catalog::list(&repo, Some("main")).unwrap().len(), before);
        }
        let delta = take_with(&repo, BackupMode::Delta, summaries && day == 1).unwrap();
        assert_eq!(delta.record.mode, BackupMode::Delta);
        assert_eq!(delta.record.parent.as_deref(), Some(parent.as_str()));
        assert_eq!(delta.record.change_source.as_deref(), Some(change_source));
        assert!(delta.unchanged_files > 100, "{} files unchanged", delta.unchanged_files);
        let share = delta.record.stored_bytes as f64 / full.record.stored_bytes as f64;
        eprintln!(
            "PostgreSQL {major} delta {day}: {} of {} files unchanged ({} MiB unread), {} MiB of changed files \
             from the parent ({change_source}), new data {:.2} % of {} MiB, stored {} KiB = {:.1} % of the \
             full's {} KiB, {:.2} s",
            delta.unchanged_files,
            delta.files,
            delta.unchanged_bytes >> 20,
            delta.reused_bytes >> 20,
            delta.new_bytes as f64 * 100.0 / delta.record.data_bytes as f64,
            delta.record.data_bytes >> 20,
            delta.record.stored_bytes >> 10,
            share * 100.0,
            full.record.stored_bytes >> 10,
            delta.seconds,
        );
        // Most of the accounts table did not change: its pieces are the parent's.
        assert!(delta.reused_bytes > accounts * 8 / 10, "{} of {accounts} bytes reused", delta.reused_bytes);
        // Only changed pieces are new; the WAL kept with the backup is most of what is added.
        // (Day 0 also made a database: a copy of the template's catalogs.)
        if day == 1 {
            assert!(share < 0.10, "a delta after a 1 % change stored {:.1} % of the full", share * 100.0);
            assert!(delta.new_bytes * 25 < delta.record.data_bytes, "new data over 4 % after a 1 % change");
        }
        parent = delta.record.id.clone();
        points.push((delta.record.id.clone(), expected));
    }

    // Every backup restores on its own to its point (its tablespace beside it).
    let moved = |target: &Path| {
        let to = target.with_extension("tblspc");
        vec![(tablespace.display().to_string(), to.display().to_string())]
    };
    for (id, expected) in &points {
        let target = work.path().join(format!("restore-{id}"));
        let options = RestoreOptions {
            instance: "main".into(),
            backup_id: Some(id.clone()),
            target: target.clone(),
            channels: 2,
            tablespace_mapping: moved(&target),
            ..Default::default()
        };
        restore(&repo, &options, &Silent).unwrap();
        let status =
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
        assert!(status.success());
        let copy = PgCluster::from_data_dir(major, &target);
        assert_eq!(&state(&copy), expected, "backup {id}");
    }

    // Delta restore: the newest backup over the full's restored (and since started) cluster
    // writes little and gives exactly what a clean restore gives.
    let (newest, expected) = points.last().unwrap().clone();
    let over = work.path().join(format!("restore-{}", points[0].0));
    let clean = work.path().join("clean");
    let restore_into = |target: &Path, delta: bool| {
        let options = RestoreOptions {
            instance: "main".into(),
            backup_id: Some(newest.clone()),
            target: target.to_path_buf(),
            channels: 2,
            delta,
            tablespace_mapping: moved(target),
            ..Default::default()
        };
        restore(&repo, &options, &Silent).unwrap()
    };
    let summary = restore_into(&over, true);
    let stats = summary.delta.unwrap();
    eprintln!(
        "delta restore: wrote {} KiB of {} KiB, {} file(s) unchanged, {} removed",
        stats.bytes_written >> 10,
        stats.bytes_restored >> 10,
        stats.files_unchanged,
        stats.files_removed
    );
    // What is written: the backup's own WAL segments, the new database, the changed pieces
    // (pgbench's random updates touch a piece each).
    assert!(stats.bytes_written * 2 < stats.bytes_restored, "{stats:?}");
    assert!(stats.files_unchanged > 100 && stats.files_removed > 0, "{stats:?}");
    restore_into(&clean, false);
    // The same files, but for where the tablespace link points.
    let tree = |dir: &Path| {
        let mut files = cairn_testkit::file_tree(dir);
        files.retain(|path, _| !path.starts_with("pg_tblspc/"));
        (files, cairn_testkit::file_tree(&dir.with_extension("tblspc")))
    };
    assert!(tree(&over) == tree(&clean), "a delta restore differs from a clean one");
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
    assert!(status.success());
    let copy = PgCluster::from_data_dir(major, &over);
    assert_eq!(state(&copy), expected);
}

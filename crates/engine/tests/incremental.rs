//! DELTA backups: a full, then deltas after small changes. Each delta reads only the files
//! that changed, stores about as much as changed, and restores on its own to the source's data
//! at its point.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::Command;

mod common;

use cairn_engine::catalog::BackupMode;
use cairn_engine::{backup, restore, BackupOptions, BackupSummary, RestoreOptions, Silent};
use cairn_repo::Repository;
use cairn_testkit::PgCluster;
use common::{add_instance, repository};

fn take(repo: &Repository, mode: BackupMode) -> BackupSummary {
    let options = BackupOptions { instance: "main".into(), channels: 2, mode, ..Default::default() };
    backup(repo, &options, &Silent).unwrap()
}

fn state(cluster: &PgCluster) -> String {
    cluster.psql(
        "SELECT md5(string_agg(a::text, ',' ORDER BY aid)) || ':' || (SELECT count(*) FROM pgbench_history) \
         FROM pgbench_accounts a",
    )
}

#[test]
fn a_full_then_deltas_each_restore_and_store_only_what_changed() {
    let cluster = PgCluster::start(15);
    let pgbench = PgCluster::client_bin_dir().join("pgbench");
    let init = Command::new(pgbench).envs(cluster.env()).args(["-i", "-q", "-s", "5"]).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    cluster.psql("CHECKPOINT");
    let work = tempfile::tempdir().unwrap();
    let repo = repository(&work.path().join("repo"));
    add_instance(&repo, &cluster, Vec::new());

    // With no backup before it, a DELTA is a FULL.
    let full = take(&repo, BackupMode::Delta);
    assert_eq!(full.record.mode, BackupMode::Full);
    assert_eq!(full.record.parent, None);
    let mut points = vec![(full.record.id.clone(), state(&cluster))];

    // A day's work: 1 % of the accounts (contiguous), then the next delta.
    let mut parent = full.record.id.clone();
    for day in 0..2 {
        // Files untouched since just now must be older than the parent's start by the guard.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let from = 1 + day * 5000;
        cluster.psql(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN {from} AND {} ; \
             INSERT INTO pgbench_history SELECT 1, 1, aid, 1, now() FROM generate_series(1, 100) aid; CHECKPOINT",
            from + 4999
        ));
        let delta = take(&repo, BackupMode::Delta);
        assert_eq!(delta.record.mode, BackupMode::Delta);
        assert_eq!(delta.record.parent.as_deref(), Some(parent.as_str()));
        assert!(delta.unchanged_files > 100, "{} files unchanged", delta.unchanged_files);
        let share = delta.record.stored_bytes as f64 / full.record.stored_bytes as f64;
        eprintln!(
            "delta {day}: {} of {} files unchanged ({} MiB unread), stored {} KiB = {:.1} % of the full's {} KiB",
            delta.unchanged_files,
            delta.files,
            delta.unchanged_bytes >> 20,
            delta.record.stored_bytes >> 10,
            share * 100.0,
            full.record.stored_bytes >> 10
        );
        // The changed relation files are read whole, but only their changed chunks are new;
        // the WAL kept with the backup is most of what is added.
        assert!(share < 0.15, "a delta after a 1 % change stored {:.1} % of the full", share * 100.0);
        parent = delta.record.id.clone();
        points.push((delta.record.id.clone(), state(&cluster)));
    }

    // Every backup restores on its own to its point.
    for (id, expected) in &points {
        let target = work.path().join(format!("restore-{id}"));
        let options = RestoreOptions {
            instance: "main".into(),
            backup_id: Some(id.clone()),
            target: target.clone(),
            channels: 2,
            ..Default::default()
        };
        restore(&repo, &options, &Silent).unwrap();
        let status =
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
        assert!(status.success());
        let copy = PgCluster::from_data_dir(15, &target);
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
    assert!(stats.bytes_written * 5 < stats.bytes_restored, "{stats:?}");
    assert!(stats.files_unchanged > 100 && stats.files_removed > 0, "{stats:?}");
    restore_into(&clean, false);
    assert!(
        cairn_testkit::file_tree(&over) == cairn_testkit::file_tree(&clean),
        "a delta restore differs from a clean one"
    );
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
    assert!(status.success());
    let copy = PgCluster::from_data_dir(15, &over);
    assert_eq!(state(&copy), expected);
}

//! Crash safety: a writer killed at every storage step leaves a repository that checks clean,
//! keeps every earlier backup, and lets the next writer finish, reusing what was stored.

mod common;

use std::sync::Arc;

use cairn_repo::{lock, prune, PruneOptions, Repository, WriterOptions};
use cairn_storage::{Fault, FaultRule, FaultyStorage, OpKind, Storage, Trigger};
use common::*;

/// Flushes an index object after every pack, so that a crash leaves reusable work behind.
fn eager() -> WriterOptions {
    WriterOptions { channels: 2, index_every_packs: 1, ..Default::default() }
}

fn backup_through(storage: Arc<dyn Storage>, files: &[StoredFile]) -> Result<(), cairn_repo::RepoError> {
    backup_with(&Repository::open(storage, Some(PASSWORD))?, files, &eager()).map(drop)
}

#[test]
fn a_writer_killed_at_any_step_damages_nothing_and_the_rerun_reuses_its_work() {
    let base_files = sample_files(2, 20);
    // Several packs' worth (packs are 1 MiB here), so that some are indexed before a crash.
    let new_files: Vec<StoredFile> =
        (0..4).map(|i| StoredFile { path: format!("new/{i}"), data: noise(900_000, 100 + i) }).collect();

    // How many puts a whole backup takes.
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    backup(&init(storage.clone(), cairn_repo::Encryption::Aes256Gcm), &base_files, 1);
    let counting = Arc::new(FaultyStorage::new(storage));
    backup_through(counting.clone(), &new_files).unwrap();
    let puts = counting.count(Some(OpKind::Put));
    assert!(puts >= 8, "expected several packs and index objects, saw {puts} puts");

    let mut reused_somewhere = false;
    for crash_at in 0..puts {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let (base, _) = backup(&init(storage.clone(), cairn_repo::Encryption::Aes256Gcm), &base_files, 1);

        let faulty = Arc::new(FaultyStorage::new(storage.clone()).crash_after_puts(crash_at));
        assert!(
            backup_through(faulty, &new_files).is_err(),
            "crash after {crash_at} puts must fail the backup"
        );
        // The dead process's lock stays behind; a real restart would find it stale.
        lock::remove_locks(storage.as_ref(), true).unwrap();

        let repo = reopen(storage.clone());
        let report =
            cairn_repo::check(&repo, &cairn_repo::CheckOptions { read_data: true, channels: 2 }).unwrap();
        assert!(report.is_ok(), "crash after {crash_at} puts: {:?}", report.errors);
        assert_eq!(report.manifests, 1, "no half-done manifest is ever recorded");
        assert_same(&restore(&repo, &base), &base_files);

        let (rerun, stats) = backup_with(&repo, &new_files, &eager()).unwrap();
        reused_somewhere |= stats.new_chunks < stats.chunks - 1;
        assert_same(&restore(&repo, &rerun), &new_files);
        prune(&repo, &PruneOptions::default()).unwrap();
        assert_checks_clean(&repo);
    }
    assert!(reused_somewhere, "a re-run after a late crash must reuse chunks the first run stored");
}

#[test]
fn a_failed_upload_fails_the_commit_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    init(storage.clone(), cairn_repo::Encryption::ChaCha20Poly1305);
    // Only pack uploads fail; locks and everything else work.
    let faulty = Arc::new(FaultyStorage::new(storage.clone()).with_rule(FaultRule {
        op: Some(OpKind::Put),
        path_prefix: Some("data/".into()),
        trigger: Trigger::After(0),
        fault: Fault::TornWrite,
    }));
    let err = backup_through(faulty, &sample_files(4, 30)).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(count(storage.as_ref(), "manifests/"), 0);
    assert_eq!(count(storage.as_ref(), "locks/"), 0, "the lock is released on failure");
    assert_checks_clean(&reopen(storage));
}

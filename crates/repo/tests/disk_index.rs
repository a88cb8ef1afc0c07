//! The chunk index on disk: with room for only a few entries in memory, every index lookup of
//! a writer, a restore, check and prune goes through sorted runs in temporary files, and the
//! results are the same as in memory. (A test binary of its own: the setting is process-wide.)

mod common;

use cairn_repo::{Encryption, PruneOptions};
use common::*;

#[test]
fn a_repository_whose_index_does_not_fit_in_memory_works_the_same() {
    // Before any thread starts: 16 entries in memory, so every pack spills and runs merge.
    std::env::set_var("CAIRN_INDEX_MEMORY_ENTRIES", "16");
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let files = test_files(0);
    let (first_id, first) = backup(&repo, &files, 3);
    assert!(first.packs >= 6, "enough packs to spill and merge runs: {first:?}");
    assert_same(&restore(&reopen(storage.clone()), &first_id), &files);

    // Dedup against the on-disk index: nothing new the second time.
    let repo = reopen(storage.clone());
    let (second_id, second) = backup(&repo, &files, 2);
    assert_eq!((second.new_chunks, second.chunks), (0, first.chunks));

    // Half the files changed: only their chunks are new; then the first backup goes.
    let mut changed = test_files(0);
    for f in changed.iter_mut().step_by(2) {
        f.data = noise(f.data.len(), 99);
    }
    let (third_id, third) = backup(&repo, &changed, 2);
    assert!(third.new_chunks > 0 && third.new_chunks < first.new_chunks, "{third:?}");
    assert_checks_clean(&repo);
    repo.delete_manifest(&first_id).unwrap();
    repo.delete_manifest(&second_id).unwrap();
    let pruned = cairn_repo::prune(&repo, &PruneOptions::default()).unwrap();
    assert!(pruned.blobs_removed > 0, "{pruned:?}");
    assert_checks_clean(&repo);
    assert_same(&restore(&reopen(storage), &third_id), &changed);
}

/// Half compressible, half not: a few megabytes in 1 MiB packs.
fn test_files(seed: u64) -> Vec<StoredFile> {
    (0..40u64)
        .map(|i| {
            let len = 150_000 + i as usize * 9_000;
            let data = if i % 2 == 0 { noise(len, seed + i) } else { pagey(len, seed + i) };
            StoredFile { path: format!("base/5/{}", 16384 + i), data }
        })
        .collect()
}

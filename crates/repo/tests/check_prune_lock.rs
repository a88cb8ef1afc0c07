//! check finds damage and names what it hurts; prune removes only what nothing needs; locks
//! keep prune and writers apart.

mod common;

use bytes::Bytes;
use cairn_repo::lock::{self, LockGuard, LockInfo};
use cairn_repo::{check, prune, CheckOptions, Encryption, PruneOptions, RepoError, Repository};
use cairn_storage::{PutMode, Storage};
use common::*;

fn read_data() -> CheckOptions {
    CheckOptions { read_data: true, channels: 2 }
}

fn first_object(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let mut files = walk(&dir.join(prefix));
    files.sort();
    files.into_iter().next().expect("an object")
}

#[test]
fn a_healthy_repository_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(dir.path()), Encryption::Aes256Gcm);
    backup(&repo, &sample_files(5, 3), 2);
    for options in [CheckOptions::default(), read_data()] {
        let report = check(&repo, &options).unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(report.manifests, 1);
    }
}

#[test]
fn a_flipped_byte_in_a_pack_is_found_and_named_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    backup(&repo, &sample_files(3, 4), 1);
    let pack = first_object(dir.path(), "data");
    flip_byte(&pack, |_| 10);
    // The header is intact, so only reading the data finds it.
    assert!(check(&repo, &CheckOptions::default()).unwrap().is_ok());
    let report = check(&repo, &read_data()).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let problem = &report.errors[0];
    assert!(problem.object.ends_with(pack.file_name().unwrap().to_str().unwrap()));
    assert!(problem.message.contains("1 damaged blob"), "{}", problem.message);
    assert!(problem.affects.iter().any(|a| a.contains("file base/5/")), "{:?}", problem.affects);
}

#[test]
fn a_damaged_pack_header_is_found_without_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(dir.path()), Encryption::Aes256Gcm);
    backup(&repo, &sample_files(2, 5), 1);
    flip_byte(&first_object(dir.path(), "data"), |len| len - 8);
    let report = check(&repo, &CheckOptions::default()).unwrap();
    assert!(report.errors.iter().any(|p| p.message.contains("header")), "{:?}", report.errors);
}

#[test]
fn damaged_index_manifest_and_key_objects_are_found() {
    for prefix in ["index", "manifests", "keys"] {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let repo = init(storage.clone(), Encryption::Aes256Gcm);
        backup(&repo, &sample_files(2, 6), 1);
        let spare = repo.add_key(b"spare", FAST_KDF).unwrap();
        let mut victims = walk(&dir.path().join(prefix));
        victims.sort();
        // Damage a key other than the one we open with, so the repository still opens.
        let victim = victims.into_iter().find(|p| !p.ends_with(spare.to_hex()) || prefix != "keys").unwrap();
        let victim = if prefix == "keys" { dir.path().join("keys").join(spare.to_hex()) } else { victim };
        flip_byte(&victim, |len| len / 2);
        let report = check(&reopen(storage), &read_data()).unwrap();
        let name = victim.file_name().unwrap().to_str().unwrap();
        assert!(
            report.errors.iter().any(|p| p.object.ends_with(name) && p.object.starts_with(prefix)),
            "{prefix}: {:?}",
            report.errors
        );
    }
}

#[test]
fn the_only_key_damaged_is_reported_as_damage_not_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    init(storage.clone(), Encryption::Aes256Gcm);
    flip_byte(&first_object(dir.path(), "keys"), |len| len / 2);
    let err = Repository::open(storage, Some(PASSWORD)).unwrap_err();
    assert!(matches!(err, RepoError::Damaged { what: "key", .. }), "{err}");
}

#[test]
fn prune_removes_only_what_no_manifest_needs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let old = sample_files(6, 7);
    let (old_id, _) = backup(&repo, &old, 2);
    let mut new: Vec<StoredFile> = sample_files(6, 7).into_iter().skip(3).collect();
    new.push(StoredFile { path: "base/5/new".into(), data: pagey(300_000, 99) });
    let (new_id, _) = backup(&repo, &new, 2);

    let dry = prune(&repo, &PruneOptions { dry_run: true }).unwrap();
    assert_eq!(dry.blobs_removed, 0, "both manifests need everything");

    storage.delete(&format!("manifests/{old_id}")).unwrap();
    let listing = |s: &dyn Storage| {
        let mut v: Vec<String> = s.list("").map(|m| m.unwrap().path).collect();
        v.sort();
        v
    };
    let before = listing(storage.as_ref());
    let dry = prune(&repo, &PruneOptions { dry_run: true }).unwrap();
    assert!(dry.blobs_removed > 0 && dry.dry_run);
    assert_eq!(listing(storage.as_ref()), before, "a dry run changes nothing");

    let done = prune(&repo, &PruneOptions::default()).unwrap();
    assert_eq!(done.blobs_removed, dry.blobs_removed);
    assert!(done.bytes_after < done.bytes_before, "{done:?}");
    let fresh = reopen(storage.clone());
    assert_checks_clean(&fresh);
    assert_same(&restore(&fresh, &new_id), &new);
    // Nothing left to remove.
    assert_eq!(prune(&fresh, &PruneOptions::default()).unwrap().blobs_removed, 0);
}

#[test]
fn prune_repacks_partly_used_packs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::ChaCha20Poly1305);
    // One writer puts both files' chunks into shared packs; then one manifest goes.
    let keep = StoredFile { path: "keep".into(), data: pagey(150_000, 1) };
    let drop = StoredFile { path: "drop".into(), data: pagey(150_000, 2) };
    let (both, _) = backup(&repo, &[keep, drop], 1);
    let (kept, _) = backup(&repo, &[StoredFile { path: "keep".into(), data: pagey(150_000, 1) }], 1);
    storage.delete(&format!("manifests/{both}")).unwrap();
    let s = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(s.packs_repacked >= 1 && s.packs_written >= 1, "{s:?}");
    let fresh = reopen(storage);
    assert!(check(&fresh, &read_data()).unwrap().is_ok());
    assert_eq!(restore(&fresh, &kept)[0].data, pagey(150_000, 1));
}

#[test]
fn prune_deletes_nothing_when_a_needed_chunk_is_in_no_pack() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let files = sample_files(4, 3);
    let (first, _) = backup(&repo, &files, 1);
    // The same data under other names: its chunks are the first backup's, its entry list new.
    let renamed: Vec<StoredFile> = files
        .iter()
        .map(|f| StoredFile { path: format!("moved/{}", f.path), data: f.data.clone() })
        .collect();
    let (second, _) = backup(&repo, &renamed, 1);
    storage.delete(&format!("manifests/{first}")).unwrap();
    // The pack holding the data is lost behind the repository's back.
    let needed = restore_entries(&repo, &second)[0].chunks[0];
    let lost = repo.locate(&needed).unwrap().pack;
    storage.delete(&cairn_repo::layout::path(cairn_repo::layout::Kind::Pack, &lost)).unwrap();
    let listing = |s: &dyn Storage| {
        let mut v: Vec<String> =
            s.list("").map(|m| m.unwrap().path).filter(|p| !p.starts_with("index/")).collect();
        v.sort();
        v
    };
    let before = listing(storage.as_ref());
    let error = prune(&repo, &PruneOptions::default()).unwrap_err();
    assert!(error.to_string().contains("no pack holds it"), "{error}");
    assert_eq!(listing(storage.as_ref()), before, "nothing deleted (new index objects may be added)");
}

#[test]
fn prune_removes_packs_left_by_an_interrupted_write() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let (id, _) = backup(&repo, &sample_files(2, 8), 1);
    // A pack that no index names, as a writer killed after uploading it would leave.
    let stray = cairn_repo::pack::PackBuilder::default();
    let (stray_id, bytes, _) = stray.finish(&cairn_repo::crypto::Crypto::none());
    storage
        .put(&cairn_repo::layout::path(cairn_repo::layout::Kind::Pack, &stray_id), bytes, PutMode::Create)
        .unwrap();
    let report = check(&repo, &CheckOptions::default()).unwrap();
    assert!(report.is_ok());
    assert!(report.warnings.iter().any(|w| w.message.contains("in no index")), "{:?}", report.warnings);
    assert_eq!(prune(&repo, &PruneOptions::default()).unwrap().packs_deleted, 1);
    assert!(check(&repo, &CheckOptions::default()).unwrap().warnings.is_empty());
    assert_same(&restore(&repo, &id), &sample_files(2, 8));
}

#[test]
fn an_exclusive_lock_excludes_everyone_and_shared_locks_coexist() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::None);
    {
        let _a = LockGuard::acquire(storage.clone(), false).unwrap();
        let _b = LockGuard::acquire(storage.clone(), false).unwrap();
        let err = prune(&repo, &PruneOptions::default()).unwrap_err();
        assert!(matches!(err, RepoError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())));
    }
    {
        let _x = LockGuard::acquire(storage.clone(), true).unwrap();
        assert!(matches!(LockGuard::acquire(storage.clone(), false), Err(RepoError::Locked { .. })));
        assert!(matches!(check(&repo, &CheckOptions::default()), Err(RepoError::Locked { .. })));
    }
    assert_eq!(count(storage.as_ref(), "locks/"), 0, "released locks are removed");
}

#[test]
fn stale_locks_are_detected_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    init(storage.clone(), Encryption::None);
    // A lock whose process is gone (same host), and one not refreshed for hours (other host).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let now = chrono::Utc::now();
    let dead = LockInfo {
        exclusive: true,
        host: lock::hostname(),
        pid: dead_pid,
        user: "x".into(),
        created: now,
        refreshed: now,
    };
    let old = now - chrono::Duration::hours(3);
    let abandoned = LockInfo {
        exclusive: true,
        host: "elsewhere".into(),
        pid: 1,
        user: "y".into(),
        created: old,
        refreshed: old,
    };
    let live = LockInfo {
        exclusive: false,
        host: "elsewhere".into(),
        pid: 1,
        user: "z".into(),
        created: now,
        refreshed: now,
    };
    for (i, info) in [dead, abandoned, live].iter().enumerate() {
        let path = format!("locks/{}", cairn_repo::Id([i as u8 + 1; 32]));
        storage.put(&path, Bytes::from(serde_json::to_vec(info).unwrap()), PutMode::Create).unwrap();
    }
    let locks = lock::list_locks(storage.as_ref()).unwrap();
    assert_eq!(locks.iter().filter(|(_, l)| l.is_stale()).count(), 2);
    // A shared lock is allowed past the live shared one; the stale exclusive ones are cleared.
    drop(LockGuard::acquire(storage.clone(), false).unwrap());
    assert_eq!(count(storage.as_ref(), "locks/"), 1);
    assert!(matches!(LockGuard::acquire(storage.clone(), true), Err(RepoError::Locked { .. })));
    assert_eq!(lock::remove_locks(storage.as_ref(), true).unwrap().len(), 1);
    assert_eq!(count(storage.as_ref(), "locks/"), 0);
}

#[test]
fn read_data_opens_every_blob_even_in_an_intact_pack() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::None);
    // A pack, well formed and named by its hash, holding a blob that is not what its id says:
    // what a writer bug would leave.
    let crypto = cairn_repo::crypto::Crypto::none();
    let mut pack = cairn_repo::pack::PackBuilder::default();
    let claimed = crypto.chunk_id(b"what the id promises");
    pack.add(claimed, cairn_repo::compression::Codec::Raw, 13, b"something else");
    let (pack_id, bytes, blobs) = pack.finish(&crypto);
    storage
        .put(&cairn_repo::layout::path(cairn_repo::layout::Kind::Pack, &pack_id), bytes, PutMode::Create)
        .unwrap();
    // Its index object, in the typed-object envelope of an unencrypted repository (format §8).
    let mut plain = vec![1u8, 1, 1];
    plain.extend(zstd::bulk::compress(&cairn_repo::index::encode(&[(pack_id, blobs)]), 3).unwrap());
    let index_id = cairn_repo::Id::of_object(&plain);
    storage.put(&format!("index/{index_id}"), Bytes::from(plain), PutMode::Create).unwrap();

    assert!(check(&repo, &CheckOptions::default()).unwrap().is_ok(), "the structure is sound");
    let report = check(&repo, &read_data()).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].message.contains("do not open"), "{:?}", report.errors);
}

//! The repository end to end on a real filesystem: round trips, dedup, keys, errors.

mod common;

use cairn_repo::{Compression, Encryption, RepoError, Repository, Writer, WriterOptions};
use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn what_is_stored_comes_back_unchanged(
        sizes in proptest::collection::vec(0usize..200_000, 1..6),
        seed in any::<u64>(),
        which in 0..3usize,
        channels in 1..4usize,
    ) {
        let (encryption, compression) = [
            (Encryption::Aes256Gcm, Compression::Zstd { level: 1 }),
            (Encryption::ChaCha20Poly1305, Compression::Lz4),
            (Encryption::None, Compression::None),
        ][which];
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let repo = Repository::init(storage.clone(), small_options(encryption, compression)).unwrap();
        let files: Vec<StoredFile> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| StoredFile { path: format!("f{i}"), data: if i % 3 == 2 { vec![0; n] } else { pagey(n, seed + i as u64) } })
            .collect();
        let (id, _) = backup(&repo, &files, channels);
        let fresh = reopen(storage);
        assert_same(&restore(&fresh, &id), &files);
    }
}

#[test]
fn a_second_store_of_the_same_data_adds_no_packs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let files = sample_files(6, 1);
    let (_, first) = backup(&repo, &files, 2);
    let packs = count(storage.as_ref(), "data/");
    assert!(first.new_chunks > 0 && packs > 0);

    let repo = reopen(storage.clone());
    let (second_id, second) = backup(&repo, &files, 2);
    assert_eq!(second.new_chunks, 0, "everything was already stored");
    assert_eq!(count(storage.as_ref(), "data/"), packs);
    assert_eq!(second.bytes, first.bytes);
    assert_same(&restore(&repo, &second_id), &files);
}

#[test]
fn small_changes_store_only_changed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let mut files = sample_files(4, 2);
    let (_, first) = backup(&repo, &files, 1);
    files[0].data[100] ^= 0xff; // one page of a fixed-chunked file
    files[1].data.splice(5000..5000, *b"inserted"); // an insertion into a content-chunked file
    let (id, second) = backup(&repo, &files, 1);
    assert!(second.new_bytes * 5 < first.new_bytes, "{second:?} vs {first:?}");
    assert_same(&restore(&repo, &id), &files);
}

/// An incremental file: pieces the caller knows are unchanged are named, not handed in again.
#[test]
fn a_file_stored_piece_by_piece_reuses_named_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let piece = repo.config().chunker.fixed_size as usize;
    let mut files = vec![StoredFile { path: "rel".into(), data: pagey(piece * 4 + 100, 7) }];
    let (first, _) = backup(&repo, &files, 2);
    let old = restore_entries(&repo, &first).remove(0);
    assert_eq!(old.chunks.len(), 5);

    // Piece 2 changed; the others are the old ones, handed in by id; the file grew.
    files[0].data[piece * 2 + 10] ^= 0xff;
    files[0].data.extend_from_slice(&noise(piece, 8));
    let writer = Writer::new(&repo, &WriterOptions { channels: 2, ..Default::default() }).unwrap();
    let mut file = writer.file();
    for (i, part) in files[0].data.chunks(piece).enumerate() {
        match i {
            0 | 1 | 3 => file.push_stored(old.chunks[i], piece as u64).unwrap(),
            _ => file.push(part.to_vec()).unwrap(),
        }
    }
    let (chunks, size) = file.finish().unwrap();
    assert_eq!(size, files[0].data.len() as u64);
    writer.add_entry(&entry("rel", size, chunks)).unwrap();
    let (second, stats) = writer.commit("test", serde_json::json!({})).unwrap();
    // Six pieces, three of them new, and the chunk of the entry list.
    assert_eq!((stats.chunks, stats.new_chunks), (7, 4), "{stats:?}");
    assert_same(&restore(&repo, &second), &files);
    assert_checks_clean(&repo);

    // A piece over the largest chunk is refused.
    let writer = Writer::new(&repo, &WriterOptions::default()).unwrap();
    assert!(writer.file().push(vec![0; (16 << 20) + 1]).is_err());
}

#[test]
fn init_refuses_an_existing_repository_and_open_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    assert!(matches!(Repository::open(storage.clone(), None), Err(RepoError::NotInitialised { .. })));
    init(storage.clone(), Encryption::Aes256Gcm);
    let before = count(storage.as_ref(), "");
    let again = Repository::init(storage.clone(), small_options(Encryption::None, Compression::None));
    assert!(matches!(again, Err(RepoError::AlreadyExists { .. })));
    assert_eq!(count(storage.as_ref(), ""), before, "a failed init writes nothing");
}

#[test]
fn passwords_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    init(storage.clone(), Encryption::ChaCha20Poly1305);
    assert!(matches!(Repository::open(storage.clone(), None), Err(RepoError::PasswordRequired { .. })));
    assert!(matches!(
        Repository::open(storage.clone(), Some(b"wrong")),
        Err(RepoError::WrongPassword { keys: 1, .. })
    ));

    let repo = reopen(storage.clone());
    let first = repo.list_keys().unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].current);
    let err = repo.remove_key(&first[0].id.to_hex()).unwrap_err();
    assert!(err.to_string().contains("last key"), "{err}");

    let second = repo.add_key(b"another", FAST_KDF).unwrap();
    let by_second = Repository::open(storage.clone(), Some(b"another")).unwrap();
    assert_eq!(by_second.config().id, repo.config().id);
    // The key in use cannot be removed; the other one can.
    assert!(by_second.remove_key(&second.short()).is_err());
    by_second.remove_key(&first[0].id.short()).unwrap();
    assert!(matches!(
        Repository::open(storage.clone(), Some(PASSWORD)),
        Err(RepoError::WrongPassword { .. })
    ));
    assert_eq!(Repository::open(storage, Some(b"another")).unwrap().list_keys().unwrap().len(), 1);
}

#[test]
fn an_unencrypted_repository_says_so_and_has_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = init(storage.clone(), Encryption::None);
    assert_eq!(repo.config().encryption, Encryption::None);
    assert!(repo.add_key(b"x", FAST_KDF).is_err());
    let config = std::fs::read_to_string(dir.path().join("config")).unwrap();
    assert!(config.contains("\"encryption\": \"none\""), "{config}");
    Repository::open(storage, None).unwrap();
}

#[test]
fn encrypted_objects_do_not_leak_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    let repo = Repository::init(storage, small_options(Encryption::Aes256Gcm, Compression::None)).unwrap();
    let secret = b"TOP-SECRET-PAYROLL-ROW ".repeat(2000);
    backup(&repo, &[StoredFile { path: "secret-file-name".into(), data: secret }], 1);
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("secret-file-name"),
            "{} leaks",
            entry.display()
        );
    }
}

#[test]
fn files_written_in_pieces_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(&dir.path().join("repo")), Encryption::Aes256Gcm);
    // Even-numbered files are cut in fixed chunks, odd ones by content: a large file of each
    // (several pieces; the content-defined one with pieces off block boundaries), a file just
    // over the direct-I/O threshold, small and empty files, odd lengths throughout.
    let files: Vec<StoredFile> = [(40 << 20) + 1234, (20 << 20) + 77, (3 << 20) - 5, 1000, 0, 4096]
        .iter()
        .enumerate()
        .map(|(i, &n)| StoredFile { path: format!("f{i}"), data: pagey(n, i as u64) })
        .collect();
    let (id, _) = backup(&repo, &files, 2);
    let entries = restore_entries(&repo, &id);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let finished = std::sync::Mutex::new(Vec::new());
    let counted = std::sync::atomic::AtomicU64::new(0);
    let bytes = repo
        .write_files(
            &entries,
            3,
            |e| Ok(std::fs::File::create_new(out.join(&e.path)).unwrap()),
            |e, _| {
                finished.lock().unwrap().push(e.path.clone());
                Ok(())
            },
            |n| _ = counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap();
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    assert_eq!((bytes, counted.into_inner()), (total, total));
    let mut finished = finished.into_inner().unwrap();
    finished.sort();
    assert_eq!(finished, files.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
    for f in &files {
        assert!(std::fs::read(out.join(&f.path)).unwrap() == f.data, "{} differs", f.path);
    }
}

/// Two blobs of one pack, equally long, trade places behind the repository's back.
fn swap_two_blobs(dir: &std::path::Path) {
    let pack = walk(&dir.join("data")).into_iter().next().expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read pack");
    let blob = (16 << 10) + 28; // a raw 16 KiB chunk, sealed
    let (first, second) = bytes.split_at_mut(blob);
    first.swap_with_slice(&mut second[..blob]);
    std::fs::write(&pack, bytes).expect("write pack");
}

/// Format version 2 binds each blob to its chunk id (authentication proves it, restore does
/// not hash again); version 1 repositories still read and write, and hash instead. Either way
/// a blob in another chunk's place is refused, and `check --read-data` hashes.
#[test]
fn blobs_in_each_others_place_are_refused_in_both_format_versions() {
    for version in [2, 1] {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let repo = init(storage.clone(), Encryption::Aes256Gcm);
        assert_eq!(repo.config().version, cairn_repo::config::FORMAT_VERSION);
        if version == 1 {
            let mut config = repo.config().clone();
            config.version = 1;
            storage
                .put(cairn_repo::layout::CONFIG, config.to_bytes().into(), cairn_storage::PutMode::Overwrite)
                .unwrap();
        }
        let repo = reopen(storage.clone());
        assert_eq!(repo.config().version, version);
        let files = vec![StoredFile { path: "noise".into(), data: noise(4 << 14, 7) }];
        let (id, _) = backup(&repo, &files, 1);
        assert_same(&restore(&reopen(storage.clone()), &id), &files);
        assert_checks_clean(&repo);

        swap_two_blobs(dir.path());
        let repo = reopen(storage.clone());
        let entries = restore_entries(&repo, &id);
        let failure = repo.restore_files(&entries, 1, |_| Ok(std::io::sink())).expect_err("swapped blobs");
        assert!(matches!(failure, RepoError::Damaged { .. }), "version {version}: {failure}");
        // The same through write_files, which opens chunks straight into its staging buffers.
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let failure = repo
            .write_files(
                &entries,
                1,
                |e| Ok(std::fs::File::create(out.join(&e.path)).unwrap()),
                |_, _| Ok(()),
                |_| {},
            )
            .expect_err("swapped blobs");
        assert!(matches!(failure, RepoError::Damaged { .. }), "version {version}: {failure}");
        let report =
            cairn_repo::check(&repo, &cairn_repo::CheckOptions { read_data: true, channels: 1 }).unwrap();
        assert!(!report.is_ok(), "version {version}: check finds the swap");
    }
}

/// Memory stays bounded whatever `-j` asks: however many channels are given, no more than
/// `MAX_READERS` threads read and write at once.
#[test]
fn restores_read_on_at_most_max_readers_threads() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(&dir.path().join("repo")), Encryption::Aes256Gcm);
    let files: Vec<StoredFile> =
        (0..64).map(|i| StoredFile { path: format!("f{i}"), data: noise(256 << 10, i) }).collect();
    let (id, _) = backup(&repo, &files, 2);
    let entries = restore_entries(&repo, &id);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    let seen = || _ = threads.lock().unwrap().insert(std::thread::current().id());
    repo.write_files(
        &entries,
        255,
        |e| {
            seen();
            // Slow enough that every thread the restore starts takes a file.
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(std::fs::File::create_new(out.join(&e.path)).unwrap())
        },
        |_, _| Ok(()),
        |_| seen(),
    )
    .unwrap();
    let used = threads.into_inner().unwrap().len();
    assert!((2..=cairn_repo::MAX_READERS).contains(&used), "{used} threads");
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    repo.restore_files(&entries, 255, |_| {
        threads.lock().unwrap().insert(std::thread::current().id());
        std::thread::sleep(std::time::Duration::from_millis(20));
        Ok(std::io::sink())
    })
    .unwrap();
    assert!(threads.into_inner().unwrap().len() <= cairn_repo::MAX_READERS);
}

/// A direct write waits on the disk: once one file is written directly, as many threads again
/// join in. Where nothing can be written directly (tmpfs), only the threads asked for work.
#[test]
fn threads_join_in_once_files_are_written_directly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(&dir.path().join("repo")), Encryption::Aes256Gcm);
    // A file large enough to be written directly first (entries go in path order), then many
    // small ones for the threads that join.
    let mut files = vec![StoredFile { path: "big".into(), data: pagey(4 << 20, 1) }];
    files.extend((0..200).map(|i| StoredFile { path: format!("small{i:03}"), data: pagey(8192, i + 2) }));
    let (id, _) = backup(&repo, &files, 2);
    let entries = restore_entries(&repo, &id);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    let create = |e: &cairn_repo::FileEntry| {
        threads.lock().unwrap().insert(std::thread::current().id());
        Ok(std::fs::File::create_new(out.join(&e.path)).unwrap())
    };
    repo.write_files(&entries, 1, create, |_, _| Ok(()), |_| {}).unwrap();
    let probe = std::fs::File::create_new(out.join("probe")).unwrap();
    let direct = cairn_storage::direct::enable(&probe);
    assert_eq!(threads.into_inner().unwrap().len(), if direct { 2 } else { 1 }, "direct: {direct}");
    for f in &files {
        assert!(std::fs::read(out.join(&f.path)).unwrap() == f.data, "{} differs", f.path);
    }
}

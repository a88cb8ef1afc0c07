//! Named files: stored once, read back whole or header only, refused when the name is taken
//! by other content, and caught when moved, swapped or damaged.

#![allow(clippy::unwrap_used)]

mod common;

use cairn_repo::{CheckOptions, Compression, Encryption, PutOutcome, RepoError};
use common::{fs_storage, init, noise, pagey, reopen};
use serde_json::json;

#[test]
fn round_trip_idempotence_and_conflict() {
    for encryption in [Encryption::Aes256Gcm, Encryption::None] {
        let dir = tempfile::tempdir().unwrap();
        let storage = fs_storage(dir.path());
        let repo = init(storage.clone(), encryption);
        let content = pagey(16 << 20, 1);
        let attrs = json!({"first": 1, "names": ["a"]});
        let name = "wal/main/000000010000000000000001";
        for compression in [Compression::Zstd { level: 1 }, Compression::Lz4, Compression::None] {
            let name = format!("{name}-{compression:?}").replace([' ', '{', '}', ':'], "");
            assert_eq!(repo.put_file(&name, &content, compression, &attrs).unwrap(), PutOutcome::Stored);
            let (header, back) = reopen(storage.clone()).get_file(&name).unwrap().unwrap();
            assert_eq!(back, content);
            assert_eq!(header.attrs, attrs);
            assert_eq!(header.raw_len, content.len() as u64);
            assert_eq!(repo.file_header(&name).unwrap().unwrap(), header);
        }
        let name = "wal/main/000000010000000000000001-Zstdlevel1";
        // Again with the same content: fine, whatever the compression.
        assert_eq!(
            repo.put_file(name, &content, Compression::Lz4, &json!({})).unwrap(),
            PutOutcome::AlreadyStored
        );
        // Different content: refused, and the stored file is untouched.
        let mut other = content.clone();
        other[100] ^= 1;
        let err = repo.put_file(name, &other, Compression::None, &attrs).unwrap_err();
        assert!(matches!(err, RepoError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("different content"), "{err}");
        assert_eq!(repo.get_file(name).unwrap().unwrap().1, content);

        assert_eq!(repo.get_file("wal/main/absent").unwrap(), None);
        assert_eq!(repo.file_header("wal/main/absent").unwrap(), None);
        assert_eq!(repo.list_files("wal/main/").unwrap().len(), 3);
        assert!(repo.list_files("wal/other/").unwrap().is_empty());
        assert!(matches!(repo.put_file("../x", b"", Compression::None, &attrs), Err(RepoError::Invalid(_))));
        repo.delete_file(name).unwrap();
        assert_eq!(repo.list_files("wal/").unwrap().len(), 2);
    }
}

#[test]
fn moved_swapped_or_damaged_files_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init(fs_storage(dir.path()), Encryption::Aes256Gcm);
    let files = dir.path().join("files/wal");
    repo.put_file("wal/a", &noise(5000, 1), Compression::default(), &json!({})).unwrap();
    repo.put_file("wal/b", &noise(5000, 2), Compression::default(), &json!({})).unwrap();
    // A file renamed over another is not served under the wrong name.
    std::fs::copy(files.join("a"), files.join("c")).unwrap();
    let err = repo.get_file("wal/c").unwrap_err();
    assert!(err.to_string().contains("holds the file 'wal/a'"), "{err}");
    assert!(repo.file_header("wal/c").is_err());
    // A flipped byte in the content.
    let mut bytes = std::fs::read(files.join("b")).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(files.join("b"), &bytes).unwrap();
    let err = repo.get_file("wal/b").unwrap_err();
    assert!(matches!(err, RepoError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("files/wal/b"), "{err}");

    // check: the swapped header is found from headers alone; the flipped content byte only
    // when the data is read.
    let quick = cairn_repo::check(&repo, &CheckOptions { read_data: false, channels: 2 }).unwrap();
    assert_eq!(quick.files, 3);
    let objects: Vec<&str> = quick.errors.iter().map(|p| p.object.as_str()).collect();
    assert_eq!(objects, ["files/wal/c"], "{quick:?}");
    let full = cairn_repo::check(&repo, &CheckOptions { read_data: true, channels: 2 }).unwrap();
    let mut objects: Vec<&str> = full.errors.iter().map(|p| p.object.as_str()).collect();
    objects.sort();
    assert_eq!(objects, ["files/wal/b", "files/wal/c"], "{full:?}");
}

//! The local filesystem backend: conformance (plain, through `FaultyStorage`, throttled)
//! and fs-specific behaviour (missing root, temp files, exclusive create).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use cairn_storage::{conformance, open, FaultyStorage, PutMode, Storage, StorageOptions, Throttled};

fn fs_storage(dir: &std::path::Path) -> Arc<dyn Storage> {
    open(dir.to_str().unwrap(), &StorageOptions::default()).unwrap()
}

#[test]
fn conformance_plain() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    conformance::run(storage.as_ref());
    conformance::create_is_exclusive(storage.as_ref(), &conformance::unique_base());
    conformance::prefix_is_not_an_object(storage.as_ref(), &conformance::unique_base());
}

#[test]
fn conformance_through_faulty_without_faults() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStorage::new(fs_storage(dir.path()));
    conformance::run(&faulty);
    assert!(faulty.count(None) > 1000);
    assert_eq!(faulty.injected_failures(), 0);
}

#[test]
fn conformance_throttled() {
    let dir = tempfile::tempdir().unwrap();
    // High enough to keep the 20 MiB object quick, low enough to be exercised.
    let throttled = Throttled::new(fs_storage(dir.path()), 512 << 20);
    conformance::run(&throttled);
}

#[test]
fn missing_root_is_not_created_until_first_put() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/repo");
    let storage = fs_storage(&root);
    assert_eq!(storage.location(), root.display().to_string());
    assert!(storage.get("config").unwrap_err().is_not_found());
    assert!(storage.stat("config").unwrap_err().is_not_found());
    assert_eq!(storage.list("").count(), 0);
    storage.delete("config").unwrap();
    assert!(!root.exists(), "reading must not create the root");
    storage.put("config", Bytes::from_static(b"c"), PutMode::Create).unwrap();
    assert_eq!(std::fs::read(root.join("config")).unwrap(), b"c");
    assert_eq!(storage.list("").map(|m| m.unwrap().path).collect::<Vec<_>>(), ["config"]);
}

#[test]
fn location_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let messy = format!("file://{}/./a/../repo/", dir.path().display());
    let storage = open(&messy, &StorageOptions::default()).unwrap();
    assert_eq!(storage.location(), dir.path().join("repo").display().to_string());
    let err = storage.get("data/ab").unwrap_err();
    assert_eq!(err.message, format!("object 'data/ab' not found in {}", dir.path().join("repo").display()));
}

#[test]
fn temp_files_are_never_listed_nor_addressable() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    storage.put("data/x", Bytes::from_static(b"x"), PutMode::Create).unwrap();
    // Debris of a writer killed mid-put.
    std::fs::write(dir.path().join(".cairn-tmp/x.123.0"), b"partial").unwrap();
    let listed: Vec<_> = storage.list("").map(|m| m.unwrap().path).collect();
    assert_eq!(listed, ["data/x"]);
    assert!(storage.list(".cairn-tmp/").next().is_none());
    let err = storage.get(".cairn-tmp/x.123.0").unwrap_err();
    assert_eq!(err.kind, cairn_storage::ErrorKind::Other, "{err}");
    for bad in ["", "/abs", "a/../b", "a//b", "dir/"] {
        assert!(storage.put(bad, Bytes::new(), PutMode::Create).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn root_that_is_a_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = open(file.to_str().unwrap(), &StorageOptions::default()).unwrap_err();
    assert_eq!(err.kind, cairn_storage::ErrorKind::Config);
}

#[test]
fn unknown_scheme() {
    let err = open("ftp://host/x", &StorageOptions::default()).unwrap_err();
    assert_eq!(err.kind, cairn_storage::ErrorKind::Config);
    assert_eq!(
        err.message,
        "unknown repository URL scheme 'ftp' in 'ftp://host/x': use a local path or s3://bucket/prefix"
    );
}

#[cfg(unix)]
#[test]
fn permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let storage = fs_storage(dir.path());
    storage.put("data/x", Bytes::from_static(b"x"), PutMode::Create).unwrap();
    std::fs::set_permissions(dir.path().join("data"), std::fs::Permissions::from_mode(0o500)).unwrap();
    let result = storage.put("data/y", Bytes::from_static(b"y"), PutMode::Create);
    std::fs::set_permissions(dir.path().join("data"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Root ignores permissions; only check when the write was actually refused.
    if let Err(err) = result {
        assert_eq!(err.kind, cairn_storage::ErrorKind::PermissionDenied, "{err}");
        assert!(err.message.contains("data/y"), "{err}");
    }
}

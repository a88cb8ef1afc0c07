//! Conformance suite: checks any [`Storage`] against the trait's contract. Each check
//! panics with a descriptive message on the first violation; call them from tests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{ErrorKind, ObjectMeta, PutMode, Storage, StorageError};

/// Runs every check under a fresh prefix (`conformance-<unique>/`), then deletes what it
/// wrote. Safe on a storage holding other data, but `list_root` lists all of it.
pub fn run(storage: &dyn Storage) {
    let base = unique_base();
    round_trip(storage, &base);
    create_on_existing(storage, &base);
    overwrite(storage, &base);
    missing(storage, &base);
    get_range(storage, &base);
    list_prefixes(storage, &base);
    list_root(storage, &base);
    list_many(storage, &base, 1100);
    delete(storage, &base);
    empty_object(storage, &base);
    large_object(storage, &base, 20 << 20);
    concurrent_puts(storage, &base);
    concurrent_create(storage, &base);
    cleanup(storage, &base);
}

/// `conformance-<pid>-<n>-<nanos>/`: distinct across runs sharing a bucket.
pub fn unique_base() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("conformance-{}-{}-{nanos}/", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Put then get returns the same bytes; stat reports the size.
pub fn round_trip(s: &dyn Storage, base: &str) {
    let path = format!("{base}rt/object");
    let data = pattern(1, 4096);
    ok(s.put(&path, data.clone(), PutMode::Create), "put new object");
    assert_eq!(ok(s.get(&path), "get"), data, "get returned other bytes than put");
    let meta = ok(s.stat(&path), "stat");
    assert_eq!(meta, ObjectMeta { path: path.clone(), size: 4096 }, "stat");
}

/// `Create` on an existing object fails with `AlreadyExists` and leaves it unchanged.
pub fn create_on_existing(s: &dyn Storage, base: &str) {
    let path = format!("{base}create/object");
    ok(s.put(&path, Bytes::from_static(b"first"), PutMode::Create), "first create");
    let err = expect_err(s.put(&path, Bytes::from_static(b"second!"), PutMode::Create), "second create");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "second create: {err}");
    assert!(err.message.contains("create/object"), "message should name the object: {err}");
    assert_eq!(ok(s.get(&path), "get after failed create"), &b"first"[..]);
}

/// `Overwrite` creates a missing object and replaces an existing one.
pub fn overwrite(s: &dyn Storage, base: &str) {
    let path = format!("{base}overwrite/lock");
    ok(s.put(&path, Bytes::from_static(b"one"), PutMode::Overwrite), "overwrite missing");
    ok(s.put(&path, Bytes::from_static(b"two, longer"), PutMode::Overwrite), "overwrite existing");
    assert_eq!(ok(s.get(&path), "get"), &b"two, longer"[..]);
    ok(s.put(&path, Bytes::from_static(b"3"), PutMode::Overwrite), "overwrite shorter");
    assert_eq!(ok(s.get(&path), "get"), &b"3"[..], "overwrite with shorter data must truncate");
    assert_eq!(ok(s.stat(&path), "stat").size, 1);
}

/// Reading or stating a missing object is `NotFound`, naming the object.
pub fn missing(s: &dyn Storage, base: &str) {
    let path = format!("{base}missing/nothing-here");
    for (what, err) in [
        ("get", s.get(&path).err()),
        ("stat", s.stat(&path).err()),
        ("get_range", s.get_range(&path, 0..1).err()),
    ] {
        let err = err.unwrap_or_else(|| panic!("{what} of a missing object succeeded"));
        assert!(err.is_not_found(), "{what} of a missing object: {err:?}");
        assert!(err.message.contains("nothing-here"), "{what}: message should name the object: {err}");
    }
}

/// A "directory" (a prefix of existing objects) is not an object: `NotFound`. Not part of
/// [`run`]: s3s-fs keeps keys as files and answers HTTP 500 for such a key.
pub fn prefix_is_not_an_object(s: &dyn Storage, base: &str) {
    ok(s.put(&format!("{base}prefix/dir/child"), Bytes::from_static(b"x"), PutMode::Create), "put");
    let err = expect_err(s.stat(&format!("{base}prefix/dir")), "stat of a prefix");
    assert!(err.is_not_found(), "stat of a prefix: {err:?}");
    let err = expect_err(s.get(&format!("{base}prefix/dir")), "get of a prefix");
    assert!(err.is_not_found(), "get of a prefix: {err:?}");
    let err = expect_err(s.get_range(&format!("{base}prefix/dir"), 0..1), "get_range of a prefix");
    assert!(err.is_not_found(), "get_range of a prefix: {err:?}");
}

/// Ranges in the middle, at the end, empty; ranges past the end fail.
pub fn get_range(s: &dyn Storage, base: &str) {
    let path = format!("{base}range/object");
    let data = pattern(2, 1000);
    ok(s.put(&path, data.clone(), PutMode::Create), "put");
    for range in [100..200, 900..1000, 0..1000, 0..1, 999..1000, 10..10, 1000..1000] {
        let got = ok(s.get_range(&path, range.clone()), &format!("get_range {range:?}"));
        assert_eq!(got, data.slice(range.start as usize..range.end as usize), "get_range {range:?}");
    }
    for range in [900..1001, 999..2000, 1000..1001, 2000..2100, 1001..1001] {
        let err = expect_err(s.get_range(&path, range.clone()), &format!("get_range {range:?} past the end"));
        assert!(!err.is_not_found(), "get_range {range:?} past the end must not be NotFound: {err}");
    }
    // Into one reused buffer, larger and smaller ranges in turn.
    let mut buf = Vec::new();
    for range in [0..1000, 100..200, 10..10, 900..1000, 0..1] {
        ok(s.get_range_into(&path, range.clone(), &mut buf), &format!("get_range_into {range:?}"));
        assert_eq!(buf, data.slice(range.start as usize..range.end as usize), "get_range_into {range:?}");
    }
    let err = expect_err(s.get_range_into(&path, 900..1001, &mut buf), "get_range_into past the end");
    assert!(!err.is_not_found() && buf.is_empty(), "get_range_into past the end: {err}, {} bytes", buf.len());
    let err =
        expect_err(s.get_range_into(&format!("{path}-absent"), 0..1, &mut buf), "get_range_into absent");
    assert!(err.is_not_found(), "get_range_into of an absent object: {err}");
}

/// Listing is recursive, filters by string prefix, returns root-relative paths and sizes.
pub fn list_prefixes(s: &dyn Storage, base: &str) {
    let dir = format!("{base}list/");
    let objects = ["a", "b/c", "b/d/e", "bb", "c/deep/er/still"];
    for (i, name) in objects.iter().enumerate() {
        ok(s.put(&format!("{dir}{name}"), pattern(i as u64, i * 10), PutMode::Create), "put");
    }
    let expect = |names: &[&str]| -> BTreeMap<String, u64> {
        names
            .iter()
            .map(|n| {
                let i = objects.iter().position(|o| o == n).unwrap_or_default();
                (format!("{dir}{n}"), (i * 10) as u64)
            })
            .collect()
    };
    assert_eq!(listed(s, &dir), expect(&objects), "list {dir}");
    assert_eq!(listed(s, &format!("{dir}b")), expect(&["b/c", "b/d/e", "bb"]), "list {dir}b");
    assert_eq!(listed(s, &format!("{dir}b/")), expect(&["b/c", "b/d/e"]), "list {dir}b/");
    assert_eq!(listed(s, &format!("{dir}c/deep/er/still")), expect(&["c/deep/er/still"]));
    assert_eq!(listed(s, &format!("{dir}zzz")), expect(&[]), "prefix matching nothing");
    assert_eq!(listed(s, &format!("{dir}zzz/")), expect(&[]), "missing directory");
    assert_eq!(listed(s, &format!("{base}no-such-dir/x")), expect(&[]), "missing parent");
}

/// The empty prefix lists everything, including this suite's objects.
pub fn list_root(s: &dyn Storage, base: &str) {
    let path = format!("{base}root/object");
    ok(s.put(&path, Bytes::from_static(b"root"), PutMode::Create), "put");
    let all = listed(s, "");
    assert_eq!(all.get(&path), Some(&4), "list(\"\") must include {path}");
    assert!(all.keys().all(|p| !p.starts_with('/')), "paths must be relative to the root");
}

/// More objects than one S3 listing page (1000) are all listed exactly once.
pub fn list_many(s: &dyn Storage, base: &str, count: usize) {
    let dir = format!("{base}many/");
    let threads = 8;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let dir = &dir;
            scope.spawn(move || {
                for i in (t..count).step_by(threads) {
                    let path = format!("{dir}{:02x}/{i:05}", i % 7);
                    ok(s.put(&path, Bytes::from(i.to_string()), PutMode::Create), "put");
                }
            });
        }
    });
    let mut seen = 0;
    let mut paths = std::collections::HashSet::new();
    for item in s.list(&dir) {
        let meta = ok(item, "list item");
        assert!(paths.insert(meta.path.clone()), "{} listed twice", meta.path);
        seen += 1;
    }
    assert_eq!(seen, count, "list {dir} must return every object once");
}

/// Delete removes an object; deleting a missing one succeeds.
pub fn delete(s: &dyn Storage, base: &str) {
    let path = format!("{base}delete/object");
    ok(s.put(&path, Bytes::from_static(b"bye"), PutMode::Create), "put");
    ok(s.delete(&path), "delete existing");
    let err = expect_err(s.get(&path), "get after delete");
    assert!(err.is_not_found(), "get after delete: {err:?}");
    assert!(listed(s, &format!("{base}delete/")).is_empty(), "deleted object still listed");
    ok(s.delete(&path), "delete again");
    ok(s.delete(&format!("{base}delete/never-existed")), "delete missing");
    ok(s.delete(&format!("{base}no-such-dir/deeper/object")), "delete in a missing directory");
    // A deleted path can be created again.
    ok(s.put(&path, Bytes::from_static(b"again"), PutMode::Create), "create after delete");
    assert_eq!(ok(s.get(&path), "get"), &b"again"[..]);
}

/// A zero-byte object exists, is listed and reads back empty.
pub fn empty_object(s: &dyn Storage, base: &str) {
    let path = format!("{base}empty/object");
    ok(s.put(&path, Bytes::new(), PutMode::Create), "put empty");
    assert!(ok(s.get(&path), "get empty").is_empty());
    assert_eq!(ok(s.stat(&path), "stat empty").size, 0);
    assert_eq!(listed(s, &format!("{base}empty/")).get(&path), Some(&0), "empty object listed");
    let err = expect_err(s.put(&path, Bytes::new(), PutMode::Create), "create over empty");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "create over empty: {err}");
}

/// A large object (bigger than one S3 multipart part) round-trips, also by ranges.
pub fn large_object(s: &dyn Storage, base: &str, size: usize) {
    let path = format!("{base}large/object");
    let data = pattern(3, size);
    ok(s.put(&path, data.clone(), PutMode::Create), "put large");
    let got = ok(s.get(&path), "get large");
    assert!(
        got.len() == data.len() && got == data,
        "large object corrupted ({} of {} bytes)",
        got.len(),
        size
    );
    assert_eq!(ok(s.stat(&path), "stat large").size, size as u64);
    let mid = (size / 2) as u64;
    let range = mid - 1000..mid + (1 << 20);
    let got = ok(s.get_range(&path, range.clone()), "range of large");
    assert!(got == data.slice(range.start as usize..range.end as usize), "range of large object corrupted");
}

/// Several threads putting distinct objects at once all succeed.
pub fn concurrent_puts(s: &dyn Storage, base: &str) {
    let dir = format!("{base}concurrent/");
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let dir = &dir;
            scope.spawn(move || {
                for i in 0..10u64 {
                    let data = pattern(t * 100 + i, 1000 + (i as usize) * 100);
                    ok(s.put(&format!("{dir}{t}/{i}"), data, PutMode::Create), "concurrent put");
                }
            });
        }
    });
    let all = listed(s, &dir);
    assert_eq!(all.len(), 80, "concurrent puts: every object listed");
    for t in 0..8u64 {
        for i in 0..10u64 {
            let got = ok(s.get(&format!("{dir}{t}/{i}")), "get");
            assert_eq!(got, pattern(t * 100 + i, 1000 + (i as usize) * 100), "object {t}/{i}");
        }
    }
}

/// Threads racing to `Create` one path: the others fail with `AlreadyExists` and the
/// object holds one writer's complete data. Holds for a stat-then-put fallback too
/// (several may "win", the last one stays); see [`create_is_exclusive`] for the strict form.
pub fn concurrent_create(s: &dyn Storage, base: &str) {
    let path = format!("{base}race/object");
    let results = race(s, &path);
    let winners: Vec<u64> = results.iter().filter(|(_, r)| r.is_ok()).map(|(t, _)| *t).collect();
    assert!(!winners.is_empty(), "racing creates: nobody won: {results:?}");
    for (t, r) in &results {
        if let Err(e) = r {
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "racing create {t}: {e}");
        }
    }
    let got = ok(s.get(&path), "get raced object");
    assert!(winners.iter().any(|t| got == pattern(*t, 10_000)), "raced object is no winner's data");
}

/// Strict form of [`concurrent_create`]: exactly one of the racing creators succeeds.
/// Not part of [`run`]: S3 servers may implement `If-None-Match` with a check-then-write.
pub fn create_is_exclusive(s: &dyn Storage, base: &str) {
    for round in 0..5 {
        let path = format!("{base}exclusive/{round}");
        let results = race(s, &path);
        let winners: Vec<u64> = results.iter().filter(|(_, r)| r.is_ok()).map(|(t, _)| *t).collect();
        assert_eq!(winners.len(), 1, "exactly one create must win: {results:?}");
        assert_eq!(ok(s.get(&path), "get"), pattern(winners[0], 10_000));
    }
}

/// Deletes everything under `base`.
pub fn cleanup(s: &dyn Storage, base: &str) {
    let paths: Vec<String> = s.list(base).map(|m| ok(m, "list for cleanup").path).collect();
    for path in paths {
        ok(s.delete(&path), "cleanup delete");
    }
    assert!(listed(s, base).is_empty(), "objects left after cleanup");
}

fn race(s: &dyn Storage, path: &str) -> Vec<(u64, Result<(), StorageError>)> {
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let data = pattern(t, 10_000);
                    barrier.wait();
                    (t, s.put(path, data, PutMode::Create))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| panic!("racing thread panicked"))).collect()
    })
}

/// Everything under `prefix`, as path -> size, failing on duplicates or errors.
pub fn listed(s: &dyn Storage, prefix: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in s.list(prefix) {
        let meta = ok(item, &format!("list {prefix:?}"));
        assert!(meta.path.starts_with(prefix), "list {prefix:?} returned {}", meta.path);
        assert!(out.insert(meta.path.clone(), meta.size).is_none(), "{} listed twice", meta.path);
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub fn pattern(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn ok<T, E: Debug + std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn expect_err<T: Debug>(result: Result<T, StorageError>, what: &str) -> StorageError {
    match result {
        Ok(v) => panic!("{what} should have failed but returned {v:?}"),
        Err(e) => e,
    }
}

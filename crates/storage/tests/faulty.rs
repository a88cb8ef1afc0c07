//! `FaultyStorage`: failures, torn writes, lost acknowledgements, crashes, latency and
//! the call log, over a real local filesystem storage.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_storage::{
    open, CallRecord, ErrorKind, Fault, FaultRule, FaultyStorage, OpKind, PutMode, Storage, StorageOptions,
    Trigger,
};

fn fs() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path().to_str().unwrap(), &StorageOptions::default()).unwrap();
    (dir, storage)
}

fn put(s: &dyn Storage, path: &str) -> Result<(), cairn_storage::StorageError> {
    s.put(path, Bytes::from(path.to_string()), PutMode::Create)
}

#[test]
fn fail_after_puts_kills_every_later_put_and_writes_nothing() {
    let (_dir, inner) = fs();
    let faulty = FaultyStorage::new(inner.clone()).fail_after_puts(2);
    put(&faulty, "a").unwrap();
    put(&faulty, "b").unwrap();
    for path in ["c", "d"] {
        let err = put(&faulty, path).unwrap_err();
        assert!(FaultyStorage::is_injected(&err), "{err}");
        assert!(err.message.contains(path), "{err}");
        assert!(inner.stat(path).unwrap_err().is_not_found(), "torn put must leave nothing");
    }
    // Reads still work: only puts were targeted.
    assert_eq!(faulty.get("a").unwrap(), &b"a"[..]);
    let listed: Vec<_> = inner.list("").map(|m| m.unwrap().path).collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(faulty.count(Some(OpKind::Put)), 4);
    assert_eq!(faulty.count(None), 5);
    assert_eq!(faulty.injected_failures(), 2);
}

#[test]
fn crash_after_puts_at_every_step() {
    // The pattern repository tests use: run a 5-object operation, killed at every step.
    for n in 0..=5u64 {
        let (_dir, inner) = fs();
        let faulty = FaultyStorage::new(inner.clone()).crash_after_puts(n);
        let result: Result<(), _> = (0..5).try_for_each(|i| put(&faulty, &format!("obj/{i}")));
        assert_eq!(result.is_ok(), n >= 5, "n = {n}");
        let landed = inner.list("obj/").count() as u64;
        assert_eq!(landed, n.min(5), "n = {n}");
        if n < 5 {
            // Dead until disarmed, for every kind of call.
            assert!(faulty.get("obj/0").is_err());
            assert!(faulty.list("").next().unwrap().is_err());
            faulty.disarm();
            assert!(faulty.stat("obj/0").is_ok() || n == 0);
        }
    }
}

#[test]
fn nth_call_and_kind_filters() {
    let (_dir, inner) = fs();
    put(inner.as_ref(), "x").unwrap();
    let faulty = FaultyStorage::new(inner).fail_nth(Some(OpKind::Get), 2).fail_nth(None, 5);
    assert!(faulty.get("x").is_ok()); // get #1, call #1
    assert!(faulty.get("x").is_err()); // get #2
    assert!(faulty.stat("x").is_ok()); // call #3
    assert!(faulty.get("x").is_ok()); // get #3, call #4
    assert_eq!(faulty.delete("nothing").unwrap_err().kind, ErrorKind::Other); // call #5
    assert!(faulty.delete("nothing").is_ok());
    let log = faulty.calls();
    assert_eq!(log.len(), 6);
    assert_eq!(
        log[1],
        CallRecord {
            op: OpKind::Get,
            path: "x".into(),
            bytes: None,
            fault: Some(Fault::Fail(ErrorKind::Other))
        }
    );
    assert_eq!(log[2].fault, None);
}

#[test]
fn rules_with_path_prefix_and_error_kind() {
    let (_dir, inner) = fs();
    let faulty = FaultyStorage::new(inner).with_rule(FaultRule {
        op: Some(OpKind::Put),
        path_prefix: Some("index/".into()),
        trigger: Trigger::After(0),
        fault: Fault::Fail(ErrorKind::Unreachable),
    });
    put(&faulty, "data/1").unwrap();
    let err = put(&faulty, "index/1").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable);
}

#[test]
fn lost_ack_writes_but_reports_failure() {
    let (_dir, inner) = fs();
    let faulty = FaultyStorage::new(inner.clone()).lost_ack_put(1);
    let err = put(&faulty, "a").unwrap_err();
    assert!(FaultyStorage::is_injected(&err));
    assert_eq!(inner.get("a").unwrap(), &b"a"[..], "the write landed");
    // A retry of the same Create now sees the object.
    assert_eq!(put(&faulty, "a").unwrap_err().kind, ErrorKind::AlreadyExists);
}

#[test]
fn torn_put_leaves_nothing() {
    let (_dir, inner) = fs();
    let faulty = FaultyStorage::new(inner.clone()).torn_put(2);
    put(&faulty, "a").unwrap();
    assert!(put(&faulty, "b").is_err());
    put(&faulty, "c").unwrap();
    assert!(inner.get("b").unwrap_err().is_not_found());
    let listed: Vec<_> = inner.list("").map(|m| m.unwrap().path).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[test]
fn latency_is_added() {
    let (_dir, inner) = fs();
    let faulty = FaultyStorage::new(inner).latency(Some(OpKind::Stat), Duration::from_millis(100));
    let start = Instant::now();
    let _ = faulty.stat("x");
    let _ = faulty.stat("x");
    assert!(start.elapsed() >= Duration::from_millis(200));
    let start = Instant::now();
    let _ = faulty.get("x");
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(faulty.calls()[0].fault, Some(Fault::Delay(Duration::from_millis(100))));
    assert_eq!(faulty.injected_failures(), 0);
}

#[test]
fn shared_storage_can_be_armed_later() {
    let (_dir, inner) = fs();
    let faulty = Arc::new(FaultyStorage::new(inner));
    let as_storage: Arc<dyn Storage> = faulty.clone();
    put(as_storage.as_ref(), "a").unwrap();
    faulty.add_rule(FaultRule {
        op: None,
        path_prefix: None,
        trigger: Trigger::After(0),
        fault: Fault::TornWrite,
    });
    assert!(put(as_storage.as_ref(), "b").is_err());
    faulty.disarm();
    put(as_storage.as_ref(), "b").unwrap();
}

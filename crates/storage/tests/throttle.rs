//! Bandwidth limit: moving N bytes at L bytes/second takes about N/L.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_storage::{open, PutMode, Storage, StorageOptions, Throttled};

const LIMIT: u64 = 4 << 20; // 4 MiB/s

fn assert_about(took: Duration, expected: Duration) {
    // Generous upper bound: the machine may be busy with other builds.
    let (low, high) = (expected.mul_f64(0.9), expected.mul_f64(2.0) + Duration::from_millis(300));
    assert!(took >= low && took <= high, "took {took:?}, expected about {expected:?}");
}

#[test]
fn writes_and_reads_are_paced() {
    let dir = tempfile::tempdir().unwrap();
    let options = StorageOptions { bandwidth_limit: Some(LIMIT), ..Default::default() };
    let storage = open(dir.path().to_str().unwrap(), &options).unwrap();

    // 2 MiB in 8 objects of 256 KiB: 0.5 s at the limit.
    let chunk = Bytes::from(vec![7u8; 256 << 10]);
    let start = Instant::now();
    for i in 0..8 {
        storage.put(&format!("obj/{i}"), chunk.clone(), PutMode::Create).unwrap();
    }
    assert_about(start.elapsed(), Duration::from_millis(500));

    // Reads have their own budget.
    let start = Instant::now();
    for i in 0..4 {
        storage.get(&format!("obj/{i}")).unwrap();
    }
    storage.get_range("obj/5", 0..(256 << 10)).unwrap();
    // Metadata calls are not limited.
    storage.stat("obj/0").unwrap();
    assert_eq!(storage.list("").count(), 8);
    assert_about(start.elapsed(), Duration::from_millis(5 * 1000 / 16));
}

#[test]
fn limit_is_shared_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open(dir.path().to_str().unwrap(), &StorageOptions::default()).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(Throttled::new(inner, LIMIT));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let storage = &storage;
            scope.spawn(move || {
                for i in 0..2 {
                    let data = Bytes::from(vec![1u8; 256 << 10]);
                    storage.put(&format!("t{t}/{i}"), data, PutMode::Create).unwrap();
                }
            });
        }
    });
    // 4 threads x 2 x 256 KiB = 2 MiB: 0.5 s in total, not per thread.
    assert_about(start.elapsed(), Duration::from_millis(500));
}

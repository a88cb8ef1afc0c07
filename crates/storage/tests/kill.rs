//! `kill -9` of a process in the middle of puts never leaves a partial object on the local
//! filesystem: the test re-runs this binary as a writer and kills it at random moments.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_storage::{conformance::pattern, open, PutMode, StorageOptions};

const DIR_VAR: &str = "CAIRN_KILL_TEST_DIR";

/// An object whose content says how long it should be: 8-byte seed, 8-byte length, data.
fn self_describing(seed: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(16 + len);
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&pattern(seed, len));
    Bytes::from(out)
}

fn is_intact(data: &[u8]) -> bool {
    data.len() >= 16 && {
        let seed = u64::from_le_bytes(data[..8].try_into().unwrap());
        let len = u64::from_le_bytes(data[8..16].try_into().unwrap()) as usize;
        data.len() == 16 + len && data[16..] == pattern(seed, len)[..]
    }
}

/// The victim: when run with `CAIRN_KILL_TEST_DIR`, writes until killed. A no-op otherwise.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let storage = open(&dir, &StorageOptions::default()).unwrap();
    for i in 0u64.. {
        let len = (1 << 20) + (i as usize % 7) * 300_000;
        let _ = storage.put(&format!("obj/{i:06}"), self_describing(i, len), PutMode::Create);
        storage.put("lock", self_describing(1_000_000 + i, len / 3), PutMode::Overwrite).unwrap();
    }
}

#[test]
fn kill_9_never_leaves_partial_objects() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total = 0;
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--test-threads=1", "--quiet"])
            .env(DIR_VAR, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it get going, then kill at a varying point (SIGKILL on Unix).
        let started = Instant::now();
        while !dir.path().join("lock").exists() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + round * 37));
        child.kill().unwrap();
        child.wait().unwrap();

        let storage = open(dir.path().to_str().unwrap(), &StorageOptions::default()).unwrap();
        let objects: Vec<_> = storage.list("").map(|m| m.unwrap()).collect();
        for meta in &objects {
            let data = storage.get(&meta.path).unwrap();
            assert_eq!(data.len() as u64, meta.size);
            assert!(is_intact(&data), "round {round}: {} is partial ({} bytes)", meta.path, data.len());
        }
        total = objects.len();
        // The next writer continues after the objects that landed.
        for meta in objects.iter().filter(|m| m.path.starts_with("obj/")) {
            storage.delete(&meta.path).unwrap();
        }
    }
    assert!(total >= 1, "the writer never wrote anything");
}

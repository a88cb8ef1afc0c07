//! Shared set-up for the repository tests: repositories on a real local filesystem.
#![allow(dead_code)]

use std::io::Cursor;
use std::sync::Arc;

use cairn_repo::{
    ChunkId, ChunkerKind, ChunkerParams, Compression, Encryption, FileEntry, Id, InitOptions, KdfParams,
    RepoError, Repository, WriteStats, Writer, WriterOptions,
};
use cairn_storage::{Storage, StorageOptions};

pub const PASSWORD: &[u8] = b"correct horse";
/// Cheap key derivation: tests open repositories many times.
pub const FAST_KDF: KdfParams = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };

pub fn fs_storage(dir: &std::path::Path) -> Arc<dyn Storage> {
    cairn_storage::open(dir.to_str().expect("utf-8 path"), &StorageOptions::default()).expect("open storage")
}

/// Small chunks and packs so that tests exercise many of each.
pub fn small_options(encryption: Encryption, compression: Compression) -> InitOptions {
    InitOptions {
        encryption,
        password: (encryption != Encryption::None).then(|| PASSWORD.to_vec()),
        compression,
        chunker: ChunkerParams {
            fixed_size: 16 << 10,
            cdc_min: 4 << 10,
            cdc_avg: 16 << 10,
            cdc_max: 64 << 10,
        },
        pack_size: 1 << 20,
        kdf: FAST_KDF,
    }
}

pub fn init(storage: Arc<dyn Storage>, encryption: Encryption) -> Repository {
    Repository::init(storage, small_options(encryption, Compression::Zstd { level: 3 })).expect("init")
}

pub fn reopen(storage: Arc<dyn Storage>) -> Repository {
    Repository::open(storage, Some(PASSWORD)).expect("open")
}

/// Data that looks like database pages: repeated structure, some noise.
pub fn pagey(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let row =
            format!("row {:>10} name-{:08x} balance {:>12}|", x % 100_000, x as u32, (x >> 20) % 1_000_000);
        out.extend_from_slice(row.as_bytes());
    }
    out.truncate(len);
    out
}

/// Incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub struct StoredFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// Stores `files` and records them in one manifest; returns the manifest id and stats.
pub fn backup(repo: &Repository, files: &[StoredFile], channels: usize) -> (Id, WriteStats) {
    backup_with(repo, files, &WriterOptions { channels, ..Default::default() }).expect("backup")
}

/// As [`backup`], with any writer options, returning failures.
pub fn backup_with(
    repo: &Repository,
    files: &[StoredFile],
    options: &WriterOptions,
) -> Result<(Id, WriteStats), RepoError> {
    let writer = Writer::new(repo, options)?;
    for (i, f) in files.iter().enumerate() {
        let kind = if i % 2 == 0 { ChunkerKind::Fixed } else { ChunkerKind::ContentDefined };
        let (chunks, size) = writer.store(&mut Cursor::new(&f.data), kind)?;
        writer.add_entry(&entry(&f.path, size, chunks))?;
    }
    writer.commit("test", serde_json::json!({"files": files.len()}))
}

/// `check --read-data` finds neither errors nor warnings.
pub fn assert_checks_clean(repo: &Repository) {
    let report =
        cairn_repo::check(repo, &cairn_repo::CheckOptions { read_data: true, channels: 2 }).expect("check");
    assert!(report.is_ok() && report.warnings.is_empty(), "{:?} {:?}", report.errors, report.warnings);
}

pub fn entry(path: &str, size: u64, chunks: Vec<ChunkId>) -> FileEntry {
    FileEntry::file(path, 0o600, 0, size, chunks)
}

/// The entries of a manifest.
pub fn restore_entries(repo: &Repository, manifest: &Id) -> Vec<FileEntry> {
    repo.load_index().expect("index");
    let m = repo.load_manifest(manifest).expect("manifest");
    let mut entries = Vec::new();
    repo.for_each_entry(manifest, &m, &mut |e| {
        entries.push(e);
        Ok(())
    })
    .expect("entries");
    entries
}

/// Every file of a manifest, restored (several at a time).
pub fn restore(repo: &Repository, manifest: &Id) -> Vec<StoredFile> {
    let m = repo.load_manifest(manifest).expect("manifest");
    let entries = restore_entries(repo, manifest);
    let outputs: Vec<std::sync::Mutex<Vec<u8>>> = entries.iter().map(|_| Default::default()).collect();
    let total = repo
        .restore_files(&entries, 3, |e| {
            let i = entries.iter().position(|x| x.path == e.path).expect("entry");
            Ok(Sink(&outputs[i]))
        })
        .expect("restore");
    assert_eq!(total, m.bytes);
    entries
        .into_iter()
        .zip(outputs)
        .map(|(e, data)| StoredFile { path: e.path, data: data.into_inner().expect("lock") })
        .collect()
}

/// Collects restored bytes for one file.
struct Sink<'a>(&'a std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn count(storage: &dyn Storage, prefix: &str) -> usize {
    storage.list(prefix).count()
}

pub fn sample_files(n: usize, seed: u64) -> Vec<StoredFile> {
    (0..n)
        .map(|i| StoredFile {
            path: format!("base/5/{}", 16384 + i),
            data: pagey(20_000 + i * 37_000, seed + i as u64),
        })
        .collect()
}

pub fn assert_same(a: &[StoredFile], b: &[StoredFile]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.path, y.path);
        assert!(x.data == y.data, "content of {} differs", x.path);
    }
}

/// Every file below `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Damages one byte of a stored object behind the repository's back.
pub fn flip_byte(path: &std::path::Path, at: impl Fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).expect("read object");
    let i = at(bytes.len());
    bytes[i] ^= 0x04;
    std::fs::write(path, bytes).expect("write object");
}

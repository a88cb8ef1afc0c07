//! Benchmark driver for scripts/bench/repo-throughput: stores a directory tree into a fresh
//! encrypted repository, or restores the newest manifest from it, and prints one JSON line.
//!
//! usage: throughput store   REPO DATA_DIR CHANNELS [CHUNK_SIZE]
//!        throughput restore REPO OUT_DIR  CHANNELS

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_repo::{
    ChunkerKind, ChunkerParams, Encryption, EntryKind, FileEntry, InitOptions, Repository, Writer,
    WriterOptions,
};

const PASSWORD: &[u8] = b"benchmark";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: throughput store REPO DATA_DIR CHANNELS [CHUNK_SIZE] | restore REPO OUT_DIR CHANNELS";
    let (mode, repo_dir, dir, channels) = match args.as_slice() {
        [_, mode, repo, dir, channels, ..] => (
            mode.as_str(),
            repo,
            PathBuf::from(dir),
            channels.parse::<usize>()?,
        ),
        _ => return Err(usage.into()),
    };
    let storage = cairn_storage::open(repo_dir, &Default::default())?;
    // The clock starts after the repository is created or opened: the password's key
    // derivation (Argon2id, about a quarter of a second) is not data throughput.
    let setup = Instant::now();
    let (bytes, started) = match mode {
        "store" => {
            let mut chunker = ChunkerParams::default();
            if let Some(size) = args.get(5) {
                chunker.fixed_size = size.parse()?;
            }
            let options = InitOptions {
                password: Some(PASSWORD.to_vec()),
                chunker,
                encryption: Encryption::Aes256Gcm,
                ..Default::default()
            };
            let repo = Repository::init(storage, options)?;
            let started = Instant::now();
            (store(&repo, &dir, channels)?, started)
        }
        "restore" => {
            let repo = Repository::open(storage, Some(PASSWORD))?;
            let started = Instant::now();
            (restore(&repo, &dir, channels)?, started)
        }
        _ => return Err(usage.into()),
    };
    let secs = started.elapsed().as_secs_f64();
    let setup_secs = (started - setup).as_secs_f64();
    println!(
        "{{\"mode\":\"{mode}\",\"channels\":{channels},\"bytes\":{bytes},\"seconds\":{secs:.3},\"setup_seconds\":{setup_secs:.3},\"mb_per_s\":{:.1}}}",
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}

fn files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p)
            } else if p.is_file() {
                out.push(p)
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Stores every file, `channels` files at a time, as the engine will.
fn store(
    repo: &Repository,
    root: &Path,
    channels: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    let writer = Writer::new(
        repo,
        &WriterOptions {
            channels,
            ..Default::default()
        },
    )?;
    let paths = files(root)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| -> Result<(), String> {
        let handles: Vec<_> = (0..channels)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    while let Some(path) =
                        paths.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
                        let (chunks, size) = writer
                            .store(&mut file, ChunkerKind::Fixed)
                            .map_err(|e| e.to_string())?;
                        let rel = path
                            .strip_prefix(root)
                            .map_err(|e| e.to_string())?
                            .to_string_lossy()
                            .into_owned();
                        let entry = FileEntry {
                            path: rel,
                            kind: EntryKind::File,
                            mode: 0o600,
                            size,
                            mtime_ns: 0,
                            chunks,
                            target: None,
                            meta: serde_json::Value::Null,
                        };
                        writer.add_entry(&entry).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "thread panicked".to_string())?)
    })?;
    let (_, stats) = writer.commit("bench", serde_json::Value::Null)?;
    eprintln!("{}", serde_json::to_string(&stats)?);
    // File bytes only: `stats.bytes` also counts the manifest's entry stream.
    Ok(total.into_inner())
}

fn restore(
    repo: &Repository,
    out: &Path,
    channels: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    repo.load_index()?;
    let id = *repo.list_manifests()?.last().ok_or("no manifest")?;
    let manifest = repo.load_manifest(&id)?;
    let mut entries = Vec::new();
    repo.for_each_entry(&id, &manifest, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| -> Result<(), String> {
        let handles: Vec<_> = (0..channels)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    while let Some(e) =
                        entries.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let path = out.join(&e.path);
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(|err| format!("{}: {err}", parent.display()))?;
                        }
                        let file = std::fs::File::create(&path)
                            .map_err(|err| format!("{}: {err}", path.display()))?;
                        let mut file = BufWriter::new(file);
                        let n = repo
                            .restore_file(&e.chunks, &mut file)
                            .map_err(|err| format!("{}: {err}", e.path))?;
                        // Dropping a BufWriter would swallow the error of its last write.
                        file.flush()
                            .map_err(|err| format!("{}: {err}", path.display()))?;
                        if n != e.size {
                            return Err(format!(
                                "{}: restored {n} bytes, the manifest says {}",
                                e.path, e.size
                            ));
                        }
                        total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "thread panicked".to_string())?)
    })?;
    Ok(total.into_inner())
}

//! Benchmark driver for scripts/bench/repo-throughput: stores a directory tree into a fresh
//! encrypted repository, or restores the newest manifest from it, and prints one JSON line.
//!
//! usage: throughput store   REPO DATA_DIR CHANNELS [CHUNK_SIZE]
//!        throughput restore REPO OUT_DIR  CHANNELS
//!
//! The JSON line: mode, channels, bytes (of file data), seconds (storing or restoring, after
//! the repository was created or opened), setup_seconds (creating or opening it: mostly the
//! password's key derivation), mb_per_s, and on Linux the peak RSS in KiB of the setup and of
//! the data phase (setup_peak_rss_kib, data_peak_rss_kib; 0 where unknown). A store also
//! prints the writer's statistics as JSON on stderr.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_repo::{
    ChunkerKind, ChunkerParams, Encryption, FileEntry, InitOptions, RepoError, Repository, Writer,
    WriterOptions,
};

const PASSWORD: &[u8] = b"benchmark";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: throughput store REPO DATA_DIR CHANNELS [CHUNK_SIZE] | restore REPO OUT_DIR CHANNELS";
    let (mode, repo_dir, dir, channels) = match args.as_slice() {
        [_, mode, repo, dir, channels, ..] => {
            (mode.as_str(), repo, PathBuf::from(dir), channels.parse::<usize>()?)
        }
        _ => return Err(usage.into()),
    };
    let storage = cairn_storage::open(repo_dir, &Default::default())?;
    // The clock starts after the repository is created or opened: the password's key
    // derivation (Argon2id, about a quarter of a second) is not data throughput.
    let setup = Instant::now();
    let (bytes, started, setup_rss) = match mode {
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
            let setup_rss = reset_peak_rss();
            let started = Instant::now();
            (store(&repo, &dir, channels)?, started, setup_rss)
        }
        "restore" => {
            let repo = Repository::open(storage, Some(PASSWORD))?;
            let setup_rss = reset_peak_rss();
            let started = Instant::now();
            (restore(&repo, &dir, channels)?, started, setup_rss)
        }
        _ => return Err(usage.into()),
    };
    let secs = started.elapsed().as_secs_f64();
    let setup_secs = (started - setup).as_secs_f64();
    let (setup_rss, data_rss) = (setup_rss.unwrap_or(0), peak_rss_kib().unwrap_or(0));
    println!(
        "{{\"mode\":\"{mode}\",\"channels\":{channels},\"bytes\":{bytes},\"seconds\":{secs:.3},\"setup_seconds\":{setup_secs:.3},\"mb_per_s\":{:.1},\"setup_peak_rss_kib\":{setup_rss},\"data_peak_rss_kib\":{data_rss}}}",
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}

/// Linux: the peak resident set size so far (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Linux: returns the peak RSS of the setup (the key derivation alone takes 64 MiB) and
/// resets the peak, so that `data_peak_rss_kib` is the peak of storing or restoring. Note
/// that the process's final maxrss (what GNU time reports) is then only the later peak.
fn reset_peak_rss() -> Option<u64> {
    let peak = peak_rss_kib();
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    peak
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
fn store(repo: &Repository, root: &Path, channels: usize) -> Result<u64, Box<dyn std::error::Error>> {
    let writer = Writer::new(repo, &WriterOptions { channels, ..Default::default() })?;
    let paths = files(root)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| -> Result<(), String> {
        let handles: Vec<_> = (0..channels)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    while let Some(path) = paths.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
                        let (chunks, size) =
                            writer.store(&mut file, ChunkerKind::Fixed).map_err(|e| e.to_string())?;
                        total.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                        let rel = path
                            .strip_prefix(root)
                            .map_err(|e| e.to_string())?
                            .to_string_lossy()
                            .into_owned();
                        let entry = FileEntry::file(rel, 0o600, 0, size, chunks);
                        writer.add_entry(&entry).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "thread panicked".to_string())?)
    })?;
    let (_, stats) = writer.commit("bench", serde_json::Value::Null)?;
    eprintln!("{}", serde_json::to_string(&stats)?);
    // File bytes only: `stats.bytes` also counts the manifest's entry stream.
    Ok(total.into_inner())
}

fn restore(repo: &Repository, out: &Path, channels: usize) -> Result<u64, Box<dyn std::error::Error>> {
    repo.load_index()?;
    let id = *repo.list_manifests()?.last().ok_or("no manifest")?;
    let manifest = repo.load_manifest(&id)?;
    let mut entries = Vec::new();
    repo.for_each_entry(&id, &manifest, &mut |e| {
        entries.push(e);
        Ok(())
    })?;
    // The library's parallel restore (what the engine uses): it flushes every file, checks
    // its size against the entry, and returns the first error of any thread.
    let total = repo.restore_files(&entries, channels, |e| {
        let path = out.join(&e.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| RepoError::io(format!("creating {}", parent.display()), err))?;
        }
        let file = std::fs::File::create(&path)
            .map_err(|err| RepoError::io(format!("creating {}", path.display()), err))?;
        Ok(BufWriter::new(file))
    })?;
    Ok(total)
}

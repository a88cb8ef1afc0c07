//! Benchmark driver for scripts/bench/repo-throughput: the chunk index at the scale of a large
//! repository, without storing its data. Builds an index of ENTRIES chunks (ids random, in
//! packs of 128 as a 16 MiB pack of 128 KiB chunks holds), then looks up LOOKUPS chunks, half
//! indexed and half not, and prints one JSON line: entries, build_seconds, lookups_per_s
//! (hits and misses), and peak_rss_kib.
//!
//! usage: index_scale ENTRIES LOOKUPS [MEMORY_ENTRIES]
//!
//! For comparison, `--in-memory` keeps every entry in the hash table (the index before it
//! spilled to disk).

use std::time::Instant;

use cairn_repo::compression::Codec;
use cairn_repo::index::Index;
use cairn_repo::pack::BlobEntry;
use cairn_repo::Id;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_scale ENTRIES LOOKUPS [MEMORY_ENTRIES | --in-memory]";
    let (entries, lookups) = match args.as_slice() {
        [_, e, l, ..] => (e.parse::<u64>()?, l.parse::<u64>()?),
        _ => return Err(usage.into()),
    };
    let mut index = match args.get(3).map(String::as_str) {
        None => Index::default(),
        Some("--in-memory") => Index::with_memory(usize::MAX),
        Some(n) => Index::with_memory(n.parse()?),
    };
    let id = |n: u64| Id::of_object(&n.to_le_bytes());
    let started = Instant::now();
    let mut n = 0;
    while n < entries {
        let blobs: Vec<BlobEntry> = (n..(n + 128).min(entries))
            .map(|i| BlobEntry {
                id: id(i),
                codec: Codec::Zstd,
                offset: 0,
                stored_len: 60_000,
                raw_len: 131_072,
            })
            .collect();
        index.add_pack(id(u64::MAX - n), &blobs)?;
        n += 128;
    }
    index.compact()?;
    let build = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..lookups {
        // Every other lookup is a chunk the index holds; spread over the whole index.
        let n = (i / 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) % entries.max(1);
        if index.contains(&id(if i % 2 == 0 { n } else { entries + n }))? {
            found += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if found != lookups.div_ceil(2) {
        return Err(format!("{found} of {lookups} lookups found, expected half").into());
    }
    println!(
        "{{\"entries\":{entries},\"build_seconds\":{build:.2},\"lookups_per_s\":{:.0},\"peak_rss_kib\":{}}}",
        lookups as f64 / secs,
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

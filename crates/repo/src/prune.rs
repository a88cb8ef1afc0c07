//! `prune`: removes data no manifest needs, under an exclusive lock. Order (crash-safe at every
//! step): repacked blobs are stored in new packs, then a new index naming every kept blob is
//! stored, then the old index objects are deleted, and only then the old packs.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{ChunkSet, PackBlobs};
use crate::layout::{self, Kind};
use crate::lock::LockGuard;
use crate::pack::PackBuilder;
use crate::repository::{list_ids, put_immutable, Repository};

/// Blobs per index object that prune writes.
const BLOBS_PER_INDEX: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Work out and report what would go, change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneSummary {
    pub packs: usize,
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    pub blobs_removed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub dry_run: bool,
}

pub fn prune(repo: &Repository, options: &PruneOptions) -> Result<PruneSummary> {
    let lock = LockGuard::acquire(repo.storage.clone(), true)?;
    let storage = repo.storage.as_ref();
    repo.load_index()?;
    let mut used = used_chunks(repo)?;

    let mut sizes: HashMap<Id, u64> = HashMap::new();
    for meta in storage.list(layout::DATA) {
        let meta = meta?;
        if let Some(id) = layout::id_of(Kind::Pack, &meta.path) {
            sizes.insert(id, meta.size);
        }
    }
    let mut summary = PruneSummary {
        packs: sizes.len(),
        bytes_before: sizes.values().sum(),
        dry_run: options.dry_run,
        ..Default::default()
    };

    // Pack by pack, as the index objects name them (a batch of objects at a time: memory holds
    // a batch, one id per pack, and the used and kept chunks in sets that spill to disk). Each
    // used chunk is kept once, in the first pack found holding it: a pack wholly kept is named
    // in the new index as it is, a partly used one has its wanted blobs copied into new packs
    // (sealed blobs move as they are), an unused one goes. Until the old index objects are
    // deleted at the end, everything written only adds names and copies.
    let old_index = list_ids(storage, Kind::Index)?;
    let mut seen: HashSet<Id> = HashSet::new();
    let mut kept = ChunkSet::default();
    let mut new_index = NewIndex { write: !options.dry_run, ..Default::default() };
    let mut builder = PackBuilder::default();
    let mut delete: Vec<Id> = Vec::new();
    let mut bytes_after = 0u64;
    for batch in repo.read_index_batches(&old_index) {
        for (_, list) in batch? {
            for (pack, blobs) in list? {
                let Some(&size) = sizes.get(&pack) else { continue }; // missing: caught below
                if !seen.insert(pack) {
                    continue;
                }
                let mut wanted = Vec::new();
                for b in &blobs {
                    if used.contains(&b.id)? && kept.insert(b.id)? {
                        wanted.push(*b);
                    }
                }
                summary.blobs_removed += blobs.len() - wanted.len();
                if wanted.len() == blobs.len() {
                    bytes_after += size;
                    new_index.add(repo, (pack, wanted))?;
                    continue;
                }
                delete.push(pack);
                if wanted.is_empty() {
                    continue;
                }
                summary.packs_repacked += 1;
                if options.dry_run {
                    bytes_after += wanted.iter().map(|b| b.stored_len as u64).sum::<u64>();
                    continue;
                }
                let bytes = storage.get(&layout::path(Kind::Pack, &pack))?;
                for b in &wanted {
                    let sealed = bytes
                        .get(b.offset as usize..(b.offset + b.stored_len) as usize)
                        .ok_or_else(|| {
                            RepoError::damaged(
                                "pack",
                                layout::path(Kind::Pack, &pack),
                                "shorter than its index says",
                            )
                        })?;
                    builder.add(b.id, b.codec, b.raw_len, sealed);
                    if builder.len() >= repo.config.pack_size as usize {
                        bytes_after += store_pack(repo, std::mem::take(&mut builder), &mut new_index)?;
                        summary.packs_written += 1;
                    }
                }
            }
        }
    }
    if !builder.is_empty() {
        bytes_after += store_pack(repo, builder, &mut new_index)?;
        summary.packs_written += 1;
    }
    new_index.flush(repo)?;

    let mut lost = None;
    used.for_each(&mut |chunk| {
        if lost.is_none() && !kept.contains(&chunk)? {
            lost = Some(chunk);
        }
        Ok(())
    })?;
    if let Some(lost) = lost {
        return Err(RepoError::damaged(
            "chunk",
            lost.to_hex(),
            "a manifest needs it but no pack holds it; prune stopped without deleting anything: run 'cairn check'",
        ));
    }
    // Packs no index names were left by interrupted writes (no writer runs: we hold the lock).
    let mut unindexed: Vec<Id> = sizes.keys().filter(|p| !seen.contains(p)).copied().collect();
    unindexed.sort();
    delete.extend(unindexed);
    summary.packs_deleted = delete.len() - summary.packs_repacked;
    summary.bytes_after = bytes_after;
    if options.dry_run {
        return Ok(summary);
    }

    // The new index is stored: the old index objects go (only those read above: anything
    // newer is not ours to judge), then the packs.
    lock.ensure_held()?;
    for id in &old_index {
        if !new_index.written.contains(id) {
            storage.delete(&layout::path(Kind::Index, id))?;
        }
    }
    for pack in &delete {
        storage.delete(&layout::path(Kind::Pack, pack))?;
    }
    repo.load_index()?;
    Ok(summary)
}

/// Stores a pack of repacked blobs and names it in the new index; returns its size.
fn store_pack(repo: &Repository, builder: PackBuilder, new_index: &mut NewIndex) -> Result<u64> {
    let (id, bytes, blobs) = builder.finish(&repo.crypto);
    let size = bytes.len() as u64;
    put_immutable(repo.storage.as_ref(), &layout::path(Kind::Pack, &id), bytes)?;
    new_index.add(repo, (id, blobs))?;
    Ok(size)
}

/// The index objects prune writes, [`BLOBS_PER_INDEX`] blobs each.
#[derive(Default)]
struct NewIndex {
    write: bool,
    piece: Vec<PackBlobs>,
    blobs: usize,
    written: HashSet<Id>,
}

impl NewIndex {
    fn add(&mut self, repo: &Repository, pack: PackBlobs) -> Result<()> {
        self.blobs += pack.1.len();
        self.piece.push(pack);
        if self.blobs >= BLOBS_PER_INDEX {
            self.flush(repo)?;
        }
        Ok(())
    }

    fn flush(&mut self, repo: &Repository) -> Result<()> {
        let piece = std::mem::take(&mut self.piece);
        self.blobs = 0;
        if self.write && !piece.is_empty() {
            self.written.insert(repo.write_index_object(&piece)?);
        }
        Ok(())
    }
}

/// Every chunk some manifest needs: its entry stream and its files' chunks. Any manifest that
/// cannot be read stops the prune: deleting on a guess could lose data.
fn used_chunks(repo: &Repository) -> Result<ChunkSet> {
    let mut used = ChunkSet::default();
    for id in repo.list_manifests()? {
        let manifest = repo.load_manifest(&id)?;
        manifest.tree.iter().try_for_each(|c| used.add(*c))?;
        repo.for_each_entry(&id, &manifest, &mut |entry| entry.chunks.iter().try_for_each(|c| used.add(*c)))?;
    }
    Ok(used)
}

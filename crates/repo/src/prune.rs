//! `prune`: removes data no manifest needs, under an exclusive lock. Order (crash-safe at every
//! step): repacked blobs are stored in new packs, then a new index naming every kept blob is
//! stored, then the old index objects are deleted, and only then the old packs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::index::PackBlobs;
use crate::layout::{self, Kind};
use crate::lock::LockGuard;
use crate::pack::{BlobEntry, PackBuilder};
use crate::repository::{put_immutable, Repository};

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
    let index_objects = repo.read_index_objects()?;
    repo.load_index()?;
    let used = used_chunks(repo)?;

    let mut sizes: HashMap<Id, u64> = HashMap::new();
    for meta in storage.list(layout::DATA) {
        let meta = meta?;
        if let Some(id) = layout::id_of(Kind::Pack, &meta.path) {
            sizes.insert(id, meta.size);
        }
    }
    let mut packs: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    for (_, list) in &index_objects {
        for (pack, blobs) in list {
            packs.entry(*pack).or_insert_with(|| blobs.clone());
        }
    }

    // Each used chunk is kept once, in the first pack (by id) that holds it.
    let mut kept_chunks: HashSet<ChunkId> = HashSet::new();
    let mut keep: Vec<PackBlobs> = Vec::new();
    let mut repack: Vec<PackBlobs> = Vec::new();
    let mut delete: Vec<Id> = Vec::new();
    let mut summary = PruneSummary { packs: sizes.len(), dry_run: options.dry_run, ..Default::default() };
    for (pack, blobs) in &packs {
        if !sizes.contains_key(pack) {
            continue; // missing: a used chunk only there is caught below
        }
        let wanted: Vec<BlobEntry> =
            blobs.iter().filter(|b| used.contains(&b.id) && kept_chunks.insert(b.id)).copied().collect();
        summary.blobs_removed += blobs.len() - wanted.len();
        if wanted.len() == blobs.len() {
            keep.push((*pack, wanted));
        } else if wanted.is_empty() {
            delete.push(*pack);
        } else {
            repack.push((*pack, wanted));
        }
    }
    if let Some(lost) = used.iter().find(|c| !kept_chunks.contains(c)) {
        return Err(RepoError::damaged(
            "chunk",
            lost.to_hex(),
            "a manifest needs it but no pack holds it; prune stopped without deleting anything: run 'cairn check'",
        ));
    }
    // Packs no index names were left by interrupted writes (no writer runs: we hold the lock).
    delete.extend(sizes.keys().filter(|p| !packs.contains_key(p)));
    summary.packs_deleted = delete.len();
    summary.packs_repacked = repack.len();
    summary.bytes_before = sizes.values().sum();
    let kept_bytes: u64 = keep.iter().map(|(p, _)| sizes[p]).sum();
    let repacked_bytes: u64 = repack.iter().flat_map(|(_, b)| b.iter()).map(|b| b.stored_len as u64).sum();
    if options.dry_run {
        summary.bytes_after = kept_bytes + repacked_bytes;
        return Ok(summary);
    }

    // 1. Copy the wanted blobs of partly used packs into new packs (sealed blobs move as they are).
    let mut builder = PackBuilder::default();
    let mut written = Vec::new();
    let mut new_bytes = 0u64;
    let mut store = |builder: PackBuilder, written: &mut Vec<PackBlobs>| -> Result<()> {
        let (id, bytes, blobs) = builder.finish(&repo.crypto);
        new_bytes += bytes.len() as u64;
        put_immutable(storage, &layout::path(Kind::Pack, &id), bytes)?;
        written.push((id, blobs));
        Ok(())
    };
    for (pack, wanted) in &repack {
        let bytes = storage.get(&layout::path(Kind::Pack, pack))?;
        for b in wanted {
            let sealed =
                bytes.get(b.offset as usize..(b.offset + b.stored_len) as usize).ok_or_else(|| {
                    RepoError::damaged("pack", layout::path(Kind::Pack, pack), "shorter than its index says")
                })?;
            builder.add(b.id, b.codec, b.raw_len, sealed);
            if builder.len() >= repo.config.pack_size as usize {
                store(std::mem::take(&mut builder), &mut written)?;
            }
        }
        delete.push(*pack);
    }
    if !builder.is_empty() {
        store(builder, &mut written)?;
    }
    summary.packs_written = written.len();
    summary.bytes_after = kept_bytes + new_bytes;

    // 2. A new index for everything kept, 3. then the old index objects go, 4. then the packs.
    lock.ensure_held()?;
    keep.extend(written);
    let mut new_index = HashSet::new();
    let mut piece: Vec<PackBlobs> = Vec::new();
    let mut blobs_in_piece = 0;
    for pack in keep {
        blobs_in_piece += pack.1.len();
        piece.push(pack);
        if blobs_in_piece >= BLOBS_PER_INDEX {
            new_index.insert(repo.write_index_object(&std::mem::take(&mut piece))?);
            blobs_in_piece = 0;
        }
    }
    if !piece.is_empty() {
        new_index.insert(repo.write_index_object(&piece)?);
    }
    // Only the index objects read above: anything newer is not ours to judge.
    for (id, _) in &index_objects {
        if !new_index.contains(id) {
            storage.delete(&layout::path(Kind::Index, id))?;
        }
    }
    for pack in &delete {
        storage.delete(&layout::path(Kind::Pack, pack))?;
    }
    repo.load_index()?;
    Ok(summary)
}

/// Every chunk some manifest needs: its entry stream and its files' chunks. Any manifest that
/// cannot be read stops the prune: deleting on a guess could lose data.
fn used_chunks(repo: &Repository) -> Result<HashSet<ChunkId>> {
    let mut used = HashSet::new();
    for id in repo.list_manifests()? {
        let manifest = repo.load_manifest(&id)?;
        used.extend(manifest.tree.iter().copied());
        repo.for_each_entry(&id, &manifest, &mut |entry| {
            used.extend(entry.chunks);
            Ok(())
        })?;
    }
    Ok(used)
}

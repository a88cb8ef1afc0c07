//! Index objects (chunk id -> pack, offset, length) and the in-memory index built from them.

use std::collections::HashMap;

use crate::compression::Codec;
use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::layout::{self, Kind};
use crate::pack::BlobEntry;

const ENTRY_LEN: usize = 32 + 1 + 4 + 4 + 4;

/// The blobs of one pack, as an index object lists them.
pub type PackBlobs = (Id, Vec<BlobEntry>);

/// The body of an index object: for each pack, its id, its blob count, and its blobs.
pub fn encode(packs: &[PackBlobs]) -> Vec<u8> {
    let blobs: usize = packs.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(packs.len() * 36 + blobs * ENTRY_LEN);
    for (pack, entries) in packs {
        out.extend_from_slice(&pack.0);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            out.extend_from_slice(&e.id.0);
            out.push(e.codec as u8);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stored_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
        }
    }
    out
}

pub fn decode(index_id: &Id, body: &[u8]) -> Result<Vec<PackBlobs>> {
    let damaged = |reason: &str| RepoError::damaged("index", layout::path(Kind::Index, index_id), reason);
    let mut packs = Vec::new();
    let mut rest = body;
    let take_id = |b: &[u8]| {
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        Id(id)
    };
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while !rest.is_empty() {
        if rest.len() < 36 {
            return Err(damaged("truncated pack record"));
        }
        let pack = take_id(rest);
        let count = u32_at(rest, 32) as usize;
        rest = &rest[36..];
        if rest.len() < count * ENTRY_LEN {
            return Err(damaged("truncated blob list"));
        }
        let mut entries = Vec::with_capacity(count);
        for raw in rest[..count * ENTRY_LEN].chunks_exact(ENTRY_LEN) {
            entries.push(BlobEntry {
                id: take_id(raw),
                codec: Codec::from_byte(raw[32]).ok_or_else(|| damaged("unknown codec"))?,
                offset: u32_at(raw, 33),
                stored_len: u32_at(raw, 37),
                raw_len: u32_at(raw, 41),
            });
        }
        rest = &rest[count * ENTRY_LEN..];
        packs.push((pack, entries));
    }
    Ok(packs)
}

/// Where a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub blob: BlobEntry,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    codec: Codec,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
}

/// Every indexed chunk, kept compactly: pack ids are stored once and referred to by number.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    chunks: HashMap<ChunkId, Slot>,
}

impl Index {
    pub fn add_pack(&mut self, pack: Id, entries: &[BlobEntry]) {
        let number = *self.pack_numbers.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            self.chunks.entry(e.id).or_insert(Slot {
                pack: number,
                codec: e.codec,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            });
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        let s = self.chunks.get(id)?;
        Some(Location {
            pack: self.packs[s.pack as usize],
            blob: BlobEntry {
                id: *id,
                codec: s.codec,
                offset: s.offset,
                stored_len: s.stored_len,
                raw_len: s.raw_len,
            },
        })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_numbers.contains_key(pack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seed: u8, offset: u32) -> BlobEntry {
        BlobEntry {
            id: Id([seed; 32]),
            codec: Codec::Zstd,
            offset,
            stored_len: 100 + seed as u32,
            raw_len: 9000,
        }
    }

    proptest! {
        #[test]
        fn body_round_trip(packs in proptest::collection::vec((any::<u8>(), 0usize..20), 0..10)) {
            let packs: Vec<PackBlobs> = packs
                .into_iter()
                .map(|(seed, n)| (Id([seed; 32]), (0..n).map(|i| entry(i as u8, i as u32 * 7)).collect()))
                .collect();
            let body = encode(&packs);
            prop_assert_eq!(decode(&Id::random(), &body).unwrap(), packs);
            if !body.is_empty() {
                prop_assert!(decode(&Id::random(), &body[..body.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn lookups() {
        let mut index = Index::default();
        index.add_pack(Id([1; 32]), &[entry(5, 0), entry(6, 105)]);
        index.add_pack(Id([2; 32]), &[entry(5, 0)]);
        assert_eq!(index.get(&Id([6; 32])).unwrap().pack, Id([1; 32]));
        assert_eq!(index.get(&Id([5; 32])).unwrap().pack, Id([1; 32]), "first location wins");
        assert_eq!((index.chunk_count(), index.pack_count()), (2, 2));
        assert!(!index.contains(&Id([9; 32])));
    }
}

//! Index objects (chunk id -> pack, offset, length) and the lookup index built from them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

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

/// A chunk's place, its pack given by number in the pack table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    pack: u32,
    codec: Codec,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
}

/// Entries kept in a hash table before they are sorted into a run on disk: about 20 MiB, so a
/// repository of up to some 30 GiB of 128 KiB chunks never touches the disk.
const MEMORY_ENTRIES: usize = 1 << 18;
/// More runs than this are merged into one: each run costs a read per lookup.
const MAX_RUNS: usize = 4;

/// Every indexed chunk, in memory that does not grow with the repository: the newest entries
/// sit in a hash table; older ones in sorted runs in unnamed temporary files (gone when the
/// process ends, however it ends), with 8 bytes of memory per block of runs; pack ids beyond
/// the first in a temporary file too. A lookup costs a hash probe and one small read per run,
/// served from the page cache in practice.
#[derive(Debug)]
pub struct Index {
    packs: PackTable,
    recent: HashMap<ChunkId, Slot>,
    runs: Vec<Run>,
    memory_entries: usize,
}

impl Default for Index {
    /// Keeps [`MEMORY_ENTRIES`] in memory, or `CAIRN_INDEX_MEMORY_ENTRIES` (to trade memory
    /// for lookups, or to try the on-disk path on a small repository).
    fn default() -> Self {
        let entries = std::env::var("CAIRN_INDEX_MEMORY_ENTRIES").ok().and_then(|v| v.parse().ok());
        Index::with_memory(entries.unwrap_or(MEMORY_ENTRIES))
    }
}

impl Index {
    /// An index that keeps at most `entries` in its hash table before spilling them to disk.
    pub fn with_memory(entries: usize) -> Index {
        Index {
            // A quarter as many packs as entries: 2 MiB of pack ids, a TiB of 16 MiB packs.
            packs: PackTable::new(entries.max(4) / 4),
            recent: HashMap::new(),
            runs: Vec::new(),
            memory_entries: entries.max(1),
        }
    }

    pub fn add_pack(&mut self, pack: Id, entries: &[BlobEntry]) -> Result<()> {
        let number = self.packs.push(&pack).map_err(spill_error)?;
        for e in entries {
            self.recent.entry(e.id).or_insert(Slot {
                pack: number,
                codec: e.codec,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            });
            self.spill_if_full()?;
        }
        Ok(())
    }

    fn spill_if_full(&mut self) -> Result<()> {
        if self.recent.len() >= self.memory_entries {
            self.spill().map_err(spill_error)?;
        }
        Ok(())
    }

    /// Calls `each` with every chunk id, in id order (compacting first).
    fn for_each_chunk(&mut self, each: &mut dyn FnMut(ChunkId) -> Result<()>) -> Result<()> {
        self.compact()?;
        match self.runs.first() {
            None => {
                let mut ids: Vec<ChunkId> = self.recent.keys().copied().collect();
                ids.sort_unstable();
                ids.into_iter().try_for_each(each)
            }
            Some(run) => {
                let mut reader = RunReader { run, next: 0, buf: Vec::new(), at: 0 };
                while let Some((id, _)) = reader.next().map_err(spill_error)? {
                    each(id)?;
                }
                Ok(())
            }
        }
    }

    /// Merges what is on disk into one run, so that a lookup reads once and
    /// [`chunk_count`](Index::chunk_count) is exact. An index that fits in memory stays there.
    pub fn compact(&mut self) -> Result<()> {
        if !self.runs.is_empty() {
            self.spill().map_err(spill_error)?;
            if self.runs.len() > 1 {
                self.merge().map_err(spill_error)?;
            }
        }
        Ok(())
    }

    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.slot(id)?.is_some())
    }

    pub fn get(&self, id: &ChunkId) -> Result<Option<Location>> {
        let Some(s) = self.slot(id)? else { return Ok(None) };
        let pack = self.packs.get(s.pack).map_err(spill_error)?;
        let blob = BlobEntry {
            id: *id,
            codec: s.codec,
            offset: s.offset,
            stored_len: s.stored_len,
            raw_len: s.raw_len,
        };
        Ok(Some(Location { pack, blob }))
    }

    /// Chunks indexed: exact after [`compact`](Index::compact); before, a chunk indexed both
    /// on disk and in memory counts twice.
    pub fn chunk_count(&self) -> usize {
        self.recent.len() + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    /// Every pack the index names.
    pub fn packs(&self) -> Result<HashSet<Id>> {
        (0..self.packs.count).map(|n| self.packs.get(n).map_err(spill_error)).collect()
    }

    fn slot(&self, id: &ChunkId) -> Result<Option<Slot>> {
        if let Some(s) = self.recent.get(id) {
            return Ok(Some(*s));
        }
        for run in &self.runs {
            if let Some(s) = run.get(id).map_err(spill_error)? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.recent.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<(ChunkId, Slot)> = self.recent.drain().collect();
        self.recent.shrink_to_fit();
        sorted.sort_unstable_by_key(|(id, _)| *id);
        self.runs.push(Run::write(sorted.into_iter().map(Ok))?);
        if self.runs.len() > MAX_RUNS {
            self.merge()?;
        }
        Ok(())
    }

    /// All runs into one, reading each sequentially. Of a chunk in several runs, the oldest
    /// run's entry is kept.
    fn merge(&mut self) -> io::Result<()> {
        let merged = Merge::new(&self.runs)?;
        self.runs = vec![Run::write(merged)?];
        Ok(())
    }
}

/// A set of chunk ids in memory that does not grow with it: the index's hash table and runs.
#[derive(Debug, Default)]
pub struct ChunkSet {
    index: Index,
}

impl ChunkSet {
    /// Adds `id`; adding it again is harmless.
    pub fn add(&mut self, id: ChunkId) -> Result<()> {
        let none = Slot { pack: 0, codec: Codec::Raw, offset: 0, stored_len: 0, raw_len: 0 };
        self.index.recent.entry(id).or_insert(none);
        self.index.spill_if_full()
    }

    /// Adds `id` if it is not in the set yet; says whether it was added.
    pub fn insert(&mut self, id: ChunkId) -> Result<bool> {
        if self.index.contains(&id)? {
            return Ok(false);
        }
        self.add(id)?;
        Ok(true)
    }

    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        self.index.contains(id)
    }

    /// Calls `each` with every id, in order.
    pub fn for_each(&mut self, each: &mut dyn FnMut(ChunkId) -> Result<()>) -> Result<()> {
        self.index.for_each_chunk(each)
    }
}

fn spill_error(e: io::Error) -> RepoError {
    RepoError::io("keeping the chunk index in temporary files (set TMPDIR to a roomier place)", e)
}

/// Run records: chunk id, pack number, codec, offset, stored length, raw length.
const RECORD: usize = 32 + 4 + 1 + 4 + 4 + 4;
/// Records per block: a lookup reads one block (about 6 KiB), memory holds 8 bytes per block.
const BLOCK: usize = 128;

/// Sorted entries in a temporary file, with the first 8 bytes of each block's first chunk id.
#[derive(Debug)]
struct Run {
    file: File,
    len: usize,
    fences: Vec<u64>,
}

impl Run {
    fn write(sorted: impl Iterator<Item = io::Result<(ChunkId, Slot)>>) -> io::Result<Run> {
        let file = tempfile::tempfile()?;
        let mut out = io::BufWriter::with_capacity(1 << 20, &file);
        let (mut len, mut fences) = (0, Vec::new());
        for entry in sorted {
            let (id, slot) = entry?;
            if len % BLOCK == 0 {
                fences.push(prefix(&id));
            }
            out.write_all(&encode_record(&id, &slot))?;
            len += 1;
        }
        out.flush()?;
        drop(out);
        fences.shrink_to_fit();
        Ok(Run { file, len, fences })
    }

    fn get(&self, id: &ChunkId) -> io::Result<Option<Slot>> {
        // The blocks that can hold `id`: usually one; more only if 8-byte prefixes tie.
        let key = prefix(id);
        let first = self.fences.partition_point(|f| *f < key).saturating_sub(1);
        let end = self.fences.partition_point(|f| *f <= key);
        if end == 0 {
            return Ok(None);
        }
        let (start, stop) = (first * BLOCK, (end * BLOCK).min(self.len));
        let mut buf = vec![0u8; (stop - start) * RECORD];
        self.file.read_exact_at(&mut buf, (start * RECORD) as u64)?;
        let records: Vec<&[u8]> = buf.chunks_exact(RECORD).collect();
        Ok(records.binary_search_by(|r| r[..32].cmp(&id.0[..])).ok().map(|i| decode_record(records[i]).1))
    }
}

fn prefix(id: &ChunkId) -> u64 {
    u64::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3], id.0[4], id.0[5], id.0[6], id.0[7]])
}

fn encode_record(id: &ChunkId, s: &Slot) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..32].copy_from_slice(&id.0);
    r[32..36].copy_from_slice(&s.pack.to_le_bytes());
    r[36] = s.codec as u8;
    r[37..41].copy_from_slice(&s.offset.to_le_bytes());
    r[41..45].copy_from_slice(&s.stored_len.to_le_bytes());
    r[45..49].copy_from_slice(&s.raw_len.to_le_bytes());
    r
}

fn decode_record(r: &[u8]) -> (ChunkId, Slot) {
    let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let mut id = [0u8; 32];
    id.copy_from_slice(&r[..32]);
    // The index wrote this codec byte itself.
    let codec = Codec::from_byte(r[36]).unwrap_or(Codec::Raw);
    (
        Id(id),
        Slot { pack: u32_at(32), codec, offset: u32_at(37), stored_len: u32_at(41), raw_len: u32_at(45) },
    )
}

/// A run read front to back in large reads.
struct RunReader<'a> {
    run: &'a Run,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader<'_> {
    fn next(&mut self) -> io::Result<Option<(ChunkId, Slot)>> {
        if self.next == self.run.len {
            return Ok(None);
        }
        if self.at == self.buf.len() {
            let n = (self.run.len - self.next).min(BLOCK * 64);
            self.buf.resize(n * RECORD, 0);
            self.run.file.read_exact_at(&mut self.buf, (self.next * RECORD) as u64)?;
            self.at = 0;
        }
        let entry = decode_record(&self.buf[self.at..self.at + RECORD]);
        self.at += RECORD;
        self.next += 1;
        Ok(Some(entry))
    }
}

/// The entries of several runs in chunk-id order, each chunk once.
struct Merge<'a> {
    readers: Vec<(RunReader<'a>, Option<(ChunkId, Slot)>)>,
    /// (chunk id, run number) of every reader's head: the oldest run sorts first on a tie.
    heads: BinaryHeap<Reverse<(ChunkId, usize)>>,
}

impl<'a> Merge<'a> {
    fn new(runs: &'a [Run]) -> io::Result<Merge<'a>> {
        let mut merge = Merge { readers: Vec::new(), heads: BinaryHeap::new() };
        for (i, run) in runs.iter().enumerate() {
            merge.readers.push((RunReader { run, next: 0, buf: Vec::new(), at: 0 }, None));
            merge.advance(i)?;
        }
        Ok(merge)
    }

    fn advance(&mut self, i: usize) -> io::Result<()> {
        let (reader, head) = &mut self.readers[i];
        *head = reader.next()?;
        if let Some((id, _)) = head {
            self.heads.push(Reverse((*id, i)));
        }
        Ok(())
    }

    fn take(&mut self) -> io::Result<Option<(ChunkId, Slot)>> {
        let Some(Reverse((id, i))) = self.heads.pop() else { return Ok(None) };
        let entry = self.readers[i].1.take();
        self.advance(i)?;
        while let Some(&Reverse((next, j))) = self.heads.peek() {
            if next != id {
                break;
            }
            self.heads.pop();
            self.advance(j)?;
        }
        Ok(entry)
    }
}

impl Iterator for Merge<'_> {
    type Item = io::Result<(ChunkId, Slot)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.take().transpose()
    }
}

/// Pack ids by number: the first ones in memory (a lookup is then free), the rest in a
/// temporary file (32 bytes each).
#[derive(Debug)]
struct PackTable {
    memory: Vec<Id>,
    in_memory: usize,
    file: Option<File>,
    count: u32,
}

impl PackTable {
    fn new(in_memory: usize) -> PackTable {
        PackTable { memory: Vec::new(), in_memory, file: None, count: 0 }
    }

    fn push(&mut self, pack: &Id) -> io::Result<u32> {
        if self.memory.len() < self.in_memory {
            self.memory.push(*pack);
        } else {
            let file = match &mut self.file {
                Some(f) => f,
                none => none.insert(tempfile::tempfile()?),
            };
            file.write_all_at(&pack.0, (self.count as usize - self.memory.len()) as u64 * 32)?;
        }
        self.count += 1;
        Ok(self.count - 1)
    }

    fn get(&self, number: u32) -> io::Result<Id> {
        if let Some(id) = self.memory.get(number as usize) {
            return Ok(*id);
        }
        let file = self.file.as_ref().ok_or_else(|| io::Error::other("no such pack number"))?;
        let mut id = [0u8; 32];
        file.read_exact_at(&mut id, (number as usize - self.memory.len()) as u64 * 32)?;
        Ok(Id(id))
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
        index.add_pack(Id([1; 32]), &[entry(5, 0), entry(6, 105)]).unwrap();
        index.add_pack(Id([2; 32]), &[entry(5, 0)]).unwrap();
        assert_eq!(index.get(&Id([6; 32])).unwrap().unwrap().pack, Id([1; 32]));
        assert_eq!(index.get(&Id([5; 32])).unwrap().unwrap().pack, Id([1; 32]), "first location wins");
        assert_eq!(index.chunk_count(), 2);
        assert_eq!(index.packs().unwrap(), [Id([1; 32]), Id([2; 32])].into());
        assert!(!index.contains(&Id([9; 32])).unwrap());
    }

    fn chunk(n: u32) -> ChunkId {
        Id::of_object(&n.to_le_bytes())
    }

    proptest! {
        /// Whatever spills to disk and merges, every lookup answers as a plain map would.
        #[test]
        fn on_disk_answers_as_in_memory(
            packs in proptest::collection::vec(proptest::collection::vec(0u32..3000, 0..400), 1..12),
            memory in 1usize..700,
        ) {
            let mut index = Index::with_memory(memory);
            let mut model: HashMap<ChunkId, (Id, BlobEntry)> = HashMap::new();
            for (p, chunks) in packs.iter().enumerate() {
                let pack = Id::of_object(&(p as u64).to_le_bytes());
                let entries: Vec<BlobEntry> = chunks
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| BlobEntry {
                        id: chunk(c),
                        codec: Codec::Lz4,
                        offset: i as u32 * 10,
                        stored_len: c,
                        raw_len: c + 1,
                    })
                    .collect();
                index.add_pack(pack, &entries).unwrap();
                for e in &entries {
                    model.entry(e.id).or_insert((pack, *e));
                }
            }
            index.compact().unwrap();
            prop_assert_eq!(index.chunk_count(), model.len());
            prop_assert!(index.runs.len() <= 1);
            for c in 0..3000 {
                let got = index.get(&chunk(c)).unwrap();
                match model.get(&chunk(c)) {
                    // Any stored copy of a chunk is a right answer; its facts are the same.
                    Some((_, e)) => prop_assert_eq!(got.map(|l| (l.blob.stored_len, l.blob.codec)), Some((e.stored_len, e.codec))),
                    None => prop_assert!(got.is_none()),
                }
            }
        }
    }

    proptest! {
        /// A set spilling to disk answers as a plain set, and lists its ids once each, in order.
        #[test]
        fn a_chunk_set_on_disk_answers_as_in_memory(ids in proptest::collection::vec(0u32..500, 0..2000)) {
            let mut set = ChunkSet { index: Index::with_memory(37) };
            let mut model = std::collections::BTreeSet::new();
            for (i, &n) in ids.iter().enumerate() {
                if i % 3 == 0 {
                    prop_assert_eq!(set.insert(chunk(n)).unwrap(), model.insert(chunk(n)));
                } else {
                    set.add(chunk(n)).unwrap();
                    model.insert(chunk(n));
                }
            }
            for n in 0..500 {
                prop_assert_eq!(set.contains(&chunk(n)).unwrap(), model.contains(&chunk(n)));
            }
            let mut listed = Vec::new();
            set.for_each(&mut |id| {
                listed.push(id);
                Ok(())
            })
            .unwrap();
            prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn ids_sharing_a_long_prefix_are_all_found() {
        // Blocks are found by an 8-byte prefix; ids alike in it must still be told apart.
        let mut index = Index::with_memory(10);
        let ids: Vec<ChunkId> = (0..1000u32)
            .map(|n| {
                let mut id = [7u8; 32];
                id[28..].copy_from_slice(&n.to_be_bytes());
                Id(id)
            })
            .collect();
        for part in ids.chunks(100) {
            let entries: Vec<BlobEntry> = part.iter().map(|&id| BlobEntry { id, ..entry(0, 0) }).collect();
            index.add_pack(Id::random(), &entries).unwrap();
        }
        index.compact().unwrap();
        assert!(ids.iter().all(|id| index.contains(id).unwrap()));
        assert!(!index.contains(&Id([7; 32])).unwrap());
        assert_eq!(index.chunk_count(), 1000);
    }
}

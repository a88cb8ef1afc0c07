//! Pack files: many sealed blobs back to back, then a sealed header listing them, then the
//! header's length. A pack is named by the BLAKE3 hash of all its bytes.

use bytes::Bytes;

use crate::compression::{decompress_to, Codec};
use crate::crypto::Crypto;
use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::layout::{self, Kind};

const HEADER_VERSION: u8 = 1;
const ENTRY_LEN: usize = 32 + 1 + 4 + 4;

/// One blob in a pack, as the pack header and the index record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub codec: Codec,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// Collects blobs until the pack is big enough to store. Its bytes may start a few bytes into
/// its buffer (`skip`), at an address aligned for direct I/O.
#[derive(Debug, Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    skip: usize,
    entries: Vec<BlobEntry>,
}

/// The alignment [`PackBuilder::with_buffer`] gives a pack's bytes: a direct write takes them
/// from there without copying them into an aligned buffer first.
const ALIGN: usize = cairn_storage::direct::BLOCK as usize;

impl PackBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        PackBuilder { data: Vec::with_capacity(bytes), skip: 0, entries: Vec::new() }
    }

    /// An empty pack that fills `buffer`, reusing its allocation, with room for `bytes` (more
    /// moves it) from an aligned address on.
    pub fn with_buffer(mut buffer: Vec<u8>, bytes: usize) -> Self {
        buffer.clear();
        buffer.reserve(bytes + ALIGN);
        let skip = buffer.as_ptr().align_offset(ALIGN).min(ALIGN);
        buffer.resize(skip, 0);
        PackBuilder { data: buffer, skip, entries: Vec::new() }
    }

    pub fn add(&mut self, id: ChunkId, codec: Codec, raw_len: u32, sealed: &[u8]) {
        self.entries.push(BlobEntry {
            id,
            codec,
            offset: self.len() as u32,
            stored_len: sealed.len() as u32,
            raw_len,
        });
        self.data.extend_from_slice(sealed);
    }

    /// Moves `other`'s blobs to the end of this pack, leaving `other` empty (its capacity kept).
    pub fn append(&mut self, other: &mut PackBuilder) {
        let base = self.len() as u32;
        self.entries.extend(other.entries.drain(..).map(|e| BlobEntry { offset: base + e.offset, ..e }));
        self.data.extend_from_slice(&other.data[other.skip..]);
        other.data.truncate(other.skip);
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.skip
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The finished pack: its id, its bytes (in the builder's buffer), and its blobs.
    pub fn finish(self, crypto: &Crypto) -> (Id, Bytes, Vec<BlobEntry>) {
        let mut header = Vec::with_capacity(5 + self.entries.len() * ENTRY_LEN);
        header.push(HEADER_VERSION);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            header.extend_from_slice(&e.id.0);
            header.push(e.codec as u8);
            header.extend_from_slice(&e.stored_len.to_le_bytes());
            header.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let sealed = crypto.seal(&header);
        let mut bytes = self.data;
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = Id::of_object(&bytes[self.skip..]);
        (id, Bytes::from(bytes).slice(self.skip..), self.entries)
    }
}

/// Parses the header at the end of a whole pack and checks that it accounts for every byte.
pub fn read_header(crypto: &Crypto, pack_id: &Id, bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    let size = bytes.len() as u64;
    let header_len = header_len(pack_id, size, &bytes[bytes.len().saturating_sub(4)..])?;
    let start = (size - 4 - header_len) as usize;
    parse_header(crypto, pack_id, size, &bytes[start..bytes.len() - 4])
}

/// The length of the sealed header, from a pack's last four bytes.
pub fn header_len(pack_id: &Id, size: u64, last4: &[u8]) -> Result<u64> {
    let [a, b, c, d] =
        <[u8; 4]>::try_from(last4).map_err(|_| damaged(pack_id, "too short to hold a header"))?;
    let len = u32::from_le_bytes([a, b, c, d]) as u64;
    if len + 4 > size {
        return Err(damaged(pack_id, "header length points outside the pack"));
    }
    Ok(len)
}

/// Opens a sealed header and checks that its blobs fill the pack of `size` bytes exactly.
pub fn parse_header(crypto: &Crypto, pack_id: &Id, size: u64, sealed: &[u8]) -> Result<Vec<BlobEntry>> {
    let header = crypto.open(sealed).map_err(|_| damaged(pack_id, "header fails authentication"))?;
    if header.len() < 5 || header[0] != HEADER_VERSION {
        return Err(damaged(pack_id, "unknown header version"));
    }
    let count = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if header.len() != 5 + count * ENTRY_LEN {
        return Err(damaged(pack_id, "header length does not match its blob count"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset = 0u64;
    for raw in header[5..].chunks_exact(ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let codec = Codec::from_byte(raw[32]).ok_or_else(|| damaged(pack_id, "unknown blob codec"))?;
        let stored_len = u32_at(33);
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[..32]);
        entries.push(BlobEntry { id: Id(id), codec, offset: offset as u32, stored_len, raw_len: u32_at(37) });
        offset += stored_len as u64;
    }
    if offset + sealed.len() as u64 + 4 != size {
        return Err(damaged(pack_id, "blobs and header disagree on the pack's length"));
    }
    Ok(entries)
}

fn damaged(pack_id: &Id, reason: &str) -> RepoError {
    RepoError::damaged("pack", layout::path(Kind::Pack, pack_id), reason)
}

/// Opens one stored blob back into its chunk and hashes it against its id, whatever the
/// format version (`check --read-data`: also proof that the writer named it right).
pub fn open_blob(crypto: &Crypto, entry: &BlobEntry, stored: &[u8]) -> Result<Vec<u8>, String> {
    let mut chunk = vec![0; entry.raw_len as usize];
    open(crypto, entry, stored, &mut BlobBuffers::default(), &mut chunk, true)?;
    Ok(chunk)
}

/// A buffer reused from blob to blob by [`open_blob_to`].
#[derive(Debug, Default)]
pub struct BlobBuffers {
    plain: Vec<u8>,
}

/// Opens a blob straight into `chunk`, which is as long as the chunk (a restore opens chunks
/// into the buffer it writes from), proven to be the chunk of its id. Where blobs are bound to
/// their ids ([`Crypto::blobs_bound`]) authentication is that proof; otherwise the content is
/// hashed.
pub fn open_blob_to(
    crypto: &Crypto,
    entry: &BlobEntry,
    stored: &[u8],
    buffers: &mut BlobBuffers,
    chunk: &mut [u8],
) -> Result<(), String> {
    open(crypto, entry, stored, buffers, chunk, !crypto.blobs_bound())
}

fn open(
    crypto: &Crypto,
    entry: &BlobEntry,
    stored: &[u8],
    buffers: &mut BlobBuffers,
    chunk: &mut [u8],
    rehash: bool,
) -> Result<(), String> {
    crypto.open_blob_into(&entry.id, stored, &mut buffers.plain).map_err(|e| e.to_string())?;
    decompress_to(entry.codec, &buffers.plain, chunk)?;
    if rehash && crypto.chunk_id(chunk) != entry.id {
        return Err("content does not match the chunk id".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Encryption, MasterKey};

    #[test]
    fn header_round_trip_and_blob_checks() {
        let crypto = Crypto::new(Encryption::Aes256Gcm, &MasterKey::random());
        let mut pack = PackBuilder::default();
        let chunks: Vec<Vec<u8>> = vec![b"alpha".to_vec(), vec![7u8; 3000], Vec::new()];
        for c in &chunks {
            let id = crypto.chunk_id(c);
            pack.add(id, Codec::Raw, c.len() as u32, &crypto.seal_blob(&id, c));
        }
        let (id, bytes, entries) = pack.finish(&crypto);
        assert_eq!(read_header(&crypto, &id, &bytes).unwrap(), entries);
        for (e, c) in entries.iter().zip(&chunks) {
            let stored = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
            assert_eq!(&open_blob(&crypto, e, stored).unwrap(), c);
        }
        let mut bad = bytes.to_vec();
        bad[2] ^= 0x10;
        let e = &entries[0];
        assert!(open_blob(&crypto, e, &bad[..e.stored_len as usize]).is_err());
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(read_header(&crypto, &id, &bad).is_err());
    }

    #[test]
    fn packs_lie_aligned_in_a_reused_buffer_and_read_as_any_other() {
        let crypto = Crypto::new(Encryption::Aes256Gcm, &MasterKey::random());
        let mut buffer = Vec::new();
        let mut base = None;
        for round in 0..3 {
            let mut segment = PackBuilder::with_capacity(1 << 16);
            let mut pack = PackBuilder::with_buffer(std::mem::take(&mut buffer), 1 << 20);
            let chunks: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8 + round; 1000 + 777 * i]).collect();
            for (i, c) in chunks.iter().enumerate() {
                let id = crypto.chunk_id(c);
                segment.add(id, Codec::Raw, c.len() as u32, &crypto.seal_blob(&id, c));
                if i % 2 == 1 {
                    pack.append(&mut segment);
                }
            }
            pack.append(&mut segment);
            assert_eq!(segment.len(), 0);
            let (id, bytes, entries) = pack.finish(&crypto);
            assert_eq!(bytes.as_ptr().align_offset(ALIGN), 0, "round {round}");
            assert_eq!(id, Id::of_object(&bytes));
            assert_eq!(read_header(&crypto, &id, &bytes).unwrap(), entries);
            for (e, c) in entries.iter().zip(&chunks) {
                let stored = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
                assert_eq!(&open_blob(&crypto, e, stored).unwrap(), c);
            }
            // The writer's way of taking the buffer back: the same allocation, every time.
            let start = bytes.as_ptr();
            let mut back = bytes.try_into_mut().unwrap();
            back.clear();
            buffer = Vec::from(back);
            assert_eq!(*base.get_or_insert(start), start, "round {round}");
        }
    }
}

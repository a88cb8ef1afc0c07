//! Named files: whole files stored one object each under a caller-chosen name (`files/<name>`),
//! written once, compressed and sealed, with a small header that can be read on its own. The
//! engine keeps archived WAL here: one durable write per segment, and a name that says what it
//! is. (docs/format.md §10.)

use bytes::Bytes;
use cairn_storage::{ErrorKind, PutMode};
use serde_json::Value;

use crate::compression::{decompress, Codec, Compression, Compressor};
use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::repository::Repository;

pub const PREFIX: &str = "files/";
const TYPE_FILE: u8 = 3;
const VERSION: u8 = 1;
/// type, version, codec, raw_len, content id, name length.
const FIXED_LEN: usize = 1 + 1 + 1 + 8 + 32 + 2;
const MAX_NAME: usize = 255;

/// A named file's header: what it is, without its content.
#[derive(Debug, Clone, PartialEq)]
pub struct FileHeader {
    pub name: String,
    pub codec: Codec,
    /// Length of the content.
    pub raw_len: u64,
    /// Keyed BLAKE3 of the content, as for chunks: equal content, equal id.
    pub content_id: ChunkId,
    /// The caller's metadata (a JSON object).
    pub attrs: Value,
}

/// What storing a named file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// A file of that name and the same content was already there.
    AlreadyStored,
}

/// A name is `/`-separated components of ASCII letters, digits, `.`, `_` and `-`, none empty
/// or starting with `.`.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

fn path_of(name: &str) -> Result<String> {
    if is_valid_name(name) {
        Ok(format!("{PREFIX}{name}"))
    } else {
        Err(RepoError::Invalid(format!("'{name}' is not a valid file name in the repository")))
    }
}

impl Repository {
    /// Stores `content` as `name`, durably, once. The same content stored again is
    /// [`PutOutcome::AlreadyStored`]; different content under an existing name is refused.
    pub fn put_file(
        &self,
        name: &str,
        content: &[u8],
        compression: Compression,
        attrs: &Value,
    ) -> Result<PutOutcome> {
        let path = path_of(name)?;
        let content_id = self.crypto.chunk_id(content);
        let (codec, packed) = Compressor::new(compression)
            .map_err(|e| RepoError::io("starting compression", e))?
            .compress(content)
            .unwrap_or_else(|| (Codec::Raw, content.to_vec()));
        let header = FileHeader {
            name: name.to_string(),
            codec,
            raw_len: content.len() as u64,
            content_id,
            attrs: attrs.clone(),
        };
        let sealed_header = self.crypto.seal(&encode_header(&header));
        let sealed_content = self.crypto.seal(&packed);
        let mut stored = Vec::with_capacity(4 + sealed_header.len() + sealed_content.len());
        stored.extend_from_slice(&(sealed_header.len() as u32).to_le_bytes());
        stored.extend_from_slice(&sealed_header);
        stored.extend_from_slice(&sealed_content);
        match self.storage.put(&path, Bytes::from(stored), PutMode::Create) {
            Ok(()) => Ok(PutOutcome::Stored),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let existing = self.file_header(name)?.ok_or_else(|| {
                    RepoError::Invalid(format!("{path} exists and then does not; try again"))
                })?;
                if existing.content_id == content_id && existing.raw_len == content.len() as u64 {
                    Ok(PutOutcome::AlreadyStored)
                } else {
                    Err(RepoError::Conflict(format!(
                        "{path} is already stored with different content ({} bytes, this one {} bytes); it was not replaced",
                        existing.raw_len,
                        content.len()
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The header of a named file, reading only its first bytes; `None` if there is no such file.
    pub fn file_header(&self, name: &str) -> Result<Option<FileHeader>> {
        let path = path_of(name)?;
        let len = match self.storage.get_range(&path, 0..4) {
            Ok(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let sealed = self.storage.get_range(&path, 4..4 + len)?;
        self.open_header(&path, name, &sealed).map(Some)
    }

    /// A named file's header and content, checked against its name and content id; `None` if
    /// there is no such file.
    pub fn get_file(&self, name: &str) -> Result<Option<(FileHeader, Vec<u8>)>> {
        let path = path_of(name)?;
        let stored = match self.storage.get(&path) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let damaged = |reason: String| RepoError::damaged("file", path.clone(), reason);
        let len = stored
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| damaged("shorter than its header length".into()))?;
        let sealed_header =
            stored.get(4..4 + len).ok_or_else(|| damaged(format!("header length {len} is past the end")))?;
        let header = self.open_header(&path, name, sealed_header)?;
        let packed = self.crypto.open(&stored[4 + len..]).map_err(|e| damaged(format!("content: {e}")))?;
        let content = decompress(header.codec, &packed, header.raw_len as usize).map_err(damaged)?;
        if self.crypto.chunk_id(&content) != header.content_id {
            return Err(damaged("content does not match its id (hash mismatch)".into()));
        }
        Ok(Some((header, content)))
    }

    /// Names of the files under `prefix` (a name prefix, e.g. `wal/main/`), sorted.
    pub fn list_files(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for meta in self.storage.list(&format!("{PREFIX}{prefix}")) {
            let meta = meta?;
            if let Some(name) = meta.path.strip_prefix(PREFIX).filter(|n| is_valid_name(n)) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn delete_file(&self, name: &str) -> Result<()> {
        Ok(self.storage.delete(&path_of(name)?)?)
    }

    fn open_header(&self, path: &str, name: &str, sealed: &[u8]) -> Result<FileHeader> {
        let damaged = |reason: String| RepoError::damaged("file", path.to_string(), reason);
        let plain = self.crypto.open(sealed).map_err(|e| damaged(format!("header: {e}")))?;
        let header = decode_header(&plain).map_err(damaged)?;
        if header.name != name {
            return Err(damaged(format!("holds the file '{}' (moved or swapped?)", header.name)));
        }
        Ok(header)
    }
}

fn encode_header(h: &FileHeader) -> Vec<u8> {
    let attrs = serde_json::to_vec(&h.attrs).unwrap_or_default();
    let mut out = Vec::with_capacity(FIXED_LEN + h.name.len() + attrs.len());
    out.extend_from_slice(&[TYPE_FILE, VERSION, h.codec as u8]);
    out.extend_from_slice(&h.raw_len.to_le_bytes());
    out.extend_from_slice(&h.content_id.0);
    out.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
    out.extend_from_slice(h.name.as_bytes());
    out.extend_from_slice(&attrs);
    out
}

fn decode_header(plain: &[u8]) -> std::result::Result<FileHeader, String> {
    if plain.len() < FIXED_LEN || plain[0] != TYPE_FILE {
        return Err("not a named file".into());
    }
    if plain[1] != VERSION {
        return Err(format!("unknown file version {}", plain[1]));
    }
    let codec = Codec::from_byte(plain[2]).ok_or_else(|| format!("unknown codec {}", plain[2]))?;
    let raw_len = u64::from_le_bytes(plain[3..11].try_into().unwrap_or_default());
    let content_id = Id(plain[11..43].try_into().unwrap_or_default());
    let name_len = u16::from_le_bytes([plain[43], plain[44]]) as usize;
    let name = plain
        .get(FIXED_LEN..FIXED_LEN + name_len)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or("name is cut short or not UTF-8")?
        .to_string();
    let attrs = serde_json::from_slice(&plain[FIXED_LEN + name_len..]).map_err(|e| format!("attrs: {e}"))?;
    Ok(FileHeader { name, codec, raw_len, content_id, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("wal/main/000000010000000000000001"));
        assert!(is_valid_name("wal/main/00000002.history"));
        for bad in ["", "/a", "a/", "a//b", "../x", "a/.tmp", "a b", "ä"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn header_round_trip() {
        let h = FileHeader {
            name: "wal/x/1".into(),
            codec: Codec::Zstd,
            raw_len: 16 << 20,
            content_id: Id([7; 32]),
            attrs: serde_json::json!({"a": 1}),
        };
        assert_eq!(decode_header(&encode_header(&h)).unwrap(), h);
        assert!(decode_header(&encode_header(&h)[..20]).is_err());
    }
}

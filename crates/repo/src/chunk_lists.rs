//! Chunk lists kept out of memory: a backup of terabytes names millions of chunks (32 bytes
//! each), too many to hold while its files are compared or restored.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::manifest::FileEntry;

/// Chunk lists in an unnamed temporary file (gone when the process ends, however it ends).
#[derive(Debug)]
pub struct ChunkLists {
    file: File,
    len: u64,
}

/// Where one list is in its [`ChunkLists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRef {
    at: u64,
    count: usize,
}

impl ListRef {
    /// Chunks in the list.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl ChunkLists {
    pub fn new() -> Result<ChunkLists> {
        Ok(ChunkLists { file: tempfile::tempfile().map_err(error)?, len: 0 })
    }

    pub fn push(&mut self, chunks: &[ChunkId]) -> Result<ListRef> {
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.0).collect();
        self.file.write_all_at(&bytes, self.len).map_err(error)?;
        let list = ListRef { at: self.len, count: chunks.len() };
        self.len += bytes.len() as u64;
        Ok(list)
    }

    /// `entry` (kept without its chunks) with its chunk list `list` back.
    pub fn filled(&self, entry: &FileEntry, list: ListRef) -> Result<FileEntry> {
        Ok(FileEntry { chunks: self.get(list)?, ..entry.clone() })
    }

    pub fn get(&self, list: ListRef) -> Result<Vec<ChunkId>> {
        let mut bytes = vec![0u8; 32 * list.count];
        self.file.read_exact_at(&mut bytes, list.at).map_err(error)?;
        Ok(bytes
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                Id(id)
            })
            .collect())
    }
}

fn error(e: std::io::Error) -> RepoError {
    RepoError::io("keeping chunk lists in a temporary file (set TMPDIR to a roomier place)", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_come_back_as_pushed() {
        let mut lists = ChunkLists::new().unwrap();
        let a: Vec<ChunkId> = (0..1000u32).map(|n| Id::of_object(&n.to_le_bytes())).collect();
        let first = lists.push(&a).unwrap();
        let empty = lists.push(&[]).unwrap();
        let second = lists.push(&a[10..20]).unwrap();
        assert_eq!(lists.get(second).unwrap(), &a[10..20]);
        assert_eq!(lists.get(first).unwrap(), a);
        assert!(lists.get(empty).unwrap().is_empty() && empty.is_empty());
    }
}

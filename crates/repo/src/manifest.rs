//! Manifests: one per backup, typed and versioned, holding the caller's metadata and the
//! chunk list of its file-entry stream (one JSON line per file, stored like any data so that
//! unchanged lists deduplicate between backups).

use serde::{Deserialize, Serialize};

use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::layout::{self, Kind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// What this manifest records, e.g. `backup`; readers skip kinds they do not know.
    pub kind: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
    /// The caller's own metadata (the engine's backup record).
    pub meta: serde_json::Value,
    /// The chunks of the entry stream, in order.
    pub tree: Vec<ChunkId>,
    /// Number of entries and total bytes of their content.
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or symlink of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The caller's per-file metadata.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

impl FileEntry {
    /// A regular file with its content's chunks.
    pub fn file(
        path: impl Into<String>,
        mode: u32,
        mtime_ns: i64,
        size: u64,
        chunks: Vec<ChunkId>,
    ) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode,
            size,
            mtime_ns,
            chunks,
            target: None,
            meta: serde_json::Value::Null,
        }
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Splits a stream of entry-stream chunks back into entries.
#[derive(Debug, Default)]
pub struct EntryParser {
    partial: Vec<u8>,
}

impl EntryParser {
    pub fn push(&mut self, manifest: &Id, chunk: &[u8], out: &mut Vec<FileEntry>) -> Result<()> {
        self.partial.extend_from_slice(chunk);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        for line in self.partial[..last_newline].split(|&b| b == b'\n') {
            out.push(parse_line(manifest, line)?);
        }
        self.partial.drain(..=last_newline);
        Ok(())
    }

    pub fn finish(self, manifest: &Id) -> Result<()> {
        if self.partial.is_empty() {
            Ok(())
        } else {
            Err(damaged(manifest, "entry stream ends in the middle of an entry"))
        }
    }
}

fn parse_line(manifest: &Id, line: &[u8]) -> Result<FileEntry> {
    let entry: FileEntry =
        serde_json::from_slice(line).map_err(|e| damaged(manifest, &format!("bad entry: {e}")))?;
    if !is_safe_path(&entry.path) {
        return Err(damaged(manifest, &format!("entry path {:?} is not a plain relative path", entry.path)));
    }
    Ok(entry)
}

/// A relative path of plain components: what a restore may safely join to its target
/// (no absolute paths, no `..`, nothing empty).
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn damaged(manifest: &Id, reason: &str) -> RepoError {
    RepoError::damaged("manifest", layout::path(Kind::Manifest, manifest), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_would_escape_the_target_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "", "./a", "a/"] {
            assert!(!is_safe_path(bad), "{bad:?}");
            let line = format!(
                "{{\"path\":{},\"type\":\"file\",\"mode\":384,\"size\":0,\"mtime_ns\":0}}\n",
                serde_json::json!(bad)
            );
            let mut parser = EntryParser::default();
            assert!(parser.push(&Id([0; 32]), line.as_bytes(), &mut Vec::new()).is_err(), "{bad:?}");
        }
        assert!(is_safe_path("base/1/1259") && is_safe_path("pg_wal/.keep") && is_safe_path("..a"));
    }

    #[test]
    fn entries_survive_arbitrary_splits() {
        let entries: Vec<FileEntry> = (0..50)
            .map(|i| FileEntry {
                path: format!("base/1/{i}"),
                kind: EntryKind::File,
                mode: 0o600,
                size: i * 8192,
                mtime_ns: 1_700_000_000_000_000_000 + i as i64,
                chunks: vec![Id([i as u8; 32])],
                target: None,
                meta: serde_json::json!({"n": i}),
            })
            .collect();
        let stream: Vec<u8> = entries.iter().flat_map(|e| e.to_line()).collect();
        for piece in [1, 7, 100, stream.len()] {
            let mut parser = EntryParser::default();
            let mut out = Vec::new();
            for part in stream.chunks(piece) {
                parser.push(&Id([0; 32]), part, &mut out).unwrap();
            }
            parser.finish(&Id([0; 32])).unwrap();
            assert_eq!(out, entries);
        }
    }
}

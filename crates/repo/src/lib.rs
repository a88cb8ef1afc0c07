//! The cairn repository: content-addressed, compressed, encrypted chunks in packs, found
//! through index objects and tied together by manifests (see docs/format.md). This crate knows
//! nothing of PostgreSQL.

pub mod check;
pub mod chunk_lists;
pub mod chunker;
pub mod compression;
pub mod config;
pub mod crypto;
pub mod error;
pub mod files;
pub mod id;
pub mod index;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod manifest;
mod object;
pub mod pack;
pub mod prune;
mod repository;
mod write_files;
pub mod writer;

pub use check::{check, CheckOptions, CheckReport, Problem};
pub use chunk_lists::{ChunkLists, ListRef};
pub use chunker::{ChunkerKind, ChunkerParams};
pub use compression::Compression;
pub use config::Config;
pub use crypto::{Encryption, KdfParams};
pub use error::{RepoError, Result};
pub use files::{FileHeader, PutOutcome};
pub use id::{ChunkId, Id};
pub use manifest::{EntryKind, FileEntry, Manifest};
pub use prune::{prune, PruneOptions, PruneSummary};
pub use repository::{parallel_map, InitOptions, KeyInfo, Repository, MAX_READERS};
pub use writer::{FileStore, WriteStats, Writer, WriterOptions};

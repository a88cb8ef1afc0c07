//! The repository's `config` object: format version, id, and the parameters every writer uses.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::compression::Compression;
use crate::crypto::{Crypto, Encryption, MasterKey};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::layout;

/// The format version this code writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this code reads and writes into: version 1 differs only in that
/// blobs are sealed without their chunk id as associated data.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub id: Id,
    pub created: chrono::DateTime<chrono::Utc>,
    pub encryption: Encryption,
    pub compression: Compression,
    pub chunker: ChunkerParams,
    /// Packs are closed once they hold at least this many bytes.
    pub pack_size: u32,
}

pub const DEFAULT_PACK_SIZE: u32 = 16 << 20;

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config> {
        let damaged = |reason: String| RepoError::damaged("config", layout::CONFIG, reason);
        let config: Config = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version) {
            return Err(RepoError::Invalid(format!(
                "repository format version {} is not supported by this cairn (it reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade cairn",
                config.version
            )));
        }
        config.validate().map_err(damaged)?;
        Ok(config)
    }

    /// Whether blobs are sealed with their chunk id as associated data (version 2 on).
    fn binds_blobs(&self) -> bool {
        self.version >= 2
    }

    /// The cipher of this repository under `master`, sealing blobs as its version does.
    pub fn crypto(&self, master: &MasterKey) -> Crypto {
        Crypto::new(self.encryption, master).binding_blobs(self.binds_blobs())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.chunker.validate()?;
        if !(1 << 20..=1 << 30).contains(&self.pack_size) {
            return Err(format!("pack size {} must be between 1 MiB and 1 GiB", self.pack_size));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

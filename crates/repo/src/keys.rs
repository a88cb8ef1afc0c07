//! Key objects: the master key wrapped by a passphrase-derived key (Argon2id). Several key
//! objects may wrap the same master key, so passphrases can be added and removed without
//! touching data.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::{derive_kek, Crypto, Encryption, KdfParams, MasterKey};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::layout::{self, Kind};

/// Upper bounds on Argon2id parameters a key object may ask for (docs/format.md §11).
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;
pub const MAX_KDF_ITERATIONS: u32 = 64;
pub const MAX_KDF_PARALLELISM: u32 = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub user: String,
    pub kdf: String,
    #[serde(flatten)]
    pub kdf_params: KdfParams,
    pub salt: String,
    pub cipher: Encryption,
    /// base64 of the sealed [`MasterPayload`].
    pub data: String,
}

/// What a key object's `data` holds once opened.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterPayload {
    repository_id: Id,
    data_key: String,
    id_key: String,
}

impl KeyFile {
    /// Wraps `master` with `password`; returns the key object's id and bytes.
    pub fn create(
        repository_id: Id,
        cipher: Encryption,
        master: &MasterKey,
        password: &[u8],
        kdf_params: KdfParams,
    ) -> Result<(Id, Vec<u8>)> {
        let salt: [u8; 16] = rand::random();
        let kek = derive_kek(password, &salt, kdf_params).map_err(RepoError::Invalid)?;
        let payload = MasterPayload {
            repository_id,
            data_key: B64.encode(master.data_key),
            id_key: B64.encode(master.id_key),
        };
        let plain = serde_json::to_vec(&payload).unwrap_or_default();
        let sealed = Crypto::wrapping(cipher, &kek).seal(&plain);
        let file = KeyFile {
            version: 1,
            created: chrono::Utc::now(),
            host: crate::lock::hostname(),
            user: crate::lock::username(),
            kdf: "argon2id".into(),
            kdf_params,
            salt: B64.encode(salt),
            cipher,
            data: B64.encode(sealed),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        Ok((Id::of_object(&bytes), bytes))
    }

    pub fn parse(id: &Id, bytes: &[u8]) -> Result<KeyFile> {
        let path = layout::path(Kind::Key, id);
        let damaged = |reason: String| RepoError::damaged("key", path.clone(), reason);
        if Id::of_object(bytes) != *id {
            return Err(damaged("content does not match its name (hash mismatch)".into()));
        }
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if file.version != 1 || file.kdf != "argon2id" {
            return Err(damaged(format!("unsupported key version {} / kdf {}", file.version, file.kdf)));
        }
        // Anyone who can add objects could plant a key that makes every opener run out of memory.
        let p = file.kdf_params;
        if p.memory_kib > MAX_KDF_MEMORY_KIB
            || p.iterations > MAX_KDF_ITERATIONS
            || p.parallelism > MAX_KDF_PARALLELISM
        {
            return Err(damaged(format!(
                "key derivation parameters out of bounds (memory {} KiB, iterations {}, parallelism {})",
                p.memory_kib, p.iterations, p.parallelism
            )));
        }
        Ok(file)
    }

    /// The master key, or `None` if `password` is not this key's passphrase.
    pub fn unwrap_master(&self, id: &Id, password: &[u8], repository_id: &Id) -> Result<Option<MasterKey>> {
        let path = layout::path(Kind::Key, id);
        let damaged = |reason: String| RepoError::damaged("key", path.clone(), reason);
        let salt = B64.decode(&self.salt).map_err(|e| damaged(e.to_string()))?;
        let sealed = B64.decode(&self.data).map_err(|e| damaged(e.to_string()))?;
        let kek = derive_kek(password, &salt, self.kdf_params).map_err(damaged)?;
        let Ok(plain) = Crypto::wrapping(self.cipher, &kek).open(&sealed) else {
            return Ok(None);
        };
        let payload: MasterPayload = serde_json::from_slice(&plain).map_err(|e| damaged(e.to_string()))?;
        if payload.repository_id != *repository_id {
            return Err(damaged("the key belongs to another repository".into()));
        }
        let key32 = |s: &str| -> Result<[u8; 32]> {
            B64.decode(s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| damaged("master key has the wrong length".into()))
        };
        Ok(Some(MasterKey { data_key: key32(&payload.data_key)?, id_key: key32(&payload.id_key)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };

    #[test]
    fn wraps_and_unwraps_only_with_the_right_password() {
        let repo = Id::random();
        let master = MasterKey::random();
        let (id, bytes) = KeyFile::create(repo, Encryption::Aes256Gcm, &master, b"secret", FAST).unwrap();
        let file = KeyFile::parse(&id, &bytes).unwrap();
        assert_eq!(file.unwrap_master(&id, b"secret", &repo).unwrap(), Some(master));
        assert_eq!(file.unwrap_master(&id, b"Secret", &repo).unwrap(), None);
        assert!(file.unwrap_master(&id, b"secret", &Id::random()).is_err());
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(KeyFile::parse(&id, &flipped).is_err());
    }

    #[test]
    fn a_key_demanding_absurd_memory_is_refused_before_derivation() {
        let (id, bytes) =
            KeyFile::create(Id::random(), Encryption::Aes256Gcm, &MasterKey::random(), b"pw", FAST).unwrap();
        let text =
            String::from_utf8(bytes).unwrap().replace("\"memory_kib\": 1024", "\"memory_kib\": 4294967295");
        let id2 = Id::of_object(text.as_bytes());
        assert_ne!(id, id2);
        let err = KeyFile::parse(&id2, text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("out of bounds"), "{err}");
    }
}

//! Authenticated encryption of everything the repository stores, chunk-id hashing, and the
//! Argon2id key derivation that wraps the master key.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use serde::{Deserialize, Serialize};

use crate::id::ChunkId;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// The repository's encryption mode, recorded in its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encryption {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl Encryption {
    pub fn parse(s: &str) -> Result<Encryption, String> {
        match s {
            "none" => Ok(Encryption::None),
            "aes-256-gcm" | "aes" => Ok(Encryption::Aes256Gcm),
            "chacha20-poly1305" | "chacha20" => Ok(Encryption::ChaCha20Poly1305),
            other => Err(format!("unknown encryption '{other}': use aes-256-gcm, chacha20-poly1305 or none")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::Aes256Gcm => "aes-256-gcm",
            Encryption::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

/// The secrets of an encrypted repository: one key encrypts, the other keys chunk ids.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub data_key: [u8; 32],
    pub id_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn random() -> MasterKey {
        MasterKey { data_key: rand::random(), id_key: rand::random() }
    }
}

#[derive(Clone)]
enum Aead {
    Aes(Box<aes_gcm::Aes256Gcm>),
    ChaCha(Box<chacha20poly1305::ChaCha20Poly1305>),
}

/// Seals and opens blobs, and names chunks. With `Encryption::None` sealing is the identity
/// and chunk ids are plain BLAKE3.
#[derive(Clone)]
pub struct Crypto {
    aead: Option<Aead>,
    id_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crypto(encrypted: {})", self.aead.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("authentication failed: the data was altered or the key is wrong")]
pub struct OpenError;

impl Crypto {
    pub fn none() -> Crypto {
        Crypto { aead: None, id_key: None }
    }

    pub fn new(encryption: Encryption, key: &MasterKey) -> Crypto {
        Crypto { aead: aead(encryption, &key.data_key), id_key: Some(key.id_key) }
    }

    /// A cipher keyed directly (used to wrap the master key with the passphrase-derived key).
    pub fn wrapping(encryption: Encryption, kek: &[u8; 32]) -> Crypto {
        Crypto { aead: aead(encryption, kek), id_key: None }
    }

    pub fn is_encrypted(&self) -> bool {
        self.aead.is_some()
    }

    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        match &self.id_key {
            Some(key) => crate::id::Id(*blake3::keyed_hash(key, data).as_bytes()),
            None => crate::id::Id(*blake3::hash(data).as_bytes()),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` with a fresh random nonce; the plaintext itself when not encrypted.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let Some(aead) = &self.aead else {
            return plain.to_vec();
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let body = &mut out[NONCE_LEN..];
        // Encryption of an in-memory buffer below 64 GiB cannot fail.
        let tag = match aead {
            Aead::Aes(c) => c.encrypt_in_place_detached((&nonce).into(), b"", body).map(|t| t.to_vec()),
            Aead::ChaCha(c) => c.encrypt_in_place_detached((&nonce).into(), b"", body).map(|t| t.to_vec()),
        }
        .unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// Reverses [`seal`](Self::seal), failing if a single bit was changed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let Some(aead) = &self.aead else {
            return Ok(sealed.to_vec());
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = body.to_vec();
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| OpenError)?;
        match aead {
            Aead::Aes(c) => c.decrypt_in_place_detached(nonce.into(), b"", &mut plain, tag.into()),
            Aead::ChaCha(c) => c.decrypt_in_place_detached(nonce.into(), b"", &mut plain, tag.into()),
        }
        .map_err(|_| OpenError)?;
        Ok(plain)
    }

    /// Bytes that sealing adds to a plaintext.
    pub fn overhead(&self) -> usize {
        if self.aead.is_some() {
            NONCE_LEN + TAG_LEN
        } else {
            0
        }
    }
}

fn aead(encryption: Encryption, key: &[u8; 32]) -> Option<Aead> {
    match encryption {
        Encryption::None => None,
        Encryption::Aes256Gcm => Some(Aead::Aes(Box::new(aes_gcm::Aes256Gcm::new(key.into())))),
        Encryption::ChaCha20Poly1305 => {
            Some(Aead::ChaCha(Box::new(chacha20poly1305::ChaCha20Poly1305::new(key.into()))))
        }
    }
}

/// Argon2id parameters, stored in each key object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: about a quarter of a second here, costly for a guesser.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// 8 MiB, 1 pass: a few milliseconds, for keys whose password is long and random (a
    /// machine's, such as the one `archive_command` uses), where guessing is hopeless anyway.
    pub const FAST: KdfParams = KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 };

    /// Relative cost of one derivation.
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }
}

/// The key-encryption key: Argon2id(passphrase, salt) -> 32 bytes.
pub fn derive_kek(password: &[u8], salt: &[u8], params: KdfParams) -> Result<[u8; 32], String> {
    let p = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| format!("invalid key derivation parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    argon.hash_password_into(password, salt, &mut out).map_err(|e| format!("key derivation failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn both() -> [Crypto; 2] {
        let key = MasterKey::random();
        [Crypto::new(Encryption::Aes256Gcm, &key), Crypto::new(Encryption::ChaCha20Poly1305, &key)]
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            for c in both() {
                let sealed = c.seal(&data);
                prop_assert_eq!(sealed.len(), data.len() + c.overhead());
                prop_assert_eq!(c.open(&sealed).unwrap(), data.clone());
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(data in proptest::collection::vec(any::<u8>(), 1..500), at in any::<usize>(), bit in 0..8u8) {
            for c in both() {
                let mut sealed = c.seal(&data);
                let at = at % sealed.len();
                sealed[at] ^= 1 << bit;
                prop_assert!(c.open(&sealed).is_err());
            }
        }
    }

    #[test]
    fn nonces_differ_and_ids_are_keyed() {
        let key = MasterKey::random();
        let c = Crypto::new(Encryption::Aes256Gcm, &key);
        assert_ne!(c.seal(b"same"), c.seal(b"same"));
        let other = Crypto::new(Encryption::Aes256Gcm, &MasterKey::random());
        assert_ne!(c.chunk_id(b"same"), other.chunk_id(b"same"));
        assert_eq!(Crypto::none().chunk_id(b"x").0, *blake3::hash(b"x").as_bytes());
        assert_eq!(Crypto::none().seal(b"x"), b"x");
    }

    #[test]
    fn kdf_is_deterministic_per_salt() {
        let p = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let a = derive_kek(b"pw", b"saltsaltsaltsalt", p).unwrap();
        assert_eq!(a, derive_kek(b"pw", b"saltsaltsaltsalt", p).unwrap());
        assert_ne!(a, derive_kek(b"pw", b"saltsaltsaltsal2", p).unwrap());
    }
}

//! Authenticated encryption of everything the repository stores, chunk-id hashing, and the
//! Argon2id key derivation that wraps the master key.

use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
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

/// Seals and opens blobs, and names chunks. With `Encryption::None` sealing is the identity
/// and chunk ids are plain BLAKE3.
#[derive(Clone)]
pub struct Crypto {
    /// aws-lc's AEADs (the TLS stack's, already linked): AES-256-GCM opens at about 12 GB/s
    /// per core here, where the `aes-gcm` crate (GHASH one block at a time) managed 1.1 GB/s
    /// and took a fifth of a restore's CPU time. The format is the same.
    aead: Option<Arc<LessSafeKey>>,
    id_key: Option<[u8; 32]>,
    /// Blobs carry their chunk id as associated data (format version 2).
    binds_blobs: bool,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crypto(encrypted: {}, binds blobs: {})", self.aead.is_some(), self.binds_blobs)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("authentication failed: the data was altered or the key is wrong")]
pub struct OpenError;

impl Crypto {
    pub fn none() -> Crypto {
        Crypto { aead: None, id_key: None, binds_blobs: false }
    }

    pub fn new(encryption: Encryption, key: &MasterKey) -> Crypto {
        Crypto { aead: aead(encryption, &key.data_key), id_key: Some(key.id_key), binds_blobs: false }
    }

    /// A cipher keyed directly (used to wrap the master key with the passphrase-derived key).
    pub fn wrapping(encryption: Encryption, kek: &[u8; 32]) -> Crypto {
        Crypto { aead: aead(encryption, kek), id_key: None, binds_blobs: false }
    }

    /// This cipher sealing and opening blobs with their chunk id as associated data, as format
    /// version 2 does (`bind`); no effect without encryption.
    pub fn binding_blobs(mut self, bind: bool) -> Crypto {
        self.binds_blobs = bind && self.aead.is_some();
        self
    }

    /// Whether opening a blob proves that it is the chunk of its id: it was sealed with the id
    /// as associated data, so a blob put in another chunk's place fails authentication, and a
    /// reader need not hash the content again.
    pub fn blobs_bound(&self) -> bool {
        self.binds_blobs
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
        self.seal_with(plain, &[])
    }

    /// Seals the (compressed) content of chunk `id` as a blob.
    pub fn seal_blob(&self, id: &ChunkId, content: &[u8]) -> Vec<u8> {
        self.seal_with(content, self.blob_aad(id))
    }

    /// Opens blob `id` into `content`, as [`open_into`](Self::open_into).
    pub fn open_blob_into(
        &self,
        id: &ChunkId,
        sealed: &[u8],
        content: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        self.open_with(sealed, self.blob_aad(id), content)
    }

    fn blob_aad<'a>(&self, id: &'a ChunkId) -> &'a [u8] {
        if self.binds_blobs {
            &id.0
        } else {
            &[]
        }
    }

    fn seal_with(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let Some(aead) = &self.aead else {
            return plain.to_vec();
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        // Encryption of an in-memory buffer below 64 GiB cannot fail.
        let tag = aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map(|t| t.as_ref().to_vec())
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// Reverses [`seal`](Self::seal), failing if a single bit was changed.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut plain = Vec::new();
        self.open_into(sealed, &mut plain)?;
        Ok(plain)
    }

    /// [`open`](Self::open) into `plain`, reusing its allocation (a restore opens a blob per
    /// chunk). On failure `plain` is left empty: unauthenticated bytes are never handed on.
    pub fn open_into(&self, sealed: &[u8], plain: &mut Vec<u8>) -> Result<(), OpenError> {
        self.open_with(sealed, &[], plain)
    }

    fn open_with(&self, sealed: &[u8], aad: &[u8], plain: &mut Vec<u8>) -> Result<(), OpenError> {
        let Some(aead) = &self.aead else {
            plain.clear();
            plain.extend_from_slice(sealed);
            return Ok(());
        };
        let opened = match sealed.len().checked_sub(NONCE_LEN + TAG_LEN) {
            None => Err(OpenError),
            Some(len) => {
                let (nonce, rest) = sealed.split_at(NONCE_LEN);
                let (body, tag) = rest.split_at(len);
                // Every byte is overwritten: only a larger buffer than before is zeroed first.
                plain.resize(len, 0);
                Nonce::try_assume_unique_for_key(nonce)
                    .and_then(|nonce| aead.open_separate_gather(nonce, Aad::from(aad), body, tag, plain))
                    .map_err(|_| OpenError)
            }
        };
        if opened.is_err() {
            plain.clear();
        }
        opened
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

fn aead(encryption: Encryption, key: &[u8; 32]) -> Option<Arc<LessSafeKey>> {
    let algorithm = match encryption {
        Encryption::None => return None,
        Encryption::Aes256Gcm => &AES_256_GCM,
        Encryption::ChaCha20Poly1305 => &CHACHA20_POLY1305,
    };
    // A 32-byte key is the right length for both algorithms.
    let key = UnboundKey::new(algorithm, key).expect("a 32-byte AEAD key");
    Some(Arc::new(LessSafeKey::new(key)))
}

/// Argon2id parameters, stored in each key object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended setting): costly for a
    /// guesser, who needs the whole 64 MiB for every guess, while the lanes are computed on
    /// up to 4 CPUs here.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 4 }
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

    /// The RustCrypto AEAD cairn used before: seals (`seal`) or opens `data` with `nonce`.
    fn rustcrypto(
        encryption: Encryption,
        key: &[u8; 32],
        nonce: &[u8],
        data: &[u8],
        seal: bool,
    ) -> Option<Vec<u8>> {
        use aes_gcm::aead::{Aead, KeyInit};
        let nonce = nonce.into();
        match (encryption, seal) {
            (Encryption::Aes256Gcm, true) => aes_gcm::Aes256Gcm::new(key.into()).encrypt(nonce, data).ok(),
            (Encryption::Aes256Gcm, false) => aes_gcm::Aes256Gcm::new(key.into()).decrypt(nonce, data).ok(),
            (_, true) => chacha20poly1305::ChaCha20Poly1305::new(key.into()).encrypt(nonce, data).ok(),
            (_, false) => chacha20poly1305::ChaCha20Poly1305::new(key.into()).decrypt(nonce, data).ok(),
        }
    }

    /// The format did not change with the implementation: blobs sealed before open, and the
    /// old implementation opens what is sealed now.
    #[test]
    fn same_format_as_the_rustcrypto_aeads() {
        let key = MasterKey::random();
        let plain = b"a chunk of a relation file".repeat(100);
        for encryption in [Encryption::Aes256Gcm, Encryption::ChaCha20Poly1305] {
            let ours = Crypto::new(encryption, &key);
            let nonce = [9u8; NONCE_LEN];
            let theirs = rustcrypto(encryption, &key.data_key, &nonce, &plain, true).unwrap_or_default();
            assert_eq!(ours.open(&[&nonce[..], &theirs].concat()).ok(), Some(plain.clone()));
            let sealed = ours.seal(&plain);
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            assert_eq!(rustcrypto(encryption, &key.data_key, nonce, body, false), Some(plain.clone()));
        }
    }

    #[test]
    fn open_into_leaves_nothing_behind_a_failure() {
        for c in both() {
            let mut plain = vec![1u8; 10];
            let mut sealed = c.seal(b"secret enough");
            c.open_into(&sealed, &mut plain).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(plain, b"secret enough");
            sealed[NONCE_LEN] ^= 1;
            assert!(c.open_into(&sealed, &mut plain).is_err());
            assert!(plain.is_empty());
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
    fn a_bound_blob_opens_only_as_its_own_chunk() {
        for c in both() {
            let bound = c.clone().binding_blobs(true);
            let (a, b) = (bound.chunk_id(b"a"), bound.chunk_id(b"b"));
            let sealed = bound.seal_blob(&a, b"a");
            let mut plain = Vec::new();
            assert!(bound.open_blob_into(&a, &sealed, &mut plain).is_ok() && plain == b"a");
            assert!(bound.open_blob_into(&b, &sealed, &mut plain).is_err(), "opened as another chunk");
            // Format version 1 seals without the id: neither opens as the other.
            assert!(c.open_blob_into(&a, &sealed, &mut plain).is_err());
            assert!(bound.open_blob_into(&a, &c.seal_blob(&a, b"a"), &mut plain).is_err());
            assert!(bound.blobs_bound() && !c.blobs_bound());
        }
        assert!(!Crypto::none().binding_blobs(true).blobs_bound(), "nothing binds without encryption");
    }

    #[test]
    fn kdf_is_deterministic_per_salt() {
        let p = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let a = derive_kek(b"pw", b"saltsaltsaltsalt", p).unwrap();
        assert_eq!(a, derive_kek(b"pw", b"saltsaltsaltsalt", p).unwrap());
        assert_ne!(a, derive_kek(b"pw", b"saltsaltsaltsal2", p).unwrap());
    }
}

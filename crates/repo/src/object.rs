//! Typed, versioned, compressed and sealed objects (index and manifest objects), named by the
//! BLAKE3 hash of their stored bytes.

use crate::crypto::Crypto;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::layout::{self, Kind};

/// The plaintext header: type, format version, codec of the body.
const HEADER_LEN: usize = 3;
const CODEC_ZSTD: u8 = 1;
/// Index objects and manifests are at version 1 in format versions 1 and 2.
pub const VERSION: u8 = 1;

fn type_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Index => 1,
        Kind::Manifest => 2,
        _ => 0,
    }
}

/// Builds the stored bytes of an object and its id.
pub fn encode(crypto: &Crypto, kind: Kind, body: &[u8]) -> Result<(Id, Vec<u8>)> {
    let mut plain = vec![type_byte(kind), VERSION, CODEC_ZSTD];
    plain.extend(zstd::bulk::compress(body, 3).map_err(|e| RepoError::io("compressing object", e))?);
    let stored = crypto.seal(&plain);
    Ok((Id::of_object(&stored), stored))
}

/// Checks an object's name against its bytes, opens it, and returns its body.
pub fn decode(crypto: &Crypto, kind: Kind, id: &Id, stored: &[u8]) -> Result<Vec<u8>> {
    let path = layout::path(kind, id);
    let damaged = |reason: String| RepoError::damaged(kind.name(), path.clone(), reason);
    if Id::of_object(stored) != *id {
        return Err(damaged("content does not match its name (hash mismatch)".into()));
    }
    let plain = crypto.open(stored).map_err(|e| damaged(e.to_string()))?;
    if plain.len() < HEADER_LEN || plain[0] != type_byte(kind) {
        return Err(damaged("not an object of this type".into()));
    }
    if plain[1] != VERSION {
        return Err(damaged(format!("unknown object version {}", plain[1])));
    }
    if plain[2] != CODEC_ZSTD {
        return Err(damaged(format!("unknown codec {}", plain[2])));
    }
    let body = zstd::stream::decode_all(&plain[HEADER_LEN..]).map_err(|e| damaged(format!("zstd: {e}")))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Encryption, MasterKey};

    #[test]
    fn round_trip_and_tamper_detection() {
        let crypto = Crypto::new(Encryption::ChaCha20Poly1305, &MasterKey::random());
        let (id, mut stored) = encode(&crypto, Kind::Manifest, b"{\"a\":1}").unwrap();
        assert_eq!(decode(&crypto, Kind::Manifest, &id, &stored).unwrap(), b"{\"a\":1}".to_vec());
        assert!(decode(&crypto, Kind::Index, &id, &stored).is_err());
        stored[5] ^= 1;
        let err = decode(&crypto, Kind::Manifest, &id, &stored).unwrap_err();
        assert!(err.to_string().contains("hash mismatch"), "{err}");
    }
}

//! Ids of chunks and stored objects: 32-byte BLAKE3 hashes, shown as 64 lower-case hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte id. Chunk ids are keyed BLAKE3 of the chunk's plaintext (plain BLAKE3 when the
/// repository is not encrypted); object ids are plain BLAKE3 of the object's stored bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

/// The id of a chunk of data (a blob in a pack).
pub type ChunkId = Id;

impl Id {
    /// Plain BLAKE3 of `data`: the name of a stored object.
    pub fn of_object(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    pub fn random() -> Id {
        Id(rand::random())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first eight hex digits, enough to tell ids apart in messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an id (64 hex digits)")]
pub struct ParseIdError(String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(bytes))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::of_object(b"cairn");
        assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!("xyz".parse::<Id>().is_err());
    }
}

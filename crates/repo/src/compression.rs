//! Blob compression: zstd (with level), lz4, or none; a blob that does not shrink is stored raw.

use serde::{Deserialize, Serialize};

/// The compression a repository applies to new blobs by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd { level: i32 },
    Lz4,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd { level: 1 }
    }
}

/// How one stored blob is compressed: the byte recorded in pack headers and index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
    Lz4 = 2,
}

impl Codec {
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
            _ => None,
        }
    }
}

impl Compression {
    /// Parses `zstd`, `zstd:LEVEL`, `lz4` or `none`.
    pub fn parse(algorithm: &str, level: Option<i32>) -> Result<Compression, String> {
        match (algorithm, level) {
            ("zstd", level) => {
                let level = level.unwrap_or(1);
                if !(-7..=22).contains(&level) {
                    return Err(format!("zstd level {level} is out of range (-7 to 22)"));
                }
                Ok(Compression::Zstd { level })
            }
            ("lz4", None) => Ok(Compression::Lz4),
            ("none", None) => Ok(Compression::None),
            ("lz4" | "none", Some(_)) => Err(format!("{algorithm} takes no compression level")),
            (other, _) => Err(format!("unknown compression '{other}': use zstd, lz4 or none")),
        }
    }
}

/// Reusable compression state of one worker thread (a zstd context is costly to build).
pub struct Compressor {
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compressor({:?})", self.compression)
    }
}

impl Compressor {
    pub fn new(compression: Compression) -> std::io::Result<Self> {
        let zstd = match compression {
            Compression::Zstd { level } => Some(zstd::bulk::Compressor::new(level)?),
            _ => None,
        };
        Ok(Compressor { compression, zstd })
    }

    /// Compresses `data`, or returns `None` when compression is off or does not shrink it.
    pub fn compress(&mut self, data: &[u8]) -> Option<(Codec, Vec<u8>)> {
        let out = match (&self.compression, &mut self.zstd) {
            (Compression::Zstd { .. }, Some(z)) => (Codec::Zstd, z.compress(data).ok()?),
            (Compression::Lz4, _) => (Codec::Lz4, lz4_flex::block::compress(data)),
            _ => return None,
        };
        (out.1.len() < data.len()).then_some(out)
    }
}

thread_local! {
    // A zstd context is costly to build; one per thread serves every blob it opens.
    static DECOMPRESSOR: std::cell::RefCell<std::io::Result<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new());
}

/// Restores a blob to `raw_len` bytes.
pub fn decompress(codec: Codec, data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0; raw_len];
    decompress_to(codec, data, &mut out)?;
    Ok(out)
}

/// [`decompress`] straight into `out`, which is as long as the chunk (a restore opens chunks
/// into the buffer it writes from).
pub fn decompress_to(codec: Codec, data: &[u8], out: &mut [u8]) -> Result<(), String> {
    let len = match codec {
        Codec::Raw if data.len() == out.len() => {
            out.copy_from_slice(data);
            data.len()
        }
        Codec::Raw => data.len(),
        Codec::Zstd => DECOMPRESSOR.with(|d| match &mut *d.borrow_mut() {
            Ok(d) => d.decompress_to_buffer(data, out).map_err(|e| format!("zstd: {e}")),
            Err(e) => Err(format!("zstd: {e}")),
        })?,
        Codec::Lz4 => lz4_flex::block::decompress_into(data, out).map_err(|e| format!("lz4: {e}"))?,
    };
    if len != out.len() {
        return Err(format!("decompressed to {len} bytes, expected {}", out.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..20_000), which in 0..3u8) {
            let compression = [Compression::None, Compression::Zstd { level: 3 }, Compression::Lz4][which as usize];
            let mut c = Compressor::new(compression).unwrap();
            let (codec, stored) = c.compress(&data).unwrap_or((Codec::Raw, data.clone()));
            prop_assert_eq!(&decompress(codec, &stored, data.len()).unwrap(), &data);
            let mut out = vec![0; data.len()];
            decompress_to(codec, &stored, &mut out).unwrap();
            prop_assert_eq!(&out, &data);
            if !data.is_empty() {
                prop_assert!(decompress_to(codec, &stored, &mut out[1..]).is_err(), "a wrong length is refused");
            }
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let data: Vec<u8> = (0..4096).map(|_| rand::random()).collect();
        assert!(Compressor::new(Compression::Zstd { level: 1 }).unwrap().compress(&data).is_none());
        let zeros = vec![0u8; 4096];
        let (codec, out) = Compressor::new(Compression::Lz4).unwrap().compress(&zeros).unwrap();
        assert_eq!(codec, Codec::Lz4);
        assert!(out.len() < 100);
    }

    #[test]
    fn parse_rejects_nonsense() {
        assert!(Compression::parse("gzip", None).is_err());
        assert!(Compression::parse("zstd", Some(40)).is_err());
        assert_eq!(Compression::parse("zstd", Some(9)).unwrap(), Compression::Zstd { level: 9 });
    }
}

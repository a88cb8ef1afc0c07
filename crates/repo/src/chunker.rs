//! Cutting a byte stream into chunks: fixed, page-aligned pieces for files that change in
//! place (relation files), content-defined pieces (FastCDC) for everything else.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

/// Which chunker a file goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkerKind {
    /// Fixed pieces of the repository's `fixed_size` (a multiple of 8 KiB pages).
    Fixed,
    /// Content-defined pieces (FastCDC 2020), so insertions shift only nearby boundaries.
    ContentDefined,
}

/// Chunker parameters, fixed when the repository is created (changing them would stop
/// new chunks from matching old ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub fixed_size: u32,
    pub cdc_min: u32,
    pub cdc_avg: u32,
    pub cdc_max: u32,
}

pub const PAGE_SIZE: u32 = 8192;
/// The largest chunk any chunker may produce (bounds every blob and every buffer).
pub const MAX_CHUNK: u32 = 16 << 20;

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { fixed_size: 128 << 10, cdc_min: 128 << 10, cdc_avg: 512 << 10, cdc_max: 2 << 20 }
    }
}

impl ChunkerParams {
    /// The largest chunk either chunker cuts.
    pub fn largest(&self) -> usize {
        self.fixed_size.max(self.cdc_max) as usize
    }

    pub fn validate(&self) -> Result<(), String> {
        let f = self.fixed_size;
        if f == 0 || !f.is_multiple_of(PAGE_SIZE) || f > MAX_CHUNK {
            return Err(format!("fixed chunk size {f} must be a multiple of {PAGE_SIZE} up to {MAX_CHUNK}"));
        }
        let (min, avg, max) = (self.cdc_min, self.cdc_avg, self.cdc_max);
        // FastCDC's own limits.
        let ok = (64..=1 << 20).contains(&min)
            && (256..=4 << 20).contains(&avg)
            && (1024..=MAX_CHUNK).contains(&max)
            && min <= avg
            && avg <= max;
        if !ok {
            return Err(format!(
                "content-defined chunk sizes min {min} avg {avg} max {max} are out of range"
            ));
        }
        Ok(())
    }
}

/// Reads `source` and calls `emit` with each chunk in order; returns the bytes read.
pub fn chunk_reader(
    source: &mut dyn Read,
    kind: ChunkerKind,
    params: &ChunkerParams,
    emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>,
) -> io::Result<u64> {
    match kind {
        ChunkerKind::Fixed => chunk_fixed(source, params.fixed_size as usize, emit),
        ChunkerKind::ContentDefined => {
            let mut cdc = CdcStream::new(*params);
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = read_full(source, &mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                cdc.push(&buf[..n], emit)?;
            }
            cdc.finish(emit)?;
            Ok(total)
        }
    }
}

fn chunk_fixed(
    source: &mut dyn Read,
    size: usize,
    emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let mut chunk = vec![0u8; size];
        let n = read_full(source, &mut chunk)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        chunk.truncate(n);
        emit(chunk)?;
    }
}

/// Fills `buf` unless the source ends first; returns the bytes read.
fn read_full(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Content-defined chunking over data that arrives in pieces. A cut point depends only on
/// the bytes since the previous cut, so holding back the last (possibly unfinished) chunk
/// until more data arrives gives the same chunks as cutting the whole stream at once.
#[derive(Debug)]
pub struct CdcStream {
    params: ChunkerParams,
    pending: Vec<u8>,
}

impl CdcStream {
    pub fn new(params: ChunkerParams) -> Self {
        CdcStream { params, pending: Vec::new() }
    }

    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        if self.pending.len() < 2 * self.params.cdc_max as usize {
            return Ok(());
        }
        let cuts = self.cuts();
        // Keep the last chunk: the end of the buffer may have forced its boundary.
        let keep_from = cuts.last().map_or(0, |&(start, _)| start);
        for &(start, len) in &cuts[..cuts.len().saturating_sub(1)] {
            emit(self.pending[start..start + len].to_vec())?;
        }
        self.pending.drain(..keep_from);
        Ok(())
    }

    pub fn finish(mut self, emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        for (start, len) in self.cuts() {
            emit(self.pending[start..start + len].to_vec())?;
        }
        self.pending.clear();
        Ok(())
    }

    fn cuts(&self) -> Vec<(usize, usize)> {
        let p = &self.params;
        fastcdc::v2020::FastCDC::new(&self.pending, p.cdc_min, p.cdc_avg, p.cdc_max)
            .map(|c| (c.offset, c.length))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams { fixed_size: 8192, cdc_min: 256, cdc_avg: 1024, cdc_max: 4096 }
    }

    fn chunks(data: &[u8], kind: ChunkerKind, params: &ChunkerParams) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        chunk_reader(&mut &data[..], kind, params, &mut |c| {
            out.push(c);
            Ok(())
        })
        .unwrap();
        out
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_the_input(len in 0usize..60_000, seed in any::<u64>(), cdc in any::<bool>()) {
            let data = pseudo_random(len, seed);
            let kind = if cdc { ChunkerKind::ContentDefined } else { ChunkerKind::Fixed };
            let parts = chunks(&data, kind, &small());
            prop_assert_eq!(parts.concat(), data);
            prop_assert!(parts.iter().all(|c| !c.is_empty() && c.len() <= 8192));
        }

        #[test]
        fn streaming_cdc_equals_whole_cdc(len in 0usize..60_000, seed in any::<u64>(), piece in 1usize..9000) {
            let data = pseudo_random(len, seed);
            let p = small();
            let whole: Vec<Vec<u8>> = fastcdc::v2020::FastCDC::new(&data, p.cdc_min, p.cdc_avg, p.cdc_max)
                .map(|c| data[c.offset..c.offset + c.length].to_vec())
                .collect();
            let mut streamed = Vec::new();
            let mut s = CdcStream::new(p);
            for part in data.chunks(piece) {
                s.push(part, &mut |c| { streamed.push(c); Ok(()) }).unwrap();
            }
            s.finish(&mut |c| { streamed.push(c); Ok(()) }).unwrap();
            prop_assert_eq!(streamed, whole);
        }
    }

    #[test]
    fn fixed_chunks_are_page_aligned() {
        let data = pseudo_random(8192 * 5 + 100, 7);
        let parts = chunks(&data, ChunkerKind::Fixed, &small());
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![8192, 8192, 8192, 8192, 8192, 100]);
    }

    #[test]
    fn an_insertion_moves_only_nearby_cdc_boundaries() {
        let data = pseudo_random(200_000, 3);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted".iter().copied());
        let a = chunks(&data, ChunkerKind::ContentDefined, &small());
        let b = chunks(&edited, ChunkerKind::ContentDefined, &small());
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(shared + 3 >= a.len(), "only {shared} of {} chunks survived", a.len());
    }

    #[test]
    fn params_are_validated() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams { fixed_size: 1000, ..Default::default() }.validate().is_err());
        assert!(ChunkerParams { cdc_min: 1 << 21, ..Default::default() }.validate().is_err());
    }
}

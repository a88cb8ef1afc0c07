//! Data pages: the page header, the server's page checksum (`src/include/storage/checksum_impl.h`)
//! and the verdict a backup gives a page it read (`PageIsVerifiedExtended` / `pg_checksums`).
//!
//! Pages are read as little-endian, the byte order of the hosts cairn runs on (x86-64,
//! aarch64); PostgreSQL writes pages in the host's native order.

use crate::le::{u16_at, u32_at};
use crate::lsn::Lsn;

/// The page size (`BLCKSZ`). cairn supports the default build only; `pg_control` says which
/// size a cluster uses and the engine refuses others.
pub const BLCKSZ: usize = 8192;

/// Blocks per relation segment file (`RELSEG_SIZE`): 1 GiB segments of 8 KiB pages.
pub const RELSEG_SIZE: u32 = 131_072;

/// Size of the page header (`SizeOfPageHeaderData`).
pub const PAGE_HEADER_SIZE: usize = 24;

/// The flag bits a valid page may have set (`PD_VALID_FLAG_BITS`).
const PD_VALID_FLAG_BITS: u16 = 0x0007;

/// `MAXIMUM_ALIGNOF` on the supported 64-bit platforms.
const MAXALIGN: u16 = 8;

/// Number of checksums calculated in parallel (`N_SUMS`), part of the algorithm.
const N_SUMS: usize = 32;

/// FNV-1a prime multiplier (`FNV_PRIME`).
const FNV_PRIME: u32 = 16_777_619;

/// Initial values of the parallel sums (`checksumBaseOffsets`).
const CHECKSUM_BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// Byte offset of `pd_checksum` in the page header.
const PD_CHECKSUM_OFFSET: usize = 8;

#[inline(always)]
fn checksum_comp(sum: u32, value: u32) -> u32 {
    let tmp = sum ^ value;
    tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17)
}

/// The checksum of a page as the server computes it (`pg_checksum_page`): the page is taken as
/// 32 columns of 32-bit words, each column folded with the FNV-1a variant, with `pd_checksum`
/// counted as zero, then the block number mixed in and the result brought into 1..=65535.
///
/// `blkno` is the block number within the whole relation fork, not within the segment file:
/// see [`relation_block`].
pub fn pg_checksum_page(page: &[u8; BLCKSZ], blkno: u32) -> u16 {
    let mut sums = CHECKSUM_BASE_OFFSETS;
    for (row_index, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, word) in row.chunks_exact(4).enumerate() {
            let mut value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            if row_index == 0 && j == PD_CHECKSUM_OFFSET / 4 {
                // pd_checksum is the low half (first two bytes) of the third word; the server
                // zeroes it for the computation. pd_flags, the high half, stays.
                value &= 0xFFFF_0000;
            }
            sums[j] = checksum_comp(sums[j], value);
        }
    }
    // Two rounds of zeroes for additional mixing.
    for _ in 0..2 {
        for sum in sums.iter_mut() {
            *sum = checksum_comp(*sum, 0);
        }
    }
    let checksum = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    // (checksum % 65535) + 1 is at most 65535.
    ((checksum % 65535) + 1) as u16
}

/// The block number of block `block_in_segment` of segment file `segment_no` (`16384.2` is
/// segment 2), the number the checksum is computed with. Wraps like the server's 32-bit
/// `BlockNumber` arithmetic.
pub fn relation_block(segment_no: u32, block_in_segment: u32) -> u32 {
    segment_no.wrapping_mul(RELSEG_SIZE).wrapping_add(block_in_segment)
}

/// The fields of a page header (`PageHeaderData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// LSN of the last WAL record that changed the page.
    pub lsn: Lsn,
    pub checksum: u16,
    pub flags: u16,
    /// Offset to the start of free space.
    pub lower: u16,
    /// Offset to the end of free space; 0 on a page that was never initialised.
    pub upper: u16,
    /// Offset to the start of the special space.
    pub special: u16,
    pub pagesize_version: u16,
    pub prune_xid: u32,
}

impl PageHeader {
    pub fn parse(page: &[u8; BLCKSZ]) -> PageHeader {
        PageHeader {
            // pd_lsn is { uint32 xlogid; uint32 xrecoff; }: high half first.
            lsn: Lsn(u64::from(u32_at(page, 0)) << 32 | u64::from(u32_at(page, 4))),
            checksum: u16_at(page, 8),
            flags: u16_at(page, 10),
            lower: u16_at(page, 12),
            upper: u16_at(page, 14),
            special: u16_at(page, 16),
            pagesize_version: u16_at(page, 18),
            prune_xid: u32_at(page, 20),
        }
    }

    /// The sanity checks of `PageIsVerifiedExtended`: only known flag bits, and
    /// `pd_lower <= pd_upper <= pd_special <= BLCKSZ` with `pd_special` max-aligned.
    pub fn is_sane(&self) -> bool {
        self.flags & !PD_VALID_FLAG_BITS == 0
            && self.lower <= self.upper
            && self.upper <= self.special
            && usize::from(self.special) <= BLCKSZ
            && self.special.is_multiple_of(MAXALIGN)
    }
}

/// The page's LSN (`PageGetLSN`).
pub fn page_lsn(page: &[u8; BLCKSZ]) -> Lsn {
    PageHeader::parse(page).lsn
}

/// A page the server has not initialised yet (`PageIsNew`: `pd_upper == 0`), such as the
/// all-zero pages a relation is extended with. Such pages carry no checksum.
pub fn page_is_new(page: &[u8; BLCKSZ]) -> bool {
    u16_at(page, 14) == 0
}

/// What a backup makes of a page it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageVerdict {
    /// Header sane and checksum right.
    Valid,
    /// Not initialised (`pd_upper == 0`): valid, without a checksum to check.
    New,
    /// The stored checksum is not the page's checksum.
    BadChecksum { stored: u16, computed: u16 },
    /// The checksum matches (or was not checked) but the header is not one the server wrote.
    BadHeader,
}

impl PageVerdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, PageVerdict::Valid | PageVerdict::New)
    }
}

/// Verifies a page of a cluster with data checksums on, as `pg_checksums --check` and the
/// base backup do, but stricter about new pages: a new page (`pd_upper == 0`) must be all
/// zeroes (see [`new_page_verdict`]); any other page must carry its
/// checksum and a sane header. A checksum failure is reported before a header failure, since
/// it says more (the page changed after it was written).
///
/// A torn page read from a running cluster also fails; the caller re-reads it and judges it by
/// its LSN against the backup's start LSN.
pub fn verify_page(page: &[u8; BLCKSZ], blkno: u32) -> PageVerdict {
    if page_is_new(page) {
        return new_page_verdict(page);
    }
    let header = PageHeader::parse(page);
    let computed = pg_checksum_page(page, blkno);
    if computed != header.checksum {
        return PageVerdict::BadChecksum { stored: header.checksum, computed };
    }
    if !header.is_sane() {
        return PageVerdict::BadHeader;
    }
    PageVerdict::Valid
}

/// A page with `pd_upper == 0` is new only if it is all zeroes, as the server's own read-time
/// check (`PageIsVerified`) demands: a zeroed first sector over real data is damage.
fn new_page_verdict(page: &[u8; BLCKSZ]) -> PageVerdict {
    if page.iter().all(|&b| b == 0) {
        PageVerdict::New
    } else {
        PageVerdict::BadHeader
    }
}

/// Verifies a page of a cluster without data checksums: header sanity only.
pub fn verify_page_header(page: &[u8; BLCKSZ]) -> PageVerdict {
    if page_is_new(page) {
        new_page_verdict(page)
    } else if PageHeader::parse(page).is_sane() {
        PageVerdict::Valid
    } else {
        PageVerdict::BadHeader
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A straightforward transcription of checksum_impl.h (union of the header and a
    /// [BLCKSZ / (4 * N_SUMS)][N_SUMS] array of words, checksum field zeroed on a copy), to
    /// hold the optimised version above to it.
    fn reference_checksum(page: &[u8; BLCKSZ], blkno: u32) -> u16 {
        let mut copy = *page;
        copy[8] = 0;
        copy[9] = 0;
        let words: Vec<u32> =
            copy.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let mut sums = CHECKSUM_BASE_OFFSETS;
        for i in 0..BLCKSZ / (4 * N_SUMS) {
            for j in 0..N_SUMS {
                let tmp = sums[j] ^ words[i * N_SUMS + j];
                sums[j] = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
            }
        }
        for _ in 0..2 {
            for s in sums.iter_mut() {
                let tmp = *s;
                *s = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
            }
        }
        let mut result = 0u32;
        for s in sums {
            result ^= s;
        }
        ((result ^ blkno) % 65535 + 1) as u16
    }

    /// A page with a sane header, some bytes of content and its checksum set.
    fn valid_page(seed: u8, blkno: u32) -> Box<[u8; BLCKSZ]> {
        let mut page = Box::new([0u8; BLCKSZ]);
        page[0..4].copy_from_slice(&0x1u32.to_le_bytes());
        page[4..8].copy_from_slice(&0x0300_0028u32.to_le_bytes());
        page[12..14].copy_from_slice(&40u16.to_le_bytes());
        page[14..16].copy_from_slice(&8000u16.to_le_bytes());
        page[16..18].copy_from_slice(&8192u16.to_le_bytes());
        page[18..20].copy_from_slice(&(8192u16 | 4).to_le_bytes());
        for (i, b) in page[8000..].iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8);
        }
        let sum = pg_checksum_page(&page, blkno);
        page[8..10].copy_from_slice(&sum.to_le_bytes());
        page
    }

    #[test]
    fn checksum_ignores_the_stored_checksum_and_mixes_in_the_block_number() {
        let page = valid_page(7, 3);
        let mut other = page.clone();
        other[8] ^= 0xFF;
        assert_eq!(pg_checksum_page(&page, 3), pg_checksum_page(&other, 3));
        assert_ne!(pg_checksum_page(&page, 3), pg_checksum_page(&page, 4));
        assert_eq!(verify_page(&page, 3), PageVerdict::Valid);
        assert!(matches!(verify_page(&page, 4), PageVerdict::BadChecksum { .. }));
    }

    #[test]
    fn checksum_is_never_zero() {
        // (x % 65535) + 1: zero is reserved to mean "no checksum".
        for blkno in 0..2000 {
            assert_ne!(pg_checksum_page(&valid_page(1, 0), blkno), 0);
        }
    }

    #[test]
    fn new_pages_are_valid_without_checksum() {
        let zero = [0u8; BLCKSZ];
        assert!(page_is_new(&zero));
        assert_eq!(verify_page(&zero, 12), PageVerdict::New);
        assert_eq!(verify_page_header(&zero), PageVerdict::New);
    }

    #[test]
    fn a_flipped_byte_is_a_bad_checksum() {
        let page = valid_page(9, 131_073);
        for at in [0usize, 10, 23, 24, 4096, 8191] {
            let mut bad = page.clone();
            bad[at] ^= 0x01;
            assert!(
                matches!(verify_page(&bad, 131_073), PageVerdict::BadChecksum { .. }),
                "flip at {at} undetected"
            );
        }
    }

    #[test]
    fn insane_headers_are_refused_even_with_a_right_checksum() {
        let cases: [(usize, u16); 5] = [
            (10, 0x0008), // unknown flag bit
            (12, 8001),   // pd_lower > pd_upper
            (14, 8200),   // pd_upper > pd_special
            (16, 8200),   // pd_special > BLCKSZ
            (16, 8190),   // pd_special not max-aligned
        ];
        for (at, value) in cases {
            let mut page = valid_page(3, 0);
            page[at..at + 2].copy_from_slice(&value.to_le_bytes());
            let sum = pg_checksum_page(&page, 0);
            page[8..10].copy_from_slice(&sum.to_le_bytes());
            assert_eq!(verify_page(&page, 0), PageVerdict::BadHeader, "field at {at} = {value}");
            assert_eq!(verify_page_header(&page), PageVerdict::BadHeader);
        }
    }

    #[test]
    fn header_fields_are_read_little_endian() {
        let page = valid_page(0, 0);
        let h = PageHeader::parse(&page);
        assert_eq!(h.lsn, Lsn(0x1_0300_0028));
        assert_eq!(page_lsn(&page).to_string(), "1/3000028");
        assert_eq!((h.lower, h.upper, h.special), (40, 8000, 8192));
        assert_eq!(h.pagesize_version, 8192 | 4);
    }

    #[test]
    fn relation_block_counts_across_segments() {
        assert_eq!(relation_block(0, 5), 5);
        assert_eq!(relation_block(1, 0), 131_072);
        assert_eq!(relation_block(2, 7), 262_151);
    }

    proptest! {
        #[test]
        fn checksum_matches_the_reference_transcription(
            bytes in proptest::collection::vec(any::<u8>(), BLCKSZ),
            blkno in any::<u32>(),
        ) {
            let page: [u8; BLCKSZ] = bytes.try_into().unwrap();
            prop_assert_eq!(pg_checksum_page(&page, blkno), reference_checksum(&page, blkno));
        }

        #[test]
        fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), BLCKSZ), blkno in any::<u32>()) {
            let page: [u8; BLCKSZ] = bytes.try_into().unwrap();
            let _ = verify_page(&page, blkno);
            let _ = verify_page_header(&page);
        }
    }

    #[test]
    fn a_zeroed_header_over_real_data_is_damage_not_a_new_page() {
        let zero = [0u8; BLCKSZ];
        assert_eq!(verify_page(&zero, 7), PageVerdict::New);
        let mut sector_lost = [0u8; BLCKSZ];
        sector_lost[4000] = 42; // data beyond a zeroed first sector
        assert_eq!(verify_page(&sector_lost, 7), PageVerdict::BadHeader);
        assert_eq!(verify_page_header(&sector_lost), PageVerdict::BadHeader);
    }
}

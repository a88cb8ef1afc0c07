//! WAL files read without a server: the long page header that identifies a segment, a summary
//! of one segment's records for point-in-time recovery (transaction end times and ids, restore
//! points, where valid WAL stops), and timeline history files.
//!
//! The format is PostgreSQL 13..=18's on the hosts cairn runs on (64-bit, little-endian,
//! 8-byte `MAXALIGN`). A segment is a sequence of pages (`XLOG_BLCKSZ`, 8 KiB unless the server
//! was built otherwise), each starting with a page header; records follow one another, each
//! starting on an 8-byte boundary, and run on across page headers (and segment ends) where they
//! do not fit:
//!
//! ```text
//!   page header (XLogPageHeaderData, 24 bytes; the first page of a segment has the 40-byte long form)
//!        0   2  xlp_magic      XLOG_PAGE_MAGIC: changes with every WAL format change
//!        2   2  xlp_info       0x0001 the page starts with the rest of a record, 0x0002 long header
//!        4   4  xlp_tli        timeline of the page
//!        8   8  xlp_pageaddr   the page's own position
//!       16   4  xlp_rem_len    bytes of the continued record still to come, from here on
//!       24   8  xlp_sysid      (long form) the cluster's system identifier
//!       32   4  xlp_seg_size   (long form) segment size
//!       36   4  xlp_xlog_blcksz (long form) page size
//!
//!   record header (XLogRecord, 24 bytes)
//!        0   4  xl_tot_len     length of the whole record, this header included
//!        4   4  xl_xid         transaction id (0 when none)
//!        8   8  xl_prev        start of the previous record
//!       16   1  xl_info        record kind within the resource manager (high 4 bits)
//!       17   1  xl_rmid        resource manager
//!       20   4  xl_crc         CRC-32C of the rest of the record, then of header bytes 0..20
//!
//!   then, unaligned: block reference headers, the main data length, block data, main data
//! ```
//!
//! openGauss and KingbaseES WAL is out of scope. openGauss lays its records out differently (its
//! transaction ids are 64-bit, for one); what KingbaseES writes has not been examined. Segments
//! whose page magic is not one of PostgreSQL 13..=18's are refused.

use crate::le::{u16_at, u32_at, u64_at};
use std::borrow::Cow;

use crate::lsn::{Lsn, TimelineId, WalSegmentName, WalSegmentSize};
use crc32c::{crc32c, crc32c_append};

/// `XLOG_PAGE_MAGIC` of each supported major (`src/include/access/xlog_internal.h`).
const PAGE_MAGICS: [(u32, u16); 6] =
    [(13, 0xD106), (14, 0xD10D), (15, 0xD110), (16, 0xD113), (17, 0xD116), (18, 0xD118)];

const SHORT_PAGE_HEADER_LEN: usize = 24;
const LONG_PAGE_HEADER_LEN: usize = 40;
/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record begun before it.
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: written on the first page of every segment.
const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: a record that ran onto this page was cut short by a
/// crash; the page starts afresh with a record that says so.
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;

/// `SizeOfXLogRecord`.
const RECORD_HEADER_LEN: usize = 24;
/// Where `xl_crc` sits in the record header; the CRC covers the header bytes before it.
const RECORD_CRC_AT: usize = 20;
/// Records start on `MAXALIGN` boundaries.
const MAXALIGN: usize = 8;

// The headers between the record header and the data (`DecodeXLogRecord`): each starts with
// an id byte saying what it is.
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// The block is in the same relation as the previous one: no `RelFileLocator` follows.
const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `sizeof(RelFileLocator)` (`RelFileNode` before PostgreSQL 16): three 4-byte oids.
const REL_FILE_LOCATOR_LEN: usize = 12;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// "Compressed" in `bimg_info` of PostgreSQL 13 and 14 (`BKPIMAGE_IS_COMPRESSED`).
const BKPIMAGE_COMPRESSED_PG13: u8 = 0x02;
/// "Compressed" from PostgreSQL 15 on: one bit per method (pglz 0x04, lz4 0x08, zstd 0x10).
const BKPIMAGE_COMPRESSED_PG15: u8 = 0x04 | 0x08 | 0x10;

// Resource managers and the record kinds the summary looks at.
const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
/// The part of `xl_info` a resource manager uses (`XLR_RMGR_INFO_MASK`).
const XLR_RMGR_INFO_MASK: u8 = 0xF0;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;
/// The transaction manager keeps a flag in the top bit; the operation is in the next three.
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// `rp_name` of `xl_restore_point` is `char[MAXFNAMELEN]`, after the 8-byte `rp_time`.
const RESTORE_POINT_NAME_LEN: usize = 64;

/// `TimestampTz` counts microseconds from 2000-01-01 00:00:00 UTC; this is that instant in
/// Unix microseconds.
const POSTGRES_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// Errors of reading WAL files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// The first page header is not that of a PostgreSQL 13..=18 WAL segment.
    #[error("not a WAL segment: {0}")]
    NotASegment(String),
    /// A WAL segment, but not the one its name says, or of the wrong size.
    #[error("WAL segment {name}: {reason}")]
    WrongSegment { name: String, reason: String },
    /// A record whose CRC is right but whose headers do not add up.
    #[error("WAL record at {lsn} cannot be decoded: {reason}")]
    BadRecord { lsn: Lsn, reason: String },
    #[error("timeline history file, line {line}: {reason}")]
    BadHistory { line: usize, reason: String },
}

impl WalError {
    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            WalError::NotASegment(_) | WalError::WrongSegment { .. } | WalError::BadRecord { .. } => {
                "bad-wal-segment"
            }
            WalError::BadHistory { .. } => "bad-timeline-history",
        }
    }
}

/// The WAL page magic (`XLOG_PAGE_MAGIC`) of PostgreSQL `major` (13..=18), so that a caller can
/// check that a segment belongs to the server version it expects.
pub fn page_magic(major: u32) -> Option<u16> {
    PAGE_MAGICS.iter().find(|(m, _)| *m == major).map(|(_, magic)| *magic)
}

/// The PostgreSQL major that writes WAL with this page magic.
fn major_of_magic(magic: u16) -> Option<u32> {
    PAGE_MAGICS.iter().find(|(_, m)| *m == magic).map(|(major, _)| *major)
}

/// The long page header at the start of a segment file: who wrote it and where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// `XLOG_PAGE_MAGIC`, one of PostgreSQL 13..=18's ([`SegmentHeader::postgres_major`]).
    pub magic: u16,
    /// The timeline of the first page. The first segment of a new timeline starts with pages of
    /// its parent timeline (copied up to the switch point), so this may be lower than the
    /// timeline in the file's name.
    pub timeline: TimelineId,
    /// The position of the segment's first byte.
    pub page_addr: Lsn,
    /// The cluster's system identifier, as in `pg_control`.
    pub system_identifier: u64,
    pub segment_size: WalSegmentSize,
    /// The WAL page size (`XLOG_BLCKSZ`).
    pub block_size: u32,
}

impl SegmentHeader {
    /// The PostgreSQL major that wrote the segment.
    pub fn postgres_major(&self) -> u32 {
        // The magic was checked to be a known one when the header was read.
        major_of_magic(self.magic).unwrap_or(0)
    }
}

/// The fields every page header has.
#[derive(Debug, Clone, Copy)]
struct PageHeader {
    magic: u16,
    info: u16,
    tli: u32,
    page_addr: u64,
    rem_len: u32,
}

impl PageHeader {
    /// `bytes` holds at least [`SHORT_PAGE_HEADER_LEN`] bytes.
    fn parse(bytes: &[u8]) -> PageHeader {
        PageHeader {
            magic: u16_at(bytes, 0),
            info: u16_at(bytes, 2),
            tli: u32_at(bytes, 4),
            page_addr: u64_at(bytes, 8),
            rem_len: u32_at(bytes, 16),
        }
    }
}

fn max_align(offset: usize) -> usize {
    offset.div_ceil(MAXALIGN) * MAXALIGN
}

/// Parses and checks the long page header at the start of a segment file. `bytes` may be the
/// whole file or just its first page.
pub fn read_segment_header(bytes: &[u8]) -> Result<SegmentHeader, WalError> {
    let bad = |why: String| Err(WalError::NotASegment(why));
    if bytes.len() < LONG_PAGE_HEADER_LEN {
        return bad(format!("{} bytes, too short for a segment's first page header", bytes.len()));
    }
    let page = PageHeader::parse(bytes);
    if major_of_magic(page.magic).is_none() {
        return bad(format!(
            "page magic 0x{:04X} unknown (PostgreSQL 13 to 18 write {})",
            page.magic,
            PAGE_MAGICS.map(|(_, m)| format!("0x{m:04X}")).join(", ")
        ));
    }
    if page.info & XLP_LONG_HEADER == 0 {
        return bad(format!("the first page has no long header (xlp_info 0x{:04X})", page.info));
    }
    let seg_size = u32_at(bytes, 32);
    let Ok(segment_size) = WalSegmentSize::new(u64::from(seg_size)) else {
        return bad(format!("segment size {seg_size} in the header is not a valid WAL segment size"));
    };
    // configure --with-wal-blocksize accepts 1 to 64 KiB.
    let block_size = u32_at(bytes, 36);
    if !block_size.is_power_of_two() || !(1024..=65536).contains(&block_size) {
        return bad(format!("page size {block_size} in the header is not a valid WAL page size"));
    }
    let page_addr = Lsn(page.page_addr);
    if page_addr.segment_offset(segment_size) != 0 {
        return bad(format!("page address {page_addr} is not the start of a {seg_size}-byte segment"));
    }
    let Ok(timeline) = TimelineId::new(page.tli) else {
        return bad("timeline 0 in the first page header".to_string());
    };
    Ok(SegmentHeader {
        magic: page.magic,
        timeline,
        page_addr,
        system_identifier: u64_at(bytes, 24),
        segment_size,
        block_size,
    })
}

/// A named restore point (`pg_create_restore_point`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    pub name: String,
    /// Where the restore point record starts.
    pub lsn: Lsn,
    /// Where it ends: the position `pg_create_restore_point` returned.
    pub end_lsn: Lsn,
    /// When it was made, in Unix microseconds.
    pub time_us: i64,
}

/// Why the scan of a segment stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The segment's records run to its end: its last bytes are a record that ends exactly
    /// there or one that continues in the next segment.
    SegmentEnd,
    /// A WAL switch record (`pg_switch_wal`, `archive_timeout`): the rest of the segment is
    /// unused.
    Switch,
    /// The data given is shorter than a segment and ends before the records do.
    Truncated,
    /// Valid WAL stops early; the text says why (zeroes, a recycled page, a bad CRC, ...). This
    /// is how a segment still being written, or a `.partial` one, ends; in a complete segment
    /// it means damage.
    Invalid(String),
}

/// What recovery would find in one WAL segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub header: SegmentHeader,
    /// Unix microseconds of the first and the last transaction end (commit or abort, prepared
    /// or not: where `recovery_target_time` can stop) whose record starts in this segment, in
    /// WAL order. The times come from the server's clock when each record was made; concurrent
    /// transactions can make them step back a little from one record to the next.
    pub first_commit_us: Option<i64>,
    pub last_commit_us: Option<i64>,
    /// The lowest and highest `xl_xid` of those records, compared as plain numbers (a segment
    /// written across xid wraparound will show the whole range). `COMMIT PREPARED` and
    /// `ROLLBACK PREPARED` records usually carry no xid of their own (the prepared
    /// transaction's is in their data) and do not count here.
    pub min_commit_xid: Option<u32>,
    pub max_commit_xid: Option<u32>,
    /// Commit records (plain and prepared).
    pub commits: u64,
    /// Abort records (plain and prepared, subtransactions included).
    pub aborts: u64,
    pub restore_points: Vec<RestorePoint>,
    /// Where valid WAL stops in this segment: the end of the last record complete in it (one
    /// begun in an earlier segment included), rounded up to the 8-byte boundary where the next
    /// record would start, as the server reports record ends. A record that runs on into the
    /// next segment is not complete here: `end_lsn` is its start, and neither this summary nor
    /// the next segment's counts it. When one record runs through the whole segment, the
    /// segment's start.
    pub end_lsn: Lsn,
    pub end_reason: EndReason,
}

/// Scans the records of one segment file and summarizes them. `name` is the file's name
/// (without `.partial`): every page header read is checked against it (page magic the same as
/// the first page's, `xlp_pageaddr` where the name puts the page, timeline not above the
/// name's nor going back).
///
/// A first page that does not fit the name is an error. Records are read until valid WAL
/// stops, which is not an error: [`SegmentSummary::end_reason`] says how it stopped.
pub fn summarize_segment(name: &WalSegmentName, bytes: &[u8]) -> Result<SegmentSummary, WalError> {
    let header = read_segment_header(bytes)?;
    let wrong = |reason: String| Err(WalError::WrongSegment { name: name.to_string(), reason });
    let seg_size = header.segment_size.bytes();
    if bytes.len() as u64 > u64::from(seg_size) {
        return wrong(format!(
            "the file is {} bytes but its header says segments are {seg_size}",
            bytes.len()
        ));
    }
    let start = match name.start_lsn(header.segment_size) {
        Ok(start) => start,
        Err(e) => return wrong(e.to_string()),
    };
    if header.page_addr != start {
        return wrong(format!(
            "its first page is at {}, but its name puts it at {start} (with {seg_size}-byte segments)",
            header.page_addr
        ));
    }
    if header.timeline > name.timeline() {
        return wrong(format!("its first page is on timeline {}, after the name's", header.timeline));
    }
    let first_page = PageHeader::parse(bytes);
    let mut scan = Scan {
        bytes,
        start: start.0,
        page_size: header.block_size as usize,
        segment_size: seg_size as usize,
        magic: header.magic,
        name_tli: name.timeline().get(),
        page_tli: header.timeline.get(),
        image_compressed_mask: if header.postgres_major() <= 14 {
            BKPIMAGE_COMPRESSED_PG13
        } else {
            BKPIMAGE_COMPRESSED_PG15
        },
    };
    let mut summary = SegmentSummary {
        header,
        first_commit_us: None,
        last_commit_us: None,
        min_commit_xid: None,
        max_commit_xid: None,
        commits: 0,
        aborts: 0,
        restore_points: Vec::new(),
        end_lsn: start,
        end_reason: EndReason::SegmentEnd,
    };
    summary.end_reason = scan.records(&first_page, &mut summary)?;
    Ok(summary)
}

/// A walk through the records of one segment.
struct Scan<'a> {
    bytes: &'a [u8],
    /// Position of the segment's first byte.
    start: u64,
    page_size: usize,
    segment_size: usize,
    magic: u16,
    /// The timeline in the file's name: no page may be on a later one.
    name_tli: u32,
    /// The timeline of the last page read: timelines only go up.
    page_tli: u32,
    /// The `bimg_info` bits that mean "compressed" in this major.
    image_compressed_mask: u8,
}

/// Why a record could not be read where it was looked for.
enum Stop {
    /// Valid WAL ends there.
    End(EndReason),
    /// The record was cut short by a crash, and the WAL goes on from the start of the page at
    /// this offset (`XLP_FIRST_IS_OVERWRITE_CONTRECORD`), as recovery reads it.
    Overwritten(usize),
}

fn invalid(why: String) -> Stop {
    Stop::End(EndReason::Invalid(why))
}

impl<'a> Scan<'a> {
    fn lsn(&self, offset: usize) -> Lsn {
        Lsn(self.start + offset as u64)
    }

    /// How reading past the data given ends.
    fn end_of_data(&self) -> Stop {
        Stop::End(if self.bytes.len() == self.segment_size {
            EndReason::SegmentEnd
        } else {
            EndReason::Truncated
        })
    }

    /// Reads and checks the header of the page at `offset` (a page boundary after the first).
    fn page_header(&mut self, offset: usize) -> Result<PageHeader, Stop> {
        if offset + SHORT_PAGE_HEADER_LEN > self.bytes.len() {
            return Err(self.end_of_data());
        }
        let page = PageHeader::parse(&self.bytes[offset..]);
        let at = self.lsn(offset);
        if page.magic == 0 && page.page_addr == 0 {
            return Err(invalid(format!("the page at {at} was never written (zeroes)")));
        }
        if page.magic != self.magic {
            return Err(invalid(format!(
                "the page at {at} has page magic 0x{:04X}, the first page 0x{:04X}",
                page.magic, self.magic
            )));
        }
        if page.page_addr != at.0 {
            return Err(invalid(format!(
                "the page at {at} says it is at {} (a recycled page)",
                Lsn(page.page_addr)
            )));
        }
        if page.tli > self.name_tli || page.tli < self.page_tli {
            return Err(invalid(format!(
                "the page at {at} is on timeline {} (the previous page on {}, the file's name says {})",
                page.tli, self.page_tli, self.name_tli
            )));
        }
        self.page_tli = page.tli;
        Ok(page)
    }

    /// Walks over the first `len` bytes of the `record_len` bytes of a record (or of the rest
    /// of one) from `offset`, across the page headers in between, handing each piece to
    /// `piece`; returns the offset just past them. Every page entered must say that it
    /// continues the record with exactly the bytes of it still to come.
    fn walk(
        &mut self,
        offset: usize,
        len: usize,
        record_len: usize,
        mut piece: impl FnMut(&'a [u8]),
    ) -> Result<usize, Stop> {
        let mut at = offset;
        let mut done = 0;
        loop {
            let page_end = (at / self.page_size + 1) * self.page_size;
            let n = (len - done).min(page_end.min(self.bytes.len()).saturating_sub(at));
            piece(&self.bytes[at..at + n]);
            at += n;
            done += n;
            if done == len {
                return Ok(at);
            }
            if at >= self.bytes.len() {
                return Err(self.end_of_data());
            }
            let page = self.page_header(at)?;
            if page.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
                return Err(Stop::Overwritten(at));
            }
            let record_left = record_len - done;
            if page.info & XLP_FIRST_IS_CONTRECORD == 0 || page.rem_len as usize != record_left {
                return Err(invalid(format!(
                    "the page at {} does not continue the record before it ({record_left} bytes \
                     expected, xlp_info 0x{:04X}, xlp_rem_len {})",
                    self.lsn(at),
                    page.info,
                    page.rem_len
                )));
            }
            at += SHORT_PAGE_HEADER_LEN;
        }
    }

    /// The first `len` bytes of the `record_len`-byte record at `offset`, gathered across page
    /// headers, and the offset just past them.
    fn read(&mut self, offset: usize, len: usize, record_len: usize) -> Result<(Cow<'a, [u8]>, usize), Stop> {
        let page_end = (offset / self.page_size + 1) * self.page_size;
        if offset + len <= page_end.min(self.bytes.len()) {
            return Ok((Cow::Borrowed(&self.bytes[offset..offset + len]), offset + len));
        }
        // Bounded by what the segment can hold: a garbage length must not allocate gigabytes.
        let mut bytes = Vec::with_capacity(len.min(self.segment_size));
        let end = self.walk(offset, len, record_len, |piece| bytes.extend_from_slice(piece))?;
        Ok((Cow::Owned(bytes), end))
    }

    /// Reads the records from the start of the segment into `summary` until valid WAL stops.
    fn records(
        &mut self,
        first_page: &PageHeader,
        summary: &mut SegmentSummary,
    ) -> Result<EndReason, WalError> {
        let mut offset = LONG_PAGE_HEADER_LEN;
        if first_page.info & XLP_FIRST_IS_CONTRECORD != 0 {
            // The tail of a record begun in an earlier segment: nothing to read in it here.
            let rest = first_page.rem_len as usize;
            match self.walk(offset, rest, rest, |_| ()) {
                Ok(end) => offset = max_align(end),
                Err(Stop::Overwritten(page)) => offset = page,
                Err(Stop::End(reason)) => return Ok(reason),
            }
        }
        summary.end_lsn = self.lsn(offset);
        // The first record's predecessor is in an earlier segment, somewhere before it.
        let mut prev: Option<Lsn> = None;
        loop {
            let (start, record, end) = match self.next_record(offset, prev) {
                Ok(found) => found,
                Err(Stop::Overwritten(page)) => {
                    offset = page;
                    continue;
                }
                Err(Stop::End(reason)) => return Ok(reason),
            };
            offset = max_align(end);
            let switch =
                note_record(summary, &record, self.lsn(start), self.lsn(offset), self.image_compressed_mask)?;
            summary.end_lsn = self.lsn(offset);
            if switch {
                return Ok(EndReason::Switch);
            }
            prev = Some(self.lsn(start));
        }
    }

    /// The record that starts at or (past a page header) just after `offset`: its start, its
    /// bytes, checked, and the offset just past it.
    fn next_record(
        &mut self,
        offset: usize,
        prev: Option<Lsn>,
    ) -> Result<(usize, Cow<'a, [u8]>, usize), Stop> {
        let mut start = offset;
        if start >= self.bytes.len() {
            return Err(self.end_of_data());
        }
        if start.is_multiple_of(self.page_size) {
            let page = self.page_header(start)?;
            if page.info & XLP_FIRST_IS_CONTRECORD != 0 {
                return Err(invalid(format!(
                    "the page at {} continues a record where a new one should start",
                    self.lsn(start)
                )));
            }
            start += SHORT_PAGE_HEADER_LEN;
        }
        let at = self.lsn(start);
        // A record starts 8-aligned, so at least its length is on this page.
        if start + 4 > self.bytes.len() {
            return Err(self.end_of_data());
        }
        let total = u32_at(self.bytes, start) as usize;
        if total == 0 {
            return Err(invalid(format!("no record at {at} (zeroes)")));
        }
        if total < RECORD_HEADER_LEN {
            return Err(invalid(format!("the record at {at} claims a length of {total} bytes")));
        }
        // The header alone first: a record that runs into the next segment cannot be checked
        // whole, but its link to the previous record can.
        let (header, _) = self.read(start, RECORD_HEADER_LEN, total)?;
        let xl_prev = Lsn(u64_at(&header, 8));
        let linked = match prev {
            Some(prev) => xl_prev == prev,
            None => xl_prev < at,
        };
        if !linked {
            return Err(invalid(format!(
                "the record at {at} points back to {xl_prev}, not to the record before it{}",
                prev.map(|p| format!(" at {p}")).unwrap_or_default()
            )));
        }
        let (record, end) = self.read(start, total, total)?;
        let computed = crc32c_append(crc32c(&record[RECORD_HEADER_LEN..]), &record[..RECORD_CRC_AT]);
        if computed != u32_at(&record, RECORD_CRC_AT) {
            return Err(invalid(format!("the record at {at} fails its CRC")));
        }
        Ok((start, record, end))
    }
}

/// Adds what `record` (complete and checked, from `lsn` to `end_lsn`) means to the summary;
/// true for a WAL switch record.
fn note_record(
    summary: &mut SegmentSummary,
    record: &[u8],
    lsn: Lsn,
    end_lsn: Lsn,
    image_compressed_mask: u8,
) -> Result<bool, WalError> {
    let bad = |reason: String| WalError::BadRecord { lsn, reason };
    // Every record's headers are decoded, as recovery does, though few kinds are looked into:
    // a record that recovery could not decode is damage.
    let data = main_data(record, image_compressed_mask).map_err(bad)?;
    let xid = u32_at(record, 4);
    let info = record[16];
    let rmid = record[17];
    if rmid == RM_XACT_ID {
        let op = info & XLOG_XACT_OPMASK;
        let is_commit = matches!(op, XLOG_XACT_COMMIT | XLOG_XACT_COMMIT_PREPARED);
        let is_abort = matches!(op, XLOG_XACT_ABORT | XLOG_XACT_ABORT_PREPARED);
        if !is_commit && !is_abort {
            return Ok(false);
        }
        // xl_xact_commit and xl_xact_abort both start with the transaction's end time.
        let time = leading_time(data)
            .ok_or_else(|| bad(format!("transaction end with {} bytes of data", data.len())))?;
        summary.first_commit_us.get_or_insert(time);
        summary.last_commit_us = Some(time);
        if xid != 0 {
            summary.min_commit_xid = Some(summary.min_commit_xid.map_or(xid, |m| m.min(xid)));
            summary.max_commit_xid = Some(summary.max_commit_xid.map_or(xid, |m| m.max(xid)));
        }
        if is_commit {
            summary.commits += 1;
        } else {
            summary.aborts += 1;
        }
    } else if rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_SWITCH {
        return Ok(true);
    } else if rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_RESTORE_POINT {
        // xl_restore_point: the time, then the name, NUL-terminated in a fixed-size array.
        let (Some(time_us), Some(name)) = (leading_time(data), data.get(8..8 + RESTORE_POINT_NAME_LEN))
        else {
            return Err(bad(format!("restore point with {} bytes of data", data.len())));
        };
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        summary.restore_points.push(RestorePoint {
            name: String::from_utf8_lossy(name).into_owned(),
            lsn,
            end_lsn,
            time_us,
        });
    }
    Ok(false)
}

/// The `TimestampTz` that `data` starts with, in Unix microseconds.
fn leading_time(data: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = data.get(..8)?.try_into().ok()?;
    // Saturating: only the "infinity" values, which no record carries, would overflow.
    Some(i64::from_le_bytes(raw).saturating_add(POSTGRES_EPOCH_UNIX_US))
}

/// A cursor over the headers that follow the record header.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let field = self.bytes.get(self.at..self.at + n).ok_or("the headers run past the record's end")?;
        self.at += n;
        Ok(field)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16_at(self.take(2)?, 0))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.take(4)?, 0))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// The record's main data (the resource manager's own struct): the headers after the record
/// header say how much block data comes first and how long the main data is; it comes last.
fn main_data(record: &[u8], image_compressed_mask: u8) -> Result<&[u8], String> {
    let mut fields = Fields { bytes: record, at: RECORD_HEADER_LEN };
    let mut data_len = 0usize;
    let mut main_len = 0usize;
    while fields.remaining() > data_len {
        match fields.u8()? {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(fields.u8()?);
                data_len += main_len;
                break; // the main data header is always the last header
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = fields.u32()? as usize;
                data_len += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                fields.take(2)?; // RepOriginId
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                fields.take(4)?; // TransactionId
            }
            0..=XLR_MAX_BLOCK_ID => {
                let fork_flags = fields.u8()?;
                data_len += usize::from(fields.u16()?);
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let image_len = fields.u16()?;
                    fields.take(2)?; // hole_offset
                    let image_info = fields.u8()?;
                    // A compressed image cannot give its hole's length by its own: it is stored.
                    if image_info & image_compressed_mask != 0 && image_info & BKPIMAGE_HAS_HOLE != 0 {
                        fields.take(2)?;
                    }
                    data_len += usize::from(image_len);
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    fields.take(REL_FILE_LOCATOR_LEN)?;
                }
                fields.take(4)?; // BlockNumber
            }
            id => return Err(format!("unknown block id {id}")),
        }
    }
    if fields.remaining() != data_len {
        return Err(format!(
            "its headers announce {data_len} bytes of data, {} bytes follow them",
            fields.remaining()
        ));
    }
    Ok(&record[record.len() - main_len..])
}

/// One line of a timeline history file: the timeline `parent` was left at `switch_point` for
/// the next line's timeline (for the last line, the file's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: TimelineId,
    pub switch_point: Lsn,
    /// Why the timeline was left, as the server wrote it ("no recovery target specified",
    /// "before 2024-05-01 12:00:00+00", ...); may be empty.
    pub reason: String,
}

/// Parses a timeline history file (`00000002.history`): lines of parent timeline, switch point
/// and reason separated by a tab (any whitespace is accepted, as the server does), parent
/// timelines increasing; blank lines and lines starting with `#` are ignored.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, WalError> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| WalError::BadHistory { line: i + 1, reason };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tli, rest) = split_field(line);
        let (switch_point, reason) = split_field(rest);
        let parent: TimelineId = tli.parse().map_err(|_| bad(format!("'{tli}' is not a timeline id")))?;
        if switch_point.is_empty() {
            return Err(bad(format!("timeline {parent} has no switch point")));
        }
        let switch_point: Lsn = switch_point
            .parse()
            .map_err(|_| bad(format!("'{switch_point}' is not a switch point (an LSN)")))?;
        if let Some(last) = entries.last() {
            if parent <= last.parent {
                return Err(bad(format!(
                    "timeline {parent} follows timeline {}: not increasing",
                    last.parent
                )));
            }
        }
        entries.push(HistoryEntry { parent, switch_point, reason: reason.trim_end().to_string() });
    }
    Ok(entries)
}

/// The text up to the first whitespace, and what follows that whitespace.
fn split_field(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_magic_of_each_supported_major() {
        assert_eq!(page_magic(13), Some(0xD106));
        assert_eq!(page_magic(14), Some(0xD10D));
        assert_eq!(page_magic(15), Some(0xD110));
        assert_eq!(page_magic(16), Some(0xD113));
        assert_eq!(page_magic(17), Some(0xD116));
        assert_eq!(page_magic(18), Some(0xD118));
        assert_eq!(page_magic(12), None);
        assert_eq!(page_magic(19), None);
        for major in crate::flavor::SUPPORTED_POSTGRES_MAJORS {
            let magic = page_magic(major).unwrap();
            assert_eq!(major_of_magic(magic), Some(major));
        }
    }

    #[test]
    fn history_lines_parse() {
        let text = "1\t0/3000158\tno recovery target specified\n\
                    \n\
                    # a comment\n\
                    2\t0/5000000\tbefore 2024-05-01 12:00:00.123456+00\n\
                    5 1A/B374D848 at restore point \"rp1\"\n\
                    7\t2/0\n";
        let h = parse_history(text).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].parent, TimelineId::FIRST);
        assert_eq!(h[0].switch_point, Lsn(0x3000158));
        assert_eq!(h[0].reason, "no recovery target specified");
        assert_eq!(h[1].reason, "before 2024-05-01 12:00:00.123456+00");
        assert_eq!((h[2].parent.get(), h[2].switch_point), (5, Lsn(0x1A_B374_D848)));
        assert_eq!(h[2].reason, "at restore point \"rp1\"");
        assert_eq!((h[3].parent.get(), h[3].switch_point, h[3].reason.as_str()), (7, Lsn(0x2_0000_0000), ""));
        assert_eq!(parse_history("").unwrap(), Vec::new());
        assert_eq!(parse_history("# only a comment\n\n").unwrap(), Vec::new());
    }

    #[test]
    fn bad_history_lines_are_errors_naming_the_line() {
        let cases = [
            ("x\t0/1\treason", 1, "not a timeline id"),
            ("0\t0/1\treason", 1, "not a timeline id"),
            ("1\n", 1, "no switch point"),
            ("# c\n1\t0/1\tok\n2\tzz\tbad", 3, "not a switch point"),
            ("2\t0/1\ta\n2\t0/2\tb", 2, "not increasing"),
            ("3\t0/1\ta\n2\t0/2\tb", 2, "not increasing"),
        ];
        for (text, line, what) in cases {
            let err = parse_history(text).unwrap_err();
            assert!(
                matches!(&err, WalError::BadHistory { line: l, reason } if *l == line && reason.contains(what)),
                "{text:?}: {err}"
            );
            assert_eq!(err.code(), "bad-timeline-history");
        }
    }

    /// A segment's first page header, as a server of `major` writes it.
    fn long_header(major: u32, info: u16, tli: u32, page_addr: u64, seg_size: u32) -> Vec<u8> {
        let mut b = vec![0u8; LONG_PAGE_HEADER_LEN];
        b[0..2].copy_from_slice(&page_magic(major).unwrap().to_le_bytes());
        b[2..4].copy_from_slice(&info.to_le_bytes());
        b[4..8].copy_from_slice(&tli.to_le_bytes());
        b[8..16].copy_from_slice(&page_addr.to_le_bytes());
        b[24..32].copy_from_slice(&7_300_000_000_000_000_123u64.to_le_bytes());
        b[32..36].copy_from_slice(&seg_size.to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn segment_header_fields_and_checks() {
        let h = read_segment_header(&long_header(16, XLP_LONG_HEADER, 3, 0x1_0300_0000, 16 << 20)).unwrap();
        assert_eq!(h.postgres_major(), 16);
        assert_eq!(h.timeline.get(), 3);
        assert_eq!(h.page_addr, Lsn(0x1_0300_0000));
        assert_eq!(h.system_identifier, 7_300_000_000_000_000_123);
        assert_eq!((h.segment_size.bytes(), h.block_size), (16 << 20, 8192));

        let not_a_segment = |bytes: &[u8], what: &str| {
            let err = read_segment_header(bytes).unwrap_err();
            assert!(matches!(&err, WalError::NotASegment(m) if m.contains(what)), "{what}: {err}");
        };
        not_a_segment(&[0u8; 39], "too short");
        let mut b = long_header(15, XLP_LONG_HEADER, 1, 0x300_0000, 16 << 20);
        b[0] ^= 0xFF;
        not_a_segment(&b, "page magic 0xD1EF unknown");
        not_a_segment(&long_header(15, 0, 1, 0x300_0000, 16 << 20), "no long header");
        not_a_segment(&long_header(15, XLP_LONG_HEADER, 1, 0x300_0000, 3 << 20), "segment size 3145728");
        not_a_segment(&long_header(15, XLP_LONG_HEADER, 1, 0x300_2000, 16 << 20), "not the start");
        not_a_segment(&long_header(15, XLP_LONG_HEADER, 0, 0x300_0000, 16 << 20), "timeline 0");
        let mut b = long_header(15, XLP_LONG_HEADER, 1, 0x300_0000, 16 << 20);
        b[36..40].copy_from_slice(&3000u32.to_le_bytes());
        not_a_segment(&b, "page size 3000");
    }

    /// A record of `rmid`/`info` with the given headers-and-data part, CRC filled in.
    fn record(xid: u32, prev: u64, info: u8, rmid: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_HEADER_LEN];
        r[0..4].copy_from_slice(&((RECORD_HEADER_LEN + body.len()) as u32).to_le_bytes());
        r[4..8].copy_from_slice(&xid.to_le_bytes());
        r[8..16].copy_from_slice(&prev.to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        r.extend_from_slice(body);
        let crc = crc32c_append(crc32c(&r[RECORD_HEADER_LEN..]), &r[..RECORD_CRC_AT]);
        r[RECORD_CRC_AT..RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        r
    }

    fn commit_body(pg_time: i64) -> Vec<u8> {
        let mut body = vec![XLR_BLOCK_ID_DATA_SHORT, 8];
        body.extend_from_slice(&pg_time.to_le_bytes());
        body
    }

    #[test]
    fn main_data_skips_block_references_of_either_image_layout() {
        // One block with a compressed image with a hole (so a 2-byte hole length follows) and
        // a new relation, one of the same relation without image, then origin and main data.
        let build = |compressed_bit: u8| {
            let mut body = vec![0u8, BKPBLOCK_HAS_IMAGE | 0x20];
            body.extend_from_slice(&3u16.to_le_bytes()); // block data
            body.extend_from_slice(&5u16.to_le_bytes()); // image length
            body.extend_from_slice(&100u16.to_le_bytes()); // hole offset
            body.push(BKPIMAGE_HAS_HOLE | compressed_bit);
            body.extend_from_slice(&4000u16.to_le_bytes()); // hole length
            body.extend_from_slice(&[1; REL_FILE_LOCATOR_LEN]);
            body.extend_from_slice(&7u32.to_le_bytes());
            body.extend_from_slice(&[1, BKPBLOCK_SAME_REL | 0x20, 2, 0]);
            body.extend_from_slice(&8u32.to_le_bytes());
            body.extend_from_slice(&[XLR_BLOCK_ID_ORIGIN, 9, 0, XLR_BLOCK_ID_DATA_SHORT, 4]);
            body.extend_from_slice(&[0xB0; 3]); // block 0 data
            body.extend_from_slice(&[0x1A; 5]); // block 0 image
            body.extend_from_slice(&[0xB1; 2]); // block 1 data
            body.extend_from_slice(b"main");
            record(0, 0, 0, 10, &body)
        };
        assert_eq!(main_data(&build(0x02), BKPIMAGE_COMPRESSED_PG13).unwrap(), b"main");
        assert_eq!(main_data(&build(0x08), BKPIMAGE_COMPRESSED_PG15).unwrap(), b"main");
        // Read with the other major's bits the image looks uncompressed: no hole length,
        // and the lengths no longer add up.
        assert!(main_data(&build(0x02), BKPIMAGE_COMPRESSED_PG15).is_err());
        let mut long = vec![XLR_BLOCK_ID_TOPLEVEL_XID, 1, 2, 3, 4, XLR_BLOCK_ID_DATA_LONG];
        long.extend_from_slice(&300u32.to_le_bytes());
        long.extend_from_slice(&[7; 300]);
        assert_eq!(main_data(&record(0, 0, 0, 1, &long), BKPIMAGE_COMPRESSED_PG15).unwrap(), &[7; 300]);
        assert!(main_data(&record(0, 0, 0, 1, &[40]), BKPIMAGE_COMPRESSED_PG15).is_err());
        assert!(main_data(&record(0, 0, 0, 1, &[XLR_BLOCK_ID_DATA_SHORT, 9, 1]), 0).is_err());
    }

    const PAGE: usize = 8192;
    const SEGMENT: usize = 1 << 20;
    const SEGMENT_START: u64 = 0x10_0000;

    /// A 1 MiB segment of PostgreSQL 15 at 0/1000000 on timeline 1, written as a server does:
    /// records 8-aligned, page headers in between, continuation flags and remaining lengths
    /// on the pages a record runs onto, zeroes after the last record.
    struct TestSegment {
        bytes: Vec<u8>,
        prev: u64,
    }

    impl TestSegment {
        /// Begins with the last `lead` bytes of a record from the previous segment.
        fn new(lead: usize) -> TestSegment {
            let mut t = TestSegment { bytes: Vec::new(), prev: SEGMENT_START - 0x30 };
            t.lay_out(&vec![0x5A; lead], lead > 0);
            t
        }

        fn lsn(&self) -> u64 {
            SEGMENT_START + self.bytes.len() as u64
        }

        fn page_header(&mut self, info: u16, rem_len: usize) {
            let mut h = if self.bytes.is_empty() {
                long_header(15, XLP_LONG_HEADER | info, 1, SEGMENT_START, SEGMENT as u32)
            } else {
                let mut h = long_header(15, info, 1, self.lsn(), SEGMENT as u32);
                h.truncate(SHORT_PAGE_HEADER_LEN);
                h
            };
            h[16..20].copy_from_slice(&(rem_len as u32).to_le_bytes());
            self.bytes.extend_from_slice(&h);
        }

        /// Writes `data` (the rest of a record if `continued`), cut at the segment's end.
        fn lay_out(&mut self, mut data: &[u8], mut continued: bool) {
            while !data.is_empty() || self.bytes.is_empty() {
                if self.bytes.len().is_multiple_of(PAGE) {
                    if self.bytes.len() == SEGMENT {
                        return;
                    }
                    if continued {
                        self.page_header(XLP_FIRST_IS_CONTRECORD, data.len());
                    } else {
                        self.page_header(0, 0);
                    }
                }
                let n = (PAGE - self.bytes.len() % PAGE).min(data.len());
                self.bytes.extend_from_slice(&data[..n]);
                data = &data[n..];
                continued = true;
            }
        }

        /// Adds a record; returns where it starts.
        fn add(&mut self, xid: u32, info: u8, rmid: u8, body: &[u8]) -> u64 {
            if self.bytes.len().is_multiple_of(PAGE) && self.bytes.len() < SEGMENT {
                self.page_header(0, 0);
            }
            let at = self.lsn();
            self.lay_out(&record(xid, self.prev, info, rmid, body), false);
            self.bytes.resize(max_align(self.bytes.len()), 0);
            self.prev = at;
            at
        }

        /// Adds a heap record of `len` bytes.
        fn filler(&mut self, len: usize) -> u64 {
            let mut body = vec![XLR_BLOCK_ID_DATA_LONG];
            body.extend_from_slice(&((len - RECORD_HEADER_LEN - 5) as u32).to_le_bytes());
            body.resize(len - RECORD_HEADER_LEN, 0x11);
            self.add(0, 0, 10, &body)
        }

        fn commit(&mut self, xid: u32, pg_time: i64) -> u64 {
            self.add(xid, XLOG_XACT_COMMIT, RM_XACT_ID, &commit_body(pg_time))
        }

        fn finish(mut self) -> Vec<u8> {
            self.bytes.resize(SEGMENT, 0);
            self.bytes
        }
    }

    fn summarize(bytes: &[u8]) -> SegmentSummary {
        summarize_segment(&"000000010000000000000001".parse().unwrap(), bytes).unwrap()
    }

    fn invalid_because(s: &SegmentSummary, what: &str) -> bool {
        matches!(&s.end_reason, EndReason::Invalid(why) if why.contains(what))
    }

    #[test]
    fn synthetic_segment_summary() {
        let mut t = TestSegment::new(0);
        let first = t.commit(740, 1_000_000);
        let second = t.add(739, XLOG_XACT_ABORT | 0x80, RM_XACT_ID, &commit_body(2_000_000));
        let mut rp = vec![XLR_BLOCK_ID_DATA_SHORT, 72];
        rp.extend_from_slice(&3_000_000i64.to_le_bytes());
        rp.extend_from_slice(b"rp1");
        rp.resize(2 + 72, 0);
        let third = t.add(0, XLOG_RESTORE_POINT, RM_XLOG_ID, &rp);
        let fourth = t.lsn();
        assert_eq!(first, SEGMENT_START + LONG_PAGE_HEADER_LEN as u64);
        let seg = t.finish();

        let s = summarize(&seg);
        assert_eq!(s.header.postgres_major(), 15);
        assert_eq!(s.first_commit_us, Some(POSTGRES_EPOCH_UNIX_US + 1_000_000));
        assert_eq!(s.last_commit_us, Some(POSTGRES_EPOCH_UNIX_US + 2_000_000));
        assert_eq!((s.min_commit_xid, s.max_commit_xid), (Some(739), Some(740)));
        assert_eq!((s.commits, s.aborts), (1, 1));
        let rp1 = RestorePoint {
            name: "rp1".into(),
            lsn: Lsn(third),
            end_lsn: Lsn(fourth),
            time_us: POSTGRES_EPOCH_UNIX_US + 3_000_000,
        };
        assert_eq!(s.restore_points, vec![rp1]);
        assert_eq!(s.end_lsn, Lsn(fourth));
        assert!(invalid_because(&s, "no record at"), "{:?}", s.end_reason);

        // Damage stops the scan at the damaged record.
        let mut damaged = seg.clone();
        damaged[(second - SEGMENT_START) as usize + 30] ^= 1;
        let s = summarize(&damaged);
        assert_eq!((s.end_lsn, s.commits, s.aborts), (Lsn(second), 1, 0));
        assert!(invalid_because(&s, "fails its CRC"), "{:?}", s.end_reason);

        // The first page must be where the name says, and the file no longer than a segment.
        let err = summarize_segment(&"000000010000000000000002".parse().unwrap(), &seg).unwrap_err();
        assert!(err.to_string().contains("its name puts it at 0/200000"), "{err}");
        let err = summarize_segment(&"000000010000000100000001".parse().unwrap(), &seg).unwrap_err();
        assert!(err.to_string().contains("its name puts it at 1/100000"), "{err}");
        let mut longer = seg.clone();
        longer.push(0);
        assert!(summarize_segment(&"000000010000000000000001".parse().unwrap(), &longer).is_err());
        let mut later_timeline = seg.clone();
        later_timeline[4] = 2;
        let err =
            summarize_segment(&"000000010000000000000001".parse().unwrap(), &later_timeline).unwrap_err();
        assert!(err.to_string().contains("timeline 2"), "{err}");
        assert_eq!(err.code(), "bad-wal-segment");
    }

    #[test]
    fn a_switch_ends_the_segment() {
        let mut t = TestSegment::new(0);
        t.commit(1, 1);
        let switch = t.add(0, XLOG_SWITCH, RM_XLOG_ID, &[]);
        t.commit(2, 2);
        let s = summarize(&t.finish());
        assert_eq!((s.end_reason, s.end_lsn, s.commits), (EndReason::Switch, Lsn(switch + 24), 1));
    }

    #[test]
    fn a_broken_back_link_ends_valid_wal() {
        let mut t = TestSegment::new(0);
        t.commit(1, 1);
        let second = t.commit(2, 2);
        t.prev = 0x1234;
        let third = t.commit(3, 3);
        let s = summarize(&t.finish());
        assert_eq!((s.end_lsn, s.commits), (Lsn(third), 2));
        assert!(invalid_because(
            &s,
            &format!("points back to 0/1234, not to the record before it at {}", Lsn(second))
        ));
    }

    #[test]
    fn records_run_across_pages() {
        let mut t = TestSegment::new(0);
        // The commit starts 16 bytes before the end of the first page: its header is split.
        t.filler(PAGE - 16 - LONG_PAGE_HEADER_LEN);
        let split = t.commit(7, 7);
        assert_eq!(split, SEGMENT_START + PAGE as u64 - 16);
        // A record over three pages, then a commit.
        t.filler(3 * PAGE);
        t.commit(8, 8);
        let end = t.lsn();
        let seg = t.finish();
        let s = summarize(&seg);
        assert_eq!((s.commits, s.min_commit_xid, s.max_commit_xid), (2, Some(7), Some(8)));
        assert_eq!(s.end_lsn, Lsn(end));

        // A continuation page that announces the wrong remaining length is not one.
        let mut bad = seg.clone();
        bad[PAGE + 16] ^= 1;
        let s = summarize(&bad);
        assert_eq!((s.commits, s.end_lsn), (0, Lsn(split)));
        assert!(invalid_because(&s, "does not continue the record"), "{:?}", s.end_reason);

        // Nor is a page from elsewhere (a recycled segment's).
        let mut recycled = seg.clone();
        recycled[PAGE + 8] ^= 0x40;
        let s = summarize(&recycled);
        assert_eq!(s.end_lsn, Lsn(split));
        assert!(invalid_because(&s, "a recycled page"), "{:?}", s.end_reason);

        // A copy that stops in the middle of the split record.
        let s = summarize(&seg[..PAGE + 4]);
        assert_eq!((s.commits, s.end_lsn, s.end_reason), (0, Lsn(split), EndReason::Truncated));
    }

    #[test]
    fn records_cross_segment_ends() {
        // The segment starts with 20000 bytes of a record from the previous one.
        let mut t = TestSegment::new(20_000);
        let first = t.commit(1, 1);
        assert_eq!(
            first as usize,
            SEGMENT_START as usize + max_align(LONG_PAGE_HEADER_LEN + 20_000 + 2 * 24)
        );
        // The last record does not end in this segment.
        let last = t.filler(SEGMENT);
        let s = summarize(&t.finish());
        assert_eq!((s.commits, s.end_lsn, s.end_reason), (1, Lsn(last), EndReason::SegmentEnd));

        // A record fills the whole segment: none starts in it.
        let s = summarize(&TestSegment::new(2 * SEGMENT).finish());
        assert_eq!((s.commits, s.end_lsn, s.end_reason), (0, Lsn(SEGMENT_START), EndReason::SegmentEnd));

        // Records up to the last byte of the segment.
        let mut t = TestSegment::new(0);
        t.filler(SEGMENT - LONG_PAGE_HEADER_LEN - (SEGMENT / PAGE - 1) * SHORT_PAGE_HEADER_LEN - 40);
        t.commit(9, 9);
        let s = summarize(&t.finish());
        assert_eq!(
            (s.commits, s.end_lsn, s.end_reason),
            (1, Lsn(SEGMENT_START + SEGMENT as u64), EndReason::SegmentEnd)
        );
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_passed_over() {
        // The server crashed while a record ran onto the second page; after recovery the
        // second page starts afresh with a record saying that the first one was overwritten.
        let mut t = TestSegment::new(0);
        let commit = t.commit(1, 1);
        t.filler(PAGE);
        t.bytes.truncate(PAGE);
        t.page_header(XLP_FIRST_IS_OVERWRITE_CONTRECORD, 0);
        t.prev = commit;
        let mut overwrite = vec![XLR_BLOCK_ID_DATA_SHORT, 16];
        overwrite.extend_from_slice(&[0; 16]);
        t.add(0, 0xD0, RM_XLOG_ID, &overwrite);
        t.commit(2, 2);
        let end = t.lsn();
        let s = summarize(&t.finish());
        assert_eq!((s.commits, s.max_commit_xid, s.end_lsn), (2, Some(2), Lsn(end)));
    }
}

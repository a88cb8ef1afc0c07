//! The control file (`global/pg_control`, `ControlFileData` of `src/include/catalog/pg_control.h`):
//! what a backup needs from it, read by field offset per `pg_control` format version, with its
//! CRC-32C checked.
//!
//! Offsets are those of the x86-64/aarch64 (8-byte `MAXALIGN`, little-endian) builds:
//!
//! ```text
//!   offset  size  field (PostgreSQL 13..=18)
//!        0     8  system_identifier
//!        8     4  pg_control_version      1300 (13..=16), 1700 (17), 1800 (18)
//!       12     4  catalog_version_no
//!       16     4  state (DBState)
//!       24     8  time
//!       32     8  checkPoint               LSN of the latest checkpoint record
//!       40    88  checkPointCopy           redo @40, ThisTimeLineID @48, PrevTimeLineID @52,
//!                                          (17+: wal_level @60, in former padding)
//!      128     8  unloggedLSN
//!      136     8  minRecoveryPoint
//!      144     4  minRecoveryPointTLI
//!      152     8  backupStartPoint
//!      160     8  backupEndPoint
//!      168     1  backupEndRequired
//!      172..200   wal_level, wal_log_hints, MaxConnections, ... track_commit_timestamp
//!      204     4  maxAlign                 8
//!      208     8  floatFormat              1234567.0
//!      216     4  blcksz
//!      220     4  relseg_size
//!      224     4  xlog_blcksz
//!      228     4  xlog_seg_size
//!      232..248   nameDataLen, indexMaxKeys, toast_max_chunk_size, loblksize, float8ByVal
//!      252     4  data_checksum_version    0 = off
//!      256          13..=17: mock_authentication_nonce[32], crc @288 (CRC of bytes 0..288)
//!      256     1  18: default_char_signedness, nonce @257, crc @292 (CRC of bytes 0..292)
//! ```
//!
//! The maxAlign and floatFormat fields are checked as a guard against a wrong layout.

use crate::le::{u32_at, u64_at};
use std::path::Path;

use crate::lsn::{Lsn, TimelineId, WalSegmentSize};
use crc32c::crc32c;

/// The control file's physical size (`PG_CONTROL_FILE_SIZE`); the data is at its start.
pub const PG_CONTROL_FILE_SIZE: usize = 8192;

/// `FLOATFORMAT_VALUE`.
const FLOAT_FORMAT: f64 = 1_234_567.0;

/// Errors of reading a control file.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot read control file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("control file is {len} bytes, too short to hold its data")]
    TooShort { len: usize },
    #[error("control file has format version {version}, which cairn cannot read (known: 1300, 1700, 1800)")]
    UnknownVersion { version: u32 },
    #[error("control file CRC mismatch (stored {stored:08X}, computed {computed:08X}): damaged, or read while being written")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("control file format {version} does not have the expected layout ({what})")]
    LayoutMismatch { version: u32, what: String },
    #[error("control file field {field} is invalid: {reason}")]
    BadField { field: &'static str, reason: String },
}

impl ControlError {
    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Io { .. } => "io",
            ControlError::TooShort { .. }
            | ControlError::CrcMismatch { .. }
            | ControlError::LayoutMismatch { .. }
            | ControlError::BadField { .. } => "control-file-damaged",
            ControlError::UnknownVersion { .. } => "control-file-version",
        }
    }
}

/// Field offsets of one `pg_control` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ControlLayout {
    version: u32,
    /// The PostgreSQL majors that write this format (for messages and tests).
    majors: (u32, u32),
    crc: usize,
}

// Fields before the CRC are at the same offsets in all three formats (see the module doc).
const STATE: usize = 16;
const TIME: usize = 24;
const CHECKPOINT: usize = 32;
const REDO: usize = 40;
const THIS_TLI: usize = 48;
const PREV_TLI: usize = 52;
const MIN_RECOVERY_POINT: usize = 136;
const MIN_RECOVERY_TLI: usize = 144;
const BACKUP_START: usize = 152;
const BACKUP_END: usize = 160;
const BACKUP_END_REQUIRED: usize = 168;
const MAX_ALIGN: usize = 204;
const FLOAT_FORMAT_AT: usize = 208;
const BLCKSZ_AT: usize = 216;
const RELSEG_SIZE_AT: usize = 220;
const XLOG_BLCKSZ_AT: usize = 224;
const XLOG_SEG_SIZE_AT: usize = 228;
const DATA_CHECKSUM_VERSION: usize = 252;

/// The formats cairn reads, by `pg_control_version`.
const LAYOUTS: [ControlLayout; 3] = [
    // 13..=16: PG_CONTROL_VERSION stayed 1300.
    ControlLayout { version: 1300, majors: (13, 16), crc: 288 },
    // 17: CheckPoint gained `int wal_level` after `bool fullPageWrites`, inside padding.
    ControlLayout { version: 1700, majors: (17, 17), crc: 288 },
    // 18: `bool default_char_signedness` after data_checksum_version moves the CRC by 4.
    ControlLayout { version: 1800, majors: (18, 18), crc: 292 },
];

/// The database cluster state recorded in `pg_control` (`DBState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    Startup,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl DbState {
    fn from_raw(raw: u32) -> Option<DbState> {
        Some(match raw {
            0 => DbState::Startup,
            1 => DbState::ShutDown,
            2 => DbState::ShutDownInRecovery,
            3 => DbState::ShuttingDown,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            _ => return None,
        })
    }

    /// Cleanly shut down (as primary or as standby): the files are consistent on their own.
    pub fn is_shut_down(self) -> bool {
        matches!(self, DbState::ShutDown | DbState::ShutDownInRecovery)
    }
}

/// The first fields, at the same place in every format of every flavor: enough to tell
/// clusters apart and to say which format the rest is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlHeader {
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version: u32,
}

impl ControlHeader {
    pub fn parse(bytes: &[u8]) -> Result<ControlHeader, ControlError> {
        if bytes.len() < 16 {
            return Err(ControlError::TooShort { len: bytes.len() });
        }
        Ok(ControlHeader {
            system_identifier: u64_at(bytes, 0),
            pg_control_version: u32_at(bytes, 8),
            catalog_version: u32_at(bytes, 12),
        })
    }
}

/// What a backup needs from `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlFile {
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version: u32,
    pub state: DbState,
    /// Time of the last update of the file, seconds since the Unix epoch.
    pub time: i64,
    /// LSN of the latest checkpoint record.
    pub checkpoint: Lsn,
    /// Where replay starts for that checkpoint.
    pub redo: Lsn,
    pub timeline: TimelineId,
    pub prev_timeline: TimelineId,
    pub min_recovery_point: Lsn,
    /// 0 when there is no minimum recovery point.
    pub min_recovery_point_timeline: u32,
    pub backup_start: Lsn,
    pub backup_end: Lsn,
    pub backup_end_required: bool,
    /// 0 when the cluster has no data checksums.
    pub data_checksum_version: u32,
    pub block_size: u32,
    pub relseg_size: u32,
    pub wal_block_size: u32,
    pub wal_segment_size: WalSegmentSize,
}

fn lsn_at(b: &[u8], at: usize) -> Lsn {
    Lsn(u64_at(b, at))
}

impl ControlFile {
    /// Reads and checks the control file at `path` (for a data directory, join the flavor's
    /// `layout.control_file`).
    pub fn read(path: &Path) -> Result<ControlFile, ControlError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ControlError::Io { path: path.display().to_string(), source })?;
        ControlFile::parse(&bytes)
    }

    /// Parses and checks the contents of a control file: known format, CRC, layout guards.
    pub fn parse(bytes: &[u8]) -> Result<ControlFile, ControlError> {
        let header = ControlHeader::parse(bytes)?;
        let version = header.pg_control_version;
        let layout =
            LAYOUTS.iter().find(|l| l.version == version).ok_or(ControlError::UnknownVersion { version })?;
        if bytes.len() < layout.crc + 4 {
            return Err(ControlError::TooShort { len: bytes.len() });
        }
        let stored = u32_at(bytes, layout.crc);
        let computed = crc32c(&bytes[..layout.crc]);
        if stored != computed {
            return Err(ControlError::CrcMismatch { stored, computed });
        }

        let mismatch = |what: String| ControlError::LayoutMismatch { version, what };
        let max_align = u32_at(bytes, MAX_ALIGN);
        if max_align != 8 {
            return Err(mismatch(format!("maxAlign is {max_align}, expected 8")));
        }
        let float_format = f64::from_bits(u64_at(bytes, FLOAT_FORMAT_AT));
        if float_format != FLOAT_FORMAT {
            return Err(mismatch(format!("floatFormat is {float_format}, expected {FLOAT_FORMAT}")));
        }

        let raw_state = u32_at(bytes, STATE);
        let state = DbState::from_raw(raw_state).ok_or_else(|| ControlError::BadField {
            field: "state",
            reason: format!("unknown state {raw_state}"),
        })?;
        let timeline = |field: &'static str, at: usize| {
            let raw = u32_at(bytes, at);
            TimelineId::new(raw).map_err(|e| ControlError::BadField { field, reason: e.to_string() })
        };
        let seg = u32_at(bytes, XLOG_SEG_SIZE_AT);
        let wal_segment_size = WalSegmentSize::new(u64::from(seg))
            .map_err(|e| ControlError::BadField { field: "xlog_seg_size", reason: e.to_string() })?;

        Ok(ControlFile {
            system_identifier: header.system_identifier,
            pg_control_version: version,
            catalog_version: header.catalog_version,
            state,
            time: u64_at(bytes, TIME) as i64,
            checkpoint: lsn_at(bytes, CHECKPOINT),
            redo: lsn_at(bytes, REDO),
            timeline: timeline("checkPointCopy.ThisTimeLineID", THIS_TLI)?,
            prev_timeline: timeline("checkPointCopy.PrevTimeLineID", PREV_TLI)?,
            min_recovery_point: lsn_at(bytes, MIN_RECOVERY_POINT),
            min_recovery_point_timeline: u32_at(bytes, MIN_RECOVERY_TLI),
            backup_start: lsn_at(bytes, BACKUP_START),
            backup_end: lsn_at(bytes, BACKUP_END),
            backup_end_required: bytes[BACKUP_END_REQUIRED] != 0,
            data_checksum_version: u32_at(bytes, DATA_CHECKSUM_VERSION),
            block_size: u32_at(bytes, BLCKSZ_AT),
            relseg_size: u32_at(bytes, RELSEG_SIZE_AT),
            wal_block_size: u32_at(bytes, XLOG_BLCKSZ_AT),
            wal_segment_size,
        })
    }

    pub fn data_checksums(&self) -> bool {
        self.data_checksum_version != 0
    }

    /// The PostgreSQL majors that write this control file's format.
    pub fn format_majors(&self) -> (u32, u32) {
        LAYOUTS.iter().find(|l| l.version == self.pg_control_version).map_or((0, 0), |l| l.majors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control file of the given format, built field by field at the documented offsets.
    fn synthetic(version: u32) -> Vec<u8> {
        let crc_at = LAYOUTS.iter().find(|l| l.version == version).map_or(288, |l| l.crc);
        let mut b = vec![0u8; PG_CONTROL_FILE_SIZE];
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put64(&mut b, 0, 7_300_000_000_000_000_123);
        put32(&mut b, 8, version);
        put32(&mut b, 12, 202_209_061);
        put32(&mut b, STATE, 1);
        put64(&mut b, TIME, 1_700_000_000);
        put64(&mut b, CHECKPOINT, 0x1_0300_0060);
        put64(&mut b, REDO, 0x1_0300_0028);
        put32(&mut b, THIS_TLI, 3);
        put32(&mut b, PREV_TLI, 2);
        put32(&mut b, MAX_ALIGN, 8);
        b[FLOAT_FORMAT_AT..FLOAT_FORMAT_AT + 8].copy_from_slice(&FLOAT_FORMAT.to_le_bytes());
        put32(&mut b, BLCKSZ_AT, 8192);
        put32(&mut b, RELSEG_SIZE_AT, 131_072);
        put32(&mut b, XLOG_BLCKSZ_AT, 8192);
        put32(&mut b, XLOG_SEG_SIZE_AT, 64 << 20);
        put32(&mut b, DATA_CHECKSUM_VERSION, 1);
        let crc = crc32c(&b[..crc_at]);
        put32(&mut b, crc_at, crc);
        b
    }

    #[test]
    fn every_known_format_parses() {
        for layout in LAYOUTS {
            let c = ControlFile::parse(&synthetic(layout.version)).unwrap();
            assert_eq!(c.system_identifier, 7_300_000_000_000_000_123);
            assert_eq!(c.pg_control_version, layout.version);
            assert_eq!(c.catalog_version, 202_209_061);
            assert_eq!(c.state, DbState::ShutDown);
            assert_eq!(c.checkpoint.to_string(), "1/3000060");
            assert_eq!(c.redo.to_string(), "1/3000028");
            assert_eq!((c.timeline.get(), c.prev_timeline.get()), (3, 2));
            assert_eq!(c.wal_segment_size.bytes(), 64 << 20);
            assert_eq!((c.block_size, c.relseg_size, c.wal_block_size), (8192, 131_072, 8192));
            assert!(c.data_checksums());
            assert_eq!(c.format_majors(), layout.majors);
        }
    }

    #[test]
    fn the_crc_is_checked() {
        for layout in LAYOUTS {
            let mut b = synthetic(layout.version);
            b[DATA_CHECKSUM_VERSION] = 0;
            assert!(matches!(ControlFile::parse(&b), Err(ControlError::CrcMismatch { .. })));
        }
    }

    #[test]
    fn pg18_crc_is_not_where_earlier_formats_keep_it() {
        // A PG18 file read with the 1300 layout would fail its CRC, and vice versa.
        let mut b = synthetic(1800);
        b[8..12].copy_from_slice(&1300u32.to_le_bytes());
        assert!(matches!(ControlFile::parse(&b), Err(ControlError::CrcMismatch { .. })));
    }

    #[test]
    fn unknown_formats_are_refused_but_the_header_reads() {
        let b = synthetic(1201);
        assert!(matches!(ControlFile::parse(&b), Err(ControlError::UnknownVersion { version: 1201 })));
        let h = ControlHeader::parse(&b).unwrap();
        assert_eq!((h.system_identifier, h.pg_control_version), (7_300_000_000_000_000_123, 1201));
    }

    #[test]
    fn short_and_odd_files_are_errors_not_panics() {
        assert!(matches!(ControlFile::parse(&[]), Err(ControlError::TooShort { .. })));
        let b = synthetic(1300);
        assert!(matches!(ControlFile::parse(&b[..200]), Err(ControlError::TooShort { .. })));
        // A consistent CRC over a wrong layout is caught by the guards.
        let mut b = synthetic(1300);
        b[MAX_ALIGN] = 4;
        let crc = crc32c(&b[..288]);
        b[288..292].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(ControlFile::parse(&b), Err(ControlError::LayoutMismatch { .. })));
        let mut b = synthetic(1300);
        b[XLOG_SEG_SIZE_AT..XLOG_SEG_SIZE_AT + 4].copy_from_slice(&1000u32.to_le_bytes());
        let crc = crc32c(&b[..288]);
        b[288..292].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(ControlFile::parse(&b), Err(ControlError::BadField { field: "xlog_seg_size", .. })));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let err = ControlFile::read(Path::new("/nonexistent/global/pg_control")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/global/pg_control"), "{err}");
        assert_eq!(err.code(), "io");
    }
}

//! WAL positions and names: `Lsn`, `TimelineId`, the WAL segment size, segment file names
//! (`000000010000000000000003`) and the other files of a WAL archive (`.history`, `.partial`,
//! `.backup`), printed and parsed exactly as PostgreSQL does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors of parsing or converting WAL positions and names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsnError {
    #[error("'{0}' is not an LSN (two groups of 1 to 8 hex digits, such as 16/B374D848)")]
    BadLsn(String),
    #[error("'{0}' is not a timeline id (a number from 1 to 4294967295)")]
    BadTimeline(String),
    #[error("{0} bytes is not a valid WAL segment size (a power of two from 1 MiB to 1 GiB)")]
    BadSegmentSize(u64),
    #[error("'{0}' is not a WAL segment name (24 upper-case hex digits)")]
    BadSegmentName(String),
    #[error("'{0}' is not the name of a WAL archive file (segment, .partial, .history or .backup)")]
    BadWalFileName(String),
    #[error("WAL segment {name} does not exist with {segment_size}-byte segments (segment part must be below {limit:08X})")]
    SegmentOutOfRange { name: String, segment_size: u32, limit: u32 },
    #[error("WAL position overflows after segment {0}")]
    Overflow(String),
}

impl LsnError {
    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            LsnError::BadLsn(_) => "bad-lsn",
            LsnError::BadTimeline(_) => "bad-timeline",
            LsnError::BadSegmentSize(_) => "bad-wal-segment-size",
            LsnError::BadSegmentName(_) | LsnError::BadWalFileName(_) => "bad-wal-file-name",
            LsnError::SegmentOutOfRange { .. } => "bad-wal-file-name",
            LsnError::Overflow(_) => "wal-position-overflow",
        }
    }
}

/// A position in the write-ahead log (PostgreSQL's `XLogRecPtr` / `pg_lsn`), shown as
/// PostgreSQL shows it: two upper-case hex numbers without padding, `16/B374D848`, `0/3000028`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, PostgreSQL's `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);

    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// The number of the segment that holds this position (`XLByteToSeg`).
    pub fn segment_number(self, size: WalSegmentSize) -> u64 {
        self.0 / u64::from(size.bytes())
    }

    /// Where this position falls inside its segment (`XLogSegmentOffset`).
    pub fn segment_offset(self, size: WalSegmentSize) -> u32 {
        // The remainder is below the segment size, itself at most 1 GiB.
        (self.0 % u64::from(size.bytes())) as u32
    }

    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Parses one half of an LSN the way `pg_lsn_in` does: 1 to 8 hex digits, either case.
fn parse_hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl FromStr for Lsn {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnError::BadLsn(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hi = parse_hex_u32(hi).ok_or_else(bad)?;
        let lo = parse_hex_u32(lo).ok_or_else(bad)?;
        Ok(Lsn(u64::from(hi) << 32 | u64::from(lo)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A timeline id (`TimeLineID`). Shown in decimal, as `pg_controldata` and `backup_label` do;
/// WAL file names carry it as eight hex digits. Serialized as a JSON number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TimelineId(u32);

impl TimelineId {
    /// The timeline every cluster starts on.
    pub const FIRST: TimelineId = TimelineId(1);

    /// A timeline id; 0 is not one (PostgreSQL numbers timelines from 1).
    pub fn new(id: u32) -> Result<TimelineId, LsnError> {
        if id == 0 {
            return Err(LsnError::BadTimeline(id.to_string()));
        }
        Ok(TimelineId(id))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for TimelineId {
    type Error = LsnError;
    fn try_from(id: u32) -> Result<Self, Self::Error> {
        TimelineId::new(id)
    }
}

impl From<TimelineId> for u32 {
    fn from(t: TimelineId) -> u32 {
        t.0
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimelineId {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id: u32 = s.parse().map_err(|_| LsnError::BadTimeline(s.to_string()))?;
        TimelineId::new(id).map_err(|_| LsnError::BadTimeline(s.to_string()))
    }
}

/// The size of a WAL segment file (`wal_segment_size`, set by `initdb --wal-segsize`): a power
/// of two from 1 MiB to 1 GiB, 16 MiB unless the cluster was made otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct WalSegmentSize(u32);

impl WalSegmentSize {
    pub const MIN: u32 = 1 << 20;
    pub const MAX: u32 = 1 << 30;
    pub const DEFAULT: WalSegmentSize = WalSegmentSize(16 << 20);

    pub fn new(bytes: u64) -> Result<WalSegmentSize, LsnError> {
        match u32::try_from(bytes) {
            Ok(b) if b.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&b) => Ok(WalSegmentSize(b)),
            _ => Err(LsnError::BadSegmentSize(bytes)),
        }
    }

    pub fn bytes(self) -> u32 {
        self.0
    }

    /// Segments per 4 GiB "xlogid" (`XLogSegmentsPerXLogId`): the wrap-around point of the
    /// last eight digits of a segment name.
    pub fn segments_per_xlogid(self) -> u32 {
        // 2^32 / size, with size at least 2^20: fits comfortably.
        ((1u64 << 32) / u64::from(self.0)) as u32
    }
}

impl Default for WalSegmentSize {
    fn default() -> Self {
        WalSegmentSize::DEFAULT
    }
}

impl TryFrom<u64> for WalSegmentSize {
    type Error = LsnError;
    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        WalSegmentSize::new(bytes)
    }
}

impl From<WalSegmentSize> for u64 {
    fn from(s: WalSegmentSize) -> u64 {
        u64::from(s.0)
    }
}

/// The name of a WAL segment file, `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, then the segment
/// number split into "log" (high part) and "seg" (low part) as `XLogFileName` prints them.
///
/// The name alone does not say how large the segments are; what needs the segment number
/// (conversion to and from LSNs, the next segment) takes the [`WalSegmentSize`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalSegmentName {
    timeline: TimelineId,
    log: u32,
    seg: u32,
}

impl WalSegmentName {
    /// The segment with number `segno` on `timeline` (`XLogFileName`); an error if that
    /// segment would start beyond the 64-bit WAL address space.
    pub fn from_segment_number(
        timeline: TimelineId,
        segno: u64,
        size: WalSegmentSize,
    ) -> Result<WalSegmentName, LsnError> {
        if segno.checked_mul(u64::from(size.bytes())).is_none() {
            return Err(LsnError::Overflow(format!("segment number {segno}")));
        }
        Ok(WalSegmentName::split(timeline, segno, size))
    }

    /// `segno` must address a position inside the 64-bit WAL space, so that
    /// `segno / segments_per_xlogid` is below 2^32.
    fn split(timeline: TimelineId, segno: u64, size: WalSegmentSize) -> WalSegmentName {
        let per = u64::from(size.segments_per_xlogid());
        WalSegmentName { timeline, log: (segno / per) as u32, seg: (segno % per) as u32 }
    }

    /// The segment that holds `lsn` on `timeline` (`XLByteToSeg` + `XLogFileName`).
    pub fn from_lsn(timeline: TimelineId, lsn: Lsn, size: WalSegmentSize) -> WalSegmentName {
        WalSegmentName::split(timeline, lsn.segment_number(size), size)
    }

    /// The segment that holds the byte just before `lsn` (`XLByteToPrevSeg`): the last
    /// segment a backup ending at `lsn` needs. `lsn` must be valid (non-zero).
    pub fn from_end_lsn(timeline: TimelineId, lsn: Lsn, size: WalSegmentSize) -> WalSegmentName {
        WalSegmentName::from_lsn(timeline, Lsn(lsn.0.saturating_sub(1)), size)
    }

    pub fn timeline(&self) -> TimelineId {
        self.timeline
    }

    /// The segment number (`XLogFromFileName`); an error if the low part is out of range for
    /// this segment size (such a file cannot have been written by a cluster of that size).
    pub fn segment_number(&self, size: WalSegmentSize) -> Result<u64, LsnError> {
        let per = size.segments_per_xlogid();
        if self.seg >= per {
            return Err(LsnError::SegmentOutOfRange {
                name: self.to_string(),
                segment_size: size.bytes(),
                limit: per,
            });
        }
        Ok(u64::from(self.log) * u64::from(per) + u64::from(self.seg))
    }

    /// The first position inside this segment (`XLogSegNoOffsetToRecPtr` with offset 0).
    pub fn start_lsn(&self, size: WalSegmentSize) -> Result<Lsn, LsnError> {
        let segno = self.segment_number(size)?;
        segno
            .checked_mul(u64::from(size.bytes()))
            .map(Lsn)
            .ok_or_else(|| LsnError::Overflow(self.to_string()))
    }

    /// The following segment on the same timeline.
    pub fn next(&self, size: WalSegmentSize) -> Result<WalSegmentName, LsnError> {
        let segno = self.segment_number(size)?;
        // The last segment of the WAL space has no successor.
        let next = segno.checked_add(1).ok_or_else(|| LsnError::Overflow(self.to_string()))?;
        WalSegmentName::from_segment_number(self.timeline, next, size)
            .map_err(|_| LsnError::Overflow(self.to_string()))
    }

    /// This segment's name on another timeline (same position).
    pub fn with_timeline(&self, timeline: TimelineId) -> WalSegmentName {
        WalSegmentName { timeline, ..*self }
    }
}

impl fmt::Display for WalSegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline.0, self.log, self.seg)
    }
}

impl fmt::Debug for WalSegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalSegmentName({self})")
    }
}

/// Exactly `len` upper-case hex digits, as `IsXLogFileName` and friends accept them.
fn parse_upper_hex(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl FromStr for WalSegmentName {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnError::BadSegmentName(s.to_string());
        if s.len() != 24 || !s.is_ascii() {
            return Err(bad());
        }
        let tli = parse_upper_hex(&s[0..8], 8).ok_or_else(bad)?;
        let log = parse_upper_hex(&s[8..16], 8).ok_or_else(bad)?;
        let seg = parse_upper_hex(&s[16..24], 8).ok_or_else(bad)?;
        let timeline = TimelineId::new(tli).map_err(|_| bad())?;
        Ok(WalSegmentName { timeline, log, seg })
    }
}

impl Serialize for WalSegmentName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WalSegmentName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A file that `archive_command` may be asked to store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// A complete segment, `000000010000000000000003`.
    Segment(WalSegmentName),
    /// The last, incomplete segment of an old timeline after promotion,
    /// `000000010000000000000003.partial`.
    Partial(WalSegmentName),
    /// A timeline history file, `00000002.history`.
    History(TimelineId),
    /// A backup history file, `000000010000000000000003.00000028.backup`: the segment of the
    /// backup's start and the start position's offset in it.
    Backup { segment: WalSegmentName, offset: u32 },
}

impl WalFileName {
    /// The segment this file belongs to, if it belongs to one.
    pub fn segment(&self) -> Option<WalSegmentName> {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => Some(*s),
            WalFileName::Backup { segment, .. } => Some(*segment),
            WalFileName::History(_) => None,
        }
    }

    pub fn timeline(&self) -> TimelineId {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => s.timeline(),
            WalFileName::Backup { segment, .. } => segment.timeline(),
            WalFileName::History(t) => *t,
        }
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
            WalFileName::History(t) => write!(f, "{:08X}.history", t.0),
            WalFileName::Backup { segment, offset } => write!(f, "{segment}.{offset:08X}.backup"),
        }
    }
}

impl FromStr for WalFileName {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnError::BadWalFileName(s.to_string());
        if let Some(tli) = s.strip_suffix(".history") {
            let id = parse_upper_hex(tli, 8).ok_or_else(bad)?;
            return Ok(WalFileName::History(TimelineId::new(id).map_err(|_| bad())?));
        }
        if let Some(seg) = s.strip_suffix(".partial") {
            return Ok(WalFileName::Partial(seg.parse().map_err(|_| bad())?));
        }
        if let Some(rest) = s.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.').ok_or_else(bad)?;
            let segment = seg.parse().map_err(|_| bad())?;
            let offset = parse_upper_hex(offset, 8).ok_or_else(bad)?;
            return Ok(WalFileName::Backup { segment, offset });
        }
        s.parse().map(WalFileName::Segment).map_err(|_| bad())
    }
}

impl Serialize for WalFileName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WalFileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tli(n: u32) -> TimelineId {
        TimelineId::new(n).unwrap()
    }

    fn size(mib: u64) -> WalSegmentSize {
        WalSegmentSize::new(mib << 20).unwrap()
    }

    #[test]
    fn lsn_prints_like_postgres() {
        assert_eq!(Lsn(0x3000028).to_string(), "0/3000028");
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn lsn_parses_what_pg_lsn_in_accepts() {
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("00000000/00000001".parse::<Lsn>().unwrap(), Lsn(1));
        for bad in ["", "/", "0/", "/0", "0/0/0", "123456789/0", "0/123456789", "-1/0", "+1/0", "g/0", " 0/0"]
        {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn lsn_serializes_as_a_string() {
        let json = serde_json::to_string(&Lsn(0x3000028)).unwrap();
        assert_eq!(json, "\"0/3000028\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(0x3000028));
        assert!(serde_json::from_str::<Lsn>("\"x\"").is_err());
    }

    #[test]
    fn timeline_zero_is_refused() {
        assert!(TimelineId::new(0).is_err());
        assert!("0".parse::<TimelineId>().is_err());
        assert!(serde_json::from_str::<TimelineId>("0").is_err());
        assert_eq!(serde_json::from_str::<TimelineId>("7").unwrap(), tli(7));
        assert_eq!(serde_json::to_string(&tli(7)).unwrap(), "7");
    }

    #[test]
    fn segment_size_must_be_a_power_of_two_from_1mib_to_1gib() {
        for ok in [1u64 << 20, 2 << 20, 16 << 20, 64 << 20, 1 << 30] {
            assert!(WalSegmentSize::new(ok).is_ok(), "{ok}");
        }
        for bad in [0u64, 1, 512 << 10, 3 << 20, 2 << 30, 1 << 40, u64::MAX] {
            assert!(WalSegmentSize::new(bad).is_err(), "{bad}");
        }
        assert_eq!(WalSegmentSize::default().bytes(), 16 << 20);
        assert_eq!(WalSegmentSize::DEFAULT.segments_per_xlogid(), 256);
        assert_eq!(serde_json::to_string(&size(16)).unwrap(), "16777216");
        assert!(serde_json::from_str::<WalSegmentSize>("1000").is_err());
    }

    #[test]
    fn segment_name_of_an_lsn_matches_pg_walfile_name() {
        // SELECT pg_walfile_name('0/3000028') on timeline 1 with 16 MiB segments.
        let name = WalSegmentName::from_lsn(tli(1), Lsn(0x3000028), size(16));
        assert_eq!(name.to_string(), "000000010000000000000003");
        // 16/B374D848 is segment 0x16B3 = log 0x16, seg 0xB3.
        let name = WalSegmentName::from_lsn(tli(2), Lsn(0x16_B374_D848), size(16));
        assert_eq!(name.to_string(), "0000000200000016000000B3");
        // With 1 GiB segments there are four segments per xlogid.
        let name = WalSegmentName::from_lsn(tli(1), Lsn(0x16_B374_D848), size(1024));
        assert_eq!(name.to_string(), "000000010000001600000002");
        // A backup ending exactly at a segment boundary needs only the previous segment.
        let end = WalSegmentName::from_end_lsn(tli(1), Lsn(0x4000000), size(16));
        assert_eq!(end.to_string(), "000000010000000000000003");
    }

    #[test]
    fn next_segment_wraps_into_the_next_xlogid() {
        let s: WalSegmentName = "0000000100000000000000FF".parse().unwrap();
        assert_eq!(s.next(size(16)).unwrap().to_string(), "000000010000000100000000");
        let s: WalSegmentName = "000000010000000000000003".parse().unwrap();
        assert_eq!(s.next(size(1024)).unwrap().to_string(), "000000010000000100000000");
        assert_eq!(s.next(size(1)).unwrap().to_string(), "000000010000000000000004");
        let last = WalSegmentName::from_lsn(tli(1), Lsn(u64::MAX), size(16));
        assert_eq!(last.to_string(), "00000001FFFFFFFF000000FF");
        assert!(last.next(size(16)).is_err());
    }

    #[test]
    fn segment_part_must_fit_the_segment_size() {
        let s: WalSegmentName = "000000010000000000000004".parse().unwrap();
        assert!(s.segment_number(size(16)).is_ok());
        let err = s.segment_number(size(1024)).unwrap_err();
        assert!(matches!(err, LsnError::SegmentOutOfRange { limit: 4, .. }), "{err}");
    }

    #[test]
    fn segment_names_are_strict() {
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000030",
            "00000001000000000000000g",
            "00000001000000000000000a",
            "000000000000000000000003",
            "00000001000000000000000é",
        ] {
            assert!(bad.parse::<WalSegmentName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn archive_file_names_are_recognised() {
        let cases = [
            ("000000010000000000000003", "segment"),
            ("000000010000000000000003.partial", "partial"),
            ("00000002.history", "history"),
            ("000000010000000000000003.00000028.backup", "backup"),
        ];
        for (name, kind) in cases {
            let parsed: WalFileName = name.parse().unwrap();
            let got = match parsed {
                WalFileName::Segment(_) => "segment",
                WalFileName::Partial(_) => "partial",
                WalFileName::History(_) => "history",
                WalFileName::Backup { .. } => "backup",
            };
            assert_eq!(got, kind, "{name}");
            assert_eq!(parsed.to_string(), name);
        }
        let b: WalFileName = "000000010000000000000003.00000028.backup".parse().unwrap();
        assert_eq!(
            b,
            WalFileName::Backup { segment: "000000010000000000000003".parse().unwrap(), offset: 0x28 }
        );
        assert_eq!(b.timeline(), tli(1));
        for bad in [
            "00000000.history",
            "0000002.history",
            "000000010000000000000003.ready",
            "000000010000000000000003.28.backup",
            "000000010000000000000003.partial.partial",
            "archive_status",
            "00000001.history.partial",
        ] {
            assert!(bad.parse::<WalFileName>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"000000010000000000000003.00000028.backup\"");
        assert_eq!(serde_json::from_str::<WalFileName>(&json).unwrap(), b);
    }

    fn any_size() -> impl Strategy<Value = WalSegmentSize> {
        (20u32..=30).prop_map(|shift| WalSegmentSize::new(1u64 << shift).unwrap())
    }

    fn any_tli() -> impl Strategy<Value = TimelineId> {
        (1u32..=u32::MAX).prop_map(|t| TimelineId::new(t).unwrap())
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            let s = Lsn(v).to_string();
            prop_assert_eq!(s.parse::<Lsn>().unwrap(), Lsn(v));
            prop_assert_eq!(s.to_uppercase(), s.clone());
            let json = serde_json::to_string(&Lsn(v)).unwrap();
            prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(v));
        }

        #[test]
        fn lsn_parser_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<Lsn>();
            let _ = s.parse::<WalFileName>();
        }

        #[test]
        fn segment_name_round_trips(t in any_tli(), v in any::<u64>(), sz in any_size()) {
            let name = WalSegmentName::from_lsn(t, Lsn(v), sz);
            let text = name.to_string();
            prop_assert_eq!(text.len(), 24);
            let back: WalSegmentName = text.parse().unwrap();
            prop_assert_eq!(back, name);
            prop_assert_eq!(back.segment_number(sz).unwrap(), v / u64::from(sz.bytes()));
            let start = back.start_lsn(sz).unwrap();
            prop_assert!(start <= Lsn(v));
            prop_assert!(Lsn(v).0 - start.0 < u64::from(sz.bytes()));
            prop_assert_eq!(WalSegmentName::from_lsn(t, start, sz), name);
            if let Ok(next) = name.next(sz) {
                prop_assert_eq!(next.segment_number(sz).unwrap(), back.segment_number(sz).unwrap() + 1);
                prop_assert!(next > name);
            }
        }

        #[test]
        fn wal_file_names_round_trip(t in any_tli(), v in any::<u64>(), sz in any_size(), kind in 0u8..4) {
            let seg = WalSegmentName::from_lsn(t, Lsn(v), sz);
            let f = match kind {
                0 => WalFileName::Segment(seg),
                1 => WalFileName::Partial(seg),
                2 => WalFileName::History(t),
                _ => WalFileName::Backup { segment: seg, offset: Lsn(v).segment_offset(sz) },
            };
            prop_assert_eq!(f.to_string().parse::<WalFileName>().unwrap(), f);
        }
    }
}

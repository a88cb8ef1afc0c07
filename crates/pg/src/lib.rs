//! cairn's adapter to the PostgreSQL family (PostgreSQL 13–18, openGauss, KingbaseES): the
//! flavor table, WAL positions and names, WAL segment and timeline history files, `pg_control`,
//! page checksums and the data-directory walk with the server's own exclusion rules. Knows
//! nothing of the repository format.

#![forbid(unsafe_code)]

pub mod control;
pub mod datadir;
pub mod flavor;
mod le;
pub mod lsn;
pub mod page;
pub mod relfile;
pub mod wal;

pub use control::{ControlError, ControlFile, ControlHeader, DbState};
pub use datadir::{
    walk_data_dir, DataDirEntry, DataDirWalk, EntryKind, Excluded, ExclusionReason, WalkError, WalkOptions,
};
pub use flavor::{Engine, Flavor, FlavorError, FlavorInfo, FLAVORS, SUPPORTED_POSTGRES_MAJORS};
pub use lsn::{Lsn, LsnError, TimelineId, WalFileName, WalSegmentName, WalSegmentSize};
pub use page::{
    page_is_new, page_lsn, pg_checksum_page, relation_block, verify_page, PageVerdict, BLCKSZ, RELSEG_SIZE,
};
pub use relfile::{relation_locator, Fork, RelationFileName, RelationLocator};
pub use wal::{
    page_magic, parse_history, read_segment_header, summarize_segment, EndReason, HistoryEntry, RestorePoint,
    SegmentHeader, SegmentSummary, WalError,
};

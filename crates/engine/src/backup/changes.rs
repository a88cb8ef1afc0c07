//! Which parts of relation files changed since the parent backup, so that an incremental
//! reads only those. Two sources, best first:
//!
//! - PostgreSQL 17+'s WAL summaries (`summarize_wal = on`): every block any WAL record touched
//!   between the parent's start and ours, read from the server without reading the files;
//!   untouched pieces are taken from the parent unread.
//! - The page LSNs: every piece is read (and its checksums verified), but one whose pages all
//!   carry an LSN older than the parent's start is the parent's piece, not hashed or stored.
//!
//! A piece is one fixed chunk of the repository (a whole number of pages), so that an
//! unchanged piece is exactly one chunk of the parent's file.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_pg::{relation_locator, Fork, Lsn, TimelineId, BLCKSZ, RELSEG_SIZE};

use crate::error::{EngineError, Result};

/// How an incremental backup finds what changed inside relation files.
#[derive(Debug)]
pub(crate) enum ChangeSource {
    /// Blocks the WAL summaries name.
    Summaries(ChangedPieces),
    /// Pages whose LSN is at or after the parent's start.
    PageLsn(Lsn),
}

impl ChangeSource {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ChangeSource::Summaries(_) => "wal-summaries",
            ChangeSource::PageLsn(_) => "page-lsn",
        }
    }
}

/// What the pieces of one relation file segment need.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileChanges<'a> {
    /// Read it all.
    Everything,
    /// Read the pieces of the fork's `touched` (numbered from the fork's start, where this
    /// segment's piece 0 is `first`), and every piece from `from` on (numbered from the
    /// segment's start).
    Pieces { touched: Option<&'a HashSet<u64>>, first: u64, from: Option<u64> },
}

impl FileChanges<'_> {
    /// Whether piece `piece` of the segment (counted from its start) must be read.
    pub(crate) fn touches(&self, piece: u64) -> bool {
        match self {
            FileChanges::Everything => true,
            FileChanges::Pieces { touched, first, from } => {
                from.is_some_and(|f| piece >= f) || touched.is_some_and(|t| t.contains(&(first + piece)))
            }
        }
    }
}

type RelKey = (u32, u32, u32, i16);

/// The pieces WAL records touched, by relation fork (piece numbers counted from block 0 of
/// the fork, across its segments).
#[derive(Debug, Default)]
pub(crate) struct ChangedPieces {
    pages_per_piece: u64,
    pieces: HashMap<RelKey, HashSet<u64>>,
    /// The smallest size (in blocks) each fork was truncated to; blocks from there on are new.
    limits: HashMap<RelKey, u64>,
    /// Databases created in the range: all their files are new.
    new_databases: HashSet<(u32, u32)>,
}

impl ChangedPieces {
    /// What the relation file at `rel_path` needs.
    pub(crate) fn for_file(&self, rel_path: &str) -> FileChanges<'_> {
        let Some(loc) = relation_locator(rel_path) else { return FileChanges::Everything };
        // The free space map is not WAL-logged.
        if loc.file.fork == Fork::Fsm || self.new_databases.contains(&(loc.tablespace, loc.database)) {
            return FileChanges::Everything;
        }
        let key = (loc.tablespace, loc.database, loc.file.relnumber, loc.file.fork.number());
        let first_block = u64::from(loc.file.segment) * u64::from(RELSEG_SIZE);
        let from = match self.limits.get(&key) {
            Some(&limit) if limit <= first_block => return FileChanges::Everything,
            Some(&limit) => Some((limit - first_block) / self.pages_per_piece),
            None => None,
        };
        // A segment is a whole number of pieces, so none straddles two.
        FileChanges::Pieces {
            touched: self.pieces.get(&key),
            first: first_block / self.pages_per_piece,
            from,
        }
    }
}

/// Refuses, before a backup starts, a server without WAL summaries (`-b PAGE`/`PTRACK`).
pub(crate) fn check_summaries_on(client: &mut postgres::Client, version_num: u32) -> Result<()> {
    let why = match summaries_off(client, version_num)? {
        None => return Ok(()),
        Some(why) => why,
    };
    Err(EngineError::Invalid(format!(
        "-b PAGE and -b PTRACK take the changed blocks from the server's WAL summaries, but {why}; \
         take -b DELTA instead (it reads changed files and compares page LSNs), or set summarize_wal = on \
         (PostgreSQL 17 and later)"
    )))
}

/// Why the server keeps no WAL summaries, if it does not.
fn summaries_off(client: &mut postgres::Client, version_num: u32) -> Result<Option<String>> {
    if version_num < 170000 {
        return Ok(Some("the server has no WAL summaries before PostgreSQL 17".into()));
    }
    let on: String = client
        .query_one("SHOW summarize_wal", &[])
        .map_err(|error| EngineError::Database { during: "reading WAL summaries", error })?
        .get(0);
    Ok((on != "on").then(|| "summarize_wal is off".into()))
}

/// Reads the WAL summaries covering `from..to` on `timeline`, waiting (up to `wait`) for the
/// summarizer to reach `to`. `Ok(Err(why))` when they cannot be used (older server,
/// summarization off or behind, summaries removed, a timeline switch).
pub(crate) fn from_wal_summaries(
    client: &mut postgres::Client,
    version_num: u32,
    timeline: TimelineId,
    (from, to): (Lsn, Lsn),
    pages_per_piece: u64,
    wait: Duration,
) -> Result<std::result::Result<ChangedPieces, String>> {
    if let Some(why) = summaries_off(client, version_num)? {
        return Ok(Err(why));
    }
    let db = |error| EngineError::Database { during: "reading WAL summaries", error };
    let tli = i64::from(timeline.get());
    let deadline = Instant::now() + wait;
    loop {
        let row = client
            .query_one("SELECT summarized_tli, summarized_lsn::text FROM pg_get_wal_summarizer_state()", &[])
            .map_err(db)?;
        let at: Lsn = row.get::<_, String>(1).parse().unwrap_or(Lsn(0));
        if row.get::<_, i64>(0) == tli && at >= to {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(Err(format!("the WAL summarizer is at {at}, behind the backup start {to}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let range = [&tli as &(dyn postgres::types::ToSql + Sync), &from.to_string(), &to.to_string()];
    let summaries = client
        .query(
            "SELECT start_lsn::text, end_lsn::text FROM pg_available_wal_summaries() \
             WHERE tli = $1 AND end_lsn > $2::text::pg_lsn AND start_lsn < $3::text::pg_lsn ORDER BY start_lsn",
            &range,
        )
        .map_err(db)?;
    let mut covered = from;
    for row in &summaries {
        let (start, end): (Lsn, Lsn) = (
            row.get::<_, String>(0).parse().unwrap_or(Lsn(u64::MAX)),
            row.get::<_, String>(1).parse().unwrap_or(Lsn(0)),
        );
        if start > covered {
            break;
        }
        covered = covered.max(end);
    }
    if covered < to {
        return Ok(Err(format!(
            "no WAL summary covers {covered} (removed after wal_summary_keep_time, or a timeline switch)"
        )));
    }
    let per_piece = pages_per_piece as i64;
    let rows = client
        .query(
            "SELECT DISTINCT c.reltablespace::int8, c.reldatabase::int8, c.relfilenode::int8, c.relforknumber, \
             c.is_limit_block, CASE WHEN c.is_limit_block THEN c.relblocknumber ELSE c.relblocknumber / $4 END \
             FROM pg_available_wal_summaries() s, pg_wal_summary_contents(s.tli, s.start_lsn, s.end_lsn) c \
             WHERE s.tli = $1 AND s.end_lsn > $2::text::pg_lsn AND s.start_lsn < $3::text::pg_lsn",
            &[range[0], range[1], range[2], &per_piece],
        )
        .map_err(db)?;
    let mut changes = ChangedPieces { pages_per_piece, ..Default::default() };
    for row in rows {
        let key: RelKey = (
            row.get::<_, i64>(0) as u32,
            row.get::<_, i64>(1) as u32,
            row.get::<_, i64>(2) as u32,
            row.get(3),
        );
        let value = row.get::<_, i64>(5) as u64;
        if key.2 == 0 {
            changes.new_databases.insert((key.0, key.1));
        } else if row.get::<_, bool>(4) {
            let limit = changes.limits.entry(key).or_insert(value);
            *limit = (*limit).min(value);
        } else {
            changes.pieces.entry(key).or_default().insert(value);
        }
    }
    Ok(Ok(changes))
}

/// Whether every page of `piece` is an initialised page last changed before `lsn`.
pub(crate) fn older_than(piece: &[u8], lsn: Lsn) -> bool {
    piece.chunks(BLCKSZ).all(|page| {
        <&[u8; BLCKSZ]>::try_from(page)
            .is_ok_and(|p| p.iter().any(|&b| b != 0) && cairn_pg::page_lsn(p) < lsn)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 pages a piece; relation 16384 of database 5 touched in blocks 0, 40 and 131072 + 33
    /// (its second segment), truncated to 200 blocks; relation 16390 never touched.
    fn changes() -> ChangedPieces {
        let key = (1663, 5, 16384, 0);
        let mut c = ChangedPieces { pages_per_piece: 16, ..Default::default() };
        c.pieces.insert(key, [0, 2, (131_072 + 33) / 16].into_iter().collect());
        c.limits.insert(key, 200);
        c.new_databases.insert((1663, 7));
        c
    }

    #[test]
    fn pieces_of_each_segment_and_from_the_truncation_on() {
        let c = changes();
        let first = c.for_file("base/5/16384");
        let read: Vec<u64> = (0..20).filter(|&p| first.touches(p)).collect();
        assert_eq!(read, [0, 2, 12, 13, 14, 15, 16, 17, 18, 19]); // block 200 is in piece 12
                                                                  // The second segment starts past the truncation: read whole.
        assert_eq!(c.for_file("base/5/16384.1"), FileChanges::Everything);
        let untouched = c.for_file("base/5/16390.1");
        assert!((0..8192).all(|p| !untouched.touches(p)));
    }

    #[test]
    fn free_space_maps_new_databases_and_other_files_are_read_whole() {
        let c = changes();
        assert_eq!(c.for_file("base/5/16390_fsm"), FileChanges::Everything);
        assert_eq!(c.for_file("base/7/16390"), FileChanges::Everything);
        assert_eq!(c.for_file("base/5/PG_VERSION"), FileChanges::Everything);
        assert!(!c.for_file("base/5/16390_vm").touches(0));
    }

    #[test]
    fn a_piece_is_older_only_when_every_page_is_initialised_and_older() {
        let page = |lsn: u64| {
            let mut p = vec![0u8; BLCKSZ];
            p[..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
            p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
            p
        };
        let piece = |lsns: &[u64]| lsns.iter().flat_map(|&l| page(l)).collect::<Vec<u8>>();
        assert!(older_than(&piece(&[100, 200]), Lsn(300)));
        assert!(!older_than(&piece(&[100, 300]), Lsn(300)));
        let mut with_new = piece(&[100]);
        with_new.extend(vec![0u8; BLCKSZ]); // a new, all-zero page
        assert!(!older_than(&with_new, Lsn(300)));
    }
}

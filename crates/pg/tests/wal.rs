//! WAL segments read by cairn against what the server says it wrote: commit times from
//! `pg_xact_commit_timestamp`, the restore point's position from `pg_create_restore_point`, the
//! switch position from `pg_switch_wal`, the system identifier from `pg_control_system()`, and
//! (when one of the cluster's major is at hand) every transaction end and restore point that
//! `pg_waldump` lists. 1 MiB segments, so that a few megabytes of WAL cross many segment ends
//! and one record fills whole segments.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::fs;
use std::path::Path;

use cairn_pg::control::ControlFile;
use cairn_pg::lsn::{Lsn, TimelineId, WalSegmentName, WalSegmentSize};
use cairn_pg::wal::{
    page_magic, parse_history, read_segment_header, summarize_segment, EndReason, SegmentSummary,
};
use common::PgCluster;

const SEGMENT_SIZE: u64 = 1 << 20;

/// Unix microseconds of a timestamptz SQL expression.
fn unix_us(pg: &PgCluster, expr: &str) -> i64 {
    pg.psql(&format!("SELECT round(extract(epoch FROM {expr}) * 1000000)::bigint")).parse().unwrap()
}

fn lsn(pg: &PgCluster, sql: &str) -> Lsn {
    pg.psql(sql).parse().unwrap()
}

/// What the server recorded of the workload below.
struct Workload {
    /// The first position of the WAL written by the workload.
    first: Lsn,
    /// Where `pg_switch_wal` at its end says the switch record ends.
    switch_end: Lsn,
    restore_point_end: Lsn,
    /// Clock readings around the restore point and around the whole workload.
    restore_point_between: (i64, i64),
    between: (i64, i64),
    /// xid and commit time of each committed transaction, in commit order.
    commits: Vec<(u32, i64)>,
    /// xid of the prepared transaction (committed last).
    prepared_xid: u32,
}

fn commit_of(pg: &PgCluster, xid: &str) -> (u32, i64) {
    (xid.parse().unwrap(), unix_us(pg, &format!("pg_xact_commit_timestamp('{xid}'::xid)")))
}

/// Transactions of every kind of end, a restore point, a record of several segments, full-page
/// images, then a WAL switch.
fn run_workload(pg: &PgCluster) -> Workload {
    pg.psql("SELECT pg_switch_wal()");
    let first = lsn(pg, "SELECT pg_current_wal_insert_lsn()");
    let start = unix_us(pg, "clock_timestamp()");
    pg.psql("CREATE TABLE t (n int, payload text)");
    pg.psql("INSERT INTO t VALUES (1, 'a')");
    pg.psql("INSERT INTO t VALUES (2, 'b')");
    let before_rp = unix_us(pg, "clock_timestamp()");
    let restore_point_end = lsn(pg, "SELECT pg_create_restore_point('rp1')");
    let after_rp = unix_us(pg, "clock_timestamp()");
    pg.psql("INSERT INTO t VALUES (3, 'c')");
    pg.psql("BEGIN; INSERT INTO t VALUES (-1, 'rolled back'); ROLLBACK;");
    // One 4 MB record: it fills whole segments.
    pg.psql("SELECT pg_logical_emit_message(false, 'cairn', repeat('m', 4000000))");
    pg.psql("INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(4, 10003) g");
    // After a checkpoint the first change of each page logs the page (compressed, with a hole).
    pg.psql("CHECKPOINT");
    pg.psql("UPDATE t SET payload = 'y' WHERE n % 50 = 0");
    pg.psql("BEGIN; INSERT INTO t VALUES (10004, 'prepared'); PREPARE TRANSACTION 'p1';");
    pg.psql("COMMIT PREPARED 'p1'");
    let switch_end = lsn(pg, "SELECT pg_switch_wal()");
    let end = unix_us(pg, "clock_timestamp()");

    let mut commits = vec![commit_of(pg, &pg.psql("SELECT xmin FROM pg_class WHERE relname = 't'"))];
    for n in [1, 2, 3, 4, 50, 10004] {
        commits.push(commit_of(pg, &pg.psql(&format!("SELECT xmin FROM t WHERE n = {n}"))));
    }
    let prepared_xid = commits[commits.len() - 1].0;
    Workload {
        first,
        switch_end,
        restore_point_end,
        restore_point_between: (before_rp, after_rp),
        between: (start, end),
        commits,
        prepared_xid,
    }
}

/// The segments from the one holding `first` to the one holding the end of the switch
/// record, copied out of pg_wal.
fn copy_segments(pg: &PgCluster, w: &Workload, to: &Path) -> Vec<(WalSegmentName, Vec<u8>)> {
    let size = WalSegmentSize::new(SEGMENT_SIZE).unwrap();
    let mut name = WalSegmentName::from_lsn(TimelineId::FIRST, w.first, size);
    let last = WalSegmentName::from_end_lsn(TimelineId::FIRST, w.switch_end, size);
    let mut segments = Vec::new();
    loop {
        let bytes = fs::read(pg.data.join("pg_wal").join(name.to_string())).unwrap();
        fs::write(to.join(name.to_string()), &bytes).unwrap();
        segments.push((name, bytes));
        if name == last {
            return segments;
        }
        name = name.next(size).unwrap();
    }
}

/// One record as `pg_waldump` lists it.
#[derive(Debug)]
struct Dumped {
    lsn: Lsn,
    rmgr: String,
    xid: u32,
    /// The record kind and the start of its description: `COMMIT 2024-...`, `RESTORE_POINT rp1`.
    desc: String,
}

fn waldump(pg: &PgCluster, dir: &Path, first: &WalSegmentName, last: &WalSegmentName) -> Option<Vec<Dumped>> {
    let tool = pg.oracle_tool("pg_waldump", false)?;
    let out = pg
        .run(&tool, &["-p".as_ref(), dir.as_os_str(), first.to_string().as_ref(), last.to_string().as_ref()]);
    // pg_waldump ends with an error where the WAL it was given stops; what it listed stands.
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |line: &str, key: &str| {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.trim_start().split([',', ' ']).next().unwrap().to_string()
    };
    let records: Vec<Dumped> = text
        .lines()
        .filter(|l| l.starts_with("rmgr: "))
        .map(|l| Dumped {
            lsn: field(l, "lsn:").parse().unwrap(),
            rmgr: field(l, "rmgr:"),
            xid: field(l, "tx:").parse().unwrap(),
            desc: l[l.find("desc: ").unwrap() + 6..].to_string(),
        })
        .collect();
    assert!(
        records.len() > 1000,
        "pg_waldump listed too little:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(records)
}

/// What a segment summary says of a stretch of WAL, in a form that `pg_waldump`'s listing gives
/// too.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    commits: u64,
    aborts: u64,
    xids: Option<(u32, u32)>,
    /// Name and start of each restore point.
    restore_points: Vec<(String, Lsn)>,
}

fn seen_in_summary(s: &SegmentSummary) -> Seen {
    Seen {
        commits: s.commits,
        aborts: s.aborts,
        xids: s.min_commit_xid.zip(s.max_commit_xid),
        restore_points: s.restore_points.iter().map(|p| (p.name.clone(), p.lsn)).collect(),
    }
}

/// What `pg_waldump` lists of the records that start from `from` up to `to`.
fn seen_in_dump(dump: &[Dumped], from: Lsn, to: Lsn) -> Seen {
    let mut seen = Seen { commits: 0, aborts: 0, xids: None, restore_points: Vec::new() };
    for r in dump.iter().filter(|r| r.lsn >= from && r.lsn < to) {
        let kind = r.desc.split(' ').next().unwrap();
        match (r.rmgr.as_str(), kind) {
            ("Transaction", "COMMIT" | "COMMIT_PREPARED") => seen.commits += 1,
            ("Transaction", "ABORT" | "ABORT_PREPARED") => seen.aborts += 1,
            ("XLOG", "RESTORE_POINT") => {
                seen.restore_points.push((r.desc["RESTORE_POINT ".len()..].to_string(), r.lsn));
                continue;
            }
            _ => continue,
        }
        if r.xid != 0 {
            seen.xids = Some(seen.xids.map_or((r.xid, r.xid), |(lo, hi)| (lo.min(r.xid), hi.max(r.xid))));
        }
    }
    seen
}

#[test]
fn segments_agree_with_what_the_server_wrote() {
    let mut pg = PgCluster::init(&["--wal-segsize=1"]);
    let mut conf = fs::OpenOptions::new().append(true).open(pg.data.join("postgresql.conf")).unwrap();
    std::io::Write::write_all(
        &mut conf,
        b"\ntrack_commit_timestamp = on\nmax_prepared_transactions = 2\nautovacuum = off\nwal_compression = on\nwal_keep_size = 64\n",
    )
    .unwrap();
    pg.start();
    let major = pg.major();
    let w = run_workload(&pg);
    let dir = pg.make_dir("wal-copy");
    let segments = copy_segments(&pg, &w, &dir);
    assert!(segments.len() >= 8, "{} segments", segments.len());
    let system_identifier: u64 =
        pg.psql("SELECT system_identifier FROM pg_control_system()").parse().unwrap();

    let summaries: Vec<SegmentSummary> =
        segments.iter().map(|(name, bytes)| summarize_segment(name, bytes).unwrap()).collect();
    let size = WalSegmentSize::new(SEGMENT_SIZE).unwrap();
    for ((name, _), s) in segments.iter().zip(&summaries) {
        let h = &s.header;
        assert_eq!(h.system_identifier, system_identifier, "{name}");
        assert_eq!(Some(h.magic), page_magic(major), "{name}");
        assert_eq!(h.postgres_major(), major);
        assert_eq!((h.segment_size, h.block_size, h.timeline), (size, 8192, TimelineId::FIRST));
        assert_eq!(h.page_addr, name.start_lsn(size).unwrap());
        let start = h.page_addr;
        assert!(s.end_lsn >= start && s.end_lsn.0 <= start.0 + SEGMENT_SIZE, "{name}: {s:?}");
    }
    // Every segment but the last is used to its end; the last ends with the switch.
    let (last, middle) = summaries.split_last().unwrap();
    for s in middle {
        assert_eq!(s.end_reason, EndReason::SegmentEnd, "{s:?}");
    }
    assert_eq!((&last.end_reason, last.end_lsn), (&EndReason::Switch, w.switch_end));
    // Some segments lie wholly inside the 4 MB record: no record starts in them.
    assert!(summaries.iter().filter(|s| s.end_lsn == s.header.page_addr).count() >= 2, "{summaries:?}");

    // The restore point, where the server says it ends, made when the clock says.
    let points: Vec<_> = summaries.iter().flat_map(|s| s.restore_points.clone()).collect();
    assert_eq!(points.len(), 1, "{points:?}");
    let rp = &points[0];
    assert_eq!(rp.name, "rp1");
    assert_eq!(rp.end_lsn, w.restore_point_end);
    assert!(rp.lsn < rp.end_lsn && rp.end_lsn.0 - rp.lsn.0 <= 128, "{rp:?}");
    assert!(w.restore_point_between.0 <= rp.time_us && rp.time_us <= w.restore_point_between.1, "{rp:?}");

    // Transaction ends: the first is the CREATE TABLE's, the last the COMMIT PREPARED, at the
    // times the server keeps for them; all within the workload's time.
    let with_commits: Vec<&SegmentSummary> =
        summaries.iter().filter(|s| s.first_commit_us.is_some()).collect();
    let (first, last) = (with_commits[0], with_commits[with_commits.len() - 1]);
    let (create_xid, create_time) = w.commits[0];
    let (_, prepared_time) = w.commits[w.commits.len() - 1];
    assert_eq!(first.first_commit_us, Some(create_time));
    assert_eq!(first.min_commit_xid, Some(create_xid));
    assert_eq!(last.last_commit_us, Some(prepared_time));
    for s in &summaries {
        for t in [s.first_commit_us, s.last_commit_us].into_iter().flatten() {
            assert!(w.between.0 <= t && t <= w.between.1, "{t} outside {:?}", w.between);
        }
    }
    for (xid, time) in &w.commits {
        let holder = summaries.iter().find(|s| {
            s.first_commit_us.is_some_and(|f| f <= *time) && s.last_commit_us.is_some_and(|l| *time <= l)
        });
        assert!(holder.is_some(), "no segment's commit times cover xid {xid} at {time}");
    }
    // COMMIT PREPARED carries no xid of its own: the prepared transaction's is not counted.
    let max_xid = summaries.iter().filter_map(|s| s.max_commit_xid).max().unwrap();
    assert!(max_xid < w.prepared_xid, "{max_xid} {}", w.prepared_xid);
    // Seven commits and one abort, less any whose record runs from one segment into the next
    // (counted by neither, see `SegmentSummary::end_lsn`; pg_waldump below tells exactly).
    let commits: u64 = summaries.iter().map(|s| s.commits).sum();
    let aborts: u64 = summaries.iter().map(|s| s.aborts).sum();
    assert!((5..=7).contains(&commits) && aborts <= 1, "{commits} commits, {aborts} aborts");

    // Record by record, as pg_waldump lists them: each segment's summary holds exactly the
    // records that start in it before its end_lsn; at end_lsn starts the record that runs on
    // into the next segment.
    let (first_name, last_name) = (segments[0].0, segments[segments.len() - 1].0);
    if let Some(dump) = waldump(&pg, &dir, &first_name, &last_name) {
        let all = seen_in_dump(&dump, Lsn(0), Lsn(u64::MAX));
        assert_eq!(
            (all.commits, all.aborts),
            (7, 1),
            "the workload's transaction ends, as pg_waldump lists them"
        );
        let images = dump.iter().filter(|r| r.desc.contains("FPW")).count();
        assert!(images >= 10, "{images} records with full-page images");
        for s in &summaries {
            assert_eq!(seen_in_summary(s), seen_in_dump(&dump, s.header.page_addr, s.end_lsn), "{s:?}");
            let seg_end = Lsn(s.header.page_addr.0 + SEGMENT_SIZE);
            let after: Vec<Lsn> =
                dump.iter().map(|r| r.lsn).filter(|l| *l >= s.end_lsn && *l < seg_end).collect();
            let runs_on = s.end_reason == EndReason::SegmentEnd
                && s.end_lsn != s.header.page_addr
                && s.end_lsn != seg_end;
            assert_eq!(after, if runs_on { vec![s.end_lsn] } else { vec![] }, "{s:?}");
        }
    }

    // The segment still being written ends where its valid records do (a `.partial` would
    // too), on zeroes or a recycled page.
    pg.psql("INSERT INTO t VALUES (20000, 'after the switch')");
    let current = WalSegmentName::from_end_lsn(TimelineId::FIRST, w.switch_end, size).next(size).unwrap();
    let bytes = fs::read(pg.data.join("pg_wal").join(current.to_string())).unwrap();
    let insert_lsn = lsn(&pg, "SELECT pg_current_wal_insert_lsn()");
    let s = summarize_segment(&current, &bytes).unwrap();
    assert!(matches!(s.end_reason, EndReason::Invalid(_)), "{s:?}");
    assert_eq!(s.commits, 1);
    assert!(s.end_lsn > s.header.page_addr && s.end_lsn <= insert_lsn, "{s:?} {insert_lsn}");

    damaged_copies_of(&segments, rp.lsn, size);
}

/// Damage to real segments: a first page header that is wrong is an error; damage further on
/// ends valid WAL there.
fn damaged_copies_of(segments: &[(WalSegmentName, Vec<u8>)], rp_start: Lsn, size: WalSegmentSize) {
    let (name, bytes) = segments
        .iter()
        .find(|(n, _)| *n == WalSegmentName::from_lsn(TimelineId::FIRST, rp_start, size))
        .unwrap();
    let intact = summarize_segment(name, bytes).unwrap();
    assert_eq!(intact.restore_points.len(), 1);

    let cases = [
        (0, 0x01, "page magic 0xD"),
        (2, 0x02, "no long header"),
        (4, 0x02, "on timeline 3"),
        (10, 0x10, "its first page is at"),
        (33, 0x01, "segment size 1048832"),
        (37, 0x01, "page size 8448"),
    ];
    for (at, bit, what) in cases {
        let mut b = bytes.clone();
        b[at] ^= bit;
        let err = summarize_segment(name, &b).unwrap_err();
        assert!(err.to_string().contains(what), "byte {at}: {err}");
    }
    let mut b = bytes.clone();
    b[1] ^= 0x40;
    let err = read_segment_header(&b).unwrap_err();
    assert!(err.to_string().starts_with("not a WAL segment: page magic 0x"), "{err}");
    let next = name.next(size).unwrap();
    assert!(summarize_segment(&next, bytes).is_err());

    // Zeroes from the restore point on, as in a segment written no further.
    let offset = rp_start.segment_offset(size) as usize;
    let mut b = bytes.clone();
    b[offset..].fill(0);
    let s = summarize_segment(name, &b).unwrap();
    assert_eq!((s.end_lsn, s.restore_points.len()), (rp_start, 0));
    assert!(matches!(&s.end_reason, EndReason::Invalid(why) if why.contains("zeroes")), "{s:?}");

    // A flipped bit in the restore point record (in its xid, which is on the record's first
    // page wherever the record starts) fails its CRC.
    let mut b = bytes.clone();
    b[offset + 4] ^= 0x01;
    let s = summarize_segment(name, &b).unwrap();
    assert_eq!((s.end_lsn, s.restore_points.len()), (rp_start, 0));
    assert!(matches!(&s.end_reason, EndReason::Invalid(why) if why.contains("CRC")), "{s:?}");
}

/// A timeline made the way the server makes one at the end of archive recovery (here with
/// nothing to restore: it ends where the WAL in pg_wal ends): its history file names the
/// switch point where cairn finds that valid WAL stops on the old timeline, and the new
/// timeline's first segment starts with pages of the old one.
#[test]
fn a_new_timeline_after_recovery() {
    let mut pg = PgCluster::init(&["--wal-segsize=1"]);
    pg.start();
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    pg.stop();
    let control = ControlFile::read(&pg.data.join("global/pg_control")).unwrap();
    let size = control.wal_segment_size;
    let old = WalSegmentName::from_lsn(TimelineId::FIRST, control.checkpoint, size);
    let old_bytes = fs::read(pg.data.join("pg_wal").join(old.to_string())).unwrap();
    let on_old = summarize_segment(&old, &old_bytes).unwrap();
    assert!(matches!(on_old.end_reason, EndReason::Invalid(_)), "{on_old:?}");

    fs::write(pg.data.join("recovery.signal"), "").unwrap();
    let mut conf = fs::OpenOptions::new().append(true).open(pg.data.join("postgresql.conf")).unwrap();
    std::io::Write::write_all(&mut conf, b"\nrestore_command = 'false'\n").unwrap();
    common::give_to_postgres(&pg.data);
    pg.start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while pg.psql("SELECT pg_is_in_recovery()") == "t" {
        assert!(std::time::Instant::now() < deadline, "recovery did not end");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let text = fs::read_to_string(pg.data.join("pg_wal/00000002.history")).unwrap();
    let history = parse_history(&text).unwrap();
    assert_eq!(history.len(), 1, "{text}");
    assert_eq!(history[0].parent, TimelineId::FIRST);
    assert_eq!(history[0].switch_point, on_old.end_lsn, "{text}");
    assert_eq!(history[0].reason, "no recovery target specified");

    // Some WAL on the new timeline, its pages marked as of timeline 2.
    pg.psql("CREATE TABLE u AS SELECT g FROM generate_series(1, 5000) g");
    let tli2 = TimelineId::new(2).unwrap();
    let new = WalSegmentName::from_lsn(tli2, history[0].switch_point, size);
    let new_bytes = fs::read(pg.data.join("pg_wal").join(new.to_string())).unwrap();
    let on_new = summarize_segment(&new, &new_bytes).unwrap();
    assert_eq!(on_new.header.timeline, TimelineId::FIRST);
    assert!(on_new.end_lsn > history[0].switch_point, "{on_new:?}");
    // Read as timeline 1's, the segment stops at the first page of timeline 2 (if the switch
    // is not on its last page).
    let switch_page = history[0].switch_point.segment_offset(size) / 8192;
    if switch_page + 1 < size.bytes() / 8192 {
        let as_old = summarize_segment(&new.with_timeline(TimelineId::FIRST), &new_bytes).unwrap();
        let stop = Lsn(on_new.header.page_addr.0 + u64::from(switch_page + 1) * 8192);
        assert_eq!(
            as_old.end_reason,
            EndReason::Invalid(format!(
                "the page at {stop} is on timeline 2 (the previous page on 1, the file's name says 1)"
            ))
        );
        assert!(as_old.end_lsn <= stop && as_old.end_lsn < on_new.end_lsn, "{as_old:?}");
    }
}

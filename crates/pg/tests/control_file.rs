//! `pg_control` read by cairn against the server's own reading of it (the `pg_control_*()`
//! SQL functions, any major) and against `pg_controldata` (when one of the cluster's major is
//! at hand), on a cluster with a non-default WAL segment size so that the size is really read.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeMap;

use cairn_pg::control::{ControlFile, DbState};
use cairn_pg::flavor::Flavor;
use cairn_pg::lsn::{Lsn, WalSegmentName};
use common::PgCluster;

fn read_control(pg: &PgCluster) -> ControlFile {
    let flavor = Flavor::postgres(pg.major()).unwrap();
    ControlFile::read(&pg.data.join(flavor.info().layout.control_file)).unwrap()
}

/// One row of SQL output (`-A -t`, '|'-separated) as column -> value.
fn row(pg: &PgCluster, columns: &[&str], from: &str) -> BTreeMap<String, String> {
    let text = pg.psql(&format!("SELECT {} FROM {from}", columns.join(", ")));
    let values: Vec<&str> = text.split('|').collect();
    assert_eq!(values.len(), columns.len(), "{text}");
    columns.iter().zip(values).map(|(c, v)| (c.to_string(), v.to_string())).collect()
}

#[test]
fn control_file_agrees_with_the_servers_own_reading() {
    let mut pg = PgCluster::init(&["--wal-segsize=64"]);
    pg.start();
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; CHECKPOINT;");
    let c = read_control(&pg);

    let sys =
        row(&pg, &["pg_control_version", "catalog_version_no", "system_identifier"], "pg_control_system()");
    assert_eq!(c.pg_control_version.to_string(), sys["pg_control_version"]);
    assert_eq!(c.catalog_version.to_string(), sys["catalog_version_no"]);
    assert_eq!(c.system_identifier.to_string(), sys["system_identifier"]);

    let init = row(
        &pg,
        &[
            "database_block_size",
            "blocks_per_segment",
            "wal_block_size",
            "bytes_per_wal_segment",
            "data_page_checksum_version",
        ],
        "pg_control_init()",
    );
    assert_eq!(c.block_size.to_string(), init["database_block_size"]);
    assert_eq!(c.relseg_size.to_string(), init["blocks_per_segment"]);
    assert_eq!(c.wal_block_size.to_string(), init["wal_block_size"]);
    assert_eq!(c.wal_segment_size.bytes(), 64 << 20);
    assert_eq!(c.wal_segment_size.bytes().to_string(), init["bytes_per_wal_segment"]);
    assert_eq!(c.data_checksum_version.to_string(), init["data_page_checksum_version"]);
    assert!(c.data_checksums());

    let ckpt = row(
        &pg,
        &["checkpoint_lsn", "redo_lsn", "redo_wal_file", "timeline_id", "prev_timeline_id"],
        "pg_control_checkpoint()",
    );
    // LSNs print the way the server prints them, and parse back.
    assert_eq!(c.checkpoint.to_string(), ckpt["checkpoint_lsn"]);
    assert_eq!(c.redo.to_string(), ckpt["redo_lsn"]);
    assert_eq!(ckpt["redo_lsn"].parse::<Lsn>().unwrap(), c.redo);
    assert_eq!(c.timeline.to_string(), ckpt["timeline_id"]);
    assert_eq!(c.prev_timeline.to_string(), ckpt["prev_timeline_id"]);
    // The WAL file name is ours too (64 MiB segments: four per xlogid).
    let redo_file = WalSegmentName::from_lsn(c.timeline, c.redo, c.wal_segment_size);
    assert_eq!(redo_file.to_string(), ckpt["redo_wal_file"]);

    let rec = row(
        &pg,
        &["min_recovery_end_lsn", "backup_start_lsn", "backup_end_lsn", "end_of_backup_record_required"],
        "pg_control_recovery()",
    );
    assert_eq!(c.min_recovery_point.to_string(), rec["min_recovery_end_lsn"]);
    assert_eq!(c.backup_start.to_string(), rec["backup_start_lsn"]);
    assert_eq!(c.backup_end.to_string(), rec["backup_end_lsn"]);
    assert_eq!(c.backup_end_required, rec["end_of_backup_record_required"] == "t");

    assert_eq!(c.state, DbState::InProduction);
    assert!(!c.state.is_shut_down());
    assert!(c.format_majors().0 <= pg.major() && pg.major() <= c.format_majors().1);
    pg.stop();
}

#[test]
fn control_file_agrees_with_pg_controldata() {
    let mut pg = PgCluster::init(&["--wal-segsize=64"]);
    pg.start();
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g;");
    pg.stop();
    let c = read_control(&pg);
    assert_eq!(c.state, DbState::ShutDown);
    let Some(cd) = pg.controldata() else { return };
    let field = |k: &str| cd.get(k).unwrap_or_else(|| panic!("pg_controldata has no {k:?}: {cd:?}")).as_str();

    assert_eq!(c.system_identifier.to_string(), field("Database system identifier"));
    assert_eq!(c.pg_control_version.to_string(), field("pg_control version number"));
    assert_eq!(c.catalog_version.to_string(), field("Catalog version number"));
    assert_eq!(c.data_checksum_version.to_string(), field("Data page checksum version"));
    assert_eq!(c.wal_segment_size.bytes().to_string(), field("Bytes per WAL segment"));
    assert_eq!(c.block_size.to_string(), field("Database block size"));
    assert_eq!(c.checkpoint.to_string(), field("Latest checkpoint location"));
    assert_eq!(c.redo.to_string(), field("Latest checkpoint's REDO location"));
    assert_eq!(c.timeline.to_string(), field("Latest checkpoint's TimeLineID"));
    assert_eq!(field("Database cluster state"), "shut down");
    assert_eq!(
        WalSegmentName::from_lsn(c.timeline, c.redo, c.wal_segment_size).to_string(),
        field("Latest checkpoint's REDO WAL file")
    );
}

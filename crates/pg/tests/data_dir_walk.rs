//! The data-directory walk on a real, running cluster with a tablespace outside the data
//! directory and unlogged tables, held against the server's own base backup
//! (`pg_basebackup -Fp`): the same files and directories, nothing more, nothing less.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use cairn_pg::control::ControlFile;
use cairn_pg::datadir::{walk_data_dir, EntryKind, ExclusionReason, WalkOptions};
use cairn_pg::flavor::{tablespace_version_dir, Flavor};
use common::PgCluster;

/// Every path under `root`, '/'-separated and relative, with a 'd', 'f' or 'l' for its kind.
fn tree(root: &Path) -> BTreeSet<(String, char)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<(String, char)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.insert((rel, 'l'));
            } else if t.is_dir() {
                out.insert((rel, 'd'));
                walk(root, &e.path(), out);
            } else {
                out.insert((rel, 'f'));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn walk_matches_the_servers_base_backup() {
    let mut pg = PgCluster::init(&[]);
    pg.start();
    let ts_dir = pg.make_dir("ts");
    pg.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'; \
         CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g; \
         CREATE UNLOGGED TABLE u AS SELECT g FROM generate_series(1, 5000) g; \
         CREATE INDEX u_idx ON u (g); \
         CREATE TABLE tt TABLESPACE ts AS SELECT g FROM generate_series(1, 5000) g; \
         CREATE UNLOGGED TABLE tu TABLESPACE ts AS SELECT g FROM generate_series(1, 100) g; \
         VACUUM u; \
         CHECKPOINT;",
        ts_dir.display()
    ));
    let q = |sql: &str| pg.psql(sql);
    let t_path = q("SELECT pg_relation_filepath('t')");
    let u_path = q("SELECT pg_relation_filepath('u')");
    let u_idx_path = q("SELECT pg_relation_filepath('u_idx')");
    let tt_path = q("SELECT pg_relation_filepath('tt')");
    let tu_path = q("SELECT pg_relation_filepath('tu')");
    let ts_oid: u32 = q("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'").parse().unwrap();

    let flavor = Flavor::postgres(pg.major()).unwrap();
    let control = ControlFile::read(&pg.data.join(flavor.info().layout.control_file)).unwrap();
    let mut options = WalkOptions::new(flavor);
    options.tablespace_version_dir = Some(tablespace_version_dir(pg.major(), control.catalog_version));

    // The server's own base backup, plain format, tablespace mapped to a new directory.
    let out_dir = pg.make_dir("basebackup");
    let ts_out = pg.make_dir("ts_out");
    let mapping = format!("{}={}", ts_dir.display(), ts_out.display());
    let pg_basebackup = pg.oracle_tool("pg_basebackup", true);
    let out = pg_basebackup.as_ref().map(|tool| {
        pg.run(
            tool,
            &[
                "-h".as_ref(),
                pg.socket_dir.as_os_str(),
                "-p".as_ref(),
                "5432".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-D".as_ref(),
                out_dir.as_os_str(),
                "-Fp".as_ref(),
                "-X".as_ref(),
                "none".as_ref(),
                "--no-manifest".as_ref(),
                "-c".as_ref(),
                "fast".as_ref(),
                "-T".as_ref(),
                mapping.as_ref(),
            ],
        )
    });
    if let Some(out) = &out {
        assert!(out.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Our walk of the running cluster.
    let walk = walk_data_dir(&pg.data, &options).unwrap();
    let ours: BTreeSet<(String, char)> = walk
        .entries
        .iter()
        .map(|e| {
            let k = match e.kind {
                EntryKind::File => 'f',
                EntryKind::Dir => 'd',
                EntryKind::Symlink => 'l',
            };
            (e.rel_path.clone(), k)
        })
        .collect();
    assert_eq!(ours.len(), walk.entries.len(), "duplicate paths in the walk");
    assert!(ours.len() > 900, "suspiciously small walk: {} entries", ours.len());

    if out.is_some() {
        compare_with_base_backup(&ours, &out_dir, &ts_out, ts_oid);
    }

    // What the comparison proves, spelled out (and checked without the oracle too).
    let entry = |rel: &str| {
        walk.entries.iter().find(|e| e.rel_path == rel).unwrap_or_else(|| panic!("{rel} missing"))
    };
    let reason = |rel: &str| walk.excluded.iter().find(|x| x.rel_path == rel).map(|x| x.reason);
    assert!(entry(&t_path).is_relation_file);
    assert_eq!(reason(&u_path), Some(ExclusionReason::UnloggedRelation));
    assert_eq!(reason(&u_idx_path), Some(ExclusionReason::UnloggedRelation));
    assert!(entry(&format!("{u_path}_init")).is_relation_file);
    assert_eq!(reason("postmaster.pid"), Some(ExclusionReason::ExcludedFile));
    assert_eq!(reason("pg_wal"), Some(ExclusionReason::WalContents));

    let ts_prefix = format!("pg_tblspc/{ts_oid}");
    let link = entry(&ts_prefix);
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.link_target.as_deref(), ts_dir.to_str());
    assert_eq!(link.tablespace, Some(ts_oid));
    let tt = entry(&tt_path);
    assert!(tt.is_relation_file);
    assert_eq!(tt.tablespace, Some(ts_oid));
    assert!(tt.source.starts_with(&ts_dir), "{} read from {}", tt_path, tt.source.display());
    assert_eq!(reason(&tu_path), Some(ExclusionReason::UnloggedRelation));
    assert!(entry(&format!("{tu_path}_init")).is_relation_file);
    assert_eq!(walk.entries.last().unwrap().rel_path, "global/pg_control");

    // Sizes and modes are the files' own.
    let t_meta = fs::metadata(pg.data.join(&t_path)).unwrap();
    assert_eq!(entry(&t_path).size, t_meta.len());
    assert_eq!(entry(&t_path).mode, std::os::unix::fs::PermissionsExt::mode(&t_meta.permissions()) & 0o7777);
    pg.stop();
}

/// The walk's paths must be exactly the base backup's: its data directory plus the
/// tablespace's files (written to the mapped directory) under the link's path.
fn compare_with_base_backup(ours: &BTreeSet<(String, char)>, out_dir: &Path, ts_out: &Path, ts_oid: u32) {
    let mut theirs = tree(out_dir);
    let ts_prefix = format!("pg_tblspc/{ts_oid}");
    for (rel, k) in tree(ts_out) {
        theirs.insert((format!("{ts_prefix}/{rel}"), k));
    }
    // pg_basebackup writes the backup_label it got from the server; cairn stores the one
    // pg_backup_stop returns instead.
    assert!(theirs.remove(&("backup_label".to_string(), 'f')));

    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "walk and pg_basebackup differ\nonly in the walk: {only_ours:?}\nonly in the base backup: {only_theirs:?}"
    );
}

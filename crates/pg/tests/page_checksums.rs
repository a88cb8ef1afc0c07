//! Page checksums against a real cluster made with `initdb --data-checksums`: every page the
//! server wrote must verify, and a flipped byte must be caught with the same checksum that
//! `pg_checksums --check` computes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use cairn_pg::page::{pg_checksum_page, relation_block, verify_page, PageHeader, PageVerdict, BLCKSZ};
use cairn_pg::relfile::parse_relation_file_name;
use common::PgCluster;

/// A stopped cluster with some data written and checkpointed, and the path of table t's
/// main fork relative to the data directory.
fn cluster_with_data() -> (PgCluster, String) {
    let mut pg = PgCluster::init(&[]);
    pg.start();
    pg.psql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g; \
         CREATE INDEX ON t (v); \
         CREATE UNLOGGED TABLE u AS SELECT g FROM generate_series(1, 3000) g; \
         UPDATE t SET v = v || 'x' WHERE id % 7 = 0; \
         VACUUM ANALYZE t; \
         CHECKPOINT;",
    );
    let table = pg.psql("SELECT pg_relation_filepath('t')");
    pg.stop();
    (pg, table)
}

/// Every relation file under base/ and global/.
fn relation_files(data: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![data.join("global")];
    for db in fs::read_dir(data.join("base")).unwrap() {
        dirs.push(db.unwrap().path());
    }
    for dir in dirs {
        for f in fs::read_dir(&dir).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            if parse_relation_file_name(&name).is_some() {
                files.push(f.path());
            }
        }
    }
    files.sort();
    files
}

fn pages(path: &Path) -> Vec<[u8; BLCKSZ]> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(bytes.len() % BLCKSZ, 0, "{} is not a whole number of pages", path.display());
    bytes.chunks_exact(BLCKSZ).map(|c| c.try_into().unwrap()).collect()
}

fn segment_of(path: &Path) -> u32 {
    parse_relation_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap().segment
}

#[test]
fn every_page_written_by_the_server_verifies() {
    let (pg, _) = cluster_with_data();
    let files = relation_files(&pg.data);
    assert!(files.len() > 100, "expected the catalog's relation files, found {}", files.len());
    let (mut valid, mut new) = (0usize, 0usize);
    for path in &files {
        let segment = segment_of(path);
        for (i, page) in pages(path).iter().enumerate() {
            let blkno = relation_block(segment, i as u32);
            match verify_page(page, blkno) {
                PageVerdict::Valid => valid += 1,
                PageVerdict::New => new += 1,
                other => panic!("{} block {blkno}: {other:?}", path.display()),
            }
        }
    }
    assert!(valid > 500, "only {valid} checksummed pages verified");
    eprintln!("{} files, {valid} valid pages, {new} new pages", files.len());

    // The oracle agrees that the cluster is clean.
    if let Some(pg_checksums) = pg.oracle_tool("pg_checksums", false) {
        let out = pg.run(&pg_checksums, &["--check".as_ref(), "-D".as_ref(), pg.data.as_os_str()]);
        assert!(out.status.success(), "pg_checksums --check: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_flipped_byte_is_caught_with_the_checksum_pg_checksums_computes() {
    let (pg, table) = cluster_with_data();
    let table_file = pg.data.join(table);
    let original = pages(&table_file);
    let page0 = original[0];
    assert_eq!(verify_page(&page0, 0), PageVerdict::Valid);
    let stored = PageHeader::parse(&page0).checksum;

    // The same page under another block number is a transposed page.
    assert!(matches!(verify_page(&page0, 1), PageVerdict::BadChecksum { .. }));

    // Flip one byte of tuple data in a copy of the cluster and ask both sides.
    let copy = pg.make_dir("copy");
    let status =
        std::process::Command::new("cp").arg("-a").arg(pg.data.join(".")).arg(&copy).status().unwrap();
    assert!(status.success());
    let rel = table_file.strip_prefix(&pg.data).unwrap();
    let damaged_file = copy.join(rel);
    let mut bytes = fs::read(&damaged_file).unwrap();
    bytes[BLCKSZ - 100] ^= 0x20;
    fs::write(&damaged_file, &bytes).unwrap();

    let damaged: [u8; BLCKSZ] = bytes[..BLCKSZ].try_into().unwrap();
    let computed = pg_checksum_page(&damaged, 0);
    assert_eq!(verify_page(&damaged, 0), PageVerdict::BadChecksum { stored, computed });

    let Some(pg_checksums) = pg.oracle_tool("pg_checksums", false) else { return };
    let out = pg.run(&pg_checksums, &["--check".as_ref(), "-D".as_ref(), copy.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "pg_checksums missed the damage");
    // "checksum verification failed in file "...", block 0: calculated checksum 5A3E but block contains 1B2C"
    let expected = format!("block 0: calculated checksum {computed:X} but block contains {stored:X}");
    assert!(stderr.contains(&expected), "pg_checksums said:\n{stderr}\nexpected: {expected}");
}

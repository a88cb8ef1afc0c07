//! Resuming a backup through the binary, against a real PostgreSQL 15 cluster: a backup
//! killed with SIGKILL part-way shows as ERROR and leaves a repository that checks clean; the
//! next run reuses the chunks the first one stored (and indexed), restores to the source's
//! data, and `delete --status ERROR` removes the interrupted record.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use cairn_testkit::PgCluster;

mod common;
use common::{cairn, ok, repository};

/// Bytes and number of the objects under `dir` (recursively).
fn stored(dir: &Path) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries.flatten().fold((0, 0), |(bytes, count), e| match e.metadata() {
        Ok(m) if m.is_dir() => {
            let (b, c) = stored(&e.path());
            (bytes + b, count + c)
        }
        Ok(m) => (bytes + m.len(), count + 1),
        Err(_) => (bytes, count),
    })
}

/// A checksum of the table's rows.
fn rows(cluster: &PgCluster) -> String {
    cluster.psql("SELECT count(*) || ':' || sum(hashtext(encode(v, 'hex'))::bigint) FROM big")
}

#[test]
fn a_backup_killed_part_way_is_resumed_reusing_what_it_stored() {
    let cluster = PgCluster::start(15);
    // About 250 MB, mostly random bytes (stored at about two thirds of that): the copy takes
    // seconds.
    cluster.psql(
        "CREATE TABLE big AS SELECT g, decode(md5(g::text) || md5((g * 7)::text) || md5((g * 11)::text) \
         || md5((g * 13)::text), 'hex') AS v FROM generate_series(1, 2500000) g; CHECKPOINT",
    );
    let source = rows(&cluster);
    let size: u64 = cluster.psql("SELECT pg_database_size(current_database())").parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    // The writer indexes its packs every 16: with 2 MiB packs, every 32 MiB stored.
    let repo = repository(work.path(), &cluster, &["--pack-size", "2M"]);

    let started = Instant::now();
    let mut first = Process::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env("CAIRN_PASSWORD", "demo password")
        .args(["backup", "--instance", "main", "-j", "1", "--no-validate", "-B", repo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once about half the backup is stored (a third of the database, compressed) and
    // an index object names some of it.
    let deadline = started + Duration::from_secs(60);
    let (mut data, mut indexes) = ((0, 0), (0, 0));
    while (data.0 < size / 3 || indexes.1 < 1)
        && Instant::now() < deadline
        && first.try_wait().unwrap().is_none()
    {
        std::thread::sleep(Duration::from_millis(10));
        (data, indexes) = (stored(&repo.join("data")), stored(&repo.join("index")));
    }
    assert!(first.try_wait().unwrap().is_none(), "the backup finished before it could be killed");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let first_seconds = started.elapsed().as_secs_f64();

    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown[0]["status"], "ERROR", "{shown}");
    let check = ok(cairn(&repo, &["check"]));
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");

    let started = Instant::now();
    let second = ok(cairn(&repo, &["backup", "--instance", "main", "-j", "1", "--no-validate"]));
    let second_seconds = started.elapsed().as_secs_f64();
    let number = |field: &str| second[field].as_u64().unwrap();
    let (reused, chunks, added) = (number("reused_chunks"), number("chunks"), number("stored_bytes"));
    assert_eq!(second["status"], "DONE");
    assert!(reused * 2 > chunks, "{second}");

    ok(cairn(&repo, &["check", "--read-data"]));
    let removed = ok(cairn(&repo, &["delete", "--instance", "main", "--status", "ERROR"]));
    assert_eq!(removed["backups"]["deleted"].as_array().unwrap().len(), 1, "{removed}");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown[0]["id"], second["id"]);
    // Pruned of what the killed run stored and nothing uses, the repository holds what one
    // whole backup stores; the re-run stored only the part the killed run had not indexed.
    let whole = stored(&repo.join("data")).0;
    let saved = 1.0 - added as f64 / whole as f64;
    eprintln!(
        "killed after {first_seconds:.1} s with {} MiB stored in {} pack(s), {} index object(s); the re-run \
         took {second_seconds:.1} s, reused {reused} of {chunks} chunks ({:.0} %) and stored {} MiB of the \
         backup's {} MiB: {:.0} % saved, {:.0} % of what the killed run stored",
        data.0 >> 20,
        data.1,
        indexes.1,
        reused as f64 * 100.0 / chunks as f64,
        added >> 20,
        whole >> 20,
        saved * 100.0,
        (whole - added) as f64 * 100.0 / data.0 as f64,
    );
    // Every pack the killed run stored is reused, indexed or not (the re-run adopts those it
    // had not indexed yet): nothing it stored is stored again.
    assert!(saved > 0.25, "the re-run stored {} of {} MiB again", added >> 20, whole >> 20);
    assert!(
        whole - added >= data.0 * 95 / 100,
        "{} of the killed run's {} MiB reused",
        (whole - added) >> 20,
        data.0 >> 20
    );

    let target = work.path().join("restored");
    ok(cairn(&repo, &["restore", "--instance", "main", "-D", target.to_str().unwrap(), "-j", "2"]));
    let status = Process::new("chown").args(["-R", "postgres:postgres"]).arg(work.path()).status().unwrap();
    assert!(status.success());
    drop(cluster);
    let copy = PgCluster::from_data_dir(15, &target);
    assert_eq!(rows(&copy), source, "the resumed backup restores to the source's data");
}

//! The backup lifecycle on real backups: merge (and finishing one a crash interrupted),
//! deletions a crash left DELETING, `--merge-expired`, and ORPHAN after a corrupt ancestor.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

mod common;

use cairn_engine::catalog::{self, BackupInfo, BackupMode};
use cairn_engine::lifecycle::{self, Selection};
use cairn_engine::retention::RetentionPolicy;
use cairn_engine::{backup, restore, BackupOptions, BackupStatus, RestoreOptions, Silent, ValidateOptions};
use cairn_repo::{ChunkId, Repository};
use cairn_testkit::PgCluster;
use common::{add_instance, repository};

fn take(repo: &Repository, mode: BackupMode) -> String {
    let options = BackupOptions { instance: "main".into(), channels: 2, mode, ..Default::default() };
    backup(repo, &options, &Silent).unwrap().record.id
}

fn state(cluster: &PgCluster) -> String {
    cluster.psql(
        "SELECT md5(string_agg(t::text, ',' ORDER BY g)) || md5((SELECT string_agg(u::text, ',' ORDER BY g) FROM u)) FROM t",
    )
}

/// `mode:status` of every backup, oldest first.
fn shown(repo: &Repository) -> Vec<String> {
    let list = catalog::list(repo, Some("main")).unwrap();
    list.iter()
        .map(|b| format!("{}:{:?}:{}", b.record.id, b.record.mode, b.record.status).to_uppercase())
        .collect()
}

fn entry(id: &str, mode: &str, status: &str) -> String {
    format!("{id}:{mode}:{status}")
}

fn find(repo: &Repository, id: &str) -> BackupInfo {
    catalog::find(repo, "main", Some(id)).unwrap()
}

/// Rewrites a backup's status as a crash in the middle of a merge or delete leaves it.
fn crash_leaves(repo: &Repository, id: &str, status: BackupStatus) {
    catalog::set_status(repo, &find(repo, id), status, None).unwrap();
}

fn restores_to(repo: &Repository, work: &Path, id: &str, expected: &str) {
    let target = work.join(format!("restore-{id}"));
    let options = RestoreOptions {
        instance: "main".into(),
        backup_id: Some(id.into()),
        target: target.clone(),
        channels: 2,
        ..Default::default()
    };
    restore(repo, &options, &Silent).unwrap();
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(work).status().unwrap();
    assert!(status.success());
    let copy = PgCluster::from_data_dir(15, &target);
    assert_eq!(state(&copy), expected, "backup {id}");
}

fn check_read_data(repo: &Repository) {
    let report = cairn_repo::check(repo, &cairn_repo::CheckOptions { read_data: true, ..Default::default() });
    let report = report.unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

fn setup(work: &Path) -> (PgCluster, Repository) {
    let cluster = PgCluster::start(15);
    cluster.psql(
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g; \
         CREATE TABLE u AS SELECT * FROM t",
    );
    // Hint bits and visibility set now, so that reading the tables later changes no page.
    cluster.psql("VACUUM (FREEZE, ANALYZE)");
    cluster.psql("CHECKPOINT");
    let repo = repository(&work.join("repo"));
    add_instance(&repo, &cluster, Vec::new());
    (cluster, repo)
}

/// Changes a twentieth of table `t`'s rows (on every page).
fn change(cluster: &PgCluster, step: u32) {
    change_table(cluster, "t", step);
}

fn change_table(cluster: &PgCluster, table: &str, step: u32) {
    cluster.psql(&format!("UPDATE {table} SET v = md5(v) WHERE g % 20 = {step}; CHECKPOINT"));
}

#[test]
fn merge_folds_the_chain_into_a_full_and_an_interrupted_merge_or_delete_is_finished() {
    let work = tempfile::tempdir().unwrap();
    let (cluster, repo) = setup(work.path());
    let full = take(&repo, BackupMode::Full);
    let mut deltas = Vec::new();
    let mut states = Vec::new();
    for step in 0..3 {
        change(&cluster, step);
        deltas.push(take(&repo, BackupMode::Delta));
        states.push(state(&cluster));
    }
    let (d1, d2, d3) = (&deltas[0], &deltas[1], &deltas[2]);

    let err = lifecycle::merge(&repo, "main", &full).unwrap_err();
    assert!(err.to_string().contains("already FULL"), "{err}");
    // A pinned ancestor refuses the merge, named, and nothing changes.
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    lifecycle::set_backup(&repo, "main", &full, None, Some(Some(until))).unwrap();
    let err = lifecycle::merge(&repo, "main", d2).unwrap_err();
    assert!(err.to_string().contains("pinned") && err.to_string().contains(&full), "{err}");
    assert_eq!(shown(&repo)[0], entry(&full, "FULL", "OK"));
    lifecycle::set_backup(&repo, "main", &full, None, Some(None)).unwrap();

    // The second DELTA becomes FULL with its own data, times and LSNs; its ancestors go; the
    // DELTA after it (now pointing at a FULL) is untouched.
    let before = find(&repo, d2).record;
    let merged = lifecycle::merge(&repo, "main", &d2.to_lowercase()).unwrap();
    assert_eq!(merged.removed, [d1.clone(), full.clone()]);
    assert_eq!((merged.backup_id.as_str(), merged.status), (d2.as_str(), BackupStatus::Ok));
    let freed = merged.prune.as_ref().map(|p| p.bytes_before - p.bytes_after);
    assert!(freed.unwrap() > 0, "the ancestors' own data is pruned");
    assert_eq!(shown(&repo), [entry(d2, "FULL", "OK"), entry(d3, "DELTA", "OK")]);
    let after = find(&repo, d2).record;
    assert_eq!((after.parent, after.start_lsn, after.stop_lsn), (None, before.start_lsn, before.stop_lsn));
    assert_eq!((after.start_time, after.end_time), (before.start_time, before.end_time));
    assert_eq!(find(&repo, d3).record.parent.as_deref(), Some(d2.as_str()));
    check_read_data(&repo);
    restores_to(&repo, work.path(), d2, &states[1]);

    // A merge of the last DELTA interrupted after its ancestor was marked DELETING: restore,
    // validate and the next DELTA skip the DELETING one and take the MERGING one; merging
    // again finishes the job (DONE: the interrupted merge did not record the old status).
    crash_leaves(&repo, d3, BackupStatus::Merging);
    crash_leaves(&repo, d2, BackupStatus::Deleting);
    assert_eq!(catalog::find(&repo, "main", None).unwrap().record.id, *d3);
    let validate =
        |id: &str| cairn_engine::validate(&repo, "main", Some(id), &ValidateOptions::default(), &Silent);
    let err = validate(d2).unwrap_err();
    assert!(err.to_string().contains("being deleted"), "{err}");
    assert_eq!(validate(d3).unwrap().status, BackupStatus::Merging, "validation leaves a merge to finish");
    let merged = lifecycle::merge(&repo, "main", d3).unwrap();
    assert_eq!((merged.removed, merged.status), (vec![d2.clone()], BackupStatus::Done));
    assert_eq!(shown(&repo), [entry(d3, "FULL", "DONE")]);

    // A deletion interrupted after marking: restore refuses the DELETING backup by name and
    // picks the one before; any later delete finishes it.
    change(&cluster, 3);
    let d4 = take(&repo, BackupMode::Delta);
    assert_eq!(find(&repo, &d4).record.parent.as_deref(), Some(d3.as_str()));
    crash_leaves(&repo, &d4, BackupStatus::Deleting);
    assert_eq!(catalog::find(&repo, "main", None).unwrap().record.id, *d3);
    let options = RestoreOptions {
        instance: "main".into(),
        backup_id: Some(d4.clone()),
        target: work.path().join("never"),
        ..Default::default()
    };
    let err = restore(&repo, &options, &Silent).unwrap_err();
    assert!(err.to_string().contains("being deleted"), "{err}");
    let summary = lifecycle::delete(&repo, "main", &Selection::Status(BackupStatus::Error), false).unwrap();
    let deleted: Vec<(&str, &str)> =
        summary.deleted.iter().map(|d| (d.id.as_str(), d.reason.as_str())).collect();
    assert_eq!(deleted, [(d4.as_str(), "unfinished deletion")]);
    assert_eq!(shown(&repo), [entry(d3, "FULL", "DONE")]);
    check_read_data(&repo);
    restores_to(&repo, work.path(), d3, &states[2]);
}

#[test]
fn merge_expired_makes_the_oldest_kept_delta_full_before_the_expired_go() {
    let work = tempfile::tempdir().unwrap();
    let (cluster, repo) = setup(work.path());
    let mut ids = vec![take(&repo, BackupMode::Full)];
    let mut states = vec![state(&cluster)];
    for step in 0..3 {
        change(&cluster, step);
        ids.push(take(&repo, BackupMode::Delta));
        states.push(state(&cluster));
    }
    // Age them: the FULL ended 10 days ago, the DELTAs 9, 7 and 0 days ago.
    for (id, days) in ids.iter().zip([10, 9, 7, 0]) {
        let backup = find(&repo, id);
        let mut record = backup.record.clone();
        record.end_time = Some(chrono::Utc::now() - chrono::Duration::days(days));
        catalog::rewrite(&repo, &backup, &record).unwrap();
    }
    // A window of 8 days keeps the DELTA of 9 days ago (to restore to the window's start)
    // and those after; only the FULL expires, and the oldest kept DELTA stands in for it.
    let policy = RetentionPolicy { redundancy: None, window_days: Some(8) };
    let plain = lifecycle::delete(&repo, "main", &Selection::Expired(policy), true).unwrap();
    assert!(plain.merged.is_empty());
    let selection = Selection::MergeExpired(policy);
    let dry = lifecycle::delete(&repo, "main", &selection, true).unwrap();
    let listed = |l: &[lifecycle::Chosen]| l.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    assert_eq!((listed(&dry.merged), listed(&dry.deleted)), (vec![ids[1].clone()], vec![ids[0].clone()]));
    assert!(dry.merged[0].reason.contains(&ids[0]), "{:?}", dry.merged);
    assert_eq!(shown(&repo).len(), 4, "a dry run changes nothing");

    let done = lifecycle::delete(&repo, "main", &selection, false).unwrap();
    assert_eq!((listed(&done.merged), listed(&done.deleted)), (listed(&dry.merged), listed(&dry.deleted)));
    assert_eq!(
        shown(&repo),
        [entry(&ids[1], "FULL", "OK"), entry(&ids[2], "DELTA", "OK"), entry(&ids[3], "DELTA", "OK")]
    );
    // The policy now counts it as FULL, and nothing more expires.
    let again = lifecycle::delete(&repo, "main", &selection, true).unwrap();
    assert!(again.merged.is_empty() && again.deleted.is_empty(), "{again:?}");
    check_read_data(&repo);
    restores_to(&repo, work.path(), &ids[1], &states[1]);
}

/// The chunk ids a backup lists.
fn chunks(repo: &Repository, id: &str) -> HashSet<ChunkId> {
    let entries = cairn_engine::restore::entries_of(repo, &find(repo, id)).unwrap();
    entries.into_iter().flat_map(|e| e.chunks).collect()
}

/// Flips a byte in the middle of a chunk's stored blob.
fn damage(repo: &Repository, dir: &Path, chunk: &ChunkId) {
    repo.load_index().unwrap();
    let at = repo.locate(chunk).unwrap();
    let pack = dir.join(cairn_repo::layout::path(cairn_repo::layout::Kind::Pack, &at.pack));
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(at.blob.offset + at.blob.stored_len / 2) as usize] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();
}

#[test]
fn damage_makes_the_backups_sharing_it_corrupt_and_orphans_the_other_deltas() {
    let work = tempfile::tempdir().unwrap();
    let (cluster, repo) = setup(work.path());
    let full = take(&repo, BackupMode::Full);
    change_table(&cluster, "t", 0);
    let d1 = take(&repo, BackupMode::Delta);
    change_table(&cluster, "u", 0);
    let d2 = take(&repo, BackupMode::Delta);
    // Damage a chunk the FULL and the first DELTA share and the second does not (of u).
    let (of_full, of_d1, of_d2) = (chunks(&repo, &full), chunks(&repo, &d1), chunks(&repo, &d2));
    let shared = of_full.intersection(&of_d1).find(|c| !of_d2.contains(c)).copied();
    damage(&repo, &work.path().join("repo"), &shared.expect("a chunk the second DELTA changed"));

    let options = ValidateOptions { channels: 2, skip_block_validation: false };
    // Validating the FULL alone: the first DELTA names the damaged chunk, so it is CORRUPT
    // too; the second does not, but descends from a corrupt backup: ORPHAN.
    cairn_engine::validate(&repo, "main", Some(&full), &options, &Silent).unwrap_err();
    assert_eq!(
        shown(&repo),
        [entry(&full, "FULL", "CORRUPT"), entry(&d1, "DELTA", "CORRUPT"), entry(&d2, "DELTA", "ORPHAN")]
    );
    assert!(find(&repo, &d1).record.error.unwrap().contains("validation found damaged"));
    assert!(find(&repo, &d2).record.error.unwrap().contains(&d1));
    // Nothing is restorable now; naming an ORPHAN says to validate it.
    assert_eq!(catalog::find(&repo, "main", None).unwrap_err().code(), "backup-not-found");
    let options_for = |id: &str| RestoreOptions {
        instance: "main".into(),
        backup_id: Some(id.into()),
        target: work.path().join("never"),
        ..Default::default()
    };
    let err = restore(&repo, &options_for(&d2), &Silent).unwrap_err();
    assert!(err.to_string().contains("cairn validate"), "{err}");
    // Validating an ORPHAN gives it its own verdict; so does validating the whole instance.
    assert_eq!(
        cairn_engine::validate(&repo, "main", Some(&d2), &options, &Silent).unwrap().status,
        BackupStatus::Ok
    );
    let all = cairn_engine::validate_all(&repo, Some("main"), &options, &Silent).unwrap();
    let verdicts: Vec<(&str, BackupStatus)> = all.iter().map(|v| (v.backup_id.as_str(), v.status)).collect();
    assert_eq!(
        verdicts,
        [
            (full.as_str(), BackupStatus::Corrupt),
            (d1.as_str(), BackupStatus::Corrupt),
            (d2.as_str(), BackupStatus::Ok)
        ]
    );
    assert_eq!(
        shown(&repo),
        [entry(&full, "FULL", "CORRUPT"), entry(&d1, "DELTA", "CORRUPT"), entry(&d2, "DELTA", "OK")]
    );
    // The DELTA that does not share the damage restores.
    restores_to(&repo, work.path(), &d2, &state(&cluster));
}

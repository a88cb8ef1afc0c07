//! The catalog as `show` sees it, on a real repository: records left by crashes.

use cairn_engine::catalog::{self, BackupMode, BackupRecord, BackupStatus};
use cairn_repo::{Encryption, InitOptions, Repository};

fn record(id: &str, status: BackupStatus, holder: Option<&str>) -> serde_json::Value {
    let r = BackupRecord {
        id: id.into(),
        status,
        holder: holder.map(String::from),
        ..BackupRecord::starting("main", &[], BackupMode::Full)
    };
    serde_json::to_value(r).expect("record")
}

#[test]
fn a_dead_running_record_is_error_and_duplicates_show_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage =
        cairn_storage::open(dir.path().to_str().expect("path"), &Default::default()).expect("storage");
    let repo = Repository::init(storage, InitOptions { encryption: Encryption::None, ..Default::default() })
        .expect("init");
    // A process that died mid-backup (no lock of its pid exists).
    repo.put_record(catalog::KIND, record("T00001", BackupStatus::Running, Some("nohost:1"))).expect("put");
    // A crash between storing a backup and removing its RUNNING record.
    repo.put_record(catalog::KIND, record("T00002", BackupStatus::Running, Some("nohost:2"))).expect("put");
    repo.put_record(catalog::KIND, record("T00002", BackupStatus::Done, None)).expect("put");

    let listed = catalog::list(&repo, Some("main")).expect("list");
    let seen: Vec<(&str, BackupStatus)> =
        listed.iter().map(|b| (b.record.id.as_str(), b.record.status)).collect();
    assert_eq!(seen, [("T00001", BackupStatus::Error), ("T00002", BackupStatus::Done)]);
    assert!(listed[0].record.error.as_deref().unwrap_or("").contains("interrupted"));

    // A status change leaves one record of the backup: the duplicate goes with it.
    assert_eq!(listed[1].duplicates.len(), 1);
    catalog::set_status(&repo, &listed[1], BackupStatus::Deleting, None).expect("rewrite");
    assert_eq!(repo.list_manifests().expect("manifests").len(), 2);
    let listed = catalog::list(&repo, Some("main")).expect("list");
    assert_eq!((listed[1].record.status, listed[1].duplicates.len()), (BackupStatus::Deleting, 0));
}

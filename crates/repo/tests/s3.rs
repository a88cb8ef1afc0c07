//! The repository on a real S3-compatible server (s3s-fs): the same guarantees as on disk.

mod common;

use cairn_repo::{check, prune, CheckOptions, Encryption, PruneOptions};
use cairn_testkit::S3Server;
use common::*;

#[test]
fn store_dedup_check_prune_and_damage_on_s3() {
    let s3 = S3Server::start();
    let storage = s3.open("prod/cluster-1");
    let repo = init(storage.clone(), Encryption::Aes256Gcm);
    let files = sample_files(5, 40);
    let (first, _) = backup(&repo, &files, 3);
    let packs = count(storage.as_ref(), "data/");
    let (second, stats) = backup(&reopen(storage.clone()), &files, 3);
    assert_eq!(stats.new_chunks, 0);
    assert_eq!(count(storage.as_ref(), "data/"), packs, "dedup on S3 too");

    storage.delete(&format!("manifests/{first}")).unwrap();
    prune(&repo, &PruneOptions::default()).unwrap();
    let fresh = reopen(storage.clone());
    assert_checks_clean(&fresh);
    assert_same(&restore(&fresh, &second), &files);

    // A flipped byte in a pack, made behind the server's back, is found by reading the data.
    let bucket = s3.root_dir().join(s3.bucket()).join("prod/cluster-1/data");
    let fan = std::fs::read_dir(&bucket).unwrap().next().unwrap().unwrap().path();
    let pack = std::fs::read_dir(&fan).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[3] ^= 0x80;
    std::fs::write(&pack, bytes).unwrap();
    let report = check(&fresh, &CheckOptions { read_data: true, channels: 2 }).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(!report.errors[0].affects.is_empty());
}

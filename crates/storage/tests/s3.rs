//! The S3 backend against a real S3 server (s3s-fs, see `scripts/install-s3s-fs`):
//! conformance, conditional create, credentials, unreachable and hung endpoints.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_storage::{conformance, open, ErrorKind, PutMode, StorageOptions};
use cairn_testkit::S3Server;

#[test]
fn conformance_s3s_fs() {
    let server = S3Server::start();
    let storage = server.open("repo/main");
    assert_eq!(storage.location(), format!("s3://{}/repo/main ({})", server.bucket(), server.endpoint()));
    conformance::run(storage.as_ref());
}

#[test]
fn conformance_bucket_root() {
    let server = S3Server::start();
    let storage = server.open("");
    conformance::round_trip(storage.as_ref(), "x/");
    conformance::list_prefixes(storage.as_ref(), "y/");
    conformance::list_root(storage.as_ref(), "z/");
}

#[test]
fn conditional_create_is_sent_and_honoured() {
    let server = S3Server::start();
    let storage = server.open("p");
    storage.put("lock", Bytes::from_static(b"mine"), PutMode::Create).unwrap();
    let err = storage.put("lock", Bytes::from_static(b"theirs"), PutMode::Create).unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    assert!(err.message.contains("'lock'"), "{err}");
    assert_eq!(storage.get("lock").unwrap(), &b"mine"[..]);
    // Also for a multipart upload (above the 8 MiB part size).
    let big = conformance::pattern(7, 9 << 20);
    storage.put("big", big.clone(), PutMode::Create).unwrap();
    let err = storage.put("big", Bytes::from_static(b"small"), PutMode::Create).unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    assert_eq!(storage.get("big").unwrap(), big);
}

#[test]
fn prefixes_are_isolated() {
    let server = S3Server::start();
    let a = server.open("a");
    let ab = server.open("ab");
    a.put("x", Bytes::from_static(b"a"), PutMode::Create).unwrap();
    ab.put("x", Bytes::from_static(b"ab"), PutMode::Create).unwrap();
    assert_eq!(a.list("").map(|m| m.unwrap().path).collect::<Vec<_>>(), ["x"]);
    assert_eq!(a.get("x").unwrap(), &b"a"[..]);
    // The bucket-level view sees both, with full keys.
    let all = conformance::listed(server.open("").as_ref(), "");
    assert_eq!(all.keys().collect::<Vec<_>>(), ["a/x", "ab/x"]);
}

#[test]
fn wrong_credentials_are_permission_denied() {
    let server = S3Server::start();
    let options =
        StorageOptions { secret_access_key: Some("not-the-secret".into()), ..server.storage_options() };
    let storage = open(&server.url("p"), &options).unwrap();
    for err in [
        storage.put("obj", Bytes::from_static(b"x"), PutMode::Create).unwrap_err(),
        storage.get("obj").unwrap_err(),
        storage.list("").next().unwrap().unwrap_err(),
    ] {
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
        assert!(!err.retryable, "{err}");
        assert!(err.message.contains(server.endpoint()), "{err}");
        assert!(err.message.contains(server.bucket()), "{err}");
    }
    // Anonymous requests are refused too.
    let anonymous =
        StorageOptions { access_key_id: None, secret_access_key: None, ..server.storage_options() };
    let err = open(&server.url("p"), &anonymous).unwrap().get("obj").unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn missing_bucket_is_a_config_error() {
    let server = S3Server::start();
    let storage = open("s3://no-such-bucket/p", &server.storage_options()).unwrap();
    // (s3s-fs answers NoSuchKey for objects in a missing bucket, and creates the bucket on
    // put; a listing is where it reports NoSuchBucket.)
    let err = storage.list("").next().unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(err.message.contains("no-such-bucket") && err.message.contains("NoSuchBucket"), "{err}");
    assert!(!err.retryable, "{err:?}");
}

#[test]
fn unreachable_endpoint_fails_fast_and_clearly() {
    // Port 9 (discard) on loopback: nothing listens, connections are refused.
    let options = StorageOptions {
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        path_style: true,
        ..StorageOptions::default()
    };
    let storage = open("s3://backups/pg", &options).unwrap();
    let start = Instant::now();
    let err = storage.put("config", Bytes::from_static(b"x"), PutMode::Create).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.retryable);
    assert!(
        err.message.starts_with(
            "cannot reach s3 endpoint http://127.0.0.1:9 (bucket backups): connection refused after 4 attempts"
        ),
        "{err}"
    );
    assert!(err.message.contains("config"), "{err}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(took > Duration::from_millis(300), "no backoff between attempts? {took:?}");
    let err = storage.list("").next().unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
}

#[test]
fn hung_endpoint_times_out() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _accepted = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let options = StorageOptions {
        endpoint: Some(endpoint.clone()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        path_style: true,
        retries: 1,
        timeout: Duration::from_millis(500),
        ..StorageOptions::default()
    };
    let storage = open("s3://backups", &options).unwrap();
    let start = Instant::now();
    let err = storage.stat("config").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.message.contains(&endpoint) && err.message.contains("timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#![allow(clippy::unwrap_used)]
use cairn_storage::*;
fn main() {
    let server = cairn_testkit::S3Server::start();
    let s = server.open("p");
    s.put("d/c", "x".into(), PutMode::Create).unwrap();
    println!("{}", s.put("d/c", "x".into(), PutMode::Create).unwrap_err());
    println!("{}", s.get("nope").unwrap_err());
    println!("{}", s.get_range("d/c", 0..5).unwrap_err());
    println!("{}", s.get_range("d/c", 3..5).unwrap_err());
    let t = std::time::Instant::now();
    println!("{:?} {:?}", s.stat("d").unwrap_err(), t.elapsed());
    let bad = open(
        &server.url("p"),
        &StorageOptions {
            secret_access_key: Some("x".into()),
            ..server.storage_options()
        },
    )
    .unwrap();
    println!("{}", bad.get("d/c").unwrap_err());
    println!(
        "{}",
        bad.put("d/c", "y".into(), PutMode::Overwrite).unwrap_err()
    );
    let nob = open("s3://nob/x", &server.storage_options()).unwrap();
    println!("{}", nob.list("").next().unwrap().unwrap_err());
    let un = open(
        "s3://backups/pg",
        &StorageOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        },
    )
    .unwrap();
    println!("{}", un.get("config").unwrap_err());
    let dns = open(
        "s3://backups/pg",
        &StorageOptions {
            endpoint: Some("http://no-such-host.invalid".into()),
            retries: 1,
            ..Default::default()
        },
    )
    .unwrap();
    println!("{}", dns.get("config").unwrap_err());
    let fs = open("/tmp/probe-fs", &Default::default()).unwrap();
    println!("{}", fs.location());
    println!("{}", fs.get("x").unwrap_err());
    println!("{}", fs.get_range("x", 0..1).unwrap_err());
    fs.put("x", "abc".into(), PutMode::Overwrite).unwrap();
    println!("{}", fs.get_range("x", 2..4).unwrap_err());
    println!("{}", fs.get_range("x", 5..7).unwrap_err());
    println!(
        "{}",
        fs.put("x/y", "abc".into(), PutMode::Overwrite).unwrap_err()
    );
    let ro = open("/proc/probe", &Default::default()).unwrap();
    println!(
        "{}",
        ro.put("x", "abc".into(), PutMode::Overwrite).unwrap_err()
    );
}

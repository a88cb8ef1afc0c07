//! What the engine's integration tests share: a fresh encrypted repository (with a cheap key
//! derivation) and an instance for a test cluster.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::path::Path;

use cairn_engine::instance::{self, InstanceConfig};
use cairn_engine::Connection;
use cairn_repo::{Encryption, InitOptions, KdfParams, Repository};
use cairn_testkit::PgCluster;

pub fn repository(dir: &Path) -> Repository {
    let storage = cairn_storage::open(dir.to_str().unwrap(), &Default::default()).unwrap();
    let options = InitOptions {
        encryption: Encryption::Aes256Gcm,
        password: Some(b"pw".to_vec()),
        kdf: KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 },
        ..Default::default()
    };
    Repository::init(storage, options).unwrap()
}

/// Instance `main` for `cluster`, with external directories `external`.
pub fn add_instance(repo: &Repository, cluster: &PgCluster, external: Vec<String>) {
    let config = InstanceConfig {
        name: "main".into(),
        pgdata: cluster.data_dir().display().to_string(),
        connection: Connection {
            host: Some(cluster.host().to_string()),
            port: Some(cluster.port()),
            user: Some("postgres".into()),
            database: Some("postgres".into()),
        },
        external_dirs: external,
        compression: None,
        system_identifier: None,
        retention: Default::default(),
    };
    instance::add(repo, &config).unwrap();
}

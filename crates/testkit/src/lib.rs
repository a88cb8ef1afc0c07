//! Test helpers for cairn crates: a real S3 server (s3s-fs) and real PostgreSQL clusters
//! (majors 13 to 18), started per test.

mod pg_cluster;
mod s3_server;

pub use pg_cluster::{PgCluster, PgOptions};
pub use s3_server::S3Server;

//! Test helpers for cairn crates: a real S3 server (s3s-fs) started per test.

mod s3_server;

pub use s3_server::S3Server;

//! Test helpers for cairn crates: a real S3 server (s3s-fs) and real PostgreSQL clusters
//! (majors 13 to 18), started per test, and a directory tree snapshot to compare restores.

mod pg_cluster;
mod s3_server;

pub use pg_cluster::{give_to_postgres, PgCluster, PgOptions};
pub use s3_server::S3Server;

/// Every file, directory and symbolic link under `dir` (relative path -> mode and content; a
/// link's content is its target), for comparing two trees.
pub fn file_tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let listing = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for item in listing {
            let p = item.unwrap_or_else(|e| panic!("reading {}: {e}", d.display())).path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let mode = meta.permissions().mode();
            let content = if meta.is_symlink() {
                std::fs::read_link(&p).map(|t| t.display().to_string().into_bytes()).unwrap_or_default()
            } else if meta.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            };
            out.insert(rel, (mode, content));
        }
    }
    out
}

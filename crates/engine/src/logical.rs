//! Logical backups: dumps taken by the flavor's own tools (`pg_dump`, `gs_dump`, `sys_dump`),
//! uncompressed so that the repository's content-defined chunking deduplicates repeated dumps,
//! and restored with the matching `pg_restore`; and time-range dumps of single tables (COPY of
//! a query). Recorded as backups of mode LOGICAL (docs/format.md §9).

use serde::{Deserialize, Serialize};

use cairn_pg::Flavor;

use crate::error::{EngineError, Result};

mod dump;
mod load;
mod range;
mod toc;
mod tools;

pub use dump::{backup, LogicalBackupOptions, LogicalBackupSummary};
pub use load::{restore, LogicalRestoreOptions, LogicalRestoreSummary, RestoredDatabase};

/// What a logical backup holds: the record's `logical` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalScope {
    /// The databases dumped, in the order they were.
    pub databases: Vec<String>,
    /// Only these schemas of each database (`pg_dump -n`), when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Only these tables (`pg_dump -t`; with a time range, the tables whose rows were copied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Whether roles and tablespaces were dumped too (`pg_dumpall --globals-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub globals: bool,
    pub format: DumpFormat,
    /// The dump tool and its version (`pg_dump`, `15.18`); absent for time-range copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
}

/// How the dump of each database is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// `pg_dump -Fd`: one entry per file of the dump directory (restores with `-j`).
    Directory,
    /// `pg_dump -Fc`, streamed into the repository without scratch space: one entry.
    Custom,
    /// Time-range dumps: the rows of each table as `COPY ... TO STDOUT` text.
    Copy,
}

/// The rows of a time-series table from `from` (inclusive) to `to` (exclusive) by `column`.
/// The bounds are given to the server as literals of the column's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub column: String,
    pub from: String,
    pub to: String,
}

/// What the server connected to is.
struct Server {
    version_num: u32,
    /// As the server prints it: `15.18 (Debian 15.18-0+deb12u1)`.
    version: String,
    flavor: Flavor,
}

impl Server {
    fn read(client: &mut postgres::Client) -> Result<Server> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, version(), current_setting('server_version')",
                &[],
            )
            .map_err(|error| EngineError::Database { during: "inspecting the server", error })?;
        let version_num = row.get::<_, i32>(0) as u32;
        let flavor = Flavor::detect(version_num, &row.get::<_, String>(1))
            .map_err(|e| EngineError::Server(e.to_string()))?;
        Ok(Server { version_num, version: row.get(2), flavor })
    }

    /// What a dump tool must handle to dump this server.
    fn need(&self) -> tools::Need {
        tools::Need {
            major: self.flavor.major,
            what: format!("the server ({} {})", self.flavor.engine, self.version),
        }
    }
}

/// Where the files of a logical backup are, under the backup root.
const ROOT: &str = "logical";
/// The custom-format dump of a database.
const CUSTOM_FILE: &str = "custom.dump";
const GLOBALS_FILE: &str = "globals.sql";

/// A name as one path component: letters, digits, `_`, `-` and `.` as they are (but a leading
/// `.`), every other byte as `%XX`. Names are kept in each entry's metadata; this only has to
/// be safe and unique.
fn component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The directory of a database's files in the backup.
fn database_dir(database: &str) -> String {
    format!("{ROOT}/{}", component(database))
}

/// A temporary directory `<prefix>…` under `parent` (default: the system's), removed on drop.
fn scratch(parent: Option<&std::path::Path>, prefix: &str) -> Result<tempfile::TempDir> {
    let parent = parent.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(|e| EngineError::io(format!("making scratch space in {}", parent.display()), e))
}

/// A name as SQL quotes an identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupMode, BackupStatus};
    use crate::retention::{expired, Candidate, RetentionPolicy};
    use chrono::{DateTime, Duration, Utc};

    #[test]
    fn names_become_safe_unique_components() {
        assert_eq!(component("sales_2024"), "sales_2024");
        assert_eq!(component("a/b"), "a%2Fb");
        assert_eq!(component(".."), "%2E.");
        assert_eq!(component(""), "%00");
        assert_eq!(component("Über db"), "%C3%9Cber%20db");
        assert!(cairn_repo::FileEntry::file(format!("{}/toc.dat", database_dir("../x")), 0, 0, 0, vec![])
            .path
            .split('/')
            .all(|c| c != ".."));
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn retention_keeps_dumps_and_physical_backups_as_separate_series() {
        let day = |d: i64| DateTime::from_timestamp(1_800_000_000 + d * 86_400, 0).unwrap_or_default();
        let backup = |id: &str, mode, d| Candidate {
            id: id.into(),
            mode,
            status: BackupStatus::Ok,
            end_time: day(d),
            expire_time: None,
            series: String::new(),
            parent: None,
        };
        // Weekly FULLs, daily dumps: keeping two of each must not let the dumps push the
        // second FULL out.
        let backups = vec![
            backup("F1", BackupMode::Full, 0),
            backup("L1", BackupMode::Logical, 1),
            backup("F2", BackupMode::Full, 7),
            backup("L2", BackupMode::Logical, 8),
            backup("L3", BackupMode::Logical, 9),
            backup("L4", BackupMode::Logical, 10),
        ];
        let gone: Vec<String> = expired(
            &backups,
            RetentionPolicy { redundancy: Some(2), window_days: None },
            day(11) + Duration::hours(1),
        )
        .into_iter()
        .map(|e| e.id)
        .collect();
        assert_eq!(gone, ["L1", "L2"]);
        let now: DateTime<Utc> = day(11);
        assert!(expired(&backups, RetentionPolicy::default(), now).is_empty());
    }
}

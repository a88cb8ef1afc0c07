//! What differs between PostgreSQL majors, openGauss and KingbaseES, as one static table of
//! data ([`FLAVORS`]): directory and file names, the backup start/stop SQL, tool names, ports,
//! configuration files, the recovery mechanism and the base-backup exclusion lists.
//!
//! Where a value comes from the server's source or the vendor's published code it is marked
//! [`Provenance::Source`]; values for openGauss and KingbaseES that could only be taken from
//! third-party write-ups are marked [`Provenance::Unverified`] and must be proven against a
//! real server before cairn claims support for them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The PostgreSQL majors cairn supports, oldest first.
pub const SUPPORTED_POSTGRES_MAJORS: [u32; 6] = [13, 14, 15, 16, 17, 18];

/// Errors of recognising a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlavorError {
    #[error("PostgreSQL {major} is not supported (cairn supports PostgreSQL {supported})")]
    UnsupportedPostgres { major: u32, supported: String },
    #[error("{engine} {major} is not supported")]
    UnsupportedRelease { engine: Engine, major: u32 },
    #[error("cannot tell which database server this is from its version string '{version}'")]
    Unrecognised { version: String },
}

impl FlavorError {
    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            FlavorError::UnsupportedPostgres { .. } | FlavorError::UnsupportedRelease { .. } => {
                "unsupported-server-version"
            }
            FlavorError::Unrecognised { .. } => "unrecognised-server",
        }
    }
}

/// A database engine of the PostgreSQL family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[serde(rename = "postgresql")]
    PostgreSql,
    #[serde(rename = "opengauss")]
    OpenGauss,
    #[serde(rename = "kingbasees")]
    KingbaseEs,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::PostgreSql => "PostgreSQL",
            Engine::OpenGauss => "openGauss",
            Engine::KingbaseEs => "KingbaseES",
        })
    }
}

/// A flavor: an engine and its major release, the key of the [`FLAVORS`] table. Small and
/// serializable; [`Flavor::info`] gives the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Flavor {
    pub engine: Engine,
    /// PostgreSQL: the major (13..=18). openGauss: the product's major (`openGauss 5.0.0` is
    /// 5). KingbaseES: the product version (`V008R006...` is 8).
    pub major: u32,
}

/// Where a row's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// The server's source code (or, for openGauss, its own gs_probackup source).
    Source,
    /// Third-party write-ups only; to be proven against a real server. The text says what is
    /// in doubt.
    Unverified(&'static str),
}

/// How a restored cluster is told to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMechanism {
    /// PostgreSQL 12 and later: an empty signal file in the data directory, recovery
    /// parameters in a configuration file (cairn writes them to the auto configuration file).
    SignalFiles { recovery_signal: &'static str, standby_signal: &'static str, settings_file: &'static str },
    /// Before PostgreSQL 12 (and openGauss): a `recovery.conf` holding the parameters.
    RecoveryConf { file: &'static str },
}

/// The SQL of the non-exclusive backup API over a regular connection. Parameters: start takes
/// `$1` label (text) and `$2` fast checkpoint (bool) and returns the start LSN as text; stop
/// takes `$1` wait-for-archive (bool) when [`BackupSql::stop_waits_for_archive`] is set, and
/// returns one row of three text columns: `lsn`, `labelfile`, `spcmapfile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSql {
    pub start: &'static str,
    pub stop: &'static str,
    pub stop_waits_for_archive: bool,
}

/// Names of the client and server tools of a flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tools {
    pub dump: &'static str,
    pub restore: &'static str,
    pub controldata: &'static str,
    pub ctl: &'static str,
    pub sql_client: &'static str,
    /// The vendor's own physical backup tool, where there is one.
    pub backup: Option<&'static str>,
}

/// Names of the configuration files in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigFiles {
    pub main: &'static str,
    /// Written by `ALTER SYSTEM`; `None` where the engine has no such file.
    pub auto: Option<&'static str>,
    pub hba: &'static str,
    pub ident: &'static str,
}

/// A file excluded from base backups by name, in any directory (`excludeFiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcludedFile {
    pub name: &'static str,
    /// Excluded when the file name starts with `name` (`pg_internal.init.1234` temp files).
    pub prefix: bool,
}

impl ExcludedFile {
    pub fn matches(&self, file_name: &str) -> bool {
        if self.prefix {
            file_name.starts_with(self.name)
        } else {
            file_name == self.name
        }
    }
}

/// The shape of the data directory and the server's own base-backup exclusion rules
/// (`src/backend/backup/basebackup.c`, `sendDir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirLayout {
    /// The WAL directory: kept as an (empty) directory, its contents never copied.
    pub wal_dir: &'static str,
    /// Subdirectories of the WAL directory the base backup recreates (empty).
    pub wal_keep_subdirs: &'static [&'static str],
    /// Where tablespace symbolic links live.
    pub tablespace_dir: &'static str,
    /// The control file, relative to the data directory; copied last.
    pub control_file: &'static str,
    /// Directories whose contents are dropped (the directory itself is kept), by name in any
    /// directory (`excludeDirContents`).
    pub exclude_dir_contents: &'static [&'static str],
    /// Files dropped by name in any directory (`excludeFiles`).
    pub exclude_files: &'static [ExcludedFile],
    /// Prefix of temporary files and directories, skipped everywhere (`PG_TEMP_FILE_PREFIX`).
    pub temp_prefix: &'static str,
    /// Files in relation directories that are not relations, not checksummed
    /// (`noChecksumFiles`).
    pub no_checksum_files: &'static [ExcludedFile],
}

/// One row of the flavor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlavorInfo {
    pub engine: Engine,
    /// First and last major this row covers (the same for PostgreSQL rows).
    pub majors: (u32, u32),
    pub backup_sql: BackupSql,
    pub tools: Tools,
    pub default_port: u16,
    pub config_files: ConfigFiles,
    pub recovery: RecoveryMechanism,
    pub pid_file: &'static str,
    pub opts_file: &'static str,
    pub layout: DataDirLayout,
    pub provenance: Provenance,
}

impl FlavorInfo {
    pub fn covers(&self, engine: Engine, major: u32) -> bool {
        self.engine == engine && (self.majors.0..=self.majors.1).contains(&major)
    }
}

// ---- Shared values. Rows below are data; these only save repeating long lists. ----

const PG_TOOLS: Tools = Tools {
    dump: "pg_dump",
    restore: "pg_restore",
    controldata: "pg_controldata",
    ctl: "pg_ctl",
    sql_client: "psql",
    backup: None,
};

const PG_CONFIG: ConfigFiles = ConfigFiles {
    main: "postgresql.conf",
    auto: Some("postgresql.auto.conf"),
    hba: "pg_hba.conf",
    ident: "pg_ident.conf",
};

const PG_RECOVERY: RecoveryMechanism = RecoveryMechanism::SignalFiles {
    recovery_signal: "recovery.signal",
    standby_signal: "standby.signal",
    settings_file: "postgresql.auto.conf",
};

/// PostgreSQL 13 and 14 (`pg_start_backup(label, fast, exclusive => false)`).
const PG13_BACKUP_SQL: BackupSql = BackupSql {
    start: "SELECT pg_catalog.pg_start_backup($1, $2, false)::text",
    stop: "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_stop_backup(false, $1)",
    stop_waits_for_archive: true,
};

/// PostgreSQL 15 and later: the exclusive mode is gone and the functions were renamed.
const PG15_BACKUP_SQL: BackupSql = BackupSql {
    start: "SELECT pg_catalog.pg_backup_start($1, $2)::text",
    stop: "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_backup_stop($1)",
    stop_waits_for_archive: true,
};

/// `excludeDirContents` of basebackup.c, identical in 13..=18. (13 and 14 also drop the
/// contents of `stats_temp_directory` wherever it points; the walk takes it as an option.)
const PG_EXCLUDE_DIR_CONTENTS: &[&str] =
    &["pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"];

/// `excludeFiles` of basebackup.c, identical in 13..=18.
const PG_EXCLUDE_FILES: &[ExcludedFile] = &[
    ExcludedFile { name: "postgresql.auto.conf.tmp", prefix: false },
    ExcludedFile { name: "current_logfiles.tmp", prefix: false },
    ExcludedFile { name: "pg_internal.init", prefix: true },
    ExcludedFile { name: "backup_label", prefix: false },
    ExcludedFile { name: "tablespace_map", prefix: false },
    ExcludedFile { name: "backup_manifest", prefix: false },
    ExcludedFile { name: "postmaster.pid", prefix: false },
    ExcludedFile { name: "postmaster.opts", prefix: false },
];

/// `noChecksumFiles` of basebackup.c.
const PG_NO_CHECKSUM_FILES: &[ExcludedFile] = &[
    ExcludedFile { name: "pg_control", prefix: false },
    ExcludedFile { name: "pg_filenode.map", prefix: false },
    ExcludedFile { name: "pg_internal.init", prefix: true },
    ExcludedFile { name: "PG_VERSION", prefix: false },
];

const fn pg_layout(wal_keep_subdirs: &'static [&'static str]) -> DataDirLayout {
    DataDirLayout {
        wal_dir: "pg_wal",
        wal_keep_subdirs,
        tablespace_dir: "pg_tblspc",
        control_file: "global/pg_control",
        exclude_dir_contents: PG_EXCLUDE_DIR_CONTENTS,
        exclude_files: PG_EXCLUDE_FILES,
        temp_prefix: "pgsql_tmp",
        no_checksum_files: PG_NO_CHECKSUM_FILES,
    }
}

/// 13..=16 recreate `pg_wal/archive_status`; 17 added `pg_wal/summaries` (WAL summarizer).
const PG13_LAYOUT: DataDirLayout = pg_layout(&["archive_status"]);
const PG17_LAYOUT: DataDirLayout = pg_layout(&["archive_status", "summaries"]);

const fn postgres(major: u32, backup_sql: BackupSql, layout: DataDirLayout) -> FlavorInfo {
    FlavorInfo {
        engine: Engine::PostgreSql,
        majors: (major, major),
        backup_sql,
        tools: PG_TOOLS,
        default_port: 5432,
        config_files: PG_CONFIG,
        recovery: PG_RECOVERY,
        pid_file: "postmaster.pid",
        opts_file: "postmaster.opts",
        layout,
        provenance: Provenance::Source,
    }
}

/// openGauss (a PostgreSQL 9.2.4 descendant; `SELECT version()` says
/// `PostgreSQL 9.2.4 (openGauss 5.0.0 build ...)`).
///
/// Backup SQL: openGauss's own gs_probackup (src/bin/pg_probackup/backup.cpp) starts a
/// non-exclusive backup with `pg_start_backup($1, $2, false)` and stops it with
/// `SELECT lsn, labelfile, spcmapfile FROM pg_stop_backup(false)`: there is no
/// wait-for-archive argument. (gs_probackup itself uses the exclusive form on a primary.)
const OPENGAUSS: FlavorInfo = FlavorInfo {
    engine: Engine::OpenGauss,
    majors: (1, 99),
    backup_sql: BackupSql {
        start: "SELECT pg_catalog.pg_start_backup($1, $2, false)::text",
        stop: "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_stop_backup(false)",
        stop_waits_for_archive: false,
    },
    tools: Tools {
        dump: "gs_dump",
        restore: "gs_restore",
        controldata: "pg_controldata",
        ctl: "gs_ctl",
        sql_client: "gsql",
        backup: Some("gs_probackup"),
    },
    default_port: 5432,
    config_files: ConfigFiles {
        main: "postgresql.conf",
        auto: None,
        hba: "pg_hba.conf",
        ident: "pg_ident.conf",
    },
    recovery: RecoveryMechanism::RecoveryConf { file: "recovery.conf" },
    pid_file: "postmaster.pid",
    opts_file: "postmaster.opts",
    layout: DataDirLayout {
        wal_dir: "pg_xlog",
        wal_keep_subdirs: &["archive_status"],
        tablespace_dir: "pg_tblspc",
        control_file: "global/pg_control",
        exclude_dir_contents: PG_EXCLUDE_DIR_CONTENTS,
        exclude_files: PG_EXCLUDE_FILES,
        temp_prefix: "pgsql_tmp",
        no_checksum_files: PG_NO_CHECKSUM_FILES,
    },
    provenance: Provenance::Unverified(
        "backup SQL from openGauss's gs_probackup source; exclusion lists assumed equal to \
         PostgreSQL's (gs_probackup adds more of its own); no postgresql.auto.conf assumed; \
         the pg_control layout (9.2-based, version 923+) is not decoded",
    ),
};

/// KingbaseES renames `pg_` to `sys_` throughout the data directory and the catalog
/// (`sys_wal`, `global/sys_control`, `kingbase.conf`, `kingbase.pid`, `sys_internal.init`,
/// listed in third-party directory listings of V8R6 and V9 data directories).
///
/// Backup SQL (UNVERIFIED against a server): `sys_start_backup(label, fast, exclusive)` and
/// `sys_stop_backup(exclusive, wait_for_archive)`, the PostgreSQL 13 signatures renamed, as a
/// third-party KingbaseES article describes them. Its clustered editions return per-node
/// positions from start; a single instance is assumed to return one LSN.
const fn kingbase(major: u32) -> FlavorInfo {
    FlavorInfo {
        engine: Engine::KingbaseEs,
        majors: (major, major),
        backup_sql: BackupSql {
            start: "SELECT sys_start_backup($1, $2, false)::text",
            stop: "SELECT lsn::text, labelfile, spcmapfile FROM sys_stop_backup(false, $1)",
            stop_waits_for_archive: true,
        },
        tools: Tools {
            dump: "sys_dump",
            restore: "sys_restore",
            controldata: "sys_controldata",
            ctl: "sys_ctl",
            sql_client: "ksql",
            backup: Some("sys_rman"),
        },
        default_port: 54321,
        config_files: ConfigFiles {
            main: "kingbase.conf",
            auto: Some("kingbase.auto.conf"),
            hba: "sys_hba.conf",
            ident: "sys_ident.conf",
        },
        recovery: RecoveryMechanism::SignalFiles {
            recovery_signal: "recovery.signal",
            standby_signal: "standby.signal",
            settings_file: "kingbase.auto.conf",
        },
        pid_file: "kingbase.pid",
        opts_file: "kingbase.opts",
        layout: DataDirLayout {
            wal_dir: "sys_wal",
            wal_keep_subdirs: &["archive_status"],
            tablespace_dir: "sys_tblspc",
            control_file: "global/sys_control",
            exclude_dir_contents: &[
                "sys_stat_tmp",
                "sys_replslot",
                "sys_dynshmem",
                "sys_notify",
                "sys_serial",
                "sys_snapshots",
                "sys_subtrans",
            ],
            exclude_files: &[
                ExcludedFile { name: "kingbase.auto.conf.tmp", prefix: false },
                ExcludedFile { name: "current_logfiles.tmp", prefix: false },
                ExcludedFile { name: "sys_internal.init", prefix: true },
                ExcludedFile { name: "backup_label", prefix: false },
                ExcludedFile { name: "tablespace_map", prefix: false },
                ExcludedFile { name: "backup_manifest", prefix: false },
                ExcludedFile { name: "kingbase.pid", prefix: false },
                ExcludedFile { name: "kingbase.opts", prefix: false },
            ],
            temp_prefix: "pgsql_tmp",
            no_checksum_files: &[
                ExcludedFile { name: "sys_control", prefix: false },
                ExcludedFile { name: "sys_filenode.map", prefix: false },
                ExcludedFile { name: "sys_internal.init", prefix: true },
                ExcludedFile { name: "PG_VERSION", prefix: false },
            ],
        },
        provenance: Provenance::Unverified(
            "sys_start_backup/sys_stop_backup signatures, sys_tblspc, sys_subtrans, the \
             pgsql_tmp prefix, the recovery signal files and the sys_control layout are \
             inferred from PostgreSQL 12 and third-party articles, not from a server",
        ),
    }
}

/// The flavor table: one row per supported PostgreSQL major, one for openGauss, one per
/// KingbaseES version.
pub static FLAVORS: [FlavorInfo; 9] = [
    postgres(13, PG13_BACKUP_SQL, PG13_LAYOUT),
    postgres(14, PG13_BACKUP_SQL, PG13_LAYOUT),
    postgres(15, PG15_BACKUP_SQL, PG13_LAYOUT),
    postgres(16, PG15_BACKUP_SQL, PG13_LAYOUT),
    postgres(17, PG15_BACKUP_SQL, PG17_LAYOUT),
    postgres(18, PG15_BACKUP_SQL, PG17_LAYOUT),
    OPENGAUSS,
    kingbase(8),
    kingbase(9),
];

impl Flavor {
    /// A supported PostgreSQL major.
    pub fn postgres(major: u32) -> Result<Flavor, FlavorError> {
        Flavor::new(Engine::PostgreSql, major)
    }

    /// A flavor the table has a row for.
    pub fn new(engine: Engine, major: u32) -> Result<Flavor, FlavorError> {
        if FLAVORS.iter().any(|row| row.covers(engine, major)) {
            return Ok(Flavor { engine, major });
        }
        Err(match engine {
            Engine::PostgreSql => FlavorError::UnsupportedPostgres {
                major,
                supported: SUPPORTED_POSTGRES_MAJORS.map(|m| m.to_string()).join(", "),
            },
            _ => FlavorError::UnsupportedRelease { engine, major },
        })
    }

    /// This flavor's row of [`FLAVORS`].
    pub fn info(&self) -> &'static FlavorInfo {
        // A Flavor is only made by `new` (or deserialized); fall back on the nearest row of the
        // engine so that a deserialized unknown release still gets its engine's names.
        FLAVORS
            .iter()
            .find(|row| row.covers(self.engine, self.major))
            .or_else(|| FLAVORS.iter().rev().find(|row| row.engine == self.engine))
            .unwrap_or(&FLAVORS[FLAVORS.len() - 1])
    }

    /// Which flavor a server is, from `server_version_num` and `SELECT version()`.
    /// openGauss and KingbaseES name themselves in `version()` (openGauss behind a
    /// `PostgreSQL 9.2.4` prefix); anything else that starts with `PostgreSQL` is PostgreSQL,
    /// its major taken from `server_version_num`.
    pub fn detect(server_version_num: u32, version: &str) -> Result<Flavor, FlavorError> {
        let unrecognised = || FlavorError::Unrecognised { version: version.to_string() };
        if let Some(at) = version.find("openGauss") {
            let rest = version[at + "openGauss".len()..].trim_start();
            let major = leading_number(rest).ok_or_else(unrecognised)?;
            return Flavor::new(Engine::OpenGauss, major);
        }
        if let Some(at) = version.find("KingbaseES") {
            // "KingbaseES V008R006C008B0014 on x86_64-pc-linux-gnu, ..." -> 8.
            let rest = version[at + "KingbaseES".len()..].trim_start();
            let rest = rest.strip_prefix(['V', 'v']).ok_or_else(unrecognised)?;
            let major = leading_number(rest).ok_or_else(unrecognised)?;
            return Flavor::new(Engine::KingbaseEs, major);
        }
        if version.trim_start().starts_with("PostgreSQL") {
            // server_version_num is MMmmpp since 10: 150004 is 15.4.
            return Flavor::postgres(server_version_num / 10_000);
        }
        Err(unrecognised())
    }

    /// Whether this server's values are proven (see [`Provenance`]).
    pub fn is_verified(&self) -> bool {
        self.info().provenance == Provenance::Source
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.engine {
            Engine::KingbaseEs => write!(f, "{} V{}", self.engine, self.major),
            _ => write!(f, "{} {}", self.engine, self.major),
        }
    }
}

/// The decimal number at the start of `s` (leading zeros allowed).
fn leading_number(s: &str) -> Option<u32> {
    let digits: &str = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    digits.parse().ok()
}

/// The name of a tablespace's version directory for PostgreSQL (`TABLESPACE_VERSION_DIRECTORY`):
/// `PG_15_202209061`, from the major and the catalog version in `pg_control`.
pub fn tablespace_version_dir(major: u32, catalog_version: u32) -> String {
    format!("PG_{major}_{catalog_version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(major: u32) -> &'static FlavorInfo {
        Flavor::postgres(major).unwrap().info()
    }

    #[test]
    fn every_supported_postgres_major_has_exactly_one_row() {
        for major in SUPPORTED_POSTGRES_MAJORS {
            let rows = FLAVORS.iter().filter(|r| r.covers(Engine::PostgreSql, major)).count();
            assert_eq!(rows, 1, "PostgreSQL {major}");
        }
        assert_eq!(FLAVORS.iter().filter(|r| r.engine == Engine::PostgreSql).count(), 6);
        for unsupported in [9, 10, 11, 12, 19] {
            let err = Flavor::postgres(unsupported).unwrap_err();
            assert!(err.to_string().contains("13, 14, 15, 16, 17, 18"), "{err}");
        }
    }

    #[test]
    fn rows_do_not_overlap() {
        for (i, a) in FLAVORS.iter().enumerate() {
            for b in &FLAVORS[i + 1..] {
                let overlap = a.engine == b.engine && a.majors.0 <= b.majors.1 && b.majors.0 <= a.majors.1;
                assert!(!overlap, "{:?} {:?} overlaps {:?}", a.engine, a.majors, b.majors);
            }
        }
    }

    #[test]
    fn every_row_is_self_consistent() {
        for row in &FLAVORS {
            let l = &row.layout;
            let control_name = l.control_file.rsplit('/').next().unwrap();
            assert!(l.control_file.starts_with("global/"), "{:?}", row.engine);
            assert!(
                row.layout.no_checksum_files.iter().any(|f| f.matches(control_name)),
                "{:?}: the control file must not be checksummed as a page file",
                row.engine
            );
            assert!(l.exclude_files.iter().any(|f| f.matches(row.pid_file)), "{:?} pid", row.engine);
            assert!(l.exclude_files.iter().any(|f| f.matches(row.opts_file)), "{:?} opts", row.engine);
            assert!(l.exclude_files.iter().any(|f| f.matches("backup_label")));
            assert!(l.exclude_files.iter().any(|f| f.matches("tablespace_map")));
            assert!(l.wal_keep_subdirs.contains(&"archive_status"));
            assert!(!l.exclude_dir_contents.contains(&l.wal_dir));
            if let Some(auto) = row.config_files.auto {
                let tmp = format!("{auto}.tmp");
                assert!(l.exclude_files.iter().any(|f| f.matches(&tmp)), "{:?} {tmp}", row.engine);
            }
            for sql in [row.backup_sql.start, row.backup_sql.stop] {
                assert!(sql.starts_with("SELECT "));
            }
            assert!(row.backup_sql.start.contains("$1") && row.backup_sql.start.contains("$2"));
            assert!(row.backup_sql.stop.contains("labelfile") && row.backup_sql.stop.contains("spcmapfile"));
            assert_eq!(row.backup_sql.stop.contains("$1"), row.backup_sql.stop_waits_for_archive);
            assert_eq!(row.provenance == Provenance::Source, row.engine == Engine::PostgreSql);
        }
    }

    #[test]
    fn postgres_13_and_14_use_the_non_exclusive_start_backup() {
        for major in [13, 14] {
            let sql = pg(major).backup_sql;
            assert_eq!(sql.start, "SELECT pg_catalog.pg_start_backup($1, $2, false)::text");
            assert!(sql.stop.contains("pg_stop_backup(false, $1)"));
        }
    }

    #[test]
    fn postgres_15_and_later_use_backup_start_and_stop() {
        for major in [15, 16, 17, 18] {
            let sql = pg(major).backup_sql;
            assert_eq!(sql.start, "SELECT pg_catalog.pg_backup_start($1, $2)::text");
            assert!(sql.stop.contains("pg_backup_stop($1)"));
        }
    }

    #[test]
    fn postgres_rows_share_names_ports_and_exclusions() {
        for major in SUPPORTED_POSTGRES_MAJORS {
            let row = pg(major);
            assert_eq!(row.layout.wal_dir, "pg_wal");
            assert_eq!(row.layout.control_file, "global/pg_control");
            assert_eq!(row.layout.tablespace_dir, "pg_tblspc");
            assert_eq!((row.tools.dump, row.tools.restore), ("pg_dump", "pg_restore"));
            assert_eq!(row.tools.controldata, "pg_controldata");
            assert_eq!(row.default_port, 5432);
            assert_eq!(row.config_files.main, "postgresql.conf");
            assert_eq!(row.config_files.auto, Some("postgresql.auto.conf"));
            assert!(matches!(
                row.recovery,
                RecoveryMechanism::SignalFiles { recovery_signal: "recovery.signal", .. }
            ));
            assert_eq!(row.layout.exclude_dir_contents.len(), 7);
            assert!(row.layout.exclude_files.iter().any(|f| f.prefix && f.matches("pg_internal.init.123")));
            let summaries = row.layout.wal_keep_subdirs.contains(&"summaries");
            assert_eq!(summaries, major >= 17, "pg_wal/summaries exists from 17");
        }
    }

    #[test]
    fn opengauss_row() {
        let og = Flavor::new(Engine::OpenGauss, 5).unwrap().info();
        assert_eq!(og.layout.wal_dir, "pg_xlog");
        assert_eq!(og.layout.control_file, "global/pg_control");
        assert_eq!(
            (og.tools.dump, og.tools.restore, og.tools.backup),
            ("gs_dump", "gs_restore", Some("gs_probackup"))
        );
        assert_eq!(og.default_port, 5432);
        assert_eq!(og.recovery, RecoveryMechanism::RecoveryConf { file: "recovery.conf" });
        assert!(og.backup_sql.start.contains("pg_start_backup($1, $2, false)"));
        assert!(!og.backup_sql.stop_waits_for_archive);
        assert!(matches!(og.provenance, Provenance::Unverified(_)));
    }

    #[test]
    fn kingbase_rows() {
        for v in [8, 9] {
            let kb = Flavor::new(Engine::KingbaseEs, v).unwrap().info();
            assert_eq!(kb.layout.wal_dir, "sys_wal");
            assert_eq!(kb.layout.control_file, "global/sys_control");
            assert_eq!(
                (kb.tools.dump, kb.tools.restore, kb.tools.controldata),
                ("sys_dump", "sys_restore", "sys_controldata")
            );
            assert_eq!(kb.default_port, 54321);
            assert_eq!(kb.config_files.main, "kingbase.conf");
            assert_eq!(kb.config_files.auto, Some("kingbase.auto.conf"));
            assert!(kb.backup_sql.start.contains("sys_start_backup"));
            assert!(kb.backup_sql.stop.contains("sys_stop_backup"));
            assert!(kb.layout.exclude_dir_contents.iter().all(|d| d.starts_with("sys_")));
        }
        assert!(Flavor::new(Engine::KingbaseEs, 7).is_err());
    }

    #[test]
    fn detect_reads_version_strings() {
        let cases: [(u32, &str, Flavor); 6] = [
            (
                150004,
                "PostgreSQL 15.4 (Debian 15.4-2) on x86_64-pc-linux-gnu, compiled by gcc 12.2.0, 64-bit",
                Flavor { engine: Engine::PostgreSql, major: 15 },
            ),
            (
                130012,
                "PostgreSQL 13.12 on aarch64-unknown-linux-gnu",
                Flavor { engine: Engine::PostgreSql, major: 13 },
            ),
            (180000, "PostgreSQL 18.0", Flavor { engine: Engine::PostgreSql, major: 18 }),
            (
                90204,
                "PostgreSQL 9.2.4 (openGauss 5.0.0 build a07d57c3) compiled at 2023-03-29 03:37:13 commit 0 \
                 last mr on x86_64-unknown-linux-gnu, compiled by g++ (GCC) 7.3.0, 64-bit",
                Flavor { engine: Engine::OpenGauss, major: 5 },
            ),
            (
                120001,
                "KingbaseES V008R006C008B0014 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 4.8.5, 64-bit",
                Flavor { engine: Engine::KingbaseEs, major: 8 },
            ),
            (
                120001,
                "KingbaseES V009R001C001B0025 on x86_64",
                Flavor { engine: Engine::KingbaseEs, major: 9 },
            ),
        ];
        for (num, text, want) in cases {
            assert_eq!(Flavor::detect(num, text).unwrap(), want, "{text}");
        }
        assert!(matches!(
            Flavor::detect(120005, "PostgreSQL 12.5"),
            Err(FlavorError::UnsupportedPostgres { major: 12, .. })
        ));
        assert!(matches!(Flavor::detect(90204, "MySQL 8.0"), Err(FlavorError::Unrecognised { .. })));
        assert!(matches!(Flavor::detect(0, "openGauss"), Err(FlavorError::Unrecognised { .. })));
    }

    #[test]
    fn flavor_serializes_with_engine_names() {
        let f = Flavor::postgres(16).unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"engine":"postgresql","major":16}"#);
        assert_eq!(serde_json::from_str::<Flavor>(&json).unwrap(), f);
        assert_eq!(f.to_string(), "PostgreSQL 16");
        assert_eq!(Flavor::new(Engine::KingbaseEs, 8).unwrap().to_string(), "KingbaseES V8");
    }

    #[test]
    fn tablespace_version_directory_name() {
        assert_eq!(tablespace_version_dir(15, 202209061), "PG_15_202209061");
    }
}

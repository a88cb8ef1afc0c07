//! The options of `backup -b LOGICAL` and `restore -b LOGICAL`, flattened into those commands.

use std::path::PathBuf;

use clap::Args;

/// What a logical backup dumps, and how.
#[derive(Debug, Args, Default)]
#[group(skip)]
pub struct LogicalBackupArgs {
    /// LOGICAL: a database to dump (repeatable).
    #[arg(long = "database", value_name = "DB")]
    pub databases: Vec<String>,
    /// LOGICAL: every database that accepts connections, and the globals (roles, tablespaces).
    #[arg(long, conflicts_with = "databases")]
    pub all_databases: bool,
    /// LOGICAL: dump the globals (roles, tablespaces) too.
    #[arg(long)]
    pub globals: bool,
    /// LOGICAL: only this schema (repeatable; pg_dump's -n pattern).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// LOGICAL: only this table (repeatable; pg_dump's -t pattern; with a time range, a table name).
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// LOGICAL: copy only the rows of the tables whose COL is in [--from, --to).
    #[arg(long, value_name = "COL", requires_all = ["from", "to"])]
    pub time_column: Option<String>,
    /// Start of the time range (inclusive), as a literal of the column's type.
    #[arg(long, value_name = "T1", requires = "time_column")]
    pub from: Option<String>,
    /// End of the time range (exclusive).
    #[arg(long, value_name = "T2", requires = "time_column")]
    pub to: Option<String>,
    /// LOGICAL: no scratch space: stream a custom-format dump into the repository (no -j).
    #[arg(long, conflicts_with = "scratch_dir")]
    pub no_scratch: bool,
    /// LOGICAL: where directory-format dumps are made (default: the system's temp directory).
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// LOGICAL: directory of the dump tools (default: PATH, then /usr/lib/postgresql/<major>/bin).
    #[arg(long, value_name = "DIR")]
    pub dump_bin_dir: Option<PathBuf>,
}

impl LogicalBackupArgs {
    /// Whether any of these options was given.
    pub fn given(&self) -> bool {
        !self.databases.is_empty()
            || self.all_databases
            || self.globals
            || !self.schemas.is_empty()
            || !self.tables.is_empty()
            || self.time_column.is_some()
            || self.no_scratch
            || self.scratch_dir.is_some()
            || self.dump_bin_dir.is_some()
    }
}

/// What a logical restore restores, and where.
#[derive(Debug, Args, Default)]
#[group(skip)]
pub struct LogicalRestoreArgs {
    /// LOGICAL: only this database of the backup.
    #[arg(long, value_name = "DB")]
    pub database: Option<String>,
    /// LOGICAL: restore the database under this name (created by the restore).
    #[arg(long, value_name = "NEWDB")]
    pub new_name: Option<String>,
    /// LOGICAL: only this schema (repeatable).
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// LOGICAL: only this table, as schema.table or table (repeatable).
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// LOGICAL: the server to restore into (default: the instance's).
    #[arg(long, value_name = "HOST")]
    pub target_host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<u16>,
    #[arg(long, value_name = "USER")]
    pub target_user: Option<String>,
    /// LOGICAL: replace what exists (drop and recreate the database, the schemas or tables;
    /// delete the rows of a time range).
    #[arg(long)]
    pub clean: bool,
    /// LOGICAL: do not restore owners (for a cluster without the source's roles).
    #[arg(long)]
    pub no_owner: bool,
    /// LOGICAL: where directory-format dumps are put back together.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// LOGICAL: directory of the restore tools (default: PATH, then /usr/lib/postgresql/<major>/bin).
    #[arg(long, value_name = "DIR")]
    pub dump_bin_dir: Option<PathBuf>,
}

impl LogicalRestoreArgs {
    /// Whether any of these options was given.
    pub fn given(&self) -> bool {
        self.database.is_some()
            || self.new_name.is_some()
            || !self.schemas.is_empty()
            || !self.tables.is_empty()
            || self.target_host.is_some()
            || self.target_port.is_some()
            || self.target_user.is_some()
            || self.clean
            || self.no_owner
            || self.scratch_dir.is_some()
            || self.dump_bin_dir.is_some()
    }
}

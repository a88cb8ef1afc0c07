//! The command line, as clap derive types. Option names follow gs_probackup where it has one.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Backup and point-in-time recovery for PostgreSQL-family databases"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Output format; json is a stable contract (docs/cli.md).
    #[arg(long, global = true, value_enum, default_value = "plain")]
    pub format: Format,
}

/// Where the repository is and how to open it.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// Repository: a local path or s3://bucket/prefix.
    #[arg(short = 'B', long = "backup-path", env = "BACKUP_PATH", value_name = "PATH|URL")]
    pub backup_path: String,
    /// File holding the repository password (first line).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, env = "CAIRN_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long, env = "CAIRN_S3_REGION")]
    pub s3_region: Option<String>,
    /// Address buckets by path (http://host/bucket) rather than by virtual host.
    #[arg(long, env = "CAIRN_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Limit transfer to the repository, in bytes per second (suffixes K, M, G).
    #[arg(long, value_name = "RATE", value_parser = crate::size::parse_size)]
    pub limit_rate: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository.
    Init(InitArgs),
    /// Verify the repository's structure, and with --read-data every stored byte.
    Check(CheckArgs),
    /// Manage the passwords (keys) that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove data that no backup needs.
    Prune(PruneArgs),
    /// Remove stale locks left by processes that died.
    Unlock(UnlockArgs),
    /// Print cairn's version and the repository format version.
    Version,
    /// Register a database cluster (instance) in the repository.
    AddInstance(AddInstanceArgs),
    /// Remove an instance and all its backups from the repository (data goes at the next prune).
    DelInstance(InstanceArgs),
    /// Change an instance's stored settings.
    SetConfig(SetConfigArgs),
    /// Print an instance's stored settings.
    ShowConfig(InstanceArgs),
    /// Take a backup of an instance.
    Backup(BackupArgs),
    /// List instances and backups.
    Show(ShowArgs),
    /// Restore a backup into a data directory.
    Restore(RestoreArgs),
    /// Read a backup back and check every file against its manifest.
    Validate(ValidateArgs),
    /// Store one WAL file in the instance's archive (for archive_command: %p %f).
    ArchivePush(ArchivePushArgs),
    /// Fetch one WAL file from the instance's archive (for restore_command: %f %p).
    ArchiveGet(ArchiveGetArgs),
    /// Fetch the archived WAL of a time or LSN range into a directory (no cluster is touched).
    RestoreWal(RestoreWalArgs),
    /// Delete backups (by id, by status, or as the retention policy expires them) and archived WAL.
    Delete(DeleteArgs),
    /// Change a backup's note, or pin it against retention (--ttl, --expire-time).
    SetBackup(SetBackupArgs),
    /// Make a DELTA backup FULL and delete the backups it descends from (no data is copied).
    Merge(MergeArgs),
}

/// Compression of what a command stores, when not the instance's or the repository's default.
#[derive(Debug, Args, Clone, Default)]
pub struct CompressionArgs {
    /// zstd, lz4 or none.
    #[arg(long, value_parser = ["zstd", "lz4", "none"])]
    pub compress_algorithm: Option<String>,
    /// Level (zstd: -7 to 22); needs --compress-algorithm.
    #[arg(long, allow_hyphen_values = true)]
    pub compress_level: Option<i32>,
}

/// How to reach the database server (gs_probackup's names; `PG*` variables otherwise).
#[derive(Debug, Args, Default)]
pub struct ConnectionArgs {
    /// Database server host or socket directory.
    #[arg(short = 'h', long = "pghost", env = "PGHOST")]
    pub host: Option<String>,
    /// Database server port.
    #[arg(short = 'p', long = "pgport", env = "PGPORT")]
    pub port: Option<u16>,
    /// User to connect as (a superuser or replication role).
    #[arg(short = 'U', long = "pguser", env = "PGUSER")]
    pub user: Option<String>,
    /// Database to connect to.
    #[arg(short = 'd', long = "pgdatabase", env = "PGDATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Instance name.
    #[arg(long)]
    pub instance: String,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct AddInstanceArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// The cluster's data directory.
    #[arg(short = 'D', long = "pgdata", env = "PGDATA")]
    pub pgdata: PathBuf,
    /// Directories outside the data directory to back up with it, separated by ':'.
    #[arg(short = 'E', long = "external-dirs", value_delimiter = ':')]
    pub external_dirs: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[arg(long, action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct SetConfigArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    #[arg(short = 'D', long = "pgdata")]
    pub pgdata: Option<PathBuf>,
    #[arg(short = 'E', long = "external-dirs", value_delimiter = ':')]
    pub external_dirs: Option<Vec<String>>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub compression: CompressionArgs,
    #[command(flatten)]
    pub backup_retention: BackupRetentionArgs,
    /// Keep point-in-time recovery from the newest N backups (0: from all).
    #[arg(long, value_name = "N")]
    pub wal_depth: Option<u32>,
    #[arg(long, action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// Backup mode: FULL, or DELTA (reads only what changed since the newest backup; a FULL
    /// when there is none); PAGE and PTRACK are DELTAs that must take the changed blocks from
    /// the server's WAL summaries (PostgreSQL 17+, summarize_wal = on); LOGICAL is a dump of
    /// databases, schemas or tables.
    #[arg(short = 'b', long = "backup-mode", value_parser = ["FULL", "full", "DELTA", "delta", "PAGE", "page", "PTRACK", "ptrack", "LOGICAL", "logical"], default_value = "FULL")]
    pub mode: String,
    /// Parallel channels reading, compressing, encrypting and uploading (1-255).
    #[arg(short = 'j', long = "threads", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub threads: u16,
    /// Show progress.
    #[arg(long)]
    pub progress: bool,
    /// A note kept with the backup.
    #[arg(long)]
    pub note: Option<String>,
    /// Spread the starting checkpoint over time instead of a fast checkpoint.
    #[arg(short = 'C', long = "smooth-checkpoint")]
    pub smooth_checkpoint: bool,
    #[command(flatten)]
    pub compression: CompressionArgs,
    /// Do not read the backup back after taking it (status DONE instead of OK).
    #[arg(long)]
    pub no_validate: bool,
    /// Back up even if data pages fail their checksum.
    #[arg(long)]
    pub skip_block_validation: bool,
    /// After the backup, delete archived WAL no kept backup needs (see `delete --delete-wal`).
    #[arg(long)]
    pub delete_wal: bool,
    #[command(flatten)]
    pub retention: WalRetentionArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub logical: crate::logical_args::LogicalBackupArgs,
    #[arg(long, action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this backup (with --instance).
    #[arg(short = 'i', long = "backup-id", requires = "instance")]
    pub backup_id: Option<String>,
    /// The WAL archive of the instance: timelines, ranges, gaps, and which backups reach the present.
    #[arg(long, requires = "instance", conflicts_with = "backup_id")]
    pub archive: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// Target data directory (not for -b LOGICAL).
    #[arg(short = 'D', long = "pgdata")]
    pub pgdata: Option<PathBuf>,
    /// LOGICAL restores a logical backup with pg_restore (default: a physical restore).
    #[arg(short = 'b', long = "backup-mode", value_parser = ["LOGICAL", "logical"])]
    pub mode: Option<String>,
    /// Backup to restore (default: the newest usable one).
    #[arg(short = 'i', long = "backup-id")]
    pub backup_id: Option<String>,
    #[arg(short = 'j', long = "threads", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub threads: u16,
    #[arg(long)]
    pub progress: bool,
    /// Move a tablespace: OLDDIR=NEWDIR (repeatable).
    #[arg(short = 'T', long = "tablespace-mapping", value_parser = parse_mapping)]
    pub tablespace_mapping: Vec<(String, String)>,
    /// Move an external directory: OLDDIR=NEWDIR (repeatable).
    #[arg(long = "external-mapping", value_parser = parse_mapping)]
    pub external_mapping: Vec<(String, String)>,
    #[arg(long)]
    pub skip_external_dirs: bool,
    /// Restore into a non-empty directory, replacing its contents.
    #[arg(long)]
    pub force: bool,
    /// Incremental restore into an existing data directory: none (the default: a full
    /// restore), checksum (files compared chunk by chunk, only differences written), lsn (the
    /// same as checksum, for now).
    #[arg(short = 'I', long = "incremental-mode", value_parser = ["none", "checksum", "lsn"], default_value = "none", conflicts_with = "force")]
    pub incremental_mode: String,
    /// off: the restored cluster does not archive WAL (archive_mode = off), for a copy that runs
    /// beside its source; preserve (the default): archiving as the source was set up.
    #[arg(long, value_parser = ["preserve", "off"], default_value = "preserve")]
    pub archive_mode: String,
    #[command(flatten)]
    pub recovery: RecoveryArgs,
    #[command(flatten)]
    pub logical: crate::logical_args::LogicalRestoreArgs,
}

/// A recovery target (PostgreSQL's parameter names).
#[derive(Debug, Args)]
#[group(skip)]
pub struct TargetArgs {
    /// Recover to this time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS[.f][+TZ]'; local time without a zone).
    #[arg(long, conflicts_with_all = ["recovery_target_xid", "recovery_target_lsn", "recovery_target_name", "recovery_target"])]
    pub recovery_target_time: Option<String>,
    /// Recover to this transaction's commit.
    #[arg(long, conflicts_with_all = ["recovery_target_time", "recovery_target_lsn", "recovery_target_name", "recovery_target"])]
    pub recovery_target_xid: Option<u64>,
    /// Recover to this WAL position (e.g. 0/3000028).
    #[arg(long, conflicts_with_all = ["recovery_target_time", "recovery_target_xid", "recovery_target_name", "recovery_target"])]
    pub recovery_target_lsn: Option<String>,
    /// Recover to this named restore point (pg_create_restore_point).
    #[arg(long, conflicts_with_all = ["recovery_target_time", "recovery_target_xid", "recovery_target_lsn", "recovery_target"])]
    pub recovery_target_name: Option<String>,
    /// immediate: stop as soon as the backup is consistent; latest: replay the whole archive.
    #[arg(long, conflicts_with_all = ["recovery_target_time", "recovery_target_xid", "recovery_target_lsn", "recovery_target_name"], value_parser = ["immediate", "latest"])]
    pub recovery_target: Option<String>,
    /// Timeline to follow: a number, current (the backup's) or latest.
    #[arg(long)]
    pub recovery_target_timeline: Option<String>,
}

/// Point-in-time recovery from the instance's WAL archive (PostgreSQL's parameter names).
#[derive(Debug, Args)]
#[group(skip)]
pub struct RecoveryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Stop just after the target (true) or just before it (false).
    #[arg(long, value_parser = clap::value_parser!(bool))]
    pub recovery_target_inclusive: Option<bool>,
    /// What the server does at the target: pause, promote (open the database) or shutdown.
    #[arg(long, value_parser = ["pause", "promote", "shutdown"])]
    pub recovery_target_action: Option<String>,
    /// Start the restored cluster as a standby that keeps replaying the archive.
    #[arg(long)]
    pub restore_as_replica: bool,
    /// The restore_command to write (default: this cairn's archive-get with this repository).
    #[arg(long)]
    pub restore_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only this instance (default: every instance).
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this backup (with --instance).
    #[arg(short = 'i', long = "backup-id", requires = "instance")]
    pub backup_id: Option<String>,
    #[arg(short = 'j', long = "threads", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub threads: u16,
    #[arg(long)]
    pub progress: bool,
    /// Do not re-check data pages' checksums.
    #[arg(long)]
    pub skip_block_validation: bool,
    /// Answer "can the instance be restored to this point?": the backup restore would pick,
    /// the WAL archive from it to the target, and that backup's data.
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ArchivePushArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// The WAL file to store (%p).
    pub wal_path: PathBuf,
    /// Its name (%f); by default the last component of the path.
    pub wal_name: Option<String>,
    #[command(flatten)]
    pub compression: CompressionArgs,
    /// Hand the file to a background worker that pushes every file the server has ready,
    /// several at a time, and return once this one is stored.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Parallel pushes of the background worker.
    #[arg(short = 'j', long = "threads", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// With --async: how long to wait for the worker before failing (the server retries).
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub async_timeout: u64,
    /// Run as the background worker (started by --async).
    #[arg(long, hide = true)]
    pub worker: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveGetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// The WAL file wanted (%f).
    pub wal_name: String,
    /// Where to write it (%p).
    pub destination: PathBuf,
    /// Segments to fetch ahead, in the background, while the server replays (0: none).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub prefetch: u16,
    /// Run as the background prefetcher (started by archive-get itself).
    #[arg(long, hide = true)]
    pub prefetch_worker: bool,
}

#[derive(Debug, Args)]
pub struct RestoreWalArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// Start of the range: a time (as for --recovery-target-time).
    #[arg(long, requires = "to", conflicts_with_all = ["from_lsn", "to_lsn"])]
    pub from: Option<String>,
    /// End of the range: a time.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Start of the range: a WAL position.
    #[arg(long, requires = "to_lsn")]
    pub from_lsn: Option<String>,
    /// End of the range: a WAL position.
    #[arg(long, requires = "from_lsn")]
    pub to_lsn: Option<String>,
    /// Follow the history of this timeline (default: the newest).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// Directory to write the segments into (created if missing; nothing is overwritten).
    #[arg(long)]
    pub target_dir: PathBuf,
}

/// How much archived WAL to keep (the seeds' "retain archived logs" option).
#[derive(Debug, Args, Clone, Copy)]
pub struct WalRetentionArgs {
    /// Keep point-in-time recovery only from the newest N backups (0: from all of them;
    /// default: the instance's setting, else 0).
    #[arg(long, value_name = "N")]
    pub wal_depth: Option<u32>,
    /// Never delete WAL holding commits from the last N days.
    #[arg(long, value_name = "DAYS")]
    pub keep_wal_days: Option<u32>,
}

/// Retention of backups (stored with the instance by set-config, or given here).
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct BackupRetentionArgs {
    /// Keep the newest N FULL backups and everything after the oldest of them.
    #[arg(long, value_name = "N")]
    pub retention_redundancy: Option<u32>,
    /// Keep what restores to any moment of the last N days.
    #[arg(long, value_name = "DAYS")]
    pub retention_window: Option<u32>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// Delete this backup.
    #[arg(short = 'i', long = "backup-id", conflicts_with_all = ["delete_expired", "merge_expired", "status"])]
    pub backup_id: Option<String>,
    /// Delete the backups the retention policy expires.
    #[arg(long, conflicts_with = "status")]
    pub delete_expired: bool,
    /// As --delete-expired, after making FULL the oldest kept DELTA descending from expired backups.
    #[arg(long, conflicts_with = "status")]
    pub merge_expired: bool,
    /// Delete every backup with this status.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(DELETABLE_STATUSES).map(|s| s.to_uppercase()), ignore_case = true)]
    pub status: Option<String>,
    #[command(flatten)]
    pub backup_retention: BackupRetentionArgs,
    /// Then delete archived WAL that no kept backup needs for point-in-time recovery.
    #[arg(long)]
    pub delete_wal: bool,
    #[command(flatten)]
    pub retention: WalRetentionArgs,
    /// Say what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The statuses `delete --status` takes.
const DELETABLE_STATUSES: [&str; 7] = ["ERROR", "CORRUPT", "ORPHAN", "DONE", "OK", "MERGING", "DELETING"];

#[derive(Debug, Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    /// The DELTA backup to make FULL.
    #[arg(short = 'i', long = "backup-id")]
    pub backup_id: String,
}

#[derive(Debug, Args)]
pub struct SetBackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub instance: String,
    #[arg(short = 'i', long = "backup-id")]
    pub backup_id: String,
    /// A note kept with the backup ("" removes it).
    #[arg(long)]
    pub note: Option<String>,
    /// Pin the backup for this long from now: 30d, 12h, 90m; 0 unpins it.
    #[arg(long, conflicts_with = "expire_time")]
    pub ttl: Option<String>,
    /// Pin the backup until this time.
    #[arg(long)]
    pub expire_time: Option<String>,
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((old, new)) if old.starts_with('/') && new.starts_with('/') => {
            Ok((old.to_string(), new.to_string()))
        }
        _ => Err(format!("'{s}' is not OLDDIR=NEWDIR with two absolute paths")),
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Encryption of everything stored.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305", "none"])]
    pub encryption: String,
    /// Default compression of new data.
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "lz4", "none"])]
    pub compress_algorithm: String,
    /// Compression level (zstd: -7 to 22).
    #[arg(long, allow_hyphen_values = true)]
    pub compress_level: Option<i32>,
    /// Fixed chunk size for relation files: a multiple of 8 KiB (suffixes K, M).
    #[arg(long, value_parser = crate::size::parse_size)]
    pub chunk_size: Option<u64>,
    /// Target size of pack files (suffixes K, M).
    #[arg(long, value_parser = crate::size::parse_size)]
    pub pack_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Read, decrypt and re-hash every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Parallel channels reading packs.
    #[arg(short = 'j', long = "threads", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=255))]
    pub threads: u16,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password; the new one from --new-password-file or a prompt.
    Add(KeyAddArgs),
    /// List the keys.
    List(KeyListArgs),
    /// Remove a key by id (or unique id prefix); never the last one.
    Remove(KeyRemoveArgs),
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// File holding the new password (first line).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// A key that opens in milliseconds (Argon2id 8 MiB, 1 pass) for a long random machine
    /// password, such as archive_command's; refused for passwords under 24 characters.
    #[arg(long)]
    pub fast_kdf: bool,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Key id or a unique prefix of it.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Report what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Remove every lock, not just stale ones (only when no cairn process uses the repository).
    #[arg(long)]
    pub remove_all: bool,
}

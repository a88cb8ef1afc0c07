//! The command line, as clap derive types. Option names follow gs_probackup where it has one.

use std::path::PathBuf;

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

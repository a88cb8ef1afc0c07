//! One module per command; each turns its arguments into library calls and renders the result.

mod archive;
mod backup;
mod check;
mod init;
mod instance;
mod key;
mod lifecycle;
mod logical;
mod prune;
mod restore;
mod show;
mod unlock;

use std::sync::Arc;

use cairn_repo::{Compression, Repository};
use cairn_storage::{Storage, StorageOptions};

use crate::cli::{Cli, Command, CompressionArgs, KeyCommand, RepoArgs};
use crate::password;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.format;
    match cli.command {
        Command::Init(args) => init::run(format, &args),
        Command::Check(args) => check::run(format, &args),
        Command::Key(KeyCommand::Add(args)) => key::add(format, &args),
        Command::Key(KeyCommand::List(args)) => key::list(format, &args),
        Command::Key(KeyCommand::Remove(args)) => key::remove(format, &args),
        Command::Prune(args) => prune::run(format, &args),
        Command::Unlock(args) => unlock::run(format, &args),
        Command::AddInstance(args) => instance::add(format, &args),
        Command::DelInstance(args) => instance::delete(format, &args),
        Command::SetConfig(args) => instance::set(format, &args),
        Command::ShowConfig(args) => instance::show(format, &args),
        Command::Backup(args) => backup::run(format, &args),
        Command::Show(args) => show::run(format, &args),
        Command::Restore(args) => restore::run(format, &args),
        Command::Validate(args) => restore::validate(format, &args),
        Command::ArchivePush(args) => archive::push(format, &args),
        Command::ArchiveGet(args) => archive::get(format, &args),
        Command::RestoreWal(args) => archive::restore_wal(format, &args),
        Command::Delete(args) => lifecycle::delete(format, &args),
        Command::SetBackup(args) => lifecycle::set_backup(format, &args),
        Command::Merge(args) => lifecycle::merge(format, &args),
        Command::Version => {
            let value = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "repository_format": cairn_repo::config::FORMAT_VERSION,
            });
            crate::output::print(format, &value, || {
                format!(
                    "cairn {} (repository format {})",
                    env!("CARGO_PKG_VERSION"),
                    cairn_repo::config::FORMAT_VERSION
                )
            });
            Ok(())
        }
    }
}

/// The storage the repository arguments point at.
pub fn storage(args: &RepoArgs) -> anyhow::Result<Arc<dyn Storage>> {
    let mut options = StorageOptions {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        path_style: args.s3_path_style,
        bandwidth_limit: args.limit_rate,
        ..Default::default()
    };
    options.fill_from_env();
    Ok(cairn_storage::open(&args.backup_path, &options)?)
}

/// Opens the repository, asking for its password only if it is encrypted.
pub fn open(args: &RepoArgs) -> anyhow::Result<Repository> {
    let storage = storage(args)?;
    match Repository::open(storage.clone(), None) {
        Err(cairn_repo::RepoError::PasswordRequired { .. }) => {
            let password = password::existing(args.password_file.as_deref(), &storage.location())?;
            Ok(Repository::open(storage, password.as_deref())?)
        }
        other => Ok(other?),
    }
}

impl CompressionArgs {
    /// The compression asked for; `None` when neither option is given.
    pub fn parse(&self) -> anyhow::Result<Option<Compression>> {
        match &self.compress_algorithm {
            Some(a) => Ok(Some(Compression::parse(a, self.compress_level).map_err(crate::exit::usage)?)),
            None if self.compress_level.is_some() => {
                Err(crate::exit::usage("--compress-level needs --compress-algorithm"))
            }
            None => Ok(None),
        }
    }
}

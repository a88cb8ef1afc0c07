//! `cairn init`: create a repository.

use cairn_repo::{ChunkerParams, Compression, Encryption, InitOptions, Repository};

use crate::cli::{Format, InitArgs};
use crate::exit::usage;
use crate::output;
use crate::password;

pub fn run(format: Format, args: &InitArgs) -> anyhow::Result<()> {
    let encryption = Encryption::parse(&args.encryption).map_err(usage)?;
    let compression = Compression::parse(&args.compress_algorithm, args.compress_level).map_err(usage)?;
    let mut chunker = ChunkerParams::default();
    if let Some(size) = args.chunk_size {
        chunker.fixed_size = u32::try_from(size).map_err(|_| usage("chunk size is too large"))?;
    }
    let mut options = InitOptions { encryption, compression, chunker, ..Default::default() };
    if let Some(size) = args.pack_size {
        options.pack_size = u32::try_from(size).map_err(|_| usage("pack size is too large"))?;
    }
    let storage = super::storage(&args.repo)?;
    let location = storage.location();
    if encryption != Encryption::None {
        options.password = Some(password::new(args.repo.password_file.as_deref(), true, &location)?);
    }
    let repo = Repository::init(storage, options)?;
    let config = repo.config();
    output::print(format, config, || {
        let compression = match config.compression {
            Compression::Zstd { level } => format!("zstd level {level}"),
            Compression::Lz4 => "lz4".into(),
            Compression::None => "none".into(),
        };
        format!(
            "created repository {} at {location}\n  encryption: {}\n  compression: {compression}\n  chunk size: {}",
            config.id.short(),
            config.encryption.name(),
            output::bytes(config.chunker.fixed_size as u64),
        ) + if encryption == Encryption::None {
            "\n  warning: the repository is not encrypted; anyone who can read the storage can read the backups"
        } else {
            "\n  keep the password safe: without it no backup in this repository can be restored"
        }
    });
    Ok(())
}

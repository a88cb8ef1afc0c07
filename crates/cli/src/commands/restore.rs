//! `cairn restore` and `cairn validate`.

use cairn_engine::RestoreOptions;

use crate::cli::{Format, RestoreArgs, ValidateArgs};
use crate::output;

pub fn run(format: Format, args: &RestoreArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let options = RestoreOptions {
        instance: args.instance.clone(),
        backup_id: args.backup_id.clone(),
        target: std::path::absolute(&args.pgdata)?,
        channels: args.threads as usize,
        tablespace_mapping: args.tablespace_mapping.clone(),
        external_mapping: args.external_mapping.clone(),
        skip_external_dirs: args.skip_external_dirs,
        force: args.force,
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::restore(&repo, &options, progress.as_ref())?;
    output::print(format, &s, || {
        format!(
            "restored backup {} into {}: {} file(s), {} in {:.1} s ({}/s)\nstart the server on it; it recovers to the backup's consistent point",
            s.backup_id,
            s.target,
            s.files,
            output::bytes(s.bytes),
            s.seconds,
            output::bytes((s.bytes as f64 / s.seconds.max(0.001)) as u64)
        )
    });
    Ok(())
}

pub fn validate(format: Format, args: &ValidateArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::validate(
        &repo,
        &args.instance,
        args.backup_id.as_deref(),
        args.threads as usize,
        progress.as_ref(),
    )?;
    output::print(format, &s, || {
        format!(
            "backup {} is valid: {} file(s), {} read back in {:.1} s",
            s.backup_id,
            s.files,
            output::bytes(s.bytes),
            s.seconds
        )
    });
    Ok(())
}

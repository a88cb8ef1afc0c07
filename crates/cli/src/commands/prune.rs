//! `cairn prune`: remove data no backup needs.

use crate::cli::{Format, PruneArgs};
use crate::output;

pub fn run(format: Format, args: &PruneArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let s = cairn_repo::prune(&repo, &cairn_repo::PruneOptions { dry_run: args.dry_run })?;
    output::print(format, &s, || {
        let verb = if s.dry_run { "would remove" } else { "removed" };
        format!(
            "{verb} {} unused blob(s): {} pack(s) deleted, {} repacked into {} new\nrepository data: {} -> {}",
            s.blobs_removed,
            s.packs_deleted,
            s.packs_repacked,
            s.packs_written,
            output::bytes(s.bytes_before),
            output::bytes(s.bytes_after)
        )
    });
    Ok(())
}

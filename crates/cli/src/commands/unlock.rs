//! `cairn unlock`: remove stale locks.

use crate::cli::{Format, UnlockArgs};
use crate::output;

pub fn run(format: Format, args: &UnlockArgs) -> anyhow::Result<()> {
    // Locks hold no secrets, so no password is needed to clear them.
    let storage = super::storage(&args.repo)?;
    let removed = cairn_repo::lock::remove_locks(storage.as_ref(), args.remove_all)?;
    output::print(format, &removed, || {
        let mut out = format!("removed {} lock(s)\n", removed.len());
        for l in &removed {
            out += &format!("  {}\n", l.describe());
        }
        out
    });
    Ok(())
}

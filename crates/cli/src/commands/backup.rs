//! `cairn backup`.

use cairn_engine::catalog::BackupMode;
use cairn_engine::BackupOptions;

use crate::cli::{BackupArgs, Format};
use crate::output;

pub fn run(format: Format, args: &BackupArgs) -> anyhow::Result<()> {
    if args.mode.eq_ignore_ascii_case("logical") {
        return super::logical::backup(format, args);
    }
    if args.logical.given() {
        return Err(crate::exit::usage(
            "--database, --schema, --table and the other dump options need -b LOGICAL",
        ));
    }
    let repo = super::open(&args.repo)?;
    let compression = args.compression.parse()?;
    let options = BackupOptions {
        instance: args.instance.clone(),
        connection: super::instance::connection(&args.connection),
        channels: args.threads as usize,
        smooth_checkpoint: args.smooth_checkpoint,
        compression,
        note: args.note.clone(),
        no_validate: args.no_validate,
        skip_block_validation: args.skip_block_validation,
        mode: if args.mode.eq_ignore_ascii_case("full") { BackupMode::Full } else { BackupMode::Delta },
        // PAGE and PTRACK: pg_probackup's block-level modes, here from the server's WAL summaries.
        require_wal_summaries: ["page", "ptrack"].iter().any(|m| args.mode.eq_ignore_ascii_case(m)),
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::backup(&repo, &options, progress.as_ref())?;
    // The backup is kept whatever happens next; WAL retention runs only after it.
    let deletion = if args.delete_wal {
        let (_, config) = cairn_engine::instance::find(&repo, &args.instance)?;
        let policy = super::archive::retention(&args.retention, &config.retention);
        Some(cairn_engine::archive::delete_wal(&repo, &args.instance, policy, false)?)
    } else {
        None
    };
    let mut value = serde_json::to_value(&s)?;
    if let Some(d) = &deletion {
        value["wal_deletion"] = serde_json::to_value(d)?;
    }
    output::print(format, &value, || {
        let r = &s.record;
        let lsn = |l: Option<cairn_pg::Lsn>| l.map_or("-".into(), |l| l.to_string());
        format!(
            "{:?} backup {} of instance '{}' completed: status {:?}{}\n  LSN {} to {} on timeline {}\n  {} file(s), {} of data, {} added to the repository ({:.0}% of chunks reused)\n  {:.1} s, {}/s",
            r.mode,
            r.id,
            r.instance,
            r.status,
            r.parent
                .as_ref()
                .map(|p| format!(
                    ", parent {p}: {} file(s) unchanged, {} of changed files from the parent ({})",
                    s.unchanged_files,
                    output::bytes(s.reused_bytes),
                    r.change_source.as_deref().unwrap_or("files read whole")
                ))
                .unwrap_or_default(),
            lsn(r.start_lsn),
            lsn(r.stop_lsn),
            r.timeline.map_or("-".into(), |t| t.get().to_string()),
            s.files,
            output::bytes(r.data_bytes),
            output::bytes(r.stored_bytes),
            if s.chunks == 0 { 0.0 } else { s.reused_chunks as f64 * 100.0 / s.chunks as f64 },
            s.seconds,
            output::bytes((r.data_bytes as f64 / s.seconds.max(0.001)) as u64),
        ) + &deletion.as_ref().map(|d| format!("\n  {}", super::archive::describe(d))).unwrap_or_default()
    });
    Ok(())
}

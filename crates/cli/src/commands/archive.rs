//! `cairn archive-push` and `cairn archive-get`, called by the server itself: quiet when all
//! is well, one line on standard error when not.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_engine::archive::{self, WalDeletion, WalRange, WalRetention};
use cairn_engine::spool::Spool;

use cairn_engine::instance::Retention;

use crate::cli::{ArchiveGetArgs, ArchivePushArgs, Format, RestoreWalArgs, WalRetentionArgs};
use crate::exit::usage;
use crate::output;

pub fn push(_format: Format, args: &ArchivePushArgs) -> anyhow::Result<()> {
    let name = match &args.wal_name {
        Some(name) => name.clone(),
        None => args
            .wal_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| usage(format!("{} names no file", args.wal_path.display())))?,
    };
    let compression = args.compression.parse()?;
    let spool = Spool::of_wal_file(&args.wal_path);
    if args.worker {
        let repo = super::open(&args.repo)?;
        let compression = compression.unwrap_or(repo.config().compression);
        cairn_engine::spool::push_ready(&repo, &args.instance, &spool, args.threads as usize, compression)?;
        return Ok(());
    }
    if args.asynchronous {
        return wait_for_worker(args, &spool, &name);
    }
    let repo = super::open(&args.repo)?;
    let compression = compression.unwrap_or(repo.config().compression);
    cairn_engine::archive::push(&repo, &args.instance, &args.wal_path, &name, compression)?;
    Ok(())
}

/// Waits until the background worker has pushed `name`, starting one whenever none runs.
fn wait_for_worker(args: &ArchivePushArgs, spool: &Spool, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.async_timeout);
    loop {
        match spool.take_outcome(name) {
            Some(Ok(())) => return Ok(()),
            Some(Err(message)) => return Err(anyhow::anyhow!(message)),
            None => {}
        }
        if !spool.worker_running() {
            start_detached(&["--worker"], &["--async"], spool.dir(), "worker.log")?;
            // Give it a moment to claim the spool before looking again.
            std::thread::sleep(Duration::from_millis(50));
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "{name} was not archived within {} s by the background worker (see {}); the server will retry",
                args.async_timeout,
                spool.dir().join("worker.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts this same command again with `add` and without `remove` among its arguments,
/// detached from the server (its own process group; output to `log` in `dir`).
fn start_detached(add: &[&str], remove: &[&str], dir: &std::path::Path, log: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log))?;
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| !remove.contains(&a.as_str())).collect();
    args.splice(1..1, add.iter().map(|a| a.to_string()));
    Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(())
}

/// Exits 1, silently, when the archive does not have the file: that is how recovery learns
/// where the archive ends. Any other failure exits above 128 (see `main`), which makes the
/// server stop recovery instead of taking it for the end of the archive. Segments come from
/// the prefetch directory when a background worker has fetched them already.
pub fn get(_format: Format, args: &ArchiveGetArgs) -> anyhow::Result<()> {
    let prefetch = args.prefetch as usize;
    if args.prefetch_worker {
        let repo = super::open(&args.repo)?;
        archive::prefetch(&repo, &args.instance, &args.wal_name, &args.destination, prefetch)?;
        return Ok(());
    }
    let found = archive::take_prefetched(&args.wal_name, &args.destination)? || {
        let repo = super::open(&args.repo)?;
        archive::get(&repo, &args.instance, &args.wal_name, &args.destination)?
    };
    if !found {
        std::process::exit(1);
    }
    if archive::prefetch_wanted(&args.destination, prefetch) {
        start_detached(
            &["--prefetch-worker"],
            &[],
            &archive::prefetch_dir(&args.destination),
            "prefetch.log",
        )?;
    }
    Ok(())
}

pub fn restore_wal(format: Format, args: &RestoreWalArgs) -> anyhow::Result<()> {
    let time = |t: &str| cairn_engine::recovery::parse_time(t).map_err(usage);
    let lsn = |l: &str| l.parse().map_err(|_| usage(format!("'{l}' is not an LSN (like 0/3000028)")));
    let range = match (&args.from, &args.to, &args.from_lsn, &args.to_lsn) {
        (Some(from), Some(to), _, _) => WalRange::Time(time(from)?, time(to)?),
        (_, _, Some(from), Some(to)) => WalRange::Lsn(lsn(from)?, lsn(to)?),
        _ => return Err(usage("give the range: --from TIME --to TIME, or --from-lsn LSN --to-lsn LSN")),
    };
    let timeline = args
        .timeline
        .map(cairn_pg::TimelineId::new)
        .transpose()
        .map_err(|e| usage(format!("--timeline: {e}")))?;
    let repo = super::open(&args.repo)?;
    let s = cairn_engine::archive::restore_wal(&repo, &args.instance, range, timeline, &args.target_dir)?;
    output::print(format, &s, || {
        let (first, last) = (s.segments.first(), s.segments.last());
        format!(
            "{} segment(s) ({}) written to {}{}",
            s.segments.len(),
            output::bytes(s.bytes),
            s.target_dir,
            first.zip(last).map(|(a, b)| format!(": {a} to {b}")).unwrap_or_default()
        )
    });
    Ok(())
}

/// WAL retention from the command line, else the instance's settings.
pub fn retention(args: &WalRetentionArgs, stored: &Retention) -> WalRetention {
    WalRetention {
        wal_depth: args.wal_depth.or(stored.wal_depth).unwrap_or(0) as usize,
        keep_days: args.keep_wal_days,
    }
}

pub fn describe(done: &WalDeletion) -> String {
    let verb = if done.dry_run { "would delete" } else { "deleted" };
    match (&done.kept_from_lsn, done.deleted.first(), done.deleted.last()) {
        (None, ..) => format!("no backup of '{}' to anchor on: all archived WAL is kept", done.instance),
        (Some(lsn), Some(first), Some(last)) => format!(
            "{verb} {} archived WAL file(s) ({first} .. {last}); kept {} from {lsn} on",
            done.deleted.len(),
            done.kept
        ),
        (Some(lsn), ..) => {
            format!("nothing to delete: all {} archived WAL file(s) are from {lsn} on or needed", done.kept)
        }
    }
}

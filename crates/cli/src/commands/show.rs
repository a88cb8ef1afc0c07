//! `cairn show`: instances and their backups.

use cairn_engine::catalog::{self, BackupInfo};
use cairn_engine::instance;

use crate::cli::{Format, ShowArgs};
use crate::output;

pub fn run(format: Format, args: &ShowArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    if let Some(name) = &args.instance {
        instance::find(&repo, name)?;
        if args.archive {
            let report = cairn_engine::archive::report(&repo, name)?;
            output::print(format, &report, || archive_table(&report));
            return Ok(());
        }
    }
    let mut backups = catalog::list(&repo, args.instance.as_deref())?;
    if let (Some(name), Some(id)) = (&args.instance, &args.backup_id) {
        let one = catalog::find(&repo, name, Some(id))?;
        backups = vec![one];
    }
    let records: Vec<&cairn_engine::BackupRecord> = backups.iter().map(|b| &b.record).collect();
    output::print(format, &records, || table(&backups));
    Ok(())
}

fn table(backups: &[BackupInfo]) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:<20} {:<7} {:<8} {:<4} {:>10} {:>10} {:>8} {:<12} {:<12}\n",
        "INSTANCE",
        "ID",
        "START TIME",
        "MODE",
        "STATUS",
        "TLI",
        "DATA",
        "ADDED",
        "TIME",
        "START LSN",
        "STOP LSN"
    );
    for b in backups {
        let r = &b.record;
        let duration = r.end_time.map(|e| (e - r.start_time).num_milliseconds() as f64 / 1000.0);
        out += &format!(
            "{:<12} {:<8} {:<20} {:<7} {:<8} {:<4} {:>10} {:>10} {:>8} {:<12} {:<12}\n",
            r.instance,
            r.id,
            r.start_time.format("%Y-%m-%d %H:%M:%S"),
            format!("{:?}", r.mode).to_uppercase(),
            format!("{:?}", r.status).to_uppercase(),
            r.timeline.map_or("-".into(), |t| t.get().to_string()),
            output::bytes(r.data_bytes),
            output::bytes(r.stored_bytes),
            duration.map_or("-".into(), |d| format!("{d:.1}s")),
            r.start_lsn.map_or("-".into(), |l| l.to_string()),
            r.stop_lsn.map_or("-".into(), |l| l.to_string()),
        );
    }
    out + &super::logical::scopes(backups)
}

fn archive_table(report: &cairn_engine::archive::ArchiveReport) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let mut out = format!(
        "{:<4} {:<24} {:<24} {:>8} {:<20} {:<20} GAPS\n",
        "TLI", "FIRST SEGMENT", "LAST SEGMENT", "SEGMENTS", "FIRST COMMIT", "LAST COMMIT"
    );
    if report.timelines.is_empty() {
        out = format!("instance '{}' has no archived WAL\n", report.instance);
    }
    for t in &report.timelines {
        let gaps: Vec<String> =
            t.gaps.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        out += &format!(
            "{:<4} {:<24} {:<24} {:>8} {:<20} {:<20} {}\n",
            t.timeline.get(),
            t.first_segment.to_string(),
            t.last_segment.to_string(),
            t.segments,
            time(t.first_commit),
            time(t.last_commit),
            if gaps.is_empty() { "none".into() } else { gaps.join(", ") }
        );
    }
    for b in &report.backups {
        out += &match &b.reason {
            None => format!("backup {} reaches the end of the archive\n", b.id),
            Some(reason) => format!("backup {} does not reach the end of the archive: {reason}\n", b.id),
        };
    }
    out
}

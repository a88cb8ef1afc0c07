//! `cairn show`: instances and their backups.

use cairn_engine::catalog::{self, BackupInfo};
use cairn_engine::instance;

use crate::cli::{Format, ShowArgs};
use crate::output;

pub fn run(format: Format, args: &ShowArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    if let Some(name) = &args.instance {
        instance::find(&repo, name)?;
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
        "{:<12} {:<8} {:<20} {:<5} {:<8} {:<4} {:>10} {:>10} {:>8} {:<12} {:<12}\n",
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
            "{:<12} {:<8} {:<20} {:<5} {:<8} {:<4} {:>10} {:>10} {:>8} {:<12} {:<12}\n",
            r.instance,
            r.id,
            r.start_time.format("%Y-%m-%d %H:%M:%S"),
            "FULL",
            format!("{:?}", r.status).to_uppercase(),
            r.timeline.map_or("-".into(), |t| t.get().to_string()),
            output::bytes(r.data_bytes),
            output::bytes(r.stored_bytes),
            duration.map_or("-".into(), |d| format!("{d:.1}s")),
            r.start_lsn.map_or("-".into(), |l| l.to_string()),
            r.stop_lsn.map_or("-".into(), |l| l.to_string()),
        );
    }
    out
}

//! `cairn delete`, `cairn merge` and `cairn set-backup`: the backup lifecycle.

use cairn_engine::archive;
use cairn_engine::catalog::BackupStatus;
use cairn_engine::lifecycle::{self, Selection};
use cairn_engine::retention::RetentionPolicy;

use super::archive::{describe, retention};
use crate::cli::{DeleteArgs, Format, MergeArgs, SetBackupArgs};
use crate::exit::usage;
use crate::output;

/// `cairn delete`: backups first (by id, status or expiry), then archived WAL.
pub fn delete(format: Format, args: &DeleteArgs) -> anyhow::Result<()> {
    let selection = if let Some(id) = &args.backup_id {
        Some(Selection::Id(id.clone()))
    } else if let Some(status) = &args.status {
        let status: BackupStatus = serde_json::from_value(serde_json::json!(status.to_uppercase()))?;
        Some(Selection::Status(status))
    } else {
        None
    };
    let expire = args.delete_expired || args.merge_expired;
    if selection.is_none() && !expire && !args.delete_wal {
        return Err(usage(
            "say what to delete: -i ID, --status STATUS, --delete-expired or --merge-expired, and/or --delete-wal",
        ));
    }
    let repo = super::open(&args.repo)?;
    let (_, config) = cairn_engine::instance::find(&repo, &args.instance)?;
    let selection = match selection {
        Some(s) => Some(s),
        None if expire => {
            let policy = RetentionPolicy {
                redundancy: args.backup_retention.retention_redundancy.or(config.retention.redundancy),
                window_days: args.backup_retention.retention_window.or(config.retention.window_days),
            };
            if !policy.is_set() {
                return Err(usage(
                    "no retention policy: give --retention-redundancy and/or --retention-window, or store them with set-config",
                ));
            }
            Some(match args.merge_expired {
                true => Selection::MergeExpired(policy),
                false => Selection::Expired(policy),
            })
        }
        None => None,
    };
    let backups = match &selection {
        Some(s) => Some(lifecycle::delete(&repo, &args.instance, s, args.dry_run)?),
        None => None,
    };
    let wal = match args.delete_wal {
        true => Some(archive::delete_wal(
            &repo,
            &args.instance,
            retention(&args.retention, &config.retention),
            args.dry_run,
        )?),
        false => None,
    };
    let value = serde_json::json!({"backups": backups, "wal": wal});
    output::print(format, &value, || {
        let mut out = String::new();
        if let Some(b) = &backups {
            let (verb, made_full) =
                if b.dry_run { ("would delete", "would make FULL") } else { ("deleted", "made FULL") };
            if b.deleted.is_empty() {
                out += "no backup to delete\n";
            }
            for m in &b.merged {
                out += &format!("{made_full} backup {}: {}\n", m.id, m.reason);
            }
            for d in &b.deleted {
                out += &format!("{verb} backup {}: {}\n", d.id, d.reason);
            }
            if let Some(p) = &b.prune {
                out += &freed(p);
            }
        }
        if let Some(w) = &wal {
            out += &describe(w);
        }
        out
    });
    Ok(())
}

/// `cairn merge`: a DELTA becomes FULL, its ancestors go.
pub fn merge(format: Format, args: &MergeArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let summary = lifecycle::merge(&repo, &args.instance, &args.backup_id)?;
    output::print(format, &summary, || {
        let mut out = format!("backup {} is FULL (status {})\n", summary.backup_id, summary.status);
        if !summary.removed.is_empty() {
            out += &format!("deleted the backup(s) it descended from: {}\n", summary.removed.join(", "));
        }
        if let Some(p) = &summary.prune {
            out += &freed(p);
        }
        out
    });
    Ok(())
}

fn freed(p: &cairn_repo::PruneSummary) -> String {
    format!(
        "freed {} ({} pack(s) deleted, {} repacked)\n",
        output::bytes(p.bytes_before.saturating_sub(p.bytes_after)),
        p.packs_deleted,
        p.packs_repacked
    )
}

/// `cairn set-backup`: note and pin.
pub fn set_backup(format: Format, args: &SetBackupArgs) -> anyhow::Result<()> {
    let expire_time = match (&args.ttl, &args.expire_time) {
        (Some(ttl), _) => Some(parse_ttl(ttl)?.map(|d| chrono::Utc::now() + d)),
        (None, Some(t)) => Some(Some(cairn_engine::recovery::parse_time(t).map_err(usage)?)),
        (None, None) => None,
    };
    let repo = super::open(&args.repo)?;
    let record =
        lifecycle::set_backup(&repo, &args.instance, &args.backup_id, args.note.clone(), expire_time)?;
    output::print(format, &record, || match record.expire_time {
        Some(t) => format!("backup {} is pinned until {t}", record.id),
        None => format!("backup {} is not pinned", record.id),
    });
    Ok(())
}

/// `30d`, `12h`, `90m`, `3600s` or `0` (none).
fn parse_ttl(text: &str) -> anyhow::Result<Option<chrono::Duration>> {
    let bad = || usage(format!("--ttl '{text}': give a number and a unit, like 30d, 12h or 90m (0 unpins)"));
    if text == "0" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => return Err(bad()),
    };
    Ok((seconds > 0).then(|| chrono::Duration::seconds(seconds)))
}

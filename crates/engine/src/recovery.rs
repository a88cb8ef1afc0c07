//! Point-in-time recovery: which backup serves a recovery target, whether the WAL archive can
//! carry that backup to the target (timelines, gaps), and the recovery settings written into
//! the restored data directory.

use std::fmt;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use cairn_pg::flavor::RecoveryMechanism;
use cairn_pg::wal::parse_history;
use cairn_pg::{Flavor, Lsn, TimelineId, WalFileName, WalSegmentName, WalSegmentSize};
use cairn_repo::Repository;

use crate::archive::{self, ArchiveListing};
use crate::catalog::BackupInfo;
use crate::error::{EngineError, Result};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "value")]
pub enum Target {
    Time(DateTime<Utc>),
    Xid(u64),
    Lsn(Lsn),
    Name(String),
    /// As soon as the backup is consistent.
    Immediate,
    /// The end of the archive.
    Latest,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time {}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
            Target::Xid(x) => write!(f, "xid {x}"),
            Target::Lsn(l) => write!(f, "LSN {l}"),
            Target::Name(n) => write!(f, "restore point '{n}'"),
            Target::Immediate => f.write_str("the backup's consistent point"),
            Target::Latest => f.write_str("the end of the archive"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TimelineTarget {
    Id(TimelineId),
    /// The backup's own timeline.
    Current,
    /// The newest timeline in the archive.
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pause,
    Promote,
    Shutdown,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Promote => "promote",
            Action::Shutdown => "shutdown",
        }
    }
}

/// Parses a target time: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f][+TZ]` as PostgreSQL prints
/// it; without a zone, local time.
pub fn parse_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| {
        format!("'{text}' is not a time: give e.g. 2026-11-22T10:15:00Z or '2026-11-22 10:15:00+08'")
    })?;
    naive
        .and_local_timezone(chrono::Local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("'{text}' does not exist in the local time zone"))
}

/// What the restored server is told to do.
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    pub target: Target,
    /// Stop just after the target (true, the server's default) or just before it.
    pub inclusive: Option<bool>,
    pub timeline: Option<TimelineTarget>,
    pub action: Option<Action>,
    /// Start as a standby (`standby.signal`) that keeps following the archive.
    pub as_replica: bool,
    /// The server's `restore_command` (fetching from this archive).
    pub restore_command: String,
    /// The command is cairn's `archive-get`: the segments it fetched ahead that recovery did
    /// not need are removed when recovery ends (`recovery_end_command`), unless the cluster's
    /// configuration has a `recovery_end_command` of its own.
    pub remove_prefetched_at_end: bool,
}

/// The backup recovery starts from, and what it follows.
#[derive(Debug)]
pub struct Plan {
    pub backup: BackupInfo,
    /// Timelines recovery follows, oldest first, each with the LSN where it begins.
    pub lineage: Vec<(TimelineId, Lsn)>,
    /// Where replay is expected to stop (`None`: unknown until the server gets there).
    pub stop_lsn: Option<Lsn>,
}

/// Picks the backup for `target` (the newest that is consistent before the target on the
/// target's timeline history, or `chosen` if given, which must qualify) and checks the
/// archive holds every segment from that backup to the target.
pub fn plan(
    repo: &Repository,
    instance: &str,
    listing: &ArchiveListing,
    backups: &[BackupInfo],
    chosen: Option<&str>,
    target: &Target,
    timeline: Option<TimelineTarget>,
) -> Result<Plan> {
    // Logical dumps are no starting point for WAL replay.
    let usable: Vec<&BackupInfo> = backups
        .iter()
        .filter(|b| b.record.status.is_restorable() && b.has_files && b.record.mode.is_physical())
        .collect();
    if let Some(id) = chosen {
        if !backups.iter().any(|b| b.record.id.eq_ignore_ascii_case(id)) {
            return Err(EngineError::UnknownBackup { instance: instance.into(), id: id.into() });
        }
    }
    let candidates: Vec<&BackupInfo> = match chosen {
        Some(id) => usable.into_iter().filter(|b| b.record.id.eq_ignore_ascii_case(id)).collect(),
        None => usable,
    };
    let newest = candidates.last().ok_or_else(|| EngineError::NoBackup(instance.into()))?;
    let target_timeline = match timeline.unwrap_or(TimelineTarget::Latest) {
        TimelineTarget::Id(t) => t,
        TimelineTarget::Current => timeline_of(newest)?,
        TimelineTarget::Latest => latest_timeline(listing).max(timeline_of(newest)?),
    };
    let lineage = lineage(repo, instance, target_timeline)?;
    let size = segment_size(repo, instance)?;
    let restore_point = match target {
        Target::Name(name) => Some(find_restore_point(repo, instance, listing, &lineage, size, name)?),
        _ => None,
    };

    let mut refusals = Vec::new();
    let mut picked = None;
    for backup in candidates.iter().rev() {
        let r = &backup.record;
        let (Some(tli), Some(stop)) = (r.timeline, r.stop_lsn) else { continue };
        if !on_lineage(&lineage, tli, stop) {
            refusals.push(format!(
                "backup {} is on timeline {tli}, not on the history of timeline {target_timeline}",
                r.id
            ));
            continue;
        }
        let before_target = match target {
            Target::Time(t) => r.stop_time.or(r.end_time).is_some_and(|s| s <= *t),
            Target::Xid(x) => r.recovery_xid.is_some_and(|first_after| xid_not_before(*x, first_after)),
            Target::Lsn(l) => stop <= *l,
            Target::Name(_) => restore_point.as_ref().is_some_and(|rp| stop <= rp.lsn),
            Target::Immediate | Target::Latest => true,
        };
        if before_target {
            picked = Some(*backup);
            break;
        }
        refusals.push(format!("backup {} is consistent only after the target", r.id));
    }
    let Some(backup) = picked else {
        let oldest = candidates.first().map(|b| b.record.id.clone()).unwrap_or_default();
        return Err(EngineError::Refused(format!(
            "no backup can reach {}: {}{}",
            target,
            refusals.join("; "),
            if chosen.is_none() { format!(" (the oldest usable backup is {oldest})") } else { String::new() }
        )));
    };

    let stop = backup.record.stop_lsn.unwrap_or_default();
    let end = match target {
        Target::Immediate => return Ok(Plan { backup: backup.clone(), lineage, stop_lsn: Some(stop) }),
        Target::Lsn(l) => Some(*l),
        Target::Name(_) => restore_point.map(|rp| rp.lsn),
        Target::Time(_) | Target::Xid(_) | Target::Latest => None,
    };
    let reached = walk_archive(repo, instance, listing, &lineage, size, stop, end, target)?;
    Ok(Plan { backup: backup.clone(), lineage, stop_lsn: reached })
}

fn timeline_of(b: &BackupInfo) -> Result<TimelineId> {
    b.record.timeline.ok_or_else(|| EngineError::Invalid(format!("backup {} has no timeline", b.record.id)))
}

pub(crate) fn latest_timeline(listing: &ArchiveListing) -> TimelineId {
    let from_segments = listing.segments.keys().copied();
    from_segments.chain(listing.histories.iter().copied()).max().unwrap_or(TimelineId::FIRST)
}

pub(crate) fn segment_size(repo: &Repository, instance: &str) -> Result<WalSegmentSize> {
    let identity = archive::identity(repo, instance).map_err(|_| {
        EngineError::Refused(format!(
            "instance '{instance}' has no WAL archive: set archive_command to 'cairn archive-push' (docs/cli.md), \
             or restore without a recovery target to the backup's consistent point"
        ))
    })?;
    identity.segment_size()
}

/// The timelines leading to `target`, each with the LSN where it begins, from its history
/// file in the archive.
pub(crate) fn lineage(
    repo: &Repository,
    instance: &str,
    target: TimelineId,
) -> Result<Vec<(TimelineId, Lsn)>> {
    if target == TimelineId::FIRST {
        return Ok(vec![(target, Lsn(0))]);
    }
    let name = format!("{}{}", archive::prefix(instance), WalFileName::History(target));
    let (_, bytes) = repo.get_file(&name)?.ok_or_else(|| {
        EngineError::Refused(format!("timeline {target} has no history file in the archive ({name})"))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let history = parse_history(&text).map_err(|e| EngineError::Invalid(format!("{name}: {e}")))?;
    let mut out = Vec::new();
    let mut begin = Lsn(0);
    for entry in history {
        out.push((entry.parent, begin));
        begin = entry.switch_point;
    }
    out.push((target, begin));
    Ok(out)
}

/// Whether a backup on `tli` that is consistent at `stop` is on the lineage: its timeline is
/// in it and the lineage leaves that timeline only after `stop`.
fn on_lineage(lineage: &[(TimelineId, Lsn)], tli: TimelineId, stop: Lsn) -> bool {
    lineage
        .iter()
        .enumerate()
        .any(|(i, (t, _))| *t == tli && lineage.get(i + 1).is_none_or(|(_, switch)| stop <= *switch))
}

/// Whether transaction `x` starts no earlier than `first_after` (32-bit xids compare modulo
/// 2^32, as the server does; full 64-bit ones directly).
fn xid_not_before(x: u64, first_after: u64) -> bool {
    if x > u64::from(u32::MAX) {
        return x >= first_after;
    }
    (x as u32).wrapping_sub(first_after as u32) as i32 >= 0
}

/// The file of segment number `n` that recovery reads: on the newest timeline of the lineage
/// that has begun by then.
pub(crate) fn segment_on_lineage(
    lineage: &[(TimelineId, Lsn)],
    n: u64,
    size: WalSegmentSize,
) -> WalSegmentName {
    let tli = lineage
        .iter()
        .rev()
        .find(|(_, begin)| begin.segment_number(size) <= n)
        .map_or(TimelineId::FIRST, |(t, _)| *t);
    WalSegmentName::from_lsn(tli, Lsn(n.saturating_mul(u64::from(size.bytes()))), size)
}

/// Walks the archive from the backup's stop along the lineage until `end` (or, for time and
/// xid targets, until the segment holding the target), refusing at a gap. Returns where replay
/// is expected to stop.
#[allow(clippy::too_many_arguments)]
fn walk_archive(
    repo: &Repository,
    instance: &str,
    listing: &ArchiveListing,
    lineage: &[(TimelineId, Lsn)],
    size: WalSegmentSize,
    from: Lsn,
    end: Option<Lsn>,
    target: &Target,
) -> Result<Option<Lsn>> {
    let present = |s: &WalSegmentName| listing.contains(s);
    // The archive's end on this lineage (other branches may go further).
    let last_present = listing
        .segments
        .values()
        .flatten()
        .filter_map(|s| s.segment_number(size).ok().filter(|&n| segment_on_lineage(lineage, n, size) == *s))
        .max();
    let first = from.segment_number(size);
    let mut n = first;
    let mut last_commit = None;
    loop {
        let segment = segment_on_lineage(lineage, n, size);
        if let Some(end) = end {
            if n > end.segment_number(size) {
                return Ok(Some(end));
            }
        }
        if !present(&segment) && n == first {
            // The backup carries the segment of its own stop.
            n += 1;
            continue;
        }
        if !present(&segment) {
            let beyond_end = last_present.is_none_or(|last| n > last);
            return match (target, beyond_end) {
                (Target::Latest, true) => Ok(None),
                (Target::Latest, false) => Err(EngineError::Refused(format!(
                    "the archive has a gap: segment {segment} is missing, so recovery would stop there; \
                     give a recovery target before it (--recovery-target-lsn {}), or find the segment",
                    segment.start_lsn(size).unwrap_or_default()
                ))),
                (Target::Time(_) | Target::Xid(_), true) => Err(EngineError::Refused(format!(
                    "the archive ends before {target}{}: recovery would end without reaching it",
                    last_commit
                        .map(|t: DateTime<Utc>| format!(" (its last commit is at {t})"))
                        .unwrap_or_default()
                ))),
                _ => Err(EngineError::Refused(format!(
                    "the archive cannot reach {target}: segment {segment} is missing{}",
                    if beyond_end { " (the archive ends before it)" } else { " (a gap in the archive)" }
                ))),
            };
        }
        if matches!(target, Target::Time(_) | Target::Xid(_)) {
            let attrs = archive::segment_attrs(repo, instance, &segment)?.unwrap_or_default();
            last_commit = attrs.last_commit.or(last_commit);
            let here = match target {
                Target::Time(t) => attrs.last_commit.is_some_and(|c| c >= *t),
                Target::Xid(x) => {
                    let x = *x as u32;
                    attrs.min_xid.zip(attrs.max_xid).is_some_and(|(lo, hi)| lo <= x && x <= hi)
                }
                _ => false,
            };
            if here {
                return Ok(Some(attrs.end_lsn));
            }
        }
        n += 1;
    }
}

fn find_restore_point(
    repo: &Repository,
    instance: &str,
    listing: &ArchiveListing,
    lineage: &[(TimelineId, Lsn)],
    size: WalSegmentSize,
    name: &str,
) -> Result<archive::RestorePoint> {
    let segments: Vec<WalSegmentName> = listing.segments.values().flatten().copied().collect();
    let found = cairn_repo::parallel_map(&segments, 8, |s| {
        let attrs = archive::segment_attrs(repo, instance, s)?.unwrap_or_default();
        Ok::<_, EngineError>(
            attrs.restore_points.into_iter().filter(|rp| rp.name == name).collect::<Vec<_>>(),
        )
    })?;
    // The server stops at the first one it meets on the target's history.
    found
        .into_iter()
        .flatten()
        .filter(|rp| {
            let n = rp.lsn.segment_number(size);
            let on = segment_on_lineage(lineage, n, size);
            listing.contains(&on) && lineage_covers(lineage, &on, rp.lsn)
        })
        .min_by_key(|rp| rp.lsn)
        .ok_or_else(|| {
            EngineError::Refused(format!(
                "no restore point named '{name}' in the archive of instance '{instance}'"
            ))
        })
}

fn lineage_covers(lineage: &[(TimelineId, Lsn)], segment: &WalSegmentName, lsn: Lsn) -> bool {
    lineage.iter().enumerate().any(|(i, (t, begin))| {
        *t == segment.timeline() && lsn >= *begin && lineage.get(i + 1).is_none_or(|(_, next)| lsn < *next)
    })
}

/// Writes the recovery settings and the signal file into a restored data directory.
pub fn write_settings(target: &Path, flavor: Flavor, options: &RecoveryOptions) -> Result<()> {
    let mut settings: Vec<(&str, String)> = vec![("restore_command", options.restore_command.clone())];
    match &options.target {
        Target::Time(t) => {
            settings.push(("recovery_target_time", t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()))
        }
        Target::Xid(x) => settings.push(("recovery_target_xid", x.to_string())),
        Target::Lsn(l) => settings.push(("recovery_target_lsn", l.to_string())),
        Target::Name(n) => settings.push(("recovery_target_name", n.clone())),
        Target::Immediate => settings.push(("recovery_target", "immediate".into())),
        Target::Latest => {}
    }
    if let Some(inclusive) = options.inclusive {
        settings.push(("recovery_target_inclusive", inclusive.to_string()));
    }
    match options.timeline {
        Some(TimelineTarget::Id(t)) => settings.push(("recovery_target_timeline", t.get().to_string())),
        Some(TimelineTarget::Current) => settings.push(("recovery_target_timeline", "current".into())),
        Some(TimelineTarget::Latest) => settings.push(("recovery_target_timeline", "latest".into())),
        None => {}
    }
    if let Some(action) = options.action {
        settings.push(("recovery_target_action", action.name().into()));
    }
    if options.remove_prefetched_at_end && !sets(target, flavor, "recovery_end_command") {
        let prefetched = archive::prefetch_dir(&Path::new(flavor.info().layout.wal_dir).join("RECOVERYXLOG"));
        // Run in the data directory, as restore_command is.
        settings.push(("recovery_end_command", format!("rm -rf {}", prefetched.display())));
    }
    match flavor.info().recovery {
        RecoveryMechanism::SignalFiles { recovery_signal, standby_signal, settings_file } => {
            let file = target.join(settings_file);
            let old = fs::read_to_string(&file).unwrap_or_default();
            let mut text = String::new();
            // Recovery settings the source had (from an earlier restore) would fight ours.
            for line in old.lines() {
                let key = line.split('=').next().unwrap_or("").trim();
                if key.starts_with("recovery_target") || key == "restore_command" {
                    text.push_str("# disabled by cairn restore: ");
                }
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!(
                "# written by cairn restore at {}\n",
                Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
            ));
            for (key, value) in &settings {
                text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
            }
            write_durably(&file, &text)?;
            write_durably(
                &target.join(if options.as_replica { standby_signal } else { recovery_signal }),
                "",
            )?;
        }
        RecoveryMechanism::RecoveryConf { file } => {
            let file = target.join(file);
            let mut text = String::new();
            if options.as_replica {
                text.push_str("standby_mode = 'on'\n");
            }
            for (key, value) in &settings {
                text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
            }
            write_durably(&file, &text)?;
        }
    }
    Ok(())
}

/// Whether the configuration files of the data directory `target` set `name` (a line
/// `name = ...` or `name ...`, not commented out).
fn sets(target: &Path, flavor: Flavor, name: &str) -> bool {
    let files = flavor.info().config_files;
    std::iter::once(files.main).chain(files.auto).any(|file| {
        fs::read_to_string(target.join(file)).is_ok_and(|text| {
            text.lines().any(|line| {
                line.trim_start().strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '\t', '=']))
            })
        })
    })
}

/// Turns WAL archiving off in a restored data directory (`restore --archive-mode off`). A copy
/// started beside its source would otherwise archive into the source's archive: on the same
/// timeline its segments clash with the source's (whichever archives second fails, and its WAL
/// piles up), and once promoted its new timeline is one a later `latest` recovery would follow.
/// The setting goes into the file `ALTER SYSTEM` writes (or the main one, where there is none).
pub fn disable_archiving(target: &Path, flavor: Flavor) -> Result<()> {
    let files = flavor.info().config_files;
    let file = target.join(files.auto.unwrap_or(files.main));
    let mut text = fs::read_to_string(&file).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    // The last setting of a name wins: no earlier line needs changing.
    text.push_str(
        "# written by cairn restore --archive-mode off: this copy does not archive\narchive_mode = 'off'\n",
    );
    write_durably(&file, &text)
}

/// Writes `text` as the whole of `file` and flushes it: a restore is over only once what it
/// wrote would survive a crash.
fn write_durably(file: &Path, text: &str) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(file)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| EngineError::io(format!("writing {}", file.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_the_forms_people_give() {
        let utc = |s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2026-11-22T10:15:00Z").unwrap(), utc("2026-11-22T10:15:00Z"));
        assert_eq!(parse_time("2026-11-22 10:15:00.25+08").unwrap(), utc("2026-11-22T02:15:00.25Z"));
        assert_eq!(parse_time("2026-11-22 10:15:00 +0530").unwrap(), utc("2026-11-22T04:45:00Z"));
        assert!(parse_time("2026-11-22 10:15:00").is_ok());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn xids_compare_modulo_2_32() {
        assert!(xid_not_before(100, 100));
        assert!(xid_not_before(101, 100));
        assert!(!xid_not_before(99, 100));
        assert!(xid_not_before(5, u64::from(u32::MAX) - 5));
        assert!(xid_not_before((1 << 32) + 7, (1 << 32) + 7));
    }

    #[test]
    fn lineage_picks_the_newest_begun_timeline() {
        let size = WalSegmentSize::DEFAULT;
        let t = |n| TimelineId::new(n).unwrap();
        let lineage = vec![(t(1), Lsn(0)), (t(2), Lsn(0x0500_0100))];
        assert_eq!(segment_on_lineage(&lineage, 4, size).timeline(), t(1));
        assert_eq!(segment_on_lineage(&lineage, 5, size).timeline(), t(2));
        assert!(on_lineage(&lineage, t(1), Lsn(0x0500_0000)));
        assert!(!on_lineage(&lineage, t(1), Lsn(0x0600_0000)));
        assert!(on_lineage(&lineage, t(2), Lsn(0x0600_0000)));
        assert!(!on_lineage(&lineage, t(3), Lsn(1)));
    }

    #[test]
    fn archiving_is_turned_off_after_whatever_the_source_set() {
        let dir = tempfile::tempdir().unwrap();
        let auto = dir.path().join("postgresql.auto.conf");
        std::fs::write(&auto, "archive_mode = 'on'").unwrap();
        let pg = Flavor::new(cairn_pg::flavor::Engine::PostgreSql, 15).unwrap();
        disable_archiving(dir.path(), pg).unwrap();
        let text = std::fs::read_to_string(&auto).unwrap();
        assert!(text.starts_with("archive_mode = 'on'\n#"), "{text}");
        assert!(text.ends_with("\narchive_mode = 'off'\n"), "the last setting wins: {text}");
        // Without postgresql.auto.conf (openGauss) it goes into the main file.
        let og = Flavor::new(cairn_pg::flavor::Engine::OpenGauss, 5).unwrap();
        disable_archiving(dir.path(), og).unwrap();
        let main = std::fs::read_to_string(dir.path().join("postgresql.conf")).unwrap();
        assert!(main.ends_with("archive_mode = 'off'\n"), "{main}");
    }

    #[test]
    fn a_setting_counts_only_where_it_is_not_commented_out() {
        let dir = tempfile::tempdir().unwrap();
        let pg = Flavor::new(cairn_pg::flavor::Engine::PostgreSql, 15).unwrap();
        let conf = dir.path().join("postgresql.conf");
        std::fs::write(&conf, "#recovery_end_command = ''\nrecovery_end_command_x = 1\n").unwrap();
        assert!(!sets(dir.path(), pg, "recovery_end_command"));
        std::fs::write(dir.path().join("postgresql.auto.conf"), "  recovery_end_command='true'\n").unwrap();
        assert!(sets(dir.path(), pg, "recovery_end_command"));
    }
}

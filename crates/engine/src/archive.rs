//! The WAL archive of an instance. `archive-push` (the server's `archive_command`) stores each
//! WAL file as the named file `wal/<instance>/<file name>` with a summary of its records;
//! `archive-get` (`restore_command`) fetches them back. The archive's identity (system
//! identifier, WAL format, segment size) is fixed by the first push, so WAL of another cluster
//! is refused rather than mixed in.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use cairn_pg::wal::{read_segment_header, summarize_segment, SegmentSummary};
use cairn_pg::{Lsn, TimelineId, WalFileName, WalSegmentName, WalSegmentSize};
use cairn_repo::{Compression, PutOutcome, Repository};

use crate::error::{EngineError, Result};
use crate::instance;
use crate::spool::WorkerClaim;

/// Name of the file holding an archive's identity, beside its WAL files.
const IDENTITY: &str = "identity";

/// The named-file prefix of an instance's WAL archive.
pub fn prefix(instance: &str) -> String {
    format!("wal/{instance}/")
}

fn file_name(instance: &str, wal_file: &WalFileName) -> String {
    format!("{}{wal_file}", prefix(instance))
}

fn identity_name(instance: &str) -> String {
    format!("{}{IDENTITY}", prefix(instance))
}

/// What every segment of an archive must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub system_identifier: u64,
    /// XLOG_PAGE_MAGIC: the WAL format, which changes with the server's major version.
    pub page_magic: u16,
    pub segment_size: u32,
}

impl Identity {
    pub fn segment_size(&self) -> Result<WalSegmentSize> {
        WalSegmentSize::new(u64::from(self.segment_size)).map_err(|e| EngineError::Invalid(e.to_string()))
    }
}

/// A segment's summary, kept as the named file's attributes (docs/format.md §10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentAttrs {
    pub timeline: u32,
    pub system_identifier: u64,
    pub end_lsn: Lsn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_commit: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_xid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_xid: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_points: Vec<RestorePoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub name: String,
    pub lsn: Lsn,
    pub time: DateTime<Utc>,
}

fn time_of(unix_us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(unix_us)
}

impl SegmentAttrs {
    fn new(timeline: TimelineId, system_identifier: u64, s: &SegmentSummary) -> SegmentAttrs {
        SegmentAttrs {
            timeline: timeline.get(),
            system_identifier,
            end_lsn: s.end_lsn,
            first_commit: s.first_commit_us.and_then(time_of),
            last_commit: s.last_commit_us.and_then(time_of),
            min_xid: s.min_commit_xid,
            max_xid: s.max_commit_xid,
            restore_points: s
                .restore_points
                .iter()
                .filter_map(|r| {
                    Some(RestorePoint { name: r.name.clone(), lsn: r.lsn, time: time_of(r.time_us)? })
                })
                .collect(),
        }
    }
}

/// Stores one WAL file the server hands over (`%p`, named `%f`), durably. Storing a file
/// already archived with the same content succeeds; with other content it is refused.
pub fn push(
    repo: &Repository,
    instance: &str,
    path: &Path,
    name: &str,
    compression: Compression,
) -> Result<PutOutcome> {
    let wal_file: WalFileName = name.parse().map_err(|_| {
        EngineError::Invalid(format!(
            "'{name}' is not a WAL file name (a segment, .partial, .history or .backup file)"
        ))
    })?;
    let content = fs::read(path).map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
    let attrs = match wal_file {
        WalFileName::Segment(segment) | WalFileName::Partial(segment) => {
            let identity = check_identity(repo, instance, &segment, &content)?;
            let summary =
                summarize_segment(&segment, &content).map_err(|e| EngineError::WalMismatch(e.to_string()))?;
            serde_json::to_value(SegmentAttrs::new(segment.timeline(), identity.system_identifier, &summary))
                .unwrap_or_default()
        }
        WalFileName::History(_) | WalFileName::Backup { .. } => {
            // No header to check; still, only into the archive of an instance that exists.
            if repo.file_header(&identity_name(instance))?.is_none() {
                instance::find(repo, instance)?;
            }
            serde_json::json!({})
        }
    };
    let outcome = repo.put_file(&file_name(instance, &wal_file), &content, compression, &attrs).map_err(
        |e| match e {
            cairn_repo::RepoError::Conflict(_) => EngineError::WalMismatch(format!(
                "{name} is already archived for instance '{instance}' with different content; the archive \
                 is not changed. Two clusters may be archiving to one instance: check archive_command"
            )),
            other => other.into(),
        },
    )?;
    Ok(outcome)
}

/// Checks a segment against the archive's identity, which the first segment sets (after
/// checking the instance exists and, when a backup taught it, has the same system).
fn check_identity(
    repo: &Repository,
    instance: &str,
    segment: &WalSegmentName,
    content: &[u8],
) -> Result<Identity> {
    let header =
        read_segment_header(content).map_err(|e| EngineError::WalMismatch(format!("{segment}: {e}")))?;
    let found = Identity {
        system_identifier: header.system_identifier,
        page_magic: header.magic,
        segment_size: header.segment_size.bytes(),
    };
    if content.len() as u64 != u64::from(found.segment_size) {
        return Err(EngineError::WalMismatch(format!(
            "{segment} is {} bytes, its header says segments are {} bytes",
            content.len(),
            found.segment_size
        )));
    }
    let identity_name = identity_name(instance);
    let expected = match repo.get_file(&identity_name)? {
        Some((_, bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Invalid(format!("the archive identity {identity_name} is unreadable: {e}"))
        })?,
        None => {
            let (_, config) = instance::find(repo, instance)?;
            if let Some(known) = config.system_identifier.filter(|&k| k != found.system_identifier) {
                return Err(EngineError::WalMismatch(format!(
                    "{segment} comes from database system {}, but instance '{instance}' is system {known}",
                    found.system_identifier
                )));
            }
            let bytes = serde_json::to_vec(&found).unwrap_or_default();
            repo.put_file(&identity_name, &bytes, Compression::None, &serde_json::json!({}))?;
            found
        }
    };
    if found != expected {
        return Err(EngineError::WalMismatch(format!(
            "{segment} does not belong to the archive of instance '{instance}': it is from system {} \
             (WAL format {:#06x}, {} byte segments), the archive holds system {} (WAL format {:#06x}, {} byte \
             segments)",
            found.system_identifier,
            found.page_magic,
            found.segment_size,
            expected.system_identifier,
            expected.page_magic,
            expected.segment_size
        )));
    }
    Ok(found)
}

/// Fetches a WAL file into `dest` (written under a temporary name, then renamed). Returns
/// false when the archive does not have it.
pub fn get(repo: &Repository, instance: &str, name: &str, dest: &Path) -> Result<bool> {
    let wal_file: WalFileName = name.parse().map_err(|_| {
        EngineError::Invalid(format!("'{name}' is not a WAL file name (a segment, .history or .backup file)"))
    })?;
    fetch(repo, &file_name(instance, &wal_file), dest)
}

/// Where prefetched segments wait: beside the server's WAL directory (`%p` is in it).
pub fn prefetch_dir(dest: &Path) -> PathBuf {
    dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("cairn-prefetch")
}

const PREFETCH_PID: &str = "prefetch.pid";

/// Serves `name` from the segments prefetched earlier, without opening the repository; false
/// if it is not there. Segments recovery has gone past are dropped.
pub fn take_prefetched(name: &str, dest: &Path) -> Result<bool> {
    let Ok(WalFileName::Segment(segment)) = name.parse::<WalFileName>() else { return Ok(false) };
    let dir = prefetch_dir(dest);
    let Ok(listing) = fs::read_dir(&dir) else { return Ok(false) };
    let worker = WorkerClaim::is_held(&dir, PREFETCH_PID);
    let current = segment.to_string();
    for item in listing.flatten() {
        let file = item.file_name().to_string_lossy().into_owned();
        let passed = file.len() == 24 && file[8..] < current[8..];
        // A download in progress belongs to the worker; one without a worker was cut short.
        if passed || (!worker && file.ends_with(".cairn-partial")) {
            let _ = fs::remove_file(item.path());
        }
    }
    let spooled = dir.join(name);
    match fs::rename(&spooled, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(EngineError::io(format!("moving {}", spooled.display()), e)),
    }
}

/// Whether a prefetch worker should be started after serving a segment: none runs and fewer
/// than half of `count` segments wait.
pub fn prefetch_wanted(dest: &Path, count: usize) -> bool {
    let dir = prefetch_dir(dest);
    if count == 0 || WorkerClaim::is_held(&dir, PREFETCH_PID) {
        return false;
    }
    let waiting = fs::read_dir(&dir).map_or(0, |l| l.flatten().filter(|e| e.file_name().len() == 24).count());
    waiting * 2 < count
}

/// The prefetch worker: fetches the `count` segments after `name` that are not waiting yet,
/// several at a time, stopping at the end of the archive. Does nothing if another one runs.
pub fn prefetch(repo: &Repository, instance: &str, name: &str, dest: &Path, count: usize) -> Result<usize> {
    let Ok(WalFileName::Segment(segment)) = name.parse::<WalFileName>() else { return Ok(0) };
    let dir = prefetch_dir(dest);
    // Gone: recovery has ended (its recovery_end_command removes the directory).
    if !dir.is_dir() {
        return Ok(0);
    }
    let Some(_claim) = WorkerClaim::acquire(&dir, PREFETCH_PID)? else { return Ok(0) };
    let size = identity(repo, instance)?.segment_size()?;
    let mut wanted = Vec::new();
    let mut next = segment;
    for _ in 0..count {
        let Ok(n) = next.next(size) else { break };
        next = n;
        if !dir.join(next.to_string()).exists() {
            wanted.push(next);
        }
    }
    let found = cairn_repo::parallel_map(&wanted, 4, |s| {
        fetch(repo, &file_name(instance, &WalFileName::Segment(*s)), &dir.join(s.to_string()))
    })?;
    Ok(found.iter().filter(|&&f| f).count())
}

pub fn identity(repo: &Repository, instance: &str) -> Result<Identity> {
    let name = identity_name(instance);
    let (_, bytes) = repo
        .get_file(&name)?
        .ok_or_else(|| EngineError::Invalid(format!("instance '{instance}' has no WAL archive yet")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Invalid(format!("the archive identity {name} is unreadable: {e}")))
}

fn fetch(repo: &Repository, name: &str, dest: &Path) -> Result<bool> {
    let Some((_, content)) = repo.get_file(name)? else { return Ok(false) };
    let temp = dest.with_extension("cairn-partial");
    let written = File::create(&temp).and_then(|mut f| {
        f.write_all(&content)?;
        f.sync_all()
    });
    written
        .and_then(|()| fs::rename(&temp, dest))
        .map_err(|e| EngineError::io(format!("writing {}", dest.display()), e))?;
    Ok(true)
}

/// The archived WAL files of an instance, by kind.
#[derive(Debug, Default)]
pub struct ArchiveListing {
    /// Every WAL file, whatever its kind.
    pub files: Vec<WalFileName>,
    pub segments: BTreeMap<TimelineId, Vec<WalSegmentName>>,
    pub partials: Vec<WalSegmentName>,
    pub histories: Vec<TimelineId>,
}

impl ArchiveListing {
    /// Whether `segment` is archived (each timeline's segments are in order).
    pub fn contains(&self, segment: &WalSegmentName) -> bool {
        self.segments.get(&segment.timeline()).is_some_and(|v| v.binary_search(segment).is_ok())
    }
}

pub fn list(repo: &Repository, instance: &str) -> Result<ArchiveListing> {
    let mut out = ArchiveListing::default();
    let prefix = prefix(instance);
    for name in repo.list_files(&prefix)? {
        let Ok(file) = name[prefix.len()..].parse::<WalFileName>() else { continue };
        match file {
            WalFileName::Segment(s) => out.segments.entry(s.timeline()).or_default().push(s),
            WalFileName::Partial(s) => out.partials.push(s),
            WalFileName::History(t) => out.histories.push(t),
            WalFileName::Backup { .. } => {}
        }
        out.files.push(file);
    }
    Ok(out)
}

/// A segment's summary, read from its header alone; `None` if the segment is not archived.
pub(crate) fn segment_attrs(
    repo: &Repository,
    instance: &str,
    segment: &WalSegmentName,
) -> Result<Option<SegmentAttrs>> {
    let header = repo.file_header(&file_name(instance, &WalFileName::Segment(*segment)))?;
    Ok(header.map(|h| serde_json::from_value(h.attrs).unwrap_or_default()))
}

/// Removes an instance's whole WAL archive.
pub fn delete_all(repo: &Repository, instance: &str) -> Result<usize> {
    let names = repo.list_files(&prefix(instance))?;
    for name in &names {
        repo.delete_file(name)?;
    }
    Ok(names.len())
}

/// One timeline of the archive as `show --archive` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineReport {
    pub timeline: TimelineId,
    pub first_segment: WalSegmentName,
    pub last_segment: WalSegmentName,
    pub segments: usize,
    /// Runs of missing segments, first and last of each.
    pub gaps: Vec<(WalSegmentName, WalSegmentName)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_commit: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<DateTime<Utc>>,
}

/// Each timeline's range, gaps and commit times (from the summaries of its first and last
/// segments).
pub fn timelines(repo: &Repository, instance: &str, listing: &ArchiveListing) -> Result<Vec<TimelineReport>> {
    let Ok(identity) = identity(repo, instance) else { return Ok(Vec::new()) };
    let size = identity.segment_size()?;
    let mut out = Vec::new();
    for (timeline, segments) in &listing.segments {
        let (Some(first), Some(last)) = (segments.first(), segments.last()) else { continue };
        let mut gaps = Vec::new();
        for pair in segments.windows(2) {
            let (a, b) =
                (pair[0].segment_number(size).unwrap_or(0), pair[1].segment_number(size).unwrap_or(0));
            if b > a + 1 {
                let name =
                    |n: u64| WalSegmentName::from_lsn(*timeline, Lsn(n * u64::from(size.bytes())), size);
                gaps.push((name(a + 1), name(b - 1)));
            }
        }
        let attrs = |s: &WalSegmentName| segment_attrs(repo, instance, s).map(Option::unwrap_or_default);
        out.push(TimelineReport {
            timeline: *timeline,
            first_segment: *first,
            last_segment: *last,
            segments: segments.len(),
            gaps,
            first_commit: attrs(first)?.first_commit,
            last_commit: attrs(last)?.last_commit,
        });
    }
    Ok(out)
}

/// Whether a backup can be carried by the archive to its end (the present, as archived).
#[derive(Debug, Clone, Serialize)]
pub struct BackupReach {
    pub id: String,
    pub reaches_present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub instance: String,
    pub timelines: Vec<TimelineReport>,
    pub backups: Vec<BackupReach>,
}

/// `show --archive`: timelines, ranges, gaps, and which backups reach the present.
pub fn report(repo: &Repository, instance: &str) -> Result<ArchiveReport> {
    let listing = list(repo, instance)?;
    let backups = crate::catalog::list(repo, Some(instance))?;
    let reach = backups
        .iter()
        .filter(|b| b.record.status.is_restorable() && b.has_files && b.record.mode.is_physical())
        .map(|b| {
            let plan = crate::recovery::plan(
                repo,
                instance,
                &listing,
                &backups,
                Some(&b.record.id),
                &crate::recovery::Target::Latest,
                None,
            );
            BackupReach {
                id: b.record.id.clone(),
                reaches_present: plan.is_ok(),
                reason: plan.err().map(|e| e.to_string()),
            }
        })
        .collect();
    Ok(ArchiveReport {
        instance: instance.to_string(),
        timelines: timelines(repo, instance, &listing)?,
        backups: reach,
    })
}

/// The part of the archive `restore-wal` fetches.
#[derive(Debug, Clone, Copy)]
pub enum WalRange {
    /// From the segment holding the first commit at or after the start to the one holding
    /// the first commit at or after the end (or the archive's last).
    Time(DateTime<Utc>, DateTime<Utc>),
    /// The segments holding these positions and all between.
    Lsn(Lsn, Lsn),
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreWalSummary {
    pub target_dir: String,
    pub segments: Vec<WalSegmentName>,
    pub bytes: u64,
}

/// Fetches the segments of `range`, on the history of `timeline` (default: the newest),
/// into `dir`, decompressed and ready for a server's `pg_wal`. Never overwrites a file.
pub fn restore_wal(
    repo: &Repository,
    instance: &str,
    range: WalRange,
    timeline: Option<TimelineId>,
    dir: &Path,
) -> Result<RestoreWalSummary> {
    use crate::recovery;
    let listing = list(repo, instance)?;
    let size = recovery::segment_size(repo, instance)?;
    let target = timeline.unwrap_or_else(|| recovery::latest_timeline(&listing));
    let lineage = recovery::lineage(repo, instance, target)?;
    let present = |s: &WalSegmentName| listing.contains(s);
    let numbers = listing.segments.values().flatten().filter_map(|s| s.segment_number(size).ok());
    let (Some(lowest), Some(highest)) = (numbers.clone().min(), numbers.max()) else {
        return Err(EngineError::Refused(format!("instance '{instance}' has no archived WAL")));
    };
    let (from, to) = match range {
        WalRange::Lsn(a, b) => (a.segment_number(size), b.segment_number(size)),
        WalRange::Time(start, end) => {
            let on: Vec<WalSegmentName> = (lowest..=highest)
                .map(|n| recovery::segment_on_lineage(&lineage, n, size))
                .filter(|s| present(s))
                .collect();
            let attrs = cairn_repo::parallel_map(&on, 8, |s| segment_attrs(repo, instance, s))?;
            let reaching = |t: DateTime<Utc>| {
                on.iter()
                    .zip(&attrs)
                    .find(|(_, a)| a.as_ref().and_then(|a| a.last_commit).is_some_and(|c| c >= t))
                    .map(|(s, _)| s.segment_number(size).unwrap_or(0))
            };
            let from = reaching(start).ok_or_else(|| {
                EngineError::Refused(format!("the archive has no commit at or after {start}"))
            })?;
            (from, reaching(end).unwrap_or(highest))
        }
    };
    if from > to {
        return Err(EngineError::Invalid("the range ends before it starts".into()));
    }
    let segments: Vec<WalSegmentName> =
        (from..=to).map(|n| recovery::segment_on_lineage(&lineage, n, size)).collect();
    if let Some(missing) = segments.iter().find(|s| !present(s)) {
        return Err(EngineError::Refused(format!("segment {missing} of the range is not in the archive")));
    }
    fs::create_dir_all(dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
    if let Some(existing) = segments.iter().map(|s| dir.join(s.to_string())).find(|p| p.exists()) {
        return Err(EngineError::Refused(format!("{} exists; nothing was overwritten", existing.display())));
    }
    cairn_repo::parallel_map(&segments, 4, |s| {
        fetch(repo, &file_name(instance, &WalFileName::Segment(*s)), &dir.join(s.to_string()))
    })?;
    Ok(RestoreWalSummary {
        target_dir: dir.display().to_string(),
        bytes: segments.len() as u64 * u64::from(size.bytes()),
        segments,
    })
}

/// Which archived WAL `delete --delete-wal` keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalRetention {
    /// Keep point-in-time recovery from only the newest this many backups (0: from every
    /// backup). Older backups still restore to their own consistent point.
    pub wal_depth: usize,
    /// Never delete a segment holding commits from the last this many days.
    pub keep_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalDeletion {
    pub instance: String,
    /// WAL from this position on is kept (on every timeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_from_lsn: Option<Lsn>,
    pub deleted: Vec<String>,
    pub kept: usize,
    pub dry_run: bool,
}

/// The first segment number to keep: that of the start of the oldest backup whose
/// point-in-time recovery is protected, lowered to the first segment with commits in the
/// protected days. `None`: keep everything (no backup to anchor on).
pub fn wal_cutoff(
    backup_starts: &[(u64, DateTime<Utc>)],
    segments_by_last_commit: &[(u64, Option<DateTime<Utc>>)],
    policy: WalRetention,
    now: DateTime<Utc>,
) -> Option<u64> {
    let mut starts: Vec<u64> = backup_starts.iter().map(|(n, _)| *n).collect();
    starts.sort_unstable();
    let protected = if policy.wal_depth == 0 {
        &starts[..]
    } else {
        &starts[starts.len().saturating_sub(policy.wal_depth)..]
    };
    let mut cutoff = *protected.first()?;
    if let Some(days) = policy.keep_days {
        let since = now - chrono::Duration::days(i64::from(days));
        if let Some(first_recent) = segments_by_last_commit
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| t >= since))
            .map(|(n, _)| *n)
            .min()
        {
            cutoff = cutoff.min(first_recent);
        }
    }
    Some(cutoff)
}

/// Deletes archived WAL that no kept backup needs for point-in-time recovery (every backup
/// carries the WAL of its own consistency). Under the repository's exclusive lock.
pub fn delete_wal(
    repo: &Repository,
    instance: &str,
    policy: WalRetention,
    dry_run: bool,
) -> Result<WalDeletion> {
    let _lock = if dry_run {
        None
    } else {
        Some(cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), true)?)
    };
    let backups = crate::catalog::list(repo, Some(instance))?;
    let listing = list(repo, instance)?;
    let mut done =
        WalDeletion { instance: instance.into(), kept_from_lsn: None, deleted: Vec::new(), kept: 0, dry_run };
    let Ok(identity) = identity(repo, instance) else { return Ok(done) };
    let size = identity.segment_size()?;
    // An ORPHAN may prove OK when validated: its WAL stays until then.
    let starts: Vec<(u64, DateTime<Utc>)> = backups
        .iter()
        .filter(|b| {
            (b.record.status.is_restorable() || b.record.status == crate::catalog::BackupStatus::Orphan)
                && b.has_files
        })
        .filter_map(|b| Some((b.record.start_lsn?.segment_number(size), b.record.start_time)))
        .collect();
    let segments: Vec<WalSegmentName> = listing.segments.values().flatten().copied().collect();
    let last_commits = match policy.keep_days {
        Some(_) => cairn_repo::parallel_map(&segments, 8, |s| {
            let n = s.segment_number(size).unwrap_or(0);
            Ok::<_, EngineError>((n, segment_attrs(repo, instance, s)?.and_then(|a| a.last_commit)))
        })?,
        None => Vec::new(),
    };
    let Some(cutoff) = wal_cutoff(&starts, &last_commits, policy, Utc::now()) else {
        done.kept = segments.len();
        return Ok(done);
    };
    done.kept_from_lsn = Some(Lsn(cutoff * u64::from(size.bytes())));
    for wal_file in &listing.files {
        let segno = match wal_file {
            WalFileName::History(_) => None,
            other => other.segment().and_then(|s| s.segment_number(size).ok()),
        };
        match segno {
            Some(n) if n < cutoff => {
                if !dry_run {
                    repo.delete_file(&file_name(instance, wal_file))?;
                }
                done.deleted.push(wal_file.to_string());
            }
            _ => done.kept += 1,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + day * 86_400, 0).unwrap_or_default()
    }

    proptest! {
        /// Nothing a protected backup needs for point-in-time recovery, and no segment with
        /// commits in the protected days, is ever below the cutoff.
        #[test]
        fn the_cutoff_never_removes_protected_wal(
            mut starts in proptest::collection::vec(0u64..1000, 0..12),
            commits in proptest::collection::vec((0u64..1200, proptest::option::of(0i64..60)), 0..40),
            wal_depth in 0usize..5,
            keep_days in proptest::option::of(0u32..30),
        ) {
            starts.sort_unstable();
            let backups: Vec<(u64, DateTime<Utc>)> = starts.iter().map(|&n| (n, at(n as i64 / 20))).collect();
            let segments: Vec<(u64, Option<DateTime<Utc>>)> = commits.iter().map(|&(n, d)| (n, d.map(at))).collect();
            let now = at(60);
            let policy = WalRetention { wal_depth, keep_days };
            let cutoff = wal_cutoff(&backups, &segments, policy, now);
            if starts.is_empty() {
                prop_assert_eq!(cutoff, None);
                return Ok(());
            }
            let cutoff = cutoff.unwrap();
            let protected = if wal_depth == 0 { &starts[..] } else { &starts[starts.len().saturating_sub(wal_depth)..] };
            prop_assert!(protected.iter().all(|&s| s >= cutoff));
            // Only WAL before the oldest protected backup may go.
            prop_assert!(cutoff <= protected[0]);
            if let Some(days) = keep_days {
                let since = now - chrono::Duration::days(i64::from(days));
                for (n, t) in &segments {
                    if t.is_some_and(|t| t >= since) {
                        prop_assert!(*n >= cutoff, "segment {} has recent commits", n);
                    }
                }
            }
            // Without a depth or days, everything from the oldest backup on is kept, and nothing more.
            if wal_depth == 0 && keep_days.is_none() {
                prop_assert_eq!(cutoff, starts[0]);
            }
        }
    }
}

//! Full physical backup of a running cluster: start a non-exclusive backup on one held
//! connection (a temporary replication slot keeps the WAL), copy the data directory with the
//! server's own exclusions (checking page checksums), stop, and store the `backup_label`, the
//! `tablespace_map` and the WAL from start to stop with the backup, so that it restores to a
//! consistent state on its own. `global/pg_control` is copied last.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use cairn_pg::{
    page_lsn, relation_block, verify_page, walk_data_dir, ControlFile, DataDirEntry, DbState, Flavor, Lsn,
    PageVerdict, TimelineId, WalSegmentName, WalSegmentSize, WalkOptions,
};
use cairn_repo::{
    ChunkId, ChunkLists, ChunkerKind, EntryKind, FileEntry, ListRef, Repository, Writer, WriterOptions,
};

use crate::catalog::{self, BackupMode, BackupRecord, BackupStatus, Tablespace};
use crate::connect::connect;
use crate::error::{EngineError, Result};
use crate::instance::{self, Connection};
use crate::progress::{Counting, Progress};

mod changes;
use changes::ChangeSource;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub instance: String,
    /// Overrides the instance's stored connection settings.
    pub connection: Connection,
    pub channels: usize,
    /// Spread the start checkpoint (`-C`); the default is a fast checkpoint.
    pub smooth_checkpoint: bool,
    pub compression: Option<cairn_repo::Compression>,
    pub note: Option<String>,
    pub no_validate: bool,
    pub skip_block_validation: bool,
    /// FULL reads everything; DELTA only what changed since the newest usable backup (and is
    /// a FULL when there is none).
    pub mode: BackupMode,
    /// A DELTA that must take changed blocks from the server's WAL summaries (`-b PAGE` and
    /// `-b PTRACK`): refused where they cannot be used, rather than reading changed files.
    pub require_wal_summaries: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    #[serde(flatten)]
    pub record: BackupRecord,
    pub files: u64,
    pub seconds: f64,
    /// Chunks reused from earlier backups.
    pub reused_chunks: u64,
    pub chunks: u64,
    /// Bytes of the chunks new to the repository, before compression.
    pub new_bytes: u64,
    /// DELTA: files taken from the parent unread (unchanged size and modification time), and
    /// their bytes.
    pub unchanged_files: u64,
    pub unchanged_bytes: u64,
    /// DELTA: bytes of changed relation files taken from the parent piece by piece (unread
    /// with WAL summaries, read but not stored again with page LSNs).
    pub reused_bytes: u64,
}

pub fn backup(repo: &Repository, options: &BackupOptions, progress: &dyn Progress) -> Result<BackupSummary> {
    let started = Instant::now();
    let (_, mut config) = instance::find(repo, &options.instance)?;
    let pgdata = PathBuf::from(&config.pgdata);
    let mut client = connect(&config.connection.overridden_by(&options.connection))?;
    // A long copy leaves the session idle: no server-side timeout may end it (and the backup).
    client
        .batch_execute("SET idle_session_timeout = 0; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .or_else(|_| client.batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0"))
        .map_err(|error| EngineError::Database { during: "preparing the session", error })?;
    let server = ServerInfo::read(&mut client)?;
    if options.require_wal_summaries {
        changes::check_summaries_on(&mut client, server.version_num)?;
    }
    let control = server.check(&pgdata, config.system_identifier)?;

    let compression = options.compression.or(config.compression);
    let existing = catalog::list(repo, Some(&options.instance))?;
    // After an interrupted backup, what it stored but had not indexed yet is reused too.
    let resuming = existing
        .iter()
        .rev()
        .find(|b| b.record.mode.is_physical())
        .is_some_and(|b| b.record.status == BackupStatus::Error);
    let writer = Writer::new(
        repo,
        &WriterOptions {
            channels: options.channels.max(1),
            compression,
            adopt_unindexed: resuming,
            ..Default::default()
        },
    )?;
    // A DELTA needs a parent: the newest usable backup; without one it is a FULL.
    let parent = match options.mode {
        BackupMode::Delta => existing
            .iter()
            .rev()
            .find(|b| b.record.status.is_restorable() && b.has_files && b.record.mode.is_physical()),
        BackupMode::Full | BackupMode::Logical => None,
    };
    let mut record = BackupRecord {
        parent: parent.map(|p| p.record.id.clone()),
        server_version: server.version_num,
        flavor: server.flavor.to_string(),
        system_identifier: Some(server.system_identifier),
        checksums: server.checksums,
        external_dirs: config.external_dirs.clone(),
        note: options.note.clone(),
        ..BackupRecord::starting(
            &options.instance,
            &existing,
            if parent.is_some() { BackupMode::Delta } else { BackupMode::Full },
        )
    };
    let parent = match parent {
        Some(p) => Some(Parent::load(repo, p)?),
        None => None,
    };
    let result = catalog::record_backup(repo, writer, &mut record, |writer, record| {
        take(
            &mut client,
            &server,
            &control,
            &pgdata,
            &config.external_dirs,
            writer,
            record,
            parent.as_ref(),
            options,
            progress,
        )
    });
    // The backup is over on the server: end the session (and its WAL-holding slot) now.
    drop(client);
    let (copied, manifest, stats) = result?;
    if config.system_identifier.is_none() {
        config.system_identifier = Some(server.system_identifier);
        instance::update(repo, &config)?;
    }
    let mut summary = BackupSummary {
        record,
        files: copied.files,
        seconds: 0.0,
        reused_chunks: stats.chunks - stats.new_chunks,
        chunks: stats.chunks,
        new_bytes: stats.new_bytes,
        unchanged_files: copied.unchanged_files,
        unchanged_bytes: copied.unchanged_bytes,
        reused_bytes: copied.reused_bytes,
    };
    let stored = summary.record.clone();
    repo.replace_meta(&manifest, stored.to_json()?)?;
    if !options.no_validate {
        summary.record.status = crate::validate::validate(
            repo,
            &options.instance,
            Some(&stored.id),
            &crate::validate::ValidateOptions {
                channels: options.channels,
                skip_block_validation: options.skip_block_validation,
            },
            progress,
        )?
        .status;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// What the server says about itself.
struct ServerInfo {
    version_num: u32,
    flavor: Flavor,
    system_identifier: u64,
    checksums: bool,
    wal_segment_size: WalSegmentSize,
    /// PostgreSQL 13 and 14 keep temporary statistics where this setting says.
    stats_temp_directory: Option<String>,
    in_recovery: bool,
}

impl ServerInfo {
    fn read(client: &mut postgres::Client) -> Result<ServerInfo> {
        let db = |error| EngineError::Database { during: "inspecting the server", error };
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, version(), current_setting('wal_level'), \
                 (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user), \
                 (SELECT system_identifier FROM pg_control_system())::text, current_setting('data_checksums'), \
                 (SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END \
                    FROM pg_settings WHERE name = 'wal_segment_size'), pg_is_in_recovery()",
                &[],
            )
            .map_err(db)?;
        let version_num: i32 = row.get(0);
        let version_text: String = row.get(1);
        let wal_level: String = row.get(2);
        let privileged: bool = row.get::<_, Option<bool>>(3).unwrap_or(false);
        let system_identifier: String = row.get(4);
        if wal_level == "minimal" {
            return Err(EngineError::Server(
                "wal_level is minimal: set wal_level = replica (or logical) and restart the server".into(),
            ));
        }
        if !privileged {
            return Err(EngineError::Server(
                "the connecting role is neither a superuser nor a replication role; connect as one (-U)"
                    .into(),
            ));
        }
        let flavor = Flavor::detect(version_num as u32, &version_text)
            .map_err(|e| EngineError::Server(e.to_string()))?;
        let wal_segment_size = WalSegmentSize::new(row.get::<_, i64>(6) as u64)
            .map_err(|e| EngineError::Server(e.to_string()))?;
        // Hidden from a backup role without pg_read_all_settings (pg_settings then has no row):
        // the default's contents are left out, a moved directory inside the data directory is
        // copied (temporary files, harmless).
        let stats_temp_directory = if version_num < 150000 {
            let row = client
                .query_one(
                    "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'stats_temp_directory'), 'pg_stat_tmp')",
                    &[],
                )
                .map_err(db)?;
            Some(row.get(0))
        } else {
            None
        };
        Ok(ServerInfo {
            version_num: version_num as u32,
            flavor,
            system_identifier: system_identifier
                .parse()
                .map_err(|_| EngineError::Server("unreadable system identifier".into()))?,
            checksums: row.get::<_, String>(5) == "on",
            wal_segment_size,
            stats_temp_directory,
            in_recovery: row.get(7),
        })
    }

    /// The data directory given must be the server's own, and of the instance's cluster.
    fn check(&self, pgdata: &Path, expected: Option<u64>) -> Result<ControlFile> {
        let control_path = pgdata.join(self.flavor.info().layout.control_file);
        let control = ControlFile::read(&control_path).map_err(|e| {
            EngineError::Invalid(format!("{} is not a readable data directory: {e}", pgdata.display()))
        })?;
        if control.system_identifier != self.system_identifier {
            return Err(EngineError::Invalid(format!(
                "{} belongs to cluster {}, but the server connected to is cluster {}: wrong data directory or wrong server",
                pgdata.display(),
                control.system_identifier,
                self.system_identifier
            )));
        }
        // A standby shares its primary's identifier: the files must be those of the server
        // that runs the backup, or recovery would start from the wrong checkpoint.
        let local_standby = matches!(control.state, DbState::InArchiveRecovery | DbState::ShutDownInRecovery);
        if local_standby != self.in_recovery {
            let (local, remote) =
                if local_standby { ("a standby", "a primary") } else { ("a primary", "a standby") };
            return Err(EngineError::Invalid(format!(
                "{} is the data directory of {local}, but the server connected to is {remote}: connect to the server that runs on this data directory",
                pgdata.display()
            )));
        }
        if let Some(expected) = expected.filter(|&e| e != self.system_identifier) {
            return Err(EngineError::Invalid(format!(
                "this instance was cluster {expected}, the server is now cluster {}; add a new instance for it",
                self.system_identifier
            )));
        }
        Ok(control)
    }
}

/// What the copy did.
struct Copied {
    files: u64,
    unchanged_files: u64,
    unchanged_bytes: u64,
    reused_bytes: u64,
}

/// The files of a DELTA backup's parent, and when and where it started.
struct Parent {
    files: HashMap<String, ParentFile>,
    /// The files' chunk lists, out of memory.
    chunk_lists: ChunkLists,
    start_ns: i64,
    start_lsn: Option<Lsn>,
    timeline: Option<TimelineId>,
}

/// A regular file of the parent, and where its chunk list is.
struct ParentFile {
    size: u64,
    mtime_ns: i64,
    relation: bool,
    chunks: ListRef,
}

impl Parent {
    /// The writer has loaded the index already.
    fn load(repo: &Repository, backup: &catalog::BackupInfo) -> Result<Parent> {
        let mut chunk_lists = ChunkLists::new()?;
        let mut files = HashMap::new();
        let manifest = repo.load_manifest(&backup.manifest)?;
        repo.for_each_entry(&backup.manifest, &manifest, &mut |e| {
            if e.kind == EntryKind::File {
                let relation = e.meta.get("relation").and_then(|r| r.as_bool()) == Some(true);
                let chunks = chunk_lists.push(&e.chunks)?;
                files.insert(e.path, ParentFile { size: e.size, mtime_ns: e.mtime_ns, relation, chunks });
            }
            Ok(())
        })?;
        let record = &backup.record;
        Ok(Parent {
            files,
            chunk_lists,
            start_ns: record.start_time.timestamp_nanos_opt().unwrap_or(0),
            start_lsn: record.start_lsn,
            timeline: record.timeline,
        })
    }

    fn chunks(&self, file: &ParentFile) -> Result<Vec<ChunkId>> {
        Ok(self.chunk_lists.get(file.chunks)?)
    }

    /// The parent's entry for a file whose size and modification time say it has not changed
    /// since. A file modified within a second of the parent's start is read again: a write in
    /// the same timestamp tick could leave both unchanged (pgBackRest guards the same way).
    fn unchanged(&self, entry: &DataDirEntry) -> Option<&ParentFile> {
        const GUARD_NS: i64 = 1_000_000_000;
        let old = self.files.get(&entry.rel_path)?;
        (old.size == entry.size
            && old.mtime_ns == entry.mtime_ns
            && entry.mtime_ns < self.start_ns - GUARD_NS)
            .then_some(old)
    }
}

/// The backup proper.
#[allow(clippy::too_many_arguments)]
fn take(
    client: &mut postgres::Client,
    server: &ServerInfo,
    control: &ControlFile,
    pgdata: &Path,
    external_dirs: &[String],
    writer: &Writer<'_>,
    record: &mut BackupRecord,
    parent: Option<&Parent>,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Copied> {
    let db = |during, error| EngineError::Database { during, error };
    // The slot keeps every WAL segment from the start on until we have copied it.
    let slot = format!("cairn_{}", record.id.to_lowercase());
    client
        .execute("SELECT pg_create_physical_replication_slot($1, true, true)", &[&slot])
        .map_err(|e| db("creating a temporary replication slot", e))?;
    let label = format!("cairn backup {}", record.id);
    let fast = !options.smooth_checkpoint;
    let sql = server.flavor.info().backup_sql;
    let start: String =
        client.query_one(sql.start, &[&label, &fast]).map_err(|e| db("starting the backup", e))?.get(0);
    let start_lsn: Lsn =
        start.parse().map_err(|_| EngineError::Server(format!("unexpected start LSN '{start}'")))?;
    let timeline: i32 = client
        .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
        .map_err(|e| db("reading the timeline", e))?
        .get(0);
    record.start_lsn = Some(start_lsn);
    let timeline = TimelineId::new(timeline as u32).map_err(|e| EngineError::Server(e.to_string()))?;
    record.timeline = Some(timeline);

    // Copy: everything but pg_control in parallel, pg_control last.
    let walk_options = WalkOptions {
        flavor: server.flavor,
        stats_temp_directory: server.stats_temp_directory.clone(),
        tablespace_version_dir: Some(cairn_pg::flavor::tablespace_version_dir(
            server.flavor.major,
            control.catalog_version,
        )),
        external_dirs: external_dirs.iter().map(PathBuf::from).collect(),
    };
    let walk = walk_data_dir(pgdata, &walk_options).map_err(|e| EngineError::Invalid(e.to_string()))?;
    let layout = server.flavor.info().layout;
    record.tablespaces = walk
        .entries
        .iter()
        .filter_map(|e| {
            let oid = e.rel_path.strip_prefix(layout.tablespace_dir)?.strip_prefix('/')?.parse().ok()?;
            Some(Tablespace { oid, location: e.link_target.clone()? })
        })
        .collect();
    let (control_entries, rest): (Vec<DataDirEntry>, Vec<DataDirEntry>) =
        walk.entries.into_iter().partition(|e| e.rel_path == layout.control_file);
    let total: u64 = rest.iter().chain(&control_entries).map(|e| e.size).sum();
    progress.begin("backup", total);
    let changes = match parent {
        Some(parent) => change_source(
            client,
            server,
            parent,
            (timeline, start_lsn),
            writer,
            options.require_wal_summaries,
        )?,
        None => None,
    };
    record.change_source = changes.as_ref().map(|c| c.name().to_string());
    let corrupt = Mutex::new(Vec::new());
    let copier = Copier {
        writer,
        start_lsn,
        checksums: server.checksums,
        corrupt: &corrupt,
        progress,
        parent,
        changes: changes.as_ref(),
        piece_size: writer.chunker().fixed_size as usize,
        reused_bytes: AtomicU64::new(0),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        unchanged_files: AtomicU64::new(0),
        unchanged_bytes: AtomicU64::new(0),
        abandoned: AtomicBool::new(false),
    };
    copy_watching(client, &copier, &rest, options.channels.max(1))?;
    // pg_control is always read: it is what recovery starts from.
    let copier = Copier { parent: None, ..copier };
    copier.copy_all(&control_entries, 1)?;
    // What was actually read (files change size while the server runs), and what was not.
    let mut count = copier.files.into_inner();
    record.data_bytes = copier.bytes.into_inner();
    let unchanged_files = copier.unchanged_files.into_inner();
    let unchanged_bytes = copier.unchanged_bytes.into_inner();
    let reused_bytes = copier.reused_bytes.into_inner();
    progress.end();
    let corrupt = corrupt.into_inner().unwrap_or_else(|e| e.into_inner());
    if !corrupt.is_empty() && !options.skip_block_validation {
        return Err(EngineError::CorruptPages(corrupt.join(", ")));
    }

    let wait_for_archive = false;
    let stop = if sql.stop_waits_for_archive {
        client.query_one(sql.stop, &[&wait_for_archive])
    } else {
        client.query_one(sql.stop, &[])
    }
    .map_err(|e| db("stopping the backup", e))?;
    let stop_text: String = stop.get(0);
    let stop_lsn: Lsn =
        stop_text.parse().map_err(|_| EngineError::Server(format!("unexpected stop LSN '{stop_text}'")))?;
    record.stop_lsn = Some(stop_lsn);
    let after = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8, \
             pg_snapshot_xmax(pg_current_snapshot())::text::int8",
            &[],
        )
        .map_err(|e| db("reading the stop time", e))?;
    record.stop_time = chrono::DateTime::from_timestamp_micros(after.get(0));
    record.recovery_xid = Some(after.get::<_, i64>(1) as u64);
    for (name, text) in [("backup_label", stop.get::<_, Option<String>>(1)), ("tablespace_map", stop.get(2))]
    {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let (chunks, size) = writer.store(&mut text.as_bytes(), ChunkerKind::ContentDefined)?;
            let mtime_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            writer.add_entry(&FileEntry::file(name, 0o600, mtime_ns, size, chunks))?;
            record.data_bytes += size;
            count += 1;
        }
    }

    // The WAL from the start to the stop: the stop function switched segments, so the last one is complete.
    let segment_size = server.wal_segment_size;
    let first = WalSegmentName::from_lsn(timeline, start_lsn, segment_size);
    let last = WalSegmentName::from_end_lsn(timeline, stop_lsn, segment_size);
    let mut segment = first;
    loop {
        let path = pgdata.join(layout.wal_dir).join(segment.to_string());
        let mut file = wait_for(&path)?;
        let (chunks, size) = writer.store(&mut file, ChunkerKind::Fixed)?;
        let rel = format!("{}/{segment}", layout.wal_dir);
        writer.add_entry(&FileEntry::file(rel, 0o600, 0, size, chunks))?;
        record.data_bytes += size;
        record.wal_segments += 1;
        count += 1;
        if segment == last {
            break;
        }
        segment = segment.next(segment_size).map_err(|e| EngineError::Server(e.to_string()))?;
    }
    Ok(Copied { files: count, unchanged_files, unchanged_bytes, reused_bytes })
}

/// How a DELTA finds the changed pieces of relation files: the WAL summaries when the server
/// keeps them, the page LSNs otherwise. Neither across a timeline switch (a restored and
/// promoted cluster can write different pages under LSNs the parent already had): then
/// changed files are read and stored whole.
fn change_source(
    client: &mut postgres::Client,
    server: &ServerInfo,
    parent: &Parent,
    (timeline, start_lsn): (TimelineId, Lsn),
    writer: &Writer<'_>,
    require_summaries: bool,
) -> Result<Option<ChangeSource>> {
    let refuse = |why: &str| {
        EngineError::Invalid(format!(
            "-b PAGE and -b PTRACK take the changed blocks from the server's WAL summaries, which cannot be used: {why}; take -b DELTA instead (it reads changed files and compares page LSNs)"
        ))
    };
    let Some(parent_lsn) = parent.start_lsn.filter(|_| parent.timeline == Some(timeline)) else {
        if require_summaries {
            return Err(refuse("the parent backup is on another timeline"));
        }
        tracing::info!("the parent backup is on another timeline: changed files are read whole");
        return Ok(None);
    };
    let pages_per_piece = u64::from(writer.chunker().fixed_size) / PAGE as u64;
    let range = (parent_lsn, start_lsn);
    Ok(Some(
        match changes::from_wal_summaries(
            client,
            server.version_num,
            timeline,
            range,
            pages_per_piece,
            SUMMARY_WAIT,
        )? {
            Ok(pieces) => ChangeSource::Summaries(pieces),
            Err(why) if require_summaries => return Err(refuse(&why)),
            Err(why) => {
                tracing::info!(
                    "WAL summaries not used ({why}): changed files are read, pages compared by LSN"
                );
                ChangeSource::PageLsn(parent_lsn)
            }
        },
    ))
}

/// How long a backup waits for the WAL summarizer to reach its start.
const SUMMARY_WAIT: Duration = Duration::from_secs(30);

/// A WAL segment the server has just finished may take a moment to appear under its name.
fn wait_for(path: &Path) -> Result<File> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match File::open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(EngineError::io(format!("reading WAL segment {}", path.display()), e)),
        }
    }
}

/// Copies walk entries into the writer, `channels` files at a time.
struct Copier<'a> {
    writer: &'a Writer<'a>,
    start_lsn: Lsn,
    checksums: bool,
    corrupt: &'a Mutex<Vec<String>>,
    progress: &'a dyn Progress,
    parent: Option<&'a Parent>,
    changes: Option<&'a ChangeSource>,
    /// The repository's fixed chunk size: relation files are read and reused in such pieces.
    piece_size: usize,
    reused_bytes: AtomicU64,
    /// Regular files stored (read or unchanged), and their bytes.
    files: AtomicU64,
    bytes: AtomicU64,
    /// Of those, the ones taken from the parent unread.
    unchanged_files: AtomicU64,
    unchanged_bytes: AtomicU64,
    /// Set when the copy is given up (the connection holding the backup is gone).
    abandoned: AtomicBool,
}

impl Copier<'_> {
    fn copy_all(&self, entries: &[DataDirEntry], channels: usize) -> Result<()> {
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<EngineError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..channels.min(entries.len().max(1)) {
                s.spawn(|| {
                    while let Some(entry) = entries
                        .get(next.fetch_add(1, Ordering::Relaxed))
                        .filter(|_| !self.abandoned.load(Ordering::Relaxed))
                    {
                        if let Err(e) = self.copy(entry) {
                            failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                            next.store(entries.len(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn copy(&self, entry: &DataDirEntry) -> Result<()> {
        let kind = match entry.kind {
            cairn_pg::EntryKind::Dir => EntryKind::Dir,
            cairn_pg::EntryKind::Symlink => EntryKind::Symlink,
            cairn_pg::EntryKind::File => EntryKind::File,
        };
        let mut file_entry = FileEntry {
            path: entry.rel_path.clone(),
            kind,
            mode: entry.mode,
            size: 0,
            mtime_ns: entry.mtime_ns,
            chunks: Vec::new(),
            target: entry.link_target.clone(),
            // Marks the files validate re-checks page by page.
            meta: if entry.is_relation_file {
                serde_json::json!({"relation": true})
            } else {
                serde_json::Value::Null
            },
        };
        let unchanged = self.parent.filter(|_| kind == EntryKind::File).and_then(|p| p.unchanged(entry));
        if let (Some(old), Some(parent)) = (unchanged, self.parent) {
            file_entry.chunks = parent.chunks(old)?;
            file_entry.size = old.size;
            self.unchanged_files.fetch_add(1, Ordering::Relaxed);
            self.unchanged_bytes.fetch_add(old.size, Ordering::Relaxed);
            self.files.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(old.size, Ordering::Relaxed);
            self.progress.advance(old.size);
        } else if kind == EntryKind::File {
            let path = &entry.source;
            let file = match File::open(path) {
                Ok(f) => f,
                // Files come and go while the server runs (WAL replay recreates them).
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(EngineError::io(format!("reading {}", path.display()), e)),
            };
            let (chunks, size) = if entry.is_relation_file {
                self.copy_relation(entry, &file)?
            } else {
                let mut reader = Counting { inner: file, progress: self.progress };
                self.writer.store(&mut reader, ChunkerKind::ContentDefined)?
            };
            file_entry.chunks = chunks;
            file_entry.size = size;
            self.files.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(size, Ordering::Relaxed);
        }
        self.writer.add_entry(&file_entry)?;
        Ok(())
    }
}

/// How often the connection holding the backup is checked while the files are copied.
const CONNECTION_CHECK: Duration = Duration::from_secs(2);

/// Copies `entries` while checking, every [`CONNECTION_CHECK`], that the connection holding the
/// backup is alive: without it the backup cannot be stopped, so a copy of terabytes is given up
/// at once rather than found useless at its end.
fn copy_watching(
    client: &mut postgres::Client,
    copier: &Copier<'_>,
    entries: &[DataDirEntry],
    channels: usize,
) -> Result<()> {
    std::thread::scope(|s| {
        let (done, finished) = std::sync::mpsc::channel();
        let copy = s.spawn(move || {
            let result = copier.copy_all(entries, channels);
            let _ = done.send(());
            result
        });
        let mut lost = None;
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(CONNECTION_CHECK) {
            if let Err(e) = client.is_valid(Duration::from_secs(30)) {
                copier.abandoned.store(true, Ordering::Relaxed);
                lost = Some(e);
                break;
            }
        }
        let copied = copy.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match lost {
            Some(error) => Err(EngineError::Database { during: "copying the data directory", error }),
            None => copied,
        }
    })
}

const PAGE: usize = 8192;

impl Copier<'_> {
    /// A relation file, a piece (one fixed chunk) at a time: pieces the change source says
    /// are the parent's are taken from it, the others read and their pages checked.
    fn copy_relation(&self, entry: &DataDirEntry, file: &File) -> Result<(Vec<ChunkId>, u64)> {
        let piece_size = self.piece_size as u64;
        let old = self
            .parent
            .and_then(|p| Some((p, p.files.get(&entry.rel_path)?)))
            .filter(|(_, old)| old.relation);
        let old_chunks = match old {
            Some((parent, file)) => parent.chunks(file)?,
            None => Vec::new(),
        };
        let old = old.map(|(_, file)| file);
        // The parent's whole pieces (its last one may be short).
        let parent_piece = |piece: u64| {
            old.filter(|o| piece < o.size / piece_size).and_then(|_| old_chunks.get(piece as usize).copied())
        };
        let changes = match (old, self.changes) {
            (Some(_), Some(ChangeSource::Summaries(pieces))) => Some(pieces.for_file(&entry.rel_path)),
            _ => None,
        };
        // The free space map is not WAL-logged: its pages' LSNs say nothing.
        let fsm = entry.relation().is_some_and(|r| r.fork == cairn_pg::Fork::Fsm);
        let page_lsn = match (old, self.changes) {
            (Some(_), Some(ChangeSource::PageLsn(lsn))) if !fsm => Some(*lsn),
            _ => None,
        };
        let first_block = entry.relation().map_or(0, |r| relation_block(r.segment, 0));
        let mut store = self.writer.file();
        let mut offset = 0u64;
        while !self.abandoned.load(Ordering::Relaxed) {
            let piece = offset / piece_size;
            let reusable = parent_piece(piece);
            if let (Some(id), Some(changes)) = (reusable, &changes) {
                if offset + piece_size <= entry.size && !changes.touches(piece) {
                    store.push_stored(id, piece_size)?;
                    self.progress.advance(piece_size);
                    self.reused_bytes.fetch_add(piece_size, Ordering::Relaxed);
                    offset += piece_size;
                    continue;
                }
            }
            let mut data = read_piece(file, self.piece_size, offset)
                .map_err(|e| EngineError::io(format!("reading {}", entry.source.display()), e))?;
            let n = data.len();
            if n == 0 {
                break;
            }
            let block = first_block + (offset / PAGE as u64) as u32;
            self.check_pages(file, &mut data, offset, block, &entry.rel_path)
                .map_err(|e| EngineError::io(format!("reading {}", entry.source.display()), e))?;
            self.progress.advance(n as u64);
            match reusable
                .filter(|_| n == self.piece_size && page_lsn.is_some_and(|l| changes::older_than(&data, l)))
            {
                Some(id) => {
                    store.push_stored(id, piece_size)?;
                    self.reused_bytes.fetch_add(piece_size, Ordering::Relaxed);
                }
                None => store.push(data)?,
            }
            offset += n as u64;
            if n < self.piece_size {
                break;
            }
        }
        Ok(store.finish()?)
    }

    /// Checks the checksum of each page of `data` (read at `offset`, first block `block`). A
    /// page that fails is read again (a concurrent write may have torn it); if it still
    /// fails, a page changed after the backup started is fine (WAL replay rewrites it), an
    /// older one is corrupt.
    fn check_pages(
        &self,
        file: &File,
        data: &mut [u8],
        offset: u64,
        block: u32,
        rel_path: &str,
    ) -> io::Result<()> {
        if !self.checksums {
            return Ok(());
        }
        for (i, page) in data.chunks_exact_mut(PAGE).enumerate() {
            let block = block + i as u32;
            let ok = |p: &[u8]| {
                <&[u8; PAGE]>::try_from(p)
                    .is_ok_and(|p| matches!(verify_page(p, block), PageVerdict::Valid | PageVerdict::New))
            };
            if ok(page) {
                continue;
            }
            let at = offset + (i * PAGE) as u64;
            let mut again = [0u8; PAGE];
            let mut fixed = false;
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(2));
                match file.read_at(&mut again, at)? {
                    // Truncated while we read (VACUUM): WAL replay truncates it again.
                    n if n < PAGE => {
                        fixed = true;
                        break;
                    }
                    _ if ok(&again) => {
                        page.copy_from_slice(&again);
                        fixed = true;
                        break;
                    }
                    _ => {}
                }
            }
            // Written during the backup: WAL replay restores it.
            if !fixed && page_lsn(&again) < self.start_lsn {
                self.corrupt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{rel_path} block {block}"));
            }
        }
        Ok(())
    }
}

/// The `len` bytes at `offset`, fewer only at the end of the file. They are read into the
/// buffer's spare capacity: a piece's buffer is not zeroed first.
fn read_piece(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The allocator may have given more room than asked for, and the read filled it.
    buf.truncate(len);
    Ok(buf)
}

//! Taking a logical backup: each database dumped by the flavor's dump tool, uncompressed
//! (the repository compresses, and content-defined chunking finds what an earlier dump
//! already stored), either in directory format through scratch space with parallel jobs, or
//! in custom format streamed straight into the repository; the globals with the dumpall tool;
//! time ranges of tables with COPY.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use cairn_repo::{ChunkerKind, FileEntry, Repository, Writer, WriterOptions};

use super::tools::{self, Tool};
use super::{database_dir, DumpFormat, LogicalScope, Server, TimeRange, CUSTOM_FILE, GLOBALS_FILE, ROOT};
use crate::catalog::{self, BackupMode, BackupRecord};
use crate::connect::connect;
use crate::error::{EngineError, Result};
use crate::instance::{self, Connection};
use crate::progress::{Counting, Progress};

#[derive(Debug, Clone, Default)]
pub struct LogicalBackupOptions {
    pub instance: String,
    /// Overrides the instance's stored connection settings.
    pub connection: Connection,
    /// The databases to dump (`--database`, repeatable).
    pub databases: Vec<String>,
    /// Every database that accepts connections (templates excluded), and the globals.
    pub all_databases: bool,
    /// Dump roles and tablespaces too (`pg_dumpall --globals-only`).
    pub globals: bool,
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    /// Copy only these rows of `tables` instead of dumping.
    pub time_range: Option<TimeRange>,
    /// Dump jobs (directory format) and repository channels.
    pub jobs: usize,
    /// Stream a custom-format dump into the repository instead of dumping into scratch space.
    pub no_scratch: bool,
    /// Where directory-format dumps are made (default: the system's temporary directory).
    pub scratch_dir: Option<PathBuf>,
    /// Where the dump tools are (default: PATH, then /usr/lib/postgresql/<major>/bin).
    pub tool_dir: Option<PathBuf>,
    pub compression: Option<cairn_repo::Compression>,
    pub note: Option<String>,
    pub no_validate: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogicalBackupSummary {
    #[serde(flatten)]
    pub record: BackupRecord,
    pub files: u64,
    pub seconds: f64,
    pub chunks: u64,
    /// Chunks an earlier backup had stored already.
    pub reused_chunks: u64,
    /// Time ranges: rows copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

pub fn backup(
    repo: &Repository,
    options: &LogicalBackupOptions,
    progress: &dyn Progress,
) -> Result<LogicalBackupSummary> {
    let started = Instant::now();
    check(options)?;
    let (_, config) = instance::find(repo, &options.instance)?;
    let connection = config.connection.overridden_by(&options.connection);
    let mut client = connect(&connection)?;
    let server = Server::read(&mut client)?;
    let databases = databases(&mut client, options)?;
    drop(client);
    // The record keeps the range as the server read it, not as it was typed.
    let normalized;
    let options = match (&options.time_range, databases.first()) {
        (Some(range), Some(first)) => {
            let range = super::range::normalize(&connection, first, &options.tables, range)?;
            normalized = LogicalBackupOptions { time_range: Some(range), ..options.clone() };
            &normalized
        }
        _ => options,
    };
    // Tools are found and checked before anything is recorded: a missing or old tool makes
    // no backup at all, not a broken one.
    let dumper = match options.time_range {
        Some(_) => None,
        None => {
            Some(tools::find(server.flavor.info().tools.dump, options.tool_dir.as_deref(), &server.need())?)
        }
    };
    let globals = options.globals || options.all_databases;
    let dumpall = match globals {
        true => {
            let name = format!("{}all", server.flavor.info().tools.dump);
            Some(tools::find(&name, options.tool_dir.as_deref(), &server.need())?)
        }
        false => None,
    };
    let format = match (&options.time_range, options.no_scratch) {
        (Some(_), _) => DumpFormat::Copy,
        (None, true) => DumpFormat::Custom,
        (None, false) => DumpFormat::Directory,
    };
    let scope = LogicalScope {
        databases: databases.clone(),
        schemas: options.schemas.clone(),
        tables: options.tables.clone(),
        globals,
        format,
        tool: dumper.as_ref().map(|t| t.name.clone()),
        tool_version: dumper.as_ref().map(|t| t.version.clone()),
        time_range: options.time_range.clone(),
    };

    let compression = options.compression.or(config.compression);
    let writer = Writer::new(
        repo,
        &WriterOptions { channels: options.jobs.clamp(1, 255), compression, ..Default::default() },
    )?;
    let existing = catalog::list(repo, Some(&options.instance))?;
    let mut record = BackupRecord {
        server_version: server.version_num,
        flavor: server.flavor.to_string(),
        note: options.note.clone(),
        logical: Some(scope),
        ..BackupRecord::starting(&options.instance, &existing, BackupMode::Logical)
    };
    let (done, manifest, stats) = catalog::record_backup(repo, writer, &mut record, |writer, record| {
        let dump = Dump { writer, connection: &connection, options, progress, mtime_ns: now_ns() };
        progress.begin("dump", dump_estimate(&connection, &databases));
        let outcome = dump.all(&databases, dumper.as_ref(), dumpall.as_ref());
        progress.end();
        let done = outcome?;
        record.data_bytes = done.bytes;
        Ok(done)
    })?;
    repo.replace_meta(&manifest, record.to_json()?)?;
    let mut summary = LogicalBackupSummary {
        record,
        files: done.files,
        seconds: 0.0,
        chunks: stats.chunks,
        reused_chunks: stats.chunks - stats.new_chunks,
        rows: options.time_range.as_ref().map(|_| done.rows),
    };
    if !options.no_validate {
        summary.record.status = crate::validate::validate(
            repo,
            &options.instance,
            Some(&summary.record.id),
            &crate::validate::ValidateOptions { channels: options.jobs, skip_block_validation: true },
            progress,
        )?
        .status;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Options that make no sense together.
fn check(options: &LogicalBackupOptions) -> Result<()> {
    let invalid = |m: &str| Err(EngineError::Invalid(m.into()));
    if options.databases.is_empty() && !options.all_databases {
        return invalid("say which database to dump: --database DB (repeatable) or --all-databases");
    }
    if !options.databases.is_empty() && options.all_databases {
        return invalid("--database and --all-databases exclude each other");
    }
    if let Some(range) = &options.time_range {
        if options.tables.is_empty() {
            return invalid("a time range needs the tables to copy (--table, repeatable)");
        }
        if !options.schemas.is_empty() || options.all_databases || options.globals {
            return invalid(
                "a time range copies rows of tables: it takes no --schema, --all-databases or --globals",
            );
        }
        if range.column.is_empty() || range.from.is_empty() || range.to.is_empty() {
            return invalid("a time range needs --time-column, --from and --to");
        }
    }
    Ok(())
}

/// The databases to dump: the ones named (which must exist), or every one that accepts
/// connections.
fn databases(client: &mut postgres::Client, options: &LogicalBackupOptions) -> Result<Vec<String>> {
    let db = |error| EngineError::Database { during: "listing databases", error };
    let rows = client
        .query("SELECT datname, datallowconn AND NOT datistemplate FROM pg_database ORDER BY datname", &[])
        .map_err(db)?;
    let all: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if options.all_databases {
        return Ok(all.into_iter().filter(|(_, usable)| *usable).map(|(name, _)| name).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for name in &options.databases {
        if !all.iter().any(|(n, _)| n == name) {
            return Err(EngineError::Invalid(format!("the server has no database '{name}'")));
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// About how much a dump of `databases` writes, for progress: the size of their tables and
/// large objects (a dump has no indexes). Databases that cannot be asked count for nothing.
fn dump_estimate(connection: &Connection, databases: &[String]) -> u64 {
    let sql = "SELECT (coalesce(sum(pg_table_size(c.oid)), 0) + pg_table_size('pg_largeobject'))::int8 \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')";
    databases
        .iter()
        .filter_map(|db| {
            let mut client = connect(&connection.to_database(db)).ok()?;
            client.query_one(sql, &[]).ok().map(|r| r.get::<_, i64>(0) as u64)
        })
        .sum()
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// What was dumped.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub files: u64,
    pub bytes: u64,
    pub rows: u64,
}

/// One backup's dumping.
pub(super) struct Dump<'a> {
    pub writer: &'a Writer<'a>,
    pub connection: &'a Connection,
    pub options: &'a LogicalBackupOptions,
    pub progress: &'a dyn Progress,
    /// Every entry gets the backup's start as its time: equal entries in the next backup
    /// keep the entry stream deduplicating.
    mtime_ns: i64,
}

impl Dump<'_> {
    fn all(&self, databases: &[String], dumper: Option<&Tool>, dumpall: Option<&Tool>) -> Result<Done> {
        let mut done = Done::default();
        if let Some(tool) = dumpall {
            let mut cmd = tool.command(self.connection, None);
            cmd.arg("--globals-only");
            if let Some(db) = &self.connection.database {
                cmd.args(["-l", db]);
            }
            let path = format!("{ROOT}/{GLOBALS_FILE}");
            self.stream(tool, cmd, &path, serde_json::json!({"globals": true}), &mut done)?;
        }
        for database in databases {
            match (dumper, &self.options.time_range) {
                (_, Some(range)) => super::range::dump(self, database, range, &mut done)?,
                (Some(tool), None) if self.options.no_scratch => self.custom(tool, database, &mut done)?,
                (Some(tool), None) => self.directory(tool, database, &mut done)?,
                (None, None) => return Err(EngineError::Invalid("no dump tool".into())),
            }
        }
        Ok(done)
    }

    /// The tool's arguments choosing what to dump.
    fn filters(&self) -> Vec<String> {
        let schemas = self.options.schemas.iter().flat_map(|s| ["--schema".to_string(), s.clone()]);
        let tables = self.options.tables.iter().flat_map(|t| ["--table".to_string(), t.clone()]);
        let mut args: Vec<String> = schemas.chain(tables).collect();
        // A pattern that matches nothing is a mistake to report, not a smaller dump.
        if !args.is_empty() {
            args.push("--strict-names".into());
        }
        args
    }

    /// `pg_dump -Fc -Z0` read from its standard output straight into the repository.
    fn custom(&self, tool: &Tool, database: &str, done: &mut Done) -> Result<()> {
        let mut cmd = tool.command(self.connection, Some(database));
        cmd.args(["--format=custom", "--compress=0"]).args(self.filters());
        let path = format!("{}/{CUSTOM_FILE}", database_dir(database));
        self.stream(tool, cmd, &path, serde_json::json!({"database": database}), done)
    }

    /// Runs `cmd` and stores what it writes to standard output as the entry `path`.
    fn stream(
        &self,
        tool: &Tool,
        mut cmd: std::process::Command,
        path: &str,
        meta: serde_json::Value,
        done: &mut Done,
    ) -> Result<()> {
        cmd.stdout(std::process::Stdio::piped());
        let mut running = tool.spawn(cmd)?;
        let Some(stdout) = running.child.stdout.take() else {
            running.kill();
            return Err(EngineError::Invalid(format!("{} gave no output to read", tool.name)));
        };
        let mut reader = Counting { inner: stdout, progress: self.progress };
        let stored = self.writer.store(&mut reader, ChunkerKind::ContentDefined);
        let (chunks, size) = match stored {
            Ok(s) => s,
            Err(e) => {
                running.kill();
                return Err(e.into());
            }
        };
        // A tool that failed half-way wrote a dump cut short: its failure is the error.
        running.wait()?;
        self.add(path, size, chunks, meta, done)
    }

    /// `pg_dump -Fd -Z0 -j N` into scratch space, then each file of the dump directory into
    /// the repository (several at a time), the scratch space removed after.
    fn directory(&self, tool: &Tool, database: &str, done: &mut Done) -> Result<()> {
        let scratch = super::scratch(self.options.scratch_dir.as_deref(), "cairn-dump-")?;
        let dir = scratch.path().join("dump");
        let mut cmd = tool.command(self.connection, Some(database));
        cmd.args(["--format=directory", "--compress=0", "--file"])
            .arg(&dir)
            .args(["--jobs", &self.options.jobs.max(1).to_string()])
            .args(self.filters());
        let mut running = tool.spawn(cmd)?;
        // Progress while the tool writes: what has landed in the scratch space.
        let mut seen = 0;
        loop {
            match running.finished() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    running.kill();
                    return Err(e);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            let now = dir_bytes(&dir);
            self.progress.advance(now.saturating_sub(seen));
            seen = seen.max(now);
        }
        running.wait()?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .and_then(|listing| listing.map(|e| e.map(|e| e.path())).collect())
            .map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?;
        files.sort();
        let stored = cairn_repo::parallel_map(&files, self.options.jobs.max(1), |path| {
            let mut file =
                File::open(path).map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
            Ok::<_, EngineError>(self.writer.store(&mut file, ChunkerKind::ContentDefined)?)
        })?;
        for (path, (chunks, size)) in files.iter().zip(stored) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let entry = format!("{}/{name}", database_dir(database));
            self.add(&entry, size, chunks, serde_json::json!({"database": database}), done)?;
        }
        Ok(())
    }

    /// Adds a stored file to the backup.
    pub(super) fn add(
        &self,
        path: &str,
        size: u64,
        chunks: Vec<cairn_repo::ChunkId>,
        meta: serde_json::Value,
        done: &mut Done,
    ) -> Result<()> {
        let mut entry = FileEntry::file(path, 0o600, self.mtime_ns, size, chunks);
        entry.meta = meta;
        self.writer.add_entry(&entry)?;
        done.files += 1;
        done.bytes += size;
        Ok(())
    }
}

/// Bytes of the files in `dir` now (a dump directory has no subdirectories).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

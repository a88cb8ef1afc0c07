//! Restoring a logical backup with the flavor's `pg_restore`: a whole database (into a new
//! database, under its name or another), or one schema or table out of it, into the same or
//! another cluster; time ranges with COPY. Everything that would be replaced is found before
//! anything changes, and refused unless `clean`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use cairn_repo::{ChunkId, ChunkLists, FileEntry, ListRef, RepoError, Repository};

use super::range::{self, Stored};
use super::toc::{self, Chosen, TableName};
use super::tools::{self, Need, Said, Tool};
use super::{
    component, database_dir, quote_ident, DumpFormat, LogicalScope, Server, CUSTOM_FILE, GLOBALS_FILE, ROOT,
};
use crate::catalog::{self, BackupInfo, BackupMode};
use crate::connect::connect;
use crate::error::{EngineError, Result};
use crate::instance::{self, Connection};
use crate::progress::{Counting, Progress, Silent};
use crate::restore::{batches, Listed};

#[derive(Debug, Clone, Default)]
pub struct LogicalRestoreOptions {
    pub instance: String,
    /// The backup (default: the newest usable logical backup of the instance).
    pub backup_id: Option<String>,
    /// Only this database of the backup (default: all of them, and the globals).
    pub database: Option<String>,
    /// Restore the database under this name (one database only).
    pub new_name: Option<String>,
    /// Only these schemas, or tables (`schema.table`, or `table` when one schema has it).
    pub schemas: Vec<String>,
    pub tables: Vec<String>,
    /// Where to restore: overrides the instance's connection (another cluster).
    pub target: Connection,
    /// pg_restore jobs (directory-format dumps).
    pub jobs: usize,
    /// Replace what exists: drop and recreate a database; drop the schemas and tables being
    /// restored; delete the rows of a time range.
    pub clean: bool,
    /// Do not restore the objects' owners (`pg_restore --no-owner`): for a cluster without
    /// the source's roles.
    pub no_owner: bool,
    /// Where directory-format dumps are put back together (default: the system's temporary
    /// directory).
    pub scratch_dir: Option<PathBuf>,
    /// Where the restore tools are (default: PATH, then /usr/lib/postgresql/<major>/bin).
    pub tool_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogicalRestoreSummary {
    pub backup_id: String,
    /// The server restored into, `host:port`.
    pub target: String,
    pub databases: Vec<RestoredDatabase>,
    /// Whether roles and tablespaces were restored.
    pub globals: bool,
    /// Bytes of the dump read from the repository.
    pub bytes: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    /// Statements of the globals that failed (roles that exist already, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredDatabase {
    /// The database in the backup.
    pub database: String,
    /// The database restored into.
    pub into: String,
    /// Whether the restore created it.
    pub created: bool,
    /// Whether it existed and was dropped first (`clean`).
    pub replaced: bool,
    /// A part restored: its schemas, and its relations as `schema.name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Time ranges: rows loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// Where a database's dump is read from.
#[derive(Debug)]
enum Input {
    /// A directory-format dump put back together in scratch space.
    Directory(PathBuf),
    /// A custom-format dump, streamed to the tool's standard input.
    Custom(FileEntry),
}

/// What will be done to one database.
#[derive(Debug)]
enum Work {
    /// Everything, into a database the restore creates.
    Whole(Input),
    /// The chosen entries (`pg_restore -L`), into a database that may exist.
    Part { input: Input, list: PathBuf, chosen: Chosen },
    /// Time ranges into existing tables.
    Ranges(Vec<Stored>),
}

/// What a target database has of what a restore brings.
#[derive(Debug, Default)]
struct Present {
    schemas: Vec<String>,
    /// `table sales.orders`, `index sales.orders_customer`, ...
    objects: Vec<String>,
}

#[derive(Debug)]
struct Plan {
    database: String,
    into: String,
    exists: bool,
    work: Work,
}

pub fn restore(
    repo: &Repository,
    options: &LogicalRestoreOptions,
    progress: &dyn Progress,
) -> Result<LogicalRestoreSummary> {
    let started = Instant::now();
    let backup = choose_backup(repo, options)?;
    let scope = backup.record.logical.clone().ok_or_else(|| {
        EngineError::Invalid(format!("backup {} has no record of what it dumped", backup.record.id))
    })?;
    let databases = databases(&backup, &scope, options)?;
    let _lock = cairn_repo::lock::LockGuard::acquire(repo.storage().clone(), false)?;
    repo.load_index()?;
    let Listed { entries: listed, lists } = Listed::read(repo, &backup)?;
    let mut refs = HashMap::new();
    let mut entries = Vec::new();
    for (entry, list) in listed {
        refs.insert(entry.path.clone(), list);
        entries.push(entry);
    }
    let chunks = Chunks { lists, refs };
    let (_, config) = instance::find(repo, &options.instance)?;
    let connection = config.connection.overridden_by(&options.target);
    let mut admin = connect(&connection)?;
    let server = Server::read(&mut admin)?;
    let tool_names = server.flavor.info().tools;
    let restorer = match (scope.format, &scope.tool_version) {
        (DumpFormat::Copy, _) => None,
        (_, version) => {
            let dumped_by =
                format!("{} {}", scope.tool.as_deref().unwrap_or("?"), version.as_deref().unwrap_or("?"));
            let major = version.as_deref().and_then(tools::major_of).unwrap_or(0);
            let need = Need { major, what: format!("the dump (made by {dumped_by})") };
            Some(tools::find(tool_names.restore, options.tool_dir.as_deref(), &need)?)
        }
    };
    let with_globals = scope.globals
        && options.database.is_none()
        && options.schemas.is_empty()
        && options.tables.is_empty();
    let psql = match with_globals {
        true => {
            let need = Need { major: 0, what: String::new() };
            Some(tools::find(tool_names.sql_client, options.tool_dir.as_deref(), &need)?)
        }
        false => None,
    };
    let scratch = super::scratch(options.scratch_dir.as_deref(), "cairn-restore-")?;

    let wanted = |e: &FileEntry| {
        e.meta.get("globals").is_some_and(|_| with_globals)
            || e.meta
                .get("database")
                .and_then(|d| d.as_str())
                .is_some_and(|d| databases.iter().any(|w| w == d))
    };
    let total: u64 = entries.iter().filter(|e| wanted(e)).map(|e| e.size).sum();
    progress.begin("restore", total);
    let loader = Loader {
        repo,
        options,
        scope: &scope,
        entries: &entries,
        chunks: &chunks,
        connection: &connection,
        scratch: scratch.path(),
        restorer: restorer.as_ref(),
        progress,
    };
    // First what would be replaced, for every database, before anything changes.
    let mut plans = Vec::new();
    for database in &databases {
        plans.push(loader.plan(&mut admin, database)?);
    }
    let mut warnings = Vec::new();
    if let Some(psql) = &psql {
        warnings = loader.globals(&mut admin, psql)?;
    }
    let mut restored = Vec::new();
    for plan in plans {
        restored.push(loader.run(&mut admin, plan)?);
    }
    progress.end();
    Ok(LogicalRestoreSummary {
        backup_id: backup.record.id.clone(),
        target: format!(
            "{}:{}",
            connection.host.as_deref().unwrap_or("(default host)"),
            connection.port.map_or("(default port)".into(), |p| p.to_string())
        ),
        databases: restored,
        globals: with_globals,
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
        tool: restorer.as_ref().map(|t| t.name.clone()),
        tool_version: restorer.as_ref().map(|t| t.version.clone()),
        warnings,
    })
}

/// The backup asked for, which must be a usable logical one; by default the newest.
fn choose_backup(repo: &Repository, options: &LogicalRestoreOptions) -> Result<BackupInfo> {
    let backup = match &options.backup_id {
        Some(id) => catalog::find(repo, &options.instance, Some(id))?,
        None => catalog::list(repo, Some(&options.instance))?
            .into_iter()
            .rev()
            .find(|b| b.record.mode == BackupMode::Logical && b.record.status.is_restorable() && b.has_files)
            .ok_or_else(|| EngineError::NoBackup(options.instance.clone()))?,
    };
    if backup.record.mode != BackupMode::Logical {
        return Err(EngineError::Invalid(format!(
            "backup {} is a physical backup: restore it into a data directory, without -b LOGICAL",
            backup.record.id
        )));
    }
    if !backup.record.status.is_restorable() || !backup.has_files {
        return Err(EngineError::Refused(format!(
            "backup {} has status {:?}{}",
            backup.record.id,
            backup.record.status,
            backup.record.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    Ok(backup)
}

/// The databases of the backup to restore, after checking the options fit the backup.
fn databases(
    backup: &BackupInfo,
    scope: &LogicalScope,
    options: &LogicalRestoreOptions,
) -> Result<Vec<String>> {
    let invalid = |m: String| Err(EngineError::Invalid(m));
    let databases = match &options.database {
        Some(db) if scope.databases.contains(db) => vec![db.clone()],
        Some(db) => {
            return invalid(format!(
                "backup {} has no database '{db}'; it has {}",
                backup.record.id,
                scope.databases.join(", ")
            ))
        }
        None => scope.databases.clone(),
    };
    if options.new_name.is_some() && databases.len() != 1 {
        return invalid(format!(
            "--new-name restores one database, and backup {} has {}: choose one with --database",
            backup.record.id,
            databases.len()
        ));
    }
    if scope.format == DumpFormat::Copy && !options.schemas.is_empty() {
        return invalid(
            "a time-range backup holds rows of tables: choose them with --table, not --schema".into(),
        );
    }
    Ok(databases)
}

/// The chunk lists of a backup's entries, out of memory: a dump of terabytes names millions.
struct Chunks {
    lists: ChunkLists,
    refs: HashMap<String, ListRef>,
}

impl Chunks {
    fn list(&self, entry: &FileEntry) -> cairn_repo::Result<ListRef> {
        self.refs
            .get(&entry.path)
            .copied()
            .ok_or_else(|| RepoError::Invalid(format!("no chunk list for {}", entry.path)))
    }

    fn of(&self, entry: &FileEntry) -> cairn_repo::Result<Vec<ChunkId>> {
        self.lists.get(self.list(entry)?)
    }
}

/// One restore's doing.
struct Loader<'a> {
    repo: &'a Repository,
    options: &'a LogicalRestoreOptions,
    scope: &'a LogicalScope,
    /// The backup's entries, without their chunk lists: those are in `chunks`.
    entries: &'a [FileEntry],
    chunks: &'a Chunks,
    connection: &'a Connection,
    scratch: &'a Path,
    restorer: Option<&'a Tool>,
    progress: &'a dyn Progress,
}

impl Loader<'_> {
    /// What restoring `database` will do, refused if it would replace something without
    /// `clean`. Directory dumps are put back together in scratch space now.
    fn plan(&self, admin: &mut postgres::Client, database: &str) -> Result<Plan> {
        let into = self.options.new_name.clone().unwrap_or_else(|| database.to_string());
        let exists = !admin
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&into])
            .map_err(|error| EngineError::Database { during: "looking for the target database", error })?
            .is_empty();
        let files: Vec<&FileEntry> = self
            .entries
            .iter()
            .filter(|e| e.meta.get("database").and_then(|d| d.as_str()) == Some(database))
            .collect();
        if self.scope.format == DumpFormat::Copy {
            let stored: Vec<Stored> = Stored::of(self.entries, database)
                .into_iter()
                .filter(|s| self.options.tables.is_empty() || self.options.tables.iter().any(|t| names(s, t)))
                .collect();
            if stored.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "the backup has no range of {} in database '{database}'",
                    self.options.tables.join(", ")
                )));
            }
            if !exists {
                return Err(EngineError::Refused(format!(
                    "database '{into}' does not exist: a time range loads into existing tables"
                )));
            }
            let range = self.scope.time_range.as_ref().ok_or_else(|| no_range(database))?;
            range::refusals(self.connection, &into, &stored, range, self.options.clean)?;
            return Ok(Plan { database: database.into(), into, exists, work: Work::Ranges(stored) });
        }
        let whole = self.scope.schemas.is_empty()
            && self.scope.tables.is_empty()
            && self.options.schemas.is_empty()
            && self.options.tables.is_empty();
        if whole && exists && !self.options.clean {
            return Err(EngineError::Refused(format!(
                "database '{into}' exists on the target: give --clean to drop and recreate it, or --new-name to restore beside it"
            )));
        }
        let input = match self.scope.format {
            DumpFormat::Custom => {
                let path = format!("{}/{CUSTOM_FILE}", database_dir(database));
                let entry = files.iter().find(|e| e.path == path).ok_or_else(|| missing(database))?;
                Input::Custom((*entry).clone())
            }
            _ => Input::Directory(self.materialize(database, &files)?),
        };
        if whole {
            return Ok(Plan { database: database.into(), into, exists, work: Work::Whole(input) });
        }
        let listing = self.pg_restore(&input, &["--list", "--verbose"], &Silent)?.stdout;
        let toc = toc::parse(&listing);
        let tables: Vec<TableName> = self.options.tables.iter().map(|t| TableName::parse(t)).collect();
        let mut chosen = toc::choose(&toc, &self.options.schemas, &tables, database)?;
        let present = match exists {
            true => self.present(&into, &toc, &chosen)?,
            false => Present::default(),
        };
        // A table restored on its own needs its schema: created when the target lacks it.
        let lacking: Vec<String> = chosen
            .relations
            .iter()
            .map(|(s, _)| s.clone())
            .filter(|s| !present.schemas.contains(s))
            .collect();
        chosen.add_schemas(&toc, &lacking);
        let clashes: Vec<String> = (chosen.schemas.iter().filter(|s| present.schemas.contains(s)))
            .map(|s| format!("schema {s}"))
            .chain(present.objects.iter().cloned())
            .collect();
        if !clashes.is_empty() && !self.options.clean {
            return Err(EngineError::Refused(format!(
                "{} exist(s) in database '{into}' already: give --clean to replace them",
                clashes.join(", ")
            )));
        }
        let list = self.scratch.join(format!("{}.list", component(database)));
        std::fs::write(&list, chosen.list(&toc))
            .map_err(|e| EngineError::io(format!("writing {}", list.display()), e))?;
        Ok(Plan { database: database.into(), into, exists, work: Work::Part { input, list, chosen } })
    }

    /// The schemas (chosen, or holding a chosen relation) and the objects of `chosen` that
    /// `database` has already: relations and indexes by name in their schema (an index, a
    /// sequence or a table of that name would clash alike), and functions.
    fn present(&self, database: &str, toc: &[toc::Entry], chosen: &Chosen) -> Result<Present> {
        let connection = self.connection.to_database(database);
        let mut client = connect(&connection)?;
        let db =
            |error| EngineError::Database { during: "looking for what the restore would replace", error };
        let mut schemas = Vec::new();
        for schema in chosen.schemas.iter().chain(chosen.relations.iter().map(|(s, _)| s)) {
            let found =
                client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema]).map_err(db)?;
            if !found.is_empty() && !schemas.contains(schema) {
                schemas.push(schema.clone());
            }
        }
        let mut objects = Vec::new();
        for entry in toc.iter().filter(|e| chosen.ids.contains(&e.id)) {
            let (schema, name) = (&entry.namespace, &entry.name);
            let sql = match entry.kind.as_str() {
                "FUNCTION" | "PROCEDURE" | "AGGREGATE" => {
                    // The listing names a function with its argument types: `greet(text)`.
                    "SELECT 1 FROM pg_proc WHERE oid = to_regprocedure(format('%I.%s', $1::text, $2::text))"
                }
                "INDEX" | "CONSTRAINT" | "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "FOREIGN TABLE"
                | "SEQUENCE" => {
                    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2"
                }
                _ => continue,
            };
            // A constraint is listed as `table name`; a key or unique one makes an index `name`.
            let name = match entry.kind.as_str() {
                "CONSTRAINT" => name.split_once(' ').map_or(name.as_str(), |(_, n)| n),
                _ => name.as_str(),
            };
            // A signature the server cannot read is left to the restore, which runs in one
            // transaction and fails whole on a clash.
            let found = client.query(sql, &[schema, &name]).map(|r| !r.is_empty()).unwrap_or(false);
            let label = format!("{} {schema}.{name}", entry.kind.to_lowercase());
            if found && !objects.contains(&label) {
                objects.push(label);
            }
        }
        Ok(Present { schemas, objects })
    }

    /// Drops a database; when the connection is to that database, from `template1` instead.
    fn drop_database(&self, admin: &mut postgres::Client, name: &str) -> Result<()> {
        let db = |error| EngineError::Database { during: "dropping the database", error };
        let current: String = admin.query_one("SELECT current_database()::text", &[]).map_err(db)?.get(0);
        if current == name {
            *admin = connect(&self.connection.to_database("template1"))?;
        }
        admin.batch_execute(&format!("DROP DATABASE {}", quote_ident(name))).map_err(db)
    }

    /// Restores one database as planned.
    fn run(&self, admin: &mut postgres::Client, plan: Plan) -> Result<RestoredDatabase> {
        let mut done = RestoredDatabase {
            database: plan.database.clone(),
            into: plan.into.clone(),
            created: false,
            replaced: false,
            schemas: Vec::new(),
            tables: Vec::new(),
            rows: None,
        };
        let (input, list) = match &plan.work {
            Work::Ranges(stored) => {
                let range = self.scope.time_range.as_ref().ok_or_else(|| no_range(&plan.database))?;
                let rows = range::load(
                    &|entry, out| self.repo.restore_file(&self.chunks.of(entry)?, out),
                    self.connection,
                    &plan.into,
                    stored,
                    range,
                    self.options.clean,
                    self.progress,
                )?;
                done.tables = stored.iter().map(Stored::name).collect();
                done.rows = Some(rows);
                return Ok(done);
            }
            Work::Whole(input) if plan.exists => {
                self.replace(admin, &plan.into, input)?;
                done.created = true;
                done.replaced = true;
                return Ok(done);
            }
            Work::Whole(input) => (input, None),
            Work::Part { input, list, chosen } => {
                done.schemas = chosen.schemas.clone();
                done.tables = chosen.relations.iter().map(|(s, n)| format!("{s}.{n}")).collect();
                (input, Some(list))
            }
        };
        if !plan.exists {
            self.create_database(admin, &plan.into)?;
            done.created = true;
        }
        let mut args = self.restore_args(&plan.into);
        if let Some(list) = list {
            args.push(format!("--use-list={}", list.display()));
            if plan.exists {
                // Into a database that has other things: all or nothing (and no -j with it).
                args.push("--single-transaction".into());
                if self.options.clean {
                    args.extend(["--clean".into(), "--if-exists".into()]);
                }
            }
        }
        if !(plan.exists && list.is_some()) {
            args.extend(self.jobs(input));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = self.pg_restore(input, &args, self.progress) {
            // A database this restore made is not left half-filled.
            if done.created {
                return Err(self.drop_after(admin, &plan.into, e));
            }
            return Err(e);
        }
        Ok(done)
    }

    /// Replaces an existing database: the dump is restored into a new database beside it,
    /// which takes the old one's place only once the restore succeeded. A failure leaves the
    /// old database as it was.
    fn replace(&self, admin: &mut postgres::Client, name: &str, input: &Input) -> Result<()> {
        let temporary = temporary_name(name);
        self.create_database(admin, &temporary)?;
        let mut args = self.restore_args(&temporary);
        args.extend(self.jobs(input));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = self.pg_restore(input, &args, self.progress) {
            return Err(self.drop_after(admin, &temporary, e));
        }
        if let Err(e) = self.drop_database(admin, name) {
            return Err(self.drop_after(admin, &temporary, e));
        }
        let rename = format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&temporary), quote_ident(name));
        admin.batch_execute(&rename).map_err(|source| {
            EngineError::Server(format!(
                "database '{name}' was dropped and its restored copy is database '{temporary}', which could not be renamed: {}",
                source.as_db_error().map_or_else(|| source.to_string(), |d| d.message().to_string())
            ))
        })
    }

    /// From template0: a dump brings everything but what CREATE DATABASE itself makes.
    fn create_database(&self, admin: &mut postgres::Client, name: &str) -> Result<()> {
        admin
            .batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name)))
            .map_err(|error| EngineError::Database { during: "creating the database", error })
    }

    /// Drops the database `name` this restore made after `error`, which is returned; with
    /// what went wrong dropping it, if it did.
    fn drop_after(&self, admin: &mut postgres::Client, name: &str, error: EngineError) -> EngineError {
        match self.drop_database(admin, name) {
            Ok(()) => error,
            Err(e) => {
                EngineError::Server(format!("{error}; and database '{name}' could not be dropped after: {e}"))
            }
        }
    }

    /// pg_restore's arguments for restoring into `database`.
    fn restore_args(&self, database: &str) -> Vec<String> {
        let mut args = vec![format!("--dbname={}", conninfo_dbname(database)), "--exit-on-error".into()];
        if self.options.no_owner {
            args.push("--no-owner".into());
        }
        args
    }

    /// Parallel jobs: a custom dump arrives on standard input, read once in order, so only a
    /// directory dump has them.
    fn jobs(&self, input: &Input) -> Option<String> {
        (matches!(input, Input::Directory(_)) && self.options.jobs > 1)
            .then(|| format!("--jobs={}", self.options.jobs))
    }

    /// Runs the restore tool with `args` on `input`.
    fn pg_restore(&self, input: &Input, args: &[&str], progress: &dyn Progress) -> Result<Said> {
        let tool = self.restorer.ok_or_else(|| EngineError::Invalid("no restore tool".into()))?;
        let mut cmd = tool.command(self.connection, None);
        cmd.args(args).stdout(Stdio::piped());
        match input {
            Input::Directory(dir) => {
                cmd.arg("--format=directory").arg(dir);
                let mut running = tool.spawn(cmd)?;
                running.collect_stdout();
                running.wait()
            }
            Input::Custom(entry) => {
                cmd.arg("--format=custom").stdin(Stdio::piped());
                self.feed(tool, cmd, entry, progress)
            }
        }
    }

    /// Runs `cmd` with `entry`'s content on its standard input.
    fn feed(&self, tool: &Tool, cmd: Command, entry: &FileEntry, progress: &dyn Progress) -> Result<Said> {
        let mut running = tool.spawn(cmd)?;
        running.collect_stdout();
        let fed = match running.child.stdin.take() {
            Some(stdin) => {
                let mut out = Counting { inner: stdin, progress };
                self.chunks.of(entry).and_then(|chunks| self.repo.restore_file(&chunks, &mut out)).map(|_| ())
            }
            None => Ok(()),
        };
        let said = running.wait();
        match fed {
            // The tool stopped reading: what it says about that is the story (a listing
            // needs only the head of the dump, and a failure its own message).
            Err(RepoError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => said,
            Err(e) => Err(e.into()),
            Ok(()) => said,
        }
    }

    /// Writes the files of `database`'s directory dump into scratch space.
    fn materialize(&self, database: &str, files: &[&FileEntry]) -> Result<PathBuf> {
        let dir = self.scratch.join(component(database));
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        let prefix = format!("{}/", database_dir(database));
        let dump_files: Vec<&FileEntry> = files
            .iter()
            .copied()
            .filter(|e| e.path.strip_prefix(&prefix).is_some_and(|n| !n.contains('/')))
            .collect();
        if dump_files.is_empty() {
            return Err(missing(database));
        }
        let jobs = self.options.jobs.max(1);
        let sizes = |e: &&FileEntry| self.chunks.list(e).map_or(0, |l| l.len());
        for batch in batches(&dump_files, sizes) {
            let filled = batch
                .iter()
                .map(|e| Ok(FileEntry { chunks: self.chunks.of(e)?, ..(*e).clone() }))
                .collect::<cairn_repo::Result<Vec<_>>>()?;
            self.repo.restore_files(&filled, jobs, |entry| {
                let name = entry.path.strip_prefix(&prefix).unwrap_or(&entry.path);
                let path = dir.join(name);
                let file = File::create(&path)
                    .map_err(|e| RepoError::io(format!("creating {}", path.display()), e))?;
                Ok(Counting { inner: file, progress: self.progress })
            })?;
        }
        Ok(dir)
    }

    /// Runs the globals (roles, tablespaces) through the SQL client, going on past failing
    /// statements; returns their messages. Without `clean`, the statements about roles and
    /// tablespaces the target has already are left out: a restore never changes an existing
    /// role's password, attributes or memberships unless asked to.
    fn globals(&self, admin: &mut postgres::Client, psql: &Tool) -> Result<Vec<String>> {
        let Some(entry) = self.entries.iter().find(|e| e.path == format!("{ROOT}/{GLOBALS_FILE}")) else {
            return Ok(Vec::new());
        };
        let mut sql = Vec::new();
        self.repo.restore_file(
            &self.chunks.of(entry)?,
            &mut Counting { inner: &mut sql, progress: self.progress },
        )?;
        let mut sql = String::from_utf8_lossy(&sql).into_owned();
        let mut warnings = Vec::new();
        if !self.options.clean {
            let db = |error| EngineError::Database { during: "listing roles and tablespaces", error };
            let names = |admin: &mut postgres::Client, query: &str| -> Result<Vec<String>> {
                Ok(admin.query(query, &[]).map_err(db)?.iter().map(|r| r.get(0)).collect())
            };
            let existing = Existing {
                roles: names(admin, "SELECT rolname::text FROM pg_roles")?,
                tablespaces: names(admin, "SELECT spcname::text FROM pg_tablespace")?,
            };
            let (kept, skipped) = existing.filter(&sql);
            sql = kept;
            warnings.extend(
                skipped
                    .into_iter()
                    .map(|n| format!("{n} exists on the target: left as it is (--clean replaces it)")),
            );
        }
        let path = self.scratch.join(GLOBALS_FILE);
        std::fs::write(&path, sql).map_err(|e| EngineError::io(format!("writing {}", path.display()), e))?;
        let mut cmd = psql.command(self.connection, None);
        let database = self.connection.database.as_deref().unwrap_or("postgres");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", &format!("--dbname={}", conninfo_dbname(database))])
            .arg("--file")
            .arg(&path);
        let said = psql.spawn(cmd)?.wait()?;
        warnings.extend(said.stderr.lines().filter(|l| l.contains("ERROR")).map(str::to_string));
        Ok(warnings)
    }
}

/// The roles and tablespaces a target has.
struct Existing {
    roles: Vec<String>,
    tablespaces: Vec<String>,
}

impl Existing {
    /// `pg_dumpall --globals-only` output without the statements about existing roles and
    /// tablespaces (one statement per line, as it writes them: `CREATE ROLE r;`, `ALTER ROLE r
    /// WITH ...;`, `GRANT g TO r ...;`, `CREATE TABLESPACE t ...;`, ...); and what was left
    /// out, as `role r` and `tablespace t`.
    fn filter(&self, sql: &str) -> (String, Vec<String>) {
        let mut kept = String::with_capacity(sql.len());
        let mut skipped: Vec<String> = Vec::new();
        for line in sql.split_inclusive('\n') {
            match self.about(line.trim_start()) {
                Some(what) => {
                    if !skipped.contains(&what) {
                        skipped.push(what);
                    }
                }
                None => kept.push_str(line),
            }
        }
        (kept, skipped)
    }

    /// The existing role or tablespace `line` changes, if it does.
    fn about(&self, line: &str) -> Option<String> {
        let role = |name: String| self.roles.contains(&name).then(|| format!("role {name}"));
        let tablespace =
            |name: String| self.tablespaces.contains(&name).then(|| format!("tablespace {name}"));
        for prefix in ["CREATE ROLE ", "ALTER ROLE ", "COMMENT ON ROLE "] {
            if let Some(rest) = line.strip_prefix(prefix) {
                return role(ident(rest)?.0);
            }
        }
        for prefix in ["CREATE TABLESPACE ", "ALTER TABLESPACE ", "COMMENT ON TABLESPACE "] {
            if let Some(rest) = line.strip_prefix(prefix) {
                return tablespace(ident(rest)?.0);
            }
        }
        if let Some((_, rest)) = line.split_once(" ON TABLESPACE ") {
            return tablespace(ident(rest)?.0);
        }
        if let Some((_, rest)) = line.split_once(" ON ROLE ") {
            return role(ident(rest)?.0);
        }
        // A membership: `GRANT granted TO member ...` changes the member.
        let (_, rest) = ident(line.strip_prefix("GRANT ")?)?;
        let (member, _) = ident(rest.trim_start().strip_prefix("TO ")?)?;
        role(member)
    }
}

/// The identifier at the start of `text` (`name` or `"quoted ""name"""`) and what follows.
fn ident(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().is_some_and(|(_, c)| *c == '"') {
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            }
            name.push(c);
        }
        return None;
    }
    let end = text.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

/// Whether `--table` text names a stored range (`schema.table`, or `table`).
fn names(stored: &Stored, text: &str) -> bool {
    let t = TableName::parse(text);
    t.name == stored.table && t.schema.as_ref().is_none_or(|s| *s == stored.schema)
}

fn missing(database: &str) -> EngineError {
    EngineError::Repo(RepoError::damaged(
        "backup",
        database_dir(database),
        "the dump of the database is missing",
    ))
}

fn no_range(database: &str) -> EngineError {
    EngineError::Invalid(format!("the backup has ranges of database '{database}' but no time range recorded"))
}

/// The name of the database a replacing restore fills before it takes `name`'s place:
/// `<name>_cairn_restore_<pid>`, `name` shortened to keep within PostgreSQL's 63 bytes.
fn temporary_name(name: &str) -> String {
    let suffix = format!("_cairn_restore_{}", std::process::id());
    let mut keep = 63usize.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &name[..keep])
}

/// A database name as a libpq connection string (`dbname='...'`), so that a name holding `=`
/// is never taken for one.
fn conninfo_dbname(name: &str) -> String {
    format!("dbname='{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_quoted_for_libpq() {
        assert_eq!(conninfo_dbname("plain"), "dbname='plain'");
        assert_eq!(conninfo_dbname("a=b c"), "dbname='a=b c'");
        assert_eq!(conninfo_dbname("o'k\\"), "dbname='o\\'k\\\\'");
    }

    #[test]
    fn globals_leave_existing_roles_and_tablespaces_alone() {
        let sql = "SET standard_conforming_strings = on;\n\
                   CREATE ROLE clerk;\n\
                   ALTER ROLE clerk WITH NOLOGIN;\n\
                   CREATE ROLE postgres;\n\
                   ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$x';\n\
                   CREATE ROLE \"we \"\"ird\";\n\
                   ALTER ROLE \"we \"\"ird\" WITH LOGIN;\n\
                   COMMENT ON ROLE \"we \"\"ird\" IS 'x';\n\
                   GRANT clerk TO \"we \"\"ird\" GRANTED BY postgres;\n\
                   GRANT \"we \"\"ird\" TO clerk GRANTED BY postgres;\n\
                   CREATE TABLESPACE fast OWNER postgres LOCATION '/x';\n\
                   GRANT ALL ON TABLESPACE fast TO clerk;\n";
        let existing =
            Existing { roles: vec!["postgres".into(), "we \"ird".into()], tablespaces: vec!["fast".into()] };
        let (kept, skipped) = existing.filter(sql);
        assert_eq!(
            kept,
            "SET standard_conforming_strings = on;\nCREATE ROLE clerk;\nALTER ROLE clerk WITH NOLOGIN;\n\
             GRANT \"we \"\"ird\" TO clerk GRANTED BY postgres;\n"
        );
        assert_eq!(skipped, ["role postgres", "role we \"ird", "tablespace fast"]);
    }

    #[test]
    fn temporary_names_fit_postgres_limit() {
        let pid = std::process::id();
        assert_eq!(temporary_name("shop"), format!("shop_cairn_restore_{pid}"));
        let long = temporary_name(&"é".repeat(40));
        assert!(long.len() <= 63 && long.ends_with(&format!("_cairn_restore_{pid}")), "{long}");
    }
}

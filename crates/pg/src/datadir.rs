//! The walk of a data directory for a physical backup, honouring the server's own base-backup
//! rules (`sendDir` in `src/backend/backup/basebackup.c`): what is dropped, what is kept as an
//! empty directory, tablespaces followed through `pg_tblspc`, the control file last; plus
//! external directories walked as they are.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::flavor::{DataDirLayout, Flavor};
use crate::relfile::{is_temp_relation_file_name, parse_relation_file_name, Fork, RelationFileName};

/// The prefix external directories are walked under: `external/1/...`, `external/2/...`.
pub const EXTERNAL_PREFIX: &str = "external";

/// Errors of walking a data directory.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("file name {path} is not valid UTF-8; cairn cannot record it")]
    NonUtf8Name { path: String },
}

impl WalkError {
    /// The stable code of this kind of error (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            WalkError::Io { .. } => "io",
            WalkError::NotADirectory { .. } => "not-a-data-directory",
            WalkError::NonUtf8Name { .. } => "non-utf8-file-name",
        }
    }

    fn io(path: &Path, source: io::Error) -> WalkError {
        WalkError::Io { path: path.display().to_string(), source }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One entry of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirEntry {
    /// '/'-separated path relative to the data directory: `base/5/16384`,
    /// `pg_tblspc/16390/PG_15_202209061/5/16391`, `external/1/conf.d/a.conf`.
    pub rel_path: String,
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// File size in bytes; 0 for directories and symbolic links.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// A relation data file (`base/*/NNN`, `global/NNN`, `pg_tblspc/*/*/*/NNN`, any fork and
    /// segment): made of 8 KiB pages, to be chunked page-aligned and checksum-verified.
    pub is_relation_file: bool,
    /// The tablespace the entry belongs to (its `pg_tblspc` OID); `None` in the main data
    /// directory and in external directories.
    pub tablespace: Option<u32>,
    /// For symbolic links: where the link points, as stored in the link.
    pub link_target: Option<String>,
    /// Where to read the entry from on this host (tablespace entries live outside the data
    /// directory).
    pub source: PathBuf,
}

impl DataDirEntry {
    /// The relation file name of a relation file.
    pub fn relation(&self) -> Option<RelationFileName> {
        if !self.is_relation_file {
            return None;
        }
        parse_relation_file_name(self.rel_path.rsplit('/').next().unwrap_or_default())
    }
}

/// Why something was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExclusionReason {
    /// A directory whose contents are rebuilt at startup; the directory itself is kept.
    DirContents,
    /// The WAL directory's contents: WAL comes from the archive.
    WalContents,
    /// A file the server never backs up (`postmaster.pid`, `pg_internal.init`, ...).
    ExcludedFile,
    /// A temporary file or directory (`pgsql_tmp*`).
    TempFile,
    /// A fork of an unlogged relation other than its init fork.
    UnloggedRelation,
    /// A temporary relation (`t3_16384`).
    TempRelation,
    /// A socket, FIFO or device.
    SpecialFile,
    /// A directory in a tablespace for another server version (`PG_14_...` next to
    /// `PG_15_...` after pg_upgrade).
    OtherTablespaceVersion,
    /// A tablespace located inside the data directory, walked through `pg_tblspc` instead.
    TablespaceInsideDataDir,
}

/// One thing the walk left out, for reporting and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub rel_path: String,
    pub reason: ExclusionReason,
}

/// How to walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Whose rules apply (directory names and exclusion lists).
    pub flavor: Flavor,
    /// PostgreSQL 13 and 14: the `stats_temp_directory` setting (relative to the data
    /// directory, or absolute); its contents are dropped like `pg_stat_tmp`'s.
    pub stats_temp_directory: Option<String>,
    /// Walk only this version directory inside each tablespace (`PG_15_202209061`, see
    /// [`crate::flavor::tablespace_version_dir`]), as the server does; `None` walks all.
    pub tablespace_version_dir: Option<String>,
    /// Directories outside the data directory to back up too, walked without any exclusion
    /// under `external/<n>/` (numbered from 1 in this order).
    pub external_dirs: Vec<PathBuf>,
}

impl WalkOptions {
    pub fn new(flavor: Flavor) -> WalkOptions {
        WalkOptions {
            flavor,
            stats_temp_directory: None,
            tablespace_version_dir: None,
            external_dirs: Vec::new(),
        }
    }
}

/// The result of a walk.
#[derive(Debug, Clone, Default)]
pub struct DataDirWalk {
    /// Directories before their contents, names sorted; the control file last.
    pub entries: Vec<DataDirEntry>,
    pub excluded: Vec<Excluded>,
}

/// Which part of the backup a directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    DataDir,
    Tablespace(Option<u32>),
    External,
}

struct Walker<'a> {
    layout: &'static DataDirLayout,
    options: &'a WalkOptions,
    /// `stats_temp_directory` relative to the data directory.
    stats_temp_rel: Option<String>,
    /// Canonical paths of tablespace directories, to skip them where they sit inside the
    /// data directory.
    tablespace_targets: HashSet<PathBuf>,
    out: DataDirWalk,
    control_file: Option<DataDirEntry>,
}

fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

fn is_oid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok()
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Lists a directory, names sorted; `None` if it vanished meanwhile (a dropped database).
fn list_dir(abs: &Path) -> Result<Option<Vec<String>>, WalkError> {
    let reader = match fs::read_dir(abs) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalkError::io(abs, e)),
    };
    let mut names = Vec::new();
    for entry in reader {
        let entry = entry.map_err(|e| WalkError::io(abs, e))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| WalkError::NonUtf8Name { path: entry.path().display().to_string() })?;
        names.push(name);
    }
    names.sort();
    Ok(Some(names))
}

/// `lstat`, with `None` for a file that vanished between listing and stat.
fn lstat(abs: &Path) -> Result<Option<Metadata>, WalkError> {
    match fs::symlink_metadata(abs) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalkError::io(abs, e)),
    }
}

impl Walker<'_> {
    fn exclude(&mut self, rel_path: String, reason: ExclusionReason) {
        self.out.excluded.push(Excluded { rel_path, reason });
    }

    fn entry(
        &self,
        rel_path: String,
        kind: EntryKind,
        meta: &Metadata,
        scope: Scope,
        source: PathBuf,
    ) -> DataDirEntry {
        DataDirEntry {
            rel_path,
            kind,
            mode: meta.mode() & 0o7777,
            size: if kind == EntryKind::File { meta.len() } else { 0 },
            mtime_ns: mtime_ns(meta),
            is_relation_file: false,
            tablespace: match scope {
                Scope::Tablespace(oid) => oid,
                _ => None,
            },
            link_target: None,
            source,
        }
    }

    /// A directory kept empty (or a symbolic link to one written as a directory, as the
    /// server's `convert_link_to_directory` does), with the target's permissions.
    fn kept_dir(&self, rel_path: String, abs: &Path, lmeta: &Metadata, scope: Scope) -> DataDirEntry {
        let meta = fs::metadata(abs).ok().filter(Metadata::is_dir);
        let mut e =
            self.entry(rel_path, EntryKind::Dir, meta.as_ref().unwrap_or(lmeta), scope, abs.to_path_buf());
        if meta.is_none() {
            e.mode = 0o700;
        }
        e
    }

    /// Whether `rel` (segments) is a directory holding a database's relations: `base/<oid>`,
    /// or `<tablespace dir>/<oid>/<version dir>/<oid>`.
    fn is_db_dir(&self, segments: &[&str], scope: Scope) -> bool {
        match (scope, segments) {
            (Scope::DataDir, ["base", db]) => is_oid(db),
            (Scope::Tablespace(_), [ts, _, _, db]) => *ts == self.layout.tablespace_dir && is_oid(db),
            _ => false,
        }
    }

    /// Whether files directly in `rel` are relation files when their names say so.
    fn holds_relations(&self, segments: &[&str], scope: Scope) -> bool {
        self.is_db_dir(segments, scope) || (scope == Scope::DataDir && segments == ["global"])
    }

    fn walk_pg_dir(&mut self, abs: &Path, rel: &str, scope: Scope) -> Result<(), WalkError> {
        let Some(names) = list_dir(abs)? else { return Ok(()) };
        let segments: Vec<&str> = if rel.is_empty() { Vec::new() } else { rel.split('/').collect() };
        let db_dir = self.is_db_dir(&segments, scope);
        let holds_relations = self.holds_relations(&segments, scope);
        let in_tablespace_links = scope == Scope::DataDir && rel == self.layout.tablespace_dir;
        let names_set: BTreeSet<&str> = names.iter().map(String::as_str).collect();

        for name in &names {
            let child_rel = join_rel(rel, name);
            let child_abs = abs.join(name);

            if name.starts_with(self.layout.temp_prefix) {
                self.exclude(child_rel, ExclusionReason::TempFile);
                continue;
            }
            if self.layout.exclude_files.iter().any(|f| f.matches(name)) {
                self.exclude(child_rel, ExclusionReason::ExcludedFile);
                continue;
            }
            if db_dir {
                if let Some(rf) = parse_relation_file_name(name) {
                    // An unlogged relation: only its init fork is backed up; the rest is
                    // reset from it at startup.
                    if rf.fork != Fork::Init && names_set.contains(format!("{}_init", rf.relnumber).as_str())
                    {
                        self.exclude(child_rel, ExclusionReason::UnloggedRelation);
                        continue;
                    }
                } else if is_temp_relation_file_name(name) {
                    self.exclude(child_rel, ExclusionReason::TempRelation);
                    continue;
                }
            }

            let Some(meta) = lstat(&child_abs)? else { continue };
            let ftype = meta.file_type();

            if scope == Scope::DataDir && child_rel == self.layout.control_file && ftype.is_file() {
                self.control_file = Some(self.entry(child_rel, EntryKind::File, &meta, scope, child_abs));
                continue;
            }

            let contents_excluded = self.layout.exclude_dir_contents.contains(&name.as_str())
                || self.stats_temp_rel.as_deref() == Some(child_rel.as_str());
            if contents_excluded && (ftype.is_dir() || ftype.is_symlink()) {
                let e = self.kept_dir(child_rel.clone(), &child_abs, &meta, scope);
                self.out.entries.push(e);
                self.exclude(child_rel, ExclusionReason::DirContents);
                continue;
            }

            if scope == Scope::DataDir
                && child_rel == self.layout.wal_dir
                && (ftype.is_dir() || ftype.is_symlink())
            {
                let wal = self.kept_dir(child_rel.clone(), &child_abs, &meta, scope);
                // The server writes these subdirectories with pg_wal's own stat.
                let subdirs: Vec<DataDirEntry> = self
                    .layout
                    .wal_keep_subdirs
                    .iter()
                    .map(|sub| DataDirEntry {
                        rel_path: join_rel(&child_rel, sub),
                        source: child_abs.join(sub),
                        ..wal.clone()
                    })
                    .collect();
                self.out.entries.push(wal);
                self.out.entries.extend(subdirs);
                self.exclude(child_rel, ExclusionReason::WalContents);
                continue;
            }

            if ftype.is_symlink() {
                let target = fs::read_link(&child_abs).map_err(|e| WalkError::io(&child_abs, e))?;
                let target_str = target
                    .to_str()
                    .ok_or_else(|| WalkError::NonUtf8Name { path: target.display().to_string() })?
                    .to_string();
                let tablespace = if in_tablespace_links && is_oid(name) { name.parse().ok() } else { None };
                let link_scope = if in_tablespace_links { Scope::Tablespace(tablespace) } else { scope };
                let mut e =
                    self.entry(child_rel.clone(), EntryKind::Symlink, &meta, link_scope, child_abs.clone());
                e.link_target = Some(target_str);
                self.out.entries.push(e);
                if in_tablespace_links {
                    // A tablespace: walk where the link points, under the link's own path.
                    let target_abs = abs.join(&target);
                    if fs::metadata(&target_abs).map(|m| m.is_dir()).unwrap_or(false) {
                        self.walk_pg_dir(&target_abs, &child_rel, Scope::Tablespace(tablespace))?;
                    }
                }
                continue;
            }

            if ftype.is_dir() {
                // An in-place tablespace (a directory in pg_tblspc) belongs to its tablespace.
                let dir_scope = if in_tablespace_links {
                    Scope::Tablespace(if is_oid(name) { name.parse().ok() } else { None })
                } else {
                    scope
                };
                if let (Scope::Tablespace(_), Some(only)) = (dir_scope, &self.options.tablespace_version_dir)
                {
                    if segments.len() == 2 && segments[0] == self.layout.tablespace_dir && name != only {
                        self.exclude(child_rel, ExclusionReason::OtherTablespaceVersion);
                        continue;
                    }
                }
                if scope == Scope::DataDir && !self.tablespace_targets.is_empty() {
                    if let Ok(canonical) = fs::canonicalize(&child_abs) {
                        if self.tablespace_targets.contains(&canonical) {
                            self.exclude(child_rel, ExclusionReason::TablespaceInsideDataDir);
                            continue;
                        }
                    }
                }
                let e = self.entry(child_rel.clone(), EntryKind::Dir, &meta, dir_scope, child_abs.clone());
                self.out.entries.push(e);
                self.walk_pg_dir(&child_abs, &child_rel, dir_scope)?;
                continue;
            }

            if ftype.is_file() {
                let mut e = self.entry(child_rel, EntryKind::File, &meta, scope, child_abs);
                e.is_relation_file = holds_relations && parse_relation_file_name(name).is_some();
                self.out.entries.push(e);
                continue;
            }

            self.exclude(child_rel, ExclusionReason::SpecialFile);
        }
        Ok(())
    }

    /// An external directory: everything, symbolic links recorded and not followed.
    fn walk_external(&mut self, abs: &Path, rel: &str) -> Result<(), WalkError> {
        let Some(names) = list_dir(abs)? else { return Ok(()) };
        for name in &names {
            let child_rel = join_rel(rel, name);
            let child_abs = abs.join(name);
            let Some(meta) = lstat(&child_abs)? else { continue };
            let ftype = meta.file_type();
            if ftype.is_symlink() {
                let target = fs::read_link(&child_abs).map_err(|e| WalkError::io(&child_abs, e))?;
                let mut e = self.entry(child_rel, EntryKind::Symlink, &meta, Scope::External, child_abs);
                e.link_target = Some(
                    target
                        .to_str()
                        .ok_or_else(|| WalkError::NonUtf8Name { path: target.display().to_string() })?
                        .to_string(),
                );
                self.out.entries.push(e);
            } else if ftype.is_dir() {
                let e =
                    self.entry(child_rel.clone(), EntryKind::Dir, &meta, Scope::External, child_abs.clone());
                self.out.entries.push(e);
                self.walk_external(&child_abs, &child_rel)?;
            } else if ftype.is_file() {
                let e = self.entry(child_rel, EntryKind::File, &meta, Scope::External, child_abs);
                self.out.entries.push(e);
            } else {
                self.exclude(child_rel, ExclusionReason::SpecialFile);
            }
        }
        Ok(())
    }
}

/// Canonical paths of the directories `pg_tblspc/*` points to.
fn tablespace_targets(data_dir: &Path, layout: &DataDirLayout) -> HashSet<PathBuf> {
    let mut targets = HashSet::new();
    if let Ok(reader) = fs::read_dir(data_dir.join(layout.tablespace_dir)) {
        for entry in reader.flatten() {
            if entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                if let Ok(canonical) = fs::canonicalize(entry.path()) {
                    targets.insert(canonical);
                }
            }
        }
    }
    targets
}

/// Walks `data_dir` (and the external directories) for a physical backup.
///
/// Files that vanish during the walk (a running cluster drops and recycles files) are skipped
/// without error, as the server's base backup does; any other I/O error stops the walk.
pub fn walk_data_dir(data_dir: &Path, options: &WalkOptions) -> Result<DataDirWalk, WalkError> {
    let meta = fs::metadata(data_dir).map_err(|e| WalkError::io(data_dir, e))?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory { path: data_dir.display().to_string() });
    }
    let layout = &options.flavor.info().layout;
    let stats_temp_rel = options.stats_temp_directory.as_deref().and_then(|s| {
        let p = Path::new(s);
        let rel = if p.is_absolute() { p.strip_prefix(data_dir).ok()? } else { p };
        let rel = rel.to_str()?.trim_start_matches("./").trim_end_matches('/');
        (!rel.is_empty()).then(|| rel.to_string())
    });
    let mut walker = Walker {
        layout,
        options,
        stats_temp_rel,
        tablespace_targets: tablespace_targets(data_dir, layout),
        out: DataDirWalk::default(),
        control_file: None,
    };
    walker.walk_pg_dir(data_dir, "", Scope::DataDir)?;

    for (i, dir) in options.external_dirs.iter().enumerate() {
        let meta = fs::metadata(dir).map_err(|e| WalkError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(WalkError::NotADirectory { path: dir.display().to_string() });
        }
        let rel = format!("{EXTERNAL_PREFIX}/{}", i + 1);
        let e = walker.entry(rel.clone(), EntryKind::Dir, &meta, Scope::External, dir.clone());
        walker.out.entries.push(e);
        walker.walk_external(dir, &rel)?;
    }

    // The server sends pg_control after everything else: copied last, it is at least as new
    // as every data file, so recovery replays from a checkpoint no later than the copy.
    if let Some(control) = walker.control_file.take() {
        walker.out.entries.push(control);
    }
    Ok(walker.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn pg15() -> WalkOptions {
        WalkOptions::new(Flavor::postgres(15).unwrap())
    }

    fn touch(root: &Path, rel: &str, bytes: usize) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![0u8; bytes]).unwrap();
    }

    fn mkdir(root: &Path, rel: &str) {
        fs::create_dir_all(root.join(rel)).unwrap();
    }

    /// A hand-made data directory with one of everything the rules care about.
    fn fake_cluster(root: &Path) {
        for d in ["base/1", "base/5", "global", "pg_wal/archive_status", "pg_tblspc", "pg_xact", "pg_logical"]
        {
            mkdir(root, d);
        }
        for f in ["PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "current_logfiles"]
        {
            touch(root, f, 3);
        }
        touch(root, "global/pg_control", 8192);
        touch(root, "global/1262", 8192);
        touch(root, "global/pg_filenode.map", 512);
        touch(root, "global/pg_internal.init", 100);
        touch(root, "base/5/16384", 16384);
        touch(root, "base/5/16384.1", 8192);
        touch(root, "base/5/16384_fsm", 8192);
        touch(root, "base/5/16384_vm", 8192);
        // An unlogged relation: main, fsm and init forks.
        touch(root, "base/5/16390", 8192);
        touch(root, "base/5/16390_fsm", 8192);
        touch(root, "base/5/16390_init", 0);
        touch(root, "base/5/t3_16400", 8192);
        touch(root, "base/5/pg_internal.init", 10);
        touch(root, "base/5/pg_internal.init.4711", 10);
        touch(root, "base/5/PG_VERSION", 3);
        touch(root, "base/pgsql_tmp/pgsql_tmp1234.0", 10);
        touch(root, "pg_wal/000000010000000000000001", 1024);
        touch(root, "pg_wal/archive_status/000000010000000000000001.done", 0);
        for d in [
            "pg_stat_tmp",
            "pg_replslot/slot1",
            "pg_dynshmem",
            "pg_notify",
            "pg_serial",
            "pg_snapshots",
            "pg_subtrans",
        ] {
            mkdir(root, d);
        }
        touch(root, "pg_stat_tmp/global.stat", 10);
        touch(root, "pg_replslot/slot1/state", 10);
        touch(root, "pg_notify/0000", 10);
        touch(root, "pg_subtrans/0000", 10);
        touch(root, "pg_xact/0000", 8192);
        for f in [
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "tablespace_map",
            "backup_manifest",
            "postgresql.auto.conf.tmp",
            "current_logfiles.tmp",
        ] {
            touch(root, f, 1);
        }
    }

    fn paths(walk: &DataDirWalk) -> Vec<&str> {
        walk.entries.iter().map(|e| e.rel_path.as_str()).collect()
    }

    fn find<'a>(walk: &'a DataDirWalk, rel: &str) -> &'a DataDirEntry {
        walk.entries.iter().find(|e| e.rel_path == rel).unwrap_or_else(|| panic!("{rel} not in walk"))
    }

    fn reason(walk: &DataDirWalk, rel: &str) -> Option<ExclusionReason> {
        walk.excluded.iter().find(|x| x.rel_path == rel).map(|x| x.reason)
    }

    #[test]
    fn walk_honours_the_base_backup_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_cluster(root);
        let walk = walk_data_dir(root, &pg15()).unwrap();
        let got = paths(&walk);

        for kept in [
            "PG_VERSION",
            "postgresql.conf",
            "postgresql.auto.conf",
            "current_logfiles",
            "global/1262",
            "global/pg_filenode.map",
            "base/5/16384",
            "base/5/16384.1",
            "base/5/16384_fsm",
            "base/5/16384_vm",
            "base/5/16390_init",
            "base/5/PG_VERSION",
            "pg_xact/0000",
            "pg_wal",
            "pg_wal/archive_status",
            "pg_stat_tmp",
            "pg_replslot",
            "pg_notify",
            "pg_subtrans",
            "pg_tblspc",
        ] {
            assert!(got.contains(&kept), "{kept} missing from {got:?}");
        }
        let expect_excluded = [
            ("postmaster.pid", ExclusionReason::ExcludedFile),
            ("postmaster.opts", ExclusionReason::ExcludedFile),
            ("backup_label", ExclusionReason::ExcludedFile),
            ("tablespace_map", ExclusionReason::ExcludedFile),
            ("backup_manifest", ExclusionReason::ExcludedFile),
            ("postgresql.auto.conf.tmp", ExclusionReason::ExcludedFile),
            ("current_logfiles.tmp", ExclusionReason::ExcludedFile),
            ("global/pg_internal.init", ExclusionReason::ExcludedFile),
            ("base/5/pg_internal.init", ExclusionReason::ExcludedFile),
            ("base/5/pg_internal.init.4711", ExclusionReason::ExcludedFile),
            ("base/5/16390", ExclusionReason::UnloggedRelation),
            ("base/5/16390_fsm", ExclusionReason::UnloggedRelation),
            ("base/5/t3_16400", ExclusionReason::TempRelation),
            ("base/pgsql_tmp", ExclusionReason::TempFile),
            ("pg_wal", ExclusionReason::WalContents),
            ("pg_stat_tmp", ExclusionReason::DirContents),
            ("pg_replslot", ExclusionReason::DirContents),
            ("pg_notify", ExclusionReason::DirContents),
        ];
        for (rel, why) in expect_excluded {
            assert_eq!(reason(&walk, rel), Some(why), "{rel}");
        }
        for gone in [
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/000000010000000000000001.done",
            "pg_stat_tmp/global.stat",
            "pg_replslot/slot1",
            "pg_notify/0000",
            "pg_subtrans/0000",
            "base/pgsql_tmp/pgsql_tmp1234.0",
        ] {
            assert!(!got.contains(&gone), "{gone} should not be walked");
        }
        // pg_control comes last.
        assert_eq!(got.last(), Some(&"global/pg_control"));
        assert_eq!(got.iter().filter(|p| **p == "global/pg_control").count(), 1);
        // Directories come before their contents.
        let pos = |p: &str| got.iter().position(|x| *x == p).unwrap();
        assert!(pos("base") < pos("base/5") && pos("base/5") < pos("base/5/16384"));
    }

    #[test]
    fn relation_files_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        let walk = walk_data_dir(dir.path(), &pg15()).unwrap();
        for rel in [
            "global/1262",
            "base/5/16384",
            "base/5/16384.1",
            "base/5/16384_fsm",
            "base/5/16384_vm",
            "base/5/16390_init",
        ] {
            assert!(find(&walk, rel).is_relation_file, "{rel}");
        }
        for rel in
            ["global/pg_control", "global/pg_filenode.map", "base/5/PG_VERSION", "pg_xact/0000", "PG_VERSION"]
        {
            assert!(!find(&walk, rel).is_relation_file, "{rel}");
        }
        let seg = find(&walk, "base/5/16384.1").relation().unwrap();
        assert_eq!((seg.relnumber, seg.fork, seg.segment), (16384, Fork::Main, 1));
        assert_eq!(find(&walk, "base/5/16384").size, 16384);
    }

    #[test]
    fn entries_carry_mode_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        fs::set_permissions(dir.path().join("base/5/16384"), fs::Permissions::from_mode(0o640)).unwrap();
        let walk = walk_data_dir(dir.path(), &pg15()).unwrap();
        let e = find(&walk, "base/5/16384");
        assert_eq!(e.mode, 0o640);
        let meta = fs::metadata(dir.path().join("base/5/16384")).unwrap();
        assert_eq!(e.mtime_ns, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(find(&walk, "base").kind, EntryKind::Dir);
        assert_eq!(find(&walk, "base").size, 0);
    }

    #[test]
    fn tablespaces_are_followed_under_their_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fake_cluster(&root);
        let ts = dir.path().join("ts");
        touch(&ts, "PG_15_202209061/5/16500", 8192);
        touch(&ts, "PG_15_202209061/5/16501_init", 0);
        touch(&ts, "PG_15_202209061/5/16501", 8192);
        touch(&ts, "PG_14_202107181/5/16000", 8192);
        symlink(&ts, root.join("pg_tblspc/16499")).unwrap();

        let walk = walk_data_dir(&root, &pg15()).unwrap();
        let link = find(&walk, "pg_tblspc/16499");
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(link.link_target.as_deref(), ts.to_str());
        assert_eq!(link.tablespace, Some(16499));
        let rel = find(&walk, "pg_tblspc/16499/PG_15_202209061/5/16500");
        assert!(rel.is_relation_file);
        assert_eq!(rel.tablespace, Some(16499));
        assert_eq!(rel.source, ts.join("PG_15_202209061/5/16500"));
        assert_eq!(
            reason(&walk, "pg_tblspc/16499/PG_15_202209061/5/16501"),
            Some(ExclusionReason::UnloggedRelation)
        );
        assert!(paths(&walk).contains(&"pg_tblspc/16499/PG_14_202107181/5/16000"));
        assert_eq!(find(&walk, "base/5/16384").tablespace, None);

        let mut only = pg15();
        only.tablespace_version_dir = Some("PG_15_202209061".into());
        let walk = walk_data_dir(&root, &only).unwrap();
        assert!(!paths(&walk).contains(&"pg_tblspc/16499/PG_14_202107181/5/16000"));
        assert_eq!(
            reason(&walk, "pg_tblspc/16499/PG_14_202107181"),
            Some(ExclusionReason::OtherTablespaceVersion)
        );
    }

    #[test]
    fn a_tablespace_inside_the_data_directory_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_cluster(root);
        touch(root, "inside_ts/PG_15_202209061/5/16600", 8192);
        symlink(root.join("inside_ts"), root.join("pg_tblspc/16599")).unwrap();
        let walk = walk_data_dir(root, &pg15()).unwrap();
        assert!(paths(&walk).contains(&"pg_tblspc/16599/PG_15_202209061/5/16600"));
        assert!(!paths(&walk).iter().any(|p| p.starts_with("inside_ts")));
        assert_eq!(reason(&walk, "inside_ts"), Some(ExclusionReason::TablespaceInsideDataDir));
    }

    #[test]
    fn in_place_tablespaces_are_walked_as_tablespaces() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        touch(dir.path(), "pg_tblspc/16700/PG_15_202209061/5/16701", 8192);
        let walk = walk_data_dir(dir.path(), &pg15()).unwrap();
        let e = find(&walk, "pg_tblspc/16700/PG_15_202209061/5/16701");
        assert!(e.is_relation_file);
        assert_eq!(e.tablespace, Some(16700));
        assert_eq!(find(&walk, "pg_tblspc/16700").kind, EntryKind::Dir);
    }

    #[test]
    fn symlinked_wal_and_excluded_dirs_become_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fake_cluster(&root);
        let wal = dir.path().join("wal");
        fs::rename(root.join("pg_wal"), &wal).unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o750)).unwrap();
        symlink(&wal, root.join("pg_wal")).unwrap();
        let stat = dir.path().join("stat");
        fs::remove_dir_all(root.join("pg_stat_tmp")).unwrap();
        mkdir(dir.path(), "stat");
        touch(dir.path(), "stat/x.stat", 1);
        symlink(&stat, root.join("pg_stat_tmp")).unwrap();

        let walk = walk_data_dir(&root, &pg15()).unwrap();
        let w = find(&walk, "pg_wal");
        assert_eq!((w.kind, w.mode, w.link_target.clone()), (EntryKind::Dir, 0o750, None));
        assert_eq!(find(&walk, "pg_wal/archive_status").mode, 0o750);
        assert_eq!(find(&walk, "pg_stat_tmp").kind, EntryKind::Dir);
        assert!(!paths(&walk).iter().any(|p| p.starts_with("pg_wal/0") || p.starts_with("pg_stat_tmp/")));
    }

    #[test]
    fn wal_summaries_are_kept_from_postgres_17() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        let walk = walk_data_dir(dir.path(), &WalkOptions::new(Flavor::postgres(17).unwrap())).unwrap();
        assert!(paths(&walk).contains(&"pg_wal/summaries"));
        let walk = walk_data_dir(dir.path(), &pg15()).unwrap();
        assert!(!paths(&walk).contains(&"pg_wal/summaries"));
    }

    #[test]
    fn stats_temp_directory_contents_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        touch(dir.path(), "mystats/db_1.stat", 1);
        let mut opts = WalkOptions::new(Flavor::postgres(13).unwrap());
        opts.stats_temp_directory = Some("mystats".into());
        let walk = walk_data_dir(dir.path(), &opts).unwrap();
        assert!(paths(&walk).contains(&"mystats"));
        assert!(!paths(&walk).contains(&"mystats/db_1.stat"));
        opts.stats_temp_directory = Some(dir.path().join("mystats").display().to_string());
        let walk = walk_data_dir(dir.path(), &opts).unwrap();
        assert!(!paths(&walk).contains(&"mystats/db_1.stat"));
    }

    #[test]
    fn other_symlinks_are_recorded_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fake_cluster(&root);
        touch(dir.path(), "elsewhere/secret", 1);
        symlink(dir.path().join("elsewhere"), root.join("linked_dir")).unwrap();
        symlink("postgresql.conf", root.join("conf_link")).unwrap();
        let walk = walk_data_dir(&root, &pg15()).unwrap();
        let l = find(&walk, "linked_dir");
        assert_eq!(l.kind, EntryKind::Symlink);
        assert_eq!(find(&walk, "conf_link").link_target.as_deref(), Some("postgresql.conf"));
        assert!(!paths(&walk).iter().any(|p| p.starts_with("linked_dir/")));
    }

    #[test]
    fn external_directories_are_walked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fake_cluster(&root);
        let ext = dir.path().join("ext");
        touch(&ext, "conf.d/a.conf", 5);
        touch(&ext, "postmaster.pid", 1); // no exclusions outside the data directory
        touch(&ext, "pgsql_tmp1", 1);
        let ext2 = dir.path().join("ext2");
        touch(&ext2, "b", 7);
        let mut opts = pg15();
        opts.external_dirs = vec![ext.clone(), ext2];
        let walk = walk_data_dir(&root, &opts).unwrap();
        let got = paths(&walk);
        for p in [
            "external/1",
            "external/1/conf.d",
            "external/1/conf.d/a.conf",
            "external/1/postmaster.pid",
            "external/1/pgsql_tmp1",
            "external/2/b",
        ] {
            assert!(got.contains(&p), "{p}");
        }
        assert_eq!(find(&walk, "external/2/b").size, 7);
        assert!(!find(&walk, "external/1/conf.d/a.conf").is_relation_file);
        assert_eq!(find(&walk, "external/1").source, ext);
        assert_eq!(got.last(), Some(&"global/pg_control"));
    }

    #[test]
    fn special_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fake_cluster(dir.path());
        let sock = dir.path().join(".s.PGSQL.5432");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let walk = walk_data_dir(dir.path(), &pg15()).unwrap();
        assert_eq!(reason(&walk, ".s.PGSQL.5432"), Some(ExclusionReason::SpecialFile));
    }

    #[test]
    fn kingbase_names_are_used_for_kingbase() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["base/5", "global", "sys_wal/archive_status", "sys_notify", "sys_tblspc"] {
            mkdir(root, d);
        }
        touch(root, "global/sys_control", 8192);
        touch(root, "global/sys_internal.init", 1);
        touch(root, "kingbase.pid", 1);
        touch(root, "sys_wal/000000010000000000000001", 1);
        touch(root, "sys_notify/0000", 1);
        touch(root, "base/5/16384", 8192);
        let walk = walk_data_dir(root, &WalkOptions::new(Flavor::new(crate::Engine::KingbaseEs, 8).unwrap()))
            .unwrap();
        let got = paths(&walk);
        assert_eq!(got.last(), Some(&"global/sys_control"));
        assert!(got.contains(&"sys_wal") && got.contains(&"sys_wal/archive_status"));
        for gone in [
            "kingbase.pid",
            "global/sys_internal.init",
            "sys_wal/000000010000000000000001",
            "sys_notify/0000",
        ] {
            assert!(!got.contains(&gone), "{gone}");
        }
        assert!(find(&walk, "base/5/16384").is_relation_file);
    }

    #[test]
    fn errors_name_the_path() {
        let err = walk_data_dir(Path::new("/nonexistent/cairn-data"), &pg15()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cairn-data"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(walk_data_dir(file.path(), &pg15()), Err(WalkError::NotADirectory { .. })));
    }
}

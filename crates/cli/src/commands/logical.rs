//! `cairn backup -b LOGICAL` and `cairn restore -b LOGICAL`, and the scope lines of `show`.

use cairn_engine::catalog::BackupInfo;
use cairn_engine::logical::{LogicalBackupOptions, LogicalRestoreOptions, LogicalScope, TimeRange};
use cairn_engine::Connection;

use crate::cli::{BackupArgs, Format, RestoreArgs};
use crate::exit::usage;
use crate::output;

pub fn backup(format: Format, args: &BackupArgs) -> anyhow::Result<()> {
    if args.smooth_checkpoint || args.skip_block_validation || args.delete_wal {
        return Err(usage("-C, --skip-block-validation and --delete-wal are for physical backups"));
    }
    let l = &args.logical;
    let time_range = match (&l.time_column, &l.from, &l.to) {
        (Some(column), Some(from), Some(to)) => {
            Some(TimeRange { column: column.clone(), from: from.clone(), to: to.clone() })
        }
        _ => None,
    };
    let repo = super::open(&args.repo)?;
    let options = LogicalBackupOptions {
        instance: args.instance.clone(),
        connection: super::instance::connection(&args.connection),
        databases: l.databases.clone(),
        all_databases: l.all_databases,
        globals: l.globals,
        schemas: l.schemas.clone(),
        tables: l.tables.clone(),
        time_range,
        jobs: args.threads as usize,
        no_scratch: l.no_scratch,
        scratch_dir: l.scratch_dir.clone(),
        tool_dir: l.dump_bin_dir.clone(),
        compression: args.compression.parse()?,
        note: args.note.clone(),
        no_validate: args.no_validate,
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::logical::backup(&repo, &options, progress.as_ref())?;
    output::print(format, &s, || {
        let r = &s.record;
        format!(
            "LOGICAL backup {} of instance '{}' completed: status {:?}\n  {}\n  {} file(s), {} dumped, {} added to the repository ({:.0}% of chunks reused){}\n  {:.1} s",
            r.id,
            r.instance,
            r.status,
            r.logical.as_ref().map(describe).unwrap_or_default(),
            s.files,
            output::bytes(r.data_bytes),
            output::bytes(r.stored_bytes),
            if s.chunks == 0 { 0.0 } else { s.reused_chunks as f64 * 100.0 / s.chunks as f64 },
            s.rows.map(|n| format!(", {n} row(s)")).unwrap_or_default(),
            s.seconds,
        )
    });
    Ok(())
}

pub fn restore(format: Format, args: &RestoreArgs) -> anyhow::Result<()> {
    let physical_only = args.pgdata.is_some()
        || args.force
        || args.incremental_mode != "none"
        || args.archive_mode != "preserve"
        || !args.tablespace_mapping.is_empty()
        || !args.external_mapping.is_empty()
        || args.skip_external_dirs
        || args.recovery.target.recovery_target_time.is_some()
        || args.recovery.target.recovery_target_xid.is_some()
        || args.recovery.target.recovery_target_lsn.is_some()
        || args.recovery.target.recovery_target_name.is_some()
        || args.recovery.target.recovery_target.is_some()
        || args.recovery.restore_as_replica;
    if physical_only {
        return Err(usage(
            "-D, --force, -I, -T, --external-mapping, --archive-mode and recovery targets are for physical restores, not -b LOGICAL",
        ));
    }
    let l = &args.logical;
    let repo = super::open(&args.repo)?;
    let options = LogicalRestoreOptions {
        instance: args.instance.clone(),
        backup_id: args.backup_id.clone(),
        database: l.database.clone(),
        new_name: l.new_name.clone(),
        schemas: l.schemas.clone(),
        tables: l.tables.clone(),
        target: Connection {
            host: l.target_host.clone(),
            port: l.target_port,
            user: l.target_user.clone(),
            database: None,
        },
        jobs: args.threads as usize,
        clean: l.clean,
        no_owner: l.no_owner,
        scratch_dir: l.scratch_dir.clone(),
        tool_dir: l.dump_bin_dir.clone(),
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::logical::restore(&repo, &options, progress.as_ref())?;
    output::print(format, &s, || {
        let mut out = format!("restored LOGICAL backup {} into {}", s.backup_id, s.target);
        if s.globals {
            out += &format!("\n  globals (roles, tablespaces): {} statement(s) failed", s.warnings.len());
        }
        for d in &s.databases {
            let what = match (d.schemas.is_empty() && d.tables.is_empty(), d.rows) {
                (_, Some(rows)) => format!("{rows} row(s) of {}", d.tables.join(", ")),
                (true, None) => "the whole database".into(),
                (false, None) => [
                    (!d.schemas.is_empty()).then(|| format!("schema(s) {}", d.schemas.join(", "))),
                    (!d.tables.is_empty()).then(|| format!("relation(s) {}", d.tables.join(", "))),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            };
            let how = match (d.replaced, d.created) {
                (true, _) => " (dropped and recreated)",
                (false, true) => " (created)",
                _ => "",
            };
            out += &format!("\n  {} -> {}{how}: {what}", d.database, d.into);
        }
        out + &format!("\n  {} read in {:.1} s", output::bytes(s.bytes), s.seconds)
    });
    Ok(())
}

/// One line per logical backup saying what it holds, for `show`.
pub fn scopes(backups: &[BackupInfo]) -> String {
    backups
        .iter()
        .filter_map(|b| {
            Some(format!("{} {}: {}\n", b.record.instance, b.record.id, describe(b.record.logical.as_ref()?)))
        })
        .collect()
}

/// `database src, schemas sales; pg_dump 15.18, directory format`.
fn describe(scope: &LogicalScope) -> String {
    let plural = |n: usize, one: &str, many: &str| if n == 1 { one.to_string() } else { many.to_string() };
    let mut parts = vec![format!(
        "{} {}",
        plural(scope.databases.len(), "database", "databases"),
        scope.databases.join(", ")
    )];
    if !scope.schemas.is_empty() {
        parts.push(format!(
            "{} {}",
            plural(scope.schemas.len(), "schema", "schemas"),
            scope.schemas.join(", ")
        ));
    }
    if !scope.tables.is_empty() {
        parts.push(format!("{} {}", plural(scope.tables.len(), "table", "tables"), scope.tables.join(", ")));
    }
    if let Some(r) = &scope.time_range {
        parts.push(format!("rows with {} from {} to {}", r.column, r.from, r.to));
    }
    if scope.globals {
        parts.push("globals".into());
    }
    let tool = match (&scope.tool, &scope.tool_version) {
        (Some(tool), Some(version)) => format!("{tool} {version}, "),
        _ => String::new(),
    };
    format!("{}; {tool}{} format", parts.join(", "), format!("{:?}", scope.format).to_lowercase())
}

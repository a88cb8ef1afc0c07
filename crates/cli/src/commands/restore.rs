//! `cairn restore` and `cairn validate`.

use cairn_engine::recovery::{Action, RecoveryOptions, Target, TimelineTarget};
use cairn_engine::{ArchiveMode, RestoreOptions, ValidateOptions};

use crate::cli::{Format, RecoveryArgs, RepoArgs, RestoreArgs, TargetArgs, ValidateArgs};
use crate::exit::usage;
use crate::output;

pub fn run(format: Format, args: &RestoreArgs) -> anyhow::Result<()> {
    if args.mode.is_some() {
        return super::logical::restore(format, args);
    }
    if args.logical.given() {
        return Err(usage(
            "--database, --new-name, --schema, --table, --target-* and --clean need -b LOGICAL",
        ));
    }
    let pgdata = args.pgdata.as_deref().ok_or_else(|| usage("give the target data directory: -D DIR"))?;
    let recovery = recovery_options(args)?;
    let repo = super::open(&args.repo)?;
    let options = RestoreOptions {
        instance: args.instance.clone(),
        backup_id: args.backup_id.clone(),
        target: std::path::absolute(pgdata)?,
        channels: args.threads as usize,
        tablespace_mapping: args.tablespace_mapping.clone(),
        external_mapping: args.external_mapping.clone(),
        skip_external_dirs: args.skip_external_dirs,
        force: args.force,
        delta: args.incremental_mode != "none",
        recovery,
        archive_mode: if args.archive_mode == "off" { ArchiveMode::Off } else { ArchiveMode::Preserve },
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::restore(&repo, &options, progress.as_ref())?;
    output::print(format, &s, || {
        let then = match &s.recovery_target {
            Some(target) => format!("it replays the archive to {target}"),
            None => "it recovers to the backup's consistent point".into(),
        };
        let archiving = match s.archive_mode {
            ArchiveMode::Off => "; it does not archive WAL (archive_mode = off)",
            ArchiveMode::Preserve => "",
        };
        let delta = s.delta.as_ref().map_or(String::new(), |d| {
            format!(
                "\n  delta: wrote {}, {} file(s) unchanged, {} removed",
                output::bytes(d.bytes_written),
                d.files_unchanged,
                d.files_removed
            )
        });
        format!(
            "restored backup {} into {}: {} file(s), {} in {:.1} s ({}/s){delta}\nstart the server on it; {then}{archiving}",
            s.backup_id,
            s.target,
            s.files,
            output::bytes(s.bytes),
            s.seconds,
            output::bytes((s.bytes as f64 / s.seconds.max(0.001)) as u64)
        )
    });
    Ok(())
}

/// The target and timeline given, if any.
fn target_of(t: &TargetArgs) -> anyhow::Result<(Option<Target>, Option<TimelineTarget>)> {
    let target = if let Some(time) = &t.recovery_target_time {
        Some(Target::Time(cairn_engine::recovery::parse_time(time).map_err(usage)?))
    } else if let Some(x) = t.recovery_target_xid {
        Some(Target::Xid(x))
    } else if let Some(l) = &t.recovery_target_lsn {
        Some(Target::Lsn(l.parse().map_err(|_| usage(format!("'{l}' is not an LSN (like 0/3000028)")))?))
    } else if let Some(n) = &t.recovery_target_name {
        Some(Target::Name(n.clone()))
    } else {
        t.recovery_target
            .as_deref()
            .map(|t| if t == "immediate" { Target::Immediate } else { Target::Latest })
    };
    let timeline = match t.recovery_target_timeline.as_deref() {
        None => None,
        Some("current") => Some(TimelineTarget::Current),
        Some("latest") => Some(TimelineTarget::Latest),
        Some(n) => Some(TimelineTarget::Id(n.parse().map_err(|_| {
            usage(format!("--recovery-target-timeline '{n}': give a timeline number, current or latest"))
        })?)),
    };
    Ok((target, timeline))
}

fn recovery_options(args: &RestoreArgs) -> anyhow::Result<Option<RecoveryOptions>> {
    let r: &RecoveryArgs = &args.recovery;
    let (target, timeline) = target_of(&r.target)?;
    let target = match target {
        Some(t) => t,
        None if r.restore_as_replica => Target::Latest,
        None if r.recovery_target_inclusive.is_some()
            || timeline.is_some()
            || r.recovery_target_action.is_some() =>
        {
            return Err(usage(
                "--recovery-target-inclusive, -timeline and -action need a recovery target (--recovery-target-time, -xid, -lsn, -name, or --recovery-target=immediate|latest)",
            ));
        }
        None => return Ok(None),
    };
    let action = r.recovery_target_action.as_deref().map(|a| match a {
        "promote" => Action::Promote,
        "shutdown" => Action::Shutdown,
        _ => Action::Pause,
    });
    let restore_command = match &r.restore_command {
        Some(c) => c.clone(),
        None => archive_get_command(&args.repo, &args.instance)?,
    };
    Ok(Some(RecoveryOptions {
        target,
        inclusive: r.recovery_target_inclusive,
        timeline,
        action,
        as_replica: r.restore_as_replica,
        remove_prefetched_at_end: r.restore_command.is_none(),
        restore_command,
    }))
}

/// `cairn archive-get` for this repository, with what it needs to open it except secrets
/// (the server must have CAIRN_PASSWORD or CAIRN_PASSWORD_FILE if no password file was given).
fn archive_get_command(repo: &RepoArgs, instance: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let mut words = vec![exe.display().to_string(), "archive-get".into(), "-B".into()];
    let location = if repo.backup_path.contains("://") {
        repo.backup_path.clone()
    } else {
        std::path::absolute(&repo.backup_path)?.display().to_string()
    };
    words.push(location);
    words.extend(["--instance".into(), instance.to_string()]);
    if let Some(file) = &repo.password_file {
        words.extend(["--password-file".into(), std::path::absolute(file)?.display().to_string()]);
    }
    if let Some(endpoint) = &repo.s3_endpoint {
        words.extend(["--s3-endpoint".into(), endpoint.clone()]);
    }
    if let Some(region) = &repo.s3_region {
        words.extend(["--s3-region".into(), region.clone()]);
    }
    if repo.s3_path_style {
        words.push("--s3-path-style".into());
    }
    let mut command: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    command.extend(["%f".into(), "%p".into()]);
    Ok(command.join(" "))
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `cairn validate`: one backup, an instance's, or the whole repository's; with a recovery
/// target, whether the instance can be restored to it.
pub fn validate(format: Format, args: &ValidateArgs) -> anyhow::Result<()> {
    let (target, timeline) = target_of(&args.target)?;
    let repo = super::open(&args.repo)?;
    let progress = crate::progress::renderer(args.progress, format);
    let options = ValidateOptions {
        channels: args.threads as usize,
        skip_block_validation: args.skip_block_validation,
    };
    if let Some(target) = target {
        let instance = args.instance.as_deref().ok_or_else(|| usage("a recovery target needs --instance"))?;
        let backups = cairn_engine::catalog::list(&repo, Some(instance))?;
        let listing = cairn_engine::archive::list(&repo, instance)?;
        let plan = cairn_engine::recovery::plan(
            &repo,
            instance,
            &listing,
            &backups,
            args.backup_id.as_deref(),
            &target,
            timeline,
        )?;
        let s = cairn_engine::validate(
            &repo,
            instance,
            Some(&plan.backup.record.id),
            &options,
            progress.as_ref(),
        )?;
        let value = serde_json::json!({
            "target": target.to_string(),
            "restorable": true,
            "backup_id": s.backup_id,
            "expected_stop_lsn": plan.stop_lsn,
            "backup": s,
        });
        output::print(format, &value, || {
            format!(
                "instance '{instance}' can be restored to {target}: backup {} is valid and the archive reaches the target{}",
                s.backup_id,
                plan.stop_lsn.map(|l| format!(" (replay ends near {l})")).unwrap_or_default()
            )
        });
        return Ok(());
    }
    if let (Some(instance), Some(id)) = (&args.instance, &args.backup_id) {
        let s = cairn_engine::validate(&repo, instance, Some(id), &options, progress.as_ref())?;
        output::print(format, &s, || {
            format!(
                "backup {} is valid: {} file(s), {} and {} page checksum(s) read back in {:.1} s",
                s.backup_id,
                s.files,
                output::bytes(s.bytes),
                s.pages,
                s.seconds
            )
        });
        return Ok(());
    }
    let results = cairn_engine::validate_all(&repo, args.instance.as_deref(), &options, progress.as_ref())?;
    output::print(format, &results, || {
        let mut out = String::new();
        for r in &results {
            out += &match &r.error {
                None => format!("{} backup {}: valid\n", r.instance, r.backup_id),
                Some(e) => {
                    let status = format!("{:?}", r.status).to_uppercase();
                    format!("{} backup {}: {status}: {e}\n", r.instance, r.backup_id)
                }
            };
        }
        if results.is_empty() {
            out += "no backup to validate\n";
        }
        out
    });
    let bad = results.iter().filter(|r| r.error.is_some()).count();
    if bad > 0 {
        return Err(crate::exit::damaged(format!("{bad} of {} backup(s) failed validation", results.len())));
    }
    Ok(())
}

//! `cairn restore` and `cairn validate`.

use cairn_engine::recovery::{Action, RecoveryOptions, Target, TimelineTarget};
use cairn_engine::RestoreOptions;

use crate::cli::{Format, RecoveryArgs, RepoArgs, RestoreArgs, ValidateArgs};
use crate::exit::usage;
use crate::output;

pub fn run(format: Format, args: &RestoreArgs) -> anyhow::Result<()> {
    let recovery = recovery_options(args)?;
    let repo = super::open(&args.repo)?;
    let options = RestoreOptions {
        instance: args.instance.clone(),
        backup_id: args.backup_id.clone(),
        target: std::path::absolute(&args.pgdata)?,
        channels: args.threads as usize,
        tablespace_mapping: args.tablespace_mapping.clone(),
        external_mapping: args.external_mapping.clone(),
        skip_external_dirs: args.skip_external_dirs,
        force: args.force,
        recovery,
    };
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::restore(&repo, &options, progress.as_ref())?;
    output::print(format, &s, || {
        let then = match &s.recovery_target {
            Some(target) => format!("it replays the archive to {target}"),
            None => "it recovers to the backup's consistent point".into(),
        };
        format!(
            "restored backup {} into {}: {} file(s), {} in {:.1} s ({}/s)\nstart the server on it; {then}",
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

fn recovery_options(args: &RestoreArgs) -> anyhow::Result<Option<RecoveryOptions>> {
    let r: &RecoveryArgs = &args.recovery;
    let target = if let Some(t) = &r.recovery_target_time {
        Target::Time(cairn_engine::recovery::parse_time(t).map_err(usage)?)
    } else if let Some(x) = r.recovery_target_xid {
        Target::Xid(x)
    } else if let Some(l) = &r.recovery_target_lsn {
        Target::Lsn(l.parse().map_err(|_| usage(format!("'{l}' is not an LSN (like 0/3000028)")))?)
    } else if let Some(n) = &r.recovery_target_name {
        Target::Name(n.clone())
    } else if let Some(t) = &r.recovery_target {
        if t == "immediate" {
            Target::Immediate
        } else {
            Target::Latest
        }
    } else if r.restore_as_replica {
        Target::Latest
    } else if r.recovery_target_inclusive.is_some()
        || r.recovery_target_timeline.is_some()
        || r.recovery_target_action.is_some()
    {
        return Err(usage(
            "--recovery-target-inclusive, -timeline and -action need a recovery target (--recovery-target-time, -xid, -lsn, -name, or --recovery-target=immediate|latest)",
        ));
    } else {
        return Ok(None);
    };
    let timeline = match r.recovery_target_timeline.as_deref() {
        None => None,
        Some("current") => Some(TimelineTarget::Current),
        Some("latest") => Some(TimelineTarget::Latest),
        Some(n) => Some(TimelineTarget::Id(n.parse().map_err(|_| {
            usage(format!("--recovery-target-timeline '{n}': give a timeline number, current or latest"))
        })?)),
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

pub fn validate(format: Format, args: &ValidateArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let progress = crate::progress::renderer(args.progress, format);
    let s = cairn_engine::validate(
        &repo,
        &args.instance,
        args.backup_id.as_deref(),
        args.threads as usize,
        progress.as_ref(),
    )?;
    output::print(format, &s, || {
        format!(
            "backup {} is valid: {} file(s), {} read back in {:.1} s",
            s.backup_id,
            s.files,
            output::bytes(s.bytes),
            s.seconds
        )
    });
    Ok(())
}

//! `cairn add-instance | del-instance | set-config | show-config`.

use cairn_engine::instance::{self, InstanceConfig};
use cairn_engine::Connection;

use crate::cli::{AddInstanceArgs, ConnectionArgs, Format, InstanceArgs, SetConfigArgs};
use crate::exit::usage;
use crate::output;

pub fn connection(args: &ConnectionArgs) -> Connection {
    Connection {
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        database: args.database.clone(),
    }
}

pub fn add(format: Format, args: &AddInstanceArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let pgdata = absolute(&args.pgdata)?;
    if !pgdata.join("PG_VERSION").exists() {
        return Err(usage(format!(
            "{} is not a PostgreSQL data directory (no PG_VERSION file)",
            pgdata.display()
        )));
    }
    let config = InstanceConfig {
        name: args.instance.clone(),
        pgdata: pgdata.display().to_string(),
        connection: connection(&args.connection),
        external_dirs: args.external_dirs.clone(),
        compression: None,
        system_identifier: None,
        retention: Default::default(),
    };
    instance::add(&repo, &config)?;
    output::print(format, &config, || {
        format!("instance '{}' added (data directory {})", config.name, config.pgdata)
    });
    Ok(())
}

pub fn delete(format: Format, args: &InstanceArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let backups = instance::delete(&repo, &args.instance)?;
    let value = serde_json::json!({"instance": args.instance, "backups_deleted": backups});
    output::print(format, &value, || {
        format!(
            "instance '{}' deleted with {backups} backup(s); 'cairn prune' frees their space",
            args.instance
        )
    });
    Ok(())
}

pub fn set(format: Format, args: &SetConfigArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let (_, mut config) = instance::find(&repo, &args.instance)?;
    if let Some(pgdata) = &args.pgdata {
        config.pgdata = absolute(pgdata)?.display().to_string();
    }
    if let Some(dirs) = &args.external_dirs {
        config.external_dirs = dirs.clone();
    }
    config.connection = config.connection.overridden_by(&connection(&args.connection));
    if let Some(compression) = args.compression.parse()? {
        config.compression = Some(compression);
    }
    let r = &args.backup_retention;
    config.retention.redundancy = r.retention_redundancy.or(config.retention.redundancy).filter(|&n| n > 0);
    config.retention.window_days = r.retention_window.or(config.retention.window_days).filter(|&n| n > 0);
    config.retention.wal_depth = args.wal_depth.or(config.retention.wal_depth).filter(|&n| n > 0);
    instance::update(&repo, &config)?;
    output::print(format, &config, || render(&config));
    Ok(())
}

pub fn show(format: Format, args: &InstanceArgs) -> anyhow::Result<()> {
    let repo = super::open(&args.repo)?;
    let (_, config) = instance::find(&repo, &args.instance)?;
    output::print(format, &config, || render(&config));
    Ok(())
}

fn render(c: &InstanceConfig) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(from environment)".into());
    format!(
        "instance = {}\npgdata = {}\npghost = {}\npgport = {}\npguser = {}\npgdatabase = {}\nexternal-dirs = {}\ncompression = {}\nsystem-identifier = {}\nretention-redundancy = {}\nretention-window = {}\nwal-depth = {}",
        c.name,
        c.pgdata,
        opt(&c.connection.host),
        c.connection.port.map_or("(from environment)".into(), |p| p.to_string()),
        opt(&c.connection.user),
        opt(&c.connection.database),
        c.external_dirs.join(":"),
        c.compression.map_or("(repository default)".into(), |c| format!("{c:?}")),
        c.system_identifier.map_or("(learned at the first backup)".into(), |s| s.to_string()),
        c.retention.redundancy.map_or("(not set)".into(), |n| n.to_string()),
        c.retention.window_days.map_or("(not set)".into(), |n| format!("{n} day(s)")),
        c.retention.wal_depth.map_or("(not set)".into(), |n| n.to_string()),
    )
}

fn absolute(path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

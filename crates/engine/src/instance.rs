//! Instances: one database cluster each (data directory + connection), their settings kept in
//! the repository as manifests of kind `instance`, so the repository alone is enough.

use serde::{Deserialize, Serialize};

use cairn_repo::{Compression, Id, Repository};

use crate::error::{EngineError, Result};

pub const KIND: &str = "instance";

/// How to reach the database server; every field may be left to the environment (`PG*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

impl Connection {
    /// `self` to database `database`.
    pub fn to_database(&self, database: &str) -> Connection {
        Connection { database: Some(database.to_string()), ..self.clone() }
    }

    /// `self` with the fields `other` sets replaced (command line over stored settings).
    pub fn overridden_by(&self, other: &Connection) -> Connection {
        Connection {
            host: other.host.clone().or_else(|| self.host.clone()),
            port: other.port.or(self.port),
            user: other.user.clone().or_else(|| self.user.clone()),
            database: other.database.clone().or_else(|| self.database.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    pub name: String,
    /// The data directory on the database host.
    pub pgdata: String,
    #[serde(default)]
    pub connection: Connection,
    /// Directories outside the data directory backed up with it (`-E`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_dirs: Vec<String>,
    /// Compression for this instance's backups, when not the repository's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Learned at the first backup; a later backup of another cluster is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<u64>,
    /// What `delete --delete-expired` and `--delete-wal` keep, unless told otherwise.
    #[serde(default, skip_serializing_if = "Retention::is_empty")]
    pub retention: Retention,
}

/// An instance's stored retention settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_depth: Option<u32>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "instance name '{name}' must be 1 to 64 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Every instance with the id of the manifest holding its settings.
pub fn list(repo: &Repository) -> Result<Vec<(Id, InstanceConfig)>> {
    let mut out = Vec::new();
    for (id, manifest) in repo.load_manifests()? {
        if manifest.kind == KIND {
            let config: InstanceConfig = serde_json::from_value(manifest.meta).map_err(|e| {
                EngineError::Invalid(format!(
                    "instance settings in manifest {} are unreadable: {e}",
                    id.short()
                ))
            })?;
            out.push((id, config));
        }
    }
    out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    Ok(out)
}

pub fn find(repo: &Repository, name: &str) -> Result<(Id, InstanceConfig)> {
    list(repo)?
        .into_iter()
        .find(|(_, c)| c.name == name)
        .ok_or_else(|| EngineError::UnknownInstance(name.into()))
}

pub fn add(repo: &Repository, config: &InstanceConfig) -> Result<()> {
    validate_name(&config.name)?;
    if list(repo)?.iter().any(|(_, c)| c.name == config.name) {
        return Err(EngineError::InstanceExists(config.name.clone()));
    }
    put(repo, config)
}

/// Replaces an instance's settings: the new record is written before the old one goes.
pub fn update(repo: &Repository, config: &InstanceConfig) -> Result<()> {
    let (old, _) = find(repo, &config.name)?;
    put(repo, config)?;
    repo.delete_manifest(&old)?;
    Ok(())
}

/// Removes an instance's settings, its backups' manifests (their data goes at the next
/// prune) and its WAL archive.
pub fn delete(repo: &Repository, name: &str) -> Result<usize> {
    let (id, _) = find(repo, name)?;
    let backups = crate::catalog::list(repo, Some(name))?;
    for b in &backups {
        crate::catalog::delete(repo, b)?;
    }
    repo.delete_manifest(&id)?;
    crate::archive::delete_all(repo, name)?;
    Ok(backups.len())
}

fn put(repo: &Repository, config: &InstanceConfig) -> Result<()> {
    let meta = serde_json::to_value(config).map_err(|e| EngineError::Invalid(e.to_string()))?;
    repo.put_record(KIND, meta)?;
    Ok(())
}

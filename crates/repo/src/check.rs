//! `check`: the repository's structure (keys, index objects against pack headers, manifests
//! against the index) and, with `read_data`, every blob decrypted and re-hashed. Damage is
//! reported by object and by the manifests and files it touches.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::index::Index;
use crate::keys::KeyFile;
use crate::layout::{self, Kind};
use crate::lock::LockGuard;
use crate::pack::{self, BlobEntry};
use crate::repository::{list_ids, parallel_map, Repository};

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read, decrypt and re-hash every blob.
    pub read_data: bool,
    /// Threads reading packs.
    pub channels: usize,
}

/// One finding: the damaged object, what is wrong, and which manifests and files it hurts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub object: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affects: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub errors: Vec<Problem>,
    /// Harmless findings, such as packs left by an interrupted write.
    pub warnings: Vec<Problem>,
    pub keys: usize,
    pub packs: usize,
    pub index_objects: usize,
    pub manifests: usize,
    /// Named files (archived WAL): headers checked, and with read_data their content.
    pub files: usize,
    pub chunks: usize,
    pub bytes_read: u64,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn problem(list: &mut Vec<Problem>, object: impl Into<String>, message: impl Into<String>) {
        list.push(Problem { object: object.into(), message: message.into(), affects: Vec::new() });
    }
}

/// What checking one pack found: the chunks it damages and why (none if healthy), bytes read.
struct PackFinding {
    damaged: Vec<ChunkId>,
    problem: Option<Problem>,
    read: u64,
}

pub fn check(repo: &Repository, options: &CheckOptions) -> Result<CheckReport> {
    let _lock = LockGuard::acquire(repo.storage.clone(), false)?;
    let storage = repo.storage.as_ref();
    let mut report = CheckReport::default();

    // Keys: each parses and matches its name (only the current one can be opened).
    for id in list_ids(storage, Kind::Key)? {
        report.keys += 1;
        let path = layout::path(Kind::Key, &id);
        if let Err(e) = storage.get(&path).map_err(RepoError::from).and_then(|b| KeyFile::parse(&id, &b)) {
            CheckReport::problem(&mut report.errors, path, e.to_string());
        }
    }

    // Packs present, with their sizes.
    let mut sizes: HashMap<Id, u64> = HashMap::new();
    for meta in storage.list(layout::DATA) {
        let meta = meta?;
        match layout::id_of(Kind::Pack, &meta.path) {
            Some(id) => {
                sizes.insert(id, meta.size);
            }
            None => CheckReport::problem(&mut report.warnings, meta.path, "not a pack file (ignored)"),
        }
    }
    report.packs = sizes.len();

    // Index objects, a batch at a time (memory holds a batch, not the repository): each
    // readable; each pack they name checked once, as the first index object naming it says:
    // present, and its header (with read_data, every blob) as indexed.
    let mut index = Index::default();
    let mut indexed: HashSet<Id> = HashSet::new();
    let mut bad_chunks: HashMap<ChunkId, usize> = HashMap::new();
    let mut pack_problems = Vec::new();
    for batch in repo.read_index_batches(&list_ids(storage, Kind::Index)?) {
        let mut packs: Vec<(Id, Vec<BlobEntry>)> = Vec::new();
        for (id, object) in batch? {
            report.index_objects += 1;
            match object {
                Ok(list) => packs.extend(list.into_iter().filter(|(pack, _)| indexed.insert(*pack))),
                Err(e) => {
                    CheckReport::problem(&mut report.errors, layout::path(Kind::Index, &id), e.to_string())
                }
            }
        }
        let findings = parallel_map(&packs, options.channels.max(1), |(pack, blobs)| {
            Ok::<_, RepoError>(check_pack(repo, pack, blobs, sizes.get(pack).copied(), options.read_data))
        })?;
        for finding in findings {
            report.bytes_read += finding.read;
            if let Some(problem) = finding.problem {
                for c in finding.damaged {
                    bad_chunks.insert(c, pack_problems.len());
                }
                pack_problems.push(problem);
            }
        }
        for (pack, blobs) in &packs {
            index.add_pack(*pack, blobs)?;
        }
    }
    let mut unindexed: Vec<&Id> = sizes.keys().filter(|p| !indexed.contains(p)).collect();
    unindexed.sort();
    for pack in unindexed {
        let message = "pack is in no index (left by an interrupted write; 'cairn prune' removes it)";
        CheckReport::problem(&mut report.warnings, layout::path(Kind::Pack, pack), message);
    }

    // Manifests: readable, and every chunk they need is indexed and undamaged.
    index.compact()?;
    report.chunks = index.chunk_count();
    *repo.index.write().unwrap_or_else(|e| e.into_inner()) = index;
    for id in repo.list_manifests()? {
        report.manifests += 1;
        let path = layout::path(Kind::Manifest, &id);
        let manifest = match repo.load_manifest(&id) {
            Ok(m) => m,
            Err(e) => {
                CheckReport::problem(&mut report.errors, path, e.to_string());
                continue;
            }
        };
        let mut missing = Vec::new();
        let mut note = |chunk: &ChunkId, what: &str| -> Result<bool> {
            if !repo.index().contains(chunk)? {
                missing.push(format!("{what}: chunk {} is missing", chunk.short()));
                return Ok(false);
            }
            if let Some(&p) = bad_chunks.get(chunk) {
                pack_problems[p].affects.push(format!("manifest {} {what}", id.short()));
                return Ok(false);
            }
            Ok(true)
        };
        let mut tree_ok = true;
        for c in &manifest.tree {
            tree_ok &= note(c, "entry list")?;
        }
        if tree_ok {
            let walked = repo.for_each_entry(&id, &manifest, &mut |entry| {
                let what = format!("file {}", entry.path);
                entry.chunks.iter().try_for_each(|c| note(c, &what).map(drop))
            });
            if let Err(e) = walked {
                CheckReport::problem(&mut report.errors, path.clone(), e.to_string());
            }
        }
        for m in missing {
            CheckReport::problem(&mut report.errors, path.clone(), m);
        }
    }
    for p in &mut pack_problems {
        p.affects.sort();
        p.affects.dedup();
    }
    report.errors.extend(pack_problems);

    // Named files: each header opens under its own name; with read_data, the content too.
    let names = repo.list_files("")?;
    report.files = names.len();
    let findings = parallel_map(&names, options.channels.max(1), |name| {
        let checked = if options.read_data {
            repo.get_file(name).map(|f| f.map_or(0, |(h, _)| h.raw_len))
        } else {
            repo.file_header(name).map(|_| 0)
        };
        Ok::<_, RepoError>(match checked {
            Ok(read) => (read, None),
            Err(RepoError::Storage(e)) if e.is_not_found() => (0, None), // deleted meanwhile
            Err(e) => (
                0,
                Some(Problem {
                    object: format!("{}{name}", crate::files::PREFIX),
                    message: e.to_string(),
                    affects: Vec::new(),
                }),
            ),
        })
    })?;
    for (read, problem) in findings {
        report.bytes_read += read;
        report.errors.extend(problem);
    }
    Ok(report)
}

fn check_pack(
    repo: &Repository,
    pack_id: &Id,
    indexed: &[BlobEntry],
    size: Option<u64>,
    read_data: bool,
) -> PackFinding {
    let path = layout::path(Kind::Pack, pack_id);
    let all = || indexed.iter().map(|b| b.id).collect::<Vec<_>>();
    let found = |damaged: Vec<ChunkId>, message: String, read: u64| PackFinding {
        damaged,
        problem: Some(Problem { object: path.clone(), message, affects: Vec::new() }),
        read,
    };
    let healthy = |read: u64| PackFinding { damaged: Vec::new(), problem: None, read };
    let Some(size) = size else {
        return found(all(), "pack is named by the index but missing".into(), 0);
    };
    if !read_data {
        return match read_pack_header(repo, pack_id, size) {
            Ok(h) if h == indexed => healthy(0),
            Ok(_) => found(all(), "pack header disagrees with the index".into(), 0),
            Err(e) => found(all(), e.to_string(), 0),
        };
    }
    let bytes = match repo.storage.get(&path) {
        Ok(b) => b,
        Err(e) => return found(all(), e.to_string(), 0),
    };
    let read = bytes.len() as u64;
    // Blobs that fail to open back into their chunk (damaged, or written wrong).
    let damaged_blobs = || -> Vec<ChunkId> {
        indexed
            .iter()
            .filter(|b| {
                let range = b.offset as usize..(b.offset + b.stored_len) as usize;
                bytes.get(range).is_none_or(|s| pack::open_blob(&repo.crypto, b, s).is_err())
            })
            .map(|b| b.id)
            .collect()
    };
    if Id::of_object(&bytes) != *pack_id {
        let bad = damaged_blobs();
        let message = if bad.is_empty() {
            "content does not match its name (hash mismatch) in its header".to_string()
        } else {
            format!("content does not match its name (hash mismatch): {} damaged blob(s)", bad.len())
        };
        return found(if bad.is_empty() { all() } else { bad }, message, read);
    }
    match pack::read_header(&repo.crypto, pack_id, &bytes) {
        Ok(h) if h == indexed => {}
        Ok(_) => return found(all(), "pack header disagrees with the index".into(), read),
        Err(e) => return found(all(), e.to_string(), read),
    }
    match damaged_blobs() {
        bad if bad.is_empty() => healthy(read),
        bad => {
            let message = format!("{} blob(s) do not open into their chunk", bad.len());
            found(bad, message, read)
        }
    }
}

/// Reads just the header of a pack (two small ranged reads).
pub(crate) fn read_pack_header(repo: &Repository, pack_id: &Id, size: u64) -> Result<Vec<BlobEntry>> {
    let path = layout::path(Kind::Pack, pack_id);
    let last4 = repo.storage.get_range(&path, size.saturating_sub(4)..size)?;
    let header_len = pack::header_len(pack_id, size, &last4)?;
    let sealed = repo.storage.get_range(&path, size - 4 - header_len..size - 4)?;
    pack::parse_header(&repo.crypto, pack_id, size, &sealed)
}

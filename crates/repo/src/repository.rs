//! An open repository: init and open with a password, key management, the index, manifests,
//! and reading chunks back.

use std::io::Write;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use bytes::Bytes;
use cairn_storage::{PutMode, Storage};

use crate::chunker::ChunkerParams;
use crate::compression::Compression;
use crate::config::{Config, DEFAULT_PACK_SIZE, FORMAT_VERSION};
use crate::crypto::{Crypto, Encryption, KdfParams, MasterKey};
use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::index::{self, Index, Location, PackBlobs};
use crate::keys::KeyFile;
use crate::layout::{self, Kind};
use crate::manifest::{EntryParser, FileEntry, Manifest};
use crate::object;
use crate::pack;

/// How a new repository is made.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub encryption: Encryption,
    pub password: Option<Vec<u8>>,
    pub compression: Compression,
    pub chunker: ChunkerParams,
    pub pack_size: u32,
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            encryption: Encryption::Aes256Gcm,
            password: None,
            compression: Compression::default(),
            chunker: ChunkerParams::default(),
            pack_size: DEFAULT_PACK_SIZE,
            kdf: KdfParams::default(),
        }
    }
}

/// A key as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: Id,
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
    pub user: String,
    /// Whether this key opened the repository in this session.
    pub current: bool,
    pub kdf: KdfParams,
}

#[derive(Debug)]
pub struct Repository {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) config: Config,
    pub(crate) crypto: Crypto,
    master: Option<(Id, MasterKey)>,
    pub(crate) index: Arc<RwLock<Index>>,
}

impl Repository {
    /// Creates a repository. Writes the key first and the config last: a repository exists
    /// once its config does, and a failed init removes what it wrote.
    pub fn init(storage: Arc<dyn Storage>, options: InitOptions) -> Result<Repository> {
        let location = storage.location();
        if exists(storage.as_ref())? {
            return Err(RepoError::AlreadyExists { location });
        }
        let config = Config {
            version: FORMAT_VERSION,
            id: Id::random(),
            created: chrono::Utc::now(),
            encryption: options.encryption,
            compression: options.compression,
            chunker: options.chunker,
            pack_size: options.pack_size,
        };
        config.validate().map_err(RepoError::Invalid)?;
        let (crypto, master) = match (options.encryption, &options.password) {
            (Encryption::None, None) => (Crypto::none(), None),
            (Encryption::None, Some(_)) => {
                return Err(RepoError::Invalid(
                    "a password was given for a repository without encryption".into(),
                ))
            }
            (_, None) => return Err(RepoError::PasswordRequired { location }),
            (encryption, Some(password)) => {
                let master = MasterKey::random();
                let (key_id, bytes) = KeyFile::create(config.id, encryption, &master, password, options.kdf)?;
                storage.put(&layout::path(Kind::Key, &key_id), Bytes::from(bytes), PutMode::Create)?;
                (config.crypto(&master), Some((key_id, master)))
            }
        };
        if let Err(e) = storage.put(layout::CONFIG, Bytes::from(config.to_bytes()), PutMode::Create) {
            if let Some((key_id, _)) = &master {
                let _ = storage.delete(&layout::path(Kind::Key, key_id));
            }
            return Err(match e.kind {
                cairn_storage::ErrorKind::AlreadyExists => RepoError::AlreadyExists { location },
                _ => e.into(),
            });
        }
        Ok(Repository { storage, config, crypto, master, index: Default::default() })
    }

    /// Opens a repository; `password` is needed when it is encrypted.
    pub fn open(storage: Arc<dyn Storage>, password: Option<&[u8]>) -> Result<Repository> {
        let location = storage.location();
        let bytes = match storage.get(layout::CONFIG) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(RepoError::NotInitialised { location }),
            Err(e) => return Err(e.into()),
        };
        let config = Config::parse(&bytes)?;
        if config.encryption == Encryption::None {
            // A config downgraded to "none" must not make writers store plaintext.
            if storage.list(layout::KEYS).next().is_some() {
                let reason = "says encryption none, but the repository has keys: the config was altered";
                return Err(RepoError::damaged("config", layout::CONFIG, reason));
            }
            return Ok(Repository {
                storage,
                config,
                crypto: Crypto::none(),
                master: None,
                index: Default::default(),
            });
        }
        let password = password.ok_or(RepoError::PasswordRequired { location: location.clone() })?;
        let keys = list_ids(storage.as_ref(), Kind::Key)?;
        let mut damaged = None;
        // Cheapest key derivation first: a machine's fast key opens without paying for the
        // slow ones.
        let mut files = Vec::new();
        for key_id in &keys {
            match storage
                .get(&layout::path(Kind::Key, key_id))
                .map_err(RepoError::from)
                .and_then(|bytes| KeyFile::parse(key_id, &bytes))
            {
                Ok(file) => files.push((key_id, file)),
                Err(e) => damaged = Some(e),
            }
        }
        files.sort_by_key(|(_, f)| f.kdf_params.cost());
        for (key_id, file) in files {
            match file.unwrap_master(key_id, password, &config.id) {
                Ok(Some(master)) => {
                    let crypto = config.crypto(&master);
                    let master = Some((*key_id, master));
                    return Ok(Repository { storage, config, crypto, master, index: Default::default() });
                }
                Ok(None) => {}
                Err(e) => damaged = Some(e),
            }
        }
        // A damaged key that might have been the right one matters more than "wrong password".
        match damaged {
            Some(e) if keys.len() == 1 => Err(e),
            _ => Err(RepoError::WrongPassword { location, keys: keys.len() }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn location(&self) -> String {
        self.storage.location()
    }

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for id in list_ids(self.storage.as_ref(), Kind::Key)? {
            let file = KeyFile::parse(&id, &self.storage.get(&layout::path(Kind::Key, &id))?)?;
            let current = self.master.as_ref().is_some_and(|(k, _)| *k == id);
            out.push(KeyInfo {
                id,
                created: file.created,
                host: file.host,
                user: file.user,
                current,
                kdf: file.kdf_params,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Adds a key object wrapping the master key with `password`.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let (_, master) = self
            .master
            .as_ref()
            .ok_or_else(|| RepoError::Invalid("the repository is not encrypted, so it has no keys".into()))?;
        let (id, bytes) = KeyFile::create(self.config.id, self.config.encryption, master, password, kdf)?;
        self.storage.put(&layout::path(Kind::Key, &id), Bytes::from(bytes), PutMode::Create)?;
        Ok(id)
    }

    /// Removes the key whose id starts with `prefix`; never the last one, nor the one in use.
    pub fn remove_key(&self, prefix: &str) -> Result<Id> {
        let keys = list_ids(self.storage.as_ref(), Kind::Key)?;
        let id = resolve_prefix(&keys, prefix, "key")?;
        if keys.len() == 1 {
            return Err(RepoError::Invalid(
                "refusing to remove the last key: the repository could never be opened again".into(),
            ));
        }
        if self.master.as_ref().is_some_and(|(k, _)| *k == id) {
            return Err(RepoError::Invalid(format!(
                "key {} is the one this command opened the repository with; open with another password to remove it",
                id.short()
            )));
        }
        self.storage.delete(&layout::path(Kind::Key, &id))?;
        Ok(id)
    }

    /// Reads every index object into the lookup index (replacing what was loaded before), a
    /// few at a time: memory holds a handful of index objects, whatever their number.
    pub fn load_index(&self) -> Result<()> {
        let mut index = Index::default();
        for batch in self.read_index_batches(&list_ids(self.storage.as_ref(), Kind::Index)?) {
            for (_, object) in batch? {
                for (pack, blobs) in &object? {
                    index.add_pack(*pack, blobs)?;
                }
            }
        }
        index.compact()?;
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(())
    }

    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The index objects `ids`, a batch at a time (memory holds one batch, whatever their
    /// number), each batch fetched a few at once (object storage is slow per request), each
    /// object with what reading it gave.
    pub(crate) fn read_index_batches<'a>(
        &'a self,
        ids: &'a [Id],
    ) -> impl Iterator<Item = Result<Vec<(Id, Result<Vec<PackBlobs>>)>>> + 'a {
        ids.chunks(16).map(|batch| {
            parallel_map(batch, 8, |id| Ok::<_, RepoError>((*id, self.read_index_object(id).map(|(_, p)| p))))
        })
    }

    pub(crate) fn read_index_object(&self, id: &Id) -> Result<(Id, Vec<PackBlobs>)> {
        let stored = self.storage.get(&layout::path(Kind::Index, id))?;
        let body = object::decode(&self.crypto, Kind::Index, id, &stored)?;
        Ok((*id, index::decode(id, &body)?))
    }

    pub(crate) fn write_index_object(&self, packs: &[PackBlobs]) -> Result<Id> {
        store_index(self.storage.as_ref(), &self.crypto, packs)
    }

    pub fn list_manifests(&self) -> Result<Vec<Id>> {
        list_ids(self.storage.as_ref(), Kind::Manifest)
    }

    pub fn load_manifest(&self, id: &Id) -> Result<Manifest> {
        let stored = self.storage.get(&layout::path(Kind::Manifest, id))?;
        let body = object::decode(&self.crypto, Kind::Manifest, id, &stored)?;
        serde_json::from_slice(&body)
            .map_err(|e| RepoError::damaged("manifest", layout::path(Kind::Manifest, id), e.to_string()))
    }

    /// Every manifest with its content, fetched a few at a time. One removed between the
    /// listing and the reading (a status change, a finished backup's RUNNING record) is
    /// skipped; anything else that fails is an error.
    pub fn load_manifests(&self) -> Result<Vec<(Id, Manifest)>> {
        let ids = self.list_manifests()?;
        let loaded = parallel_map(&ids, 8, |id| match self.load_manifest(id) {
            Ok(m) => Ok(Some((*id, m))),
            Err(RepoError::Storage(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        })?;
        Ok(loaded.into_iter().flatten().collect())
    }

    /// Records a manifest that holds only metadata (no files): instance settings, or the
    /// record of a backup still running or failed.
    pub fn put_record(&self, kind: &str, meta: serde_json::Value) -> Result<Id> {
        self.write_manifest(&Manifest {
            kind: kind.to_string(),
            created: chrono::Utc::now(),
            host: crate::lock::hostname(),
            meta,
            tree: Vec::new(),
            entries: 0,
            bytes: 0,
        })
    }

    /// Replaces a manifest's metadata (a status change): the new manifest is stored before
    /// the old one is removed, so a crash leaves one or both, never neither; it is the newer
    /// (a later `created`), so that a reader left with both takes the change.
    pub fn replace_meta(&self, id: &Id, meta: serde_json::Value) -> Result<Id> {
        let mut manifest = self.load_manifest(id)?;
        manifest.meta = meta;
        let now = chrono::Utc::now();
        manifest.created = now.max(manifest.created + chrono::Duration::nanoseconds(1));
        let new = self.write_manifest(&manifest)?;
        if new != *id {
            self.delete_manifest(id)?;
        }
        Ok(new)
    }

    /// Removes a manifest; its data stays until the next prune.
    pub fn delete_manifest(&self, id: &Id) -> Result<()> {
        Ok(self.storage.delete(&layout::path(Kind::Manifest, id))?)
    }

    pub(crate) fn write_manifest(&self, manifest: &Manifest) -> Result<Id> {
        let body = serde_json::to_vec(manifest).unwrap_or_default();
        let (id, stored) = object::encode(&self.crypto, Kind::Manifest, &body)?;
        self.storage.put(&layout::path(Kind::Manifest, &id), Bytes::from(stored), PutMode::Create)?;
        Ok(id)
    }

    /// Calls `each` with every entry of a manifest, in order, reading its entry stream chunk
    /// by chunk (a manifest of millions of files never sits whole in memory).
    pub fn for_each_entry(
        &self,
        id: &Id,
        manifest: &Manifest,
        each: &mut dyn FnMut(FileEntry) -> Result<()>,
    ) -> Result<()> {
        let mut parser = EntryParser::default();
        let mut batch = Vec::new();
        for chunk in &manifest.tree {
            parser.push(id, &self.read_chunk(chunk)?, &mut batch)?;
            batch.drain(..).try_for_each(&mut *each)?;
        }
        parser.finish(id)
    }

    /// The ids and lengths of the chunks `source` would be cut into, without storing anything
    /// (to compare a file on disk with a backed-up one).
    pub fn chunk_ids(
        &self,
        source: &mut dyn std::io::Read,
        kind: crate::ChunkerKind,
    ) -> Result<Vec<(ChunkId, usize)>> {
        let mut out = Vec::new();
        crate::chunker::chunk_reader(source, kind, &self.config.chunker, &mut |chunk| {
            out.push((self.crypto.chunk_id(&chunk), chunk.len()));
            Ok(())
        })
        .map_err(|e| RepoError::io("reading a file to compare", e))?;
        Ok(out)
    }

    /// Where a chunk is, from the loaded index.
    pub fn locate(&self, chunk: &ChunkId) -> Result<Location> {
        self.index().get(chunk)?.ok_or_else(|| {
            RepoError::damaged(
                "chunk",
                chunk.to_hex(),
                "not in the index (the repository is missing data: run 'cairn check')",
            )
        })
    }

    pub fn read_chunk(&self, chunk: &ChunkId) -> Result<Vec<u8>> {
        let loc = self.locate(chunk)?;
        let b = &loc.blob;
        let path = layout::path(Kind::Pack, &loc.pack);
        let stored = self.storage.get_range(&path, b.offset as u64..(b.offset + b.stored_len) as u64)?;
        pack::open_blob(&self.crypto, b, &stored)
            .map_err(|reason| RepoError::damaged("blob", format!("{path} chunk {}", chunk.short()), reason))
    }

    /// The chunks of `chunks` that cannot be read back whole (damaged or missing), each read
    /// once, `channels` at a time. Other failures (storage unreachable) are errors.
    pub fn damaged_chunks(&self, chunks: &[ChunkId], channels: usize) -> Result<Vec<ChunkId>> {
        let unique: Vec<ChunkId> =
            chunks.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let verdicts = parallel_map(&unique, channels, |chunk| match self.read_chunk(chunk) {
            Ok(_) => Ok(None),
            Err(RepoError::Damaged { .. }) => Ok(Some(*chunk)),
            Err(RepoError::Storage(e)) if e.is_not_found() => Ok(Some(*chunk)),
            Err(e) => Err(e),
        })?;
        Ok(verdicts.into_iter().flatten().collect())
    }

    /// Writes the content of `chunks` to `out`, in order. Neighbouring blobs of one pack are
    /// fetched with a single ranged read.
    pub fn restore_file(&self, chunks: &[ChunkId], out: &mut dyn Write) -> Result<u64> {
        let mut written = 0u64;
        self.for_each_chunk(chunks, &mut |chunk| {
            out.write_all(chunk).map_err(|e| RepoError::io("writing restored data", e))?;
            written += chunk.len() as u64;
            Ok(())
        })?;
        Ok(written)
    }

    /// Restores many files at once on `channels` threads (at most [`MAX_READERS`]): `open` gives
    /// the writer for each entry, and each file's chunks are written to it in order. Returns
    /// the bytes written.
    pub fn restore_files<W: Write>(
        &self,
        entries: &[FileEntry],
        channels: usize,
        open: impl Fn(&FileEntry) -> Result<W> + Sync,
    ) -> Result<u64> {
        let written = parallel_map(entries, channels.min(MAX_READERS), |entry| {
            let mut out = open(entry)?;
            let n = self.restore_file(&entry.chunks, &mut out)?;
            out.flush().map_err(|e| RepoError::io(format!("writing {}", entry.path), e))?;
            if n != entry.size {
                return Err(RepoError::damaged(
                    "manifest",
                    entry.path.clone(),
                    format!("restored {n} bytes, the entry says {}", entry.size),
                ));
            }
            Ok(n)
        })?;
        Ok(written.iter().sum())
    }
}

impl Repository {
    /// Calls `each` with the content of `chunks`, in order.
    pub(crate) fn for_each_chunk(
        &self,
        chunks: &[ChunkId],
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        // Grown to the largest chunk once, never zeroed again.
        let mut chunk = Vec::new();
        self.for_each_chunk_into(chunks, &mut |len, open| {
            chunk.resize(len, 0);
            open(&mut chunk)?;
            each(&chunk)
        })
    }

    /// [`for_each_chunk`](Self::for_each_chunk) into buffers of the caller's (a restore's
    /// staging buffer, saving a copy): `each` gets each chunk's length and a function that
    /// opens the chunk into a buffer of that length. Neighbouring blobs of one pack are fetched
    /// with a single ranged read, and the next such read is asked for ahead.
    pub(crate) fn for_each_chunk_into(
        &self,
        chunks: &[ChunkId],
        each: &mut dyn FnMut(usize, OpenInto<'_>) -> Result<()>,
    ) -> Result<()> {
        let locations = chunks.iter().map(|c| self.locate(c)).collect::<Result<Vec<_>>>()?;
        let reads = ranged_reads(&locations);
        let mut run = Vec::new();
        let mut buffers = pack::BlobBuffers::default();
        for (k, read) in reads.iter().enumerate() {
            if let Some(next) = reads.get(k + 1) {
                self.storage.will_read(&next.path, next.range.clone());
            }
            self.storage.get_range_into(&read.path, read.range.clone(), &mut run)?;
            for loc in &locations[read.blobs.clone()] {
                let b = &loc.blob;
                let at = (b.offset as u64 - read.range.start) as usize;
                let stored = &run[at..at + b.stored_len as usize];
                each(b.raw_len as usize, &mut |chunk| {
                    pack::open_blob_to(&self.crypto, b, stored, &mut buffers, chunk).map_err(|reason| {
                        RepoError::damaged("blob", format!("{} chunk {}", read.path, b.id.short()), reason)
                    })
                })?;
            }
        }
        Ok(())
    }

    /// Asks the storage to start fetching `chunks`, which are read soon.
    pub(crate) fn read_ahead(&self, chunks: &[ChunkId]) -> Result<()> {
        let locations = chunks.iter().map(|c| self.locate(c)).collect::<Result<Vec<_>>>()?;
        for read in ranged_reads(&locations) {
            self.storage.will_read(&read.path, read.range);
        }
        Ok(())
    }
}

/// One ranged read of a pack: bytes `range` of `path`, holding the blobs of `locations[blobs]`.
struct RangedRead {
    path: String,
    range: std::ops::Range<u64>,
    blobs: std::ops::Range<usize>,
}

/// Threads reading chunks back at once (restore, validate), at most: each holds a ranged read
/// of up to [`MAX_READ`] and a 2 MiB staging buffer, and the memory bound (256 MiB) holds at
/// this many whatever `-j` asks for.
pub const MAX_READERS: usize = 16;

/// The largest ranged read of a pack (plus one blob): large enough to amortise a request to
/// object storage, small enough that [`MAX_READERS`] of them fit in memory.
const MAX_READ: u64 = 4 << 20;

/// The reads that fetch `locations` in order: neighbouring blobs of one pack together, up to
/// [`MAX_READ`] a read.
fn ranged_reads(locations: &[Location]) -> Vec<RangedRead> {
    let mut reads = Vec::new();
    let mut i = 0;
    while i < locations.len() {
        let first = &locations[i];
        let start = first.blob.offset as u64;
        let mut end = start + first.blob.stored_len as u64;
        let mut j = i + 1;
        while j < locations.len()
            && locations[j].pack == first.pack
            && locations[j].blob.offset as u64 == end
            && end - start < MAX_READ
        {
            end += locations[j].blob.stored_len as u64;
            j += 1;
        }
        reads.push(RangedRead {
            path: layout::path(Kind::Pack, &first.pack),
            range: start..end,
            blobs: i..j,
        });
        i = j;
    }
    reads
}

/// Opens a chunk into the buffer given, which is as long as the chunk.
type OpenInto<'a> = &'a mut dyn FnMut(&mut [u8]) -> Result<()>;

/// Whether anything of a repository is at this storage location.
fn exists(storage: &dyn Storage) -> Result<bool> {
    match storage.stat(layout::CONFIG) {
        Ok(_) => return Ok(true),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(storage.list(layout::KEYS).next().is_some())
}

/// Ids of every object of `kind`, sorted (stray files are ignored).
pub(crate) fn list_ids(storage: &dyn Storage, kind: Kind) -> Result<Vec<Id>> {
    let mut ids = Vec::new();
    for meta in storage.list(kind.prefix()) {
        if let Some(id) = layout::id_of(kind, &meta?.path) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Stores an index object naming `packs`.
pub(crate) fn store_index(storage: &dyn Storage, crypto: &Crypto, packs: &[PackBlobs]) -> Result<Id> {
    let (id, stored) = object::encode(crypto, Kind::Index, &index::encode(packs))?;
    put_immutable(storage, &layout::path(Kind::Index, &id), stored)?;
    Ok(id)
}

/// Stores a content-addressed object; one already there has the same content, so that is fine.
pub(crate) fn put_immutable(storage: &dyn Storage, path: &str, bytes: impl Into<Bytes>) -> Result<()> {
    match storage.put(path, bytes.into(), PutMode::Create) {
        Err(e) if e.kind == cairn_storage::ErrorKind::AlreadyExists => Ok(()),
        other => Ok(other?),
    }
}

pub(crate) fn resolve_prefix(ids: &[Id], prefix: &str, what: &str) -> Result<Id> {
    let matches: Vec<&Id> = ids.iter().filter(|id| id.to_hex().starts_with(&prefix.to_lowercase())).collect();
    match matches.as_slice() {
        [one] if !prefix.is_empty() => Ok(**one),
        [] | [_] => Err(RepoError::Invalid(format!("no {what} with id '{prefix}'"))),
        _ => Err(RepoError::Invalid(format!("{what} id '{prefix}' is ambiguous: give more digits"))),
    }
}

/// `f` over `items` on up to `threads` threads, results in input order; the first error wins.
pub fn parallel_map<T: Sync, R: Send, E: Send + From<RepoError>>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<R, E>>>> =
        items.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                let failed = r.is_err();
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                if failed {
                    next.store(items.len(), std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    // Work is handed out in order, so a skipped item always follows the error that stopped it.
    let out = results
        .into_iter()
        .map_while(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect::<Result<Vec<R>, E>>()?;
    match out.len() == items.len() {
        true => Ok(out),
        false => Err(RepoError::Invalid("parallel work stopped early".into()).into()),
    }
}

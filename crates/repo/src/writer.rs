//! Storing new data: files go in as readers and come back as chunk lists. Chunks are hashed,
//! deduplicated, compressed and sealed on worker threads, gathered in file order into segments
//! (a pack's worth shared among the open streams, at least 1 MiB), segments into packs, and
//! packs are uploaded on upload threads. A pack is
//! stored before any index object names it, and index objects before the manifest that needs
//! them.
//!
//! Memory is bounded whatever the number of channels: at most 2 workers per CPU (more cannot
//! go faster), [`MAX_UPLOADS`] packs uploading, one waiting and one filling, and per open
//! stream one segment and a window of chunks in flight that narrows as streams are added.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use cairn_storage::Storage;

use crate::chunker::{chunk_reader, CdcStream, ChunkerKind, ChunkerParams, MAX_CHUNK};
use crate::compression::{Codec, Compression, Compressor};
use crate::crypto::Crypto;
use crate::error::{RepoError, Result};
use crate::id::{ChunkId, Id};
use crate::index::{Index, PackBlobs};
use crate::layout::{self, Kind};
use crate::lock::LockGuard;
use crate::manifest::{FileEntry, Manifest};
use crate::pack::PackBuilder;
use crate::repository::{put_immutable, store_index, Repository};

/// Index objects are also written at least this often, so that an interrupted writer's work
/// is found and reused by the next one.
const INDEX_EVERY: Duration = Duration::from_secs(120);

/// Packs uploaded at once: enough to keep object storage busy; each holds a pack in memory.
const MAX_UPLOADS: usize = 4;

/// A stream hands its sealed chunks to the open pack in segments: a pack's worth shared among
/// the open streams, but at least this much, so that a file's chunks lie together in runs a
/// restore reads in one request each, and memory holds about a pack whatever the streams.
const MIN_SEGMENT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Parallel channels (1 to 255): files stored at once by the caller, and the upper bound
    /// of worker and upload threads.
    pub channels: usize,
    /// Overrides the repository's default compression for this writer.
    pub compression: Option<Compression>,
    /// An index object is written every this many packs (and at the end), so that an
    /// interrupted writer's work is found and reused by the next one.
    pub index_every_packs: usize,
    /// Resuming: index the packs an interrupted writer stored after its last index object,
    /// so that their chunks are reused too (costs a listing of every pack).
    pub adopt_unindexed: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { channels: 1, compression: None, index_every_packs: 16, adopt_unindexed: false }
    }
}

/// What a writer did, for summaries and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    pub chunks: u64,
    pub new_chunks: u64,
    /// Bytes handed in.
    pub bytes: u64,
    /// Bytes of chunks not stored before.
    pub new_bytes: u64,
    /// Bytes of packs written (after compression and encryption).
    pub stored_bytes: u64,
    pub packs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    chunks: AtomicU64,
    new_chunks: AtomicU64,
    bytes: AtomicU64,
    new_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    packs: AtomicU64,
}

/// State shared by the writer, its workers and its uploaders.
#[derive(Debug)]
struct Shared {
    storage: Arc<dyn Storage>,
    crypto: Crypto,
    index: Arc<RwLock<Index>>,
    chunker: ChunkerParams,
    pack_size: usize,
    index_every_packs: usize,
    /// Chunks this writer has taken on to store (not yet in the repository index).
    claimed: Mutex<HashSet<ChunkId>>,
    /// Packs stored but not yet named by an index object, and when an index was last written.
    unindexed: Mutex<(Vec<PackBlobs>, Instant)>,
    /// Buffers of stored packs, for new packs to fill.
    spare: Mutex<Vec<Vec<u8>>>,
    /// The first failure of a background thread; once set, the writer can never commit.
    failure: Mutex<Option<RepoError>>,
    failed: std::sync::atomic::AtomicBool,
    counters: Counters,
}

struct Job {
    data: Vec<u8>,
    reply: Sender<Processed>,
}

/// A chunk after a worker saw it: its id, and its sealed blob if it must be stored.
struct Processed {
    id: ChunkId,
    blob: Option<(Codec, u32, Vec<u8>)>,
}

/// Stores data into the repository under a shared lock; finish with [`commit`](Writer::commit).
#[derive(Debug)]
pub struct Writer<'r> {
    repo: &'r Repository,
    shared: Arc<Shared>,
    lock: LockGuard,
    channels: usize,
    jobs: Option<Sender<Job>>,
    uploads: Option<Sender<PackBuilder>>,
    threads: Vec<JoinHandle<()>>,
    /// Worker threads (hashing, compression, encryption).
    workers: usize,
    /// The pack being filled with streams' segments.
    open: Mutex<PackBuilder>,
    /// Streams open now: their windows share the workers.
    streams: AtomicUsize,
    tree: Mutex<Tree>,
}

#[derive(Debug)]
struct Tree {
    cdc: CdcStream,
    chunks: Vec<ChunkId>,
    entries: u64,
    bytes: u64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} bytes)", self.data.len())
    }
}

impl<'r> Writer<'r> {
    pub fn new(repo: &'r Repository, options: &WriterOptions) -> Result<Writer<'r>> {
        if !(1..=255).contains(&options.channels) {
            return Err(RepoError::Invalid(format!("{} channels: choose 1 to 255", options.channels)));
        }
        let lock = LockGuard::acquire(repo.storage.clone(), false)?;
        repo.load_index()?;
        let adopted = if options.adopt_unindexed { unindexed_packs(repo)? } else { Vec::new() };
        let config = repo.config();
        let compression = options.compression.unwrap_or(config.compression);
        let shared = Arc::new(Shared {
            storage: repo.storage.clone(),
            crypto: repo.crypto.clone(),
            index: repo.index.clone(),
            chunker: config.chunker,
            pack_size: config.pack_size as usize,
            index_every_packs: options.index_every_packs.max(1),
            claimed: Default::default(),
            // Adopted packs go into this writer's first index object.
            unindexed: Mutex::new((adopted, Instant::now())),
            spare: Default::default(),
            failure: Default::default(),
            failed: Default::default(),
            counters: Default::default(),
        });
        let channels = options.channels;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = channels.min(2 * cpus);
        let (jobs, job_rx) = bounded::<Job>(workers * 2);
        let (uploads, upload_rx) = bounded::<PackBuilder>(1);
        let mut threads = Vec::new();
        for _ in 0..workers {
            let compressor =
                Compressor::new(compression).map_err(|e| RepoError::io("starting a compressor", e))?;
            let (worker_shared, rx) = (shared.clone(), job_rx.clone());
            threads.push(std::thread::spawn(move || work(&worker_shared, compressor, &rx)));
        }
        for _ in 0..channels.min(MAX_UPLOADS) {
            let (uploader_shared, rx) = (shared.clone(), upload_rx.clone());
            threads.push(std::thread::spawn(move || upload(&uploader_shared, &rx)));
        }
        let tree = Tree { cdc: CdcStream::new(config.chunker), chunks: Vec::new(), entries: 0, bytes: 0 };
        Ok(Writer {
            repo,
            shared,
            lock,
            channels,
            jobs: Some(jobs),
            uploads: Some(uploads),
            threads,
            workers,
            open: Default::default(),
            streams: AtomicUsize::new(0),
            tree: Mutex::new(tree),
        })
    }

    /// Stores everything `source` yields and returns its chunk list. May be called from
    /// several threads at once; each file's chunks stay together in segments.
    pub fn store(&self, source: &mut dyn Read, kind: ChunkerKind) -> Result<(Vec<ChunkId>, u64)> {
        let mut stream = self.stream();
        let chunker = self.shared.chunker;
        let read = chunk_reader(source, kind, &chunker, &mut |chunk| {
            stream.push(chunk).map_err(|e| std::io::Error::other(e.to_string()))
        });
        let chunks = stream.finish()?;
        let read = read.map_err(|e| RepoError::io("reading data to store", e))?;
        self.check_failure()?;
        Ok((chunks, read))
    }

    /// Adds an entry to this writer's manifest, in call order.
    pub fn add_entry(&self, entry: &FileEntry) -> Result<()> {
        if !crate::manifest::is_safe_path(&entry.path) {
            return Err(RepoError::Invalid(format!(
                "entry path {:?} is not a plain relative path",
                entry.path
            )));
        }
        let mut tree = lock(&self.tree);
        tree.entries += 1;
        tree.bytes += entry.size;
        let mut cut = Vec::new();
        tree.cdc
            .push(&entry.to_line(), &mut |c| {
                cut.push(c);
                Ok(())
            })
            .map_err(|e| RepoError::io("cutting the entry stream", e))?;
        let ids = self.store_chunks(cut)?;
        tree.chunks.extend(ids);
        Ok(())
    }

    /// Stores everything still in flight, indexes it, and records the manifest.
    pub fn commit(mut self, kind: &str, meta: serde_json::Value) -> Result<(Id, WriteStats)> {
        let tree = std::mem::replace(
            &mut *lock(&self.tree),
            Tree { cdc: CdcStream::new(self.shared.chunker), chunks: Vec::new(), entries: 0, bytes: 0 },
        );
        let mut rest = Vec::new();
        tree.cdc
            .finish(&mut |c| {
                rest.push(c);
                Ok(())
            })
            .map_err(|e| RepoError::io("cutting the entry stream", e))?;
        let mut tree_chunks = tree.chunks;
        tree_chunks.extend(self.store_chunks(rest)?);
        self.drain()?;
        self.lock.ensure_held()?;
        let manifest = Manifest {
            kind: kind.to_string(),
            created: chrono::Utc::now(),
            host: crate::lock::hostname(),
            meta,
            tree: tree_chunks,
            entries: tree.entries,
            bytes: tree.bytes,
        };
        let id = self.repo.write_manifest(&manifest)?;
        Ok((id, self.stats()))
    }

    /// Stores everything in flight and indexes it, without a manifest (the data is kept for
    /// reuse until a prune).
    pub fn flush(mut self) -> Result<WriteStats> {
        self.drain()?;
        Ok(self.stats())
    }

    pub fn stats(&self) -> WriteStats {
        let c = &self.shared.counters;
        WriteStats {
            chunks: c.chunks.load(Ordering::Relaxed),
            new_chunks: c.new_chunks.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            new_bytes: c.new_bytes.load(Ordering::Relaxed),
            stored_bytes: c.stored_bytes.load(Ordering::Relaxed),
            packs: c.packs.load(Ordering::Relaxed),
        }
    }

    /// The repository's chunker settings.
    pub fn chunker(&self) -> ChunkerParams {
        self.shared.chunker
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    fn store_chunks(&self, chunks: Vec<Vec<u8>>) -> Result<Vec<ChunkId>> {
        let mut stream = self.stream();
        for c in chunks {
            stream.push(c)?;
        }
        stream.finish()
    }

    /// Stores one file piece by piece, for callers that know which parts are already in
    /// the repository (an incremental backup reusing unchanged chunks without reading them).
    pub fn file(&self) -> FileStore<'_, 'r> {
        FileStore { stream: self.stream(), size: 0 }
    }

    fn stream(&self) -> Stream<'_, 'r> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        // Capacity is only address space until written: a stream of known chunks never touches it.
        let segment = PackBuilder::with_capacity(self.room(MIN_SEGMENT));
        Stream { writer: self, segment, waiting: VecDeque::new(), ids: Vec::new() }
    }

    /// Capacity for `target` bytes and one more chunk past it (sealing adds a few dozen bytes
    /// to each chunk): filling it never moves it.
    fn room(&self, target: usize) -> usize {
        target + self.shared.chunker.largest() + (64 << 10)
    }

    /// How much a stream gathers before handing it to the open pack.
    fn segment_size(&self) -> usize {
        (self.shared.pack_size / self.streams.load(Ordering::Relaxed).max(1)).max(MIN_SEGMENT)
    }

    /// Chunks one stream keeps in flight: enough to feed every worker when it is alone, fewer
    /// as more streams share the workers.
    fn window(&self) -> usize {
        2 + 2 * self.workers / self.streams.load(Ordering::Relaxed).max(1)
    }

    /// Moves a stream's segment into the open pack, and the pack to an uploader once full.
    fn append(&self, segment: &mut PackBuilder) -> Result<()> {
        if segment.is_empty() {
            return Ok(());
        }
        let pack_size = self.shared.pack_size;
        let full = {
            let mut open = lock(&self.open);
            if open.is_empty() {
                let buffer = lock(&self.shared.spare).pop().unwrap_or_default();
                *open = PackBuilder::with_buffer(buffer, self.room(pack_size + MIN_SEGMENT));
            }
            open.append(segment);
            (open.len() >= pack_size).then(|| std::mem::take(&mut *open))
        };
        match (full, &self.uploads) {
            (None, _) => Ok(()),
            (Some(pack), Some(uploads)) => uploads.send(pack).map_err(|_| self.closed()),
            (Some(_), None) => Err(self.closed()),
        }
    }

    fn closed(&self) -> RepoError {
        match self.shared.check_failure() {
            Err(e) => e,
            Ok(()) => RepoError::Invalid("the writer stopped".into()),
        }
    }

    fn check_failure(&self) -> Result<()> {
        self.shared.check_failure()
    }

    /// Uploads every open pack, waits for all threads, writes the last index object.
    fn drain(&mut self) -> Result<()> {
        let open = std::mem::take(&mut *lock(&self.open));
        if let (Some(uploads), false) = (&self.uploads, open.is_empty()) {
            let _ = uploads.send(open);
        }
        self.jobs = None;
        self.uploads = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.check_failure()?;
        write_index(&self.shared, true)
    }
}

impl Drop for Writer<'_> {
    /// An abandoned writer still stores and indexes what it has, so that a re-run reuses it.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            if let Err(e) = self.drain() {
                tracing::warn!("could not save the work of an abandoned writer: {e}");
            }
        }
    }
}

/// A file stored piece by piece ([`Writer::file`]): each piece is one chunk, new data or
/// a chunk the repository already holds.
pub struct FileStore<'w, 'r> {
    stream: Stream<'w, 'r>,
    size: u64,
}

impl std::fmt::Debug for FileStore<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStore({} bytes)", self.size)
    }
}

impl FileStore<'_, '_> {
    /// The next chunk of the file (at most the chunker's largest chunk).
    pub fn push(&mut self, data: Vec<u8>) -> Result<()> {
        if data.len() > MAX_CHUNK as usize {
            return Err(RepoError::Invalid(format!("a chunk of {} bytes is over the limit", data.len())));
        }
        self.size += data.len() as u64;
        self.stream.push(data)
    }

    /// The next chunk of the file is `id`, of `len` bytes, which the repository holds already
    /// (it must: the caller took it from a manifest kept under this writer's lock).
    pub fn push_stored(&mut self, id: ChunkId, len: u64) -> Result<()> {
        let c = &self.stream.writer.shared.counters;
        c.chunks.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len, Ordering::Relaxed);
        self.size += len;
        self.stream.waiting.push_back(Pending::Stored(id));
        Ok(())
    }

    /// The file's chunk list and size.
    pub fn finish(self) -> Result<(Vec<ChunkId>, u64)> {
        let writer = self.stream.writer;
        let chunks = self.stream.finish()?;
        writer.check_failure()?;
        Ok((chunks, self.size))
    }
}

/// One ordered stream of chunks, into segments.
struct Stream<'w, 'r> {
    writer: &'w Writer<'r>,
    segment: PackBuilder,
    waiting: VecDeque<Pending>,
    ids: Vec<ChunkId>,
}

/// A chunk of a stream: with a worker, or known already.
enum Pending {
    Processing(Receiver<Processed>),
    Stored(ChunkId),
}

impl Stream<'_, '_> {
    fn push(&mut self, data: Vec<u8>) -> Result<()> {
        let (reply, rx) = bounded(1);
        let jobs = self.writer.jobs.as_ref().ok_or_else(|| RepoError::Invalid("writer is closed".into()))?;
        jobs.send(Job { data, reply }).map_err(|_| self.writer.closed())?;
        self.waiting.push_back(Pending::Processing(rx));
        // Take results in order, keeping this stream's share of the workers busy.
        while self.waiting.len() > self.writer.window() {
            self.take_one()?;
        }
        Ok(())
    }

    fn take_one(&mut self) -> Result<()> {
        let rx = match self.waiting.pop_front() {
            None => return Ok(()),
            Some(Pending::Stored(id)) => {
                self.ids.push(id);
                return Ok(());
            }
            Some(Pending::Processing(rx)) => rx,
        };
        let done = rx.recv().map_err(|_| self.writer.closed())?;
        self.ids.push(done.id);
        if let Some((codec, raw_len, sealed)) = done.blob {
            self.segment.add(done.id, codec, raw_len, &sealed);
            if self.segment.len() >= self.writer.segment_size() {
                self.writer.append(&mut self.segment)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<ChunkId>> {
        while !self.waiting.is_empty() {
            self.take_one()?;
        }
        self.writer.append(&mut self.segment)?;
        Ok(std::mem::take(&mut self.ids))
    }
}

impl Drop for Stream<'_, '_> {
    fn drop(&mut self) {
        // An abandoned stream's chunks are still stored, for a re-run to reuse.
        if let Err(e) = self.writer.append(&mut self.segment) {
            tracing::debug!("dropping a stream's last segment: {e}");
        }
        self.writer.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

fn work(shared: &Shared, mut compressor: Compressor, jobs: &Receiver<Job>) {
    for job in jobs {
        let id = shared.crypto.chunk_id(&job.data);
        let len = job.data.len() as u64;
        let c = &shared.counters;
        c.chunks.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len, Ordering::Relaxed);
        let new = match shared.claim(&id) {
            Ok(new) => new,
            Err(e) => {
                fail(shared, e);
                false
            }
        };
        let blob = if new {
            c.new_chunks.fetch_add(1, Ordering::Relaxed);
            c.new_bytes.fetch_add(len, Ordering::Relaxed);
            let (codec, sealed) = match compressor.compress(&job.data) {
                Some((codec, packed)) => (codec, shared.crypto.seal_blob(&id, &packed)),
                None => (Codec::Raw, shared.crypto.seal_blob(&id, &job.data)),
            };
            Some((codec, len as u32, sealed))
        } else {
            None
        };
        let _ = job.reply.send(Processed { id, blob });
    }
}

fn upload(shared: &Shared, packs: &Receiver<PackBuilder>) {
    for pack in packs {
        let (id, bytes, blobs) = pack.finish(&shared.crypto);
        let size = bytes.len() as u64;
        if let Err(e) = put_immutable(shared.storage.as_ref(), &layout::path(Kind::Pack, &id), bytes.clone())
        {
            fail(shared, e);
            continue;
        }
        shared.give_back(bytes);
        shared.counters.packs.fetch_add(1, Ordering::Relaxed);
        shared.counters.stored_bytes.fetch_add(size, Ordering::Relaxed);
        // Visible to this writer's dedup at once; on storage once its index object is written
        // (every writer reloads the index from storage when it starts).
        if let Err(e) = shared.index.write().unwrap_or_else(|e| e.into_inner()).add_pack(id, &blobs) {
            fail(shared, e);
            continue;
        }
        // Indexed now, so no longer claimed: the claims stay as few as the chunks in flight.
        let mut claimed = lock(&shared.claimed);
        for b in &blobs {
            claimed.remove(&b.id);
        }
        drop(claimed);
        lock(&shared.unindexed).0.push((id, blobs));
        if let Err(e) = write_index(shared, false) {
            fail(shared, e);
        }
    }
}

/// Writes an index object for stored packs not yet indexed: always with `all`, otherwise
/// only once enough packs or time have gathered.
fn write_index(shared: &Shared, all: bool) -> Result<()> {
    let packs = {
        let mut unindexed = lock(&shared.unindexed);
        let due = unindexed.0.len() >= shared.index_every_packs || unindexed.1.elapsed() >= INDEX_EVERY;
        if unindexed.0.is_empty() || !(all || due) {
            return Ok(());
        }
        unindexed.1 = Instant::now();
        std::mem::take(&mut unindexed.0)
    };
    store_index(shared.storage.as_ref(), &shared.crypto, &packs).map(drop)
}

/// The packs in storage that no index object names (left by an interrupted writer, or being
/// stored by one running now, which will index them too: an index may name a pack twice),
/// with their blobs, now in `repo`'s index. A pack whose header does not read is left to
/// `check` and `prune`.
fn unindexed_packs(repo: &Repository) -> Result<Vec<PackBlobs>> {
    let mut found = Vec::new();
    let indexed = repo.index().packs()?;
    for meta in repo.storage.list(layout::DATA) {
        let meta = meta?;
        let Some(id) = layout::id_of(Kind::Pack, &meta.path) else { continue };
        if indexed.contains(&id) {
            continue;
        }
        match crate::check::read_pack_header(repo, &id, meta.size) {
            Ok(blobs) => found.push((id, blobs)),
            Err(e) => tracing::warn!("not reusing pack {}: {e}", id.short()),
        }
    }
    let mut index = repo.index.write().unwrap_or_else(|e| e.into_inner());
    for (id, blobs) in &found {
        index.add_pack(*id, blobs)?;
    }
    Ok(found)
}

fn fail(shared: &Shared, e: RepoError) {
    tracing::error!("{e}");
    lock(&shared.failure).get_or_insert(e);
    shared.failed.store(true, Ordering::SeqCst);
}

impl Shared {
    /// Keeps a stored pack's buffer for the next pack. Reusing a few large buffers, rather than
    /// allocating one per pack and freeing it on another thread, keeps the allocator from
    /// holding freed packs in every thread's arena (memory grew with the channels).
    fn give_back(&self, bytes: Bytes) {
        if let Ok(mut buffer) = bytes.try_into_mut() {
            let mut spare = lock(&self.spare);
            if spare.len() < 2 {
                // Emptied first: the whole allocation comes back, and nothing is moved.
                buffer.clear();
                spare.push(Vec::from(buffer));
            }
        }
    }

    /// Whether `id` is new: in neither the index nor this writer's claims, and now claimed.
    /// The claims are looked at first and under their lock, and an uploader indexes a chunk
    /// before it drops the claim, so a chunk on its way into the index is never taken as new.
    fn claim(&self, id: &ChunkId) -> Result<bool> {
        let mut claimed = lock(&self.claimed);
        if claimed.contains(id) || self.index.read().unwrap_or_else(|e| e.into_inner()).contains(id)? {
            return Ok(false);
        }
        Ok(claimed.insert(*id))
    }

    /// The background failure (the error itself the first time, a reminder after that).
    fn check_failure(&self) -> Result<()> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(lock(&self.failure).take().unwrap_or_else(|| {
            RepoError::Invalid("an earlier storage error stopped this writer; nothing was recorded".into())
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

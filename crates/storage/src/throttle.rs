//! Bandwidth limit: a [`Storage`] wrapper pacing object bytes read and written to a rate
//! in bytes per second.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{ObjectMeta, PutMode, Storage, StorageError};

/// Limits the average rate of object data moved through `inner`, separately for reads
/// (`get`, `get_range`) and writes (`put`); metadata calls are not limited. The limit is
/// shared by all threads using this value.
///
/// The trait hands over whole objects, so pacing is per object: a call moving `n` bytes
/// completes no earlier than `n / rate` seconds after the previous call of the same
/// direction would have finished at the limit. Over any stretch longer than one object the
/// rate holds; within one object the transfer itself may burst.
#[derive(Debug)]
pub struct Throttled {
    inner: Arc<dyn Storage>,
    bytes_per_second: u64,
    reads: Pacer,
    writes: Pacer,
}

impl Throttled {
    /// Wraps `inner`. A `bytes_per_second` of 0 is treated as 1.
    pub fn new(inner: Arc<dyn Storage>, bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1);
        Throttled { inner, bytes_per_second: rate, reads: Pacer::new(rate), writes: Pacer::new(rate) }
    }

    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }
}

/// A virtual clock: the instant at which everything granted so far would have been
/// transferred at the limit.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    busy_until: Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer { rate, busy_until: Mutex::new(None) }
    }

    /// Books `bytes` and returns when their transfer may complete.
    fn reserve(&self, bytes: u64) -> Instant {
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        // A poisoned lock only means another thread panicked mid-update of an Instant.
        let mut busy = self.busy_until.lock().unwrap_or_else(|p| p.into_inner());
        let start = busy.map_or(now, |b| b.max(now));
        let done = start + cost;
        *busy = Some(done);
        done
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

impl Storage for Throttled {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, path: &str, data: Bytes, mode: PutMode) -> Result<(), StorageError> {
        // Book first, sleep after: the transfer's own duration counts towards the budget.
        let done = self.writes.reserve(data.len() as u64);
        let result = self.inner.put(path, data, mode);
        sleep_until(done);
        result
    }

    fn get(&self, path: &str) -> Result<Bytes, StorageError> {
        let data = self.inner.get(path)?;
        sleep_until(self.reads.reserve(data.len() as u64));
        Ok(data)
    }

    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let done = self.reads.reserve(range.end.saturating_sub(range.start));
        let result = self.inner.get_range(path, range);
        sleep_until(done);
        result
    }

    fn stat(&self, path: &str) -> Result<ObjectMeta, StorageError> {
        self.inner.stat(path)
    }

    fn list(&self, prefix: &str) -> Box<dyn Iterator<Item = Result<ObjectMeta, StorageError>> + Send + '_> {
        self.inner.list(prefix)
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.inner.delete(path)
    }
}

//! Fault injection for tests: a [`Storage`] wrapper that fails, tears or delays chosen
//! calls, simulates a crash, and records every call.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::{ErrorKind, ObjectMeta, PutMode, Storage, StorageError};

/// The kind of a storage call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Put,
    Get,
    GetRange,
    Stat,
    List,
    Delete,
}

/// What an injected fault does to the call it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this kind before reaching the inner storage: nothing happens.
    Fail(ErrorKind),
    /// A put torn half-way, as by a crash or a dropped connection: the call fails and, as on
    /// every real backend (objects are atomic), nothing appears at the path. The inner
    /// storage is not called. On other calls, same as `Fail(ErrorKind::Other)`.
    TornWrite,
    /// The call takes effect on the inner storage, then reports failure (a lost
    /// acknowledgement: the caller cannot tell whether the object was written).
    LostAck,
    /// The process "dies" here: this call is torn as with `TornWrite`, and every later call
    /// of any kind fails, until [`FaultyStorage::disarm`].
    Crash,
    /// Sleep, then proceed normally.
    Delay(Duration),
}

/// Which matching calls a rule hits; calls are counted per rule, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Only the n-th matching call.
    Nth(u64),
    /// Every matching call after the first n (n = 0: all of them).
    After(u64),
}

/// One fault-injection rule: calls of kind `op` (any kind if `None`) whose path starts
/// with `path_prefix` (if set) are counted, and those selected by `trigger` get `fault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub op: Option<OpKind>,
    pub path_prefix: Option<String>,
    pub trigger: Trigger,
    pub fault: Fault,
}

/// One call as seen by [`FaultyStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub op: OpKind,
    /// The object path (the prefix for `List`).
    pub path: String,
    /// Bytes written by a put, requested by a range read.
    pub bytes: Option<u64>,
    /// The fault injected into this call, if any (delays included).
    pub fault: Option<Fault>,
}

/// Wraps any storage to inject faults and count calls, for crash-safety tests.
///
/// ```
/// # use std::sync::Arc;
/// # use cairn_storage::{FaultyStorage, OpKind, PutMode, Storage};
/// # let dir = std::env::temp_dir().join(format!("cairn-doc-{}", std::process::id()));
/// let inner = cairn_storage::open(dir.to_str().unwrap(), &Default::default()).unwrap();
/// // The process "dies" during the third put: two objects land, the rest never do.
/// let faulty = FaultyStorage::new(inner.clone()).crash_after_puts(2);
/// for i in 0..4 {
///     let _ = faulty.put(&format!("obj/{i}"), "x".into(), PutMode::Create);
/// }
/// assert_eq!(faulty.count(Some(OpKind::Put)), 4);
/// assert!(inner.stat("obj/1").is_ok() && inner.stat("obj/2").is_err());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each rule with the number of calls it has matched so far.
    rules: Vec<(FaultRule, u64)>,
    calls: Vec<CallRecord>,
    crashed: bool,
}

/// What to do with one call, decided under the lock and acted upon outside it.
struct Decision {
    delay: Duration,
    fault: Option<Fault>,
    call_number: usize,
}

impl FaultyStorage {
    /// Passes everything through until rules are added.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        FaultyStorage { inner, state: Mutex::new(State::default()) }
    }

    /// Adds a rule (builder style).
    pub fn with_rule(self, rule: FaultRule) -> Self {
        self.add_rule(rule);
        self
    }

    /// Adds a rule to a storage already shared.
    pub fn add_rule(&self, rule: FaultRule) {
        self.lock().rules.push((rule, 0));
    }

    /// Every put after the first `n` fails (torn: nothing written); other calls work.
    pub fn fail_after_puts(self, n: u64) -> Self {
        self.with_rule(rule(Some(OpKind::Put), Trigger::After(n), Fault::TornWrite))
    }

    /// Put number `n + 1` is torn and then every call fails: a process killed while
    /// writing, after `n` completed puts. Looping `n` over 0.. kills a multi-object
    /// operation at every step.
    pub fn crash_after_puts(self, n: u64) -> Self {
        self.with_rule(rule(Some(OpKind::Put), Trigger::Nth(n + 1), Fault::Crash))
    }

    /// Only the `n`-th call (from 1) of kind `op` (any kind if `None`) fails.
    pub fn fail_nth(self, op: Option<OpKind>, n: u64) -> Self {
        self.with_rule(rule(op, Trigger::Nth(n), Fault::Fail(ErrorKind::Other)))
    }

    /// Every call of kind `op` (any if `None`) after the first `n` fails.
    pub fn fail_after(self, op: Option<OpKind>, n: u64) -> Self {
        self.with_rule(rule(op, Trigger::After(n), Fault::Fail(ErrorKind::Other)))
    }

    /// The `n`-th put (from 1) is torn: it fails and leaves nothing.
    pub fn torn_put(self, n: u64) -> Self {
        self.with_rule(rule(Some(OpKind::Put), Trigger::Nth(n), Fault::TornWrite))
    }

    /// The `n`-th put (from 1) lands but reports failure.
    pub fn lost_ack_put(self, n: u64) -> Self {
        self.with_rule(rule(Some(OpKind::Put), Trigger::Nth(n), Fault::LostAck))
    }

    /// Every call of kind `op` (any if `None`) first sleeps `delay`.
    pub fn latency(self, op: Option<OpKind>, delay: Duration) -> Self {
        self.with_rule(rule(op, Trigger::After(0), Fault::Delay(delay)))
    }

    /// Removes all rules and revives a crashed storage; the call log is kept.
    pub fn disarm(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.crashed = false;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    /// Number of calls of kind `op` so far (all calls if `None`), faulted or not.
    pub fn count(&self, op: Option<OpKind>) -> u64 {
        self.lock().calls.iter().filter(|c| op.is_none_or(|op| c.op == op)).count() as u64
    }

    /// Number of calls that got a failure injected (delays excluded).
    pub fn injected_failures(&self) -> u64 {
        let state = self.lock();
        state.calls.iter().filter(|c| matches!(&c.fault, Some(f) if !matches!(f, Fault::Delay(_)))).count()
            as u64
    }

    /// Whether an error came from this wrapper rather than from the inner storage.
    pub fn is_injected(err: &StorageError) -> bool {
        err.message.starts_with("injected fault: ")
    }

    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the log from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decide(&self, op: OpKind, path: &str, bytes: Option<u64>) -> Decision {
        let mut state = self.lock();
        let mut delay = Duration::ZERO;
        let mut fault = state.crashed.then_some(Fault::Fail(ErrorKind::Other));
        for (rule, matched) in &mut state.rules {
            let kind_ok = rule.op.is_none_or(|k| k == op);
            let path_ok = rule.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
            if !(kind_ok && path_ok) {
                continue;
            }
            *matched += 1;
            let fires = match rule.trigger {
                Trigger::Nth(n) => *matched == n,
                Trigger::After(n) => *matched > n,
            };
            match (&rule.fault, fires) {
                (_, false) => {}
                (Fault::Delay(d), true) => delay += *d,
                (f, true) if fault.is_none() => fault = Some(f.clone()),
                _ => {}
            }
        }
        if fault == Some(Fault::Crash) {
            state.crashed = true;
        }
        let recorded = fault.clone().or((!delay.is_zero()).then_some(Fault::Delay(delay)));
        state.calls.push(CallRecord { op, path: path.to_string(), bytes, fault: recorded });
        Decision { delay, fault, call_number: state.calls.len() }
    }

    /// Runs one call under the injected faults. `call` is the inner operation.
    fn run<T>(
        &self,
        op: OpKind,
        path: &str,
        bytes: Option<u64>,
        call: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let decision = self.decide(op, path, bytes);
        if !decision.delay.is_zero() {
            std::thread::sleep(decision.delay);
        }
        let injected = |what: &str, kind: ErrorKind| StorageError {
            kind,
            message: format!(
                "injected fault: {what} on {op:?} '{path}' (call #{}) in {}",
                decision.call_number,
                self.inner.location()
            ),
            retryable: false,
        };
        match decision.fault {
            None | Some(Fault::Delay(_)) => call(),
            Some(Fault::Fail(kind)) => Err(injected("failure", kind)),
            Some(Fault::TornWrite) => Err(injected("torn write", ErrorKind::Other)),
            Some(Fault::Crash) => Err(injected("crash", ErrorKind::Other)),
            Some(Fault::LostAck) => {
                let _ = call();
                Err(injected("lost acknowledgement", ErrorKind::Unreachable))
            }
        }
    }
}

fn rule(op: Option<OpKind>, trigger: Trigger, fault: Fault) -> FaultRule {
    FaultRule { op, path_prefix: None, trigger, fault }
}

impl Storage for FaultyStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, path: &str, data: Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.run(OpKind::Put, path, Some(data.len() as u64), || self.inner.put(path, data, mode))
    }

    fn get(&self, path: &str) -> Result<Bytes, StorageError> {
        self.run(OpKind::Get, path, None, || self.inner.get(path))
    }

    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let len = range.end.saturating_sub(range.start);
        self.run(OpKind::GetRange, path, Some(len), || self.inner.get_range(path, range))
    }

    fn stat(&self, path: &str) -> Result<ObjectMeta, StorageError> {
        self.run(OpKind::Stat, path, None, || self.inner.stat(path))
    }

    fn list(&self, prefix: &str) -> Box<dyn Iterator<Item = Result<ObjectMeta, StorageError>> + Send + '_> {
        match self.run(OpKind::List, prefix, None, || Ok(self.inner.list(prefix))) {
            Ok(iter) => iter,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.run(OpKind::Delete, path, None, || self.inner.delete(path))
    }
}

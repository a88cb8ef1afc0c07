//! Progress reporting: the engine says what it does and how far it got; the CLI renders it
//! (bars on a terminal, periodic lines otherwise, JSON lines with `--format json`).

/// Receives progress from long operations. Called from several threads at once.
pub trait Progress: Send + Sync {
    /// A phase starts (`backup`, `wal`, `restore`, `validate`) with this many bytes to do.
    fn begin(&self, _phase: &str, _total_bytes: u64) {}
    /// `bytes` more are done.
    fn advance(&self, _bytes: u64) {}
    /// The phase is over.
    fn end(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

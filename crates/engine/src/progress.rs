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

/// A reader or writer that counts what passes through it as progress.
pub(crate) struct Counting<'p, T> {
    pub inner: T,
    pub progress: &'p dyn Progress,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl<W: std::io::Write> std::io::Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

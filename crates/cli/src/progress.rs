//! Rendering the engine's progress: a bar on a terminal, a line every few seconds otherwise,
//! JSON lines with `--format json`, nothing without `--progress`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_engine::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Format;

pub fn renderer(enabled: bool, format: Format) -> Box<dyn Progress> {
    match (enabled, format) {
        (false, _) => Box::new(cairn_engine::Silent),
        (true, Format::Json) => Box::new(Lines { json: true, ..Lines::default() }),
        (true, Format::Plain) if std::io::stderr().is_terminal() => Box::new(Bar::default()),
        (true, Format::Plain) => Box::new(Lines::default()),
    }
}

#[derive(Default)]
struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn begin(&self, phase: &str, total: u64) {
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(phase.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(bytes);
        }
    }
    fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish();
        }
    }
}

/// Periodic lines on standard error (plain), or JSON lines on standard output.
#[derive(Default)]
struct Lines {
    json: bool,
    state: Mutex<Option<(String, u64, Instant, Instant)>>,
    done: AtomicU64,
}

impl Lines {
    fn emit(&self, phase: &str, done: u64, total: u64, since: Instant) {
        let secs = since.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        if self.json {
            let line = serde_json::json!({"progress": {"phase": phase, "done_bytes": done, "total_bytes": total, "bytes_per_second": rate as u64}});
            println!("{line}");
        } else {
            let pct = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
            eprintln!(
                "{phase}: {pct:.0}% ({} of {}, {}/s)",
                crate::output::bytes(done),
                crate::output::bytes(total),
                crate::output::bytes(rate as u64)
            );
        }
    }
}

impl Progress for Lines {
    fn begin(&self, phase: &str, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        let now = Instant::now();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((phase.to_string(), total, now, now));
    }
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((phase, total, started, last)) = state.as_mut() {
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                self.emit(phase, done, *total, *started);
            }
        }
    }
    fn end(&self) {
        if let Some((phase, total, started, _)) = self.state.lock().unwrap_or_else(|e| e.into_inner()).take()
        {
            self.emit(&phase, self.done.load(Ordering::Relaxed), total, started);
        }
    }
}

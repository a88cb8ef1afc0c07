//! The flavor's client tools (`pg_dump`, `pg_restore`, `psql`, ...): where they are, which
//! version they are, and running them with the connection's settings, their failures turned
//! into errors that say what the tool said.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::{EngineError, Result};
use crate::instance::Connection;

/// Where Debian installs each major's client tools: `<DEBIAN_ROOT>/<major>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// A tool found, with its version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub path: PathBuf,
    /// As the tool prints it: `15.18`.
    pub version: String,
    pub major: u32,
}

/// What the tool must be able to handle, for the error message when it cannot.
#[derive(Debug, Clone)]
pub struct Need {
    pub major: u32,
    /// `the server (PostgreSQL 17.6)`, `the dump (made by pg_dump 17.6)`.
    pub what: String,
}

/// Finds `name` of major `need.major` or later: in `dir` alone when given; else on `PATH`,
/// in Debian's directory for that major, then in every installed major, newest first. The
/// first that is new enough wins.
pub fn find(name: &str, dir: Option<&Path>, need: &Need) -> Result<Tool> {
    let candidates = candidates(name, dir, need.major);
    let mut found: Vec<Tool> = Vec::new();
    for path in &candidates {
        if let Some(tool) = version_of(name, path)? {
            if tool.major >= need.major {
                return Ok(tool);
            }
            found.push(tool);
        }
    }
    let install = format!(
        "install the client tools of major {} or later (Debian: postgresql-client-{}) or point --dump-bin-dir at them",
        need.major, need.major
    );
    match found.into_iter().max_by_key(|t| t.major) {
        Some(newest) => Err(EngineError::ToolTooOld(format!(
            "{name} {} ({}) is older than {}: {install}",
            newest.version,
            newest.path.display(),
            need.what
        ))),
        None => {
            let searched = match dir {
                Some(dir) => dir.display().to_string(),
                None => format!("PATH and {DEBIAN_ROOT}/*/bin"),
            };
            Err(EngineError::ToolMissing(format!("{name} was not found in {searched}: {install}")))
        }
    }
}

/// Where `name` may be, in search order, without duplicates.
fn candidates(name: &str, dir: Option<&Path>, major: u32) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match dir {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let mut dirs: Vec<PathBuf> =
                std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
            dirs.push(Path::new(DEBIAN_ROOT).join(major.to_string()).join("bin"));
            let mut installed: Vec<u32> = std::fs::read_dir(DEBIAN_ROOT)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            installed.sort_unstable_by(|a, b| b.cmp(a));
            dirs.extend(installed.iter().map(|m| Path::new(DEBIAN_ROOT).join(m.to_string()).join("bin")));
            dirs
        }
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for path in dirs.iter().map(|d| d.join(name)).filter(|p| p.is_file()) {
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        // Debian's /usr/bin/pg_dump is a wrapper choosing a version itself: keep it, it is not
        // the same program as the one it may run.
        if !out.iter().any(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == real) {
            out.push(path);
        }
    }
    out
}

/// Runs `path --version`; `None` when it cannot be run at all.
fn version_of(name: &str, path: &Path) -> Result<Option<Tool>> {
    let Ok(out) = Command::new(path).arg("--version").stdin(Stdio::null()).output() else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some((version, major)) = out.status.success().then(|| parse_version(&text)).flatten() else {
        tracing::warn!("{} --version printed '{}': skipped", path.display(), text.trim());
        return Ok(None);
    };
    Ok(Some(Tool { name: name.to_string(), path: path.to_path_buf(), version, major }))
}

/// The version in `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`,
/// `gs_dump (openGauss 5.0.0 build a07d57c3) ...` or `sys_dump (Kingbase) V008R006C008B0014`:
/// the first word that starts with a digit (after a `V`), and its leading number as the major.
fn parse_version(text: &str) -> Option<(String, u32)> {
    text.split_whitespace().find_map(|word| {
        let word = word.trim_start_matches('(').trim_end_matches(')');
        let word = word.strip_prefix(['V', 'v']).unwrap_or(word);
        Some((word.to_string(), major_of(word)?))
    })
}

/// The major of a version as a tool prints it: its leading number (`15` of `15.18`, `16` of
/// `16devel`).
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Tool {
    /// A command running this tool against `connection` (database `database`, else the
    /// connection's): settings go through libpq's environment, so no name is ever parsed as
    /// a connection string. Standard input and output are closed, standard error captured.
    pub fn command(&self, connection: &Connection, database: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.path);
        let database = database.or(connection.database.as_deref());
        let settings = [
            ("PGHOST", connection.host.clone()),
            ("PGPORT", connection.port.map(|p| p.to_string())),
            ("PGUSER", connection.user.clone()),
            ("PGDATABASE", database.map(str::to_string)),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        cmd.env("PGAPPNAME", "cairn").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// Starts `cmd` (made by [`Tool::command`]). What it writes to standard error is
    /// collected; piped standard input and output are the caller's (or see
    /// [`Running::collect_stdout`]).
    pub fn spawn(&self, mut cmd: Command) -> Result<Running> {
        let mut child =
            cmd.spawn().map_err(|e| EngineError::io(format!("starting {}", self.path.display()), e))?;
        let stderr = child.stderr.take().map(collect);
        Ok(Running { tool: self.name.clone(), child, stderr, stdout: None })
    }
}

/// Reads a pipe to its end on a thread of its own (so that a tool never blocks writing it).
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// What a tool wrote.
#[derive(Debug, Clone, Default)]
pub struct Said {
    pub stdout: String,
    pub stderr: String,
}

/// A tool that runs.
#[derive(Debug)]
pub struct Running {
    tool: String,
    pub child: Child,
    stderr: Option<JoinHandle<String>>,
    stdout: Option<JoinHandle<String>>,
}

impl Running {
    /// Collects standard output (when piped and not taken) for [`Running::wait`].
    pub fn collect_stdout(&mut self) {
        self.stdout = self.child.stdout.take().map(collect);
    }

    /// Waits for the end; a failure is an error carrying the end of what the tool said.
    pub fn wait(mut self) -> Result<Said> {
        let status =
            self.child.wait().map_err(|e| EngineError::io(format!("waiting for {}", self.tool), e))?;
        let text = |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let said = Said { stderr: text(self.stderr.take()), stdout: text(self.stdout.take()) };
        if status.success() {
            return Ok(said);
        }
        Err(EngineError::ToolFailed {
            tool: self.tool.clone(),
            status: status.to_string(),
            stderr: tail(&said.stderr),
        })
    }

    /// Stops the tool (after a failure of ours) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the tool has ended; not knowing is an error (waiting on would never end).
    pub fn finished(&mut self) -> Result<bool> {
        let status =
            self.child.try_wait().map_err(|e| EngineError::io(format!("waiting for {}", self.tool), e))?;
        Ok(status.is_some())
    }
}

/// The last lines of a tool's messages: enough to say why, not a whole log.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(5);
    match lines[from..].join("; ") {
        s if s.is_empty() => "it said nothing".into(),
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_every_flavor_parse() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(parse_version("pg_restore (PostgreSQL) 17.2"), Some(("17.2".into(), 17)));
        assert_eq!(parse_version("pg_dump (PostgreSQL) 16devel"), Some(("16devel".into(), 16)));
        assert_eq!(
            parse_version("gs_dump (openGauss 5.0.0 build a07d57c3) compiled at 2023-03-30"),
            Some(("5.0.0".into(), 5))
        );
        assert_eq!(
            parse_version("sys_dump (Kingbase) V008R006C008B0014"),
            Some(("008R006C008B0014".into(), 8))
        );
        assert_eq!(parse_version("no version here"), None);
    }

    #[test]
    fn a_missing_tool_names_where_it_was_looked_for() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let need = Need { major: 17, what: "the server (PostgreSQL 17.6)".into() };
        let err = find("pg_dump", Some(dir.path()), &need).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not found in") && err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("postgresql-client-17"), "{err}");
    }

    #[test]
    fn messages_keep_their_last_lines() {
        assert_eq!(tail(""), "it said nothing");
        assert_eq!(tail("a\n\nb\nc\nd\ne\nf\n"), "b; c; d; e; f");
    }
}

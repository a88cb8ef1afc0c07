//! `PgCluster`: a throwaway PostgreSQL server (any major 13..=18) on 127.0.0.1, for backup and
//! restore tests against a real database.
//!
//! Server binaries: major 15 comes from Debian's packages (`/usr/lib/postgresql/15/bin`), the
//! other majors from `scripts/install-postgres`, which unpacks them into
//! `${CAIRN_PG_DIR:-$HOME/.cache/cairn/postgres}/<major>/native/bin`. A missing major panics
//! (telling to run the script) rather than skipping: a skipped backup test would pass in CI
//! while testing nothing. Client tools (`psql`, `pg_dump`, `pg_amcheck`, ...) come from the OS
//! packages only; psql 15 talks to servers of every major.
//!
//! Each cluster lives in its own temp directory: the data directory, the server log and the
//! Unix socket. PostgreSQL refuses to run as root, so when the tests run as root every server
//! command runs as the `postgres` OS user (`runuser -u postgres --`) and the temp directory
//! belongs to that user.
//!
//! Cleanup: dropping a `PgCluster` stops the server and removes the temp directory. pg_ctl
//! detaches the server into its own session, so a test process that dies without unwinding
//! (SIGKILL, a harness timeout, `panic = "abort"`) would leave it running; a small watchdog
//! shell per cluster waits for our end of a pipe to close and then stops the server and
//! removes the temp directory.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where Debian 12's PostgreSQL 15 packages put the server and all client tools.
const OS_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The major version the OS packages provide.
const OS_MAJOR: u32 = 15;
/// The database superuser `initdb -U` creates, and the OS user servers run as under root.
const USER: &str = "postgres";
const HOST: &str = "127.0.0.1";
/// Marks the block of settings this module appends to `postgresql.conf`, so that it can be
/// replaced (new port after a collision) without touching initdb's settings.
const CONF_BEGIN: &str = "# BEGIN cairn-testkit PgCluster settings";
const CONF_END: &str = "# END cairn-testkit PgCluster settings";
const INSTALL_HINT: &str = "run scripts/install-postgres";

/// Options for [`PgCluster::start_with`] and [`PgCluster::from_data_dir_with`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    settings: Vec<(String, String)>,
    start_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { settings: Vec::new(), start_timeout: Duration::from_secs(60) }
    }
}

impl PgOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A server setting (`wal_level`, `archive_mode`, `archive_command`, `summarize_wal`, ...),
    /// applied after (so overriding) the defaults this module writes. The value is given
    /// unquoted, as `SHOW` prints it; quoting is done here.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// How long `pg_ctl start` may wait for the server to accept connections (default 60 s;
    /// a restored data directory may need longer to replay WAL).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
}

/// A running (or stopped) PostgreSQL cluster owned by a test. See the module docs.
#[derive(Debug)]
pub struct PgCluster {
    major: u32,
    bin_dir: PathBuf,
    /// Holds the Unix socket and the server log; for a cluster made by `start`, also the
    /// data directory. Removed on drop.
    work: tempfile::TempDir,
    data_dir: PathBuf,
    port: u16,
    /// The caller's settings: in our `postgresql.conf` block for a cluster made by `start`;
    /// on the server command line for `from_data_dir`, whose files (a restored copy) are not
    /// ours to edit.
    settings: Vec<(String, String)>,
    /// Whether `postgresql.conf` carries our settings block (clusters made by `start`).
    owns_conf: bool,
    start_timeout: Duration,
    watchdog: Option<Child>,
}

impl PgCluster {
    /// initdb's a new cluster of `major` in a temp directory and starts it on a free port.
    /// Panics if that major's binaries are not installed (run `scripts/install-postgres`).
    pub fn start(major: u32) -> PgCluster {
        Self::start_with(major, PgOptions::default())
    }

    /// [`PgCluster::start`] with extra `postgresql.conf` settings.
    pub fn start_with(major: u32, options: PgOptions) -> PgCluster {
        let bin_dir = server_bin_dir(major);
        let work = work_dir();
        let data_dir = work.path().join("data");
        let mut cluster = PgCluster {
            major,
            bin_dir,
            data_dir,
            port: free_port(),
            settings: options.settings,
            owns_conf: true,
            start_timeout: options.start_timeout,
            watchdog: None,
            work,
        };
        cluster.initdb();
        cluster.write_settings();
        cluster.spawn_watchdog();
        cluster.start_server();
        cluster
    }

    /// Starts a server of `major` on an existing data directory, typically one a test
    /// restored from a backup, on a new free port. Port, socket directory and listen address
    /// are given on the server command line (`-p`, `-k`, `-c`), overriding whatever the copied
    /// `postgresql.conf` says, so the directory's files are left as the restore wrote them.
    ///
    /// The directory is not removed on drop (the caller owns it). When running as root it is
    /// handed to the `postgres` user (recursively) with mode 0700, as the server requires, and
    /// temp directories above it are made traversable for that user.
    pub fn from_data_dir(major: u32, data_dir: impl AsRef<Path>) -> PgCluster {
        Self::from_data_dir_with(major, data_dir, PgOptions::default())
    }

    /// [`PgCluster::from_data_dir`] with settings, passed as `-c name=value` server options
    /// (e.g. `restore_command` and `recovery_target_time` for a point-in-time restore).
    pub fn from_data_dir_with(major: u32, data_dir: impl AsRef<Path>, options: PgOptions) -> PgCluster {
        let bin_dir = server_bin_dir(major);
        let data_dir = fs::canonicalize(data_dir.as_ref())
            .unwrap_or_else(|e| panic!("data directory {}: {e}", data_dir.as_ref().display()));
        // The server would refuse a mismatch too, but only in its log; say it plainly.
        let version = fs::read_to_string(data_dir.join("PG_VERSION")).unwrap_or_else(|e| {
            panic!("{} is not a PostgreSQL data directory (PG_VERSION: {e})", data_dir.display())
        });
        assert_eq!(
            version.trim(),
            major.to_string(),
            "{} holds a PostgreSQL {} cluster, not {major}",
            data_dir.display(),
            version.trim()
        );
        prepare_foreign_data_dir(&data_dir);
        let mut cluster = PgCluster {
            major,
            bin_dir,
            data_dir,
            port: free_port(),
            settings: options.settings,
            owns_conf: false,
            start_timeout: options.start_timeout,
            watchdog: None,
            work: work_dir(),
        };
        cluster.spawn_watchdog();
        cluster.start_server();
        cluster
    }

    pub fn major(&self) -> u32 {
        self.major
    }

    /// The directory holding this major's `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The OS packages' directory of client tools (`psql`, `pg_dump`, `pg_amcheck`,
    /// `pg_checksums`, `pgbench`, ...). These are version 15: network clients work against
    /// every major; tools that read a data directory (`pg_checksums`) only against 15.
    pub fn client_bin_dir() -> &'static Path {
        Path::new(OS_BIN_DIR)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`: the server listens on TCP there (and on a Unix socket in
    /// [`PgCluster::socket_dir`]).
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser, `postgres` (trust authentication, no password).
    pub fn user(&self) -> &str {
        USER
    }

    /// The directory of the server's Unix socket (also holds the log).
    pub fn socket_dir(&self) -> &Path {
        self.work.path()
    }

    /// The server log file (all starts of this cluster are appended to it).
    pub fn log_path(&self) -> PathBuf {
        self.work.path().join("postgres.log")
    }

    /// libpq keyword/value connection string for database `postgres`.
    pub fn connection_string(&self) -> String {
        format!("host={HOST} port={} user={USER} dbname=postgres", self.port)
    }

    /// Environment for child processes (psql, pg_dump, cairn itself) to reach this server:
    /// `cmd.envs(cluster.env())`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", HOST.to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", USER.to_string()),
            ("PGDATABASE", "postgres".to_string()),
        ]
    }

    /// Runs `sql` with psql in database `postgres`; returns its trimmed output (unaligned,
    /// tuples only: one line per row, columns separated by `|`). Panics on any error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// [`PgCluster::psql`] in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql_db(db, sql).unwrap_or_else(|stderr| {
            panic!("psql failed on PostgreSQL {} port {} (db {db}):\n{sql}\n{stderr}", self.major, self.port)
        })
    }

    /// [`PgCluster::psql_db`] returning psql's stderr as the error instead of panicking, for
    /// statements that are expected to fail.
    pub fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = Path::new(OS_BIN_DIR).join("psql");
        assert!(psql.is_file(), "{} is missing: {INSTALL_HINT}", psql.display());
        let mut cmd = Command::new(&psql);
        clear_pg_env(&mut cmd);
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-U", USER])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", psql.display()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!("{}\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`, a shutdown checkpoint). No-op if it is
    /// not running.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]);
        if !out.status.success() {
            panic!("pg_ctl stop failed: {}\n{}", output_text(&out), self.log_tail());
        }
    }

    /// Starts the server again after [`stop`](PgCluster::stop) or
    /// [`kill9`](PgCluster::kill9) (crash recovery runs then). Panics if it is running.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "PostgreSQL {} on port {} is already running", self.major, self.port);
        self.start_server();
    }

    /// [`stop`](PgCluster::stop) then [`start_again`](PgCluster::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Whether the postmaster of this data directory is alive.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(process_alive)
    }

    /// Crashes the server: SIGKILL to the postmaster and every server process (backends,
    /// checkpointer, WAL writer, ...) at once, so nothing gets to write after the "crash"
    /// (left alone, the children would notice the postmaster's death and exit on their own,
    /// maybe after writing). Returns once they are all gone; the next start runs crash
    /// recovery.
    pub fn kill9(&mut self) {
        let pid = self.postmaster_pid().filter(|&pid| process_alive(pid));
        let Some(pid) = pid else {
            panic!("kill9: PostgreSQL {} on port {} is not running", self.major, self.port);
        };
        if let Err(survivors) = kill_tree(pid) {
            panic!("server processes {survivors:?} survive kill -9");
        }
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let tail = log.char_indices().rev().nth(6000).map_or(&log[..], |(at, _)| &log[at..]);
        format!("server log ({}):\n{tail}", self.log_path().display())
    }

    /// After kill -9 the lock files stay: postmaster.pid in the data dir and
    /// `.s.PGSQL.<port>.lock` next to the socket. The server ignores one whose pid is gone, but
    /// counts a zombie as alive (kill(pid, 0) succeeds), and the killed postmaster, an orphan,
    /// is a zombie until init reaps it, which some container inits do late or never. Removing
    /// the files when the pid is gone or a zombie does what the server would do once it is
    /// reaped; a live pid (e.g. a pid file copied from a running source) is left for the
    /// server to refuse.
    fn remove_stale_lock_files(&self) {
        let mut locks = vec![self.data_dir.join("postmaster.pid")];
        if let Ok(entries) = fs::read_dir(self.work.path()) {
            locks.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".s.PGSQL.") && n.ends_with(".lock"))
            }));
        }
        for lock in locks {
            if lock_file_pid(&lock).is_some_and(|pid| !process_alive(pid)) {
                let _ = fs::remove_file(&lock);
            }
        }
    }

    fn postmaster_pid(&self) -> Option<u32> {
        lock_file_pid(&self.data_dir.join("postmaster.pid"))
    }

    fn initdb(&self) {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["--data-checksums", "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // initdb would otherwise probe /usr/share/zoneinfo to guess the system time zone.
            .env("TZ", "UTC");
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb (PostgreSQL {}, {}) failed:\n{}",
            self.major,
            self.bin_dir.display(),
            output_text(&out)
        );
    }

    /// Writes (or rewrites, after a port change) our block at the end of postgresql.conf; later
    /// lines override initdb's.
    fn write_settings(&self) {
        let conf_path = self.data_dir.join("postgresql.conf");
        let conf = fs::read_to_string(&conf_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf_path.display()));
        let mut text = match (conf.find(CONF_BEGIN), conf.find(CONF_END)) {
            (Some(begin), Some(end)) if begin < end => {
                let mut rest = &conf[end + CONF_END.len()..];
                rest = rest.strip_prefix('\n').unwrap_or(rest);
                format!("{}{rest}", &conf[..begin])
            }
            _ => conf,
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(CONF_BEGIN);
        text.push('\n');
        let socket_dir = self.work.path().to_string_lossy().into_owned();
        let port = self.port.to_string();
        let defaults = [
            ("listen_addresses", HOST),
            ("port", &port),
            ("unix_socket_directories", &socket_dir),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("shared_buffers", "32MB"),
            ("max_connections", "50"),
            // Log to stderr, which `pg_ctl -l` sends to postgres.log in the temp dir.
            ("logging_collector", "off"),
        ];
        let extra = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (name, value) in defaults.into_iter().chain(extra) {
            let _ = writeln!(text, "{name} = '{}'", value.replace('\'', "''"));
        }
        text.push_str(CONF_END);
        text.push('\n');
        // Writing in place keeps the file's owner (postgres) when we run as root.
        fs::write(&conf_path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
    }

    /// `pg_ctl start -w` until the server accepts connections, on a new port if another
    /// process took ours between `free_port` and the server's bind.
    fn start_server(&mut self) {
        const ATTEMPTS: usize = 5;
        self.remove_stale_lock_files();
        for attempt in 1..=ATTEMPTS {
            let log_before = self.log().len();
            let mut options =
                format!("-p {} -k {}", self.port, shell_quote(&self.work.path().to_string_lossy()));
            let command_line = if self.owns_conf { &[][..] } else { &self.settings[..] };
            let settings = std::iter::once(("listen_addresses", HOST))
                .chain(command_line.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            for (name, value) in settings {
                let _ = write!(options, " -c {}", shell_quote(&format!("{name}={value}")));
            }
            let log_path = self.log_path();
            let timeout = self.start_timeout.as_secs().max(1).to_string();
            let out = self.pg_ctl(&[
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new(&timeout),
                OsStr::new("-l"),
                log_path.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&options),
            ]);
            if out.status.success() {
                self.wait_until_ready();
                return;
            }
            let log = self.log();
            let new_log = log.get(log_before..).unwrap_or(&log);
            if attempt < ATTEMPTS && new_log.contains("Address already in use") && !self.is_running() {
                self.port = free_port();
                if self.owns_conf {
                    // Keep postgresql.conf's port in line with the one we really use.
                    self.write_settings();
                }
                continue;
            }
            panic!(
                "PostgreSQL {} did not start (port {}, data {}):\n{}\n{}",
                self.major,
                self.port,
                self.data_dir.display(),
                output_text(&out),
                self.log_tail()
            );
        }
    }

    /// pg_ctl -w returns once the postmaster reports ready; a first query confirms that
    /// connections really work (and that psql can reach this major).
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_psql_db("postgres", "SELECT 1") {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("PostgreSQL {} started but does not answer: {e}\n{}", self.major, self.log_tail())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn pg_ctl<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.try_pg_ctl(args).unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"))
    }

    fn try_pg_ctl<S: AsRef<OsStr>>(&self, args: &[S]) -> std::io::Result<Output> {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args(args);
        cmd.output()
    }

    /// A command running this major's `program` as the server's OS user, from the temp dir
    /// (that user may not be allowed into the test's working directory).
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        let mut cmd = if server_user().is_some() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", USER, "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        clear_pg_env(&mut cmd);
        cmd.current_dir(self.work.path()).stdin(Stdio::null());
        cmd
    }

    /// Starts the shell that stops the server and removes the temp dir once our process is
    /// gone: it blocks reading a pipe whose write end only this process holds (close-on-exec,
    /// so no child inherits it), which reaches EOF however this process ends. It runs in its
    /// own process group so that signals sent to the test's group (Ctrl-C, a harness timeout)
    /// do not take it down before it has cleaned up.
    fn spawn_watchdog(&mut self) {
        const SCRIPT: &str = r#"trap '' INT TERM HUP
read -r _
work=$1
shift
"$@" >/dev/null 2>&1
rm -rf "$work""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(SCRIPT).arg("cairn-pg-watchdog").arg(self.work.path());
        if server_user().is_some() {
            cmd.args(["runuser", "-u", USER, "--"]);
        }
        cmd.arg(self.bin_dir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        clear_pg_env(&mut cmd);
        self.watchdog = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start the watchdog shell: {e}")));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.is_running() {
            // No panics in here: panicking in drop while unwinding would abort the test binary.
            let stop = self.try_pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
            let stopped = stop.is_ok_and(|out| out.status.success());
            if let (false, Some(pid)) = (stopped, self.postmaster_pid()) {
                let _ = kill_tree(pid);
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // `work` (TempDir) is removed after this, as the struct's fields drop.
    }
}

/// The postgres OS user's uid and gid when this process runs as root (servers then run as
/// that user), `None` otherwise (servers run as ourselves).
fn server_user() -> Option<(u32, u32)> {
    static USER_IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER_IDS.get_or_init(|| {
        if effective_uid() != 0 {
            return None;
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, USER]).output();
            match out {
                Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("id {flag} {USER}: unexpected output {:?}: {e}", out.stdout)),
                _ => panic!(
                    "running as root, so PostgreSQL must run as OS user '{USER}', which does not exist: \
                     {INSTALL_HINT}"
                ),
            }
        };
        Some((id("-u"), id("-g")))
    })
}

/// From /proc (std has no geteuid, and this workspace forbids unsafe code).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the effective uid from /proc/self/status"))
}

/// `$CAIRN_PG_DIR`, else `~/.cache/cairn/postgres`: where scripts/install-postgres puts the
/// majors that do not come from the OS packages.
fn install_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_PG_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .unwrap_or_else(|| panic!("neither CAIRN_PG_DIR nor HOME is set: cannot find PostgreSQL servers"));
    PathBuf::from(home).join(".cache/cairn/postgres")
}

/// The directory with `major`'s initdb, pg_ctl and postgres; panics if they are missing.
fn server_bin_dir(major: u32) -> PathBuf {
    let installed = install_root().join(major.to_string()).join("native/bin");
    let dir = if major == OS_MAJOR && Path::new(OS_BIN_DIR).join("postgres").is_file() {
        PathBuf::from(OS_BIN_DIR)
    } else {
        installed
    };
    let missing: Vec<&str> =
        ["initdb", "pg_ctl", "postgres"].into_iter().filter(|p| !dir.join(p).is_file()).collect();
    assert!(
        missing.is_empty(),
        "PostgreSQL {major} server binaries are not installed ({} missing in {}): {INSTALL_HINT} \
         (CAIRN_PG_DIR overrides ~/.cache/cairn/postgres)",
        missing.join(", "),
        dir.display()
    );
    dir
}

/// Gives `path` and everything under it to the server's OS user when the tests run as root
/// (a tablespace directory a test made must be the server's); nothing otherwise.
pub fn give_to_postgres(path: &Path) {
    if server_user().is_some() {
        let status = Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(path)
            .status()
            .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
        assert!(status.success(), "chown -R {USER}: {} failed", path.display());
    }
}

/// A fresh temp dir for one cluster: socket, log, and maybe data. Owned by the server's OS
/// user; mode 0700 (the server requires that for the data directory inside, and it keeps other
/// users off the socket).
fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("cairn-pg-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for PostgreSQL: {e}"));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.path().display()));
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {USER}: {e}", dir.path().display()));
    }
    dir
}

/// Gets a data directory written by someone else (a restore running as root) ready for the
/// server: owned by the server's user, mode 0700, and reachable through its parents. Only
/// parents under the system temp dir are opened up (search permission only), never others.
fn prepare_foreign_data_dir(data_dir: &Path) {
    let set_mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    };
    let Some((uid, gid)) = server_user() else {
        set_mode(data_dir, 0o700);
        return;
    };
    let out = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(data_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
    assert!(out.status.success(), "chown -R {USER} {} failed: {}", data_dir.display(), output_text(&out));
    set_mode(data_dir, 0o700);
    let temp = fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| std::env::temp_dir());
    for parent in data_dir.ancestors().skip(1) {
        if !parent.starts_with(&temp) || parent == temp {
            break;
        }
        let mode = fs::metadata(parent).map(|m| m.permissions().mode()).unwrap_or(0o755);
        if mode & 0o001 == 0 {
            set_mode(parent, mode | 0o001);
        }
    }
    let reachable = Command::new("runuser")
        .args(["-u", USER, "--", "test", "-r"])
        .arg(data_dir.join("PG_VERSION"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        reachable,
        "OS user {USER} cannot reach {}: put restored data directories under {} or make their \
         parents searchable (o+x)",
        data_dir.display(),
        temp.display()
    );
}

/// A port the kernel considers free right now. Another process may take it before the server
/// binds it; `start_server` then retries with a new one.
fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free TCP port on {HOST}: {e}"))
}

/// Removes libpq/server variables (PGPORT, PGDATA, PGOPTIONS, PGPASSWORD, ...) inherited from
/// the developer's shell, which would otherwise change what the commands connect to or do.
fn clear_pg_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
}

/// Quotes for the `sh -c` command line pg_ctl builds around `-o` options.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The pid on the first line of a PostgreSQL lock file.
fn lock_file_pid(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// `/proc/<pid>/stat` fields after the command name: state, ppid, ...
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Alive and not a zombie: a killed postmaster was reparented away from us, and a container's
/// init may never reap it.
fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z" && state != "X"))
}

/// SIGKILLs the postmaster `pid` and all its descendants (backends, checkpointer, WAL
/// writer, an archive_command's shell, ...) and waits until none is alive; `Err` with the
/// survivors after 20 s. The postmaster is frozen (SIGSTOP) first so it cannot fork a new child
/// between listing its children and the kill; the tree is listed before the kill because an
/// orphan's parent becomes init, and the children cannot be found by session either (each
/// calls setsid).
fn kill_tree(pid: u32) -> Result<(), Vec<u32>> {
    let signal = |signal: &str, pids: &[u32]| {
        // Fails harmlessly for a process that exited meanwhile.
        let _ = Command::new("kill")
            .arg(signal)
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    };
    if !process_alive(pid) {
        return Ok(());
    }
    signal("-STOP", &[pid]);
    let mut tree = vec![pid];
    tree.extend(descendants(pid));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        signal("-KILL", &tree);
        tree.retain(|&p| process_alive(p));
        if tree.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(tree);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live descendants of `pid`, from the parent pids in /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = proc_stat(p)?;
            let alive = stat.first().is_some_and(|state| state != "Z" && state != "X");
            Some((p, stat.get(1)?.parse().ok()?)).filter(|_| alive)
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|&&(_, ppid)| ppid == parent) {
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

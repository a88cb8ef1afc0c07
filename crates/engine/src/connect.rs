//! Connecting to the database server: options from the command line or the instance, then the
//! usual `PG*` environment variables and password file, as libpq does.

use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::instance::Connection;

/// Opens a connection as `connection` (with `PG*` fallbacks) says.
pub fn connect(connection: &Connection) -> Result<postgres::Client> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host =
        connection.host.clone().or_else(|| env("PGHOST")).unwrap_or_else(|| "/var/run/postgresql".into());
    let port = connection.port.or_else(|| env("PGPORT").and_then(|p| p.parse().ok())).unwrap_or(5432);
    let user = connection
        .user
        .clone()
        .or_else(|| env("PGUSER"))
        .or_else(|| env("USER"))
        .unwrap_or_else(|| "postgres".into());
    let database =
        connection.database.clone().or_else(|| env("PGDATABASE")).unwrap_or_else(|| "postgres".into());
    let mut config = postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&user)
        .dbname(&database)
        .application_name("cairn")
        .connect_timeout(Duration::from_secs(10));
    if let Some(password) = env("PGPASSWORD").or_else(|| passfile_password(&host, port, &database, &user)) {
        config.password(password);
    }
    let target = format!("{host}:{port} (user {user}, database {database})");
    config.connect(postgres::NoTls).map_err(|e| EngineError::Connect { target, reason: reason(&e) })
}

/// The innermost cause: "connection refused", "password authentication failed ...".
fn reason(e: &postgres::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// A password from `PGPASSFILE` or `~/.pgpass` (`host:port:database:user:password`, `*`
/// matching anything), as libpq reads it.
fn passfile_password(host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let path = std::env::var("PGPASSFILE")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    let host = if host.starts_with('/') { "localhost" } else { host };
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let fields = split_passfile_line(line);
        let [h, p, d, u, pw] = fields.as_slice() else { return None };
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        (matches(h, host) && matches(p, &port) && matches(d, database) && matches(u, user))
            .then(|| pw.clone())
    })
}

/// Splits on `:` honouring `\:` and `\\` escapes.
fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().into_iter().for_each(|f| f.extend(chars.next())),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::split_passfile_line;

    #[test]
    fn passfile_lines_split_with_escapes() {
        assert_eq!(split_passfile_line("db1:5432:*:app:pa\\:ss"), vec!["db1", "5432", "*", "app", "pa:ss"]);
        assert_eq!(split_passfile_line("h:1:d:u:a:b"), vec!["h", "1", "d", "u", "a:b"]);
    }
}

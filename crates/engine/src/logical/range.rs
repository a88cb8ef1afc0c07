//! Time-range dumps of time-series tables: the rows of each table whose time column lies in
//! `[from, to)`, as `COPY (SELECT ...) TO STDOUT` text, all tables of a database from one
//! snapshot; restored with `COPY ... FROM STDIN` into the existing table, in one transaction.

use std::io::{self, Read};

use postgres::{IsolationLevel, Transaction};

use cairn_repo::{ChunkerKind, FileEntry};

use super::dump::{Done, Dump};
use super::{component, database_dir, TimeRange};
use crate::connect::connect;
use crate::error::{EngineError, Result};
use crate::instance::Connection;
use crate::progress::Progress;

/// Copies the range of every table of the backup's options out of `database`, each table
/// once, its stored columns named (generated ones are computed again on loading).
pub(super) fn dump(dump: &Dump<'_>, database: &str, range: &TimeRange, done: &mut Done) -> Result<()> {
    let connection = dump.connection.to_database(database);
    let mut client = connect(&connection)?;
    session(&mut client)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|error| EngineError::Database { during: "starting the copy", error })?;
    let mut seen = Vec::new();
    for table in &dump.options.tables {
        let (schema, name) = resolve(&mut tx, database, table)?;
        // `t` and `public.t` are one table: copied twice, its rows would load twice.
        if seen.contains(&(schema.clone(), name.clone())) {
            continue;
        }
        seen.push((schema.clone(), name.clone()));
        let columns = columns(&mut tx, database, &schema, &name)?;
        let list = column_list(&columns).replace('%', "%%");
        let sql = statement(
            &mut tx,
            &format!("COPY (SELECT {list} FROM %I.%I WHERE %I >= %L AND %I < %L) TO STDOUT"),
            &schema,
            &name,
            range,
        )?;
        let reader = tx.copy_out(&sql).map_err(|e| copy_error(database, &schema, &name, e))?;
        let mut rows = Rows { inner: reader, rows: 0, ended: false, progress: dump.progress };
        let (chunks, size) = dump.writer.store(&mut rows, ChunkerKind::ContentDefined)?;
        let path = format!("{}/range/{}.{}.copy", database_dir(database), dotless(&schema), dotless(&name));
        let meta = serde_json::json!({
            "database": database, "schema": schema, "table": name, "columns": columns, "rows": rows.rows
        });
        dump.add(&path, size, chunks, meta, done)?;
        done.rows += rows.rows;
    }
    tx.commit().map_err(|error| EngineError::Database { during: "ending the copy", error })
}

/// Settings that make the text of times, intervals and floats the same in every session:
/// both the dump and the load read and write rows and range bounds under them.
fn session(client: &mut postgres::Client) -> Result<()> {
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'")
        .map_err(|error| EngineError::Database { during: "setting up the session", error })?;
    // Full float precision; servers that lack the setting print floats their own way.
    let _ = client.batch_execute("SET extra_float_digits = 3");
    Ok(())
}

/// The range with its bounds as the server reads them in the type of the tables' time column
/// (in UTC: a time without an offset is UTC), for the record: what was copied, whatever the
/// session that loads it. The tables' time columns must have one type.
pub(super) fn normalize(
    connection: &Connection,
    database: &str,
    tables: &[String],
    range: &TimeRange,
) -> Result<TimeRange> {
    let connection = connection.to_database(database);
    let mut client = connect(&connection)?;
    session(&mut client)?;
    let mut tx =
        client.transaction().map_err(|error| EngineError::Database { during: "reading the range", error })?;
    let mut types: Vec<String> = Vec::new();
    for table in tables {
        let (schema, name) = resolve(&mut tx, database, table)?;
        let found = tx
            .query(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = format('%I.%I', $1::text, $2::text)::regclass AND attname = $3 \
                 AND attnum > 0 AND NOT attisdropped",
                &[&schema, &name, &range.column],
            )
            .map_err(|e| copy_error(database, &schema, &name, e))?;
        let Some(row) = found.first() else {
            return Err(EngineError::Invalid(format!(
                "table {schema}.{name} of database '{database}' has no column '{}'",
                range.column
            )));
        };
        let kind: String = row.get(0);
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    let [kind] = &types[..] else {
        return Err(EngineError::Invalid(format!(
            "the time columns '{}' of the tables have different types ({}): copy them in separate backups",
            range.column,
            types.join(", ")
        )));
    };
    // `kind` is the server's own spelling of a type, safe to put in the statement.
    let row = tx
        .query_one(
            &format!("SELECT $1::text::{kind}::text, $2::text::{kind}::text"),
            &[&range.from, &range.to],
        )
        .map_err(|e| EngineError::Invalid(format!("--from/--to as {kind}: {}", message(&e))))?;
    Ok(TimeRange { column: range.column.clone(), from: row.get(0), to: row.get(1) })
}

/// The columns of a table a COPY carries, in order: all but generated ones (which COPY FROM
/// refuses, and which the target computes).
fn columns(tx: &mut Transaction<'_>, database: &str, schema: &str, table: &str) -> Result<Vec<String>> {
    let generated = tx
        .query_one("SELECT current_setting('server_version_num')::int >= 120000", &[])
        .map_err(|e| copy_error(database, schema, table, e))?
        .get::<_, bool>(0);
    let sql = format!(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = format('%I.%I', $1::text, $2::text)::regclass \
         AND attnum > 0 AND NOT attisdropped {} ORDER BY attnum",
        if generated { "AND attgenerated = ''" } else { "" }
    );
    let rows = tx.query(&sql, &[&schema, &table]).map_err(|e| copy_error(database, schema, table, e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `"a", "b"`; `*` when none are known (a backup from before columns were recorded).
fn column_list(columns: &[String]) -> String {
    match columns {
        [] => "*".into(),
        _ => columns.iter().map(|c| super::quote_ident(c)).collect::<Vec<_>>().join(", "),
    }
}

/// A name as a path component without `.` (as `%2E`): `<schema>.<table>` is then one table's
/// path only (`a.b` + `c` and `a` + `b.c` would meet).
fn dotless(name: &str) -> String {
    component(name).replace('.', "%2E")
}

/// A stored range of one table.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub schema: String,
    pub table: String,
    /// The columns copied, in order (empty in backups from before they were recorded).
    pub columns: Vec<String>,
    pub entry: FileEntry,
}

impl Stored {
    /// The range files of a backup's entries for `database`.
    pub fn of(entries: &[FileEntry], database: &str) -> Vec<Stored> {
        entries
            .iter()
            .filter(|e| e.meta.get("database").and_then(|d| d.as_str()) == Some(database))
            .filter_map(|e| {
                let text = |key: &str| e.meta.get(key).and_then(|v| v.as_str()).map(str::to_string);
                let columns = e.meta.get("columns").and_then(|c| c.as_array()).map(|c| {
                    c.iter().filter_map(|n| n.as_str().map(str::to_string)).collect::<Vec<String>>()
                });
                Some(Stored {
                    schema: text("schema")?,
                    table: text("table")?,
                    columns: columns.unwrap_or_default(),
                    entry: e.clone(),
                })
            })
            .collect()
    }

    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// Loads the ranges into their tables in one transaction: each table must exist; rows
/// already in its range are refused, or with `clean` deleted first. Returns the rows loaded.
pub(super) fn load(
    // Writes a stored file's content.
    content: &dyn Fn(&FileEntry, &mut dyn io::Write) -> cairn_repo::Result<u64>,
    connection: &Connection,
    database: &str,
    stored: &[Stored],
    range: &TimeRange,
    clean: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let connection = connection.to_database(database);
    let mut client = connect(&connection)?;
    session(&mut client)?;
    let mut tx =
        client.transaction().map_err(|error| EngineError::Database { during: "starting the load", error })?;
    check(&mut tx, database, stored, range, clean)?;
    let mut rows = 0;
    for s in stored {
        if clean {
            let sql = statement(
                &mut tx,
                "DELETE FROM %I.%I WHERE %I >= %L AND %I < %L",
                &s.schema,
                &s.table,
                range,
            )?;
            tx.batch_execute(&sql).map_err(|e| copy_error(database, &s.schema, &s.table, e))?;
        }
        let columns = match s.columns.is_empty() {
            true => String::new(),
            false => format!(" ({})", column_list(&s.columns)),
        };
        let sql = format!(
            "COPY {}.{}{columns} FROM STDIN",
            super::quote_ident(&s.schema),
            super::quote_ident(&s.table)
        );
        let mut writer = tx.copy_in(&sql).map_err(|e| copy_error(database, &s.schema, &s.table, e))?;
        content(&s.entry, &mut writer)?;
        rows += writer.finish().map_err(|e| copy_error(database, &s.schema, &s.table, e))?;
        progress.advance(s.entry.size);
    }
    tx.commit().map_err(|error| EngineError::Database { during: "ending the load", error })?;
    Ok(rows)
}

/// Refuses to load into a table that is not there, or over rows of the range (unless `clean`).
pub(super) fn refusals(
    connection: &Connection,
    database: &str,
    stored: &[Stored],
    range: &TimeRange,
    clean: bool,
) -> Result<()> {
    let connection = connection.to_database(database);
    let mut client = connect(&connection)?;
    session(&mut client)?;
    let mut tx = client
        .transaction()
        .map_err(|error| EngineError::Database { during: "checking the target", error })?;
    check(&mut tx, database, stored, range, clean)
}

fn check(
    tx: &mut Transaction<'_>,
    database: &str,
    stored: &[Stored],
    range: &TimeRange,
    clean: bool,
) -> Result<()> {
    for s in stored {
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[&s.schema, &s.table],
            )
            .map_err(|e| copy_error(database, &s.schema, &s.table, e))?
            .get(0);
        if !exists {
            return Err(EngineError::Refused(format!(
                "table {} does not exist in database '{database}': a time range loads into an existing table (restore the table first)",
                s.name()
            )));
        }
        let sql = statement(
            tx,
            "SELECT count(*) FROM %I.%I WHERE %I >= %L AND %I < %L",
            &s.schema,
            &s.table,
            range,
        )?;
        let present: i64 =
            tx.query_one(&sql, &[]).map_err(|e| copy_error(database, &s.schema, &s.table, e))?.get(0);
        if present > 0 && !clean {
            return Err(EngineError::Refused(format!(
                "table {} of database '{database}' has {present} row(s) in the range already: give --clean to replace them",
                s.name()
            )));
        }
    }
    Ok(())
}

/// `schema.table` or `table` (as the search path finds it) as the server names it.
fn resolve(tx: &mut Transaction<'_>, database: &str, table: &str) -> Result<(String, String)> {
    let row = tx
        .query_one(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = $1::text::regclass",
            &[&table],
        )
        .map_err(|e| EngineError::Invalid(format!("database '{database}', table '{table}': {}", message(&e))))?;
    Ok((row.get(0), row.get(1)))
}

/// A statement on a table and a range, quoted by the server itself (`format` with `%I` and
/// `%L`): `template` has the table's `%I.%I`, then `%I >= %L AND %I < %L`.
fn statement(
    tx: &mut Transaction<'_>,
    template: &str,
    schema: &str,
    table: &str,
    range: &TimeRange,
) -> Result<String> {
    let row = tx
        .query_one(
            "SELECT format($1::text, $2::text, $3::text, $4::text, $5::text, $4::text, $6::text)",
            &[&template, &schema, &table, &range.column, &range.from, &range.to],
        )
        .map_err(|error| EngineError::Database { during: "preparing a statement", error })?;
    Ok(row.get(0))
}

fn copy_error(database: &str, schema: &str, table: &str, e: postgres::Error) -> EngineError {
    EngineError::Server(format!("database '{database}', table {schema}.{table}: {}", message(&e)))
}

/// The server's own message, when there is one.
fn message(e: &postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// Counts rows (lines of COPY text) and progress as they pass, and stays at its end once
/// there: the COPY reader must not be read past it (it would take the next message).
struct Rows<'p, R> {
    inner: R,
    rows: u64,
    ended: bool,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Rows<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.ended = n == 0 && !buf.is_empty();
        self.rows += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_paths_of_dotted_names_do_not_meet() {
        assert_ne!(
            format!("{}.{}", dotless("a.b"), dotless("c")),
            format!("{}.{}", dotless("a"), dotless("b.c"))
        );
        assert_eq!(dotless("x.y"), "x%2Ey");
        assert_eq!(dotless(".z"), "%2Ez");
        assert_eq!(column_list(&[]), "*");
        assert_eq!(column_list(&["ts".into(), "we\"ird".into()]), "\"ts\", \"we\"\"ird\"");
    }
}

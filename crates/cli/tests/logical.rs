//! Logical backups through the binary, against real PostgreSQL servers: a database with
//! several schemas, tables, indexes, sequences, a view, a function and a large object dumped
//! with pg_dump, and restored with pg_restore whole under a new name, one schema, one table
//! into another cluster, and a time range; each compared with the source by query-level
//! checksums.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use assert_cmd::Command;
use cairn_testkit::PgCluster;
use serde_json::Value;

mod common;
use common::{cairn, fails, ok, repository};

/// Database `shop`: schemas `sales` (a table with a serial key, an index and enough rows to
/// matter, a table with a foreign key to it, a view, a sequence), `hr` (an identity column, a
/// unique constraint, a function) and `metrics` (a time series), and a large object.
fn make_shop(cluster: &PgCluster) {
    cluster.psql("CREATE DATABASE shop");
    cluster.psql_db(
        "shop",
        "CREATE SCHEMA sales; CREATE SCHEMA hr; CREATE SCHEMA metrics;
         CREATE TABLE sales.orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric(10,2), note text);
         CREATE INDEX orders_customer ON sales.orders (customer);
         INSERT INTO sales.orders (customer, amount, note)
             SELECT md5(g::text), g % 1000, md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 150000) g;
         CREATE TABLE sales.items (order_id int REFERENCES sales.orders (id), sku text);
         INSERT INTO sales.items SELECT g, 'sku-' || g FROM generate_series(1, 500) g;
         CREATE TABLE sales.ledger (id int, day date, amount int) PARTITION BY RANGE (day);
         CREATE TABLE sales.ledger_jan PARTITION OF sales.ledger FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
         CREATE TABLE sales.ledger_feb PARTITION OF sales.ledger FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
         CREATE INDEX ledger_day ON sales.ledger (day);
         INSERT INTO sales.ledger SELECT g, '2024-01-01'::date + g % 60, g FROM generate_series(1, 1000) g;
         CREATE VIEW sales.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 900;
         CREATE SEQUENCE sales.tickets START 100; SELECT nextval('sales.tickets'); SELECT nextval('sales.tickets');
         CREATE TABLE hr.people (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text UNIQUE);
         INSERT INTO hr.people (name) SELECT 'person ' || g FROM generate_series(1, 300) g;
         CREATE FUNCTION hr.greet(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || who $$;
         CREATE TABLE metrics.readings (ts timestamptz NOT NULL, sensor int, value float8);
         CREATE INDEX readings_ts ON metrics.readings (ts);
         CREATE TABLE metrics.events (ts timestamptz NOT NULL, value int, doubled int GENERATED ALWAYS AS (value * 2) STORED);
         INSERT INTO metrics.events (ts, value)
             SELECT '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', g FROM generate_series(0, 143) g;
         INSERT INTO metrics.readings
             SELECT '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g % 7, g / 3.0
             FROM generate_series(0, 14399) g;
         SELECT lo_from_bytea(0, convert_to(repeat('large object ', 1000), 'UTF8'));",
    );
}

/// Query-level checksums of the user objects of `db` in `schemas` (all when empty): every
/// table's rows, the views' definitions, the sequences' positions, the indexes, the functions
/// (and what one returns), and the large objects.
fn fingerprint(cluster: &PgCluster, db: &str, schemas: &[&str]) -> Vec<String> {
    let filter = if schemas.is_empty() {
        "NOT IN ('pg_catalog', 'information_schema', 'pg_toast')".to_string()
    } else {
        format!("IN ({})", schemas.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "))
    };
    let tables = cluster.psql_db(
        db,
        &format!("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname {filter} ORDER BY 1"),
    );
    let mut out: Vec<String> = tables
        .lines()
        .map(|t| {
            let sum = cluster.psql_db(
                db,
                &format!("SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {t} t"),
            );
            format!("table {t}: {sum}")
        })
        .collect();
    for (what, item, from) in [
        ("views", "schemaname || '.' || viewname || ' ' || md5(definition)", "pg_views WHERE schemaname"),
        (
            "sequences",
            "schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, '-')",
            "pg_sequences WHERE schemaname",
        ),
        ("indexes", "schemaname || '.' || indexname", "pg_indexes WHERE schemaname"),
        (
            "functions",
            "n.nspname || '.' || p.proname",
            "pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname",
        ),
    ] {
        let sql =
            format!("SELECT string_agg(x, ', ' ORDER BY x) FROM (SELECT {item} AS x FROM {from} {filter}) s");
        out.push(format!("{what}: {}", cluster.psql_db(db, &sql)));
    }
    if schemas.is_empty() || schemas.contains(&"hr") {
        out.push(format!("greet: {}", cluster.psql_db(db, "SELECT hr.greet('you')")));
    }
    if schemas.is_empty() {
        let objects = "SELECT count(*), md5(coalesce(string_agg(encode(lo_get(oid), 'hex'), ',' ORDER BY oid), '')) FROM pg_largeobject_metadata";
        out.push(format!("large objects: {}", cluster.psql_db(db, objects)));
    }
    out
}

const RANGE: &str = "ts >= '2024-01-03 00:00:00+00' AND ts < '2024-01-05 00:00:00+00'";

fn range_sum(cluster: &PgCluster) -> String {
    cluster.psql_db(
        "shop",
        &format!("SELECT count(*), md5(string_agg(r::text, ',' ORDER BY r::text)) FROM metrics.readings r WHERE {RANGE}"),
    )
}

#[test]
fn a_database_dump_restores_whole_by_schema_by_table_and_by_time_range() {
    let source = PgCluster::start(15);
    make_shop(&source);
    // A role that other clusters lack: restoring the function's owner fails there.
    source.psql_db("shop", "CREATE ROLE clerk; ALTER FUNCTION hr.greet(text) OWNER TO clerk");
    let work = tempfile::tempdir().unwrap();
    let repo = repository(work.path(), &source, &[]);
    let everything = fingerprint(&source, "shop", &[]);
    assert!(everything.iter().any(|l| l.starts_with("large objects: 1|")), "{everything:?}");

    let backup = ["backup", "--instance", "main", "-b", "LOGICAL", "--database", "shop", "-j", "2"];
    let first = ok(cairn(&repo, &backup));
    assert_eq!((&first["mode"], &first["status"]), (&"LOGICAL".into(), &"OK".into()), "{first}");
    assert_eq!(first["logical"]["databases"], serde_json::json!(["shop"]));
    assert_eq!(first["logical"]["format"], "directory");
    assert_eq!(first["logical"]["tool"], "pg_dump");
    assert!(first["logical"]["tool_version"].as_str().unwrap().starts_with("15."), "{first}");
    assert!(first["start_lsn"].is_null() && first["server_version"].as_u64().unwrap() >= 150000);
    let id = first["id"].as_str().unwrap().to_string();

    // A second dump of the unchanged database adds almost nothing: its data files are the
    // first one's chunks.
    let second = ok(cairn(&repo, &backup));
    let (first_bytes, second_bytes) =
        (first["stored_bytes"].as_u64().unwrap(), second["stored_bytes"].as_u64().unwrap());
    let percent = second_bytes as f64 * 100.0 / first_bytes as f64;
    eprintln!(
        "dedup: the first dump added {first_bytes} bytes ({} dumped), the second {second_bytes} bytes: {percent:.2} %",
        first["data_bytes"]
    );
    assert!(percent < 5.0, "the second dump added {percent:.2} % of the first");

    // show and validate know logical backups.
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    assert_eq!(shown.as_array().unwrap().len(), 2);
    assert_eq!(shown[0]["mode"], "LOGICAL");
    assert_eq!(shown[0]["logical"]["databases"][0], "shop");
    let validated = ok(cairn(&repo, &["validate", "--instance", "main", "-i", &id]));
    assert_eq!(validated["status"], "OK");
    assert_eq!(validated["pages"], 0, "no data pages in a dump");
    let plain = Command::cargo_bin("cairn")
        .unwrap()
        .env("CAIRN_PASSWORD", "demo password")
        .args(["show", "-B", repo.to_str().unwrap(), "--instance", "main"])
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(plain.contains(&format!("main {id}: database shop; pg_dump 15.")), "{plain}");

    // A physical restore of it is refused; so is restoring over the existing database.
    let target = work.path().join("pgdata");
    let msg = fails(
        cairn(&repo, &["restore", "--instance", "main", "-i", &id, "-D", target.to_str().unwrap()]),
        10,
        "restore-refused",
    );
    assert!(msg.contains("-b LOGICAL"), "{msg}");
    let restore = ["restore", "--instance", "main", "-b", "LOGICAL", "-i", &id];
    let msg = fails(cairn(&repo, &restore), 10, "restore-refused");
    assert!(msg.contains("--clean") && msg.contains("'shop'"), "{msg}");

    // (a) The whole database under a new name.
    let whole = ok(cairn(&repo, &[&restore[..], &["--new-name", "shop_copy", "-j", "2"]].concat()));
    assert_eq!(whole["databases"][0]["into"], "shop_copy");
    assert_eq!(whole["databases"][0]["created"], true);
    assert_eq!(fingerprint(&source, "shop_copy", &[]), everything);

    // (b) One schema: into a new database, then over the source's own (refused, then --clean).
    let hr = fingerprint(&source, "shop", &["hr"]);
    ok(cairn(&repo, &[&restore[..], &["--schema", "hr", "--new-name", "hr_only"]].concat()));
    assert_eq!(fingerprint(&source, "hr_only", &["hr"]), hr);
    assert_eq!(source.psql_db("hr_only", "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"), "0");
    let msg = fails(cairn(&repo, &[&restore[..], &["--schema", "hr"]].concat()), 10, "restore-refused");
    assert!(msg.contains("schema hr") && msg.contains("--clean"), "{msg}");
    source.psql_db("shop", "DELETE FROM hr.people WHERE id > 100");
    ok(cairn(&repo, &[&restore[..], &["--schema", "hr", "--clean"]].concat()));
    assert_eq!(fingerprint(&source, "shop", &[]), everything);

    // A table whose index name is taken in the target database: refused, nothing changed.
    source.psql("CREATE DATABASE clash");
    source.psql_db("clash", "CREATE SCHEMA sales; CREATE TABLE sales.other (c text); CREATE INDEX orders_customer ON sales.other (c)");
    let msg = fails(
        cairn(&repo, &[&restore[..], &["--table", "sales.orders", "--new-name", "clash"]].concat()),
        10,
        "restore-refused",
    );
    assert!(msg.contains("index sales.orders_customer") && msg.contains("--clean"), "{msg}");
    assert_eq!(
        source.psql_db(
            "clash",
            "SELECT to_regclass('sales.orders_customer')::text, to_regclass('sales.orders')"
        ),
        "sales.orders_customer|"
    );

    // (c) One table into another cluster: with its key, index, default and sequence.
    let other = PgCluster::start(15);
    let other_port = other.port().to_string();
    let elsewhere = ["--target-host", "127.0.0.1", "--target-port", other_port.as_str()];
    let table = ok(cairn(&repo, &[&restore[..], &elsewhere[..], &["--table", "sales.orders"]].concat()));
    assert_eq!(table["databases"][0]["created"], true, "{table}");
    let orders = |c: &PgCluster| {
        c.psql_db("shop", "SELECT count(*), md5(string_agg(o::text, ',' ORDER BY id)) FROM sales.orders o")
    };
    assert_eq!(orders(&other), orders(&source));
    let indexes =
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'sales'";
    assert_eq!(other.psql_db("shop", indexes), "orders_customer,orders_pkey");
    assert_eq!(other.psql_db("shop", "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"), "1");
    assert_eq!(
        other.psql_db("shop", "SELECT nextval(pg_get_serial_sequence('sales.orders', 'id'))"),
        "150001",
        "the serial's sequence came along, at its place"
    );
    let msg = fails(
        cairn(&repo, &[&restore[..], &elsewhere[..], &["--table", "sales.orders"]].concat()),
        10,
        "restore-refused",
    );
    assert!(msg.contains("sales.orders"), "{msg}");

    // A partitioned table comes with its partitions and their rows, into the database that
    // exists now.
    ok(cairn(&repo, &[&restore[..], &elsewhere[..], &["--table", "sales.ledger"]].concat()));
    let ledger =
        "SELECT tableoid::regclass::text, count(*), sum(amount) FROM sales.ledger GROUP BY 1 ORDER BY 1";
    assert_eq!(other.psql_db("shop", ledger), source.psql_db("shop", ledger));
    assert!(other.psql_db("shop", ledger).contains("sales.ledger_feb|"));

    // (d) A time range of a time-series table, into an existing table of the other cluster.
    let expected = range_sum(&source);
    let range = ok(cairn(
        &repo,
        &[
            "backup",
            "--instance",
            "main",
            "-b",
            "LOGICAL",
            "--database",
            "shop",
            "--table",
            "metrics.readings",
            "--table",
            "\"metrics\".readings",
            "--table",
            "metrics.events",
            "--time-column",
            "ts",
            "--from",
            "2024-01-03",
            "--to",
            "2024-01-05 00:00:00+00",
        ],
    ));
    // Each table once (named twice), 2880 readings and 48 events; the bounds as the server
    // reads them, a time without an offset in UTC.
    assert_eq!(range["rows"], 2928, "{range}");
    assert_eq!(range["logical"]["time_range"]["from"], "2024-01-03 00:00:00+00");
    assert_eq!(range["logical"]["format"], "copy");
    assert_eq!(range["logical"]["time_range"]["column"], "ts");
    let range_id = range["id"].as_str().unwrap().to_string();
    let load = ["restore", "--instance", "main", "-b", "LOGICAL", "-i", range_id.as_str()];
    let msg = fails(cairn(&repo, &[&load[..], &elsewhere[..]].concat()), 10, "restore-refused");
    assert!(msg.contains("metrics.readings") && msg.contains("does not exist"), "{msg}");
    other.psql_db(
        "shop",
        "CREATE SCHEMA metrics; CREATE TABLE metrics.readings (ts timestamptz NOT NULL, sensor int, value float8);
         CREATE TABLE metrics.events (doubled int GENERATED ALWAYS AS (value * 2) STORED, value int, ts timestamptz NOT NULL)",
    );
    let loaded = ok(cairn(&repo, &[&load[..], &elsewhere[..]].concat()));
    assert_eq!(loaded["databases"][0]["rows"], 2928, "{loaded}");
    assert_eq!(range_sum(&other), expected);
    let events = "SELECT count(*), md5(string_agg(format('%s %s %s', ts, value, doubled), ',' ORDER BY ts)) \
                  FROM metrics.events WHERE ts >= '2024-01-03 00:00:00+00' AND ts < '2024-01-05 00:00:00+00'";
    assert_eq!(other.psql_db("shop", events), source.psql_db("shop", events));
    assert!(other.psql_db("shop", events).starts_with("48|"));
    assert_eq!(other.psql_db("shop", "SELECT count(*) FROM metrics.readings"), "2880");
    let msg = fails(cairn(&repo, &[&load[..], &elsewhere[..]].concat()), 10, "restore-refused");
    assert!(msg.contains("2880 row(s) in the range"), "{msg}");
    ok(cairn(&repo, &[&load[..], &elsewhere[..], &["--clean"]].concat()));
    assert_eq!(range_sum(&other), expected);
    assert_eq!(other.psql_db("shop", "SELECT count(*) FROM metrics.readings"), "2880");

    // Replacing a whole database that fails half-way (the function's owner is missing here)
    // leaves the database that was there as it was, and no temporary one.
    let before = (orders(&other), range_sum(&other));
    let msg = fails(cairn(&repo, &[&restore[..], &elsewhere[..], &["--clean"]].concat()), 12, "tool-failed");
    assert!(msg.contains("clerk"), "{msg}");
    assert_eq!((orders(&other), range_sum(&other)), before);
    assert_eq!(other.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%cairn_restore%'"), "0");

    // Deleting a logical backup: its data goes, the others stay whole.
    let deleted = ok(cairn(&repo, &["delete", "--instance", "main", "-i", &id]));
    assert_eq!(deleted["backups"]["deleted"][0]["id"], id.as_str(), "{deleted}");
    assert_eq!(ok(cairn(&repo, &["show", "--instance", "main"])).as_array().unwrap().len(), 2);
    ok(cairn(&repo, &["check", "--read-data"]));
    let all = ok(cairn(&repo, &["validate", "--instance", "main"]));
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
}

#[test]
fn all_databases_stream_without_scratch_space_into_another_cluster() {
    let source = PgCluster::start(15);
    make_shop(&source);
    source.psql("CREATE ROLE auditor LOGIN");
    source.psql("CREATE DATABASE notes OWNER auditor");
    source.psql_db(
        "notes",
        "CREATE TABLE memo (id int PRIMARY KEY, body text); INSERT INTO memo VALUES (1, 'hi')",
    );
    let work = tempfile::tempdir().unwrap();
    let repo = repository(work.path(), &source, &[]);
    let dump = ok(cairn(
        &repo,
        &["backup", "--instance", "main", "-b", "LOGICAL", "--all-databases", "--no-scratch"],
    ));
    assert_eq!(dump["logical"]["format"], "custom", "{dump}");
    assert_eq!(dump["logical"]["globals"], true);
    assert_eq!(dump["logical"]["databases"], serde_json::json!(["notes", "postgres", "shop"]));
    let id = dump["id"].as_str().unwrap().to_string();

    // Into a fresh cluster: the roles first, then every database (postgres is there already).
    let other = PgCluster::start(15);
    let port = other.port().to_string();
    let restore = [
        "restore",
        "--instance",
        "main",
        "-b",
        "LOGICAL",
        "-i",
        &id,
        "--target-host",
        "127.0.0.1",
        "--target-port",
        &port,
    ];
    let msg = fails(cairn(&repo, &restore), 10, "restore-refused");
    assert!(msg.contains("'postgres'"), "{msg}");

    // Globals without --clean never change a role the target has: its password and
    // attributes stay; the roles it lacks are created.
    source.psql("ALTER ROLE auditor PASSWORD 'source secret'; CREATE ROLE reader");
    let notes = ok(cairn(
        &repo,
        &[
            "backup",
            "--instance",
            "main",
            "-b",
            "LOGICAL",
            "--database",
            "notes",
            "--globals",
            "--no-validate",
        ],
    ));
    other.psql("CREATE ROLE auditor NOLOGIN PASSWORD 'target secret'");
    let auditor = "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = 'auditor'";
    let before = other.psql(auditor);
    let loaded = ok(cairn(&repo, &[&restore[..6], &[notes["id"].as_str().unwrap()], &restore[7..]].concat()));
    assert_eq!(loaded["globals"], true, "{loaded}");
    assert!(loaded["warnings"].to_string().contains("role auditor exists"), "{loaded}");
    assert_eq!(other.psql(auditor), before);
    assert!(before.starts_with("f|SCRAM"), "{before}");
    assert_eq!(other.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'reader'"), "1");
    assert_eq!(other.psql_db("notes", "SELECT body FROM memo"), "hi");
    let restored = ok(cairn(&repo, &[&restore[..], &["--clean"]].concat()));
    assert_eq!(restored["globals"], true, "{restored}");
    assert_eq!(restored["databases"].as_array().unwrap().len(), 3);
    assert_eq!(
        other.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'auditor'"),
        "1",
        "the roles came first"
    );
    assert_eq!(fingerprint(&other, "shop", &[]), fingerprint(&source, "shop", &[]));
    assert_eq!(other.psql_db("notes", "SELECT body FROM memo"), "hi");
    assert_eq!(
        other.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'notes'"),
        "postgres",
        "the restore creates the database; its owner is the restoring role"
    );
    assert_eq!(
        other.psql_db("notes", "SELECT tableowner FROM pg_tables WHERE tablename = 'memo'"),
        "postgres"
    );

    // One table out of the streamed dump, under a new name.
    ok(cairn(
        &repo,
        &[
            "restore",
            "--instance",
            "main",
            "-b",
            "LOGICAL",
            "-i",
            &id,
            "--database",
            "shop",
            "--new-name",
            "hr_copy",
            "--table",
            "people",
        ],
    ));
    // Physical backups never build on a dump: a DELTA after it has no parent (a FULL), and a
    // physical restore without -i takes the newest physical backup, not a newer dump.
    let physical = ok(cairn(&repo, &["backup", "--instance", "main", "-b", "DELTA", "--no-validate"]));
    assert_eq!((&physical["mode"], &physical["parent"]), (&"FULL".into(), &Value::Null), "{physical}");
    ok(cairn(
        &repo,
        &["backup", "--instance", "main", "-b", "LOGICAL", "--database", "notes", "--no-validate"],
    ));
    let pgdata = work.path().join("pgdata");
    let restored = ok(cairn(&repo, &["restore", "--instance", "main", "-D", pgdata.to_str().unwrap()]));
    assert_eq!(restored["backup_id"], physical["id"]);

    let people = "SELECT count(*), md5(string_agg(p::text, ',' ORDER BY id)) FROM hr.people p";
    assert_eq!(
        source.psql_db("hr_copy", people),
        source.psql_db("shop", people),
        "hr.people, found without its schema's name"
    );
    assert_eq!(source.psql_db("hr_copy", "SELECT count(*) FROM pg_tables WHERE schemaname <> 'pg_catalog' AND schemaname <> 'information_schema'"), "1");

    // A dump tool that fails leaves an ERROR record saying why, never an OK backup.
    let backup = ["backup", "--instance", "main", "-b", "LOGICAL", "--database", "shop", "--table", "nosuch"];
    let msg = fails(cairn(&repo, &backup), 12, "tool-failed");
    assert!(msg.contains("pg_dump failed") && msg.contains("no matching tables"), "{msg}");
    let shown = ok(cairn(&repo, &["show", "--instance", "main"]));
    let last = shown.as_array().unwrap().last().unwrap().clone();
    assert_eq!((&last["mode"], &last["status"]), (&"LOGICAL".into(), &"ERROR".into()), "{last}");
    assert!(last["error"].as_str().unwrap().contains("no matching tables"), "{last}");
}

#[test]
fn a_dump_tool_older_than_the_server_is_refused_before_anything_is_recorded() {
    let server = PgCluster::start(17);
    let work = tempfile::tempdir().unwrap();
    let repo = repository(work.path(), &server, &[]);
    let backup = ["backup", "--instance", "main", "-b", "LOGICAL", "--database", "postgres"];
    let msg = fails(cairn(&repo, &backup), 12, "tool-too-old");
    assert!(msg.contains("pg_dump 15.") && msg.contains("PostgreSQL 17."), "{msg}");
    assert!(msg.contains("postgresql-client-17"), "{msg}");
    let empty = work.path().join("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let msg = fails(
        cairn(&repo, &[&backup[..], &["--dump-bin-dir", empty.to_str().unwrap()]].concat()),
        12,
        "tool-missing",
    );
    assert!(msg.contains("pg_dump was not found in") && msg.contains("no-tools"), "{msg}");
    assert_eq!(ok(cairn(&repo, &["show", "--instance", "main"])), serde_json::json!([]), "nothing recorded");

    // Options that need -b LOGICAL, and the other way round.
    fails(cairn(&repo, &["backup", "--instance", "main", "--database", "postgres"]), 2, "invalid-argument");
    fails(cairn(&repo, &["backup", "--instance", "main", "-b", "LOGICAL"]), 2, "invalid-argument");
    let target = work.path().join("x");
    fails(
        cairn(&repo, &["restore", "--instance", "main", "-b", "LOGICAL", "-D", target.to_str().unwrap()]),
        2,
        "invalid-argument",
    );
}

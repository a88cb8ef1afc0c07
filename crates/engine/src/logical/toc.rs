//! A dump's table of contents as `pg_restore -l -v` lists it, and the choice of entries for
//! restoring one schema or one table. `pg_restore -n` leaves out the `CREATE SCHEMA` and
//! `pg_restore -t` a table's indexes, constraints, defaults and sequences; choosing the entries
//! here (the objects and what hangs on them, by the dump's own dependencies) and handing
//! them over as a list (`-L`) restores them whole.

use std::collections::BTreeSet;

use crate::error::{EngineError, Result};

/// Kinds of entries, as pg_dump names them; longest first, so that a kind that begins with
/// another (`TABLE DATA`, `TABLE`) is recognised whole.
const KINDS: &[&str] = &[
    "PUBLICATION TABLES IN SCHEMA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "MATERIALIZED VIEW DATA",
    "TEXT SEARCH TEMPLATE",
    "FOREIGN DATA WRAPPER",
    "PROCEDURAL LANGUAGE",
    "DATABASE PROPERTIES",
    "TEXT SEARCH PARSER",
    "SUBSCRIPTION TABLE",
    "SEQUENCE OWNED BY",
    "PUBLICATION TABLE",
    "MATERIALIZED VIEW",
    "CHECK CONSTRAINT",
    "OPERATOR FAMILY",
    "OPERATOR CLASS",
    "FOREIGN SERVER",
    "SECURITY LABEL",
    "BLOB METADATA",
    "ACCESS METHOD",
    "EVENT TRIGGER",
    "FOREIGN TABLE",
    "FK CONSTRAINT",
    "INDEX ATTACH",
    "LARGE OBJECTS",
    "LARGE OBJECT",
    "ROW SECURITY",
    "SEQUENCE SET",
    "SUBSCRIPTION",
    "TABLE ATTACH",
    "USER MAPPING",
    "DEFAULT ACL",
    "PUBLICATION",
    "STDSTRINGS",
    "SEARCHPATH",
    "SHELL TYPE",
    "COLLATION",
    "CONSTRAINT",
    "CONVERSION",
    "STATISTICS",
    "AGGREGATE",
    "EXTENSION",
    "TRANSFORM",
    "PROCEDURE",
    "TABLE DATA",
    "ENCODING",
    "FUNCTION",
    "OPERATOR",
    "SEQUENCE",
    "DATABASE",
    "TRIGGER",
    "COMMENT",
    "DEFAULT",
    "DOMAIN",
    "POLICY",
    "SCHEMA",
    "SERVER",
    "BLOBS",
    "INDEX",
    "TABLE",
    "BLOB",
    "CAST",
    "RULE",
    "TYPE",
    "VIEW",
    "ACL",
];

/// Relations: what `--table` names and what a restore must not silently replace.
const RELATIONS: &[&str] = &["TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "SEQUENCE"];

/// Kinds that belong to the object they depend on and go with it (a table's data, indexes,
/// constraints, defaults, triggers, identity and owned sequences, comments, grants). Foreign
/// keys are not among them: they need other tables.
const ATTACHED: &[&str] = &[
    "TABLE DATA",
    "MATERIALIZED VIEW DATA",
    "INDEX",
    "INDEX ATTACH",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "DEFAULT",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
    "STATISTICS",
    "COMMENT",
    "ACL",
    "SECURITY LABEL",
    "SEQUENCE",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
];

/// One entry of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub kind: String,
    /// `-` when the entry belongs to no schema.
    pub namespace: String,
    /// The object's name (`orders`, `greet(text)`, `orders orders_pkey` for a constraint).
    pub name: String,
    pub depends_on: Vec<u32>,
    /// The line as listed, for the list handed back to pg_restore.
    line: String,
}

/// Parses `pg_restore -l -v` output. Lines of unknown kinds are kept with an empty kind.
pub fn parse(listing: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in listing.lines() {
        if let Some(deps) = line.strip_prefix(";\tdepends on:") {
            if let Some(last) = entries.last_mut() {
                last.depends_on.extend(deps.split_whitespace().filter_map(|d| d.parse::<u32>().ok()));
            }
            continue;
        }
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        if let Some(entry) = parse_line(line) {
            entries.push(entry);
        }
    }
    entries
}

/// `3367; 0 16388 TABLE DATA sales orders postgres`: id, catalog oid, oid, kind, namespace,
/// name, owner. Names may hold spaces: the namespace is taken as one word, the owner as the
/// last.
fn parse_line(line: &str) -> Option<Entry> {
    let (id, rest) = line.split_once(';')?;
    let id = id.trim().parse().ok()?;
    let mut words = rest.trim_start().splitn(3, ' ');
    let (_catalog, _oid, rest) = (words.next()?, words.next()?, words.next()?);
    let kind = KINDS.iter().find(|k| rest.starts_with(*k) && rest[k.len()..].starts_with(' '));
    let (kind, rest) = match kind {
        Some(k) => (k.to_string(), &rest[k.len() + 1..]),
        None => (String::new(), rest),
    };
    let (namespace, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = rest.rsplit_once(' ').map_or(rest, |(name, _owner)| name);
    Some(Entry {
        id,
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        depends_on: Vec::new(),
        line: line.to_string(),
    })
}

/// A table as `--table` names it: `schema.table` or `table` (any schema, if only one has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn parse(text: &str) -> TableName {
        match text.split_once('.') {
            Some((schema, name)) => TableName { schema: Some(schema.into()), name: name.into() },
            None => TableName { schema: None, name: text.into() },
        }
    }
}

/// The entries to restore, in the dump's order, and the schemas and relations they create.
#[derive(Debug, Clone, Default)]
pub struct Chosen {
    pub ids: BTreeSet<u32>,
    pub schemas: Vec<String>,
    /// `(schema, name)` of every relation.
    pub relations: Vec<(String, String)>,
}

impl Chosen {
    /// Adds the entries creating `schemas` (a table restored where its schema is missing).
    pub fn add_schemas(&mut self, entries: &[Entry], schemas: &[String]) {
        for e in entries.iter().filter(|e| e.kind == "SCHEMA" && schemas.contains(&e.name)) {
            if self.ids.insert(e.id) {
                self.schemas.push(e.name.clone());
            }
        }
    }

    /// The list for `pg_restore -L`: the chosen lines in the dump's order.
    pub fn list(&self, entries: &[Entry]) -> String {
        entries.iter().filter(|e| self.ids.contains(&e.id)).map(|e| format!("{}\n", e.line)).collect()
    }
}

/// Chooses the entries for `schemas` and `tables` (everything when both are empty): a schema
/// with everything in it, a table with everything attached to it, and the sequences its
/// defaults draw from.
pub fn choose(entries: &[Entry], schemas: &[String], tables: &[TableName], database: &str) -> Result<Chosen> {
    let mut ids = BTreeSet::new();
    if schemas.is_empty() && tables.is_empty() {
        ids.extend(entries.iter().map(|e| e.id));
    }
    for schema in schemas {
        let before = ids.len();
        ids.extend(
            entries
                .iter()
                .filter(|e| e.namespace == *schema || (e.kind == "SCHEMA" && e.name == *schema))
                .map(|e| e.id),
        );
        if ids.len() == before {
            return Err(EngineError::Invalid(format!(
                "the dump of database '{database}' has no schema '{schema}'"
            )));
        }
    }
    for table in tables {
        let matching: Vec<&Entry> = entries
            .iter()
            .filter(|e| RELATIONS.contains(&e.kind.as_str()) && e.name == table.name)
            .filter(|e| table.schema.as_ref().is_none_or(|s| *s == e.namespace))
            .collect();
        let namespaces: BTreeSet<&str> = matching.iter().map(|e| e.namespace.as_str()).collect();
        match namespaces.len() {
            0 => {
                return Err(EngineError::Invalid(format!(
                    "the dump of database '{database}' has no table '{}'",
                    table.schema.as_ref().map_or(table.name.clone(), |s| format!("{s}.{}", table.name))
                )))
            }
            1 => ids.extend(matching.iter().map(|e| e.id)),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "table '{}' is in several schemas of database '{database}' ({}): name it as schema.table",
                    table.name,
                    namespaces.into_iter().collect::<Vec<_>>().join(", ")
                )))
            }
        }
    }
    // What hangs on the chosen entries, until nothing more does; and the sequences that the
    // chosen column defaults draw from.
    loop {
        let before = ids.len();
        for e in entries {
            if !ids.contains(&e.id)
                && ATTACHED.contains(&e.kind.as_str())
                && e.depends_on.iter().any(|d| ids.contains(d))
            {
                ids.insert(e.id);
            }
        }
        let sequences: Vec<u32> = entries
            .iter()
            .filter(|e| e.kind == "DEFAULT" && ids.contains(&e.id))
            .flat_map(|e| e.depends_on.iter().copied())
            .filter(|d| entries.iter().any(|s| s.id == *d && s.kind == "SEQUENCE"))
            .collect();
        ids.extend(sequences);
        // A chosen partitioned table brings its partitions: each is a TABLE of its own, put
        // under its parent by a TABLE ATTACH named like the partition, on both.
        for attach in entries.iter().filter(|e| e.kind == "TABLE ATTACH") {
            let tables = || entries.iter().filter(|t| t.kind == "TABLE" && attach.depends_on.contains(&t.id));
            let is_partition = |t: &Entry| t.namespace == attach.namespace && t.name == attach.name;
            if !ids.contains(&attach.id) && tables().any(|t| !is_partition(t) && ids.contains(&t.id)) {
                ids.insert(attach.id);
                ids.extend(tables().filter(|t| is_partition(t)).map(|t| t.id));
            }
        }
        if ids.len() == before {
            break;
        }
    }
    let chosen = entries.iter().filter(|e| ids.contains(&e.id));
    let schemas = chosen.clone().filter(|e| e.kind == "SCHEMA").map(|e| e.name.clone()).collect();
    let relations = chosen
        .filter(|e| RELATIONS.contains(&e.kind.as_str()))
        .map(|e| (e.namespace.clone(), e.name.clone()))
        .collect();
    Ok(Chosen { ids, schemas, relations })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore -l -v` of a PostgreSQL 15 dump (header trimmed).
    const LISTING: &str = "\
;
; Archive created at 2026-11-22 09:37:35 UTC
;
3376; 0 0 ENCODING - ENCODING 
3379; 1262 16384 DATABASE - src postgres
7; 2615 16386 SCHEMA - hr postgres
6; 2615 16385 SCHEMA - sales postgres
3390; 0 0 COMMENT - SCHEMA sales postgres
;\tdepends on: 6
223; 1255 16421 FUNCTION hr greet(text) postgres
;\tdepends on: 7
219; 1259 16398 TABLE hr people postgres
;\tdepends on: 7
218; 1259 16397 SEQUENCE hr people_id_seq postgres
;\tdepends on: 7 219
217; 1259 16388 TABLE sales orders postgres
;\tdepends on: 6
221; 1259 16417 VIEW sales big postgres
;\tdepends on: 217 217 6
220; 1259 16407 TABLE sales items postgres
;\tdepends on: 6
216; 1259 16387 SEQUENCE sales orders_id_seq postgres
;\tdepends on: 6 217
3380; 0 0 SEQUENCE OWNED BY sales orders_id_seq postgres
;\tdepends on: 216
222; 1259 16422 SEQUENCE sales ticket postgres
;\tdepends on: 6
3214; 2604 16391 DEFAULT sales orders id postgres
;\tdepends on: 216 217 217
3372; 2613 16423 BLOB - 16423 postgres
3369; 0 16398 TABLE DATA hr people postgres
;\tdepends on: 219
3367; 0 16388 TABLE DATA sales orders postgres
;\tdepends on: 217
3381; 0 0 SEQUENCE SET hr people_id_seq postgres
;\tdepends on: 218
3382; 0 0 SEQUENCE SET sales orders_id_seq postgres
;\tdepends on: 216
3383; 0 0 SEQUENCE SET sales ticket postgres
;\tdepends on: 222
3217; 2606 16395 CONSTRAINT sales orders orders_pkey postgres
;\tdepends on: 217
3215; 1259 16396 INDEX sales orders_customer postgres
;\tdepends on: 217
3222; 2606 16412 FK CONSTRAINT sales items items_order_id_fkey postgres
;\tdepends on: 220 217 3217
";

    fn ids(chosen: &Chosen) -> Vec<u32> {
        chosen.ids.iter().copied().collect()
    }

    #[test]
    fn entries_parse_with_kinds_of_several_words() {
        let entries = parse(LISTING);
        assert_eq!(entries.len(), 24);
        let data = entries.iter().find(|e| e.id == 3367).map(|e| (e.kind.as_str(), &e.namespace, &e.name));
        assert_eq!(data, Some(("TABLE DATA", &"sales".to_string(), &"orders".to_string())));
        let pkey = entries.iter().find(|e| e.id == 3217).map(|e| e.name.as_str());
        assert_eq!(pkey, Some("orders orders_pkey"));
        let fk = entries.iter().find(|e| e.id == 3222).map(|e| (e.kind.as_str(), e.depends_on.clone()));
        assert_eq!(fk, Some(("FK CONSTRAINT", vec![220, 217, 3217])));
        assert_eq!(entries[0].kind, "ENCODING");
    }

    #[test]
    fn a_table_comes_with_its_indexes_constraints_default_and_sequence() {
        let entries = parse(LISTING);
        let chosen = choose(&entries, &[], &[TableName::parse("orders")], "src").unwrap_or_default();
        // Not the view on it, nor the foreign key of another table.
        assert_eq!(ids(&chosen), vec![216, 217, 3214, 3215, 3217, 3367, 3380, 3382]);
        assert_eq!(
            chosen.relations,
            vec![("sales".into(), "orders".into()), ("sales".into(), "orders_id_seq".into())]
        );
        assert!(chosen.schemas.is_empty());
        let list = chosen.list(&entries);
        assert!(list.starts_with("217; 1259 16388 TABLE sales orders postgres\n"), "{list}");
        let mut identity = choose(&entries, &[], &[TableName::parse("hr.people")], "src").unwrap_or_default();
        assert_eq!(ids(&identity), vec![218, 219, 3369, 3381]);
        // Into a database without the schema: its entry comes too.
        identity.add_schemas(&entries, &["hr".into()]);
        assert_eq!(ids(&identity), vec![7, 218, 219, 3369, 3381]);
        assert_eq!(identity.schemas, vec!["hr".to_string()]);
    }

    #[test]
    fn a_schema_comes_whole_with_its_own_entry() {
        let entries = parse(LISTING);
        let chosen = choose(&entries, &["sales".into()], &[], "src").unwrap_or_default();
        assert!(chosen.ids.contains(&6) && chosen.ids.contains(&3390) && chosen.ids.contains(&3222));
        assert!(!chosen.ids.contains(&7) && !chosen.ids.contains(&3372) && !chosen.ids.contains(&223));
        assert_eq!(chosen.schemas, vec!["sales".to_string()]);
    }

    #[test]
    fn a_partitioned_table_comes_with_its_partitions() {
        // `pg_restore -l -v` of PostgreSQL 15: ledger partitioned, ledger_a and ledger_b.
        let entries = parse(
            "214; 1259 16385 TABLE public ledger postgres\n\
             215; 1259 16388 TABLE public ledger_a postgres\n;\tdepends on: 214\n\
             216; 1259 16392 TABLE public ledger_b postgres\n;\tdepends on: 214\n\
             3204; 0 0 TABLE ATTACH public ledger_a postgres\n;\tdepends on: 215 214\n\
             3205; 0 0 TABLE ATTACH public ledger_b postgres\n;\tdepends on: 216 214\n\
             3364; 0 16388 TABLE DATA public ledger_a postgres\n;\tdepends on: 215\n\
             3365; 0 16392 TABLE DATA public ledger_b postgres\n;\tdepends on: 216\n\
             3211; 2606 16400 CONSTRAINT public ledger ledger_pkey postgres\n;\tdepends on: 214 214\n\
             3214; 2606 16402 CONSTRAINT public ledger_a ledger_a_pkey postgres\n;\tdepends on: 3211 215 215\n\
             3209; 1259 16396 INDEX public ledger_day postgres\n;\tdepends on: 214\n\
             3212; 1259 16397 INDEX public ledger_a_day_idx postgres\n;\tdepends on: 215 3209 215\n\
             3218; 0 0 INDEX ATTACH public ledger_a_day_idx postgres\n;\tdepends on: 3212 3209 215 214\n",
        );
        let all: Vec<u32> = entries.iter().map(|e| e.id).collect::<BTreeSet<u32>>().into_iter().collect();
        let chosen = choose(&entries, &[], &[TableName::parse("ledger")], "src").unwrap_or_default();
        assert_eq!(ids(&chosen), all);
        // A partition alone comes without its parent.
        let chosen = choose(&entries, &[], &[TableName::parse("ledger_b")], "src").unwrap_or_default();
        assert_eq!(ids(&chosen), vec![216, 3365]);
    }

    #[test]
    fn unknown_and_ambiguous_names_are_refused() {
        let mut entries = parse(LISTING);
        let err = |r: Result<Chosen>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(choose(&entries, &["nope".into()], &[], "src")).contains("no schema 'nope'"));
        assert!(err(choose(&entries, &[], &[TableName::parse("hr.orders")], "src"))
            .contains("no table 'hr.orders'"));
        entries.extend(parse("900; 1259 1 TABLE hr orders postgres\n"));
        assert!(err(choose(&entries, &[], &[TableName::parse("orders")], "src")).contains("schema.table"));
    }
}

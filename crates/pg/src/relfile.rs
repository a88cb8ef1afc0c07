//! Names of relation files: `16384`, `16384_fsm`, `16384_vm`, `16384_init`, their 1 GiB
//! segments `16384.1`, and the temporary relations `t3_16384` the base backup skips
//! (`parse_filename_for_nontemp_relation` and `looks_like_temp_rel_name` of the server).

use std::fmt;

/// A relation fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fork {
    Main,
    /// Free space map, `_fsm`.
    Fsm,
    /// Visibility map, `_vm`.
    Vm,
    /// The init fork of an unlogged relation, `_init`: what the relation is reset to after a
    /// crash.
    Init,
}

impl Fork {
    /// The server's `ForkNumber`.
    pub fn number(self) -> i16 {
        match self {
            Fork::Main => 0,
            Fork::Fsm => 1,
            Fork::Vm => 2,
            Fork::Init => 3,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Fork::Main => "",
            Fork::Fsm => "_fsm",
            Fork::Vm => "_vm",
            Fork::Init => "_init",
        }
    }
}

/// A parsed relation file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationFileName {
    /// The relfilenode (`RelFileNumber`).
    pub relnumber: u32,
    pub fork: Fork,
    /// The 1 GiB segment: 0 for the file without a suffix, n for `.n`.
    pub segment: u32,
}

impl fmt::Display for RelationFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.relnumber, self.fork.suffix())?;
        if self.segment > 0 {
            write!(f, ".{}", self.segment)?;
        }
        Ok(())
    }
}

/// Where a relation file of a PostgreSQL data directory belongs: tablespace, database and
/// file (`RelFileLocator` plus fork and segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelationLocator {
    pub tablespace: u32,
    /// 0 for the shared catalogs in `global/`.
    pub database: u32,
    pub file: RelationFileName,
}

/// The OIDs of the `pg_default` and `pg_global` tablespaces.
pub const DEFAULT_TABLESPACE_OID: u32 = 1663;
pub const GLOBAL_TABLESPACE_OID: u32 = 1664;

/// The locator of a relation file from its path relative to the data directory:
/// `base/<db>/<file>`, `global/<file>` or `pg_tblspc/<spc>/<version dir>/<db>/<file>`.
pub fn relation_locator(rel_path: &str) -> Option<RelationLocator> {
    let parts: Vec<&str> = rel_path.split('/').collect();
    let (tablespace, database, name) = match parts.as_slice() {
        ["base", db, name] => (DEFAULT_TABLESPACE_OID, parse_oid(db)?, name),
        ["global", name] => (GLOBAL_TABLESPACE_OID, 0, name),
        ["pg_tblspc", spc, _version, db, name] => (parse_oid(spc)?, parse_oid(db)?, name),
        _ => return None,
    };
    Some(RelationLocator { tablespace, database, file: parse_relation_file_name(name)? })
}

/// All ASCII digits, at least one, and a value that fits a `u32` (an OID).
fn parse_oid(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `<relnumber>[_fork][.segment]`, the part common to permanent and temporary relations.
fn parse_rel_suffixes(name: &str) -> Option<RelationFileName> {
    let (base, segment) = match name.split_once('.') {
        // Segment files are numbered from 1; "16384.0" is never written by the server.
        Some((base, seg)) => (base, parse_oid(seg).filter(|&s| s > 0)?),
        None => (name, 0),
    };
    let (digits, fork) = match base.split_once('_') {
        Some((digits, "fsm")) => (digits, Fork::Fsm),
        Some((digits, "vm")) => (digits, Fork::Vm),
        Some((digits, "init")) => (digits, Fork::Init),
        Some(_) => return None,
        None => (base, Fork::Main),
    };
    Some(RelationFileName { relnumber: parse_oid(digits)?, fork, segment })
}

/// A permanent (or unlogged) relation's file name, or `None`.
pub fn parse_relation_file_name(name: &str) -> Option<RelationFileName> {
    parse_rel_suffixes(name)
}

/// A temporary relation's file name: `t<backend>_<relnumber>[_fork][.segment]`. These belong
/// to sessions and are never backed up.
pub fn is_temp_relation_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else { return false };
    let Some((backend, rel)) = rest.split_once('_') else { return false };
    parse_oid(backend).is_some() && parse_rel_suffixes(rel).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relation_paths_locate() {
        let name = |relnumber, fork, segment| RelationFileName { relnumber, fork, segment };
        let at = |tablespace, database, file| Some(RelationLocator { tablespace, database, file });
        assert_eq!(relation_locator("base/5/16384.2"), at(1663, 5, name(16384, Fork::Main, 2)));
        assert_eq!(relation_locator("global/1262_vm"), at(1664, 0, name(1262, Fork::Vm, 0)));
        assert_eq!(
            relation_locator("pg_tblspc/16400/PG_17_202406281/5/16401_fsm"),
            at(16400, 5, name(16401, Fork::Fsm, 0))
        );
        for not in ["base/5", "base/x/16384", "global/pg_control", "pg_wal/000000010000000000000001", "16384"]
        {
            assert_eq!(relation_locator(not), None, "{not:?}");
        }
    }

    #[test]
    fn relation_names_parse() {
        let r = |relnumber, fork, segment| Some(RelationFileName { relnumber, fork, segment });
        assert_eq!(parse_relation_file_name("16384"), r(16384, Fork::Main, 0));
        assert_eq!(parse_relation_file_name("16384.2"), r(16384, Fork::Main, 2));
        assert_eq!(parse_relation_file_name("1259_fsm"), r(1259, Fork::Fsm, 0));
        assert_eq!(parse_relation_file_name("1259_vm.1"), r(1259, Fork::Vm, 1));
        assert_eq!(parse_relation_file_name("16390_init"), r(16390, Fork::Init, 0));
        assert_eq!(parse_relation_file_name("4294967295"), r(u32::MAX, Fork::Main, 0));
        for not in [
            "",
            "PG_VERSION",
            "pg_filenode.map",
            "pg_internal.init",
            "16384_",
            "16384_x",
            "16384.",
            "16384.0",
            "16384.a",
            "_fsm",
            "4294967296",
            "t3_16384",
            "16384.1.1",
            "16384_fsm_vm",
            "pg_control",
        ] {
            assert_eq!(parse_relation_file_name(not), None, "{not:?}");
        }
    }

    #[test]
    fn temporary_relation_names() {
        for temp in ["t3_16384", "t12_16384_fsm", "t3_16384.4", "t3_16384_vm.1"] {
            assert!(is_temp_relation_file_name(temp), "{temp}");
        }
        for not in ["16384", "t_16384", "t3_", "tx_16384", "t3_16384_x", "temp"] {
            assert!(!is_temp_relation_file_name(not), "{not}");
        }
    }

    proptest! {
        #[test]
        fn relation_names_round_trip(rel in any::<u32>(), fork in 0u8..4, seg in 0u32..100_000) {
            let fork = [Fork::Main, Fork::Fsm, Fork::Vm, Fork::Init][usize::from(fork)];
            let name = RelationFileName { relnumber: rel, fork, segment: seg };
            prop_assert_eq!(parse_relation_file_name(&name.to_string()), Some(name));
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,30}") {
            let _ = parse_relation_file_name(&s);
            let _ = is_temp_relation_file_name(&s);
        }
    }
}

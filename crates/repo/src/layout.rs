//! Where each kind of object lives in the repository.

use crate::id::Id;

pub const CONFIG: &str = "config";
pub const KEYS: &str = "keys/";
pub const DATA: &str = "data/";
pub const INDEX: &str = "index/";
pub const MANIFESTS: &str = "manifests/";
pub const LOCKS: &str = "locks/";

/// The kinds of stored objects addressed by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Key,
    Pack,
    Index,
    Manifest,
    Lock,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Pack => "pack",
            Kind::Index => "index",
            Kind::Manifest => "manifest",
            Kind::Lock => "lock",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Key => KEYS,
            Kind::Pack => DATA,
            Kind::Index => INDEX,
            Kind::Manifest => MANIFESTS,
            Kind::Lock => LOCKS,
        }
    }
}

/// `data/ab/ab12…` for packs (256 fan-out directories keep listings short), `<kind>/<id>` otherwise.
pub fn path(kind: Kind, id: &Id) -> String {
    let hex = id.to_hex();
    match kind {
        Kind::Pack => format!("{DATA}{}/{hex}", &hex[..2]),
        _ => format!("{}{hex}", kind.prefix()),
    }
}

/// The id in an object path of `kind`, or `None` for anything else (stray files are ignored).
pub fn id_of(kind: Kind, path: &str) -> Option<Id> {
    let rest = path.strip_prefix(kind.prefix())?;
    let name = match kind {
        Kind::Pack => {
            let (fan, name) = rest.split_once('/')?;
            if !name.starts_with(fan) || fan.len() != 2 {
                return None;
            }
            name
        }
        _ => rest,
    };
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        let id = Id::of_object(b"x");
        for kind in [Kind::Key, Kind::Pack, Kind::Index, Kind::Manifest, Kind::Lock] {
            assert_eq!(id_of(kind, &path(kind, &id)), Some(id));
        }
        assert!(path(Kind::Pack, &id).starts_with(&format!("data/{}/", &id.to_hex()[..2])));
        assert_eq!(id_of(Kind::Pack, "data/zz/nothex"), None);
        assert_eq!(id_of(Kind::Index, "index/.tmp"), None);
    }
}

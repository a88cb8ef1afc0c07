//! Which backups a retention policy keeps. Every backup restores on its own (a DELTA shares
//! chunks, not a chain), so keeping a backup never requires keeping another; what the policy
//! protects is the ability to restore: the newest FULL backups and what follows them
//! (redundancy), and every point of the last days (window).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::catalog::{BackupInfo, BackupMode, BackupStatus};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest this many FULL backups, and every backup taken after the oldest of them.
    pub redundancy: Option<u32>,
    /// Keep what restores to any moment of the last this many days: the backups that ended
    /// in that time, and the newest one before it.
    pub window_days: Option<u32>,
}

impl RetentionPolicy {
    pub fn is_set(&self) -> bool {
        self.redundancy.is_some_and(|n| n > 0) || self.window_days.is_some_and(|d| d > 0)
    }
}

/// What retention needs to know of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub mode: BackupMode,
    pub status: BackupStatus,
    pub end_time: DateTime<Utc>,
    /// Pinned until then (`set-backup --ttl/--expire-time`).
    pub expire_time: Option<DateTime<Utc>>,
    /// What a LOGICAL backup restores (its scope: databases, schemas, tables, time range);
    /// empty for physical ones. Dumps of one scope make a series of their own.
    pub series: String,
    /// DELTA: the backup it compared its files with.
    pub parent: Option<String>,
}

impl Candidate {
    pub fn of(b: &BackupInfo) -> Candidate {
        Candidate {
            id: b.record.id.clone(),
            mode: b.record.mode,
            status: b.record.status,
            end_time: b.record.end_time.unwrap_or(b.record.start_time),
            expire_time: b.record.expire_time,
            series: b.record.logical.as_ref().map_or_else(String::new, |l| {
                let range = l.time_range.as_ref().map(|r| (&r.column, &r.from, &r.to));
                serde_json::json!([l.databases, l.schemas, l.tables, l.globals, range]).to_string()
            }),
            parent: b.record.parent.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub id: String,
    pub reason: String,
}

/// The usable backups (OK or DONE) the policy does not keep, oldest first, with why. Backups
/// of other statuses are not the policy's business (`delete --status` removes them), and
/// pinned ones are always kept. With no policy set nothing expires.
pub fn expired(backups: &[Candidate], policy: RetentionPolicy, now: DateTime<Utc>) -> Vec<Expired> {
    if !policy.is_set() {
        return Vec::new();
    }
    // Logical dumps restore something else than physical backups, and dumps of another scope
    // something else again (a January time range is not replaced by two dumps of a schema):
    // the policy keeps each series on its own, a dump counting as a FULL of its series.
    if backups.iter().any(|b| b.mode == BackupMode::Logical) {
        let (dumps, physical): (Vec<Candidate>, Vec<Candidate>) =
            backups.iter().cloned().partition(|b| b.mode == BackupMode::Logical);
        let mut out = expired(&physical, policy, now);
        let mut series: Vec<&String> = dumps.iter().map(|b| &b.series).collect();
        series.sort();
        series.dedup();
        for one in series {
            let dumps: Vec<Candidate> = (dumps.iter().filter(|b| b.series == *one))
                .map(|b| Candidate { mode: BackupMode::Full, ..b.clone() })
                .collect();
            out.extend(expired(&dumps, policy, now));
        }
        out.sort_by_key(|e| backups.iter().find(|b| b.id == e.id).map(|b| b.end_time));
        return out;
    }
    let mut usable: Vec<&Candidate> = backups.iter().filter(|b| b.status.is_restorable()).collect();
    usable.sort_by_key(|b| b.end_time);
    // Redundancy: from the start of the N-th newest FULL on.
    let redundancy_from = policy.redundancy.filter(|&n| n > 0).map(|n| {
        let fulls: Vec<&&Candidate> = usable.iter().filter(|b| b.mode == BackupMode::Full).collect();
        fulls.len().checked_sub(n as usize).map_or(DateTime::<Utc>::MIN_UTC, |i| fulls[i].end_time)
    });
    // Window: the newest backup ending before the window opens, and everything after.
    let window_from = policy.window_days.filter(|&d| d > 0).map(|d| {
        let opens = now - Duration::days(i64::from(d));
        usable.iter().rev().find(|b| b.end_time < opens).map_or(DateTime::<Utc>::MIN_UTC, |b| b.end_time)
    });
    let kept_by = |b: &Candidate| -> bool {
        redundancy_from.is_some_and(|from| b.end_time >= from)
            || window_from.is_some_and(|from| b.end_time >= from)
    };
    usable
        .into_iter()
        .filter(|b| !kept_by(b) && b.expire_time.is_none_or(|t| t <= now))
        .map(|b| Expired {
            id: b.id.clone(),
            reason: [
                policy
                    .redundancy
                    .filter(|&n| n > 0)
                    .map(|n| format!("older than the newest {n} FULL backup(s)")),
                policy
                    .window_days
                    .filter(|&d| d > 0)
                    .map(|d| format!("not needed to restore to the last {d} day(s)")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        })
        .collect()
}

/// A kept DELTA that `delete --merge-expired` makes FULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merge {
    pub id: String,
    /// The expired backups it descends from, nearest first.
    pub expired_ancestors: Vec<String>,
}

/// For `--merge-expired`: the usable DELTA backups that are kept but descend from an expired
/// one (following `parent` to the first FULL). Oldest first, and one chosen counts as FULL
/// for those after it, so each chain gets its oldest kept DELTA only.
pub fn to_merge(backups: &[Candidate], expired: &[Expired]) -> Vec<Merge> {
    let is_expired = |id: &str| expired.iter().any(|e| e.id == id);
    let mut by_age: Vec<&Candidate> = backups.iter().collect();
    by_age.sort_by_key(|b| b.end_time);
    let mut merges: Vec<Merge> = Vec::new();
    for b in by_age {
        if b.mode != BackupMode::Delta || !b.status.is_restorable() || is_expired(&b.id) {
            continue;
        }
        let mut expired_ancestors = Vec::new();
        let mut next = b.parent.as_deref();
        let mut steps = 0;
        while let Some(parent) = next.and_then(|id| backups.iter().find(|c| c.id == id)) {
            // A chain longer than the list would be a cycle (a hand-edited repository).
            steps += 1;
            if steps > backups.len() || merges.iter().any(|m| m.id == parent.id) {
                break;
            }
            if is_expired(&parent.id) {
                expired_ancestors.push(parent.id.clone());
            }
            next = parent.parent.as_deref(); // only a DELTA has one
        }
        if !expired_ancestors.is_empty() {
            merges.push(Merge { id: b.id.clone(), expired_ancestors });
        }
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + d * 86_400, 0).unwrap_or_default()
    }

    fn candidate(i: usize, (days, full, ok, pin): (i64, bool, bool, Option<i64>)) -> Candidate {
        Candidate {
            id: format!("B{i:03}"),
            mode: if full { BackupMode::Full } else { BackupMode::Delta },
            status: if ok { BackupStatus::Ok } else { BackupStatus::Error },
            end_time: day(days) + Duration::seconds(i as i64),
            expire_time: pin.map(day),
            series: String::new(),
            parent: None,
        }
    }

    /// Backups taken in order, each DELTA's parent the newest usable one before it (as
    /// `backup -b DELTA` picks it); a DELTA with none is a FULL.
    fn history(taken: &[(i64, bool, bool, Option<i64>)]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (i, &h) in taken.iter().enumerate() {
            let mut b = candidate(i, h);
            b.parent = match b.mode {
                BackupMode::Delta => {
                    out.iter().rev().find(|p| p.status.is_restorable()).map(|p| p.id.clone())
                }
                BackupMode::Full | BackupMode::Logical => None,
            };
            if b.parent.is_none() {
                b.mode = BackupMode::Full;
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn merge_expired_makes_the_oldest_kept_delta_of_each_chain_full() {
        // A FULL on day 0 and 7, DELTAs on the other days; today is day 10.5.
        let backups = history(&(0..11).map(|d| (d, d % 7 == 0, true, None)).collect::<Vec<_>>());
        let window = RetentionPolicy { redundancy: None, window_days: Some(3) };
        let gone = expired(&backups, window, day(10) + Duration::hours(12));
        // The window opens at 7.5: day 7 (the FULL) and after are kept, the first week goes,
        // and no kept DELTA descends from it.
        assert_eq!(gone.len(), 7);
        assert!(to_merge(&backups, &gone).is_empty());
        // A window opening at 3.5 keeps day 3 on: day 3 becomes FULL (standing in for days
        // 2, 1 and 0); days 4 to 6 descend from it and stay DELTAs.
        let gone = expired(&backups, window, day(6) + Duration::hours(12));
        assert_eq!(gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["B000", "B001", "B002"]);
        let merges = to_merge(&backups, &gone);
        assert_eq!(
            merges,
            [Merge {
                id: "B003".into(),
                expired_ancestors: vec!["B002".into(), "B001".into(), "B000".into()]
            }]
        );
        // A failed backup in between is nobody's parent; a pinned ancestor is kept, but the
        // DELTA after an expired one still becomes FULL.
        let mut taken: Vec<(i64, bool, bool, Option<i64>)> =
            (0..6).map(|d| (d, d == 0, true, None)).collect();
        taken[0].3 = Some(30);
        taken[3].2 = false;
        let backups = history(&taken);
        assert_eq!(backups[4].parent.as_deref(), Some("B002"));
        let gone = expired(&backups, window, day(7) + Duration::hours(12));
        assert_eq!(gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["B001", "B002"]);
        let merges = to_merge(&backups, &gone);
        assert_eq!(
            merges,
            [Merge { id: "B004".into(), expired_ancestors: vec!["B002".into(), "B001".into()] }]
        );
    }

    #[test]
    fn dumps_of_other_scopes_do_not_expire_each_other() {
        let dump = |id: &str, series: &str, d| Candidate {
            id: id.into(),
            mode: BackupMode::Logical,
            status: BackupStatus::Ok,
            end_time: day(d),
            expire_time: None,
            series: series.into(),
            parent: None,
        };
        // A January time range, then daily dumps of the whole database: keeping two dumps
        // keeps the range, the only one of its series.
        let backups = vec![
            dump("R1", "range january", 0),
            dump("D1", "shop", 1),
            dump("D2", "shop", 2),
            dump("D3", "shop", 3),
            dump("R2", "range february", 4),
        ];
        let gone: Vec<String> =
            expired(&backups, RetentionPolicy { redundancy: Some(2), window_days: None }, day(5))
                .into_iter()
                .map(|e| e.id)
                .collect();
        assert_eq!(gone, ["D1"]);
    }

    #[test]
    fn weekly_fulls_and_daily_deltas() {
        // Four weeks: a FULL on day 0, 7, 14, 21, deltas on the other days; today is day 27.
        let backups: Vec<Candidate> =
            (0..28).map(|d| candidate(d as usize, (d, d % 7 == 0, true, None))).collect();
        let names = |e: Vec<Expired>| e.into_iter().map(|e| e.id).collect::<Vec<_>>();
        let two_fulls = RetentionPolicy { redundancy: Some(2), window_days: None };
        assert_eq!(
            names(expired(&backups, two_fulls, day(27))),
            (0..14).map(|i| format!("B{i:03}")).collect::<Vec<_>>()
        );
        // A 3-day window opening at day 24.5 keeps day 24's backup (to restore to 24.5) and on.
        let window = RetentionPolicy { redundancy: None, window_days: Some(3) };
        let gone = names(expired(&backups, window, day(27) + Duration::hours(12)));
        assert_eq!(gone.last().map(String::as_str), Some("B023"));
        assert_eq!(gone.len(), 24);
        assert!(expired(&backups, RetentionPolicy::default(), day(27)).is_empty());
    }

    proptest! {
        /// Whatever the history and policy: once the chosen DELTAs are FULL, no kept usable
        /// DELTA descends from an expired backup, and each chosen one is needed (a kept usable
        /// DELTA with an expired ancestor before any chosen one).
        #[test]
        fn merge_expired_leaves_no_kept_delta_on_an_expired_chain(
            taken in proptest::collection::vec((0i64..3, any::<bool>(), any::<bool>(), proptest::option::of(0i64..90)), 0..30),
            redundancy in proptest::option::of(0u32..4),
            window in proptest::option::of(0u32..20),
        ) {
            let mut today = 0;
            let taken: Vec<_> = taken
                .into_iter()
                .map(|(gap, full, ok, pin)| {
                    today += gap;
                    (today, full, ok, pin)
                })
                .collect();
            let backups = history(&taken);
            let gone = expired(&backups, RetentionPolicy { redundancy, window_days: window }, day(today + 1));
            let merges = to_merge(&backups, &gone);
            let is_gone = |id: &str| gone.iter().any(|e| e.id == id);
            let is_merged = |id: &str| merges.iter().any(|m| m.id == id);
            for b in &backups {
                let mut meets_expired = false;
                let mut next = b.parent.as_deref();
                while let Some(p) = next.and_then(|id| backups.iter().find(|c| c.id == id)) {
                    if is_merged(&p.id) {
                        break;
                    }
                    meets_expired |= is_gone(&p.id);
                    next = p.parent.as_deref();
                }
                let kept_delta = b.mode == BackupMode::Delta && b.status.is_restorable() && !is_gone(&b.id);
                if is_merged(&b.id) {
                    prop_assert!(kept_delta && meets_expired, "{} need not be merged", b.id);
                } else if kept_delta {
                    prop_assert!(!meets_expired, "{} descends from an expired backup", b.id);
                }
            }
        }

        /// Whatever the history: pinned backups, the newest N FULLs and all after them, and
        /// what restores to every point of the window are never expired; failed backups are
        /// not this function's business.
        #[test]
        fn nothing_a_policy_protects_expires(
            history in proptest::collection::vec((0i64..60, any::<bool>(), any::<bool>(), proptest::option::of(0i64..90)), 0..30),
            redundancy in proptest::option::of(0u32..4),
            window in proptest::option::of(0u32..20),
        ) {
            let backups: Vec<Candidate> = history.into_iter().enumerate().map(|(i, h)| candidate(i, h)).collect();
            let now = day(60);
            let policy = RetentionPolicy { redundancy, window_days: window };
            let gone: Vec<Expired> = expired(&backups, policy, now);
            let is_gone = |b: &Candidate| gone.iter().any(|e| e.id == b.id);
            if !policy.is_set() {
                prop_assert!(gone.is_empty());
            }
            let mut usable: Vec<&Candidate> = backups.iter().filter(|b| b.status.is_restorable()).collect();
            usable.sort_by_key(|b| b.end_time);
            for b in &backups {
                if !b.status.is_restorable() || b.expire_time.is_some_and(|t| t > now) {
                    prop_assert!(!is_gone(b), "{} is not the policy's to expire", b.id);
                }
            }
            if let Some(n) = redundancy.filter(|&n| n > 0) {
                let fulls: Vec<&&Candidate> = usable.iter().filter(|b| b.mode == BackupMode::Full).collect();
                let from = fulls.len().checked_sub(n as usize).map(|i| fulls[i].end_time);
                for b in &usable {
                    if from.is_none_or(|f| b.end_time >= f) {
                        prop_assert!(!is_gone(b), "{} is within the newest {} FULLs", b.id, n);
                    }
                }
            }
            if let Some(d) = window.filter(|&d| d > 0) {
                let opens = now - Duration::days(i64::from(d));
                // Every moment of the window has a kept backup that ended before it.
                let anchor = usable.iter().rev().find(|b| b.end_time < opens);
                if let Some(a) = anchor {
                    prop_assert!(!is_gone(a), "{} is needed to restore to the window's start", a.id);
                }
                for b in usable.iter().filter(|b| b.end_time >= opens) {
                    prop_assert!(!is_gone(b), "{} ended within the window", b.id);
                }
            }
        }
    }
}

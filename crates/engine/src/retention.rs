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
        }
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

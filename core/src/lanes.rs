//! Lanes of spends: several spend transactions in flight at once, each lane one
//! account's (or several accounts') arrival-ordered queue.
//!
//! A spend batch that waits for a row lock (another process's transaction holds
//! the row) holds up every batch behind it in its group. So on Postgres a process
//! runs several charge groups (`group.rs`), the lanes, each deciding its batches
//! in arrival order (and pipelining them: the next starts once the one before
//! holds its locks), and sends every spend of one account to the same lane: a key, its
//! ancestors and its account's ceiling all belong to one account (a parent must be
//! of the child's account), so two lanes' transactions never wait on each other's
//! row locks, and the spends of one account keep their arrival order, as they did
//! with a single batch in flight.
//!
//! How a spend finds its lane: a charge or reserve names its key by hash (or
//! subject), not by account. The lanes learn the account of every key this
//! process has created, validated or spent, and of every hold it placed, into a
//! bounded map of 64-bit hashes ([`Routes`]); a spend of a key not seen yet goes to
//! the lane its key hash picks. Such a first spend may share rows with another
//! lane's batch: it then waits for that batch's row locks like a spend from a
//! second process does, and is decided after it; caps, ledger and idempotency are
//! the row locks' doing and hold either way (`store/charge.rs`).
//!
//! Invariants and hazards:
//! - Only Postgres has more than one lane: SQLite has one writer
//!   (`BEGIN IMMEDIATE`), so a second lane would only wait.
//! - The map forgets everything when it reaches [`MAX_ROUTES`] entries (bounded
//!   memory under any number of keys); a forgotten key is learned again by its
//!   next validate or spend. Two lookups whose 64-bit hashes collide share one
//!   entry: one of them may go to another account's lane, which is, again, only
//!   a wait.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use crate::engine::{KeyRow, Lookup};
use crate::error::Result;
use crate::group::{Executor, Group, Limits};
use crate::model::ReserveResult;
use crate::spend::{SpendOutcome, SpendReq};

/// The most routes kept; one more clears the map.
pub(crate) const MAX_ROUTES: usize = 65_536;

/// The spend groups of one `KeyLeash`, and where each spend goes.
pub(crate) struct Lanes {
    groups: Vec<Arc<Group<SpendReq, SpendOutcome>>>,
    routes: Arc<Routes>,
    depth: usize,
}

impl Lanes {
    /// `routes.count()` lanes, each a group with one runner (`limits.depth`
    /// batches in flight, pipelined), running its batches with the executor
    /// `exec` makes for it.
    pub fn new(
        limits: Limits,
        routes: &Arc<Routes>,
        exec: impl Fn() -> Executor<SpendReq, SpendOutcome>,
    ) -> Self {
        let limits = Limits {
            in_flight: 1,
            ..limits
        };
        Self {
            groups: (0..routes.count())
                .map(|_| Group::new(limits, exec()))
                .collect(),
            routes: Arc::clone(routes),
            depth: limits.depth.max(1),
        }
    }

    /// How many batches of one lane may be in flight.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Runs `req` in its lane and returns its own outcome.
    pub async fn call(&self, req: SpendReq) -> Result<SpendOutcome> {
        let lane = self.routes.lane(&req);
        self.groups[lane].call(req).await
    }
}

/// What the lanes have learned: the lane of each key and hold seen.
pub(crate) struct Routes {
    lanes: usize,
    hasher: RandomState,
    map: Mutex<HashMap<u64, usize>>,
}

/// What a route is kept under: a key (by hash or subject) or a hold.
enum Name<'a> {
    Hash(&'a str),
    Subject(&'a str),
    Hold(i64),
}

impl Routes {
    /// Routes over `lanes` lanes (at least one).
    pub fn new(lanes: usize) -> Arc<Self> {
        Arc::new(Self {
            lanes: lanes.max(1),
            hasher: RandomState::new(),
            map: Mutex::new(HashMap::new()),
        })
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.lanes
    }

    /// Whether there is anything to learn (more than one lane).
    pub fn learns(&self) -> bool {
        self.lanes > 1
    }

    fn hash(&self, name: &Name<'_>) -> u64 {
        match name {
            Name::Hash(s) => self.hasher.hash_one((0u8, s)),
            Name::Subject(s) => self.hasher.hash_one((1u8, s)),
            Name::Hold(id) => self.hasher.hash_one((2u8, id)),
        }
    }

    fn of_lookup(lookup: &Lookup) -> Name<'_> {
        match lookup {
            Lookup::Hash(s) => Name::Hash(s),
            Lookup::Subject(s) => Name::Subject(s),
        }
    }

    /// The lane of `account`'s spends.
    fn account_lane(&self, account: &str) -> usize {
        self.index(self.hasher.hash_one((3u8, account)))
    }

    fn index(&self, hash: u64) -> usize {
        // `lanes` is small; the remainder fits in usize.
        usize::try_from(hash % self.lanes as u64).unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        // Nothing panics while holding the lock but the map itself; keep going.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lane of `req`: its key's or hold's learned lane, else the one its
    /// name's hash picks.
    pub fn lane(&self, req: &SpendReq) -> usize {
        if !self.learns() {
            return 0;
        }
        let name = match (req.lookup(), req.hold_id()) {
            (Some(lookup), _) => Self::of_lookup(lookup),
            (None, Some(id)) => Name::Hold(id),
            (None, None) => return 0,
        };
        let hash = self.hash(&name);
        self.lock()
            .get(&hash)
            .copied()
            .unwrap_or_else(|| self.index(hash))
    }

    /// Learns routes in one lock: each `(name, lane)`.
    fn learn_all<'a>(&self, names: impl IntoIterator<Item = (Name<'a>, usize)>) {
        let hashed: Vec<(u64, usize)> = names
            .into_iter()
            .map(|(name, lane)| (self.hash(&name), lane))
            .collect();
        if hashed.is_empty() {
            return;
        }
        let mut map = self.lock();
        if map.len() + hashed.len() > MAX_ROUTES {
            map.clear();
        }
        map.extend(hashed);
    }

    /// Learns that `lookup` names a key of `account`.
    pub fn learn_key(&self, lookup: &Lookup, account: &str) {
        if self.learns() {
            self.learn_all([(Self::of_lookup(lookup), self.account_lane(account))]);
        }
    }

    /// Learns the account of every key row a spend batch read (ancestors
    /// included), then the lane of every hold the batch placed (its key's), and
    /// forgets the holds it ended.
    pub fn learn_batch(&self, rows: &[KeyRow], reqs: &[SpendReq], outcomes: &[SpendOutcome]) {
        if !self.learns() {
            return;
        }
        let keys = rows.iter().filter(|r| !r.is_ceiling()).flat_map(|r| {
            let lane = self.account_lane(r.account_id.as_deref().unwrap_or(""));
            let subject = r
                .external_subject
                .as_deref()
                .map(|s| (Name::Subject(s), lane));
            std::iter::once((Name::Hash(&r.key_hash), lane)).chain(subject)
        });
        self.learn_all(keys);
        let holds = reqs
            .iter()
            .zip(outcomes)
            .filter_map(|(req, out)| match out {
                SpendOutcome::Reserve(ReserveResult::Held { hold_id, .. }) => {
                    let lookup = req.lookup()?;
                    let row = rows.iter().find(|r| lookup.matches(r))?;
                    let account = row.account_id.as_deref().unwrap_or("");
                    Some((Name::Hold(*hold_id), self.account_lane(account)))
                }
                _ => None,
            });
        self.learn_all(holds);
        let ended: Vec<u64> = reqs
            .iter()
            .filter_map(SpendReq::hold_id)
            .map(|id| self.hash(&Name::Hold(id)))
            .collect();
        if !ended.is_empty() {
            let mut map = self.lock();
            for h in ended {
                map.remove(&h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(hash: &str) -> SpendReq {
        SpendReq::Charge(crate::engine::ChargeReq {
            lookup: Lookup::Hash(hash.into()),
            micros: 1,
            idempotency_key: None,
        })
    }

    // Pins that a learned key goes to its account's lane, that keys of one account
    // share it, and that one lane routes everything to lane 0 and learns nothing.
    #[test]
    fn keys_of_one_account_share_a_lane() {
        let routes = Routes::new(4);
        let accounts: Vec<String> = (0..64).map(|i| format!("acct_{i}")).collect();
        for (i, a) in accounts.iter().enumerate() {
            for k in 0..3 {
                routes.learn_key(&Lookup::Hash(format!("h{i}_{k}")), a);
            }
        }
        let mut used = std::collections::HashSet::new();
        for (i, a) in accounts.iter().enumerate() {
            let lane = routes.lane(&charge(&format!("h{i}_0")));
            assert_eq!(lane, routes.account_lane(a));
            for k in 1..3 {
                assert_eq!(routes.lane(&charge(&format!("h{i}_{k}"))), lane);
            }
            used.insert(lane);
        }
        assert_eq!(used.len(), 4, "64 accounts spread over every lane");
        let one = Routes::new(1);
        one.learn_key(&Lookup::Hash("h".into()), "a");
        assert!(one.lock().is_empty());
        assert_eq!(one.lane(&charge("h")), 0);
    }

    // Pins the bound: the map never holds more than MAX_ROUTES entries.
    #[test]
    fn the_map_is_bounded() {
        let routes = Routes::new(2);
        for i in 0..(MAX_ROUTES + 10) {
            routes.learn_key(&Lookup::Hash(format!("h{i}")), "a");
            assert!(routes.lock().len() <= MAX_ROUTES);
        }
        assert!(routes.lock().len() < MAX_ROUTES);
    }
}

//! Decisions of the authorization service, reused per token for a configured time.
//!
//! The cache is off unless the configuration has a `cache` object. With it, a request gets the
//! decision (200, 401 or 403) that its token got less than `cache.ttl` ago, without a callout.
//! A revocation can therefore take up to `cache.ttl` to reach a token that is in the cache.
//! An entry never outlives the token's `exp` claim, and the absence of a decision (timeout,
//! reset, other status) is never cached.
//!
//! Entries are keyed by the whole token, never by `jti` alone: the filter does not check
//! signatures, so two tokens with one `jti` may differ in everything else. Once the cache holds
//! `cache.maxEntries` tokens, the oldest entry makes room for a new one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::token::Expiry;
use crate::verdict::Verdict;

/// The `cache` configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a decision is reused.
    pub ttl: Duration,
    /// Maximum number of tokens held at once.
    pub max_entries: usize,
}

/// A decision the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    Rejected,
    Revoked,
}

impl Decision {
    fn of(verdict: &Verdict) -> Option<Self> {
        match verdict {
            Verdict::Allowed => Some(Self::Allowed),
            Verdict::Rejected => Some(Self::Rejected),
            Verdict::Revoked => Some(Self::Revoked),
            _ => None,
        }
    }

    fn verdict(self) -> Verdict {
        match self {
            Self::Allowed => Verdict::Allowed,
            Self::Rejected => Verdict::Rejected,
            Self::Revoked => Verdict::Revoked,
        }
    }
}

#[derive(Debug)]
struct Entry {
    decision: Decision,
    /// Time after which the entry is not used, on the clock of [`crate::Env::now`].
    expires: Duration,
    /// Insertion number, to tell this entry from an older one for the same token in `order`.
    serial: u64,
}

/// The decisions of one worker (proxy-wasm) or of one filter configuration (dynamic module).
#[derive(Debug, Default)]
pub struct DecisionCache {
    config: Option<CacheConfig>,
    entries: HashMap<Arc<str>, Entry>,
    /// Tokens in insertion order, oldest first. Holds stale items for tokens that were removed or
    /// inserted again; they are skipped when evicting and dropped when they pile up.
    order: VecDeque<(Arc<str>, u64)>,
    next_serial: u64,
}

impl DecisionCache {
    /// Returns a cache with `config`, or one that holds nothing when `config` is `None`.
    pub fn new(config: Option<CacheConfig>) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Returns true when the configuration turns the cache on.
    pub fn is_enabled(&self) -> bool {
        self.config.is_some()
    }

    /// Returns the number of tokens held, including expired ones that were not looked up or
    /// evicted yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the decision on `token` when one is held and has not expired at `now`.
    pub fn get(&mut self, token: &str, now: Duration) -> Option<Verdict> {
        let entry = self.entries.get(token)?;
        if now < entry.expires {
            return Some(entry.decision.verdict());
        }
        self.entries.remove(token);
        None
    }

    /// Holds `verdict` on `token` when it is a decision of the service.
    ///
    /// `now` is on the clock of [`crate::Env::now`] and `unix_time` is the wall-clock time, which
    /// the token's `exp` is compared with.
    pub fn insert(
        &mut self,
        token: &str,
        verdict: &Verdict,
        exp: Expiry,
        now: Duration,
        unix_time: Duration,
    ) {
        let Some(config) = self.config else {
            return;
        };
        let Some(decision) = Decision::of(verdict) else {
            return;
        };
        let lifetime = match exp {
            Expiry::Never => config.ttl,
            Expiry::At(seconds) => Duration::from_secs(seconds)
                .saturating_sub(unix_time)
                .min(config.ttl),
            Expiry::Unusable => Duration::ZERO,
        };
        if lifetime.is_zero() {
            return;
        }

        if let Some(entry) = self.entries.get_mut(token) {
            entry.decision = decision;
            entry.expires = now + lifetime;
            return;
        }
        while self.entries.len() >= config.max_entries {
            self.evict_oldest();
        }
        if self.order.len() >= 2 * config.max_entries {
            self.drop_stale_order();
        }
        let key: Arc<str> = Arc::from(token);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.order.push_back((Arc::clone(&key), serial));
        self.entries.insert(
            key,
            Entry {
                decision,
                expires: now + lifetime,
                serial,
            },
        );
    }

    /// Removes the entry inserted first among those still held.
    fn evict_oldest(&mut self) {
        while let Some((token, serial)) = self.order.pop_front() {
            if self.entries.get(&token).is_some_and(|e| e.serial == serial) {
                self.entries.remove(&token);
                return;
            }
        }
        // `order` lists every held entry, so this is reached only with no entries left.
        self.entries.clear();
    }

    fn drop_stale_order(&mut self) {
        let entries = &self.entries;
        self.order
            .retain(|(token, serial)| entries.get(token).is_some_and(|e| e.serial == *serial));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::NoDecision;

    const SEC: Duration = Duration::from_secs(1);
    /// Wall-clock time of the tests, as seconds since the Unix epoch.
    const UNIX: u64 = 1_800_000_000;

    fn cache(ttl_ms: u64, max_entries: usize) -> DecisionCache {
        DecisionCache::new(Some(CacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            max_entries,
        }))
    }

    fn insert(cache: &mut DecisionCache, token: &str, verdict: Verdict, now: Duration) {
        cache.insert(token, &verdict, Expiry::Never, now, SEC * UNIX as u32);
    }

    #[test]
    fn disabled_holds_nothing() {
        let mut cache = DecisionCache::new(None);
        assert!(!cache.is_enabled());
        insert(&mut cache, "t", Verdict::Allowed, SEC);
        assert_eq!(cache.get("t", SEC), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn decisions_reused_until_ttl() {
        let mut cache = cache(1000, 10);
        insert(&mut cache, "a", Verdict::Allowed, SEC);
        insert(&mut cache, "r", Verdict::Revoked, SEC);
        insert(&mut cache, "i", Verdict::Rejected, SEC);
        let almost = SEC * 2 - Duration::from_millis(1);
        assert_eq!(cache.get("a", almost), Some(Verdict::Allowed));
        assert_eq!(cache.get("r", almost), Some(Verdict::Revoked));
        assert_eq!(cache.get("i", almost), Some(Verdict::Rejected));
        assert_eq!(cache.get("a", SEC * 2), None);
        assert_eq!(cache.get("other", SEC), None);
        // The expired entry was removed when it was looked up.
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn no_decision_never_held() {
        let mut cache = cache(1000, 10);
        let verdicts = [
            Verdict::Unavailable {
                reason: NoDecision::Timeout,
                status: 503,
            },
            Verdict::FailedOpen(NoDecision::ConnectFailure),
            Verdict::MissingToken,
            Verdict::Preflight,
        ];
        for verdict in verdicts {
            insert(&mut cache, "t", verdict, SEC);
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn exp_bounds_lifetime() {
        let mut cache = cache(10_000, 10);
        let unix = SEC * UNIX as u32;
        cache.insert("soon", &Verdict::Allowed, Expiry::At(UNIX + 2), SEC, unix);
        cache.insert("gone", &Verdict::Allowed, Expiry::At(UNIX), SEC, unix);
        cache.insert("odd", &Verdict::Allowed, Expiry::Unusable, SEC, unix);
        cache.insert("late", &Verdict::Allowed, Expiry::At(UNIX + 60), SEC, unix);
        assert_eq!(cache.get("soon", SEC * 2), Some(Verdict::Allowed));
        assert_eq!(cache.get("soon", SEC * 3), None);
        assert_eq!(cache.get("gone", SEC), None);
        assert_eq!(cache.get("odd", SEC), None);
        assert_eq!(cache.get("late", SEC * 10), Some(Verdict::Allowed));
        assert_eq!(cache.get("late", SEC * 11), None);
    }

    #[test]
    fn newer_decision_replaces_older() {
        let mut cache = cache(1000, 10);
        insert(&mut cache, "t", Verdict::Allowed, SEC);
        insert(&mut cache, "t", Verdict::Revoked, SEC + SEC / 2);
        assert_eq!(cache.get("t", SEC * 2), Some(Verdict::Revoked));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn oldest_evicted_when_full() {
        let mut cache = cache(60_000, 3);
        for token in ["a", "b", "c", "d"] {
            insert(&mut cache, token, Verdict::Allowed, SEC);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("a", SEC), None);
        for token in ["b", "c", "d"] {
            assert_eq!(cache.get(token, SEC), Some(Verdict::Allowed), "{token}");
        }
    }

    #[test]
    fn order_stays_bounded_with_churn() {
        let mut cache = cache(1, 4);
        for round in 0..1000u32 {
            let now = Duration::from_millis(u64::from(round) * 2);
            let token = format!("t{}", round % 3);
            assert_eq!(cache.get(&token, now), None);
            insert(&mut cache, &token, Verdict::Allowed, now);
            assert!(cache.order.len() <= 8, "{}", cache.order.len());
            assert!(cache.len() <= 4);
        }
    }
}

//! Decisions of the authorization service, reused per token for a configured time.
//!
//! The cache is off unless the configuration has a `cache` object. With it, a request gets the
//! decision (200, 401 or 403) that its token got less than `cache.ttl` ago, without a callout.
//! A revocation can therefore take up to `cache.ttl` to reach a token that is in the cache.
//! An entry never outlives the token's `exp` claim, and the absence of a decision (timeout,
//! reset, other status) is never cached.
//!
//! The `ttl` counts from the moment the callout was sent, not from its response, and a decision
//! replaces a stored one only if its callout was sent later. A slow response that the service
//! decided before a revocation therefore never outlives the revocation by more than `ttl`, and
//! never replaces the 403 of a later callout.
//!
//! Entries are keyed by the SHA-256 digest of the whole token, never by `jti` alone: the filter
//! does not check signatures, so two tokens with one `jti` may differ in everything else. The
//! digest keeps each entry's size fixed whatever the token's length, and keeps tokens out of
//! the cache. Once the cache contains `cache.maxEntries` tokens, the oldest entry makes room.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::token::Expiry;
use crate::verdict::Verdict;

/// The `cache` configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a decision is reused.
    pub ttl: Duration,
    /// Maximum number of tokens stored at once.
    pub max_entries: usize,
}

/// A decision that the cache stores.
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

/// The SHA-256 digest of a token, which identifies the token in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

#[derive(Debug)]
struct Entry {
    decision: Decision,
    /// Time the callout behind the decision was sent, on the clock of [`crate::Env::now`].
    decided_at: Duration,
    /// Time after which the entry is not used.
    expires: Duration,
    /// Insertion number, to tell this entry from an older one for the same token in `order`.
    serial: u64,
}

/// The decisions of one worker (proxy-wasm) or of one filter configuration (dynamic module).
#[derive(Debug, Default)]
pub struct DecisionCache {
    config: Option<CacheConfig>,
    entries: HashMap<CacheKey, Entry>,
    /// Keys in insertion order, oldest first. Contains stale items for keys that were removed or
    /// inserted again. Eviction skips them, and they are dropped when they pile up.
    order: VecDeque<(CacheKey, u64)>,
    next_serial: u64,
    /// The latest `decided_at` among evicted entries. A decision from an earlier callout is not
    /// stored, because it may be older than an evicted decision on the same token.
    evicted_up_to: Duration,
}

impl DecisionCache {
    /// Returns a cache with `config`, or one that stays empty when `config` is `None`.
    pub fn new(config: Option<CacheConfig>) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Returns the decision for the token of `key` when one is stored and has not expired at
    /// `now`.
    pub fn get(&mut self, key: &CacheKey, now: Duration) -> Option<Verdict> {
        let entry = self.entries.get(key)?;
        if now < entry.expires {
            return Some(entry.decision.verdict());
        }
        self.entries.remove(key);
        None
    }

    /// Stores `verdict` for the token of `key` when it is a decision of the service and no
    /// decision from a later callout is stored.
    ///
    /// `decided_at` is the time the callout was sent and `now` the time of its response, both on
    /// the clock of [`crate::Env::now`]. `unix_time` is the wall-clock time at `now`, which the
    /// token's `exp` is compared with.
    pub fn insert(
        &mut self,
        key: CacheKey,
        verdict: &Verdict,
        exp: Expiry,
        decided_at: Duration,
        now: Duration,
        unix_time: Duration,
    ) {
        let Some(config) = self.config else {
            return;
        };
        let Some(decision) = Decision::of(verdict) else {
            return;
        };
        let expires = match exp {
            Expiry::Never => decided_at + config.ttl,
            Expiry::At(seconds) => {
                let left = Duration::from_secs(seconds).saturating_sub(unix_time);
                (decided_at + config.ttl).min(now.saturating_add(left))
            }
            Expiry::Unusable => return,
        };
        if expires <= now {
            return;
        }

        if let Some(entry) = self.entries.get_mut(&key) {
            if decided_at >= entry.decided_at {
                entry.decision = decision;
                entry.decided_at = decided_at;
                entry.expires = expires;
            }
            return;
        }
        if decided_at < self.evicted_up_to {
            return;
        }
        while self.entries.len() >= config.max_entries {
            self.evict_oldest();
        }
        if self.order.len() >= 2 * config.max_entries {
            self.drop_stale_order();
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.order.push_back((key, serial));
        self.entries.insert(
            key,
            Entry {
                decision,
                decided_at,
                expires,
                serial,
            },
        );
    }

    /// Removes the entry inserted first among those still stored.
    fn evict_oldest(&mut self) {
        while let Some((key, serial)) = self.order.pop_front() {
            match self.entries.get(&key) {
                Some(entry) if entry.serial == serial => {
                    self.evicted_up_to = self.evicted_up_to.max(entry.decided_at);
                    self.entries.remove(&key);
                    return;
                }
                _ => {}
            }
        }
        // `order` lists every stored entry, so this is reached only with no entries left.
        self.entries.clear();
    }

    fn drop_stale_order(&mut self) {
        let entries = &self.entries;
        self.order
            .retain(|(key, serial)| entries.get(key).is_some_and(|e| e.serial == *serial));
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

    fn get(cache: &mut DecisionCache, token: &str, now: Duration) -> Option<Verdict> {
        cache.get(&CacheKey::of(token), now)
    }

    /// Inserts a decision whose callout was sent and got its response at `now`.
    fn insert(cache: &mut DecisionCache, token: &str, verdict: Verdict, now: Duration) {
        store(cache, token, verdict, now, now);
    }

    /// Inserts a decision whose callout was sent at `sent` and got its response at `received`.
    fn store(
        cache: &mut DecisionCache,
        token: &str,
        verdict: Verdict,
        sent: Duration,
        received: Duration,
    ) {
        let unix = SEC * UNIX as u32;
        cache.insert(
            CacheKey::of(token),
            &verdict,
            Expiry::Never,
            sent,
            received,
            unix,
        );
    }

    #[test]
    fn disabled_stays_empty() {
        let mut cache = DecisionCache::new(None);
        assert!(cache.config.is_none());
        insert(&mut cache, "t", Verdict::Allowed, SEC);
        assert_eq!(get(&mut cache, "t", SEC), None);
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn decisions_reused_until_ttl() {
        let mut cache = cache(1000, 10);
        insert(&mut cache, "a", Verdict::Allowed, SEC);
        insert(&mut cache, "r", Verdict::Revoked, SEC);
        insert(&mut cache, "i", Verdict::Rejected, SEC);
        let almost = SEC * 2 - Duration::from_millis(1);
        assert_eq!(get(&mut cache, "a", almost), Some(Verdict::Allowed));
        assert_eq!(get(&mut cache, "r", almost), Some(Verdict::Revoked));
        assert_eq!(get(&mut cache, "i", almost), Some(Verdict::Rejected));
        assert_eq!(get(&mut cache, "a", SEC * 2), None);
        assert_eq!(get(&mut cache, "other", SEC), None);
        // The expired entry was removed when it was looked up.
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn no_decision_never_stored() {
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
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn exp_bounds_lifetime() {
        let mut cache = cache(10_000, 10);
        let unix = SEC * UNIX as u32;
        for (token, exp) in [
            ("soon", Expiry::At(UNIX + 2)),
            ("gone", Expiry::At(UNIX)),
            ("odd", Expiry::Unusable),
            ("late", Expiry::At(UNIX + 60)),
        ] {
            cache.insert(CacheKey::of(token), &Verdict::Allowed, exp, SEC, SEC, unix);
        }
        assert_eq!(get(&mut cache, "soon", SEC * 2), Some(Verdict::Allowed));
        assert_eq!(get(&mut cache, "soon", SEC * 3), None);
        assert_eq!(get(&mut cache, "gone", SEC), None);
        assert_eq!(get(&mut cache, "odd", SEC), None);
        assert_eq!(get(&mut cache, "late", SEC * 10), Some(Verdict::Allowed));
        assert_eq!(get(&mut cache, "late", SEC * 11), None);
    }

    #[test]
    fn newer_decision_replaces_older() {
        let mut cache = cache(1000, 10);
        insert(&mut cache, "t", Verdict::Allowed, SEC);
        insert(&mut cache, "t", Verdict::Revoked, SEC + SEC / 2);
        assert_eq!(get(&mut cache, "t", SEC * 2), Some(Verdict::Revoked));
        assert_eq!(cache.entries.len(), 1);
    }

    #[test]
    fn ttl_counts_from_callout_sent() {
        let mut cache = cache(1000, 10);
        // Sent at 1 s, with its response at 1.6 s: usable until 2 s.
        store(&mut cache, "t", Verdict::Allowed, SEC, SEC + SEC * 3 / 5);
        assert_eq!(
            get(&mut cache, "t", SEC * 2 - Duration::from_millis(1)),
            Some(Verdict::Allowed)
        );
        assert_eq!(get(&mut cache, "t", SEC * 2), None);
        // A response after the ttl ended: never stored.
        store(&mut cache, "slow", Verdict::Allowed, SEC, SEC * 3);
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn late_response_keeps_newer_decision() {
        let mut cache = cache(10_000, 10);
        // A callout sent at 2 s gets 403. One sent earlier, at 1 s, gets its 200 afterwards.
        store(&mut cache, "t", Verdict::Revoked, SEC * 2, SEC * 3);
        store(&mut cache, "t", Verdict::Allowed, SEC, SEC * 4);
        assert_eq!(get(&mut cache, "t", SEC * 4), Some(Verdict::Revoked));
    }

    #[test]
    fn late_response_after_eviction_not_stored() {
        let mut cache = cache(10_000, 1);
        store(&mut cache, "t", Verdict::Revoked, SEC * 2, SEC * 2);
        // Another token evicts the 403, then the 200 of a callout sent before it arrives.
        store(&mut cache, "u", Verdict::Allowed, SEC * 3, SEC * 3);
        store(&mut cache, "t", Verdict::Allowed, SEC, SEC * 4);
        assert_eq!(get(&mut cache, "t", SEC * 4), None);
        // A decision from a callout sent after the eviction is stored as usual.
        store(&mut cache, "t", Verdict::Revoked, SEC * 4, SEC * 4);
        assert_eq!(get(&mut cache, "t", SEC * 4), Some(Verdict::Revoked));
    }

    #[test]
    fn entry_size_independent_of_token() {
        let mut cache = cache(60_000, 10);
        let long = "x".repeat(100_000);
        insert(&mut cache, &long, Verdict::Rejected, SEC);
        assert_eq!(get(&mut cache, &long, SEC), Some(Verdict::Rejected));
        assert_eq!(std::mem::size_of::<CacheKey>(), 32);
    }

    #[test]
    fn oldest_evicted_when_full() {
        let mut cache = cache(60_000, 3);
        for token in ["a", "b", "c", "d"] {
            insert(&mut cache, token, Verdict::Allowed, SEC);
        }
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(get(&mut cache, "a", SEC), None);
        for token in ["b", "c", "d"] {
            assert_eq!(
                get(&mut cache, token, SEC),
                Some(Verdict::Allowed),
                "{token}"
            );
        }
    }

    #[test]
    fn order_stays_bounded_with_churn() {
        let mut cache = cache(1, 4);
        for round in 0..1000u32 {
            let now = Duration::from_millis(u64::from(round) * 2);
            let token = format!("t{}", round % 3);
            assert_eq!(get(&mut cache, &token, now), None);
            insert(&mut cache, &token, Verdict::Allowed, now);
            assert!(cache.order.len() <= 8, "{}", cache.order.len());
            assert!(cache.entries.len() <= 4);
        }
    }
}

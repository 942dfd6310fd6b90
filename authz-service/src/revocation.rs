//! In-memory list of revoked token IDs.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// Minimum time between two sweeps that drop entries past their retention time.
pub const PURGE_INTERVAL_SECS: u64 = 60;

/// Revoked `jti` values, each kept until a retention time after which the token it names has
/// expired anyway.
///
/// The list lives in process memory only, so a restart discards every revocation.
///
/// NOTE: the number of entries has no limit. Memory grows with the revocations made within one
/// retention period.
#[derive(Debug, Default)]
pub struct RevocationList {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `jti` to retention time in seconds since the Unix epoch.
    entries: HashMap<String, u64>,
    /// Earliest time at which `revoke` sweeps out entries whose retention time has passed.
    next_purge_secs: u64,
}

impl RevocationList {
    /// Creates an empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `jti` as revoked until `keep_until_secs`.
    ///
    /// Revoking a `jti` again keeps the later of the two retention times, so repeated calls are
    /// idempotent. At most once per [`PURGE_INTERVAL_SECS`] this call also drops every entry
    /// whose retention time is not after `now_secs`.
    pub fn revoke(&self, jti: &str, keep_until_secs: u64, now_secs: u64) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);

        if now_secs >= state.next_purge_secs {
            state.entries.retain(|_, keep_until| *keep_until > now_secs);
            state.next_purge_secs = now_secs.saturating_add(PURGE_INTERVAL_SECS);
        }

        let keep_until = state.entries.entry(jti.to_string()).or_insert(0);
        *keep_until = (*keep_until).max(keep_until_secs);
    }

    /// Returns whether `jti` is revoked at `now_secs`, which is true until its retention time.
    pub fn is_revoked(&self, jti: &str, now_secs: u64) -> bool {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);

        state
            .entries
            .get(jti)
            .is_some_and(|keep_until| *keep_until > now_secs)
    }

    /// Returns the number of stored entries, including any past their retention time that no
    /// sweep has dropped yet.
    pub fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.entries.len()
    }

    /// Returns whether the list stores no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn revoked_jti_is_revoked() {
        let list = RevocationList::new();

        list.revoke("a", NOW + 600, NOW);

        assert!(list.is_revoked("a", NOW));
        assert!(!list.is_revoked("b", NOW));
    }

    #[test]
    fn revocation_ends_at_retention_time() {
        let list = RevocationList::new();

        list.revoke("a", NOW + 600, NOW);

        assert!(list.is_revoked("a", NOW + 599));
        assert!(!list.is_revoked("a", NOW + 600));
    }

    #[test]
    fn repeated_revoke_is_idempotent() {
        let list = RevocationList::new();

        list.revoke("a", NOW + 600, NOW);
        list.revoke("a", NOW + 600, NOW);

        assert_eq!(list.len(), 1);
        assert!(list.is_revoked("a", NOW + 599));
    }

    #[test]
    fn repeated_revoke_keeps_later_retention() {
        let list = RevocationList::new();

        list.revoke("a", NOW + 600, NOW);
        list.revoke("a", NOW + 100, NOW);

        assert!(list.is_revoked("a", NOW + 599));

        list.revoke("a", NOW + 900, NOW);

        assert!(list.is_revoked("a", NOW + 899));
    }

    #[test]
    fn sweep_drops_expired_entries() {
        let list = RevocationList::new();
        list.revoke("short", NOW + 10, NOW);
        list.revoke("long", NOW + 1000, NOW);

        // The first call swept at NOW, so the next sweep runs one interval later.
        list.revoke("other", NOW + 1000, NOW + 11);
        assert_eq!(list.len(), 3);

        list.revoke("other", NOW + 1000, NOW + PURGE_INTERVAL_SECS);
        assert_eq!(list.len(), 2);
        assert!(!list.is_revoked("short", NOW + PURGE_INTERVAL_SECS));
        assert!(list.is_revoked("long", NOW + PURGE_INTERVAL_SECS));
    }

    #[test]
    fn new_list_is_empty() {
        let list = RevocationList::new();

        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
    }
}

//! The filter configuration, parsed from the JSON that Envoy passes to the filter.
//!
//! The keys match the Go plugin this filter replaces, so an existing `pluginConfig` keeps working:
//!
//! ```json
//! {"cluster": "outbound|8080||authz.ns.svc.cluster.local", "authorizeUrl": "/authorize", "timeout": 2000}
//! ```
//!
//! Every problem is reported when the configuration loads, so Envoy rejects the filter instead of
//! running with a guess.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::breaker::BreakerConfig;
use crate::cache::CacheConfig;
use crate::cluster::{authority_from_cluster, check_authority};
use crate::retry::RetryPolicy;

/// Default path of the authorization endpoint.
pub const DEFAULT_AUTHORIZE_URL: &str = "/authorize";
/// Default callout timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Allowed callout timeouts, in milliseconds.
pub const TIMEOUT_RANGE_MS: RangeInclusive<u64> = 1..=60_000;
/// Default status sent when no decision arrives and `failOpen` is off.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 503;
/// Allowed `cache.ttl` values, in milliseconds.
pub const CACHE_TTL_RANGE_MS: RangeInclusive<u64> = 1..=300_000;
/// Allowed `cache.maxEntries` values. A full cache takes about 450 bytes per entry (measured in
/// Envoy 1.40), so the largest stays near 110 MB. A Wasm VM there ran out of memory near 1 GiB.
pub const CACHE_MAX_ENTRIES_RANGE: RangeInclusive<u64> = 1..=250_000;
/// Default `cache.maxEntries`.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 10_000;
/// Longest `authorizeUrl` accepted, in bytes.
const MAX_AUTHORIZE_URL_LEN: usize = 2048;
/// Most fallback clusters accepted.
const MAX_FALLBACK_CLUSTERS: usize = 8;

const TOP_LEVEL_KEYS: &[&str] = &[
    "cluster",
    "authorizeUrl",
    "timeout",
    "authority",
    "failOpen",
    "statusOnError",
    "retry",
    "circuitBreaker",
    "fallbackClusters",
    "cache",
];
const RETRY_KEYS: &[&str] = &["maxRetries", "baseInterval", "maxInterval", "perTryTimeout"];
const BREAKER_KEYS: &[&str] = &["consecutiveFailures", "openInterval"];
const UPSTREAM_KEYS: &[&str] = &["cluster", "authority"];
const CACHE_KEYS: &[&str] = &["ttl", "maxEntries"];

/// An authorization cluster and the `:authority` its callouts carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub cluster: String,
    pub authority: String,
}

/// A validated filter configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Envoy cluster that the callout is sent to.
    pub cluster: String,
    /// `:authority` of the callout: the `authority` key, or the host part of `cluster`.
    pub authority: String,
    /// `:path` of the callout.
    pub authorize_url: String,
    /// Time one request may spend on callouts, retries and backoff included.
    pub timeout: Duration,
    /// Clusters tried in order when the primary gives no decision or its breaker is open.
    pub fallbacks: Vec<Upstream>,
    /// Lets a request through, marked with a header, when no decision arrives.
    pub fail_open: bool,
    /// Status sent when no decision arrives and `fail_open` is off.
    pub status_on_error: u16,
    pub retry: RetryPolicy,
    /// Time one callout may take, at most `timeout`.
    pub per_try_timeout: Duration,
    /// Circuit breaker per cluster; `None` when not configured.
    pub breaker: Option<BreakerConfig>,
    /// Reuse of decisions per token. `None`, the default, sends a callout for every request.
    pub cache: Option<CacheConfig>,
}

/// A configuration that cannot be used, with the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn invalid(key: &str, value: &Value, allowed: impl fmt::Display) -> Self {
        Self(format!(
            "invalid value for \"{key}\": {}; expected {allowed}",
            describe(value)
        ))
    }
}

impl ConfigError {
    /// Returns what is wrong, without the `invalid jwt-revocation configuration` prefix.
    pub fn detail(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid jwt-revocation configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates the configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::new(
                "the configuration is empty; expected a JSON object with at least \"cluster\"",
            ));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new(format!("the configuration is not valid JSON: {e}")))?;
        // serde_json keeps the last of two equal keys, so a configuration that sets one key
        // twice is rejected instead of running with one of the two values.
        if let Some(key) = duplicate_key(bytes) {
            return Err(ConfigError::new(format!(
                "the key \"{key}\" appears more than once; give each key once"
            )));
        }
        let Value::Object(object) = value else {
            return Err(ConfigError::new(format!(
                "the configuration is {}; expected a JSON object with at least \"cluster\"",
                describe(&value)
            )));
        };
        Self::from_object(&object)
    }

    /// Returns the primary cluster followed by the fallbacks.
    pub fn upstream(&self, index: usize) -> Option<(&str, &str)> {
        match index {
            0 => Some((&self.cluster, &self.authority)),
            _ => self
                .fallbacks
                .get(index - 1)
                .map(|u| (u.cluster.as_str(), u.authority.as_str())),
        }
    }

    /// Returns how many clusters a request may try: the primary and the fallbacks.
    pub fn upstream_count(&self) -> usize {
        1 + self.fallbacks.len()
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, ConfigError> {
        check_keys(object, "", TOP_LEVEL_KEYS)?;

        if !object.contains_key("cluster") {
            return Err(ConfigError::new(
                "missing key \"cluster\"; expected the name of the Envoy cluster of the \
                 authorization service, such as \"outbound|8080||authz.ns.svc.cluster.local\"",
            ));
        }
        let primary = upstream(object, "")?;

        let authorize_url = match object.get("authorizeUrl") {
            None => DEFAULT_AUTHORIZE_URL,
            Some(value) => {
                let url = non_empty_string("authorizeUrl", value)?;
                if !is_valid_path(url) {
                    return Err(ConfigError::invalid(
                        "authorizeUrl",
                        value,
                        format_args!(
                            "a path that starts with \"/\", of at most {MAX_AUTHORIZE_URL_LEN} \
                             visible ASCII characters and no \"#\""
                        ),
                    ));
                }
                url
            }
        };

        let timeout = milliseconds(object, "", "timeout", TIMEOUT_RANGE_MS, DEFAULT_TIMEOUT_MS)?;
        let fail_open = match object.get("failOpen") {
            None => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| ConfigError::invalid("failOpen", value, "true or false"))?,
        };
        let status_on_error = integer(
            object,
            "",
            "statusOnError",
            400..=599,
            u64::from(DEFAULT_STATUS_ON_ERROR),
            "an HTTP status",
        )?;
        let (retry, per_try_timeout) = retry(object.get("retry"), timeout)?;
        let breaker = breaker(object.get("circuitBreaker"))?;
        let fallbacks = fallbacks(object.get("fallbackClusters"))?;
        let cache = cache(object.get("cache"))?;

        Ok(Self {
            cluster: primary.cluster,
            authority: primary.authority,
            authorize_url: authorize_url.to_owned(),
            timeout,
            fallbacks,
            fail_open,
            // Bounded to 400..=599 above.
            status_on_error: status_on_error as u16,
            retry,
            per_try_timeout,
            breaker,
            cache,
        })
    }
}

/// Reads `cluster` and the optional `authority` of one upstream; `prefix` names the enclosing key.
fn upstream(object: &Map<String, Value>, prefix: &str) -> Result<Upstream, ConfigError> {
    let cluster_key = format!("{prefix}cluster");
    let cluster = match object.get("cluster") {
        Some(value) => non_empty_string(&cluster_key, value)?,
        None => return Err(ConfigError::new(format!("missing key \"{cluster_key}\""))),
    };
    let authority = match object.get("authority") {
        Some(value) => {
            let key = format!("{prefix}authority");
            let authority = non_empty_string(&key, value)?;
            check_authority(authority)
                .map_err(|_| ConfigError::invalid(&key, value, "a host or host:port"))?;
            authority
        }
        None => authority_from_cluster(cluster)
            .map_err(|e| ConfigError::new(format!("invalid value for \"{cluster_key}\": {e}")))?,
    };
    Ok(Upstream {
        cluster: cluster.to_owned(),
        authority: authority.to_owned(),
    })
}

fn fallbacks(value: Option<&Value>) -> Result<Vec<Upstream>, ConfigError> {
    const ALLOWED: &str = "an array of cluster names or {\"cluster\", \"authority\"} objects";
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return Err(ConfigError::invalid("fallbackClusters", value, ALLOWED));
    };
    if items.len() > MAX_FALLBACK_CLUSTERS {
        return Err(ConfigError::invalid(
            "fallbackClusters",
            value,
            format_args!("at most {MAX_FALLBACK_CLUSTERS} clusters"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let prefix = format!("fallbackClusters[{index}].");
            match item {
                Value::String(_) => {
                    let mut object = Map::new();
                    object.insert("cluster".to_owned(), item.clone());
                    upstream(&object, &prefix)
                }
                Value::Object(object) => {
                    check_keys(object, &prefix, UPSTREAM_KEYS)?;
                    upstream(object, &prefix)
                }
                _ => Err(ConfigError::invalid(
                    &format!("fallbackClusters[{index}]"),
                    item,
                    ALLOWED,
                )),
            }
        })
        .collect()
}

fn retry(value: Option<&Value>, timeout: Duration) -> Result<(RetryPolicy, Duration), ConfigError> {
    let Some(value) = value else {
        return Ok((RetryPolicy::DISABLED, timeout));
    };
    let object = as_object("retry", value)?;
    check_keys(object, "retry.", RETRY_KEYS)?;
    let defaults = RetryPolicy::DISABLED;
    let max_retries = integer(object, "retry.", "maxRetries", 0..=5, 0, "a whole number")?;
    let base_interval = milliseconds(
        object,
        "retry.",
        "baseInterval",
        1..=10_000,
        defaults.base_interval.as_millis() as u64,
    )?;
    let max_interval = milliseconds(
        object,
        "retry.",
        "maxInterval",
        1..=60_000,
        defaults.max_interval.as_millis() as u64,
    )?;
    if max_interval < base_interval {
        return Err(ConfigError::new(format!(
            "invalid value for \"retry.maxInterval\": {} ms is less than \"retry.baseInterval\" \
             {} ms",
            max_interval.as_millis(),
            base_interval.as_millis()
        )));
    }
    let timeout_ms = timeout.as_millis() as u64;
    let per_try_timeout = milliseconds(
        object,
        "retry.",
        "perTryTimeout",
        1..=timeout_ms,
        timeout_ms,
    )?;
    let policy = RetryPolicy {
        max_retries: max_retries as u32,
        base_interval,
        max_interval,
    };
    Ok((policy, per_try_timeout))
}

fn breaker(value: Option<&Value>) -> Result<Option<BreakerConfig>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let object = as_object("circuitBreaker", value)?;
    check_keys(object, "circuitBreaker.", BREAKER_KEYS)?;
    let consecutive_failures = integer(
        object,
        "circuitBreaker.",
        "consecutiveFailures",
        1..=1000,
        5,
        "a whole number",
    )?;
    let open_interval = milliseconds(
        object,
        "circuitBreaker.",
        "openInterval",
        1..=3_600_000,
        10_000,
    )?;
    Ok(Some(BreakerConfig {
        consecutive_failures: consecutive_failures as u32,
        open_interval,
    }))
}

fn cache(value: Option<&Value>) -> Result<Option<CacheConfig>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let object = as_object("cache", value)?;
    check_keys(object, "cache.", CACHE_KEYS)?;
    // The time a revocation can go unnoticed is the user's choice, so it has no default.
    if !object.contains_key("ttl") {
        return Err(ConfigError::new(
            "missing key \"cache.ttl\"; expected the milliseconds a decision is reused, which is \
             also the longest time a revoked token can still pass",
        ));
    }
    let ttl = milliseconds(object, "cache.", "ttl", CACHE_TTL_RANGE_MS, 0)?;
    let max_entries = integer(
        object,
        "cache.",
        "maxEntries",
        CACHE_MAX_ENTRIES_RANGE,
        DEFAULT_CACHE_MAX_ENTRIES as u64,
        "a whole number",
    )?;
    Ok(Some(CacheConfig {
        ttl,
        // Bounded by CACHE_MAX_ENTRIES_RANGE above.
        max_entries: max_entries as usize,
    }))
}

fn as_object<'v>(key: &str, value: &'v Value) -> Result<&'v Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::invalid(key, value, "a JSON object"))
}

fn check_keys(
    object: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), ConfigError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(ConfigError::new(format!(
            "unknown key \"{prefix}{key}\"; allowed keys{} are {}",
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" in \"{}\"", prefix.trim_end_matches('.'))
            },
            allowed.join(", ")
        ))),
    }
}

fn integer(
    object: &Map<String, Value>,
    prefix: &str,
    key: &str,
    range: RangeInclusive<u64>,
    default: u64,
    expected: &str,
) -> Result<u64, ConfigError> {
    match object.get(key) {
        None => Ok(default),
        Some(value) => match whole_number(value) {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::invalid(
                &format!("{prefix}{key}"),
                value,
                format_args!("{expected} from {} to {}", range.start(), range.end()),
            )),
        },
    }
}

/// Returns a JSON number that has no fraction, such as `2000`, `2000.0` or `2e3`, as an integer.
fn whole_number(value: &Value) -> Option<u64> {
    // 2^64 as f64; every whole f64 below it converts to u64 exactly.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..LIMIT).contains(f))
            .map(|f| f as u64)
    })
}

fn milliseconds(
    object: &Map<String, Value>,
    prefix: &str,
    key: &str,
    range: RangeInclusive<u64>,
    default: u64,
) -> Result<Duration, ConfigError> {
    integer(
        object,
        prefix,
        key,
        range,
        default,
        "a whole number of milliseconds",
    )
    .map(Duration::from_millis)
}

fn non_empty_string<'v>(key: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    match value.as_str() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ConfigError::invalid(key, value, "a non-empty string")),
    }
}

fn is_valid_path(url: &str) -> bool {
    url.starts_with('/')
        && url.len() <= MAX_AUTHORIZE_URL_LEN
        && url.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// Describes a JSON value for an error message, cut short so a huge value cannot flood the log.
fn describe(value: &Value) -> String {
    const MAX: usize = 80;
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if value.is_null() {
        return "null".to_owned();
    }
    let mut text = value.to_string();
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    format!("{kind} {text}")
}

/// Returns the first key that appears twice in one JSON object, at any depth, with its path
/// (such as `cache.ttl` or `fallbackClusters[0].cluster`). Callers check that `bytes` is valid
/// JSON first: on invalid JSON the result is `None` or a key found before the error.
pub fn duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Walks one JSON value whose path is `prefix` and records the first repeated key in
    /// `found`.
    struct Finder<'f> {
        found: &'f mut Option<String>,
        prefix: String,
    }

    impl<'de> Visitor<'de> for Finder<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = format!("{}{key}", self.prefix);
                if self.found.is_none() && !seen.insert(key) {
                    *self.found = Some(path.clone());
                }
                map.next_value_seed(Finder {
                    found: &mut *self.found,
                    prefix: format!("{path}."),
                })?;
            }
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let parent = self.prefix.trim_end_matches('.');
            for index in 0.. {
                let element = Finder {
                    found: &mut *self.found,
                    prefix: format!("{parent}[{index}]."),
                };
                if seq.next_element_seed(element)?.is_none() {
                    break;
                }
            }
            Ok(())
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }

        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }

        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }

        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }

        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for Finder<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let finder = Finder {
        found: &mut found,
        prefix: String::new(),
    };
    // The walk stops at the first JSON error, keeping what it found before.
    let _ = finder.deserialize(&mut deserializer);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes())
    }

    fn error(json: &str) -> String {
        parse(json).expect_err(json).to_string()
    }

    #[test]
    fn defaults_applied() {
        let config = parse(r#"{"cluster": "outbound|8080||authz.ns.svc.cluster.local"}"#).unwrap();
        assert_eq!(config.cluster, "outbound|8080||authz.ns.svc.cluster.local");
        assert_eq!(config.authority, "authz.ns.svc.cluster.local");
        assert_eq!(config.authorize_url, "/authorize");
        assert_eq!(config.timeout, Duration::from_millis(2000));
    }

    #[test]
    fn all_keys_read() {
        let config = parse(
            r#"{"cluster": "authz", "authorizeUrl": "/v1/check?x=1", "timeout": 250,
                "authority": "authz.example:8443"}"#,
        )
        .unwrap();
        assert_eq!(config.cluster, "authz");
        assert_eq!(config.authority, "authz.example:8443");
        assert_eq!(config.authorize_url, "/v1/check?x=1");
        assert_eq!(config.timeout, Duration::from_millis(250));
    }

    #[test]
    fn authority_overrides_sni_cluster() {
        let config =
            parse(r#"{"cluster": "outbound_.8080_._.authz.ns", "authority": "authz.ns"}"#).unwrap();
        assert_eq!(config.authority, "authz.ns");
    }

    #[test]
    fn missing_cluster_rejected() {
        let message = error(r#"{"timeout": 100}"#);
        assert!(message.contains("missing key \"cluster\""), "{message}");
    }

    #[test]
    fn empty_cluster_rejected() {
        let message = error(r#"{"cluster": ""}"#);
        assert!(message.contains("\"cluster\": string \"\""), "{message}");
        assert!(message.contains("non-empty string"), "{message}");
    }

    #[test]
    fn sni_cluster_rejected() {
        let message = error(r#"{"cluster": "outbound_.8080_._.authz.ns.svc.cluster.local"}"#);
        assert!(message.contains("SNI form"), "{message}");
    }

    #[test]
    fn unknown_key_rejected() {
        let message = error(r#"{"cluster": "authz", "timeoutMs": 5}"#);
        assert!(message.contains("unknown key \"timeoutMs\""), "{message}");
        assert!(
            message.contains("cluster, authorizeUrl, timeout, authority"),
            "{message}"
        );
    }

    #[test]
    fn wrong_types_rejected() {
        let cases = [
            (r#"{"cluster": 5}"#, "\"cluster\": number 5"),
            (
                r#"{"cluster": "a", "timeout": "2000"}"#,
                "\"timeout\": string \"2000\"",
            ),
            (
                r#"{"cluster": "a", "authorizeUrl": null}"#,
                "\"authorizeUrl\": null; expected",
            ),
            (
                r#"{"cluster": "a", "authority": ["x"]}"#,
                "\"authority\": array [\"x\"]",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }

    #[test]
    fn timeout_bounds_enforced() {
        for bad in ["0", "60001", "-5", "1.5", "1e9"] {
            let message = error(&format!(r#"{{"cluster": "a", "timeout": {bad}}}"#));
            assert!(message.contains("from 1 to 60000"), "{bad}: {message}");
        }
        assert!(parse(r#"{"cluster": "a", "timeout": 1}"#).is_ok());
        assert!(parse(r#"{"cluster": "a", "timeout": 60000}"#).is_ok());
    }

    #[test]
    fn authorize_url_must_be_path() {
        for bad in [
            "authorize",
            "http://authz/authorize",
            "/a b",
            "/a#frag",
            "/\u{e9}",
        ] {
            let json = serde_json::json!({"cluster": "a", "authorizeUrl": bad}).to_string();
            let message = error(&json);
            assert!(message.contains("starts with \"/\""), "{bad}: {message}");
        }
    }

    #[test]
    fn invalid_authority_rejected() {
        let message = error(r#"{"cluster": "a", "authority": "a b"}"#);
        assert!(message.contains("\"authority\""), "{message}");
        assert!(message.contains("host or host:port"), "{message}");
    }

    #[test]
    fn duplicate_keys_rejected() {
        let message = error(r#"{"cluster": "a", "timeout": 0, "timeout": 2000}"#);
        assert!(
            message.contains("\"timeout\" appears more than once"),
            "{message}"
        );
        let message = error(r#"{"cluster": "a", "retry": {"maxRetries": 1, "maxRetries": 2}}"#);
        assert!(
            message.contains("\"retry.maxRetries\" appears more than once"),
            "{message}"
        );
        let json = r#"{"cluster": "a", "fallbackClusters": [{"cluster": "b", "cluster": "c"}]}"#;
        let message = error(json);
        assert!(
            message.contains("\"fallbackClusters[0].cluster\" appears more than once"),
            "{message}"
        );
        let message = error(r#"{"cluster": "a", "cache": {"ttl": 1, "ttl": 2}}"#);
        assert!(
            message.contains("\"cache.ttl\" appears more than once"),
            "{message}"
        );
    }

    #[test]
    fn null_described_once() {
        let message = error(r#"{"cluster": "a", "timeout": null}"#);
        assert!(message.contains("\"timeout\": null; expected"), "{message}");
    }

    #[test]
    fn not_an_object_rejected() {
        assert!(error("").contains("empty"));
        assert!(error("  \n").contains("empty"));
        assert!(error("[1]").contains("array"));
        assert!(error("{").contains("not valid JSON"));
        assert!(error(r#""cluster""#).contains("expected a JSON object"));
    }

    #[test]
    fn long_values_cut_in_messages() {
        let long = "x".repeat(500);
        let json = serde_json::json!({"cluster": "a", "authorizeUrl": long}).to_string();
        let message = error(&json);
        assert!(message.len() < 400, "{message}");
        assert!(message.contains("..."), "{message}");
    }

    #[test]
    fn resilience_defaults_keep_fail_closed() {
        let config = parse(r#"{"cluster": "authz"}"#).unwrap();
        assert!(!config.fail_open);
        assert_eq!(config.status_on_error, 503);
        assert_eq!(config.retry.max_retries, 0);
        assert_eq!(config.per_try_timeout, config.timeout);
        assert_eq!(config.breaker, None);
        assert_eq!(config.cache, None);
        assert!(config.fallbacks.is_empty());
        assert_eq!(config.upstream_count(), 1);
    }

    #[test]
    fn resilience_keys_read() {
        let config = parse(
            r#"{"cluster": "outbound|8080||authz.a.svc", "timeout": 1000, "failOpen": true,
                "statusOnError": 403,
                "retry": {"maxRetries": 2, "baseInterval": 10, "maxInterval": 80, "perTryTimeout": 300},
                "circuitBreaker": {"consecutiveFailures": 4, "openInterval": 5000},
                "fallbackClusters": ["outbound|8080||authz.b.svc",
                                     {"cluster": "authz_dr", "authority": "authz.dr:9000"}]}"#,
        )
        .unwrap();
        assert!(config.fail_open);
        assert_eq!(config.status_on_error, 403);
        assert_eq!(
            config.retry,
            RetryPolicy {
                max_retries: 2,
                base_interval: Duration::from_millis(10),
                max_interval: Duration::from_millis(80),
            }
        );
        assert_eq!(config.per_try_timeout, Duration::from_millis(300));
        assert_eq!(
            config.breaker,
            Some(BreakerConfig {
                consecutive_failures: 4,
                open_interval: Duration::from_secs(5),
            })
        );
        assert_eq!(config.upstream_count(), 3);
        assert_eq!(
            config.upstream(0),
            Some(("outbound|8080||authz.a.svc", "authz.a.svc"))
        );
        assert_eq!(
            config.upstream(1),
            Some(("outbound|8080||authz.b.svc", "authz.b.svc"))
        );
        assert_eq!(config.upstream(2), Some(("authz_dr", "authz.dr:9000")));
        assert_eq!(config.upstream(3), None);
    }

    #[test]
    fn resilience_values_checked() {
        let cases = [
            (r#""failOpen": "yes""#, "\"failOpen\": string \"yes\"; expected true or false"),
            (r#""statusOnError": 200"#, "\"statusOnError\": number 200; expected an HTTP status from 400 to 599"),
            (r#""retry": 3"#, "\"retry\": number 3; expected a JSON object"),
            (r#""retry": {"maxRetries": 9}"#, "\"retry.maxRetries\": number 9"),
            (r#""retry": {"tries": 1}"#, "unknown key \"retry.tries\"; allowed keys in \"retry\""),
            (r#""retry": {"baseInterval": 100, "maxInterval": 50}"#, "less than \"retry.baseInterval\""),
            (r#""retry": {"perTryTimeout": 2001}"#, "\"retry.perTryTimeout\": number 2001; expected a whole number of milliseconds from 1 to 2000"),
            (r#""circuitBreaker": {"consecutiveFailures": 0}"#, "\"circuitBreaker.consecutiveFailures\": number 0"),
            (r#""circuitBreaker": {"openInterval": -1}"#, "\"circuitBreaker.openInterval\": number -1"),
            (r#""fallbackClusters": "authz""#, "\"fallbackClusters\": string \"authz\""),
            (r#""fallbackClusters": [5]"#, "\"fallbackClusters[0]\": number 5"),
            (r#""fallbackClusters": [{"authority": "a"}]"#, "missing key \"fallbackClusters[0].cluster\""),
            (r#""fallbackClusters": ["outbound_.80_._.b"]"#, "\"fallbackClusters[0].cluster\": the cluster name has Istio's SNI form"),
            (r#""fallbackClusters": [{"cluster": "b", "weight": 1}]"#, "unknown key \"fallbackClusters[0].weight\""),
        ];
        for (fragment, expected) in cases {
            let json = format!(r#"{{"cluster": "authz", {fragment}}}"#);
            let message = error(&json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }

    #[test]
    fn cache_read() {
        let config = parse(r#"{"cluster": "authz", "cache": {"ttl": 1500}}"#).unwrap();
        assert_eq!(
            config.cache,
            Some(CacheConfig {
                ttl: Duration::from_millis(1500),
                max_entries: 10_000,
            })
        );
        let config =
            parse(r#"{"cluster": "authz", "cache": {"ttl": 1, "maxEntries": 5}}"#).unwrap();
        assert_eq!(config.cache.map(|cache| cache.max_entries), Some(5));
    }

    #[test]
    fn whole_floats_accepted() {
        let config =
            parse(r#"{"cluster": "a", "timeout": 1500.0, "cache": {"ttl": 1e3}}"#).unwrap();
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(
            config.cache.map(|cache| cache.ttl),
            Some(Duration::from_secs(1))
        );
        let message = error(r#"{"cluster": "a", "timeout": 1500.5}"#);
        assert!(message.contains("\"timeout\": number 1500.5"), "{message}");
    }

    #[test]
    fn cache_values_checked() {
        let cases = [
            (
                r#""cache": true"#,
                "\"cache\": boolean true; expected a JSON object",
            ),
            (r#""cache": {}"#, "missing key \"cache.ttl\""),
            (r#""cache": {"maxEntries": 5}"#, "missing key \"cache.ttl\""),
            (
                r#""cache": {"ttl": 0}"#,
                "\"cache.ttl\": number 0; expected a whole number of milliseconds from 1 to 300000",
            ),
            (
                r#""cache": {"ttl": 300001}"#,
                "\"cache.ttl\": number 300001",
            ),
            (r#""cache": {"ttl": "1s"}"#, "\"cache.ttl\": string \"1s\""),
            (
                r#""cache": {"ttl": 10, "maxEntries": 0}"#,
                "\"cache.maxEntries\": number 0; expected a whole number from 1 to 250000",
            ),
            (
                r#""cache": {"ttl": 10, "size": 5}"#,
                "unknown key \"cache.size\"; allowed keys in \"cache\" are ttl, maxEntries",
            ),
        ];
        for (fragment, expected) in cases {
            let json = format!(r#"{{"cluster": "authz", {fragment}}}"#);
            let message = error(&json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }

    #[test]
    fn too_many_fallbacks_rejected() {
        let names: Vec<String> = (0..9).map(|i| format!("\"authz{i}\"")).collect();
        let message = error(&format!(
            r#"{{"cluster": "authz", "fallbackClusters": [{}]}}"#,
            names.join(", ")
        ));
        assert!(message.contains("at most 8 clusters"), "{message}");
    }
}

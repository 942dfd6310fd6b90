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
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cluster::{authority_from_cluster, check_authority};

/// Default path of the authorization endpoint.
pub const DEFAULT_AUTHORIZE_URL: &str = "/authorize";
/// Default callout timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Allowed callout timeouts, in milliseconds.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 1..=60_000;
/// Longest `authorizeUrl` accepted, in bytes.
const MAX_AUTHORIZE_URL_LEN: usize = 2048;

const KNOWN_KEYS: &str = "cluster, authorizeUrl, timeout, authority";

/// A validated filter configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Envoy cluster that the callout is sent to.
    pub cluster: String,
    /// `:authority` of the callout: the `authority` key, or the host part of `cluster`.
    pub authority: String,
    /// `:path` of the callout.
    pub authorize_url: String,
    /// Time the callout may take before the request fails closed.
    pub timeout: Duration,
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
        let Value::Object(object) = value else {
            return Err(ConfigError::new(format!(
                "the configuration is {}; expected a JSON object with at least \"cluster\"",
                describe(&value)
            )));
        };
        Self::from_object(&object)
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, ConfigError> {
        if let Some(key) = object
            .keys()
            .find(|k| !KNOWN_KEYS.split(", ").any(|known| known == *k))
        {
            return Err(ConfigError::new(format!(
                "unknown key \"{key}\"; allowed keys are {KNOWN_KEYS}"
            )));
        }

        let cluster = match object.get("cluster") {
            None => {
                return Err(ConfigError::new(
                    "missing key \"cluster\"; expected the name of the Envoy cluster of the \
                     authorization service, such as \"outbound|8080||authz.ns.svc.cluster.local\"",
                ))
            }
            Some(value) => non_empty_string("cluster", value)?,
        };

        let authority = match object.get("authority") {
            Some(value) => {
                let authority = non_empty_string("authority", value)?;
                check_authority(authority)
                    .map_err(|_| ConfigError::invalid("authority", value, "a host or host:port"))?;
                authority
            }
            None => authority_from_cluster(cluster)
                .map_err(|e| ConfigError::new(format!("invalid value for \"cluster\": {e}")))?,
        };

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

        let timeout_ms = match object.get("timeout") {
            None => DEFAULT_TIMEOUT_MS,
            Some(value) => match value.as_u64() {
                Some(ms) if TIMEOUT_RANGE_MS.contains(&ms) => ms,
                _ => {
                    return Err(ConfigError::invalid(
                        "timeout",
                        value,
                        format_args!(
                            "a whole number of milliseconds from {} to {}",
                            TIMEOUT_RANGE_MS.start(),
                            TIMEOUT_RANGE_MS.end()
                        ),
                    ))
                }
            },
        };

        Ok(Self {
            cluster: cluster.to_owned(),
            authority: authority.to_owned(),
            authorize_url: authorize_url.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
        })
    }
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
                "\"authorizeUrl\": null null",
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
}

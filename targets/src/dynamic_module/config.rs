//! The listener-level and per-route configurations, parsed from the `filter_config` bytes that
//! Envoy passes to the module.
//!
//! Envoy passes a `google.protobuf.StringValue` as its raw string and a `google.protobuf.Struct`
//! serialized as JSON, so both forms reach [`Config::from_json`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jwt_revocation_core::config::duplicate_key;
use jwt_revocation_core::{Breakers, Config, ConfigError, DecisionCache};
use serde_json::Value;

use super::backoff::TimerLease;
use super::metrics::MetricIds;

/// A configuration with the circuit breakers of its clusters and its decision cache, shared by
/// the streams of every worker thread.
#[derive(Debug)]
pub struct ConfigState {
    pub config: Config,
    shared: Mutex<Shared>,
}

/// The state that every worker thread updates.
#[derive(Debug)]
pub struct Shared {
    pub breakers: Breakers,
    pub cache: DecisionCache,
}

impl ConfigState {
    pub fn new(config: Config) -> Self {
        Self {
            shared: Mutex::new(Shared {
                breakers: Breakers::new(&config),
                cache: DecisionCache::new(config.cache),
            }),
            config,
        }
    }

    /// Locks the circuit breakers and the cache. Hold the guard for one core call and make no
    /// host call meanwhile, because every worker thread waits for it.
    ///
    /// A panic during a core call poisons the lock, and the state stays in use. A breaker
    /// contains only counts and times, so a half-done update at worst miscounts one callout or
    /// keeps the probe slot until the probe timeout. A half-done cache insert at worst leaves an
    /// item in the eviction queue without an entry, and eviction skips such items.
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The configuration of one `envoy.filters.http.dynamic_modules` filter, shared by the streams of
/// every worker.
#[derive(Debug)]
pub struct FilterConfig {
    pub state: Arc<ConfigState>,
    /// The metrics of every stream, including streams on routes that override the configuration.
    pub metrics: MetricIds,
    _timer: TimerLease,
}

impl FilterConfig {
    pub fn new(config: Config, metrics: MetricIds) -> Self {
        Self {
            state: Arc::new(ConfigState::new(config)),
            metrics,
            _timer: TimerLease::new(),
        }
    }
}

/// The configuration of a `DynamicModuleFilterPerRoute` on a virtual host or route. Envoy hands
/// the filter the most specific one.
#[derive(Debug)]
pub enum RouteConfig {
    /// `{"disabled": true}`: requests on the route pass without a check.
    Disabled,
    /// `{"disabled": false}`: the listener-level configuration applies, for example to enable the
    /// filter on one route of a virtual host that disables it.
    Inherit,
    /// A full filter configuration that replaces the listener-level one on the route, with
    /// circuit breakers of its own.
    Override(Arc<ConfigState>),
}

/// A per-route configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteConfigError {
    /// The `disabled` key has another value than a boolean, or comes with other keys.
    Disabled(String),
    /// The object is not a valid full filter configuration.
    Config(ConfigError),
}

impl fmt::Display for RouteConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled(message) => {
                write!(
                    f,
                    "invalid jwt-revocation per-route configuration: {message}"
                )
            }
            Self::Config(error) => write!(
                f,
                "invalid jwt-revocation per-route configuration: {}",
                error.detail()
            ),
        }
    }
}

impl RouteConfig {
    /// Parses a per-route configuration: `{"disabled": true}`, `{"disabled": false}`, or a full
    /// filter configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RouteConfigError> {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(bytes) {
            if let Some(disabled) = object.get("disabled") {
                if let Some(key) = duplicate_key(bytes) {
                    return Err(RouteConfigError::Disabled(format!(
                        "the key \"{key}\" appears more than once; give each key once"
                    )));
                }
                if object.len() > 1 {
                    return Err(RouteConfigError::Disabled(
                        "\"disabled\" cannot be combined with other keys; use {\"disabled\": \
                         true} alone, or a full filter configuration without \"disabled\""
                            .to_owned(),
                    ));
                }
                return match disabled {
                    Value::Bool(true) => Ok(Self::Disabled),
                    Value::Bool(false) => Ok(Self::Inherit),
                    other => Err(RouteConfigError::Disabled(format!(
                        "invalid value for \"disabled\": {other}; expected true or false"
                    ))),
                };
            }
        }

        // Anything else must be a full configuration, and `Config` reports what is wrong with it,
        // including JSON syntax errors.
        let config = Config::from_json(bytes).map_err(RouteConfigError::Config)?;
        Ok(Self::Override(Arc::new(ConfigState::new(config))))
    }
}

/// Describes a configuration for the log. A configuration contains no secret.
pub fn describe(config: &Config) -> String {
    let fallbacks: Vec<&str> = config
        .fallbacks
        .iter()
        .map(|upstream| upstream.cluster.as_str())
        .collect();
    let cache = config.cache.map_or_else(
        || "off".to_owned(),
        |cache| {
            format!(
                "ttl {} ms, {} entries",
                cache.ttl.as_millis(),
                cache.max_entries
            )
        },
    );
    let breaker = config.breaker.map_or_else(
        || "off".to_owned(),
        |breaker| {
            format!(
                "{} failures, open {} ms",
                breaker.consecutive_failures,
                breaker.open_interval.as_millis()
            )
        },
    );
    format!(
        "cluster={:?} authority={:?} authorizeUrl={:?} timeout={}ms perTryTimeout={}ms \
         maxRetries={} fallbackClusters={fallbacks:?} circuitBreaker=({breaker}) cache=({cache}) \
         failOpen={} statusOnError={}",
        config.cluster,
        config.authority,
        config.authorize_url,
        config.timeout.as_millis(),
        config.per_try_timeout.as_millis(),
        config.retry.max_retries,
        config.fail_open,
        config.status_on_error
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RouteConfig, RouteConfigError> {
        RouteConfig::from_json(json.as_bytes())
    }

    #[test]
    fn route_disabled_true_disables() {
        assert!(matches!(
            parse(r#"{"disabled": true}"#),
            Ok(RouteConfig::Disabled)
        ));
    }

    #[test]
    fn route_disabled_false_inherits() {
        assert!(matches!(
            parse(r#"{"disabled": false}"#),
            Ok(RouteConfig::Inherit)
        ));
    }

    #[test]
    fn route_full_config_overrides() {
        let parsed = parse(r#"{"cluster": "outbound|9001||authz.ns.svc", "timeout": 50}"#);
        let Ok(RouteConfig::Override(state)) = parsed else {
            panic!("expected an override, got {parsed:?}");
        };
        assert_eq!(state.config.cluster, "outbound|9001||authz.ns.svc");
        assert_eq!(state.config.timeout.as_millis(), 50);
    }

    #[test]
    fn route_disabled_with_other_keys_rejected() {
        let message = parse(r#"{"disabled": true, "cluster": "a"}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot be combined"), "{message}");
    }

    #[test]
    fn route_disabled_twice_rejected() {
        for json in [
            r#"{"disabled": false, "disabled": true}"#,
            r#"{"disabled": true, "disabled": false}"#,
        ] {
            let message = parse(json).unwrap_err().to_string();
            assert!(
                message.contains("\"disabled\" appears more than once"),
                "{json}: {message}"
            );
        }
    }

    #[test]
    fn route_disabled_not_boolean_rejected() {
        let message = parse(r#"{"disabled": "yes"}"#).unwrap_err().to_string();
        assert!(message.contains("expected true or false"), "{message}");
    }

    #[test]
    fn route_invalid_config_reports_core_error() {
        let message = parse(r#"{"timeout": 5}"#).unwrap_err().to_string();
        assert!(
            message.starts_with("invalid jwt-revocation per-route configuration: "),
            "{message}"
        );
        assert!(message.contains("missing key \"cluster\""), "{message}");
        assert!(parse("").is_err());
        assert!(parse("{").is_err());
    }

    #[test]
    fn shared_state_usable_after_panic() {
        let state = ConfigState::new(Config::from_json(br#"{"cluster": "authz"}"#).unwrap());
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = state.lock();
            panic!("panic while the shared state is locked");
        }));
        assert!(poisoned.is_err());
        assert!(state.shared.is_poisoned());
        drop(state.lock());
    }
}

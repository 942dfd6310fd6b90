//! The listener-level and per-route configurations, parsed from the `filter_config` bytes that
//! Envoy passes to the module.
//!
//! Envoy passes a `google.protobuf.StringValue` as its raw string and a `google.protobuf.Struct`
//! serialized as JSON, so both forms reach [`Config::from_json`].

use std::fmt;
use std::sync::Arc;

use jwt_revocation_core::{Config, ConfigError};
use serde_json::Value;

/// The configuration of one `envoy.filters.http.dynamic_modules` filter, shared by the streams of
/// every worker.
#[derive(Debug)]
pub struct FilterConfig {
    pub config: Arc<Config>,
}

impl FilterConfig {
    /// Parses the listener-level configuration JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Ok(Self {
            config: Arc::new(Config::from_json(bytes)?),
        })
    }
}

/// The configuration of a `DynamicModuleFilterPerRoute` on a virtual host or route. Envoy hands
/// the filter the most specific one.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteConfig {
    /// `{"disabled": true}`: requests on the route pass without a check.
    Disabled,
    /// `{"disabled": false}`: the listener-level configuration applies, for example to enable the
    /// filter on one route of a virtual host that disables it.
    Inherit,
    /// A full filter configuration that replaces the listener-level one on the route.
    Override(Arc<Config>),
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
            Self::Config(error) => write!(f, "per-route {error}"),
        }
    }
}

impl RouteConfig {
    /// Parses a per-route configuration: `{"disabled": true}`, `{"disabled": false}`, or a full
    /// filter configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RouteConfigError> {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(bytes) {
            if let Some(disabled) = object.get("disabled") {
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
        Ok(Self::Override(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RouteConfig, RouteConfigError> {
        RouteConfig::from_json(json.as_bytes())
    }

    #[test]
    fn route_disabled_true_disables() {
        assert_eq!(parse(r#"{"disabled": true}"#), Ok(RouteConfig::Disabled));
    }

    #[test]
    fn route_disabled_false_inherits() {
        assert_eq!(parse(r#"{"disabled": false}"#), Ok(RouteConfig::Inherit));
    }

    #[test]
    fn route_full_config_overrides() {
        let parsed = parse(r#"{"cluster": "outbound|9001||authz.ns.svc", "timeout": 50}"#);
        let Ok(RouteConfig::Override(config)) = parsed else {
            panic!("expected an override, got {parsed:?}");
        };
        assert_eq!(config.cluster, "outbound|9001||authz.ns.svc");
        assert_eq!(config.timeout.as_millis(), 50);
    }

    #[test]
    fn route_disabled_with_other_keys_rejected() {
        let message = parse(r#"{"disabled": true, "cluster": "a"}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot be combined"), "{message}");
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
            message.starts_with("per-route invalid jwt-revocation"),
            "{message}"
        );
        assert!(message.contains("missing key \"cluster\""), "{message}");
        assert!(parse("").is_err());
        assert!(parse("{").is_err());
    }

    #[test]
    fn listener_config_parsed() {
        let config = FilterConfig::from_json(br#"{"cluster": "authz"}"#).unwrap();
        assert_eq!(config.config.cluster, "authz");
    }
}

//! Decision logic of the jwt-revocation Envoy filter.
//!
//! For each request the filter reads the bearer JWT from `Authorization`, reads its `jti`, and checks
//! with an authorization service, through an Envoy cluster, whether the token is still valid. This crate
//! holds everything that decides: configuration, token parsing, the callout, and the mapping of
//! the service's response to a verdict. It does no I/O, reads no clock and has no FFI, so the
//! proxy-wasm and dynamic-module targets share it and differ only in how they talk to Envoy.

pub mod breaker;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod log_limit;
pub mod metrics;
pub mod retry;
pub mod stream;
pub mod token;
pub mod verdict;

pub use cache::{CacheConfig, CacheKey, DecisionCache};
pub use config::{Config, ConfigError};
pub use log_limit::LogLimiter;
pub use metrics::{Counter, NoMetrics, Recorder};
pub use retry::Jitter;
pub use stream::{Action, Breakers, Callout, Env, RequestInfo, Stream};
pub use verdict::{LocalReply, NoDecision, Verdict, FAILURE_MODE_HEADER};

//! Reference authorization service for the JWT revocation filter.
//!
//! The service issues HS256 JWTs and keeps an in-memory list of revoked `jti` values. It responds
//! to `POST /authorize` with 200 for a valid token, 401 for a missing or invalid one, and 403 for
//! a revoked one. The signing key comes from a one-key JWKS that Envoy's `jwt_authn` filter can
//! read as well.
//!
//! ```no_run
//! let jwks = std::fs::read_to_string("envoy-configs/demo-jwks.json").unwrap();
//! let key = authz_service::Key::from_jwks_json(&jwks).unwrap();
//! let server = authz_service::serve("127.0.0.1:0", key, 64).unwrap();
//! println!("listening on {}", server.local_addr());
//! ```

mod api;
mod connection;
mod http;
mod jwt;
mod key;
mod revocation;
mod server;

pub use api::{DEFAULT_SUBJECT, DEFAULT_TTL_SECS, MAX_TTL_SECS};
pub use jwt::{issue_token, sign_hs256, verify, Claims, VerifyError};
pub use key::{Key, MIN_SECRET_BYTES};
pub use revocation::{RevocationList, PURGE_INTERVAL_SECS};
pub use server::{serve, unix_now_secs, Server, MAX_BODY_BYTES};

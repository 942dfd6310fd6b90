//! Harness for the end-to-end tests and the demo: real Envoy, the reference authorization
//! service, a test upstream, and an HTTP client that sends exact bytes. Every server listens on
//! 127.0.0.1 on a port the kernel picks, and is stopped by PID when its guard drops.

pub mod check;
pub mod envoy;
pub mod http;
pub mod process;
pub mod stack;

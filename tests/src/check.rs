//! Steps and assertions shared by the end-to-end test files.

use crate::envoy::AUTHZ_CLUSTER;
use crate::http::{Request, Response};
use crate::stack::Stack;

/// Sends `request` through the stack's Envoy; a failure shows the end of Envoy's log.
pub fn send(stack: &Stack, request: Request) -> Response {
    request
        .send(stack.envoy.port)
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", stack.envoy.log_tail()))
}

/// Asserts the response status, showing the body when it differs.
pub fn assert_status(response: &Response, expected: u16, case: &str) {
    assert_eq!(
        response.status,
        expected,
        "{case}: expected {expected}, got {} with body {}",
        response.status,
        response.body_text()
    );
}

/// Returns how many callouts Envoy sent to the authorization cluster.
pub fn authz_requests(stack: &Stack) -> u64 {
    stack
        .envoy
        .stat(&format!("cluster.{AUTHZ_CLUSTER}.upstream_rq_total"))
        .unwrap()
}

/// Defines one `#[test]` per target for each scenario `fn scenario(target: Target)`.
#[macro_export]
macro_rules! per_target {
    ($($scenario:ident),* $(,)?) => {
        mod wasm {
            $(#[test] fn $scenario() { super::$scenario($crate::envoy::Target::Wasm) })*
        }
        mod dynamic_module {
            $(#[test] fn $scenario() { super::$scenario($crate::envoy::Target::DynamicModule) })*
        }
    };
}

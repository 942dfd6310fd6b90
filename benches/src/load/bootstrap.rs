//! The Envoy bootstraps of the load test, as JSON, which Envoy reads like YAML.
//!
//! Every address is 127.0.0.1 and every port the bootstraps bind is 0, so the kernel picks free
//! ports. The load test reads them back from the admin endpoint.

use std::path::Path;

use serde_json::{json, Value};

use super::{Variant, CACHED_TTL_MS};

/// Listener names of the stand-in Envoy.
pub const STANDIN_AUTHZ_LISTENER: &str = "authz";
pub const STANDIN_UPSTREAM_LISTENER: &str = "upstream";

/// Body of the stand-in upstream's 200 response.
pub const UPSTREAM_BODY: &str = "hello from the upstream\n";

/// Callout timeout of every authorization client, in milliseconds, as in `envoy-configs/`.
const AUTHZ_TIMEOUT_MS: u32 = 2000;

fn loopback_address(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        }
    })
}

fn listener(name: &str, routes: Value, http_filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": loopback_address(0),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "route_config": {
                        "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]
                    },
                    "http_filters": http_filters
                }
            }]
        }]
    })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": loopback_address(port)}}]}]
        }
    })
}

fn admin() -> Value {
    json!({"address": loopback_address(0)})
}

/// Returns the stand-in Envoy. One listener responds to every request with a 200 and no body
/// (the authorization service), the other with a 200 and [`UPSTREAM_BODY`] (the upstream).
pub fn standin() -> Value {
    let authz_routes = json!([{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]);
    let upstream_routes = json!([{
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}}
    }]);
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [
                listener(STANDIN_AUTHZ_LISTENER, authz_routes, vec![router()]),
                listener(STANDIN_UPSTREAM_LISTENER, upstream_routes, vec![router()]),
            ]
        }
    })
}

/// Locations of the upstream, the authorization service and the filters for the Envoy under
/// test.
#[derive(Debug, Clone)]
pub struct Targets<'a> {
    pub upstream_port: u16,
    pub authz_port: u16,
    pub wasm: &'a Path,
    /// Name of the dynamic module, which Envoy looks up as `lib<name>.so` in
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub module_name: &'a str,
    /// Sends the callouts over HTTP/2 instead of HTTP/1.1.
    pub authz_http2: bool,
}

/// Returns the name of the authorization cluster of `variant`. Each variant has its own cluster,
/// all to the same address, so the cluster's counters count that variant's callouts alone.
pub fn authz_cluster(variant: Variant) -> String {
    format!("authz-{}", variant.name())
}

/// Returns the JSON configuration of the jwt-revocation filter for `variant`'s cluster.
fn filter_config(variant: Variant) -> String {
    let mut config = json!({
        "cluster": authz_cluster(variant),
        "authorizeUrl": "/authorize",
        "timeout": AUTHZ_TIMEOUT_MS
    });
    if variant.is_cached() {
        config["cache"] = json!({"ttl": CACHED_TTL_MS});
    }
    config.to_string()
}

/// Returns the HTTP filters of `variant`, before the router.
fn variant_filters(variant: Variant, targets: &Targets) -> Vec<Value> {
    match variant {
        Variant::Passthrough => Vec::new(),
        Variant::ExtAuthz => vec![json!({
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "failure_mode_allow": false,
                // Envoy always forwards Authorization; listing it states the one header the
                // service needs.
                "allowed_headers": {"patterns": [{"exact": "authorization"}]},
                "http_service": {
                    "server_uri": {
                        "uri": format!("http://{}", authz_cluster(variant)),
                        "cluster": authz_cluster(variant),
                        "timeout": format!("{}s", f64::from(AUTHZ_TIMEOUT_MS) / 1000.0)
                    },
                    "path_prefix": "/authorize"
                }
            }
        })],
        Variant::Wasm | Variant::WasmCached => vec![json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "jwt_revocation",
                    "root_id": "jwt_revocation",
                    "failure_policy": "FAIL_CLOSED",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": filter_config(variant)
                    },
                    "vm_config": {
                        // Its own VM per variant, as each WasmPlugin of Istio would get.
                        "vm_id": variant.name(),
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": targets.wasm}}
                    }
                }
            }
        })],
        Variant::DynamicModule | Variant::DynamicModuleCached => vec![json!({
            "name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": targets.module_name},
                "filter_name": "jwt_revocation",
                "filter_config": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter_config(variant)
                }
            }
        })],
    }
}

/// Returns the Envoy under test: one listener per variant, each named after it, all routed to
/// the same upstream.
pub fn under_test(variants: &[Variant], targets: &Targets) -> Value {
    let routes = json!([{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]);
    let listeners: Vec<Value> = variants
        .iter()
        .map(|&variant| {
            let mut filters = variant_filters(variant, targets);
            filters.push(router());
            listener(variant.name(), routes.clone(), filters)
        })
        .collect();
    let mut clusters = vec![static_cluster("upstream", targets.upstream_port)];
    clusters.extend(
        variants
            .iter()
            .filter(|v| v.makes_callouts())
            .map(|&v| {
                let mut cluster = static_cluster(&authz_cluster(v), targets.authz_port);
                if targets.authz_http2 {
                    cluster["typed_extension_protocol_options"] = json!({
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}}
                        }
                    });
                }
                cluster
            }),
    );
    json!({
        "admin": admin(),
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
}

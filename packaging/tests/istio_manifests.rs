//! Checks of the Istio manifests in `envoy-configs/istio/`: Istio resources against the CRD
//! schemas of Istio, and the settings the jwt-revocation filter depends on.
//!
//! The schema tests read Istio's CustomResourceDefinitions from the file that [`crds`] names.
//! When that file is absent, they report a skip and pass.

mod common;
mod crd_schema;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use common::{report_skip, workspace_root};
use crd_schema::{parse_yaml_documents, validate, CrdSchemas};

/// Envoy cluster that Istio creates for port 8080 of the Service `authz` in the namespace
/// `jwt-revocation`.
const AUTHZ_CLUSTER: &str = "outbound|8080||authz.jwt-revocation.svc.cluster.local";

/// Keys of the filter's configuration JSON.
const PLUGIN_CONFIG_KEYS: [&str; 4] = ["cluster", "authorizeUrl", "timeout", "authority"];

/// A named change that makes a manifest invalid.
type Mutation = (&'static str, fn(&mut Value));

/// One YAML document of a manifest file.
struct Document {
    /// Path relative to `envoy-configs/istio/`.
    file: String,
    value: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    fn is_istio(&self) -> bool {
        let group = self.api_version().split('/').next().unwrap_or_default();
        group.ends_with(".istio.io")
    }

    fn label(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

fn manifest_dir() -> PathBuf {
    workspace_root().join("envoy-configs").join("istio")
}

fn yaml_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("read dir entry").path();
        if path.is_dir() {
            yaml_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
}

/// Parses every document of every `.yaml` file under `envoy-configs/istio/`.
fn documents() -> Vec<Document> {
    let root = manifest_dir();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();

    let mut documents = Vec::new();
    for path in files {
        let text = fs::read_to_string(&path).expect("read manifest");
        let file = path
            .strip_prefix(&root)
            .expect("manifest under root")
            .display()
            .to_string();
        let values = parse_yaml_documents(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for value in values {
            documents.push(Document {
                file: file.clone(),
                value,
            });
        }
    }
    documents
}

/// Returns the only document of `kind`, and fails when there are none or several.
fn only(documents: &[Document], kind: &str) -> Value {
    let matches: Vec<&Document> = documents.iter().filter(|d| d.kind() == kind).collect();
    assert_eq!(matches.len(), 1, "expected exactly one {kind}");
    matches[0].value.clone()
}

/// Returns the only document of `kind` in `namespace`, and fails when there are none or
/// several.
fn only_in(documents: &[Document], kind: &str, namespace: &str) -> Value {
    let matches: Vec<&Document> = documents
        .iter()
        .filter(|d| d.kind() == kind && d.namespace() == namespace)
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "expected exactly one {kind} in {namespace}"
    );
    matches[0].value.clone()
}

/// Returns the namespace of the Service that [`AUTHZ_CLUSTER`] names.
fn authz_namespace() -> &'static str {
    let host = AUTHZ_CLUSTER.rsplit('|').next().unwrap_or_default();
    host.split('.')
        .nth(1)
        .expect("cluster host is NAME.NAMESPACE.svc...")
}

/// Returns the document of `kind` named `name` in `namespace`.
fn find<'a>(documents: &'a [Document], kind: &str, namespace: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d.kind() == kind && d.namespace() == namespace && d.name() == name)
        .map(|d| &d.value)
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {namespace}/{name} in {}",
                manifest_dir().display()
            )
        })
}

/// Loads the Istio CRD schemas once, or reports the skip of `test` and returns `None` when the
/// CRD file is absent.
fn crds(test: &str) -> Option<&'static CrdSchemas> {
    static CRDS: OnceLock<Option<CrdSchemas>> = OnceLock::new();
    let path = workspace_root().join("../shared/istio/crds.yaml");
    let crds = CRDS.get_or_init(|| {
        path.is_file()
            .then(|| CrdSchemas::load(&path).unwrap_or_else(|e| panic!("{e}")))
    });
    if crds.is_none() {
        report_skip(
            test,
            &format!("Istio CRD schemas not found at {}", path.display()),
        );
    }
    crds.as_ref()
}

fn wasm_plugin_schema(crds: &CrdSchemas) -> &Value {
    crds.schema("extensions.istio.io/v1alpha1", "WasmPlugin")
        .expect("CRD file defines WasmPlugin v1alpha1")
}

#[test]
fn istio_resources_match_crd_schemas() {
    let Some(crds) = crds("istio_resources_match_crd_schemas") else {
        return;
    };

    let mut failures = Vec::new();
    let mut validated = BTreeSet::new();
    for document in documents().iter().filter(|d| d.is_istio()) {
        let Some(schema) = crds.schema(document.api_version(), document.kind()) else {
            failures.push(format!(
                "{}: no served CRD version defines {}",
                document.label(),
                document.api_version()
            ));
            continue;
        };
        for error in validate(schema, &document.value) {
            failures.push(format!("{}: {error}", document.label()));
        }
        validated.insert(document.kind().to_owned());
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let expected = [
        "AuthorizationPolicy",
        "DestinationRule",
        "RequestAuthentication",
        "ServiceEntry",
        "WasmPlugin",
    ];
    assert_eq!(validated, expected.map(str::to_owned).into());
}

#[test]
fn crd_schema_rejects_invalid_wasmplugin() {
    let Some(crds) = crds("crd_schema_rejects_invalid_wasmplugin") else {
        return;
    };
    let schema = wasm_plugin_schema(crds);
    let plugin = only(&documents(), "WasmPlugin");
    assert!(validate(schema, &plugin).is_empty(), "unchanged plugin");

    let cases: [Mutation; 8] = [
        ("unknown phase", |p| p["spec"]["phase"] = json!("AUTHORIZE")),
        ("misspelled field", |p| {
            p["spec"]["failStratgy"] = json!("FAIL_CLOSE")
        }),
        ("sha256 with prefix", |p| {
            p["spec"]["sha256"] = json!(format!("sha256:{}", "0".repeat(64)))
        }),
        ("priority as string", |p| {
            p["spec"]["priority"] = json!("high")
        }),
        ("empty url", |p| p["spec"]["url"] = json!("")),
        ("missing url", |p| {
            p["spec"].as_object_mut().unwrap().remove("url");
        }),
        ("missing name", |p| {
            p["metadata"].as_object_mut().unwrap().remove("name");
        }),
        ("upper-case name", |p| p["metadata"]["name"] = json!("JWT")),
    ];
    for (case, mutate) in cases {
        let mut invalid = plugin.clone();
        mutate(&mut invalid);
        assert!(
            !validate(schema, &invalid).is_empty(),
            "{case}: the schema accepted {invalid}"
        );
    }
}

#[test]
fn crd_schema_accepts_kubernetes_extensions() {
    let Some(crds) = crds("crd_schema_accepts_kubernetes_extensions") else {
        return;
    };
    let schema = wasm_plugin_schema(crds);
    let mut plugin = only(&documents(), "WasmPlugin");
    // pluginConfig preserves unknown fields, and priority is nullable.
    plugin["spec"]["pluginConfig"]["nested"] = json!({"list": [1, "two", {"three": 3}]});
    plugin["spec"]["priority"] = Value::Null;

    // status.observedGeneration is an int-or-string.
    for generation in [json!(3), json!("3")] {
        plugin["status"] = json!({"observedGeneration": generation});
        let errors = validate(schema, &plugin);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[test]
fn wasmplugin_runs_in_authz_phase() {
    let plugin = only(&documents(), "WasmPlugin");

    assert_eq!(
        plugin["spec"]["phase"], "AUTHZ",
        "the filter must run after Istio's jwt_authn filter, which AUTHN would precede"
    );
}

#[test]
fn wasmplugin_fails_closed() {
    let plugin = only(&documents(), "WasmPlugin");
    let strategy = &plugin["spec"]["failStrategy"];

    assert_ne!(
        strategy, "FAIL_OPEN",
        "FAIL_OPEN lets requests through unchecked"
    );
    assert_eq!(
        strategy, "FAIL_CLOSE",
        "failStrategy must be set explicitly"
    );
}

#[test]
fn wasmplugin_pulls_oci_image() {
    let plugin = only(&documents(), "WasmPlugin");
    let url = plugin["spec"]["url"].as_str().expect("url is a string");

    // Istio's CRD also checks the scheme, with a CEL rule that this test cannot evaluate.
    let reference = url.strip_prefix("oci://").expect("url uses oci://");
    let last = reference.rsplit('/').next().unwrap_or_default();
    assert!(
        last.contains(':') || last.contains('@'),
        "url {url} must name a tag or digest"
    );
    assert_eq!(plugin["spec"]["type"], "HTTP");
}

#[test]
fn plugin_config_has_filter_keys() {
    let plugin = only(&documents(), "WasmPlugin");
    let config = plugin["spec"]["pluginConfig"]
        .as_object()
        .expect("pluginConfig is an object");

    for key in config.keys() {
        assert!(
            PLUGIN_CONFIG_KEYS.contains(&key.as_str()),
            "pluginConfig key {key:?} is not a filter setting"
        );
    }
    assert_eq!(config["cluster"], AUTHZ_CLUSTER);
    assert_eq!(config["authorizeUrl"], "/authorize");
    let timeout = config["timeout"].as_u64().expect("timeout is an integer");
    assert!(timeout > 0, "timeout must be positive");
}

#[test]
fn plugin_cluster_is_authz_service() {
    let documents = documents();
    let fields: Vec<&str> = AUTHZ_CLUSTER.split('|').collect();
    let [direction, port, subset, host] = fields[..] else {
        panic!("{AUTHZ_CLUSTER} is not outbound|PORT|SUBSET|HOST");
    };
    let port: u64 = port.parse().expect("cluster port is a number");
    let (service_name, rest) = host.split_once('.').expect("host is NAME.NAMESPACE.svc...");
    let (namespace, suffix) = rest.split_once('.').expect("host is NAME.NAMESPACE.svc...");
    assert_eq!(direction, "outbound");
    assert_eq!(subset, "");
    assert_eq!(suffix, "svc.cluster.local");

    let service = find(&documents, "Service", namespace, service_name);
    let service_port = service["spec"]["ports"]
        .as_array()
        .expect("Service has ports")
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("Service {service_name} has no port {port}"));

    let deployment = find(&documents, "Deployment", namespace, service_name);
    let pod = &deployment["spec"]["template"];
    let selector = service["spec"]["selector"].as_object().expect("selector");
    for (key, value) in selector {
        assert_eq!(&pod["metadata"]["labels"][key], value, "pod label {key}");
    }
    let target = &service_port["targetPort"];
    let container_ports = pod["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("container ports");
    assert!(
        container_ports.iter().any(|p| &p["name"] == target),
        "no container port named {target}"
    );
}

#[test]
fn gateway_resources_select_plugin_workload() {
    let documents = documents();
    let plugin = only(&documents, "WasmPlugin");

    let namespace = plugin["metadata"]["namespace"].as_str().expect("namespace");

    for kind in ["RequestAuthentication", "AuthorizationPolicy"] {
        let policy = only_in(&documents, kind, namespace);
        assert_eq!(
            policy["metadata"]["namespace"], plugin["metadata"]["namespace"],
            "{kind} namespace"
        );
        assert_eq!(
            policy["spec"]["selector"], plugin["spec"]["selector"],
            "{kind} selector"
        );
    }
}

#[test]
fn request_authentication_forwards_token() {
    let authentication = only(&documents(), "RequestAuthentication");
    let rules = authentication["spec"]["jwtRules"]
        .as_array()
        .expect("jwtRules");
    assert!(!rules.is_empty());

    for rule in rules {
        assert_eq!(
            rule["forwardOriginalToken"], true,
            "jwt_authn removes the Authorization header unless forwardOriginalToken is true"
        );
        // The filter checks only the Authorization header, so Istio must take the token from
        // there alone: an access_token query parameter would be verified but never checked for
        // revocation.
        assert_eq!(
            rule["fromHeaders"],
            serde_json::json!([{"name": "Authorization", "prefix": "Bearer "}]),
            "the token must come from the Authorization header only"
        );
        assert!(
            rule.get("fromParams").is_none(),
            "no query parameter may carry the token"
        );
        assert!(
            rule.get("fromCookies").is_none(),
            "no cookie may carry the token"
        );
        let key_sources = ["jwks", "jwksUri", "jwks_uri"]
            .iter()
            .filter(|key| rule.get(**key).is_some())
            .count();
        assert_eq!(key_sources, 1, "exactly one of jwks and jwksUri");
        if let Some(uri) = rule["jwksUri"].as_str() {
            assert!(uri.starts_with("https://") || uri.starts_with("http://"));
        }
    }
}

#[test]
fn gateway_policy_requires_principal() {
    let documents = documents();
    let plugin = only(&documents, "WasmPlugin");
    let namespace = plugin["metadata"]["namespace"].as_str().expect("namespace");
    let policy = only_in(&documents, "AuthorizationPolicy", namespace);

    assert_eq!(policy["spec"]["action"], "DENY");
    assert_eq!(
        policy["spec"]["rules"][0]["from"][0]["source"]["notRequestPrincipals"],
        json!(["*"])
    );
}

#[test]
fn authz_policy_admits_gateway_callout() {
    let documents = documents();
    let plugin = only(&documents, "WasmPlugin");
    let gateway_namespace = plugin["metadata"]["namespace"].as_str().expect("namespace");
    let authorize_url = &plugin["spec"]["pluginConfig"]["authorizeUrl"];
    let policy = only_in(&documents, "AuthorizationPolicy", authz_namespace());
    let rules = policy["spec"]["rules"].as_array().expect("rules");

    assert_eq!(policy["spec"]["action"], "ALLOW");
    let gateway_prefix = format!("cluster.local/ns/{gateway_namespace}/sa/");
    let from_gateway = |rule: &Value| {
        let principals = rule["from"][0]["source"]["principals"].as_array();
        principals
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|principal| principal.starts_with(&gateway_prefix))
    };
    let to_authorize = |rule: &Value| {
        let operation = &rule["to"][0]["operation"];
        let mut paths = operation["paths"].as_array().into_iter().flatten();
        operation["methods"] == json!(["POST"]) && paths.any(|path| path == authorize_url)
    };
    let admits_callout = rules
        .iter()
        .any(|rule| from_gateway(rule) && to_authorize(rule));
    assert!(
        admits_callout,
        "no rule allows POST {authorize_url} from the gateway"
    );
}

#[test]
fn authz_policy_limits_token_routes() {
    let documents = documents();
    let policy = only_in(&documents, "AuthorizationPolicy", authz_namespace());

    for rule in policy["spec"]["rules"].as_array().expect("rules") {
        let paths = rule["to"][0]["operation"]["paths"]
            .as_array()
            .expect("paths");
        let issues_or_revokes = paths.iter().any(|p| p == "/tokens" || p == "/revoke");
        if issues_or_revokes {
            assert_eq!(
                rule["from"][0]["source"]["namespaces"],
                json!([authz_namespace()]),
                "POST /tokens and /revoke must stay within the service's namespace"
            );
        }
    }
}

#[test]
fn istio_resources_use_one_workload_selector() {
    // Istio's CRDs state this with a CEL rule, which the schema test does not evaluate.
    for document in documents().iter().filter(|d| d.is_istio()) {
        let set = ["selector", "targetRef", "targetRefs"]
            .iter()
            .filter(|key| document.value["spec"].get(**key).is_some())
            .count();
        assert!(
            set <= 1,
            "{}: more than one of selector, targetRef, targetRefs",
            document.label()
        );
    }
}

#[test]
fn external_destination_rule_originates_tls() {
    let documents = documents();
    let entry = only(&documents, "ServiceEntry");
    let rule = only(&documents, "DestinationRule");
    let host = &rule["spec"]["host"];
    let port = &entry["spec"]["ports"][0];

    assert!(
        entry["spec"]["hosts"].as_array().unwrap().contains(host),
        "DestinationRule host {host} is not a ServiceEntry host"
    );
    assert_eq!(port["protocol"], "HTTP");
    let settings = &rule["spec"]["trafficPolicy"]["portLevelSettings"][0];
    assert_eq!(settings["port"]["number"], port["number"]);
    assert_eq!(settings["tls"]["mode"], "SIMPLE");
    assert_eq!(&settings["tls"]["sni"], host);
}

#[test]
fn core_resources_have_identity() {
    let allowed = [
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
    ];
    let documents = documents();
    let core: Vec<&Document> = documents.iter().filter(|d| !d.is_istio()).collect();
    assert!(!core.is_empty());

    for document in core {
        let label = document.label();
        assert!(
            allowed.contains(&(document.api_version(), document.kind())),
            "{label}: unexpected apiVersion {:?}",
            document.api_version()
        );
        assert!(
            !document.name().is_empty(),
            "{label}: metadata.name is missing"
        );
    }
}

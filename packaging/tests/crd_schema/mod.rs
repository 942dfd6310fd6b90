//! Validation of Kubernetes custom resources against the `openAPIV3Schema` of their
//! CustomResourceDefinition, as a JSON Schema draft 4 validator.
//!
//! A CRD schema is a Kubernetes structural schema, which differs from JSON Schema in a few
//! ways that [`to_json_schema`] translates:
//!
//! - An object schema without `additionalProperties` or `x-kubernetes-preserve-unknown-fields`
//!   allows only its listed `properties`. The API server drops other fields, or rejects them
//!   when `kubectl apply` runs with `--validate=strict`, its default, so a misspelled field is
//!   an error here.
//! - `x-kubernetes-preserve-unknown-fields: true` allows any fields.
//! - `x-kubernetes-int-or-string: true` allows an integer or a string.
//! - `nullable: true` also allows `null`.
//! - `format: int32` becomes a range check. Other OpenAPI number formats are dropped.
//! - `apiVersion`, `kind` and `metadata` are implicit at the root and are added.
//!
//! NOTE: `x-kubernetes-validations` rules are CEL expressions and are not evaluated. Tests
//! check the rules that matter for this repository's manifests by hand.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Parses every YAML document in `text`, skipping empty documents.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| e.to_string())?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The JSON Schemas of every served version of every CRD in a file, keyed by
/// (`apiVersion`, `kind`).
pub struct CrdSchemas {
    schemas: HashMap<(String, String), Value>,
}

impl CrdSchemas {
    /// Loads the CRDs in the multi-document YAML file at `path`.
    pub fn load(path: &Path) -> Result<CrdSchemas, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let documents =
            parse_yaml_documents(&text).map_err(|e| format!("{}: {e}", path.display()))?;

        let mut schemas = HashMap::new();
        for crd in documents
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            let versions = crd["spec"]["versions"].as_array().into_iter().flatten();
            for version in versions.filter(|v| v["served"] == true) {
                let name = version["name"].as_str().unwrap_or_default();
                let schema = &version["schema"]["openAPIV3Schema"];
                if schema.is_object() {
                    let key = (format!("{group}/{name}"), kind.to_owned());
                    schemas.insert(key, to_json_schema(schema));
                }
            }
        }
        Ok(CrdSchemas { schemas })
    }

    /// Returns the JSON Schema for `api_version` and `kind`, if a served CRD version defines
    /// it.
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.schemas.get(&(api_version.to_owned(), kind.to_owned()))
    }
}

/// Validates `instance` against the JSON Schema `schema` and returns one line per error, with
/// the JSON pointer of the invalid value.
pub fn validate(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(schema)
        .expect("a converted CRD schema is a valid JSON Schema");
    validator
        .iter_errors(instance)
        .map(|error| format!("at \"{}\": {error}", error.instance_path()))
        .collect()
}

/// Translates a CRD `openAPIV3Schema` into a JSON Schema draft 4 document, as described in the
/// module documentation.
pub fn to_json_schema(openapi: &Value) -> Value {
    let mut schema = openapi.clone();
    convert_node(&mut schema);

    let root = schema
        .as_object_mut()
        .expect("openAPIV3Schema is an object");
    let properties = root
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("properties is an object");
    properties.insert(
        "apiVersion".into(),
        json!({"type": "string", "minLength": 1}),
    );
    properties.insert("kind".into(), json!({"type": "string", "minLength": 1}));
    properties.insert("metadata".into(), object_meta_schema());

    let required = root.entry("required").or_insert_with(|| json!([]));
    let required = required.as_array_mut().expect("required is an array");
    for name in ["apiVersion", "kind", "metadata"] {
        required.push(json!(name));
    }
    schema
}

/// Returns a schema for the `ObjectMeta` fields that manifests set. It allows other metadata
/// fields.
fn object_meta_schema() -> Value {
    // RFC 1123 subdomain for names and label for namespaces, as Kubernetes validates them.
    let subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let label = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 253, "pattern": subdomain},
            "namespace": {"type": "string", "maxLength": 63, "pattern": label},
            "labels": string_map,
            "annotations": string_map,
        },
    })
}

fn convert_node(node: &mut Value) {
    let Some(map) = node.as_object_mut() else {
        return;
    };

    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(convert_node);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child @ Value::Object(_)) = map.get_mut(key) {
            convert_node(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            children.iter_mut().for_each(convert_node);
        }
    }

    map.remove("x-kubernetes-validations");
    convert_int_or_string(map);
    convert_nullable(map);
    convert_format(map);
    close_object(map);
}

fn convert_int_or_string(map: &mut Map<String, Value>) {
    if map.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true))
        && !map.contains_key("anyOf")
    {
        map.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
}

fn convert_nullable(map: &mut Map<String, Value>) {
    if map.remove("nullable") != Some(Value::Bool(true)) {
        return;
    }
    if let Some(Value::String(kind)) = map.get("type") {
        let kind = kind.clone();
        map.insert("type".into(), json!([kind, "null"]));
    }
}

fn convert_format(map: &mut Map<String, Value>) {
    let Some(Value::String(format)) = map.get("format") else {
        return;
    };
    match format.as_str() {
        "int32" => {
            map.entry("minimum").or_insert(json!(i32::MIN));
            map.entry("maximum").or_insert(json!(i32::MAX));
            map.remove("format");
        }
        // Formats that JSON Schema draft 4 defines and checks.
        "date-time" | "email" | "hostname" | "ipv4" | "ipv6" | "uri" => {}
        // OpenAPI-only formats (int64, float, double, byte, ...) that need no extra check here.
        _ => {
            map.remove("format");
        }
    }
}

/// Makes an object schema reject fields it does not list, unless it preserves unknown fields
/// or already sets `additionalProperties`.
fn close_object(map: &mut Map<String, Value>) {
    let preserves = map.remove("x-kubernetes-preserve-unknown-fields") == Some(Value::Bool(true));
    let is_object = match map.get("type") {
        Some(Value::String(kind)) => kind == "object",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "object"),
        _ => false,
    };
    if is_object && !preserves && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(openapi: Value, instance: Value) -> Vec<String> {
        let mut schema = openapi;
        convert_node(&mut schema);
        validate(&schema, &instance)
    }

    #[test]
    fn object_rejects_unlisted_field() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});

        assert!(errors(schema.clone(), json!({"a": "x"})).is_empty());
        assert_eq!(errors(schema, json!({"b": "x"})).len(), 1);
    }

    #[test]
    fn preserve_unknown_fields_allows_any_field() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});

        assert!(errors(schema, json!({"b": {"c": [1, 2]}})).is_empty());
    }

    #[test]
    fn int_or_string_allows_both() {
        let schema = json!({"x-kubernetes-int-or-string": true});

        assert!(errors(schema.clone(), json!(3)).is_empty());
        assert!(errors(schema.clone(), json!("3")).is_empty());
        assert!(!errors(schema, json!(true)).is_empty());
    }

    #[test]
    fn nullable_allows_null() {
        let schema = json!({"type": "integer", "nullable": true});

        assert!(errors(schema.clone(), Value::Null).is_empty());
        assert!(!errors(schema, json!("x")).is_empty());
    }

    #[test]
    fn int32_format_bounds_value() {
        let schema = json!({"type": "integer", "format": "int32"});

        assert!(errors(schema.clone(), json!(i32::MAX)).is_empty());
        assert!(!errors(schema, json!(i64::from(i32::MAX) + 1)).is_empty());
    }
}

//! End-to-end test of the OCI image: build the layout, push it with skopeo to a real
//! `docker-registry` on 127.0.0.1, and pull it back over the registry API v2 the way Istio's
//! agent does.
//!
//! Needs the Debian packages `docker-registry` and `skopeo`; without them the test reports
//! that it was skipped and passes.

mod common;
mod registry;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use packaging::{Digest, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, PLUGIN_FILE_NAME};
use serde_json::Value;

use common::{build_layout, find_program, plugin_wasm, report_skip};
use registry::Registry;

const REPOSITORY: &str = "jwt-revocation";
const TAG: &str = "e2e";

/// Trust policy for skopeo that accepts unsigned images, so the test does not depend on
/// `/etc/containers/policy.json`.
const ACCEPT_ANYTHING_POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

#[test]
fn image_survives_registry_round_trip() {
    let Some((registry_binary, skopeo)) = required_programs("image_survives_registry_round_trip")
    else {
        return;
    };

    let temp = tempfile::tempdir().expect("create temp dir");
    let wasm = plugin_wasm(temp.path());
    println!("packaging {}", wasm.source);

    let layout = temp.path().join("oci");
    let digest = build_layout(&wasm.path, &layout, TAG);

    let registry_dir = temp.path().join("registry");
    fs::create_dir(&registry_dir).expect("create registry dir");
    let registry = Registry::start(&registry_binary, &registry_dir);
    push(&skopeo, &layout, &registry, temp.path());

    // Step 1, as Istio's agent: GET the manifest by tag and take its digest.
    let manifest = registry.get_manifest(REPOSITORY, TAG);
    assert_eq!(manifest.status, 200, "GET manifest by tag");
    assert_eq!(manifest.digest().to_string(), digest);
    assert_eq!(
        manifest.docker_content_digest.as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(manifest.content_type.as_deref(), Some(MANIFEST_MEDIA_TYPE));

    let by_digest = registry.get_manifest(REPOSITORY, &digest);
    assert_eq!(by_digest.status, 200, "GET manifest by digest");
    assert_eq!(by_digest.body, manifest.body);

    // Step 2: the last layer must be a compat-variant tar+gzip layer.
    let manifest: Value = serde_json::from_slice(&manifest.body).expect("manifest is JSON");
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().expect("manifest has layers");
    assert_eq!(layers.len(), 1);
    let layer = layers.last().expect("one layer");
    assert_eq!(layer["mediaType"], LAYER_MEDIA_TYPE);

    // Step 3: GET the config and layer blobs and check them against their descriptors.
    let config = fetch_verified(&registry, &manifest["config"]);
    let layer_blob = fetch_verified(&registry, layer);
    let tar = gunzip(&layer_blob);
    let config: Value = serde_json::from_slice(&config).expect("config is JSON");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        Digest::of(&tar).to_string(),
        "config diff_id must be the digest of the uncompressed layer"
    );

    // Step 4: extract plugin.wasm as Istio does, by the base name of the tar entry.
    let plugin = extract_plugin(&tar);
    assert!(
        plugin.starts_with(b"\0asm"),
        "plugin.wasm lacks the Wasm magic bytes"
    );
    assert_eq!(plugin.len(), wasm.bytes.len());
    assert!(
        plugin == wasm.bytes,
        "plugin.wasm differs from {}",
        wasm.path.display()
    );
}

/// Returns the paths of `docker-registry` and `skopeo`, or reports the skip and returns `None`
/// when either is not installed.
fn required_programs(test: &str) -> Option<(PathBuf, PathBuf)> {
    let registry = find_program("docker-registry");
    let skopeo = find_program("skopeo");
    match (registry, skopeo) {
        (Some(registry), Some(skopeo)) => Some((registry, skopeo)),
        (registry, skopeo) => {
            let missing: Vec<&str> = [("docker-registry", registry), ("skopeo", skopeo)]
                .into_iter()
                .filter(|(_, path)| path.is_none())
                .map(|(name, _)| name)
                .collect();
            report_skip(
                test,
                &format!(
                    "{} not found in PATH; install the Debian packages docker-registry and skopeo",
                    missing.join(" and ")
                ),
            );
            None
        }
    }
}

/// Pushes the layout with `skopeo copy`, using a trust policy, registries.conf and
/// registries.d from `scratch` so that no system or user configuration adds mirrors or
/// credentials.
fn push(skopeo: &Path, layout: &Path, registry: &Registry, scratch: &Path) {
    let policy = scratch.join("policy.json");
    let registries_conf = scratch.join("registries.conf");
    let registries_d = scratch.join("registries.d");
    fs::write(&policy, ACCEPT_ANYTHING_POLICY).expect("write skopeo policy");
    fs::write(&registries_conf, "").expect("write registries.conf");
    fs::create_dir(&registries_d).expect("create registries.d");

    let source = format!("oci:{}:{TAG}", layout.display());
    let destination = format!("docker://{}/{REPOSITORY}:{TAG}", registry.host());
    let output = Command::new(skopeo)
        .env("CONTAINERS_REGISTRIES_CONF", &registries_conf)
        .arg("--policy")
        .arg(&policy)
        .arg("--registries.d")
        .arg(&registries_d)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            "--preserve-digests",
        ])
        .arg(&source)
        .arg(&destination)
        .output()
        .expect("run skopeo");

    assert!(
        output.status.success(),
        "skopeo copy {source} {destination} failed with {}:\n{}{}\nregistry log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        registry.log()
    );
}

/// Fetches the blob that `descriptor` names and checks its digest and size.
fn fetch_verified(registry: &Registry, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"]
        .as_str()
        .expect("descriptor has a digest");
    let size = descriptor["size"].as_u64().expect("descriptor has a size");

    let blob = registry.get_blob(REPOSITORY, digest);
    assert_eq!(blob.status, 200, "GET blob {digest}");
    assert_eq!(blob.digest().to_string(), digest, "blob content digest");
    assert_eq!(blob.body.len() as u64, size, "blob {digest} size");
    blob.body
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut tar)
        .expect("layer is gzip");
    tar
}

/// Returns the first tar entry whose base name is `plugin.wasm`, as Istio's agent selects it.
fn extract_plugin(tar: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().expect("layer is a tar archive") {
        let mut entry = entry.expect("read tar entry");
        let path = entry.path().expect("tar entry path").into_owned();
        if path.file_name().and_then(|name| name.to_str()) == Some(PLUGIN_FILE_NAME) {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).expect("read plugin.wasm");
            return contents;
        }
    }
    panic!("layer has no {PLUGIN_FILE_NAME}");
}

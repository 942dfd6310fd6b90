//! Reproducibility and command-line behaviour of the `oci-image` binary.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use common::{build_layout, plugin_wasm, run_oci_image};

const TAG: &str = "0.1.0";

/// Reads every file under `root` into a map from relative path to contents.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read layout dir") {
            let path = entry.expect("read dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("path under root");
                let contents = fs::read(&path).expect("read layout file");
                files.insert(relative.to_string_lossy().into_owned(), contents);
            }
        }
    }
    files
}

#[test]
fn two_builds_give_same_manifest_digest() {
    let temp = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm(temp.path());
    println!("packaging {}", wasm.source);
    let first_dir = temp.path().join("first");
    let second_dir = temp.path().join("second");

    let first = build_layout(&wasm.path, &first_dir, TAG);
    let second = build_layout(&wasm.path, &second_dir, TAG);

    assert_eq!(first, second);
    assert_eq!(read_tree(&first_dir), read_tree(&second_dir));
}

#[test]
fn rebuild_in_place_gives_same_layout() {
    let temp = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm(temp.path());
    let dir = temp.path().join("oci");

    let first = build_layout(&wasm.path, &dir, TAG);
    let first_tree = read_tree(&dir);
    let second = build_layout(&wasm.path, &dir, TAG);

    assert_eq!(first, second);
    assert_eq!(first_tree, read_tree(&dir));
}

#[test]
fn stdout_is_manifest_digest_from_index() {
    let temp = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm(temp.path());
    let dir = temp.path().join("oci");

    let digest = build_layout(&wasm.path, &dir, TAG);

    let hex = digest
        .strip_prefix("sha256:")
        .expect("digest starts with sha256:");
    assert_eq!(hex.len(), 64);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        TAG
    );
    let manifest = fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(packaging::Digest::of(&manifest).to_string(), digest);
}

#[test]
fn stderr_explains_wasmplugin_sha256() {
    let temp = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm(temp.path());
    let out = temp.path().join("oci");

    let run = run_oci_image(&[
        "--wasm".as_ref(),
        wasm.path.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);

    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("WasmPlugin.spec.sha256"),
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("not against the sha256 of the .wasm file"));
    assert!(
        run.stderr
            .contains(&format!("tag {}", env!("CARGO_PKG_VERSION"))),
        "default tag must be the crate version: {}",
        run.stderr
    );
}

#[test]
fn cli_rejects_file_that_is_not_wasm() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("plugin.so");
    let out = temp.path().join("oci");
    fs::write(&input, b"\x7fELF\x02\x01\x01\0").unwrap();

    let run = run_oci_image(&[
        "--wasm".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);

    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("invalid Wasm module"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(!out.exists());
}

#[test]
fn cli_reports_missing_input_file() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("missing.wasm");
    let out = temp.path().join("oci");

    let run = run_oci_image(&[
        "--wasm".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);

    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("failed to read"), "{}", run.stderr);
    assert!(run.stderr.contains("missing.wasm"), "{}", run.stderr);
}

#[test]
fn cli_rejects_missing_and_unknown_arguments() {
    let cases: [&[&str]; 4] = [
        &[],
        &["--wasm", "plugin.wasm"],
        &["--wasm"],
        &["--wasm", "plugin.wasm", "--out", "oci", "--verbose"],
    ];
    for args in cases {
        let run = run_oci_image(args);
        assert_eq!(run.status.code(), Some(2), "args {args:?}");
        assert!(
            run.stderr.contains("Usage:"),
            "args {args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn cli_rejects_invalid_tag() {
    let temp = tempfile::tempdir().unwrap();
    let wasm = plugin_wasm(temp.path());
    let out = temp.path().join("oci");

    let run = run_oci_image(&[
        "--wasm".as_ref(),
        wasm.path.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--tag".as_ref(),
        "not a tag".as_ref(),
    ]);

    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("invalid tag"), "{}", run.stderr);
}

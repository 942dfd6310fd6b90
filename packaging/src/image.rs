//! The image config, manifest and layout index, serialized to the bytes that their digests
//! cover.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::layer::plugin_layer;
use crate::{
    Digest, Error, CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION, VARIANT_ANNOTATION,
};

/// Platform written to the image config, as Go's `GOARCH` and `GOOS` name the
/// `wasm32-wasip1` target. Istio reads no platform from a single-manifest image.
const ARCHITECTURE: &str = "wasm";
const OS: &str = "wasip1";

/// Maximum tag length in the OCI distribution specification.
const MAX_TAG_LEN: usize = 128;

/// A content-addressed blob of the image.
pub struct Blob {
    pub media_type: &'static str,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type,
            digest: self.digest.to_string(),
            size: self.bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// The compat-variant Wasm image: config, one layer and the manifest that lists them, plus the
/// `index.json` that names the manifest by tag in an OCI image layout.
pub struct Image {
    pub(crate) tag: String,
    pub(crate) config: Blob,
    pub(crate) layer: Blob,
    pub(crate) manifest: Blob,
    pub(crate) index: Vec<u8>,
}

impl Image {
    /// Builds the image for the Wasm module `wasm`, tagged `tag` in the layout index.
    ///
    /// Returns [`Error::InvalidWasm`] when `wasm` is not a version 1 WebAssembly core module and
    /// [`Error::InvalidTag`] when `tag` is not a valid OCI tag.
    pub fn build(wasm: &[u8], tag: &str) -> Result<Image, Error> {
        check_wasm(wasm)?;
        check_tag(tag)?;

        let layer = plugin_layer(wasm).map_err(|e| Error::io(crate::PLUGIN_FILE_NAME, e))?;
        let config = Blob::new(CONFIG_MEDIA_TYPE, to_json(&config_json(layer.diff_id)));
        let layer = Blob::new(LAYER_MEDIA_TYPE, layer.blob);
        let manifest = Blob::new(
            MANIFEST_MEDIA_TYPE,
            to_json(&manifest_json(&config, &layer)),
        );
        let index = to_json(&index_json(&manifest, tag));

        Ok(Image {
            tag: tag.to_owned(),
            config,
            layer,
            manifest,
            index,
        })
    }

    /// Returns the manifest digest, the value Istio compares with `WasmPlugin.spec.sha256`.
    pub fn manifest_digest(&self) -> Digest {
        self.manifest.digest
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn manifest(&self) -> &Blob {
        &self.manifest
    }

    pub fn config(&self) -> &Blob {
        &self.config
    }

    pub fn layer(&self) -> &Blob {
        &self.layer
    }

    /// Writes the image as an OCI image layout directory at `dir`.
    ///
    /// The layout is written to `.<name>.staging` beside `dir` and then renamed to `dir`. An
    /// existing `dir` is replaced only when it is empty or contains an `oci-layout` file, and
    /// [`Error::OutputNotLayout`] is returned otherwise.
    pub fn write_layout(&self, dir: &Path) -> Result<(), Error> {
        crate::layout::write(self, dir)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

/// OCI image config. It has no `created` field, so building twice gives the same bytes.
#[derive(Serialize)]
struct Config {
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

fn config_json(diff_id: Digest) -> Config {
    Config {
        architecture: ARCHITECTURE,
        os: OS,
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![diff_id.to_string()],
        },
    }
}

fn manifest_json(config: &Blob, layer: &Blob) -> Manifest {
    let (key, value) = VARIANT_ANNOTATION;
    Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        config: config.descriptor(),
        layers: vec![layer.descriptor()],
        annotations: BTreeMap::from([(key, value.to_owned())]),
    }
}

fn index_json(manifest: &Blob, tag: &str) -> Index {
    let mut descriptor = manifest.descriptor();
    descriptor
        .annotations
        .insert(REF_NAME_ANNOTATION, tag.to_owned());
    Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE,
        manifests: vec![descriptor],
    }
}

/// Serializes `value` as compact JSON. Struct fields keep their declared order and maps are
/// `BTreeMap`s, so the bytes depend on the values only.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("image JSON has only string keys and plain values")
}

fn check_wasm(wasm: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];

    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(Error::InvalidWasm(
            "the file does not start with the Wasm magic bytes \\0asm".to_owned(),
        ));
    }
    if &wasm[4..8] != CORE_VERSION {
        return Err(Error::InvalidWasm(format!(
            "version bytes are {:02x?}, expected {CORE_VERSION:02x?} for a core module",
            &wasm[4..8]
        )));
    }
    Ok(())
}

/// Checks `tag` against the OCI distribution grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), Error> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));

    if first_ok && rest_ok && tag.len() <= MAX_TAG_LEN {
        Ok(())
    } else {
        Err(Error::InvalidTag(tag.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn parse(blob: &[u8]) -> Value {
        serde_json::from_slice(blob).unwrap()
    }

    #[test]
    fn manifest_lists_config_and_one_layer() {
        let image = Image::build(WASM, "0.1.0").unwrap();
        let manifest = parse(&image.manifest.bytes);

        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(
            manifest["config"]["digest"],
            image.config.digest.to_string()
        );
        assert_eq!(manifest["config"]["size"], image.config.bytes.len());
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(manifest["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(
            manifest["layers"][0]["digest"],
            image.layer.digest.to_string()
        );
        assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
    }

    #[test]
    fn config_has_diff_id_and_no_created_time() {
        let image = Image::build(WASM, "0.1.0").unwrap();
        let config = parse(&image.config.bytes);

        assert_eq!(config["architecture"], ARCHITECTURE);
        assert_eq!(config["os"], OS);
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        assert!(config.get("created").is_none());
    }

    #[test]
    fn index_names_manifest_by_tag() {
        let image = Image::build(WASM, "v1.2.3").unwrap();
        let index = parse(&image.index);
        let entry = &index["manifests"][0];

        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(entry["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(entry["digest"], image.manifest_digest().to_string());
        assert_eq!(entry["size"], image.manifest.bytes.len());
        assert_eq!(entry["annotations"][REF_NAME_ANNOTATION], "v1.2.3");
    }

    #[test]
    fn manifest_digest_is_stable() {
        let first = Image::build(WASM, "0.1.0").unwrap();
        let second = Image::build(WASM, "0.1.0").unwrap();

        assert_eq!(first.manifest_digest(), second.manifest_digest());
    }

    #[test]
    fn manifest_digest_ignores_tag() {
        let first = Image::build(WASM, "0.1.0").unwrap();
        let second = Image::build(WASM, "latest").unwrap();

        assert_eq!(first.manifest_digest(), second.manifest_digest());
    }

    #[test]
    fn manifest_digest_follows_wasm() {
        let other = b"\0asm\x01\0\0\0\0\x05\x04name";
        let first = Image::build(WASM, "0.1.0").unwrap();
        let second = Image::build(other, "0.1.0").unwrap();

        assert_ne!(first.manifest_digest(), second.manifest_digest());
    }

    #[test]
    fn build_rejects_non_wasm() {
        let cases: [&[u8]; 4] = [
            b"",
            b"\0asm",
            b"\x7fELF\x02\x01\x01\0",
            b"\0asm\x0d\0\x01\0", // component model layer, not a core module
        ];
        for input in cases {
            let result = Image::build(input, "0.1.0");
            assert!(
                matches!(result, Err(Error::InvalidWasm(_))),
                "input {input:02x?} was accepted"
            );
        }
    }

    #[test]
    fn build_rejects_invalid_tags() {
        let long = "a".repeat(MAX_TAG_LEN + 1);
        for tag in ["", ".hidden", "-x", "a/b", "a:b", "tag with space", &long] {
            let result = Image::build(WASM, tag);
            assert!(
                matches!(result, Err(Error::InvalidTag(_))),
                "tag {tag:?} was accepted"
            );
        }
    }

    #[test]
    fn build_accepts_valid_tags() {
        let longest = "a".repeat(MAX_TAG_LEN);
        for tag in ["0.1.0", "latest", "_x", "v1.0-rc.1_build", &longest] {
            assert!(Image::build(WASM, tag).is_ok(), "tag {tag:?} was rejected");
        }
    }
}

//! Reproducible OCI image of the jwt-revocation Wasm filter, in the form Istio's `WasmPlugin`
//! pulls from an `oci://` URL.
//!
//! The image is the *compat* variant of the Wasm image specification that Istio's agent
//! accepts: one layer of media type `application/vnd.oci.image.layer.v1.tar+gzip` that contains
//! `plugin.wasm`, an OCI image config, and an OCI image manifest annotated with
//! `module.wasm.image/variant: compat`. [`Image::write_layout`] stores it as an OCI image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/`), which `skopeo copy oci:DIR:TAG ...`
//! pushes to a registry without a Docker daemon.
//!
//! The same `.wasm` bytes and tag always give the same bytes in every blob, so the manifest
//! digest is stable. The tar entry has a fixed mtime, owner and mode, the gzip header has no
//! timestamp or file name, and the config has no `created` time. Istio compares
//! `WasmPlugin.spec.sha256` with that manifest digest when the URL is `oci://`, not with the
//! digest of the `.wasm` file.

mod digest;
mod error;
mod image;
mod layer;
mod layout;

pub use digest::Digest;
pub use error::Error;
pub use image::{Blob, Image};
pub use layer::PLUGIN_FILE_NAME;

/// Media type of the OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Media type of the OCI image index (`index.json` of the layout).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Media type of the OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Media type of the single layer, which Istio's compat-variant parser requires.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Manifest annotation that marks the compat variant of the Wasm image specification.
pub const VARIANT_ANNOTATION: (&str, &str) = ("module.wasm.image/variant", "compat");

/// Index annotation that names the tag of a manifest in an OCI image layout.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

//! The image layer: a gzip-compressed tar archive that contains only `plugin.wasm`.

use std::io::{self, Write};

use flate2::{Compression, GzBuilder};

use crate::Digest;

/// Name of the tar entry that Istio's agent extracts from a compat-variant layer.
pub const PLUGIN_FILE_NAME: &str = "plugin.wasm";

/// Operating system byte of the gzip header: 255 is "unknown" in RFC 1952, and is what Go's
/// `compress/gzip` writes, so the header does not depend on the build host.
const GZIP_OS_UNKNOWN: u8 = 255;

/// The compressed layer blob and the digest of its uncompressed tar archive.
pub(crate) struct Layer {
    pub(crate) blob: Vec<u8>,
    /// Digest of the uncompressed tar archive, listed in the image config's `rootfs.diff_ids`.
    pub(crate) diff_id: Digest,
}

/// Builds the layer for `wasm`.
pub(crate) fn plugin_layer(wasm: &[u8]) -> io::Result<Layer> {
    let tar = plugin_tar(wasm)?;
    let diff_id = Digest::of(&tar);
    let blob = gzip(&tar)?;
    Ok(Layer { blob, diff_id })
}

/// Writes a ustar archive with one regular file, `plugin.wasm`, owned by 0:0 with mode 0644
/// and mtime 0, so the archive depends on the file contents only.
fn plugin_tar(wasm: &[u8]) -> io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE_NAME)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();

    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    builder.into_inner()
}

/// Compresses `data` with a gzip header that has mtime 0 ("no time stamp" in RFC 1952), no file
/// name and a fixed operating system byte.
///
/// NOTE: the deflate stream comes from flate2's default backend (miniz_oxide). The same
/// Cargo.lock gives the same bytes, but another backend or version may compress differently and
/// so change the layer and manifest digests.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn unpack(blob: &[u8]) -> Vec<(tar::Header, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            entries.push((entry.header().clone(), contents));
        }
        entries
    }

    #[test]
    fn layer_contains_only_plugin_wasm() {
        let layer = plugin_layer(WASM).unwrap();
        let entries = unpack(&layer.blob);

        assert_eq!(entries.len(), 1);
        let (header, contents) = &entries[0];
        assert_eq!(header.path().unwrap().to_str(), Some(PLUGIN_FILE_NAME));
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        assert_eq!(contents.as_slice(), WASM);
    }

    #[test]
    fn tar_header_fields_are_fixed() {
        let layer = plugin_layer(WASM).unwrap();
        let entries = unpack(&layer.blob);
        let header = &entries[0].0;

        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!(header.username().unwrap(), Some(""));
        assert_eq!(header.groupname().unwrap(), Some(""));
    }

    #[test]
    fn gzip_header_has_no_time_or_name() {
        let layer = plugin_layer(WASM).unwrap();
        let header = &layer.blob[..10];

        // RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS.
        assert_eq!(&header[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(
            header[3], 0,
            "FLG must have no FNAME, FCOMMENT or FEXTRA bit"
        );
        assert_eq!(&header[4..8], &[0, 0, 0, 0], "MTIME must be 0");
        assert_eq!(header[9], GZIP_OS_UNKNOWN);
    }

    #[test]
    fn diff_id_is_digest_of_uncompressed_tar() {
        let layer = plugin_layer(WASM).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap();

        assert_eq!(layer.diff_id, Digest::of(&tar));
    }

    #[test]
    fn same_input_gives_same_blob() {
        let first = plugin_layer(WASM).unwrap();
        let second = plugin_layer(WASM).unwrap();

        assert_eq!(first.blob, second.blob);
    }
}

//! Writing an [`Image`] as an OCI image layout directory.
//!
//! The layout is first written to a staging directory beside the target and then renamed into
//! place, so an interrupted build leaves no half-written layout at the target path and blobs of
//! an earlier build do not remain in `blobs/sha256/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Image};

/// Content of the `oci-layout` file, from the OCI image layout specification 1.0.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub(crate) fn write(image: &Image, dir: &Path) -> Result<(), Error> {
    let staging = staging_path(dir)?;
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }

    let result = write_files(image, &staging).and_then(|()| replace(&staging, dir));
    if result.is_err() {
        // Best effort: the error being returned matters more than a failed cleanup.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Returns `.<name>.staging` beside `dir`, on the same file system so that the rename in
/// [`replace`] is atomic. Rejects paths such as `.` or `/` that end in no directory name.
fn staging_path(dir: &Path) -> Result<PathBuf, Error> {
    let Some(name) = dir.file_name() else {
        let reason = "the output path must end in a directory name";
        return Err(Error::io(
            dir,
            io::Error::new(io::ErrorKind::InvalidInput, reason),
        ));
    };
    let name = name.to_string_lossy();
    Ok(parent_of(dir).join(format!(".{name}.staging")))
}

fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn write_files(image: &Image, root: &Path) -> Result<(), Error> {
    let blobs = root.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;

    for blob in [&image.config, &image.layer, &image.manifest] {
        write_file(&blobs.join(blob.digest.hex()), &blob.bytes)?;
    }
    write_file(&root.join("index.json"), &image.index)?;
    write_file(&root.join("oci-layout"), OCI_LAYOUT)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Moves `staging` to `dir`. An existing `dir` is removed first, but only when it is empty or
/// contains an `oci-layout` file, so a mistyped path never deletes unrelated files.
fn replace(staging: &Path, dir: &Path) -> Result<(), Error> {
    if dir.exists() {
        if !is_replaceable(dir)? {
            return Err(Error::OutputNotLayout(dir.to_path_buf()));
        }
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    fs::rename(staging, dir).map_err(|e| Error::io(dir, e))
}

fn is_replaceable(dir: &Path) -> Result<bool, Error> {
    if !dir.is_dir() {
        return Ok(false);
    }
    if dir.join("oci-layout").is_file() {
        return Ok(true);
    }
    let mut entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn list(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                for inner in list(&entry.path()) {
                    names.push(format!("{name}/{inner}"));
                }
            } else {
                names.push(name);
            }
        }
        names.sort();
        names
    }

    #[test]
    fn layout_has_index_marker_and_three_blobs() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("oci");
        let image = Image::build(WASM, "0.1.0").unwrap();

        image.write_layout(&dir).unwrap();

        let mut expected = vec![
            "index.json".to_owned(),
            "oci-layout".to_owned(),
            format!("blobs/sha256/{}", image.config.digest.hex()),
            format!("blobs/sha256/{}", image.layer.digest.hex()),
            format!("blobs/sha256/{}", image.manifest.digest.hex()),
        ];
        expected.sort();
        assert_eq!(list(&dir), expected);
        assert_eq!(fs::read(dir.join("oci-layout")).unwrap(), OCI_LAYOUT);
    }

    #[test]
    fn blobs_match_their_file_names() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("oci");
        Image::build(WASM, "0.1.0")
            .unwrap()
            .write_layout(&dir)
            .unwrap();

        for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let bytes = fs::read(entry.path()).unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(crate::Digest::of(&bytes).hex(), name);
        }
    }

    #[test]
    fn rewrite_drops_blobs_of_earlier_build() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("oci");
        let old = Image::build(b"\0asm\x01\0\0\0\0\x02\x01a", "0.1.0").unwrap();
        let new = Image::build(WASM, "0.1.0").unwrap();

        old.write_layout(&dir).unwrap();
        new.write_layout(&dir).unwrap();

        let old_layer = dir.join("blobs/sha256").join(old.layer.digest.hex());
        let new_layer = dir.join("blobs/sha256").join(new.layer.digest.hex());
        assert!(!old_layer.exists());
        assert!(new_layer.exists());
        assert!(!staging_path(&dir).unwrap().exists());
    }

    #[test]
    fn write_keeps_directory_that_is_not_a_layout() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("src");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("main.rs"), "fn main() {}").unwrap();
        let image = Image::build(WASM, "0.1.0").unwrap();

        let result = image.write_layout(&dir);

        assert!(matches!(result, Err(Error::OutputNotLayout(_))));
        assert!(dir.join("main.rs").exists());
        assert!(!staging_path(&dir).unwrap().exists());
    }

    #[test]
    fn write_fills_empty_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("empty");
        fs::create_dir(&dir).unwrap();

        Image::build(WASM, "0.1.0")
            .unwrap()
            .write_layout(&dir)
            .unwrap();

        assert!(dir.join("oci-layout").is_file());
    }

    #[test]
    fn staging_path_is_beside_target() {
        let nested = staging_path(Path::new("target/oci")).unwrap();
        let bare = staging_path(Path::new("oci")).unwrap();

        assert_eq!(nested, Path::new("target/.oci.staging"));
        assert_eq!(bare, Path::new("./.oci.staging"));
    }

    #[test]
    fn staging_path_rejects_paths_without_name() {
        for dir in [".", "..", "/", "target/.."] {
            assert!(
                staging_path(Path::new(dir)).is_err(),
                "{dir:?} was accepted"
            );
        }
    }
}

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Errors from building or writing the image.
#[derive(Debug)]
pub enum Error {
    /// The input is not a WebAssembly core module.
    InvalidWasm(String),
    /// The tag does not match the OCI distribution tag grammar.
    InvalidTag(String),
    /// The output directory exists and is not an OCI image layout, so it is not replaced.
    OutputNotLayout(PathBuf),
    /// A file system operation failed on `path`.
    Io { path: PathBuf, source: io::Error },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidWasm(reason) => write!(f, "invalid Wasm module: {reason}"),
            Error::InvalidTag(tag) => write!(
                f,
                "invalid tag {tag:?}: a tag is 1 to 128 characters from [A-Za-z0-9_.-] \
                 and does not start with '.' or '-'"
            ),
            Error::OutputNotLayout(path) => write!(
                f,
                "output directory {} exists and is not an OCI image layout (no oci-layout \
                 file); remove it or choose another directory",
                path.display()
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

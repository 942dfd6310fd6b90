//! Builds the OCI image layout of the jwt-revocation Wasm filter and prints its manifest digest.
//!
//! Progress goes to stderr and the manifest digest is the only line on stdout, so
//! `digest=$(oci-image --wasm FILE --out DIR)` captures it.

use std::path::PathBuf;
use std::process::ExitCode;

use packaging::Image;

const USAGE: &str = "\
Usage: oci-image --wasm FILE --out DIR [--tag TAG]

Builds a reproducible OCI image layout that contains FILE as plugin.wasm, in the
compat form that Istio's WasmPlugin pulls from an oci:// URL, and prints the
manifest digest.

Options:
  --wasm FILE  WebAssembly module to package
  --out DIR    directory to write the OCI image layout to; an earlier layout
               there is replaced
  --tag TAG    tag recorded in the layout's index.json [default: the crate
               version]
  -h, --help   print this help";

struct Args {
    wasm: PathBuf,
    out: PathBuf,
    tag: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut wasm = None;
    let mut out = None;
    let mut tag = None;

    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--wasm" => &mut wasm,
            "--out" => &mut out,
            "--tag" => &mut tag,
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} requires a value"))?;
        *slot = Some(value);
    }

    Ok(Some(Args {
        wasm: wasm.ok_or("missing --wasm FILE")?.into(),
        out: out.ok_or("missing --out DIR")?.into(),
        tag: tag.unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
    }))
}

fn run(args: &Args) -> Result<(), String> {
    let wasm = std::fs::read(&args.wasm).map_err(|e| {
        format!(
            "failed to read {}: {e}. Build the module with `make wasm`, or pass another \
             file with --wasm.",
            args.wasm.display()
        )
    })?;
    let image =
        Image::build(&wasm, &args.tag).map_err(|e| format!("{}: {e}", args.wasm.display()))?;
    image.write_layout(&args.out).map_err(|e| e.to_string())?;

    let digest = image.manifest_digest();
    eprintln!(
        "wrote OCI image layout {} (tag {}, layer {} bytes) from {}",
        args.out.display(),
        image.tag(),
        image.layer().bytes.len(),
        args.wasm.display()
    );
    eprintln!(
        "For an oci:// URL, Istio checks WasmPlugin.spec.sha256 against this manifest digest \
         (set it to the hex digits {}), not against the sha256 of the .wasm file.",
        digest.hex()
    );
    println!("{digest}");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("oci-image: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("oci-image: {message}");
            ExitCode::FAILURE
        }
    }
}

//! Exports the mock Envoy callbacks of the `native` benchmark from its executable, so that the
//! dynamic loader binds the imports of `libjwt_revocation.so` to them.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let list = out_dir.join("envoy-callbacks.list");
    fs::write(&list, "{\n  envoy_dynamic_module_callback_*;\n};\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", list.display()));
    println!(
        "cargo:rustc-link-arg-benches=-Wl,--dynamic-list={}",
        list.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}

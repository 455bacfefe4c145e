//! include/vllm.h must be what cbindgen generates from this crate now, and its version macros
//! must match Cargo.toml.

use std::path::PathBuf;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_current() {
    let dir = crate_dir();
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates")
        .write(&mut generated);
    let path = dir.join("../include/vllm.h");
    if std::env::var_os("VLLM_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/vllm.h");
    }
    let committed = std::fs::read(&path).expect("read include/vllm.h");
    assert!(
        generated == committed,
        "include/vllm.h is stale: run `make header` and commit it"
    );
}

#[test]
fn version_macros_match_cargo() {
    let header =
        std::fs::read_to_string(crate_dir().join("../include/vllm.h")).expect("read header");
    let want = [
        ("VLLM_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("VLLM_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("VLLM_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
        (
            "VLLM_VERSION_STRING",
            concat!("\"", env!("CARGO_PKG_VERSION"), "\""),
        ),
    ];
    for (name, value) in want {
        let line = format!("#define {name} {value}");
        assert!(header.contains(&line), "include/vllm.h lacks `{line}`");
    }
}

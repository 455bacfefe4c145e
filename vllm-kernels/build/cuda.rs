//! The CUDA half of the build script.
//!
//! 1. Finds nvcc: `$VLLM_CUDA_HOME`, `$CUDA_HOME`, the project toolchain
//!    (`.toolchain/cuda/nvidia/cu13`, made by `scripts/setup-cuda.sh`), then `nvcc` on `PATH`.
//!    CUTLASS: `$CUTLASS_DIR`, then the project toolchain (without it, or without `90a` in the
//!    archs, the Hopper products of `csrc/gemm/sm90_gemm*.cu` compile to stubs).
//! 2. Compiles every `csrc/**/*.cu` to one object through the `cc` crate, in parallel, for the
//!    archs in `$VLLM_CUDA_ARCHS` (default `90a`; any of `80`, `89`, `90`, `90a`).
//!    Objects are cached under `target/cuda-objects/` by a SHA-256 of the source, every header
//!    of `csrc/`, the flags and the nvcc version: an unchanged file is never recompiled, a
//!    changed `.cu` recompiles that file alone, a changed header recompiles all.
//! 3. Archives the objects as `libvllm_kernels_cuda.a`, links `cudart_static`.
//! 4. Runs bindgen over `csrc/include/vllm_kernels.h` into `$OUT_DIR/bindings.rs`.

use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SUPPORTED_ARCHS: &[&str] = &["80", "89", "90", "90a"];

pub fn build() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let csrc = root.join("csrc");
    for var in [
        "VLLM_CUDA_HOME",
        "CUDA_HOME",
        "CUTLASS_DIR",
        "VLLM_CUDA_ARCHS",
        "VLLM_CUDA_OBJ_CACHE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={}", csrc.display());

    let mut sources = Vec::new();
    let mut headers = Vec::new();
    walk(&csrc, &mut sources, &mut headers);
    sources.sort();
    headers.sort();
    for f in sources.iter().chain(&headers) {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let cuda_home = find_cuda_home(&root);
    let nvcc = cuda_home.join("bin").join("nvcc");
    // cc reads the CUDA compiler from NVCC (its documented override of `nvcc` on PATH).
    // SAFETY: the build script is single-threaded here; no other thread reads the environment.
    unsafe { env::set_var("NVCC", &nvcc) };
    let cutlass = find_cutlass(&root);
    let archs = archs();

    let mut flags: Vec<String> = vec![
        "-std=c++17".into(),
        "--expt-relaxed-constexpr".into(),
        "-DNDEBUG".into(),
        "-O3".into(),
    ];
    for a in &archs {
        flags.push(format!("-gencode=arch=compute_{a},code=sm_{a}"));
    }
    let mut includes = vec![csrc.join("include")];
    if let Some(c) = &cutlass {
        includes.push(c.join("include"));
        includes.push(c.join("tools").join("util").join("include"));
        flags.push("-DVLLM_HAS_CUTLASS".into());
    }
    // The CUTLASS Hopper products (csrc/gemm/sm90_gemm*.cu) need wgmma: sm_90a only. The
    // define reaches every arch's pass, so with plain `90` in the list too its object would hold
    // CUTLASS's stub for the same device: then the products are left out (they answer
    // UNSUPPORTED and the runner keeps cuBLAS).
    if archs.iter().any(|a| a == "90a") && !archs.iter().any(|a| a == "90") {
        flags.push("-DVLLM_HAS_SM90A".into());
    }

    // Everything a cached object depends on besides its own source.
    let mut common = Sha256::new();
    common.update(nvcc_version(&nvcc));
    common.update(flags.join(" "));
    for i in &includes {
        common.update(i.to_string_lossy().as_bytes());
    }
    for h in &headers {
        common.update(
            h.strip_prefix(&root)
                .unwrap_or(h)
                .to_string_lossy()
                .as_bytes(),
        );
        common.update(fs::read(h).expect("read header"));
    }

    let cache_dir = object_cache_dir(&root);
    fs::create_dir_all(&cache_dir).expect("create object cache");
    let jobs: Vec<(PathBuf, PathBuf)> = sources
        .iter()
        .map(|src| {
            let rel = src
                .strip_prefix(&csrc)
                .unwrap_or(src)
                .to_string_lossy()
                .replace(['/', '\\'], "_");
            let mut h = common.clone();
            h.update(fs::read(src).expect("read source"));
            let hex: String = h
                .finalize()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            (src.clone(), cache_dir.join(format!("{rel}-{hex}.o")))
        })
        .collect();

    let todo: Vec<&(PathBuf, PathBuf)> = jobs.iter().filter(|(_, obj)| !obj.exists()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((src, obj)) = todo.get(i) else { break };
                    compile_one(src, obj, &flags, &includes);
                }
            });
        }
    });
    for (src, obj) in &jobs {
        prune_stale(&cache_dir, src, &csrc, obj);
    }

    let objects: Vec<&PathBuf> = jobs.iter().map(|(_, o)| o).collect();
    cc::Build::new()
        .objects(objects)
        .cargo_warnings(false)
        .compile("vllm_kernels_cuda");
    for lib in ["lib", "lib64", "targets/x86_64-linux/lib"] {
        let d = cuda_home.join(lib);
        if d.join("libcudart_static.a").exists() {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
    }
    println!("cargo:rustc-link-lib=static=cudart_static");
    for l in ["stdc++", "dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }

    bindings(&csrc.join("include").join("vllm_kernels.h"));
}

fn compile_one(src: &Path, obj: &Path, flags: &[String], includes: &[PathBuf]) {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"))
        .join("cu-tmp")
        .join(obj.file_stem().expect("object stem"));
    fs::create_dir_all(&out).expect("create temp dir");
    let mut b = cc::Build::new();
    b.cuda(true)
        .cudart("none")
        .debug(false)
        .opt_level(3)
        .pic(true)
        .warnings(false)
        .cargo_metadata(false)
        .out_dir(&out)
        .file(src);
    for i in includes {
        b.include(i);
    }
    for f in flags {
        b.flag(f);
    }
    let started = std::time::Instant::now();
    let objs = b.compile_intermediates();
    let built = objs.first().expect("one object");
    // Write under a temporary name, then rename: a killed build never leaves a torn object.
    let tmp = obj.with_extension("o.part");
    fs::copy(built, &tmp).expect("copy object");
    fs::rename(&tmp, obj).expect("rename object");
    println!(
        "cargo:warning=nvcc {} ({:.1}s)",
        src.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        started.elapsed().as_secs_f32()
    );
}

/// Removes cached objects of `src` other than `keep` (older versions of the same file).
fn prune_stale(cache_dir: &Path, src: &Path, csrc: &Path, keep: &Path) {
    let rel = src
        .strip_prefix(csrc)
        .unwrap_or(src)
        .to_string_lossy()
        .replace(['/', '\\'], "_");
    let Ok(entries) = fs::read_dir(cache_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ours = name
            .strip_prefix(&rel)
            .is_some_and(|rest| rest.len() == 19 && rest.starts_with('-'));
        if ours && p != keep {
            let _ = fs::remove_file(p);
        }
    }
}

fn walk(dir: &Path, sources: &mut Vec<PathBuf>, headers: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, sources, headers);
        } else {
            match p.extension().and_then(|x| x.to_str()) {
                Some("cu") => sources.push(p),
                Some("cuh" | "h" | "hpp") => headers.push(p),
                _ => {}
            }
        }
    }
}

fn find_cuda_home(root: &Path) -> PathBuf {
    let candidates = [
        env::var_os("VLLM_CUDA_HOME").map(PathBuf::from),
        env::var_os("CUDA_HOME").map(PathBuf::from),
        Some(root.join(".toolchain/cuda/nvidia/cu13")),
        which_nvcc().and_then(|n| n.parent()?.parent().map(Path::to_path_buf)),
    ];
    for c in candidates.into_iter().flatten() {
        if c.join("bin").join("nvcc").is_file() {
            return c;
        }
    }
    panic!(
        "the `cuda` feature needs nvcc: run scripts/setup-cuda.sh, or set VLLM_CUDA_HOME / CUDA_HOME \
         to a CUDA toolkit, or put nvcc on PATH"
    );
}

fn which_nvcc() -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join("nvcc"))
        .find(|p| p.is_file())
}

fn find_cutlass(root: &Path) -> Option<PathBuf> {
    let candidates = [
        env::var_os("CUTLASS_DIR").map(PathBuf::from),
        Some(root.join(".toolchain/cuda/cutlass_library/source")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c| c.join("include/cutlass/cutlass.h").is_file())
}

fn archs() -> Vec<String> {
    let raw = env::var("VLLM_CUDA_ARCHS").unwrap_or_else(|_| "90a".into());
    let archs: Vec<String> = raw
        .split([',', ';', ' '])
        .map(|a| a.trim().trim_start_matches("sm_").to_string())
        .filter(|a| !a.is_empty())
        .collect();
    for a in &archs {
        assert!(
            SUPPORTED_ARCHS.contains(&a.as_str()),
            "VLLM_CUDA_ARCHS: unsupported arch {a:?}; supported: {SUPPORTED_ARCHS:?}"
        );
    }
    assert!(
        !archs.is_empty(),
        "VLLM_CUDA_ARCHS is empty; supported: {SUPPORTED_ARCHS:?}"
    );
    archs
}

fn nvcc_version(nvcc: &Path) -> Vec<u8> {
    Command::new(nvcc)
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_else(|e| panic!("run {} --version: {e}", nvcc.display()))
}

fn object_cache_dir(root: &Path) -> PathBuf {
    if let Some(d) = env::var_os("VLLM_CUDA_OBJ_CACHE") {
        return PathBuf::from(d);
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("cuda-objects")
}

fn bindings(header: &Path) {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_item("vllm_.*")
        .allowlist_item("VLLM_.*")
        .newtype_enum("vllm_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over {}: {e}", header.display()))
        .write_to_file(&out)
        .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}

//! Without the `cuda` feature: nothing to build. With it: see `build/cuda.rs`.

#[cfg(feature = "cuda")]
#[path = "build/cuda.rs"]
mod cuda;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    cuda::build();
}

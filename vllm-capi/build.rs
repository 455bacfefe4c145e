//! Gives libvllm.so a SONAME carrying the ABI version: `libvllm.so.MAJOR.MINOR` while the
//! major version is 0 (every 0.x minor may change the ABI), `libvllm.so.MAJOR` after.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let soname = if major == "0" {
        format!("libvllm.so.{major}.{minor}")
    } else {
        format!("libvllm.so.{major}")
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

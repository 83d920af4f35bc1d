fn main() {
    // A Node addon leaves the napi_* symbols undefined for node to supply at load time;
    // Linux allows that in a cdylib, but Apple's linker needs -undefined dynamic_lookup.
    // Check the target (not cfg!, which is the host running this script) so cross builds are right.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo:rustc-cdylib-link-arg=-undefined");
        println!("cargo:rustc-cdylib-link-arg=dynamic_lookup");
    }
}

//! Turns `CALLMUX_SKIP_BROWSER=1` into the `skip_browser` cfg, so that the dashboard's
//! browser test is reported as ignored when a run leaves it out on purpose.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CALLMUX_SKIP_BROWSER");
    println!("cargo::rustc-check-cfg=cfg(skip_browser)");
    if std::env::var_os("CALLMUX_SKIP_BROWSER").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=skip_browser");
    }
}

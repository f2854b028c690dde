//! With the `python` feature: records where the linked libpython lives (an rpath), so that the
//! binary loads the interpreter it was built against without `LD_LIBRARY_PATH`, and which
//! Python that was (`SKYROCKET_PYTHON`), so that the interpreter starts as that one would.
//! Without the feature it does nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    #[cfg(feature = "python")]
    python();
}

#[cfg(feature = "python")]
fn python() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if let Some(python) = config.executable() {
        println!("cargo:rustc-env=SKYROCKET_PYTHON={python}");
    }
}

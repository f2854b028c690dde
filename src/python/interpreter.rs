//! Starting and ending the embedded interpreter. It starts as a virtualenv's `bin/python`
//! would (the one given, else the activated one in `$VIRTUAL_ENV`), so that the virtualenv's
//! packages are importable, or else as the Python the binary was built with, so that the
//! standard library found matches the linked `libpython`.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

use super::{attach, traceback, LoadError};

/// The Python the binary was built with (its `sys.executable`, recorded by build.rs).
const BUILT_WITH: Option<&str> = option_env!("SKYROCKET_PYTHON");

/// How starting the interpreter went: it is started once per process.
static STARTED: OnceLock<Result<(), LoadError>> = OnceLock::new();

/// Starts the interpreter if it is not running yet: as `virtualenv`'s Python if given, else as
/// `$VIRTUAL_ENV`'s, else as the Python the binary was built with. Asking for a virtualenv
/// once it runs is an error. [`PythonApp::load`](super::PythonApp::load) calls this with
/// `None`; call it first to choose a virtualenv.
pub fn start(virtualenv: Option<&Path>) -> Result<(), LoadError> {
    let mut first = false;
    let started = STARTED.get_or_init(|| {
        first = true;
        launch(virtualenv)
    });
    match (first, virtualenv) {
        (false, Some(dir)) => Err(LoadError(format!(
            "cannot use the virtualenv {}: Python is already running",
            dir.display()
        ))),
        (true, _) if started.is_ok() => {
            log::info!("{}", attach(describe));
            Ok(())
        }
        _ => started.clone(),
    }
}

/// Which Python runs, from where, and with which virtualenv (or none), for the start-up log.
fn describe(py: Python<'_>) -> String {
    let text = |name: &str| -> String {
        let value = py.import("sys").and_then(|sys| sys.getattr(name));
        value
            .and_then(|v| v.extract())
            .unwrap_or_else(|_| "?".into())
    };
    let version = text("version")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (prefix, base) = (text("prefix"), text("base_prefix"));
    let venv = match prefix != base {
        true => format!("virtualenv {prefix}"),
        false => format!("no virtualenv (prefix {prefix})"),
    };
    let activated = match std::env::var_os("VIRTUAL_ENV") {
        Some(dir) => format!("$VIRTUAL_ENV {}", Path::new(&dir).display()),
        None => "$VIRTUAL_ENV unset".into(),
    };
    format!(
        "Python {version}; executable {}; {venv}; {activated}",
        text("executable")
    )
}

/// Runs the functions registered with `atexit` and flushes `sys.stdout` and `sys.stderr`, as
/// Python does when it exits; for when the server has stopped. Does nothing if the
/// interpreter was never started here.
pub fn run_exit_functions() {
    if !matches!(STARTED.get(), Some(Ok(()))) {
        return;
    }
    attach(|py| {
        let atexit = py.import("atexit");
        if let Err(err) = atexit.and_then(|m| m.call_method0("_run_exitfuncs")) {
            log::warn!("Python's exit functions failed:\n{}", traceback(py, &err));
        }
        for name in ["stdout", "stderr"] {
            let stream = py.import("sys").and_then(|sys| sys.getattr(name));
            let _ = stream.and_then(|s| s.call_method0("flush"));
        }
    });
}

fn launch(virtualenv: Option<&Path>) -> Result<(), LoadError> {
    // SAFETY: `Py_IsInitialized` may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(()); // the embedding program started it
    }
    let activated = std::env::var_os("VIRTUAL_ENV").map(PathBuf::from);
    let program = match virtualenv.map(Path::to_path_buf).or(activated) {
        Some(dir) => Some(virtualenv_python(&dir)?),
        None => BUILT_WITH.map(PathBuf::from).filter(|p| p.exists()),
    };
    initialize_as(program.as_deref())
}

/// The `bin/python` of a virtualenv made for the same Python version as ours.
fn virtualenv_python(dir: &Path) -> Result<PathBuf, LoadError> {
    let not_one = |why: &str| {
        LoadError(format!(
            "{} is not a usable virtualenv: {why}",
            dir.display()
        ))
    };
    let cfg =
        std::fs::read_to_string(dir.join("pyvenv.cfg")).map_err(|_| not_one("no pyvenv.cfg"))?;
    let theirs = cfg_version(&cfg).ok_or_else(|| not_one("pyvenv.cfg has no version"))?;
    let ours = python_version().map(major_minor).unwrap_or_default();
    if theirs != ours {
        return Err(not_one(&format!(
            "it is for Python {theirs}, this server embeds {ours}"
        )));
    }
    Ok(dir.join("bin").join("python"))
}

/// `major.minor` of pyvenv.cfg's `version` (venv) or `version_info` (virtualenv).
fn cfg_version(cfg: &str) -> Option<String> {
    cfg.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| matches!(key.trim(), "version" | "version_info"))
        .map(|(_, value)| major_minor(value.trim()))
}

fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The linked Python's version, such as `3.11.7`.
fn python_version() -> Option<&'static str> {
    // SAFETY: `Py_GetVersion` may be called before initialization and returns a static,
    // NUL-terminated string.
    let full = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    full.to_str().ok()?.split_whitespace().next()
}

/// Initializes the interpreter with `program` as its program name (from which Python finds
/// its prefix and any `pyvenv.cfg`), leaving signal handlers alone, then releases the GIL.
fn initialize_as(program: Option<&Path>) -> Result<(), LoadError> {
    let program = program
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .transpose()
        .map_err(|_| LoadError("a Python path holds a NUL byte".into()))?;
    let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: nothing has initialized the interpreter (checked by the caller, once per
    // process). `config` is initialized by `PyConfig_InitPythonConfig` before any other use
    // and cleared once, after its last use. `program` outlives the call that copies it.
    // Initializing leaves this thread holding the GIL; `PyEval_SaveThread` releases it, as
    // pyo3 expects of an initialized interpreter.
    unsafe {
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.as_mut_ptr();
        (*config).install_signal_handlers = 0;
        let mut status = match &program {
            Some(name) => {
                ffi::PyConfig_SetBytesString(config, &mut (*config).program_name, name.as_ptr())
            }
            None => ffi::PyStatus_Ok(),
        };
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(config);
        }
        ffi::PyConfig_Clear(config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(LoadError(format!(
                "cannot start Python: {}",
                status_message(&status)
            )));
        }
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn status_message(status: &ffi::PyStatus) -> String {
    match status.err_msg.is_null() {
        true => "unknown error".into(),
        // SAFETY: a non-null `err_msg` is a static NUL-terminated string.
        false => unsafe { CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_cfg_versions() {
        let table = [
            ("home = /usr/bin\nversion = 3.11.7\n", Some("3.11")),
            ("version_info = 3.12.1.final.0\nhome=/x\n", Some("3.12")),
            ("home = /usr/bin\n", None),
            ("", None),
        ];
        for (cfg, expected) in table {
            assert_eq!(cfg_version(cfg).as_deref(), expected, "{cfg:?}");
        }
    }
}

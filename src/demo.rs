//! The built-in demo application: every path shows the request's environ, and which process
//! served it (a worker process, with `--workers`).

use http::StatusCode;

use crate::app::{Application, Environ, Input, Reply};

/// Served with `--method wsgi` when no application is given.
pub struct Demo;

impl Application for Demo {
    fn call(&self, environ: &Environ, _input: &mut Input<'_>) -> Reply {
        let mut page = format!(
            "skyrocket is running (process {}). This request's environ:\n\n",
            std::process::id()
        );
        for (key, value) in environ.vars() {
            page.push_str(&format!("{key}={value}\n"));
        }
        Reply::text(StatusCode::OK, page)
    }
}

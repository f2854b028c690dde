//! The testbed server: skyrocket's command line serving the routes of `app.rs`
//! (`/hello`, `/echo`, `/sleep?ms=N`, `/spin?us=N`, `/stream?n=K`, `/panic`, `/environ...`).

mod app;

use std::process::ExitCode;

fn main() -> ExitCode {
    skyrocket::cli::main_with(app::testbed)
}

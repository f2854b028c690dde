//! The `skyrocket` binary: Rocket's options as flags; with no application, the demo page.

use std::process::ExitCode;

fn main() -> ExitCode {
    skyrocket::cli::main(None)
}

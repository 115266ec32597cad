//! The `agentobs` command line: a thin shell over the library. Parsing and dispatch are in
//! `cli`; this file only turns the outcome into an exit code scripts can rely on
//! (0 success, 1 a failure the user can act on, 2 a usage error).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}

//! The `chg` command: parse, run, map the error to an exit code (SPEC section 8).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! The `chg` command: parse, run, map the error to an exit code (SPEC section 8).

mod cli;
mod serve;

fn main() -> std::process::ExitCode {
    cli::main()
}

// Validation and listing parse thousands of small files in parallel; mimalloc's
// thread-local free lists cut the allocator's share of that work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

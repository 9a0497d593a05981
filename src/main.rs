//! The `chg` command: parse, run, map the error to an exit code (SPEC section 8).

mod cli;
mod serve;

fn main() -> std::process::ExitCode {
    // A command reads a summary or an index of tens of MB once and exits. With transparent
    // huge pages (which mimalloc asks for), every first touch made the kernel zero 2 MB:
    // half of a warm `chg list --status X` at 100,000 changes went to clearing pages. Off
    // for this process; nothing else changes.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    cli::main()
}

// Validation and listing parse thousands of small files in parallel; mimalloc's
// thread-local free lists cut the allocator's share of that work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

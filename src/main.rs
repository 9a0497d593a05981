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
    libgit2_on_mimalloc();
    chg::git::tune_libgit2();
    cli::main()
}

/// libgit2 allocates through the C library's malloc unless told otherwise, and reading a
/// long history it allocates and frees for every object it reads: a tenth of `chg audit
/// --full`'s time went to glibc's malloc and free. It gets mimalloc, the allocator of the
/// rest of the process. This must run before libgit2 is initialised (its first use), so
/// that no block is allocated by one allocator and freed by the other; libgit2 keeps an
/// allocator set before its initialisation.
fn libgit2_on_mimalloc() {
    use std::ffi::{c_char, c_int, c_void};
    /// libgit2's `git_allocator` (`git2/sys/alloc.h`), which libgit2-sys does not declare.
    #[repr(C)]
    struct GitAllocator {
        gmalloc: unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void,
        grealloc: unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void,
        gfree: unsafe extern "C" fn(*mut c_void),
    }
    unsafe extern "C" fn gmalloc(n: usize, _file: *const c_char, _line: c_int) -> *mut c_void {
        // SAFETY: mi_malloc accepts any size and returns null when it cannot allocate,
        // as libgit2 expects of malloc.
        unsafe { libmimalloc_sys::mi_malloc(n) }
    }
    unsafe extern "C" fn grealloc(
        p: *mut c_void,
        n: usize,
        _file: *const c_char,
        _line: c_int,
    ) -> *mut c_void {
        // SAFETY: `p` is null or was allocated by gmalloc/grealloc, i.e. by mimalloc.
        unsafe { libmimalloc_sys::mi_realloc(p, n) }
    }
    unsafe extern "C" fn gfree(p: *mut c_void) {
        // SAFETY: as above; mi_free accepts null.
        unsafe { libmimalloc_sys::mi_free(p) }
    }
    static ALLOCATOR: GitAllocator = GitAllocator {
        gmalloc,
        grealloc,
        gfree,
    };
    // SAFETY: GIT_OPT_SET_ALLOCATOR takes a pointer to a git_allocator, which libgit2
    // copies; nothing of libgit2 has run yet in this process.
    unsafe {
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_SET_ALLOCATOR as c_int,
            &ALLOCATOR as *const GitAllocator,
        );
    }
}

// Validation and listing parse thousands of small files in parallel; mimalloc's
// thread-local free lists cut the allocator's share of that work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

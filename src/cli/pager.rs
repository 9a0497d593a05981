//! Long output through the user's pager at a terminal, as git does: `CHG_PAGER`, else
//! `PAGER`, else `less` (with `LESS=FRX` unless set, so one screen prints and quits);
//! `--no-pager`, a pipe, or a pager of `cat` or nothing writes straight to stdout.
//!
//! The pager starts at the first output and the output streams into it, as git and jj do:
//! the first screen shows while a slow command (an audit of years) is still working, and
//! nothing waits in memory. A command that prints nothing starts no pager.

use std::io::Write;
use std::process::{Child, ChildStdin};

use chg::Error;

/// Where stdout's text goes for this run.
pub struct Output {
    state: State,
}

enum State {
    /// Paging is wanted: the pager (this command line) starts at the first output.
    Waiting(String),
    /// The pager runs; what is written goes to its input.
    Paging(Pager),
    /// Straight to stdout.
    Stdout,
    /// The reader quit the pager (q in less): the rest is not shown, and that is no error.
    Closed,
}

/// A running pager.
struct Pager {
    child: Child,
    input: ChildStdin,
    /// stderr as it was before it was sent into the pager (see [`Pager::start`]).
    #[cfg(unix)]
    saved_stderr: Option<std::os::fd::OwnedFd>,
}

impl Output {
    /// Output through the pager when `page` (stdout is a terminal, the command reads, no
    /// `--no-pager`) and a pager is set; else straight to stdout.
    pub fn new(page: bool) -> Output {
        Output {
            state: match page.then(pager).flatten() {
                Some(cmd) => State::Waiting(cmd),
                None => State::Stdout,
            },
        }
    }

    /// Writes `bytes`, starting the pager first if this is the first output; a closed
    /// pipe (`chg list | head`, q in less) is not an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let State::Waiting(cmd) = &self.state {
            // A pager that cannot start costs the paging, not the output.
            self.state = Pager::start(cmd).map_or(State::Stdout, State::Paging);
        }
        let written = match &mut self.state {
            State::Waiting(_) | State::Closed => return Ok(()),
            State::Paging(p) => p.input.write_all(bytes),
            State::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(bytes).and_then(|()| stdout.flush())
            }
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                if matches!(self.state, State::Paging(_)) {
                    self.finish();
                    self.state = State::Closed;
                }
                Ok(())
            }
            Err(e) => Err(Error::io("cannot write to stdout", e)),
        }
    }

    /// Ends the output: the pager's input is closed and the pager waited for, so that
    /// what follows (an error, a notice) is printed after the reader is done.
    pub fn finish(&mut self) {
        if let State::Paging(p) = std::mem::replace(&mut self.state, State::Stdout) {
            p.close();
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Pager {
    /// Starts `cmd` reading from a pipe. When stderr is a terminal too, it goes into the
    /// pager while it runs (as git does), so warnings and counts are not drawn over the
    /// page but shown after it.
    fn start(cmd: &str) -> Option<Pager> {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped());
        if std::env::var_os("LESS").is_none() {
            command.env("LESS", "FRX");
        }
        if std::env::var_os("LV").is_none() {
            command.env("LV", "-c");
        }
        let mut child = command.spawn().ok()?;
        let input = child.stdin.take()?;
        #[cfg(unix)]
        let saved_stderr = {
            use std::io::IsTerminal;
            use std::os::fd::{AsRawFd, FromRawFd};
            if std::io::stderr().is_terminal() {
                // SAFETY: dup and dup2 on descriptors this process owns; the copy of
                // stderr is owned by the OwnedFd that restores it.
                unsafe {
                    let saved = libc::dup(libc::STDERR_FILENO);
                    (saved >= 0 && libc::dup2(input.as_raw_fd(), libc::STDERR_FILENO) >= 0)
                        .then(|| std::os::fd::OwnedFd::from_raw_fd(saved))
                }
            } else {
                None
            }
        };
        Some(Pager {
            child,
            input,
            #[cfg(unix)]
            saved_stderr,
        })
    }

    /// Closes the pager's input (stderr's copy of it too) and waits for the reader.
    fn close(self) {
        let Pager {
            mut child,
            input,
            #[cfg(unix)]
            saved_stderr,
        } = self;
        drop(input);
        #[cfg(unix)]
        if let Some(saved) = saved_stderr {
            use std::os::fd::AsRawFd;
            // SAFETY: puts back the stderr saved in `start`; `saved` is then closed.
            unsafe {
                libc::dup2(saved.as_raw_fd(), libc::STDERR_FILENO);
            }
        }
        let _ = child.wait();
    }
}

/// The pager command, if any.
fn pager() -> Option<String> {
    let cmd = std::env::var("CHG_PAGER")
        .or_else(|_| std::env::var("PAGER"))
        .unwrap_or_else(|_| "less".into());
    let cmd = cmd.trim().to_owned();
    let program = cmd.split_whitespace().next()?;
    // A pager that is not installed would swallow the output: write it plainly instead.
    let found = if program.contains('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    (found && cmd != "cat").then_some(cmd)
}

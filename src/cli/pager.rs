//! Long output through the user's pager at a terminal, as git does: `CHG_PAGER`, else
//! `PAGER`, else `less` (with `LESS=FRX` unless set, so one screen prints and quits);
//! `--no-pager`, a pipe, or a pager of `cat` or nothing writes straight to stdout.

use std::io::Write;

use chg::Error;

/// Where stdout's text goes for this run.
pub struct Output {
    /// What is held for the pager, when paging.
    held: Option<Vec<u8>>,
}

impl Output {
    /// Holds stdout for the pager when `page` (stdout is a terminal, the command reads)
    /// and a pager is set.
    pub fn new(page: bool) -> Output {
        Output {
            held: (page && pager().is_some()).then(Vec::new),
        }
    }

    /// Writes `bytes` (or holds them for the pager); a closed pipe is not an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(held) = &mut self.held {
            held.extend_from_slice(bytes);
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::io("cannot write to stdout", e)),
        }
    }

    /// Sends what was held through the pager (or to stdout if it cannot start), and waits.
    pub fn finish(&mut self) {
        if let Some(bytes) = self.held.take().filter(|b| !b.is_empty()) {
            page(&bytes);
        }
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

/// Sends `bytes` through the pager (or to stdout if it cannot start), and waits.
fn page(bytes: &[u8]) {
    let Some(cmd) = pager() else {
        let _ = std::io::stdout().write_all(bytes);
        return;
    };
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&cmd)
        .stdin(std::process::Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        command.env("LESS", "FRX");
    }
    if std::env::var_os("LV").is_none() {
        command.env("LV", "-c");
    }
    match command.spawn() {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                // The reader quitting early (q in less) is not an error.
                let _ = stdin.write_all(bytes);
            }
            let _ = child.wait();
        }
        Err(_) => {
            let _ = std::io::stdout().write_all(bytes);
        }
    }
}

//! Long output through the user's pager at a terminal, as git does: `CHG_PAGER`, else
//! `PAGER`, else `less` (with `LESS=FRX` unless set, so one screen prints and quits);
//! `--no-pager`, a pipe, or a pager of `cat` or nothing writes straight to stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// What is held for the pager, when paging.
static HELD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Starts holding stdout for the pager, when stdout is a terminal and a pager is set.
pub fn begin(no_pager: bool) {
    if no_pager || !std::io::stdout().is_terminal() || pager().is_none() {
        return;
    }
    if let Ok(mut h) = HELD.lock() {
        *h = Some(Vec::new());
    }
}

/// Holds `bytes` when paging; false when they should be written to stdout now.
pub fn hold(bytes: &[u8]) -> bool {
    match HELD.lock() {
        Ok(mut h) => match h.as_mut() {
            Some(buf) => {
                buf.extend_from_slice(bytes);
                true
            }
            None => false,
        },
        Err(_) => false,
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

/// Sends what was held through the pager (or to stdout if it cannot start), and waits.
pub fn finish() {
    let held = HELD.lock().ok().and_then(|mut h| h.take());
    let Some(bytes) = held.filter(|b| !b.is_empty()) else {
        return;
    };
    let Some(cmd) = pager() else {
        let _ = std::io::stdout().write_all(&bytes);
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
                let _ = stdin.write_all(&bytes);
            }
            let _ = child.wait();
        }
        Err(_) => {
            let _ = std::io::stdout().write_all(&bytes);
        }
    }
}

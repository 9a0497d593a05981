//! `chg edit`: change a change in `$VISUAL` / `$EDITOR`.

use std::process::ExitCode;

use chg::Error;
use chg::store::Store;
use clap::Args;

use super::{CmdResult, interactive, short, ui::Ui};

/// Edit a change's content in your editor ($VISUAL, else $EDITOR, else vi).
///
/// The result is validated before it is committed; if it does not validate, the editor
/// opens again with the problems listed at the top (close it without saving to stop).
/// Saving an empty or unchanged file aborts without a commit. An edit that could not be
/// committed is kept in .git/chg/edit/ and the next `chg edit ID` resumes it. Editing
/// material content after an approval voids the approvals.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The change id.
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::complete::ids))]
    id: String,
}

const MARK: &str = "# chg: ";

fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

/// Ctrl-C and Ctrl-\\ ignored by chg while it lives, as git does while the editor runs: the
/// keys belong to the editor, and chg must not die with a saved edit in its hands.
struct IgnoreInterrupts {
    #[cfg(unix)]
    old: [libc::sighandler_t; 2],
}

impl IgnoreInterrupts {
    fn new() -> Self {
        #[cfg(unix)]
        // SAFETY: signal(2) with SIG_IGN installs no handler code; the previous dispositions
        // are restored on drop.
        unsafe {
            IgnoreInterrupts {
                old: [
                    libc::signal(libc::SIGINT, libc::SIG_IGN),
                    libc::signal(libc::SIGQUIT, libc::SIG_IGN),
                ],
            }
        }
        #[cfg(not(unix))]
        IgnoreInterrupts {}
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the dispositions saved in `new`.
        unsafe {
            libc::signal(libc::SIGINT, self.old[0]);
            libc::signal(libc::SIGQUIT, self.old[1]);
        }
    }
}

/// Runs the editor on `path`. The command may carry arguments (`code --wait`).
fn open_editor(path: &std::path::Path) -> Result<(), Error> {
    let cmd = editor();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$1\""))
        .arg("chg-editor")
        .arg(path)
        .spawn()
        .map_err(|e| Error::io(format!("cannot start the editor `{cmd}`"), e))?;
    // Ignored only once the editor runs: it keeps the default dispositions (an ignored
    // signal would stay ignored through exec).
    let quiet = IgnoreInterrupts::new();
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("cannot wait for the editor `{cmd}`"), e))?;
    drop(quiet);
    if !status.success() {
        return Err(Error::Usage(format!(
            "the editor `{cmd}` exited with {status}; nothing was changed"
        )));
    }
    Ok(())
}

fn strip_marks(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with(MARK))
        .collect()
}

pub fn run(ui: &Ui, store: &Store, a: EditArgs) -> CmdResult {
    let id = ui.parse_id(&a.id)?;
    let loaded = store.load(&id)?;
    let base = loaded.text.clone();
    // The file being edited lives at one place per change, so an edit that could not be
    // committed (refused, invalid, the editor or chg interrupted) is never lost: the next
    // `chg edit ID` resumes it.
    let dir = store.repo().path().join("chg").join("edit");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create .git/chg/edit", e))?;
    let path = dir.join(format!("{id}.yaml"));
    let shown = path
        .strip_prefix(store.root())
        .unwrap_or(&path)
        .display()
        .to_string();
    let kept = || {
        eprintln!(
            "chg: your edit is kept in {shown}; `chg edit {id}` resumes it (empty the file there to discard it)"
        );
    };
    let mut draft = match chg::decode::read_bounded(&path).map(String::from_utf8) {
        Ok(Ok(text)) if !strip_marks(&text).trim().is_empty() => {
            let text = strip_marks(&text);
            format!("{MARK}resumed your earlier edit of {id}; empty the file to discard it\n{text}")
        }
        _ => base.clone(),
    };
    let mut last: Option<String> = None;
    loop {
        std::fs::write(&path, &draft).map_err(|e| Error::io("cannot write the file to edit", e))?;
        if let Err(e) = open_editor(&path) {
            let saved = std::fs::read_to_string(&path).unwrap_or_default();
            if saved != draft && !strip_marks(&saved).trim().is_empty() {
                kept();
            } else {
                let _ = std::fs::remove_file(&path);
            }
            return Err(e);
        }
        let edited = chg::decode::read_bounded(&path)
            .map_err(|e| Error::io("cannot read the edited file", e))?;
        let edited = String::from_utf8(edited).map_err(|_| {
            kept();
            Error::Usage("the edited file is not UTF-8 text; nothing was changed".into())
        })?;
        let edited = strip_marks(&edited);
        if edited.trim().is_empty() {
            let _ = std::fs::remove_file(&path);
            eprintln!("chg: the file is empty; edit aborted, nothing was changed");
            return Ok(ExitCode::SUCCESS);
        }
        if edited == base {
            let _ = std::fs::remove_file(&path);
            eprintln!("chg: no changes; nothing was committed");
            return Ok(ExitCode::SUCCESS);
        }
        // Closing the editor on the problems without touching the file is a way out too.
        if last.as_deref() == Some(edited.as_str()) {
            std::fs::write(&path, &edited)
                .map_err(|e| Error::io("cannot keep the edited file", e))?;
            kept();
            return Ok(ExitCode::from(1));
        }
        match store.edit_text(&super::context::for_store(ui, store)?, &id, &base, &edited) {
            Ok(o) => {
                let _ = std::fs::remove_file(&path);
                let t = &o.transition;
                let mut s = format!(
                    "{id}: edit, {} -> {} [commit {}]\n",
                    t.from,
                    t.to,
                    short(&o.commit.to_string())
                );
                for n in &t.notes {
                    s.push_str(&format!("note: {n}\n"));
                }
                ui.out(&s)?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(Error::Invalid { summary, findings }) if interactive() => {
                let mut head = format!(
                    "{MARK}{summary}; fix them, or close the editor without saving to stop (your edit is kept), or empty the file to discard it:\n"
                );
                for f in &findings {
                    head.push_str(&format!("{MARK}  {f}\n"));
                }
                draft = head + &edited;
            }
            Err(e @ (Error::Invalid { .. } | Error::Refused(_) | Error::Usage(_)))
                if interactive() =>
            {
                let head = format!(
                    "{MARK}{e}\n{MARK}fix it, or close the editor without saving to stop (your edit is kept), or empty the file to discard it.\n"
                );
                draft = head + &edited;
            }
            Err(e) => {
                std::fs::write(&path, &edited)
                    .map_err(|e| Error::io("cannot keep the edited file", e))?;
                kept();
                return Err(e);
            }
        }
        last = Some(edited);
    }
}

//! `chg edit`: change a change in `$VISUAL` / `$EDITOR`.

use std::process::ExitCode;

use chg::Error;
use chg::store::Store;
use clap::Args;

use super::{CmdResult, interactive, out, parse_id, short};

/// Edit a change's content in your editor ($VISUAL, else $EDITOR, else vi).
///
/// The result is validated before it is committed; if it does not validate, the editor
/// opens again with the problems listed at the top. Saving an empty or unchanged file
/// aborts without a commit. Editing material content after an approval voids the approvals.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The change id.
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

/// Runs the editor on `path`. The command may carry arguments (`code --wait`).
fn open_editor(path: &std::path::Path) -> Result<(), Error> {
    let cmd = editor();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$1\""))
        .arg("chg-editor")
        .arg(path)
        .status()
        .map_err(|e| Error::io(format!("cannot start the editor `{cmd}`"), e))?;
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

pub fn run(store: &Store, a: EditArgs) -> CmdResult {
    let id = parse_id(&a.id)?;
    let loaded = store.load(&id)?;
    let base = loaded.text.clone();
    let dir = store.repo().commondir().join("chg");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create .git/chg", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{id}-"))
        .suffix(".yaml")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("cannot create a file to edit", e))?;
    let path = tmp.path().to_path_buf();
    let mut draft = base.clone();
    loop {
        std::fs::write(&path, &draft).map_err(|e| Error::io("cannot write the file to edit", e))?;
        open_editor(&path)?;
        let edited = chg::decode::read_bounded(&path)
            .map_err(|e| Error::io("cannot read the edited file", e))?;
        let edited = String::from_utf8(edited).map_err(|_| {
            Error::Usage("the edited file is not UTF-8 text; nothing was changed".into())
        })?;
        let edited = strip_marks(&edited);
        if edited.trim().is_empty() {
            eprintln!("chg: the file is empty; edit aborted, nothing was changed");
            return Ok(ExitCode::SUCCESS);
        }
        if edited == base {
            eprintln!("chg: no changes; nothing was committed");
            return Ok(ExitCode::SUCCESS);
        }
        match store.edit_text(&super::context::for_store(store)?, &id, &base, &edited) {
            Ok(o) => {
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
                out(&s)?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(Error::Invalid { summary, findings }) if interactive() => {
                let mut head = format!("{MARK}{summary}; fix them or empty the file to abort:\n");
                for f in &findings {
                    head.push_str(&format!("{MARK}  {f}\n"));
                }
                draft = head + &edited;
            }
            Err(e @ (Error::Invalid { .. } | Error::Refused(_) | Error::Usage(_)))
                if interactive() =>
            {
                let head = format!("{MARK}{e}\n{MARK}fix it or empty the file to abort.\n");
                draft = head + &edited;
            }
            Err(e) => return Err(e),
        }
    }
}

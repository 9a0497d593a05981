//! One value for how this run meets the person, built once in [`super::run`] and passed to
//! every command (as jj's `Ui` and cargo's `GlobalContext`): the colour choice, the JSON
//! selection, the store's id prefix, the pager, the signing key given for this run, where
//! stdout goes, and the one instant the run acts at.

use std::cell::{OnceCell, RefCell};
use std::io::IsTerminal;

use chg::Error;
use chg::model::ChangeId;
use jiff::Timestamp;

use super::grid::{self, ColorWhen, Target};
use super::json::JsonArgs;
use super::pager::Output;

/// How this run talks to the person, and when it acts.
pub struct Ui {
    color: ColorWhen,
    /// `--signing-key` / `CHG_SIGNING_KEY`: `user.signingkey` for this run, above every config.
    signing_key: Option<String>,
    /// Whether stdout is a terminal, asked once.
    stdout_terminal: bool,
    /// The time of the action, read once (see [`super::context::now`]): every time flag,
    /// every step and every echo of this run count from it. Read when first needed, so
    /// that commands that need no time (`chg man`) do not fail on a bad `CHG_NOW`.
    now: OnceCell<Timestamp>,
    /// The store's id prefix, once its policy is read (for ids given as `3` or `2026-3`).
    id_prefix: OnceCell<String>,
    /// `--json[=FIELDS]` / `--jq`, once the command has said it prints JSON.
    json: OnceCell<JsonArgs>,
    /// Where stdout's text goes: straight out, or through the pager.
    out: RefCell<Output>,
}

impl Ui {
    /// The run's `Ui`; `page`: whether long output may go through the pager (reading
    /// commands at a terminal, without `--no-pager`).
    pub fn new(color: ColorWhen, signing_key: Option<String>, page: bool) -> Ui {
        let stdout_terminal = std::io::stdout().is_terminal();
        Ui {
            color,
            signing_key: signing_key.filter(|k| !k.trim().is_empty()),
            stdout_terminal,
            now: OnceCell::new(),
            id_prefix: OnceCell::new(),
            json: OnceCell::new(),
            out: RefCell::new(Output::new(page && stdout_terminal)),
        }
    }

    /// The instant this run acts at: `CHG_NOW`, `GIT_AUTHOR_DATE` or the clock, read once.
    pub fn now(&self) -> Result<Timestamp, Error> {
        if let Some(t) = self.now.get() {
            return Ok(*t);
        }
        let t = super::context::now()?;
        Ok(*self.now.get_or_init(|| t))
    }

    /// `repo`'s git configuration with this run's overrides.
    pub fn git_config(&self, repo: Option<&git2::Repository>) -> super::gitconfig::GitConfig {
        super::gitconfig::GitConfig::of(repo, self.signing_key.clone())
    }

    /// Records the store's id prefix, once its policy is read.
    pub fn set_id_prefix(&self, prefix: &str) {
        let _ = self.id_prefix.set(prefix.to_owned());
    }

    /// Parses an id argument as [`super::parse_id_with`] does, with the store's prefix and
    /// this run's year.
    pub fn parse_id(&self, text: &str) -> Result<ChangeId, Error> {
        let prefix = self.id_prefix.get().map_or("CHG", String::as_str);
        super::parse_id_with(text, prefix, || self.now())
    }

    /// A time flag, echoed on stderr where it is not plain RFC 3339 (see
    /// [`super::parse_bound_at`]).
    pub fn parse_bound(&self, text: &str) -> Result<Timestamp, Error> {
        super::parse_bound_at(text, self.now()?)
    }

    /// [`Ui::parse_bound`] without the echo.
    pub fn read_time(&self, text: &str) -> Result<Timestamp, Error> {
        super::read_time_at(text, self.now()?, super::local_zone)
    }

    /// Whether the command's JSON switches ask for JSON; records them for [`Ui::out_json`].
    pub fn json(&self, args: &JsonArgs) -> bool {
        let on = args.on();
        if on {
            let _ = self.json.set(args.clone());
        }
        on
    }

    /// Whether to colour stdout: `--color always|never` decides; under `auto`, NO_COLOR
    /// (set, not empty) turns colour off, else CLICOLOR_FORCE (set, not `0`) turns it on,
    /// else it is on at a terminal.
    pub fn color_on(&self) -> bool {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
        match self.color {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && (set("CLICOLOR_FORCE") || self.stdout_terminal)
            }
        }
    }

    /// Where stdout's tables go.
    pub fn target(&self) -> Target {
        if self.stdout_terminal {
            Target::Terminal {
                width: grid::terminal_width(),
                color: self.color_on(),
            }
        } else {
            Target::Pipe {
                color: self.color_on(),
            }
        }
    }

    /// Whether stdout is a terminal (tables aligned for people) rather than a pipe.
    pub fn at_terminal(&self) -> bool {
        self.stdout_terminal
    }

    /// Writes to stdout; a closed pipe (`chg list | head`) is not an error.
    pub fn out(&self, text: &str) -> Result<(), Error> {
        self.out_unfiltered(&chg::text::terminal_safe(text))
    }

    /// [`Ui::out`] without the terminal filter, for text already made safe.
    pub fn out_unfiltered(&self, text: &str) -> Result<(), Error> {
        self.out.borrow_mut().write(text.as_bytes())
    }

    /// A JSON document on stdout, narrowed and filtered as the command's switches ask.
    pub fn out_json<T: serde::Serialize>(&self, value: &T) -> Result<(), Error> {
        let value = serde_json::to_value(value)
            .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?;
        self.out(&super::json::shape(self.json.get(), value)?)
    }

    /// Writes a table where stdout goes (aligned at a terminal, tab-separated when piped),
    /// with `summary` (a count) on stderr so piped data stays data.
    pub fn out_table(&self, grid: &grid::Grid, summary: Option<String>) -> Result<(), Error> {
        self.out_unfiltered(&grid.render(self.target()))?;
        if let Some(s) = summary {
            eprintln!("{s}");
        }
        Ok(())
    }

    /// Ends the output: what the pager holds is shown, and the pager waited for.
    pub fn finish(&self) {
        self.out.borrow_mut().finish();
    }
}

//! The command-line layer: clap definitions, one module per group of commands, output
//! formats. Everything here turns arguments into calls on the `chg` library and its
//! results into text; no rule of the domain lives here.

mod audit;
mod complete;
mod context;
mod edit;
mod gitconfig;
mod grid;
mod help;
mod json;
mod misc;
mod new;
mod pager;
mod plan;
mod policy;
mod prompt;
mod report;
mod show;
mod sign;
mod sync;
mod transitions;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chg::Error;
use chg::policy::Policy;
use chg::store::Store;
use clap::{Parser, Subcommand};
use jiff::Timestamp;

/// Technical change management in git: one YAML file per change request, a policy, and one
/// commit per state transition, so that `git log` is the audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "chg",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Cli {
    // The global options under a heading of their own, after each command's options (as jj
    // does), rather than interleaved with them in every `--help`.
    /// The store to use (a folder with policy/policy.yaml); default: found from the current folder.
    #[arg(long, global = true, env = "CHG_REPO", value_name = "PATH", help_heading = GLOBAL)]
    repo: Option<PathBuf>,

    /// Never send output through a pager (at a terminal, long output goes through
    /// CHG_PAGER, else PAGER, else less).
    #[arg(long, global = true, help_heading = GLOBAL)]
    no_pager: bool,

    /// When to colour output: auto (at a terminal, unless NO_COLOR is set; CLICOLOR_FORCE
    /// colours piped output too), always (piped too, NO_COLOR or not), never.
    #[arg(long, global = true, value_enum, default_value_t = grid::ColorWhen::Auto, value_name = "WHEN", hide_possible_values = true, help_heading = GLOBAL)]
    color: grid::ColorWhen,

    /// Your SSH key for signed records and commits, as git's `-c user.signingkey=`: a
    /// private key file, a public key file whose private half is in ssh-agent, or
    /// `key::ssh-ed25519 AAAA…`. Overrides `user.signingkey` from git config.
    #[arg(long, global = true, env = "CHG_SIGNING_KEY", value_name = "KEY", help_heading = GLOBAL)]
    signing_key: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// The help heading of the options every command takes.
const GLOBAL: &str = "Global Options";

#[derive(Debug, Subcommand)]
enum Command {
    Init(misc::InitArgs),
    New(Box<new::NewArgs>),
    /// Submit a draft for approval (draft -> pending_approval); required fields must be filled in.
    Submit(transitions::IdArgs),
    Approve(transitions::ApproveArgs),
    Reject(transitions::RejectArgs),
    Withdraw(transitions::WithdrawArgs),
    Set(transitions::SetArgs),
    Edit(edit::EditArgs),
    Schedule(transitions::ScheduleArgs),
    /// Start implementation: needs approval (emergency and pre-approved standard changes
    /// excepted), the current time inside the schedule, no freeze, and a test plan where
    /// testing is required.
    Implement(transitions::IdArgs),
    Close(transitions::CloseArgs),
    Cancel(transitions::CancelArgs),
    Renumber(transitions::RenumberArgs),
    Policy(policy::PolicyArgs),
    Templates(policy::TemplatesArgs),
    Sync(sync::SyncArgs),
    Show(show::ShowArgs),
    List(show::ListArgs),
    Log(show::LogArgs),
    Validate(validate::ValidateArgs),
    Gate(plan::GateArgs),
    Calendar(plan::CalendarArgs),
    Cab(plan::CabArgs),
    Report(report::ReportArgs),
    Audit(audit::AuditArgs),
    Schema(misc::SchemaArgs),
    Completions(misc::CompletionsArgs),
    Man(misc::ManArgs),
}

/// What a command returns: the exit code when it is not an error (validate: 0 or 1).
type CmdResult = Result<ExitCode, Error>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // The crash tests' kill points exist only in a build with the `failpoints` feature.
    #[cfg(feature = "failpoints")]
    if let Ok(point) = std::env::var("CHG_TEST_FAILPOINT") {
        chg::store::commit::arm_failpoint(point);
    }
    // A shell asking for completions (COMPLETE=bash chg …) is answered and nothing else runs.
    clap_complete::CompleteEnv::with_factory(help::command).complete();
    use clap::FromArgMatches;
    let cli = match help::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One prefix for every error, clap's included.
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("chg: error: {text}");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    grid::set_color(cli.color);
    gitconfig::set_signing_key(cli.signing_key.clone().filter(|k| !k.trim().is_empty()));
    // Reading commands page at a terminal; commands that prompt or act do not.
    if matches!(
        cli.command,
        Command::Show(_)
            | Command::List(_)
            | Command::Log(_)
            | Command::Validate(_)
            | Command::Calendar(_)
            | Command::Cab(_)
            | Command::Report(_)
            | Command::Audit(_)
            | Command::Templates(_)
            | Command::Schema(_)
    ) {
        pager::begin(cli.no_pager);
    }
    let repo = cli.repo.clone();
    // The store, once found, lives for the whole command so that what it noticed (a
    // repaired interrupted transition) is reported at the end, whatever the outcome.
    let cell: std::cell::OnceCell<Store> = std::cell::OnceCell::new();
    let find = || -> Result<&Store, Error> {
        if let Some(store) = cell.get() {
            return Ok(store);
        }
        let cwd =
            std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))?;
        let store = match context::git_dir_repository(&cwd)? {
            Some(r) => Store::discover_in(r, &cwd, repo.as_deref(), context::lock_timeout())?,
            None => Store::discover(&cwd, repo.as_deref(), context::lock_timeout())?,
        };
        Ok(cell.get_or_init(|| store))
    };
    // No command acts on a policy that does not parse or contradicts itself; `validate`
    // reports its problems as findings instead.
    let open = || -> Result<(&Store, Policy), Error> {
        let store = find()?;
        let policy = store.policy()?;
        let _ = ID_PREFIX.set(policy.id_prefix.clone());
        Ok((store, policy))
    };
    let result = dispatch(cli.command, &find, &open);
    pager::finish();
    if let Some(store) = cell.get() {
        // A cache: failing to keep it costs the next run time, nothing else.
        let _ = store.keep_proven_signatures();
        for notice in store.take_notices() {
            eprintln!("{}", chg::text::one_line(&notice));
        }
    }
    result
}

type Find<'a> = dyn Fn() -> Result<&'a Store, Error> + 'a;
type Open<'a> = dyn Fn() -> Result<(&'a Store, Policy), Error> + 'a;

fn dispatch<'a>(command: Command, find: &Find<'a>, open: &Open<'a>) -> CmdResult {
    match command {
        Command::Init(a) => misc::init(a),
        Command::Completions(a) => misc::completions(a),
        Command::Man(a) => misc::man(a),
        Command::Schema(a) => misc::schema(find().ok(), a),
        Command::New(a) => {
            let (store, policy) = open()?;
            new::run(store, &policy, *a)
        }
        Command::Submit(a) => transitions::submit(open()?.0, a),
        Command::Approve(a) => transitions::approve(open()?.0, a),
        Command::Reject(a) => transitions::reject(open()?.0, a),
        Command::Withdraw(a) => transitions::withdraw(open()?.0, a),
        Command::Set(a) => {
            let (store, policy) = open()?;
            transitions::set(store, &policy, a)
        }
        Command::Edit(a) => edit::run(open()?.0, a),
        Command::Schedule(a) => {
            let (store, policy) = open()?;
            transitions::schedule(store, &policy, a)
        }
        Command::Implement(a) => transitions::implement(open()?.0, a),
        Command::Close(a) => transitions::close(open()?.0, a),
        Command::Cancel(a) => transitions::cancel(open()?.0, a),
        Command::Renumber(a) => transitions::renumber(open()?.0, a),
        Command::Sync(a) => sync::run(open()?.0, a),
        Command::Templates(a) => policy::templates(&open()?.1, a),
        Command::Policy(a) => {
            let (store, policy) = open()?;
            policy::run(store, &policy, a)
        }
        Command::Show(a) => {
            let (store, policy) = open()?;
            show::show(store, &policy, a)
        }
        Command::List(a) => {
            let (store, policy) = open()?;
            show::list(store, &policy, a)
        }
        Command::Log(a) => show::log(open()?.0, a),
        Command::Validate(a) => validate::run(find()?, a),
        Command::Gate(a) => {
            let (store, policy) = open()?;
            plan::gate(store, &policy, a)
        }
        Command::Calendar(a) => {
            let (store, policy) = open()?;
            plan::calendar(store, &policy, a)
        }
        Command::Cab(a) => {
            let (store, policy) = open()?;
            plan::cab(store, &policy, a)
        }
        Command::Report(a) => {
            let (store, policy) = open()?;
            report::run(store, &policy, a)
        }
        Command::Audit(a) => audit::run(find()?, a),
    }
}

/// The exit code of an error (SPEC section 8), decided here and nowhere else.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Refused(_) | Error::Findings(_) => 1,
        Error::Usage(_)
        | Error::Ambiguous { .. }
        | Error::Malformed(_)
        | Error::Invalid { .. }
        | Error::UnknownId(_)
        | Error::NoStore(_)
        | Error::NoIdentity
        | Error::NoSigningKey(_)
        | Error::Dirty(_) => 2,
        Error::Conflict(_)
        | Error::Locked(_)
        | Error::Git(_)
        | Error::Io { .. }
        | Error::Internal(_) => 3,
    }
}

/// What the person can do about an error, in the CLI's words (flags, commands, variables);
/// the library's own hint where the CLI has none.
fn hint(e: &Error) -> Option<String> {
    Some(match e {
        Error::NoStore(_) => {
            "create one with `chg init`, or name one with --repo PATH or CHG_REPO".into()
        }
        Error::NoIdentity => "set one with `git config --global user.name \"Your Name\"` and `git config --global user.email you@example.com` (or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)".into(),
        Error::Locked(_) => "try again (or raise CHG_LOCK_TIMEOUT)".into(),
        Error::NoSigningKey(_) => "give your SSH key: `--signing-key ~/.ssh/id_ed25519` or CHG_SIGNING_KEY for this run, or `git config user.signingkey ~/.ssh/id_ed25519.pub` (a key file, a public key whose private half is in ssh-agent, or key::ssh-ed25519 AAAA…)".into(),
        Error::Ambiguous { what: "role", .. } => "choose one with --role".into(),
        Error::Ambiguous { what: "file", .. } => "say which one moves with --file".into(),
        Error::Refused(r) => match r.rule {
            chg::rules::REVIEW_MISSING => "add --review TEXT".into(),
            "implemented-outside-schedule" if r.message.ends_with("has no schedule") => {
                let id = r.message.split_whitespace().next().unwrap_or("ID");
                format!("set one with `chg schedule {id} --start TIME --end TIME`")
            }
            "sync-stale" => "to sync everything else without it: chg sync --drop-stale".into(),
            _ => return r.hint.clone(),
        },
        _ => return None,
    })
}

/// Prints an error: one clear sentence first (with what to do about it), then details
/// (findings) one per line.
fn report(e: &Error) {
    let mut text = match hint(e) {
        Some(h) => format!("chg: error: {}; {h}\n", chg::text::one_line(&e.to_string())),
        None => format!("chg: error: {}\n", chg::text::one_line(&e.to_string())),
    };
    if let Error::Invalid { findings, .. } | Error::Findings(findings) = e {
        for f in findings {
            text.push_str(&format!("  {f}\n"));
        }
    }
    let _ = std::io::stderr()
        .lock()
        .write_all(chg::text::terminal_safe(&text).as_bytes());
}

/// Writes to stdout; a closed pipe (`chg list | head`) is not an error.
fn out(text: &str) -> Result<(), Error> {
    out_unfiltered(&chg::text::terminal_safe(text))
}

/// [`out`] without the terminal filter, for text already made safe.
fn out_unfiltered(text: &str) -> Result<(), Error> {
    if pager::hold(text.as_bytes()) {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}

/// How people read times, the same in `show`, `list`, `log`, `calendar` and `cab`: in the
/// local zone to the minute, `2025-03-10 11:00` (whether or not that zone is UTC); with
/// `--utc`, RFC 3339 as the files hold them (to copy into a flag). JSON is always RFC 3339.
pub(crate) struct Times {
    /// None with --utc.
    tz: Option<jiff::tz::TimeZone>,
}

impl Times {
    pub(crate) fn new(utc: bool) -> Times {
        Times {
            tz: (!utc).then(jiff::tz::TimeZone::system),
        }
    }

    /// A moment: `2025-03-10 11:00`.
    pub(crate) fn at(&self, t: Timestamp) -> String {
        match &self.tz {
            Some(tz) => t
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string(),
            None => chg::model::format_timestamp(t),
        }
    }

    /// A day: `2025-03-10`.
    pub(crate) fn day(&self, t: Timestamp) -> String {
        let tz = self.tz.clone().unwrap_or(jiff::tz::TimeZone::UTC);
        t.to_zoned(tz).strftime("%Y-%m-%d").to_string()
    }

    /// A window: `2025-03-13 10:00-12:00` when it ends the day it starts; whole days
    /// (a freeze) as `2025-12-20 to 2026-01-04`; else both ends in full.
    pub(crate) fn span(&self, start: Timestamp, end: Timestamp) -> String {
        let Some(tz) = &self.tz else {
            return format!("{} to {}", self.at(start), self.at(end));
        };
        let (s, e) = (start.to_zoned(tz.clone()), end.to_zoned(tz.clone()));
        let midnight = |z: &jiff::Zoned| z.time() == jiff::civil::Time::midnight();
        if s.date() == e.date() {
            format!("{}-{}", self.at(start), e.strftime("%H:%M"))
        } else if midnight(&s) && midnight(&e) {
            format!("{} to {}", s.date(), e.date())
        } else {
            format!("{} to {}", self.at(start), self.at(end))
        }
    }
}

/// How long ago (or ahead) `t` is from `now`, as people say it: "3 hours ago", "in 2 days".
pub(crate) fn ago(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    let (n, unit) = match secs.unsigned_abs() {
        0..60 => return "just now".into(),
        s @ 60..3600 => (s / 60, "minute"),
        s @ 3600..86_400 => (s / 3600, "hour"),
        s @ 86_400..2_592_000 => (s / 86_400, "day"),
        // Twelve 30-day months fall short of a year: say 11 months, not 12.
        s @ 2_592_000..31_536_000 => ((s / 2_592_000).min(11), "month"),
        s => (s / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if secs > 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

/// [`ago`] in a table's few columns: `3h ago`, `2d ago`, `in 4d`, `2mo ago`.
pub(crate) fn ago_short(t: Timestamp, now: Timestamp) -> String {
    let long = ago(t, now);
    let mut words = long.split(' ');
    let (future, n, unit) = match (words.next(), words.next(), words.next()) {
        (Some("in"), Some(n), Some(u)) => (true, n, u),
        (Some(n), Some(u), _) => (false, n, u),
        _ => return long,
    };
    let unit = match unit.trim_end_matches('s') {
        "minute" => "m",
        "hour" => "h",
        "day" => "d",
        "month" => "mo",
        "year" => "y",
        _ => return long,
    };
    if future {
        format!("in {n}{unit}")
    } else {
        format!("{n}{unit} ago")
    }
}

/// The store's id prefix, once its policy is read (for ids given as `3` or `2026-3`).
static ID_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Parses an id argument before it touches the file system: `CHG-2026-003` as written, or
/// forgiving as people type it: any case, any zero-padding (`chg-2026-3`), `2026-3` for that
/// year's change 3, `3` for this year's.
fn parse_id(text: &str) -> Result<chg::model::ChangeId, Error> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    let prefix = ID_PREFIX.get().map_or("CHG", String::as_str).to_owned();
    let parts: Vec<&str> = text.trim().split('-').collect();
    let this_year = || -> Result<String, Error> {
        Ok(context::now()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .year()
            .to_string())
    };
    let (prefix, year, number) = match parts.as_slice() {
        [n] if digits(n) => (prefix, this_year()?, *n),
        [y, n] if y.len() == 4 && digits(y) && digits(n) => (prefix, y.to_string(), *n),
        [p, y, n] if y.len() == 4 && digits(y) && digits(n) => {
            (p.to_ascii_uppercase(), y.to_string(), *n)
        }
        _ => {
            let why: String = text.parse::<chg::model::ChangeId>().unwrap_err();
            return Err(Error::Usage(format!(
                "{why}; a number alone (3) is this year's change, 2026-3 that year's"
            )));
        }
    };
    let (year, number) = (year.parse().unwrap_or(0), number.parse().unwrap_or(0));
    chg::model::ChangeId::new(&prefix, year, number).map_err(|_| {
        Error::Usage(format!(
            "`{text}` is not a change id (like CHG-2025-001, 2025-1 or 1)"
        ))
    })
}

/// Whether a person is at the keyboard (prompts and editors are possible).
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The changes that could be read, warning on stderr about the others (`what` says what
/// they are left out of: "counted", "checked for conflicts").
fn readable<'a>(all: &'a [chg::store::Loaded], what: &str) -> Vec<&'a chg::model::ChangeRequest> {
    readable_files(all, what)
        .into_iter()
        .map(|l| l.change())
        .collect()
}

/// The files that decoded; a warning on stderr counts the others.
fn readable_files<'a>(all: &'a [chg::store::Loaded], what: &str) -> Vec<&'a chg::store::Loaded> {
    let unreadable = all.iter().filter(|l| !l.decoded.parsed).count();
    if unreadable > 0 {
        eprintln!(
            "chg: warning: {unreadable} change file(s) could not be read and are not {what}; run `chg validate`"
        );
    }
    all.iter().filter(|l| l.decoded.parsed).collect()
}

/// A JSON document on stdout.
fn out_json<T: serde::Serialize>(value: &T) -> Result<(), Error> {
    let value = serde_json::to_value(value)
        .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?;
    out(&json::shape(value)?)
}

/// A time flag (`--since`, `--until`, `--from`, `--to`, `--at`, `--for`), as every one of
/// them takes it: an RFC 3339 time; a date (its midnight UTC) or a month (its first day);
/// a local wall-clock time (2025-01-28T03:00); `now`, `today` (midnight UTC); or a time
/// relative to now (`+2h`, `-7d`).
pub(crate) fn parse_bound(text: &str) -> Result<Timestamp, Error> {
    let now = context::now()?;
    let midnight = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    };
    let found = match text {
        "now" => Some(now),
        "today" => midnight(now.to_zoned(jiff::tz::TimeZone::UTC).date()),
        _ => None,
    };
    if let Some(t) = found {
        return Ok(t);
    }
    for (sign, rest) in [(1, text.strip_prefix('+')), (-1, text.strip_prefix('-'))] {
        if let Some(d) = rest {
            let d: chg::model::Duration = d.parse().map_err(Error::Usage)?;
            let span = if sign > 0 {
                d.to_signed()
            } else {
                -d.to_signed()
            };
            return now
                .checked_add(span)
                .map_err(|e| Error::Usage(format!("`{text}`: {e}")));
        }
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    // A date alone is exactly `YYYY-MM-DD`: jiff's date parser also takes a date with a
    // time and drops the time, which recorded 10:30 local as midnight UTC.
    if let Some(t) = text
        .parse::<jiff::civil::Date>()
        .ok()
        .filter(|_| text.len() == 10)
        .and_then(midnight)
    {
        return Ok(t);
    }
    if let Some(t) = format!("{text}-01")
        .parse::<jiff::civil::Date>()
        .ok()
        .filter(|_| text.len() == 7)
        .and_then(midnight)
    {
        return Ok(t);
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::system())
    {
        return Ok(z.timestamp());
    }
    Err(Error::Usage(format!(
        "`{text}` is not a time (use 2025-01-31, 2025-01, 2025-01-31T02:00:00Z, local 2025-01-31T03:00, now, today, +2h or -7d)"
    )))
}

pub(crate) use chg::report::csv_field;

/// The short form of a commit id.
fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Writes a table where stdout goes (aligned at a terminal, tab-separated when piped),
/// with `summary` (a count) on stderr so piped data stays data.
fn out_table(grid: &grid::Grid, summary: Option<String>) -> Result<(), Error> {
    out_unfiltered(&grid.render(grid::target()))?;
    if let Some(s) = summary {
        eprintln!("{s}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn how_long_ago_as_people_say_it() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let at = |t: &str| super::ago(t.parse().unwrap(), now);
        assert_eq!(at("2026-12-02T11:59:30Z"), "just now");
        assert_eq!(at("2026-12-02T11:59:00Z"), "1 minute ago");
        assert_eq!(at("2026-12-02T09:00:00Z"), "3 hours ago");
        assert_eq!(at("2026-11-30T12:00:00Z"), "2 days ago");
        assert_eq!(at("2026-12-02T14:00:00Z"), "in 2 hours");
        assert_eq!(at("2024-12-01T12:00:00Z"), "2 years ago");
    }

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

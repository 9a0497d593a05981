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
mod notify;
mod pager;
mod plan;
mod policy;
mod prompt;
mod report;
mod serve;
mod show;
mod sign;
mod sync;
mod transitions;
mod ui;
mod validate;

use std::io::{IsTerminal, Write};

use std::path::PathBuf;
use std::process::ExitCode;
use ui::Ui;

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
    Deploy(transitions::DeployArgs),
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
    Notify(notify::NotifyArgs),
    Serve(serve::ServeArgs),
    Token(serve::TokenArgs),
    Schema(misc::SchemaArgs),
    Completions(misc::CompletionsArgs),
    Man(misc::ManArgs),
    /// Runs the read summary's file-system monitor (chg starts it when `chg.fsmonitor` is
    /// true).
    #[command(hide = true)]
    Monitor(misc::MonitorArgs),
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
    // Reading commands page at a terminal; commands that prompt or act do not.
    let reads = matches!(
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
    );
    let ui = Ui::new(cli.color, cli.signing_key.clone(), reads && !cli.no_pager);
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
        let mut store = match context::git_dir_repository(&cwd)? {
            Some(r) => Store::discover_in(r, &cwd, repo.as_deref(), context::lock_timeout())?,
            None => Store::discover(&cwd, repo.as_deref(), context::lock_timeout())?,
        };
        // As git's core.fsmonitor: queries ask a watcher what changed (Linux only).
        if cfg!(target_os = "linux")
            && gitconfig::GitConfig::of(Some(store.repo()), None).bool("chg.fsmonitor")
                == Some(true)
        {
            store.use_monitor(Box::new(misc::start_monitor));
        }
        Ok(cell.get_or_init(|| store))
    };
    // No command acts on a policy that does not parse or contradicts itself; `validate`
    // reports its problems as findings instead.
    let open = || -> Result<(&Store, std::sync::Arc<Policy>), Error> {
        let store = find()?;
        let policy = store.policy()?;
        ui.set_id_prefix(&policy.id_prefix);
        Ok((store, policy))
    };
    let result = dispatch(&ui, cli.command, &find, &open);
    ui.finish();
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
type Open<'a> = dyn Fn() -> Result<(&'a Store, std::sync::Arc<Policy>), Error> + 'a;

fn dispatch<'a>(ui: &Ui, command: Command, find: &Find<'a>, open: &Open<'a>) -> CmdResult {
    match command {
        Command::Init(a) => misc::init(ui, a),
        Command::Completions(a) => misc::completions(ui, a),
        Command::Man(a) => misc::man(ui, a),
        Command::Monitor(a) => misc::monitor(a),
        Command::Schema(a) => misc::schema(ui, find().ok(), a),
        Command::New(a) => {
            let (store, policy) = open()?;
            new::run(ui, store, &policy, *a)
        }
        Command::Submit(a) => transitions::submit(ui, open()?.0, a),
        Command::Approve(a) => transitions::approve(ui, open()?.0, a),
        Command::Reject(a) => transitions::reject(ui, open()?.0, a),
        Command::Withdraw(a) => transitions::withdraw(ui, open()?.0, a),
        Command::Set(a) => {
            let (store, policy) = open()?;
            transitions::set(ui, store, &policy, a)
        }
        Command::Edit(a) => edit::run(ui, open()?.0, a),
        Command::Schedule(a) => {
            let (store, policy) = open()?;
            transitions::schedule(ui, store, &policy, a)
        }
        Command::Implement(a) => transitions::implement(ui, open()?.0, a),
        Command::Close(a) => transitions::close(ui, open()?.0, a),
        Command::Cancel(a) => transitions::cancel(ui, open()?.0, a),
        Command::Deploy(a) => transitions::deploy(ui, open()?.0, a),
        Command::Renumber(a) => transitions::renumber(ui, open()?.0, a),
        Command::Sync(a) => sync::run(ui, open()?.0, a),
        Command::Templates(a) => policy::templates(ui, &open()?.1, a),
        Command::Policy(a) => {
            let (store, policy) = open()?;
            policy::run(ui, store, &policy, a)
        }
        Command::Show(a) => {
            let (store, policy) = open()?;
            show::show(ui, store, &policy, a)
        }
        Command::List(a) => {
            let (store, policy) = open()?;
            show::list(ui, store, &policy, a)
        }
        Command::Log(a) => show::log(ui, open()?.0, a),
        Command::Validate(a) => validate::run(ui, find()?, a),
        Command::Gate(a) => {
            let (store, policy) = open()?;
            plan::gate(ui, store, &policy, a)
        }
        Command::Calendar(a) => {
            let (store, policy) = open()?;
            plan::calendar(ui, store, &policy, a)
        }
        Command::Cab(a) => {
            let (store, policy) = open()?;
            plan::cab(ui, store, &policy, a)
        }
        Command::Report(a) => {
            let (store, policy) = open()?;
            report::run(ui, store, &policy, a)
        }
        Command::Audit(a) => audit::run(ui, find()?, a),
        Command::Notify(a) => {
            let (store, policy) = open()?;
            notify::run(ui, store, &policy, a)
        }
        Command::Serve(a) => serve::serve(ui, open()?.0, a),
        Command::Token(a) => serve::token(ui, find()?, a),
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
        Error::Refused(r) => match &r.remedy {
            Some(chg::Remedy::Review) => "add --review TEXT".into(),
            Some(chg::Remedy::Schedule(id)) => {
                format!("set one with `chg schedule {id} --start TIME --end TIME`")
            }
            Some(chg::Remedy::DropStale) => {
                "to sync everything else without it: chg sync --drop-stale".into()
            }
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

/// Parses an id argument before it touches the file system: `CHG-2026-003` as written, or
/// forgiving as people type it: any case, any zero-padding (`chg-2026-3`), `2026-3` for that
/// year's change 3, `3` for this year's (`now`'s), with the store's `prefix`.
fn parse_id_with(
    text: &str,
    prefix: &str,
    now: impl FnOnce() -> Result<Timestamp, Error>,
) -> Result<chg::model::ChangeId, Error> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    let prefix = prefix.to_owned();
    let parts: Vec<&str> = text.trim().split('-').collect();
    let this_year = || -> Result<String, Error> {
        Ok(now()?.to_zoned(jiff::tz::TimeZone::UTC).year().to_string())
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
    warn_unreadable(all.iter().filter(|l| !l.decoded.parsed).count(), what);
    all.iter().filter(|l| l.decoded.parsed).collect()
}

/// The warning that `unreadable` change files are not `what` (listed, counted, ...).
fn warn_unreadable(unreadable: usize, what: &str) {
    if unreadable > 0 {
        eprintln!(
            "chg: warning: {unreadable} change file(s) could not be read and are not {what}; run `chg validate`"
        );
    }
}

/// A time flag (`--since`, `--until`, `--from`, `--to`, `--at`, `--for`), as every one of
/// them takes it: an RFC 3339 time; a date (its midnight UTC) or a month (its first day);
/// a local wall-clock time (2025-01-28T03:00); `now`, `today` (midnight UTC); or a time
/// relative to now (`+2h`, `-7d`). Anything but an RFC 3339 time with its offset and `now`
/// is echoed on stderr as chg understood it, in the local zone and in UTC: a time read
/// another way than meant is seen before it matters. Relative times count from `now`,
/// the run's instant.
pub(crate) fn parse_bound_at(text: &str, now: Timestamp) -> Result<Timestamp, Error> {
    let t = read_time_at(text, now, local_zone)?;
    if text != "now" && text.parse::<Timestamp>().is_err() {
        eprintln!("chg: `{}` is {}", chg::text::one_line(text), understood(t));
    }
    Ok(t)
}

/// A time as chg understood it: the local zone's wall clock and abbreviation, then UTC,
/// `2031-02-03 10:30 CET (2031-02-03T09:30:00Z)`.
pub(crate) fn understood(t: Timestamp) -> String {
    let local = t.to_zoned(local_zone().unwrap_or(jiff::tz::TimeZone::UTC));
    format!(
        "{} ({})",
        local.strftime("%Y-%m-%d %H:%M %Z"),
        chg::model::format_timestamp(t)
    )
}

/// The local zone (`TZ`, else the system's). A `TZ` that chg cannot read is an error, not
/// UTC in disguise: a local time read in the wrong zone would be recorded wrong.
pub(crate) fn local_zone() -> Result<jiff::tz::TimeZone, Error> {
    jiff::tz::TimeZone::try_system()
        .ok()
        .filter(|tz| tz.iana_name() != Some("Etc/Unknown"))
        .ok_or_else(|| {
            Error::Usage(format!(
                "TZ={} is not a time zone chg can read, so a local time cannot be placed; set an IANA zone (TZ=Europe/Berlin), a POSIX rule with its transitions, or give the time with its offset (2025-01-31T03:00:00+01:00)",
                std::env::var("TZ").unwrap_or_default()
            ))
        })
}

/// A time flag at `now`, with the local zone from `zone` (asked only for a wall-clock
/// time): every form a time flag takes, in one pure function.
fn read_time_at(
    text: &str,
    now: Timestamp,
    zone: impl FnOnce() -> Result<jiff::tz::TimeZone, Error>,
) -> Result<Timestamp, Error> {
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
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        let tz = zone()?;
        // A wall-clock time the clocks skip or pass twice (daylight saving) is refused
        // rather than moved: the window must be the one the person meant.
        return tz
            .to_ambiguous_zoned(dt)
            .unambiguous()
            .map(|z| z.timestamp())
            .map_err(|_| {
                Error::Usage(format!(
                    "`{text}` does not name one moment in {} (the clocks skip or repeat that hour); give it with its offset, like {}",
                    tz.iana_name().unwrap_or("the local zone"),
                    dt.to_zoned(tz.clone())
                        .map(|z| z.timestamp().to_string())
                        .unwrap_or_else(|_| "2025-03-30T01:30:00Z".into())
                ))
            });
    }
    Err(Error::Usage(format!(
        "`{text}` is not a time (use 2025-01-31, 2025-01, 2025-01-31T02:00:00Z, local 2025-01-31T03:00, now, today, +2h or -7d)"
    )))
}

/// The short form of a commit id.
fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
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
    use proptest::prelude::*;

    fn zone(name: &'static str) -> impl FnOnce() -> Result<jiff::tz::TimeZone, Error> {
        move || Ok(jiff::tz::TimeZone::get(name).unwrap())
    }

    /// A wall-clock time away from any daylight-saving change, and a zone.
    fn wall_clock() -> impl Strategy<Value = (jiff::civil::DateTime, &'static str)> {
        (
            2000i16..2090,
            1i8..=12,
            1i8..=28,
            0i8..24,
            0i8..60,
            0i8..60,
            prop::sample::select(vec![
                "UTC",
                "Europe/Berlin",
                "America/New_York",
                "Asia/Kolkata",
                "Australia/Lord_Howe",
                "Pacific/Chatham",
            ]),
        )
            .prop_map(|(y, mo, d, h, mi, s, z)| (jiff::civil::datetime(y, mo, d, h, mi, s, 0), z))
            .prop_filter("one moment in its zone", |(dt, z)| {
                jiff::tz::TimeZone::get(z)
                    .unwrap()
                    .to_ambiguous_zoned(*dt)
                    .unambiguous()
                    .is_ok()
            })
    }

    proptest! {
        /// Every way to write a local wall-clock time is that time in the local zone, never
        /// midnight, never UTC in disguise (issue 24: 10:30 was recorded as 00:00Z).
        #[test]
        fn a_local_time_in_any_form_is_that_time_in_the_local_zone((dt, z) in wall_clock()) {
            let want = jiff::tz::TimeZone::get(z).unwrap().to_zoned(dt).unwrap().timestamp();
            let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
            let date = dt.date();
            let (h, m, sec) = (dt.hour(), dt.minute(), dt.second());
            let mut forms = vec![
                format!("{date}T{h:02}:{m:02}:{sec:02}"),
                format!("{date} {h:02}:{m:02}:{sec:02}"),
            ];
            if sec == 0 {
                forms.push(format!("{date}T{h:02}:{m:02}"));
                forms.push(format!("{date} {h:02}:{m:02}"));
            }
            for form in forms {
                prop_assert_eq!(read_time_at(&form, now, zone(z)).unwrap(), want, "{}", form);
            }
            // With an offset or Z, the zone does not matter.
            let utc = want.to_string();
            prop_assert_eq!(read_time_at(&utc, now, zone(z)).unwrap(), want);
            let offset = want.to_zoned(jiff::tz::TimeZone::get(z).unwrap()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
            prop_assert_eq!(read_time_at(&offset, now, zone(z)).unwrap(), want, "{}", offset);
        }

        /// A date is its midnight UTC and a month its first day, in every zone (periods are
        /// UTC, like the store's month folders); the local zone is not even asked.
        #[test]
        fn a_date_or_month_is_its_utc_midnight((dt, _z) in wall_clock()) {
            let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
            let no_zone = || -> Result<jiff::tz::TimeZone, Error> { panic!("asked for the zone") };
            let date = dt.date();
            let want = date.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
            prop_assert_eq!(read_time_at(&date.to_string(), now, no_zone).unwrap(), want);
            let month = format!("{:04}-{:02}", date.year(), date.month());
            let first = date.first_of_month().to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp();
            prop_assert_eq!(read_time_at(&month, now, no_zone).unwrap(), first);
        }

        /// `+N` and `-N` with a unit count from now.
        #[test]
        fn a_relative_time_counts_from_now(n in 0i64..10_000, unit in prop::sample::select(vec![("m", 60i64), ("h", 3600), ("d", 86_400)])) {
            let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
            let no_zone = || -> Result<jiff::tz::TimeZone, Error> { panic!("asked for the zone") };
            let later = read_time_at(&format!("+{n}{}", unit.0), now, no_zone).unwrap();
            prop_assert_eq!(later.as_second() - now.as_second(), n * unit.1);
            let earlier = read_time_at(&format!("-{n}{}", unit.0), now, no_zone).unwrap();
            prop_assert_eq!(now.as_second() - earlier.as_second(), n * unit.1);
        }
    }

    #[test]
    fn a_skipped_or_repeated_wall_clock_time_is_refused_not_moved() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        for t in ["2031-03-30T02:30", "2031-10-26 02:30"] {
            let e = read_time_at(t, now, zone("Europe/Berlin")).unwrap_err();
            assert!(e.to_string().contains("does not name one moment"), "{e}");
        }
        for bad in [
            "2031-02-03 25:00",
            "2031-02-30",
            "yesterday",
            "2031-02-03T10:30 CET",
        ] {
            assert!(read_time_at(bad, now, zone("UTC")).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

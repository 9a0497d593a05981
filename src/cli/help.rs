//! Help for the person who runs each command: an EXAMPLES section on every `--help`, and
//! man pages (`chg(1)` with EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES, and one page per
//! command) written by `chg man --out DIR`.

use clap::CommandFactory;

use super::Cli;

/// Examples by command path (`policy propose` for a nested one).
const EXAMPLES: &[(&str, &str)] = &[
    (
        "init",
        "chg init                     # this folder becomes a store (git init if needed)\nchg init ops/changes          # a store in a subfolder of this repository",
    ),
    (
        "new",
        "chg new --title \"Rotate TLS certificates\" --description \"Replace the wildcard certificate\" \\\n  --business-justification \"It expires in 10 days\" --change-type configuration --priority medium \\\n  --risk-level low --affected-systems edge-proxy --implementation-plan \"Upload and reload\" \\\n  --rollback-plan \"Reload the previous certificate\"\nchg new --template rotate-tls-certificate --title \"Renew the edge certificate\" --system edge-proxy\nchg new --from change.yaml --priority high   # fields from a file, flags win\nchg new --draft --title \"Idea\"               # incomplete; chg submit later",
    ),
    (
        "submit",
        "chg submit 12                # this year's change 12",
    ),
    (
        "approve",
        "chg approve CHG-2026-012\nchg approve 12 --role change-manager --comment \"Rollback rehearsed\"\nchg approve 12 --condition \"Only after the 02:00 backup\"",
    ),
    ("reject", "chg reject 12 --comment \"Not this quarter\""),
    (
        "withdraw",
        "chg withdraw 12 --comment \"The rollback was not rehearsed after all\"\nchg withdraw 12 --role change-manager --comment \"Approved the wrong change\"",
    ),
    (
        "set",
        "chg set 12 priority=high\nchg set 12 affected_systems=api,billing test_plan=\"Run the smoke suite\"\nchg set 12 impact_scope=           # an empty value clears the field",
    ),
    (
        "edit",
        "chg edit 12                  # in $VISUAL or $EDITOR; checked before it is committed",
    ),
    (
        "schedule",
        "chg schedule 12 --start 2026-12-05T02:00 --end +2h\nchg schedule 12 --start now --end +1h\nchg schedule 12 --next-slot --duration 2h --maintenance-window",
    ),
    (
        "implement",
        "chg implement 12             # inside the schedule, approved, no freeze",
    ),
    (
        "close",
        "chg close 12 --outcome successful\nchg close 12 --outcome rolled_back --review \"Reload failed; rolled back in 4 minutes\"",
    ),
    ("cancel", "chg cancel 12 --reason \"Superseded by 2026-14\""),
    (
        "deploy",
        "chg gate 12 && ./deploy.sh && chg deploy 12 --commit \"$GITHUB_SHA\" --environment production \\\n  --run \"$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID\"",
    ),
    (
        "renumber",
        "chg renumber CHG-2026-012 --file changes/2026/12/CHG-2026-012.yaml",
    ),
    (
        "policy",
        "chg policy propose --title \"Add carol\" … (the flags of chg new)\nchg policy apply 14",
    ),
    (
        "policy propose",
        "$EDITOR policy/policy.yaml\nchg policy propose --title \"Add carol as change manager\" --description \"Carol joins\" \\\n  --business-justification \"Cover\" --change-type configuration --priority low --risk-level low \\\n  --affected-systems chg --implementation-plan \"chg policy apply\" --rollback-plan \"Propose the old content\"",
    ),
    (
        "policy apply",
        "chg policy apply 14           # once every governance role approved, inside its schedule",
    ),
    ("templates", "chg templates\nchg templates --jq '.[].name'"),
    (
        "sync",
        "chg sync                      # fetch, replay your steps onto origin, push\nchg sync upstream --drop-stale",
    ),
    (
        "show",
        "chg show 12\nchg show 2025-7 --json\nchg show 12 --jq '.missing_roles'",
    ),
    (
        "list",
        "chg list                      # at a terminal: the 30 most recent open changes\nchg list --awaiting-me        # what you can approve now\nchg list --mine --all --sort -requested\nchg list --status approved --type security --format csv > approved.csv\nchg list --jq '.[] | select(.priority == \"critical\") | .id'",
    ),
    ("log", "chg log 12\nchg log 12 --json=action,commit"),
    (
        "validate",
        "chg validate                  # every change and the policy\nchg validate 12 changes/2026/12/CHG-2026-013.yaml\nchg validate --changed-since origin/main --format github   # in a pull request",
    ),
    (
        "gate",
        "chg gate 12 && ./deploy.sh     # exit 0 only when it may be implemented now\nchg gate 12 --at 2026-12-05T02:30:00Z --json",
    ),
    (
        "calendar",
        "chg calendar\nchg calendar --from today --to +30d --format ics > changes.ics",
    ),
    (
        "cab",
        "chg cab                       # today's agenda\nchg cab --for 2026-12-07 --format markdown > agenda.md",
    ),
    (
        "report",
        "chg report --period 2026-Q4\nchg report --since -90d --until now --format markdown > report.md",
    ),
    (
        "audit",
        "chg audit\nchg audit --since 2026-01-01 --exceptions-only --format csv\nchg audit --witness received-commits.txt   # commits your event receivers logged\nchg audit export --period 2026 --out evidence-2026/",
    ),
    (
        "notify",
        "chg notify                    # send what the history and the clock call for, once each\nchg notify --dry-run --base-url https://chg.example.com\nCHG_SMTP_URL=smtps://chg:$PASS@mail.example.com chg notify --json",
    ),
    (
        "audit export",
        "chg audit export --period 2026-Q4 --out pack/\n(cd pack && sha256sum -c SHA256SUMS)\nchg audit export --period 2026-Q4 --out pack/ --deployments deployments.csv",
    ),
    (
        "audit reconcile",
        "chg audit reconcile deployments.csv           # commit,environment,time from the CI/CD system\nchg audit reconcile releases.json --format csv",
    ),
    (
        "serve",
        "chg serve                                     # http://127.0.0.1:8080, behind a TLS proxy\nchg serve --listen 0.0.0.0:8080 --public-url https://chg.example.com --remote origin",
    ),
    (
        "token",
        "chg token create em@example.com --expires 90d > em.token\nchg token list\nchg token revoke tok_6ee3cc071886",
    ),
    (
        "token create",
        "chg token create em@example.com --expires 90d --name \"Em Manager\" > em.token",
    ),
    ("token list", "chg token list\nchg token list --json"),
    ("token revoke", "chg token revoke tok_6ee3cc071886"),
    ("schema", "chg schema > .chg/change.schema.json"),
    (
        "completions",
        "chg completions bash > ~/.local/share/bash-completion/completions/chg\nchg completions zsh > \"${fpath[1]}/_chg\"\nchg completions fish > ~/.config/fish/completions/chg.fish",
    ),
    (
        "man",
        "chg man --out ~/.local/share/man/man1 && man chg-new\nchg man > chg.1",
    ),
];

/// The CLI with an EXAMPLES section on every command that has some.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (path, text) in EXAMPLES {
        let body = format!("Examples:\n{}", indent(text));
        let names: Vec<&str> = path.split(' ').collect();
        cmd = with_sub(cmd, &names, body);
    }
    cmd
}

fn with_sub(cmd: clap::Command, names: &[&str], body: String) -> clap::Command {
    match names {
        [] => cmd.after_help(body),
        [first, rest @ ..] => {
            let rest: Vec<&str> = rest.to_vec();
            cmd.mut_subcommand(*first, move |c| with_sub(c, &rest, body))
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// chg(1)'s own sections, in roff.
const CHG_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
0
Done; or the check found nothing.
.TP
1
The answer is no: validation errors, audit exceptions, a step refused by the policy or the life cycle, a closed gate.
.TP
2
The input is wrong: bad flags, an unknown or malformed id, a malformed file or policy, no store, no identity, no signing key, a change file with uncommitted edits.
.TP
3
Anything else failed: I/O, git, the store lock not released in time, the branch moved while chg worked.
.SH ENVIRONMENT
.TP
CHG_REPO
The store to use, as \fB\-\-repo\fR.
.TP
GIT_AUTHOR_DATE
The time of the action, as git takes it.
.TP
CHG_NOW
The current time (RFC 3339), over everything else, for tests and replays.
.TP
CHG_LOCK_TIMEOUT
Seconds to wait for the store lock (default 30, then exit 3).
.TP
GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL, GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL
Who acts, as git takes them; otherwise user.name and user.email.
.TP
VISUAL, EDITOR
The editor of \fBchg edit\fR.
.TP
NO_COLOR, CLICOLOR_FORCE
Turn colour off, or on when not at a terminal; \fB\-\-color\fR wins.
.TP
the variables the policy's notifications.channels name (url_env, secret_env)
Where \fBchg notify\fR delivers: webhook URLs, smtp:// or smtps:// URLs with credentials, whsec_ signing secrets. Never written in the policy, never printed.
.SH FILES
.TP
policy/policy.yaml
The policy: change types, required fields, roles, approvals, windows, signing, governance, risk.
.TP
policy/allowed_signers
Whose SSH keys may sign records, in OpenSSH's format.
.TP
policy/templates/NAME.yaml
The standard-change catalogue.
.TP
changes/YYYY/MM/ID.yaml
One change request each.
.TP
\&.git/chg/
The store lock, the audit index, kept signature proofs, the policy standing, and the notifications outbox and delivery log (notify/); never committed.
.SH EXAMPLES
.nf
chg new \-\-template rotate\-tls\-certificate \-\-title "Renew the edge certificate" \-\-system edge\-proxy
chg list \-\-awaiting\-me
chg approve 12
chg schedule 12 \-\-start now \-\-end +2h && chg implement 12
chg close 12 \-\-outcome successful
chg gate 12 && ./deploy.sh
chg audit export \-\-period 2026\-Q4 \-\-out pack/
.fi
"#;

/// Every man page: `chg.1`, then `chg-COMMAND.1` (and `chg-policy-propose.1`…).
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let cmd = command();
    let mut pages = Vec::new();
    let mut top = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut top)?;
    man.render_name_section(&mut top)?;
    man.render_synopsis_section(&mut top)?;
    man.render_description_section(&mut top)?;
    man.render_options_section(&mut top)?;
    man.render_subcommands_section(&mut top)?;
    top.extend_from_slice(CHG_SECTIONS.as_bytes());
    man.render_version_section(&mut top)?;
    pages.push(("chg.1".to_owned(), top));
    let mut stack: Vec<(String, clap::Command)> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .map(|c| (format!("chg-{}", c.get_name()), c.clone()))
        .collect();
    while let Some((name, sub)) = stack.pop() {
        for s in sub.get_subcommands().filter(|c| c.get_name() != "help") {
            stack.push((format!("{name}-{}", s.get_name()), s.clone()));
        }
        let sub = sub.name(name.clone()).bin_name(name.replace('-', " "));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    pages.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pages)
}

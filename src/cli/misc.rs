//! `chg init`, `chg completions`, `chg man`.

use std::path::PathBuf;
use std::process::ExitCode;

use chg::store::Store;
use clap::Args;

use super::{CmdResult, short, ui::Ui};

/// Create a store: policy/policy.yaml (the default policy) and changes/, in one commit.
///
/// PATH becomes a git repository first if it is not inside one.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the store (default: the current folder).
    path: Option<PathBuf>,
}

pub fn init(ui: &Ui, a: InitArgs) -> CmdResult {
    let path = match a.path {
        Some(p) => p,
        None => std::env::current_dir()
            .map_err(|e| chg::Error::io("cannot read the current folder", e))?,
    };
    let repo = super::context::git_dir_repository(&path)?;
    // The folder may not exist yet: the repository it will be in is found from the
    // nearest folder that does.
    let absolute = std::env::current_dir()
        .map_err(|e| chg::Error::io("cannot read the current folder", e))?
        .join(&path);
    let existing = absolute
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(&absolute)
        .to_path_buf();
    let ctx = match &repo {
        Some(r) => super::context::for_repo(ui, Some(r))?,
        None if git2::Repository::discover(&existing).is_err() => {
            new_repository_context(ui, &path)?
        }
        None => super::context::for_path(ui, &existing)?,
    };
    let (store, commit) = Store::init(&ctx, &path, repo)?;
    for notice in store.take_notices() {
        eprintln!("{notice}");
    }
    ui.out(&format!(
        "Initialized a chg store in {} (commit {}).\nEdit policy/policy.yaml to name your roles and their members, then file a change with `chg new`.\n",
        store.root().display(),
        short(&commit.to_string())
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The context inside a repository made for the store at `path`: made first, so that the
/// identity is the one git would use there (`includeIf "gitdir:…"` in the user's config),
/// and taken away again when there is none, leaving nothing behind.
fn new_repository_context(ui: &Ui, path: &std::path::Path) -> Result<chg::Context, chg::Error> {
    let existed = path.exists();
    std::fs::create_dir_all(path)
        .map_err(|e| chg::Error::io(format!("cannot create {}", path.display()), e))?;
    // The first branch as git would name it: libgit2 reads `init.defaultBranch` only from
    // the files it finds itself (not GIT_CONFIG_GLOBAL, not `git -c`).
    let mut opts = git2::RepositoryInitOptions::new();
    if let Some(branch) = super::gitconfig::GitConfig::of(None, None).string("init.defaultBranch") {
        opts.initial_head(branch.trim());
    }
    let made = git2::Repository::init_opts(path, &opts);
    let result = made
        .map_err(chg::Error::from)
        .and_then(|r| super::context::for_repo(ui, Some(&r)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(path.join(".git"));
        if !existed {
            let _ = std::fs::remove_dir(path);
        }
    }
    result
}

/// Print static shell completions (bash, zsh, fish, elvish, powershell).
///
/// For completions that know your store (change ids with titles, statuses, change types,
/// roles, systems), let chg answer the shell itself instead, from your shell's startup file:
///
/// bash: echo 'source <(COMPLETE=bash chg)' >> ~/.bashrc
///
/// zsh: echo 'source <(COMPLETE=zsh chg)' >> ~/.zshrc
///
/// fish: echo 'COMPLETE=fish chg | source' >> ~/.config/fish/completions/chg.fish
///
/// The static scripts this command prints complete commands and flags only.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

pub fn completions(ui: &Ui, a: CompletionsArgs) -> CmdResult {
    let mut cmd = super::help::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "chg", &mut buf);
    ui.out(&String::from_utf8_lossy(&buf))?;
    Ok(ExitCode::SUCCESS)
}

/// Print the man page chg(1) (roff), or write every page with --out.
///
/// chg(1) has EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES; each command has a page of its
/// own (chg-new(1), chg-policy-apply(1), …).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write chg.1 and one page per command into this folder (created if needed).
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

pub fn man(ui: &Ui, a: ManArgs) -> CmdResult {
    let pages =
        super::help::man_pages().map_err(|e| chg::Error::io("cannot render the man pages", e))?;
    let Some(dir) = a.out else {
        // chg(1) itself (the pages are sorted by name: `chg-approve.1` comes before it).
        let top = pages
            .iter()
            .find(|(name, _)| name == "chg.1")
            .ok_or_else(|| chg::Error::Internal("no chg.1 page".into()))?;
        ui.out(&String::from_utf8_lossy(&top.1))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| chg::Error::io(format!("cannot create {}", dir.display()), e))?;
    for (name, bytes) in &pages {
        chg::store::commit::atomic_write(&dir.join(name), bytes)?;
    }
    eprintln!(
        "chg: wrote {} man page(s) in {}",
        pages.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Print the JSON Schema (draft 2020-12) of a change file, for editors and other tools.
///
/// Inside a store, the schema uses its policy's change types, roles and required fields;
/// elsewhere, the default policy's.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub fn schema(ui: &Ui, store: Option<&Store>, _: SchemaArgs) -> CmdResult {
    let policy = match store {
        Some(s) => s.policy()?,
        None => std::sync::Arc::new(chg::policy::Policy::default_policy()),
    };
    ui.out_json(&chg::schema::change_schema(&policy))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the read summary's file-system monitor for one store: started in the background
/// by chg itself when `chg.fsmonitor` is true, never by hand.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The store's root folder.
    root: PathBuf,
    /// The store's summary folder (in `.git/chg/summary/`).
    dir: PathBuf,
    /// Seconds without a question after which it exits.
    #[arg(long, default_value_t = 3600)]
    idle: u64,
}

pub fn monitor(a: MonitorArgs) -> CmdResult {
    chg::store::summary::monitor::serve(&a.root, &a.dir, std::time::Duration::from_secs(a.idle))
        .map_err(|e| chg::error::Error::io("running the file-system monitor", e))?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the file-system monitor of the store at `root` (summary folder `dir`) as a
/// process of its own, detached from this one: it outlives the command that started it
/// (its own process group, so a Ctrl-C at the terminal does not reach it).
pub fn start_monitor(root: &std::path::Path, dir: &std::path::Path) -> std::io::Result<()> {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("monitor")
        .arg(root)
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Not waited for: it runs on after this command (init reaps it).
    drop(cmd.spawn()?);
    Ok(())
}

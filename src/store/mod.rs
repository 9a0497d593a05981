//! The git-backed store: where it is, who is acting and when, reading changes, and making
//! exactly one commit per transition.

pub mod commit;
pub mod lock;
mod policy;
mod staged;
pub mod summary;
mod transition;

pub use transition::commit_message;
use transition::{Session, sign_record};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use git2::{ObjectType, Oid, Repository, Signature, Time};
use jiff::Timestamp;

use crate::context::{Context, Identity};
use crate::decode::{self, Decoded};
use crate::edit;
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::layout;
use crate::model::{ChangeId, ChangeRequest, Status};
use crate::policy::{POLICY_PATH, Policy};
use crate::signing::ProvenSignatures;
use crate::trailers::{Action, Trailers};
use crate::validate;
use crate::workflow::{self, Step, Transition};

pub use commit::FileWrite;
pub use policy::RequestedWith;

/// An open store.
pub struct Store {
    repo: Repository,
    /// Sentences for the person, such as a repaired interrupted transition; the caller
    /// decides how to show them (the library prints nothing).
    notices: std::cell::RefCell<Vec<String>>,
    root: PathBuf,
    /// The store folder relative to the work tree, `/`-separated, empty or ending in `/`.
    prefix: String,
    /// Signatures proven in earlier runs (read on first use), and whether the kept copy
    /// must be written anew rather than appended to (missing header, damaged).
    proven: std::sync::OnceLock<(Arc<ProvenSignatures>, bool)>,
    /// The policy last assembled from HEAD, by what it was read from.
    policy_cache: std::cell::RefCell<Option<(PolicyKey, Arc<Policy>)>>,
    /// Starts the read summary's file-system monitor (`chg.fsmonitor`), given the store's
    /// root and the summary folder: set by the binary, which knows how to run itself.
    monitor: Option<Box<summary::StartMonitor>>,
}

/// What HEAD's assembled policy was read from: the `policy/` folder's tree and the allowed
/// signers' blob.
type PolicyKey = (Option<Oid>, Option<Oid>);

/// Past this size the kept proofs are dropped and gathered again (2 million records).
const MAX_PROVEN_BYTES: u64 = 64 << 20;

/// A change read from the work tree.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Path relative to the store (`changes/2025/01/CHG-2025-001.yaml`).
    pub rel: PathBuf,
    /// The raw text.
    pub text: String,
    /// The decoded content.
    pub decoded: Decoded,
}

impl Loaded {
    /// The change.
    pub fn change(&self) -> &ChangeRequest {
        &self.decoded.change
    }
}

/// What a transition did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The change after the step.
    pub change: ChangeRequest,
    /// The step.
    pub transition: Transition,
    /// The commit made.
    pub commit: Oid,
    /// Where the file is, relative to the store.
    pub rel: PathBuf,
    /// Roles whose approval the change still needs, under the policy the step used.
    pub waiting_for: Vec<String>,
    /// Conflicts of a new schedule that the policy lets pass with a warning.
    pub warnings: Vec<crate::conflicts::Conflict>,
}

/// A git signature of `who` at `when`.
pub fn signature(who: &Identity, when: Timestamp) -> Result<Signature<'static>> {
    Ok(Signature::new(
        &who.name,
        &who.email,
        &Time::new(when.as_second(), 0),
    )?)
}

/// Opens the repository that holds `path` as git does. libgit2 takes the git directory's
/// parent for the work tree of a repository whose `.git` is a file naming a git directory
/// elsewhere (`git init --separate-git-dir`, submodules): chg would then have committed its
/// files under the wrong path. Git takes the folder that holds the `.git` file; so does this
/// (unless `core.worktree` says otherwise).
pub fn open_repository(path: &Path) -> Result<Repository> {
    let repo = Repository::discover(path)?;
    let Some(top) = path.ancestors().find(|d| d.join(".git").exists()) else {
        return Ok(repo);
    };
    if repo.is_bare() || !top.join(".git").is_file() || repo.is_worktree() {
        return Ok(repo);
    }
    let configured = repo.config()?.get_path("core.worktree").is_ok();
    let same = |w: &Path| w.canonicalize().ok() == top.canonicalize().ok();
    if !configured && !repo.workdir().is_some_and(same) {
        repo.set_workdir(top, false)?;
    }
    Ok(repo)
}

impl crate::git::Located for Store {
    fn repo(&self) -> &Repository {
        &self.repo
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Store {
    /// Finds the store: `explicit` (named by the caller), else the first folder from `start`
    /// upwards that has `policy/policy.yaml`, stopping at the work tree root. A step that a
    /// killed chg left half done is repaired first, waiting up to `wait` for the store lock.
    ///
    /// Opening is cheap (no file is read but the repository's own), so a server opens one
    /// `Store` per request, on any thread.
    pub fn discover(start: &Path, explicit: Option<&Path>, wait: Duration) -> Result<Store> {
        let from = explicit.unwrap_or(start);
        let from = from
            .canonicalize()
            .map_err(|_| Error::NoStore(from.to_path_buf()))?;
        let repo = open_repository(&from).map_err(|_| Error::NoStore(from.clone()))?;
        Store::discover_in(repo, start, explicit, wait)
    }

    /// [`Store::discover`] in a repository the caller opened (git's `GIT_DIR` and
    /// `GIT_WORK_TREE` name one that discovery would not find).
    pub fn discover_in(
        repo: Repository,
        start: &Path,
        explicit: Option<&Path>,
        wait: Duration,
    ) -> Result<Store> {
        if let Some(path) = explicit {
            let root = path
                .canonicalize()
                .map_err(|_| Error::NoStore(path.to_path_buf()))?;
            if !root.join(POLICY_PATH).is_file() {
                return Err(Error::NoStore(root));
            }
            return Store::at(repo, root, wait);
        }
        let start = start
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot read {}", start.display()), e))?;
        let top = repo
            .workdir()
            .and_then(|w| w.canonicalize().ok())
            .ok_or_else(|| Error::NoStore(start.clone()))?;
        // Outside the work tree `GIT_WORK_TREE` names, git acts on that work tree from its
        // top; so does chg.
        let mut dir = if start.starts_with(&top) {
            start.as_path()
        } else {
            top.as_path()
        };
        loop {
            if dir.join(POLICY_PATH).is_file() {
                // A store inside another store's folder is most likely planted: whoever
                // runs chg from below it would be judged by a policy the outer store's
                // governance never saw. Said on every command found this way.
                let outer = dir
                    .ancestors()
                    .skip(1)
                    .take_while(|p| p.starts_with(&top))
                    .find(|p| p.join(POLICY_PATH).is_file())
                    .map(Path::to_path_buf);
                let store = Store::at(repo, dir.to_path_buf(), wait)?;
                if let Some(outer) = outer {
                    store.notices.borrow_mut().push(format!(
                        "chg: warning: this store ({}) lies inside the store at {}; its policy is not governed by that store's. If you meant the outer store, run chg from its folder or with --repo {}",
                        dir.display(),
                        outer.display(),
                        outer.display()
                    ));
                }
                return Ok(store);
            }
            if dir == top {
                return Err(Error::NoStore(start.clone()));
            }
            match dir.parent() {
                Some(p) if p.starts_with(&top) => dir = p,
                _ => return Err(Error::NoStore(start.clone())),
            }
        }
    }

    fn at(repo: Repository, root: PathBuf, wait: Duration) -> Result<Store> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| Error::Usage("the repository is bare; chg needs a work tree".into()))?
            .canonicalize()
            .map_err(|e| Error::io("cannot read the work tree", e))?;
        let prefix = root
            .strip_prefix(&workdir)
            .map_err(|_| Error::NoStore(root.clone()))?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .map(|c| c + "/")
            .collect::<String>();
        let store = Store {
            repo,
            notices: Default::default(),
            root,
            prefix,
            proven: Default::default(),
            policy_cache: Default::default(),
            monitor: None,
        };
        // A step a killed chg left half done is repaired before anything reads the store,
        // so even read-only commands see it before or after, never in between.
        if commit::interrupted(&store.repo) {
            drop(store.lock(wait)?);
        }
        Ok(store)
    }

    /// Creates a store in `path` (making it a git repository if it is not in one, unless
    /// the caller opened the repository: `repo`) and commits the default policy.
    pub fn init(ctx: &Context, path: &Path, repo: Option<Repository>) -> Result<(Store, Oid)> {
        for t in [ctx.now, ctx.committed_at] {
            crate::context::check_time(t).map_err(Error::Usage)?;
        }
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        let path = path
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if path.join(POLICY_PATH).exists() {
            return Err(Error::Usage(format!(
                "{} already has {POLICY_PATH}: it is a store already",
                path.display()
            )));
        }
        let repo = match repo {
            Some(r) => r,
            None => {
                if Repository::discover(&path).is_err() {
                    Repository::init(&path)?;
                }
                open_repository(&path)?
            }
        };
        let store = Store::at(repo, path, ctx.lock_timeout)?;
        let _lock = store.lock(ctx.lock_timeout)?;
        let policy = crate::policy::default_policy_at(ctx.now);
        let files = [
            FileWrite::write(format!("{}{POLICY_PATH}", store.prefix), policy.as_bytes()),
            FileWrite::write(format!("{}changes/.gitkeep", store.prefix), Vec::new()),
        ];
        let message = format!(
            "chg: init store\n\nCreate the default policy and the changes/ folder.\n\nChg-Action: init\nChg-Actor: {}\n",
            ctx.actor.email
        );
        let head = commit::head_state(&store.repo)?.1;
        let id = store.commit(ctx, &files, &message, head)?;
        Ok((store, id))
    }

    /// Where proven signatures are kept between runs: shared by every worktree of the
    /// repository, never committed or pushed.
    fn proven_path(&self) -> PathBuf {
        self.repo.commondir().join("chg").join("proven-signatures")
    }

    /// The signatures proven in earlier runs of this clone (see [`ProvenSignatures`]).
    pub fn proven_signatures(&self) -> Arc<ProvenSignatures> {
        self.proven
            .get_or_init(|| {
                let path = self.proven_path();
                let bytes = std::fs::metadata(&path)
                    .ok()
                    .filter(|m| m.is_file() && m.len() <= MAX_PROVEN_BYTES)
                    .and_then(|_| std::fs::read(&path).ok());
                match bytes.as_deref().map(ProvenSignatures::from_bytes) {
                    Some(Some(p)) => (Arc::new(p), false),
                    _ => (Arc::default(), true),
                }
            })
            .0
            .clone()
    }

    /// Keeps the signatures this run proved for the next runs. Losing them only costs
    /// time, so a failure here is the caller's to ignore.
    pub fn keep_proven_signatures(&self) -> Result<()> {
        use std::io::Write;
        let Some((proven, rewrite)) = self.proven.get() else {
            return Ok(());
        };
        let added = proven.added_bytes();
        if added.is_empty() {
            return Ok(());
        }
        let path = self.proven_path();
        if *rewrite {
            return commit::atomic_write(&path, &[ProvenSignatures::HEADER, &added].concat());
        }
        // Appends are whole records in one write, so concurrent runs interleave records,
        // never bytes of one.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        file.write_all(&added)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }

    /// Takes the notices gathered so far (see [`Store::lock`]).
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut self.notices.borrow_mut())
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store folder relative to the work tree, `/`-separated: empty, or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Has queries ask a file-system monitor what changed instead of looking at every
    /// change file (see [`summary`]); `start` runs one for the store at the given root and
    /// summary folder, in the background.
    pub fn use_monitor(&mut self, start: Box<summary::StartMonitor>) {
        self.monitor = Some(start);
    }

    /// The git repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// A store-relative path as a repository path (`/`-separated).
    pub fn repo_path(&self, rel: &Path) -> String {
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        format!("{}{}", self.prefix, rel.join("/"))
    }

    /// Takes the store lock and repairs any transition a crashed process left half done; the
    /// repair is reported through [`Store::take_notices`].
    pub fn lock(&self, wait: Duration) -> Result<lock::StoreLock> {
        let l = lock::acquire(&self.repo.commondir().join("chg").join("lock"), wait)?;
        if let Some(msg) = commit::recover(&self.repo)? {
            self.notices.borrow_mut().push(msg);
        }
        Ok(l)
    }

    /// The file of a change, relative to the store: the id's year folder first (twelve
    /// lookups), then a search for files filed in the wrong place.
    pub fn find(&self, id: &ChangeId) -> Result<PathBuf> {
        if let Some(rel) = layout::candidate_paths(id).find(|rel| self.root.join(rel).is_file()) {
            return Ok(rel);
        }
        let name = format!("{id}.yaml");
        let files =
            layout::change_files(&self.root).map_err(|e| Error::io("cannot read changes/", e))?;
        files
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
            .and_then(|p| p.strip_prefix(&self.root).ok().map(Path::to_path_buf))
            .ok_or_else(|| Error::UnknownId(id.to_string()))
    }

    /// The bytes of the change file `rel`: a regular file (not a link, which could point
    /// outside the repository) within the size limit.
    fn read_change(&self, rel: &Path) -> Result<Vec<u8>> {
        let abs = self.root.join(rel);
        if abs
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(Error::Malformed(Finding::error(
                rel.display().to_string(),
                None,
                "symlink",
                "change files must be regular files, not symbolic links",
            )));
        }
        decode::read_bounded(&abs)
            .map_err(|e| Error::io(format!("cannot read {}", rel.display()), e))
    }

    /// Reads a change; a file that cannot be decoded is an error with its first finding.
    pub fn load(&self, id: &ChangeId) -> Result<Loaded> {
        let rel = self.find(id)?;
        let bytes = self.read_change(&rel)?;
        let file = rel.display().to_string();
        let decoded = decode::decode_bytes(&file, &bytes);
        if let Some(f) = decoded.findings.iter().find(|f| f.is_error()) {
            return Err(Error::Malformed(f.clone()));
        }
        let text = String::from_utf8(bytes).unwrap_or_default();
        Ok(Loaded { rel, text, decoded })
    }

    /// Every change file, decoded in parallel. Undecodable files come back with findings.
    pub fn load_all(&self) -> Result<Vec<Loaded>> {
        self.load_where(|_| true)
    }

    /// The change files `keep` accepts, and every undecodable one (with its findings),
    /// decoded in parallel; the others are dropped as soon as they are read, so a filtered
    /// listing of a large store holds only what it shows.
    pub fn load_where(&self, keep: impl Fn(&ChangeRequest) -> bool + Sync) -> Result<Vec<Loaded>> {
        use rayon::prelude::*;
        let files =
            layout::change_entries(&self.root).map_err(|e| Error::io("cannot read changes/", e))?;
        let root = &self.root;
        Ok(files
            .par_iter()
            .filter(|(p, regular)| *regular && p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|(p, _)| {
                use std::io::Read;
                let rel = p.strip_prefix(root).ok()?.to_path_buf();
                // Read at most one byte past the limit: no separate stat per file.
                let mut bytes = Vec::with_capacity(4096);
                std::fs::File::open(p)
                    .ok()?
                    .take(decode::MAX_FILE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .ok()?;
                if bytes.len() as u64 > decode::MAX_FILE_BYTES {
                    return None;
                }
                // Listing never places findings: skip recording places.
                let decoded = decode::decode_bytes_with(&rel.display().to_string(), &bytes, false);
                if decoded.parsed && !keep(&decoded.change) {
                    return None;
                }
                Some(Loaded {
                    rel,
                    text: String::new(),
                    decoded,
                })
            })
            .collect())
    }
}

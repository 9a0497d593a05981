//! The git-backed store: where it is, who is acting and when, reading changes, and making
//! exactly one commit per transition.

pub mod commit;
pub mod lock;
pub mod summary;

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
}

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

    /// The policy in force: the one committed at HEAD (SPEC section 5: uncommitted edits
    /// under `policy/` are never applied), or the work tree's while nothing is committed.
    /// A broken policy stops every command.
    pub fn policy(&self) -> Result<Policy> {
        let committed = self.committed_policy()?;
        let from_head = committed.is_some();
        let bytes = match committed {
            Some(b) => b,
            None => decode::read_bounded(&self.root.join(POLICY_PATH))
                .map_err(|e| Error::io(format!("cannot read {POLICY_PATH}"), e))?,
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Malformed(Finding::error(
                POLICY_PATH,
                None,
                "encoding",
                "the policy is not valid UTF-8",
            ))
        })?;
        match Policy::parse(POLICY_PATH, &text) {
            Ok((mut policy, _warnings)) => {
                // The allowed signers come from where the policy came from.
                let findings: Vec<Finding> = policy
                    .attach_signers(|path| {
                        if from_head {
                            self.committed_bytes(path)
                        } else {
                            decode::read_bounded(&self.root.join(path))
                        }
                    })
                    .into_iter()
                    .filter(Finding::is_error)
                    .collect();
                if findings.is_empty() {
                    if let Some(signers) = policy.signers() {
                        signers.remember_in(self.proven_signatures());
                    }
                    // The catalogue comes from where the policy came from; a template with
                    // problems is left out (validate reports it).
                    let files = match (from_head, commit::head_state(&self.repo)?.1) {
                        (true, Some(h)) => {
                            let tree = self.repo.find_commit(h)?.tree()?;
                            crate::templates::files_in_tree(&self.repo, &tree, &self.prefix)?.1
                        }
                        _ => crate::templates::files_in_dir(&self.root),
                    };
                    policy.attach_templates(files);
                    policy.template_history = self.template_history()?;
                    return Ok(policy);
                }
                Err(Error::Invalid {
                    summary: format!(
                        "the policy's allowed signers are not usable ({} problem(s)); no command acts on the policy until they are fixed",
                        findings.len()
                    ),
                    findings,
                })
            }
            Err(findings) => Err(Error::Invalid {
                summary: format!(
                    "{POLICY_PATH} is not a usable policy ({} problem(s)); no command acts on it until it is fixed",
                    findings.len()
                ),
                findings,
            }),
        }
    }

    /// The policy file's bytes at HEAD, if HEAD has one.
    fn committed_policy(&self) -> Result<Option<Vec<u8>>> {
        self.committed_file(POLICY_PATH)
    }

    /// A store file's blob at HEAD (`rel` relative to the store), if HEAD has it.
    fn head_blob(&self, rel: &str) -> Result<Option<git2::Blob<'_>>> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(None);
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        match commit::blob_at(&tree, &format!("{}{rel}", self.prefix))? {
            Some(b) => Ok(Some(self.repo.find_blob(b)?)),
            None => Ok(None),
        }
    }

    /// A store file's bytes at HEAD, whatever their size: `NotFound` when HEAD lacks it, so
    /// that a reader can tell a missing file from one past the limit.
    pub fn committed_bytes(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        match self.head_blob(rel) {
            Ok(Some(b)) => Ok(b.content().to_vec()),
            Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// A store file's bytes at HEAD (`rel` relative to the store), if HEAD has it; past the
    /// size limit it counts as absent.
    pub fn committed_file(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .head_blob(rel)?
            .filter(|b| b.size() as u64 <= decode::MAX_FILE_BYTES)
            .map(|b| b.content().to_vec()))
    }

    /// Whether the work tree's policy differs from the committed one.
    pub fn policy_has_uncommitted_edits(&self) -> Result<bool> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(false);
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        if commit::blob_at(&tree, &format!("{}{POLICY_PATH}", self.prefix))?.is_none() {
            return Ok(false);
        }
        // Every file under policy/ (the policy, its allowed signers, what comes next), in
        // the work tree and at HEAD.
        let mut paths: Vec<String> = self
            .worktree_policy_paths()
            .iter()
            .filter_map(|p| p.strip_prefix(&self.root).ok())
            .map(|rel| self.repo_path(rel))
            .collect();
        if let Ok(entry) = tree.get_path(Path::new(&format!("{}policy", self.prefix))) {
            let sub = self.repo.find_tree(entry.id())?;
            sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
                if e.kind() == Some(ObjectType::Blob) {
                    let p = format!("{}policy/{root}{}", self.prefix, e.name().unwrap_or(""));
                    if !paths.contains(&p) {
                        paths.push(p);
                    }
                }
                git2::TreeWalkResult::Ok
            })?;
        }
        for path in paths {
            let rel = &path[self.prefix.len()..];
            let work = decode::read_bounded(&self.root.join(rel)).ok();
            match (commit::blob_at(&tree, &path)?, work) {
                (None, None) => {}
                (Some(blob), Some(bytes))
                    if commit::same_content(&self.repo, &path, &bytes, blob)? => {}
                _ => return Ok(true),
            }
        }
        Ok(false)
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

    /// Refuses when the loaded file differs between HEAD, the index and the work tree (its
    /// work-tree bytes are the ones `load` read; they are not read again).
    fn ensure_clean(&self, loaded: &Loaded, head: Option<Oid>) -> Result<()> {
        let path = self.repo_path(&loaded.rel);
        let dirty = || Error::Dirty(path.clone());
        let head_blob = match head {
            Some(h) => commit::blob_at(&self.repo.find_commit(h)?.tree()?, &path)?,
            None => None,
        };
        let head_blob = head_blob.ok_or_else(dirty)?;
        if !commit::same_content(&self.repo, &path, loaded.text.as_bytes(), head_blob)? {
            return Err(dirty());
        }
        let index = commit::fresh_index(&self.repo)?;
        match index.get_path(Path::new(&path), 0) {
            Some(entry) if entry.id == head_blob => Ok(()),
            _ => Err(dirty()),
        }
    }

    fn commit(
        &self,
        ctx: &Context,
        files: &[FileWrite],
        message: &str,
        head: Option<Oid>,
    ) -> Result<Oid> {
        // chg reads no file past its limit, so it must write none: such a change could
        // never be read, edited or closed again.
        for f in files {
            if let Some(c) = &f.content
                && c.len() as u64 > decode::MAX_FILE_BYTES
            {
                return Err(Error::Usage(format!(
                    "{} would be {} bytes, over chg's limit of {} bytes for a change file; nothing was changed (keep long texts such as logs elsewhere and link to them)",
                    f.path,
                    c.len(),
                    decode::MAX_FILE_BYTES
                )));
            }
        }
        let author = signature(&ctx.actor, ctx.now)?;
        let committer = signature(&ctx.committer, ctx.committed_at)?;
        commit::commit_files(
            &self.repo,
            files,
            message,
            &author,
            &committer,
            head,
            ctx.commit_signer.as_deref(),
        )
    }

    /// The next free id for `year`: one more than the highest number filed that year, in
    /// the work tree or in HEAD (a sparse checkout leaves committed changes out of the work
    /// tree; their ids are still taken).
    pub fn next_id(&self, prefix: &str, year: i16) -> Result<ChangeId> {
        let probe = ChangeId::new(prefix, year, 1).map_err(Error::Internal)?;
        let mut max = layout::highest_in_dir(&self.root, &probe);
        if let Some(head) = commit::head_state(&self.repo)?.1 {
            let tree = self.repo.find_commit(head)?.tree()?;
            max = max.max(layout::highest(&self.repo, &tree, &self.prefix, &probe)?);
        }
        ChangeId::new(prefix, year, max + 1).map_err(Error::Internal)
    }

    /// Files a new change: allocates the id, writes the file canonically, commits.
    pub fn create(&self, ctx: &Context, mut change: ChangeRequest, draft: bool) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        self.ensure_authorized_policy_for(&change)?;
        let (policy, when) = (&session.policy, ctx.now);
        let year = when.to_zoned(jiff::tz::TimeZone::UTC).year();
        let id = self.next_id(&policy.id_prefix, year)?;
        change.id = Some(id.clone());
        change.requester = Some(ctx.actor.email.clone());
        change.request_date = Some(when);
        let status = if draft {
            Status::Draft
        } else {
            Status::PendingApproval
        };
        change.status = Some(status);
        change.approvals.clear();
        // The same rules validate applies: a draft may be incomplete, anything else must
        // have every required field and pass the content rules.
        let problems: Vec<_> = validate::change_problems(&change, policy, None)
            .into_iter()
            .filter(|p| p.severity == crate::finding::Severity::Error)
            .collect();
        if !problems.is_empty() {
            let fields: Vec<String> = problems
                .iter()
                .filter(|p| p.rule == "required")
                .map(|p| p.path.clone())
                .collect();
            // One sentence says what is wrong; several problems are listed below it, each
            // once.
            let (summary, listed) = if fields.len() == problems.len() {
                (
                    format!("missing required field(s): {}", fields.join(", ")),
                    Vec::new(),
                )
            } else if problems.len() == 1 {
                (
                    format!("the change is not valid: {}", problems[0].message),
                    Vec::new(),
                )
            } else {
                (
                    format!("the change is not valid ({} problems):", problems.len()),
                    problems,
                )
            };
            let findings = listed
                .into_iter()
                .map(|p| Finding::error("(new change)", None, p.rule, p.message))
                .collect();
            return Err(Error::Invalid { summary, findings });
        }
        let rel = layout::change_path(&id, when);
        if self.root.join(&rel).exists() {
            return Err(Error::Internal(format!(
                "{} exists already although {id} looked free",
                rel.display()
            )));
        }
        if let Some(r) =
            crate::rules::emergency_declaration_refusal(None, &change, &ctx.actor.email, policy)
        {
            return Err(r.into());
        }
        let change = vouch(ctx, policy, None, change)?;
        let text = edit::render_new(&change)?;
        let transition = Transition::new(Action::New, status, status);
        self.finish(ctx, &session, rel, text, change, transition, true)
    }

    /// Commits a person's edit of a change file (from `chg edit`). `base` is the text the
    /// edit started from: if the file moved on meanwhile, nothing is written. The person's
    /// text is committed as written, unless the edit voids approvals, in which case only the
    /// status and approvals are changed in it.
    pub fn edit_text(
        &self,
        ctx: &Context,
        id: &ChangeId,
        base: &str,
        new_text: &str,
    ) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        let loaded = self.load(id)?;
        self.ensure_authorized_policy_for(loaded.change())?;
        if loaded.text != base {
            return Err(Error::Conflict(format!(
                "{id} changed while you were editing it; nothing was written"
            )));
        }
        self.ensure_clean(&loaded, session.head)?;
        let file = loaded.rel.display().to_string();
        let decoded = decode::decode_str(&file, new_text);
        let mut findings: Vec<Finding> = decoded
            .findings
            .iter()
            .filter(|f| f.is_error())
            .cloned()
            .collect();
        if findings.is_empty() {
            findings = validate::check_file(&loaded.rel, &decoded, &session.policy, None)
                .into_iter()
                .filter(|f| {
                    f.is_error()
                        && matches!(
                            f.rule,
                            "unknown-key" | "type" | "enum" | "timestamp" | "required"
                        )
                })
                .collect();
        }
        if !findings.is_empty() {
            return Err(Error::Invalid {
                summary: format!(
                    "the edited {id} is not valid ({} problem(s))",
                    findings.len()
                ),
                findings,
            });
        }
        let wanted = decoded.change;
        let (next, transition) = workflow::apply(
            loaded.change(),
            &session.policy,
            &ctx.actor.email,
            ctx.now,
            Step::Edit {
                new: Box::new(wanted.clone()),
            },
        )?;
        let next = edited(ctx, &session.policy, loaded.change(), next)?;
        let text = if next == wanted {
            new_text.to_owned()
        } else {
            edit::apply(new_text, &wanted, &next)?
        };
        self.finish(ctx, &session, loaded.rel, text, next, transition, false)
    }

    /// Every file named after `id` (a duplicate id filed in two months has two).
    pub fn files_of(&self, id: &ChangeId) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = layout::candidate_paths(id)
            .filter(|rel| self.root.join(rel).is_file())
            .collect();
        if out.is_empty() {
            out.push(self.find(id)?);
        }
        Ok(out)
    }

    /// The highest number of `id`'s prefix and year in the trees of the remote-tracking
    /// branches (`refs/remotes/`): ids others have already published, even when not merged.
    fn highest_published(&self, id: &ChangeId) -> Result<u32> {
        let mut seen = std::collections::HashSet::new();
        let mut max = 0;
        for r in self.repo.references_glob("refs/remotes/*")? {
            let Ok(tree) = r.and_then(|r| r.peel_to_tree()) else {
                continue;
            };
            if seen.insert(tree.id()) {
                max = max.max(layout::highest(&self.repo, &tree, &self.prefix, id)?);
            }
        }
        Ok(max)
    }

    /// Moves a change to the next free id of its year (free here and on every fetched
    /// remote branch), with a trailer that records the old id. `file` picks one of two files
    /// claiming the same id; it is needed only when the id is claimed twice.
    pub fn renumber(&self, ctx: &Context, id: &ChangeId, file: Option<&Path>) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        self.ensure_authorized_policy()?;
        let rel = match file {
            Some(f) => {
                let abs = f
                    .canonicalize()
                    .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
                abs.strip_prefix(&self.root)
                    .map(Path::to_path_buf)
                    .map_err(|_| Error::Usage(format!("{} is not in the store", f.display())))?
            }
            None => match <[PathBuf; 1]>::try_from(self.files_of(id)?) {
                Ok([one]) => one,
                Err(files) => {
                    let choices: Vec<String> =
                        files.iter().map(|p| p.display().to_string()).collect();
                    return Err(Error::Ambiguous {
                        message: format!(
                            "{id} is claimed by {} files ({})",
                            files.len(),
                            choices.join(", ")
                        ),
                        what: "file",
                        choices,
                    });
                }
            },
        };
        let bytes = self.read_change(&rel)?;
        let decoded = decode::decode_bytes(&rel.display().to_string(), &bytes);
        if let Some(f) = decoded.findings.iter().find(|f| f.is_error()) {
            return Err(Error::Malformed(f.clone()));
        }
        let loaded = Loaded {
            rel,
            text: String::from_utf8(bytes).unwrap_or_default(),
            decoded,
        };
        if loaded.change().id.as_ref() != Some(id) {
            return Err(Error::Usage(format!(
                "{} holds {}, not {id}",
                loaded.rel.display(),
                loaded.change().id_text()
            )));
        }
        self.ensure_clean(&loaded, session.head)?;
        let local = self.next_id(id.prefix(), id.year())?;
        let number = local.number().max(self.highest_published(id)? + 1);
        let new_id = ChangeId::new(id.prefix(), id.year(), number).map_err(Error::Internal)?;
        let (next, transition) = workflow::renumber(loaded.change(), new_id.clone());
        let text = edit::apply(&loaded.text, loaded.change(), &next)?;
        let rel = match next.request_date {
            Some(d) => layout::change_path(&new_id, d),
            None => loaded.rel.with_file_name(format!("{new_id}.yaml")),
        };
        self.finish_moving(
            ctx,
            &session,
            Some(&loaded.rel),
            rel,
            text,
            next,
            transition,
            false,
        )
    }

    /// Whether the policy at HEAD was slipped in (SPEC section 10): the commit that did it
    /// and why, or `None` when it stands. The last answer is kept in `.git/chg/` with the
    /// HEAD it was for, so a command walks only the commits made since.
    pub fn unauthorized_policy(&self) -> Result<Option<(Oid, String)>> {
        let Some(head) = commit::head_state(&self.repo)?.1 else {
            return Ok(None);
        };
        // One answer per store: two stores in one repository have two policies.
        let name = if self.prefix.is_empty() {
            "policy-standing".to_owned()
        } else {
            format!(
                "policy-standing~{}",
                &crate::text::sha256_hex(self.prefix.as_bytes())[..16]
            )
        };
        let path = self.repo.commondir().join("chg").join(name);
        // `HEAD LAST-CHANGE-or-none ok|unauthorized WHY`
        let kept = std::fs::read_to_string(&path).ok().and_then(|t| {
            let mut f = t.trim_end().splitn(4, ' ');
            let (h, last, ok) = (f.next()?, f.next()?, f.next()?);
            let why = f.next().unwrap_or("").to_owned();
            Some((
                Oid::from_str(h).ok()?,
                Oid::from_str(last).ok(),
                ok == "ok",
                why,
            ))
        });
        let answer =
            |last: Option<Oid>, ok: bool, why: String| (!ok).then(|| (last.unwrap_or(head), why));
        if let Some((h, last, ok, why)) = &kept
            && *h == head
        {
            return Ok(answer(*last, *ok, why.clone()));
        }
        let mut g = crate::audit::governance::Governance::new(&self.repo, &self.prefix);
        let since = kept.as_ref().map(|k| k.0);
        let (last, standing) = match g.last_change(head, since)? {
            Some(at) if Some(at) == since && !g.changes_policy(at)? => {
                let (_, last, ok, why) = kept.clone().expect("since is kept");
                (last, if ok { None } else { Some(why) })
            }
            Some(at) => match g.standing_of(at)? {
                crate::governance::Standing::Unauthorized(why) => (Some(at), Some(why)),
                _ => (Some(at), None),
            },
            None => (None, None),
        };
        let line = format!(
            "{head} {} {} {}\n",
            last.map_or("none".to_owned(), |o| o.to_string()),
            if standing.is_some() {
                "unauthorized"
            } else {
                "ok"
            },
            standing.clone().unwrap_or_default()
        );
        let _ = commit::atomic_write(&path, line.as_bytes());
        Ok(answer(
            last,
            standing.is_none(),
            standing.unwrap_or_default(),
        ))
    }

    /// [`Store::ensure_authorized_policy`], except for a policy proposal: proposing,
    /// approving and applying one is a way out (its governance approvals are then judged
    /// by the last policy that counted).
    fn ensure_authorized_policy_for(&self, change: &ChangeRequest) -> Result<()> {
        if change.proposed_policy.is_some() {
            return Ok(());
        }
        self.ensure_authorized_policy()
    }

    /// Refuses unless the change's committed history verifies (see [`crate::standing`]):
    /// a status, approval or record that chg's verified steps did not produce is not
    /// believed.
    pub fn ensure_verified(&self, id: &ChangeId, now: jiff::Timestamp) -> Result<()> {
        match crate::standing::of(self, id, now)?.refusal(&id.to_string()) {
            Some(r) => Err(r.into()),
            None => Ok(()),
        }
    }

    /// Every reason change `id` may not be deployed at `at` (empty: the gate is open), as
    /// `chg gate` and the server answer it: the policy at HEAD slipped in, the file differs
    /// from the committed one, its committed history does not verify, a step dated in the
    /// future, then the implement rules and blocking overlaps ([`crate::rules::gate`]),
    /// judged by `policy` as it applies to the change ([`Policy::for_intake`]).
    pub fn gate(
        &self,
        id: &ChangeId,
        policy: &Policy,
        at: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> Result<Vec<crate::error::Refusal>> {
        self.gate_among(id, policy, at, now, None)
    }

    /// [`Store::gate`], judging overlaps against `others` (every change that
    /// [`crate::conflicts::can_conflict`], as the read summary holds them) when given,
    /// instead of reading them: a server keeps them in memory between requests.
    pub fn gate_among(
        &self,
        id: &ChangeId,
        policy: &Policy,
        at: jiff::Timestamp,
        now: jiff::Timestamp,
        others: Option<&[&ChangeRequest]>,
    ) -> Result<Vec<crate::error::Refusal>> {
        use crate::error::Refusal;
        let loaded = self.load(id)?;
        let mut out: Vec<Refusal> = Vec::new();
        if let Some((commit, why)) = self.unauthorized_policy()? {
            out.push(Refusal::new(
                crate::governance::UNAUTHORIZED,
                format!(
                    "{why}; nothing is deployed under it until it is reverted (`git revert {}`) or proposed and applied",
                    &commit.to_string()[..8]
                ),
            ));
        }
        let head = commit::head_state(&self.repo)?.1;
        if let Err(Error::Dirty(path)) = self.ensure_clean(&loaded, head) {
            out.push(Refusal::new(
                crate::standing::UNVERIFIED,
                format!("{path} has uncommitted edits; the gate judges only what is committed"),
            ));
            return Ok(out);
        }
        out.extend(
            crate::rules::future_problems(loaded.change(), now)
                .into_iter()
                .filter(|p| p.severity == crate::finding::Severity::Error)
                .take(1)
                .map(|p| Refusal::new(crate::rules::TIME_ORDER, p.message)),
        );
        let standing = crate::standing::of(self, id, now)?;
        out.extend(standing.refusal(&id.to_string()));
        let all = match others {
            Some(_) => Vec::new(),
            None => self.load_where(crate::conflicts::can_conflict)?,
        };
        let others: Vec<&ChangeRequest> = match others {
            Some(o) => o.to_vec(),
            None => all
                .iter()
                .filter(|l| l.decoded.parsed)
                .map(Loaded::change)
                .collect(),
        };
        out.extend(crate::rules::gate(
            loaded.change(),
            policy.for_intake(standing.questionnaire_due()),
            at,
            &others,
        ));
        Ok(out)
    }

    /// Refuses while the policy at HEAD was slipped in: no step may be judged by it.
    pub fn ensure_authorized_policy(&self) -> Result<()> {
        if let Some((commit, why)) = self.unauthorized_policy()? {
            return Err(Error::refused(
                crate::governance::UNAUTHORIZED,
                format!(
                    "{why}, so no step is judged by it; revert it (`git revert {}`) or propose it with `chg policy propose` and apply it once approved",
                    &commit.to_string()[..8]
                ),
            ));
        }
        Ok(())
    }

    /// Earlier versions of the catalogue, read from HEAD's history when first needed.
    pub fn template_history(&self) -> Result<Option<Arc<crate::templates::TemplateHistory>>> {
        Ok(commit::head_state(&self.repo)?.1.map(|head| {
            Arc::new(crate::templates::history_from(
                self.repo.path().to_path_buf(),
                self.prefix.clone(),
                head,
            ))
        }))
    }

    /// The files under `policy/` in the work tree, by path relative to the store.
    pub fn worktree_policy_files(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut out = std::collections::BTreeMap::new();
        for p in self.worktree_policy_paths() {
            let Ok(rel) = p.strip_prefix(&self.root) else {
                continue;
            };
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if p.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(Error::Usage(format!(
                    "{rel} is a link; the policy holds files only (a link could bring content from outside policy/)"
                )));
            }
            if let Some(why) = crate::governance::path_problem(&rel) {
                return Err(Error::Usage(why));
            }
            let bytes = decode::read_bounded(&p)
                .map_err(|err| Error::io(format!("cannot read {rel}"), err))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::Usage(format!("{rel} is not UTF-8 text; a policy file must be"))
            })?;
            out.insert(rel, text);
        }
        Ok(out)
    }

    /// Every file under the work tree's `policy/` (folders walked, links not followed).
    fn worktree_policy_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(crate::governance::POLICY_DIR)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => out.push(e.path()),
                    Err(_) => {}
                }
            }
        }
        out
    }

    /// The git tree id of `policy/` at HEAD, as text (what a proposal is based on).
    pub fn committed_policy_tree(&self) -> Result<Option<String>> {
        Ok(match commit::head_state(&self.repo)?.1 {
            Some(h) => {
                crate::governance::policy_tree(&self.repo.find_commit(h)?.tree()?, &self.prefix)?
                    .map(|t| t.to_string())
            }
            None => None,
        })
    }

    /// The files under `policy/` at HEAD.
    pub fn committed_policy_files(&self) -> Result<std::collections::BTreeMap<String, String>> {
        match commit::head_state(&self.repo)?.1 {
            Some(h) => crate::governance::policy_files(
                &self.repo,
                &self.repo.find_commit(h)?.tree()?,
                &self.prefix,
            ),
            None => Ok(Default::default()),
        }
    }

    /// `chg policy apply` (SPEC section 10): the implement step of an approved policy
    /// proposal, committing its content under `policy/` in the same commit. Allowed while
    /// the policy at HEAD was slipped in (applying is one way out); the governance roles
    /// are then those of the last policy that counted.
    pub fn apply_policy(&self, ctx: &Context, id: &ChangeId) -> Result<Outcome> {
        for t in [ctx.now, ctx.committed_at] {
            crate::context::check_time(t).map_err(Error::Usage)?;
        }
        let lock = self.lock(ctx.lock_timeout)?;
        let head = commit::head_state(&self.repo)?.1;
        let session = Session {
            _lock: lock,
            policy: self.policy()?,
            head,
        };
        let loaded = self.load(id)?;
        self.ensure_clean(&loaded, session.head)?;
        let change = loaded.change();
        let Some(proposal) = change.proposed_policy.clone() else {
            return Err(Error::Usage(format!(
                "{id} is not a policy proposal (file one with `chg policy propose`)"
            )));
        };
        let committed = self.committed_policy_files()?;
        if proposal == committed {
            return Err(Error::Usage(format!(
                "the policy at HEAD is already what {id} proposes; nothing to apply"
            )));
        }
        let worktree = self.worktree_policy_files()?;
        if worktree != committed && worktree != proposal {
            let differs: Vec<&String> = worktree
                .keys()
                .chain(committed.keys())
                .filter(|p| worktree.get(*p) != committed.get(*p))
                .collect();
            return Err(Error::Dirty(format!(
                "{} (uncommitted edits under policy/ that are not what {id} proposes; commit them through a proposal, or set them aside with `git stash`)",
                differs
                    .first()
                    .map_or("policy/".to_owned(), |p| format!("{}{p}", self.prefix))
            )));
        }
        let authority = match head {
            Some(h) => {
                let mut g = crate::audit::governance::Governance::new(&self.repo, &self.prefix);
                g.governing_policy(h)?
            }
            None => std::sync::Arc::new(session.policy.clone()),
        };
        let missing = crate::governance::missing_governance(change, &authority);
        if !missing.is_empty() {
            return Err(Error::refused(
                crate::governance::GOVERNANCE,
                format!(
                    "{id} is not approved by every governance role yet (waiting for: {})",
                    missing.join(", ")
                ),
            ));
        }
        // After the governance check: its refusal is the more precise one.
        self.ensure_verified(id, ctx.now)?;
        if let Some(why) = crate::governance::proposal_problem(change) {
            return Err(Error::refused(crate::governance::GOVERNANCE, why));
        }
        let base = self.committed_policy_tree()?;
        if change.policy_base != base {
            return Err(Error::refused(
                crate::governance::STALE,
                match &change.policy_base {
                    Some(_) => format!(
                        "policy/ changed since {id} was proposed, so applying it would undo what changed since; propose it again on the current policy (`chg policy propose`) and cancel {id}"
                    ),
                    None => format!(
                        "{id} does not record the policy it was proposed against (it was filed by an older chg), so applying it could undo a later change; propose it again on the current policy (`chg policy propose`) and cancel {id}"
                    ),
                },
            ));
        }
        // Judged by the policy that governs, as the governance check will judge the commit.
        let (next, mut transition) = workflow::apply(
            change,
            &authority,
            &ctx.actor.email,
            ctx.now,
            Step::Implement,
        )?;
        transition.notes.push(format!(
            "Applies the approved policy proposal: {}.",
            proposal.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        let next = sign_record(ctx, &session.policy, next, &transition)?;
        let text = edit::apply(&loaded.text, change, &next)?;
        let cid = next
            .id
            .clone()
            .ok_or_else(|| Error::Internal("a change without an id".into()))?;
        let message = commit_message(&cid, &next, &transition, &ctx.actor, false);
        let mut files = vec![FileWrite::write(
            self.repo_path(&loaded.rel),
            text.into_bytes(),
        )];
        for (path, content) in &proposal {
            if committed.get(path) != Some(content) {
                files.push(FileWrite::write(
                    format!("{}{path}", self.prefix),
                    content.clone().into_bytes(),
                ));
            }
        }
        for path in committed.keys().filter(|p| !proposal.contains_key(*p)) {
            files.push(FileWrite::remove(format!("{}{path}", self.prefix)));
        }
        let commit = self.commit(ctx, &files, &message, session.head)?;
        Ok(Outcome {
            warnings: Vec::new(),
            waiting_for: Vec::new(),
            change: next,
            transition,
            commit,
            rel: loaded.rel,
        })
    }

    /// Takes the lock, then reads the policy and HEAD under it.
    fn begin(&self, ctx: &Context) -> Result<Session> {
        for t in [ctx.now, ctx.committed_at] {
            crate::context::check_time(t).map_err(Error::Usage)?;
        }
        let lock = self.lock(ctx.lock_timeout)?;
        if self.policy_has_uncommitted_edits()? {
            self.notices.borrow_mut().push(format!(
                "chg: note: {POLICY_PATH} has uncommitted edits; this step was judged by the policy committed at HEAD"
            ));
        }
        Ok(Session {
            _lock: lock,
            policy: self.policy()?,
            head: commit::head_state(&self.repo)?.1,
        })
    }

    /// Commits `text` as the file of `next` and reports the step.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        ctx: &Context,
        session: &Session,
        rel: PathBuf,
        text: String,
        next: ChangeRequest,
        transition: Transition,
        created: bool,
    ) -> Result<Outcome> {
        self.finish_moving(ctx, session, None, rel, text, next, transition, created)
    }

    /// [`Store::finish`], removing `moved_from` in the same commit.
    #[allow(clippy::too_many_arguments)]
    fn finish_moving(
        &self,
        ctx: &Context,
        session: &Session,
        moved_from: Option<&Path>,
        rel: PathBuf,
        text: String,
        next: ChangeRequest,
        transition: Transition,
        created: bool,
    ) -> Result<Outcome> {
        let id = next
            .id
            .clone()
            .ok_or_else(|| Error::Internal("a change without an id".into()))?;
        let mut transition = transition;
        transition.extra.via.clone_from(&ctx.via);
        let message = commit_message(&id, &next, &transition, &ctx.actor, created);
        let mut files = vec![FileWrite::write(self.repo_path(&rel), text.into_bytes())];
        if let Some(old) = moved_from.filter(|old| *old != rel) {
            files.insert(0, FileWrite::remove(self.repo_path(old)));
        }
        let commit = self.commit(ctx, &files, &message, session.head)?;
        Ok(Outcome {
            warnings: Vec::new(),
            waiting_for: crate::rules::missing_roles(&next, &session.policy),
            change: next,
            transition,
            commit,
            rel,
        })
    }

    /// Applies one step to a change and commits it; refuses without changing anything.
    pub fn transition(&self, ctx: &Context, id: &ChangeId, step: Step) -> Result<Outcome> {
        let session = self.begin(ctx)?;
        let loaded = self.load(id)?;
        self.ensure_authorized_policy_for(loaded.change())?;
        self.ensure_clean(&loaded, session.head)?;
        let implement = matches!(step, Step::Implement);
        // A deployment is recorded only where `chg gate` would have let it through, judged
        // now, under the lock: the gate's own verdict, every reason said.
        if matches!(step, Step::Deploy { .. }) {
            let reasons = self.gate(id, &session.policy, ctx.now, ctx.now)?;
            if !reasons.is_empty() {
                return Err(
                    crate::rules::deploy_refusal(&id.to_string(), ctx.now, &reasons).into(),
                );
            }
        }
        let approve = matches!(step, Step::Approve { .. });
        // The questionnaire is due from a change unless history shows it submitted before
        // the policy asked it; a submission is judged by today's policy.
        let unanswered = session.policy.risk.is_some()
            && loaded.change().risk_assessment.is_none()
            && !matches!(step, Step::Submit);
        let standing = if approve || unanswered || implement {
            Some(crate::standing::of(self, id, ctx.now)?)
        } else {
            None
        };
        if implement && let Some(r) = standing.as_ref().and_then(|st| st.refusal(&id.to_string())) {
            return Err(r.into());
        }
        let policy = session.policy.for_intake(
            standing
                .as_ref()
                .is_none_or(crate::standing::Standing::questionnaire_due),
        );
        // An approval is judged with what history says about who made the change, by the
        // same rule that says whom a change awaits ([`workflow::approvable_roles`]).
        let provenance = standing
            .as_ref()
            .filter(|_| approve)
            .map(crate::standing::Standing::provenance)
            .unwrap_or_default();
        let (next, transition) = workflow::apply_with(
            loaded.change(),
            policy,
            &ctx.actor.email,
            ctx.now,
            step,
            &provenance,
        )?;
        // Whoever history shows filed the change is its requester too, whatever the file says.
        if let Some(standing) = standing.as_ref().filter(|_| implement)
            && let Some(r) = crate::rules::implementer_refusals(
                loaded.change(),
                policy,
                &ctx.actor.email,
                standing.creator(),
            )
            .into_iter()
            .next()
        {
            return Err(r.into());
        }
        // Overlaps with other changes are judged here, under the lock, so two schedules
        // racing for one system cannot both pass a check that blocks.
        let warnings = match &next.schedule {
            Some(s) if transition.action == Action::Schedule => {
                let all = self.load_where(crate::conflicts::can_conflict)?;
                let others: Vec<&ChangeRequest> = all
                    .iter()
                    .filter(|l| l.decoded.parsed)
                    .map(Loaded::change)
                    .collect();
                crate::conflicts::screen(loaded.change(), s, &others, &session.policy)?
            }
            _ => Vec::new(),
        };
        let next = sign_record(ctx, &session.policy, next, &transition)?;
        let next = if transition.action == Action::Edit {
            edited(ctx, &session.policy, loaded.change(), next)?
        } else {
            next
        };
        let text = edit::apply(&loaded.text, loaded.change(), &next)?;
        let mut outcome = self.finish(ctx, &session, loaded.rel, text, next, transition, false)?;
        outcome.warnings = warnings;
        Ok(outcome)
    }
}

/// What every edit (`chg edit`, `chg set`) of `before` into `next` must pass beside the
/// life cycle: who may declare an emergency, and the signed record of who wrote the content.
fn edited(
    ctx: &Context,
    policy: &Policy,
    before: &ChangeRequest,
    next: ChangeRequest,
) -> Result<ChangeRequest> {
    if let Some(r) =
        crate::rules::emergency_declaration_refusal(Some(before), &next, &ctx.actor.email, policy)
    {
        return Err(r.into());
    }
    vouch(ctx, policy, Some(before), next)
}

/// Where the policy requires `new` or `edit` signed (SPEC section 9): records, and signs,
/// that the actor wrote the content of `next` (filed it when `before` is `None`, edited it
/// otherwise). Only content that changed gets a new record; refused, before anything is
/// written, without a usable key.
fn vouch(
    ctx: &Context,
    policy: &Policy,
    before: Option<&ChangeRequest>,
    mut next: ChangeRequest,
) -> Result<ChangeRequest> {
    let action = if before.is_none() { "new" } else { "edit" };
    let digest = next.material_digest();
    if !policy.requires_signature(action) || before.is_some_and(|b| b.material_digest() == digest) {
        return Ok(next);
    }
    next.content_signature = Some(crate::model::ContentRecord {
        action: action.to_owned(),
        by: ctx.actor.email.clone(),
        at: ctx.now,
        digest,
        signature: None,
    });
    sign(ctx, policy, next, action)
}

/// Signs the record `transition` wrote into `next`, where the policy requires it (SPEC
/// section 9): refused, before anything is written, without a key or with a key the
/// allowed signers do not list for the actor.
fn sign_record(
    ctx: &Context,
    policy: &Policy,
    next: ChangeRequest,
    transition: &Transition,
) -> Result<ChangeRequest> {
    let action = transition.action.as_str();
    // Content records are written and signed by `vouch`, only when content changed.
    if !policy.requires_signature(action) || matches!(action, "new" | "edit") {
        return Ok(next);
    }
    sign(ctx, policy, next, action)
}

/// Signs the record of `action` last written into `next`.
fn sign(
    ctx: &Context,
    policy: &Policy,
    mut next: ChangeRequest,
    action: &str,
) -> Result<ChangeRequest> {
    let signer = ctx
        .record_signer
        .as_deref()
        .ok_or_else(|| Error::NoSigningKey(action.to_owned()))?;
    let signers = policy
        .signers()
        .ok_or_else(|| Error::Internal("the allowed signers were not read".into()))?;
    if action == "close"
        && let Some(imp) = &mut next.implementation
    {
        imp.closed_by = Some(ctx.actor.email.clone());
    }
    let record = crate::signing::new_record(&next, action)
        .ok_or_else(|| Error::Internal(format!("no {action} record to sign")))?;
    let signature =
        crate::signing::sign_record(signers, signer, &ctx.actor.email, &record.statement)?;
    crate::signing::set_signature(&mut next, action, signature);
    Ok(next)
}

/// What every state-changing command holds while it works: the lock, and what it read
/// under the lock.
struct Session {
    _lock: lock::StoreLock,
    policy: Policy,
    head: Option<Oid>,
}

/// The commit message of a transition (SPEC section 6).
pub fn commit_message(
    id: &ChangeId,
    change: &ChangeRequest,
    t: &Transition,
    identity: &Identity,
    created: bool,
) -> String {
    let mut subject = format!("{id}: {}", t.action);
    if let Some(role) = &t.role {
        subject.push_str(&format!(" ({role})"));
    }
    if let Some(old) = &t.extra.renumbered_from {
        subject.push_str(&format!(" (was {old})"));
    }
    if created && let Some(title) = &change.title {
        let title: String = title
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        subject.push_str(&format!(": {title}"));
    }
    let mut msg = subject;
    msg.push_str("\n\n");
    if !t.notes.is_empty() {
        msg.push_str(&t.notes.join("\n"));
        msg.push_str("\n\n");
    }
    let trailers = Trailers {
        id: Some(id.to_string()),
        action: Some(t.action.to_string()),
        actor: Some(identity.email.clone()),
        role: t.role.clone(),
        from: (!created).then(|| t.from.to_string()),
        to: Some(t.to.to_string()),
        ..t.extra.clone()
    };
    msg.push_str(&trailers.render());
    msg
}

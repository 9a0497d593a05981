//! The audit index: every commit's verdict, kept inside `.git/chg/audit/` (never committed),
//! so `chg audit` and `chg log` only pay for commits they have not seen.
//!
//! A verdict depends only on the commit (its trees, message and parents are in its id), so a
//! cached verdict is never wrong for that commit. What can go wrong is the branch: a
//! rewritten or force-pushed history no longer contains the commit the index last reached.
//! That is detected (the old tip is not an ancestor of HEAD), reported, and the index is
//! rebuilt from scratch.
//!
//! Layout, one folder per branch:
//! - `meta.json`: format, chg version, store prefix, the tip reached, commits audited,
//!   emergency changes seen, rewrites detected;
//! - `findings.jsonl`: every finding, oldest first;
//! - `log/<PREFIX>-<year>-<n>.jsonl`: `chg log` entries, 100 change numbers per file, so
//!   one change's history is a read of one small file.
//!
//! The cache is never a source of truth: `meta.json` carries its own SHA-256 and, for each
//! file, the length and SHA-256 of the bytes it covers. A reader that finds a file shorter
//! than recorded, different, or not parsing (emptied, garbled, non-UTF-8 bytes) gets
//! nothing from it, and the caller rebuilds the index from the history. The checks catch
//! corruption, not forgery: whoever can write `.git/` can rewrite any unkeyed cache, so an
//! auditor runs `chg audit --full` on a clone of their own.
//!
//! New verdicts are appended, then `meta.json` is replaced atomically. A crash in between
//! leaves bytes past the recorded length: readers ignore them and the next update cuts
//! them off before it appends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{AuditFinding, CommitAudit, Emergency, Entry};
use crate::error::{Error, Result};
use crate::text::{hex, sha256_hex};

const FORMAT: u32 = 6;

/// What judges commits for the index (the audit engine, in [`super`]).
pub trait Engine {
    /// The commits of `head`'s history not reachable from `hide`, oldest first.
    fn commits(&self, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>>;
    /// What judges commits. It works on another thread than the rest: the next batch is
    /// judged while the index writes the one before.
    fn judge(&self) -> &(dyn Verdicts + Sync);
    /// Adds to `verdicts` (in history order) what only a change's earlier history shows;
    /// `earlier` gives a change's entries from before this update, `state` is carried from
    /// batch to batch.
    fn history(
        &self,
        verdicts: &mut [CommitAudit],
        state: &mut super::HistoryState,
        earlier: &dyn Fn(&str) -> Result<Option<Vec<Entry>>>,
    ) -> Result<()>;
}
/// Judges commits.
pub trait Verdicts {
    /// The verdicts on `batch`, the first numbered `seq`.
    fn verdicts(&self, batch: &[Oid], seq: u64) -> Result<Vec<CommitAudit>>;
}

/// Commits audited between two writes of the index, bounding memory on long histories.
const BATCH: usize = 10_000;

/// A rewrite of the branch's history that an update detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    /// The branch.
    pub branch: String,
    /// The tip the index had reached, no longer in the branch's history.
    pub old_tip: String,
    /// The branch's tip when the rewrite was seen.
    pub new_tip: String,
    /// When it was seen.
    pub detected_at: Timestamp,
    /// `chg audit` has reported it as an exception (once; later runs list it as a note).
    /// Other readers of the index (`chg log`) leave it unreported.
    #[serde(default)]
    pub reported: bool,
}

/// What a meta file records of one cache file: the bytes it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Check {
    bytes: u64,
    sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    format: u32,
    chg: String,
    prefix: String,
    branch: String,
    tip: Option<String>,
    commits: u64,
    emergencies: Vec<Emergency>,
    rewrites: Vec<Rewrite>,
    /// Each cache file (`findings.jsonl`, `log/NAME`) and what it holds.
    files: BTreeMap<String, Check>,
    /// Where the history was cut when it was audited (a shallow clone): deepening it brings
    /// commits older than the tip, so the index starts again.
    shallow: Vec<String>,
}

/// What an update did.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Commits audited by this update.
    pub audited: u64,
    /// The index was built from scratch (none, unreadable, outdated, rewritten or `--full`).
    pub rebuilt: bool,
    /// The rewrite this update detected, if any.
    pub rewrite: Option<Rewrite>,
    /// The index did not verify (a file emptied, garbled or cut short) and was rebuilt.
    pub repaired: bool,
}

impl Meta {
    /// The meta file of an index started from nothing for `branch` of the store at `prefix`.
    fn fresh(repo: &Repository, prefix: &str, branch: &str) -> Meta {
        Meta {
            format: FORMAT,
            chg: env!("CARGO_PKG_VERSION").to_owned(),
            prefix: prefix.to_owned(),
            branch: branch.to_owned(),
            tip: None,
            commits: 0,
            emergencies: Vec::new(),
            rewrites: Vec::new(),
            files: BTreeMap::new(),
            shallow: crate::git::shallow_commits(repo)
                .iter()
                .map(Oid::to_string)
                .collect(),
        }
    }

    /// The meta to update: the stored one when it was written by this chg for the same
    /// store, branch and shallow cut (and not `full`); otherwise `fresh`, keeping the
    /// rewrites seen (they are history, whatever else made the index start again).
    fn start(stored: Option<Meta>, fresh: &Meta, full: bool, update: &mut Update) -> Meta {
        let usable = |m: &Meta| {
            m.format == FORMAT
                && m.chg == fresh.chg
                && m.prefix == fresh.prefix
                && m.branch == fresh.branch
                && m.shallow == fresh.shallow
        };
        match stored {
            Some(m) if !full && usable(&m) => m,
            other => {
                update.rebuilt = true;
                Meta {
                    rewrites: other.map(|m| m.rewrites).unwrap_or_default(),
                    ..fresh.clone()
                }
            }
        }
    }

    /// Where the index can go on from: the tip it reached, when HEAD still descends from
    /// it (the commits to hide). A tip no longer in the branch's history is a rewrite,
    /// recorded in `update` and the meta, which starts again (as it does when the branch
    /// has lost every commit).
    fn follow(
        &mut self,
        repo: &Repository,
        branch: &str,
        head: Option<Oid>,
        now: Timestamp,
        fresh: &Meta,
        update: &mut Update,
    ) -> Result<Option<Oid>> {
        let old_tip = self.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
        let mut hide = None;
        if let (Some(old), Some(head)) = (old_tip, head)
            && !update.rebuilt
        {
            let kept = old == head
                || (repo.find_commit(old).is_ok() && repo.graph_descendant_of(head, old)?);
            if kept {
                hide = Some(old);
            } else {
                let r = Rewrite {
                    branch: branch.to_owned(),
                    old_tip: old.to_string(),
                    new_tip: head.to_string(),
                    detected_at: now,
                    reported: false,
                };
                update.rewrite = Some(r.clone());
                update.rebuilt = true;
                *self = Meta {
                    rewrites: [std::mem::take(&mut self.rewrites), vec![r]].concat(),
                    ..fresh.clone()
                };
            }
        } else if old_tip.is_some() && head.is_none() {
            update.rebuilt = true;
            *self = Meta {
                rewrites: std::mem::take(&mut self.rewrites),
                ..fresh.clone()
            };
        }
        Ok(hide)
    }
}

/// The smallest last batch [`tapered`] makes.
const TAIL: usize = 256;

/// `oids` in batches of [`BATCH`], the last ones smaller and smaller (each half of what is
/// left, down to [`TAIL`]). A batch's history pass and write overlap the judging of the
/// next one, so only the last batch's are left to run alone at the end: with full batches
/// that was a tenth of `chg audit --full` at 10,000 changes, one core working.
fn tapered(oids: &[Oid]) -> Vec<&[Oid]> {
    let mut out = Vec::new();
    let mut rest = oids;
    while !rest.is_empty() {
        let size = match rest.len() {
            n if n > 2 * BATCH => BATCH,
            n if n <= TAIL => n,
            n => (n / 2).max(TAIL),
        };
        let (batch, after) = rest.split_at(size);
        out.push(batch);
        rest = after;
    }
    out
}

/// Audits the commits of `head`'s history not reachable from `hide` in batches of
/// [`BATCH`] (bounding memory), appending each batch's verdicts to the files in `dir`.
/// `false` when a file it was to extend does not verify (the caller starts again).
fn append_new(
    dir: &Path,
    meta: &mut Meta,
    update: &mut Update,
    engine: &dyn Engine,
    head: Oid,
    hide: Option<Oid>,
) -> Result<bool> {
    let oids = engine.commits(head, hide)?;
    let mut writer = Appender::new(dir, &meta.files);
    // What the index held before this update, for changes' earlier history.
    let stored = Index {
        dir: dir.to_path_buf(),
        meta: meta.clone(),
    };
    let earlier = |id: &str| -> Result<Option<Vec<Entry>>> {
        if hide.is_none() {
            return Ok(Some(Vec::new()));
        }
        stored.log(id)
    };
    let mut state = super::HistoryState::default();
    let judge = engine.judge();
    let batches = tapered(&oids);
    // Each batch's history pass and write (on this thread) overlap the judging of the next
    // one: they were a serial twentieth of `chg audit --full` during which the workers
    // judging commits waited.
    let finished = std::thread::scope(|scope| -> Result<bool> {
        let mut ahead = None;
        for (k, batch) in batches.iter().enumerate() {
            let mut verdicts = match ahead.take() {
                Some(judging) => std::thread::ScopedJoinHandle::join(judging)
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
                None => judge.verdicts(batch, meta.commits)?,
            };
            if let Some(next) = batches.get(k + 1) {
                let seq = meta.commits + batch.len() as u64;
                ahead = Some(scope.spawn(move || judge.verdicts(next, seq)));
            }
            engine.history(&mut verdicts, &mut state, &earlier)?;
            if !writer.append(&verdicts)? {
                return Ok(false);
            }
            for v in verdicts {
                meta.emergencies.extend(v.emergencies);
            }
            meta.commits += batch.len() as u64;
            update.audited += batch.len() as u64;
        }
        Ok(true)
    })?;
    if !finished {
        return Ok(false);
    }
    let done: Vec<_> = writer.finish().collect();
    meta.files.extend(done);
    Ok(true)
}

/// An up-to-date index for the branch at HEAD.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    meta: Meta,
}

impl Index {
    /// Brings the index of the current branch up to date with HEAD (from scratch when
    /// `full`), and returns it with what was done. The index only stores: `engine` gives
    /// the commits to judge (HEAD's history, less what is hidden) and the verdicts on them
    /// (a batch of commits, numbered from the given sequence number).
    pub fn update(
        repo: &Repository,
        prefix: &str,
        full: bool,
        now: Timestamp,
        engine: &dyn Engine,
    ) -> Result<(Index, Update)> {
        let (branch, head) = head_of(repo)?;
        let root = repo.path().join("chg").join("audit");
        // One index per branch and store: two stores in one repository never share one.
        let dir = root.join(folder_name(&branch, prefix));
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // Concurrent updates would append the same lines twice; one at a time is simpler.
        let lock = File::create(root.join("lock"))
            .map_err(|e| Error::io("opening the audit index lock", e))?;
        lock.lock()
            .map_err(|e| Error::io("locking the audit index", e))?;

        let fresh = Meta::fresh(repo, prefix, &branch);
        let mut update = Update::default();
        let mut meta = Meta::start(read_meta(&dir), &fresh, full, &mut update);
        let hide = meta.follow(repo, &branch, head, now, &fresh, &mut update)?;
        if update.rebuilt {
            clear(&dir)?;
        }
        if let Some(head) = head
            && Some(head) != hide
            && !append_new(&dir, &mut meta, &mut update, engine, head, hide)?
        {
            // A file it was to extend does not verify: start again from nothing.
            drop(lock);
            let (idx, mut again) = Index::update(repo, prefix, true, now, engine)?;
            again.repaired = true;
            again.rewrite = update.rewrite.or(again.rewrite);
            return Ok((idx, again));
        }
        let tip = head.map(|h| h.to_string());
        // Nothing new (the common case for gate and implement): the meta file stays as it is.
        if update.rebuilt || update.audited > 0 || meta.tip != tip {
            meta.tip = tip;
            write_meta(&dir, &meta)?;
        }
        Ok((Index { dir, meta }, update))
    }

    /// Forgets what the index of the current branch reached when `chg sync` replaced local
    /// commits that were never pushed by their replays (not a rewrite of shared history:
    /// nobody else saw them). The next update starts again; rewrites seen are kept.
    pub fn forget_replaced(repo: &Repository, prefix: &str, old_tip: Oid) -> Result<()> {
        let (branch, _) = head_of(repo)?;
        let root = repo.path().join("chg").join("audit");
        let dir = root.join(folder_name(&branch, prefix));
        let Some(mut meta) = read_meta(&dir) else {
            return Ok(());
        };
        let lock = File::create(root.join("lock"))
            .map_err(|e| Error::io("opening the audit index lock", e))?;
        lock.lock()
            .map_err(|e| Error::io("locking the audit index", e))?;
        let reached = meta.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
        let local = reached
            .is_some_and(|t| t == old_tip || repo.graph_descendant_of(old_tip, t).unwrap_or(false));
        if !local {
            return Ok(());
        }
        clear(&dir)?;
        meta.tip = None;
        meta.commits = 0;
        meta.emergencies.clear();
        meta.files.clear();
        write_meta(&dir, &meta)
    }

    /// Marks the rewrites as reported: `chg audit` has shown each as an exception once.
    pub fn acknowledge_rewrites(&mut self) -> Result<()> {
        if self.meta.rewrites.iter().all(|r| r.reported) {
            return Ok(());
        }
        for r in &mut self.meta.rewrites {
            r.reported = true;
        }
        write_meta(&self.dir, &self.meta)
    }

    /// The number of commits audited.
    pub fn commits(&self) -> u64 {
        self.meta.commits
    }

    /// The tip audited.
    pub fn tip(&self) -> Option<&str> {
        self.meta.tip.as_deref()
    }

    /// Rewrites detected so far on this branch.
    pub fn rewrites(&self) -> &[Rewrite] {
        &self.meta.rewrites
    }

    /// Emergency changes that entered implementation, oldest first.
    pub fn emergencies(&self) -> &[Emergency] {
        &self.meta.emergencies
    }

    /// Every finding, oldest first; `None` when the file does not verify (rebuild).
    pub fn findings(&self) -> Result<Option<Vec<AuditFinding>>> {
        self.read(FINDINGS)
    }

    /// The history of change `id`, oldest first; `None` when its file does not verify.
    pub fn log(&self, id: &str) -> Result<Option<Vec<Entry>>> {
        Ok(self
            .logs(&[id])?
            .map(|mut by| by.remove(id).unwrap_or_default()))
    }

    /// The histories of the changes `ids`, by id, oldest first (a change without any,
    /// empty): each log file read and verified once, however many of them it holds. `None`
    /// when a file does not verify.
    pub fn logs(&self, ids: &[&str]) -> Result<Option<HashMap<String, Vec<Entry>>>> {
        let mut by_file: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        for id in ids {
            by_file.entry(log_file(id)).or_default().insert(id);
        }
        let mut out: HashMap<String, Vec<Entry>> = ids
            .iter()
            .map(|id| ((*id).to_owned(), Vec::new()))
            .collect();
        for (name, wanted) in by_file {
            // Only the lines of the wanted ids are parsed (the file is still verified
            // whole): serde_json writes an entry's `"id":"…"` before any other field that
            // could hold that text, without spaces, and an id needs no escaping.
            let Some(entries) = self
                .read_lines::<Entry>(&name, |l| line_id(l).is_some_and(|id| wanted.contains(id)))?
            else {
                return Ok(None);
            };
            for e in entries {
                if let Some(list) = out.get_mut(&e.id) {
                    list.push(e);
                }
            }
        }
        for list in out.values_mut() {
            let mut seen = HashSet::new();
            list.retain(|e| seen.insert(e.commit.clone()));
            list.sort_by_key(|e| e.seq);
        }
        Ok(Some(out))
    }

    /// What the histories of the changes `ids` are read from ([`HistoryKey`]).
    pub fn key_of<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> HistoryKey {
        let mut files: Vec<String> = ids.into_iter().map(log_file).collect();
        files.sort();
        files.dedup();
        HistoryKey(
            files
                .into_iter()
                .map(|f| {
                    let check = self.meta.files.get(&f).cloned();
                    (f, check)
                })
                .collect(),
        )
    }

    /// Whether the histories `key` was taken of are the same in this index: the meta (itself
    /// verified) records the same length and SHA-256 of each of their files.
    pub fn holds(&self, key: &HistoryKey) -> bool {
        key.0
            .iter()
            .all(|(f, check)| self.meta.files.get(f) == check.as_ref())
    }

    /// Every change's history, by change id, oldest first; `None` when a file does not
    /// verify.
    pub fn all_logs(&self) -> Result<Option<std::collections::HashMap<String, Vec<Entry>>>> {
        let mut out: std::collections::HashMap<String, Vec<Entry>> = Default::default();
        for name in self.meta.files.keys().filter(|n| n.starts_with("log/")) {
            let Some(entries) = self.read::<Entry>(name)? else {
                return Ok(None);
            };
            for e in entries {
                out.entry(e.id.clone()).or_default().push(e);
            }
        }
        for list in out.values_mut() {
            let mut seen = HashSet::new();
            list.retain(|e| seen.insert(e.commit.clone()));
            list.sort_by_key(|e| e.seq);
        }
        Ok(Some(out))
    }

    /// The lines of the cache file `name`, as far as `meta.json` covers it, if they verify.
    fn read<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<Vec<T>>> {
        self.read_lines(name, |_| true)
    }

    /// [`Index::read`], parsing only the lines `wanted` accepts.
    fn read_lines<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Vec<T>>> {
        let Some(check) = self.meta.files.get(name) else {
            return Ok(Some(Vec::new()));
        };
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let Some(covered) = usize::try_from(check.bytes)
            .ok()
            .and_then(|n| bytes.get(..n))
        else {
            return Ok(None);
        };
        if sha256_hex(covered) != check.sha256 {
            return Ok(None);
        }
        let mut out = Vec::new();
        for line in covered
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && wanted(l))
        {
            match serde_json::from_slice(line) {
                Ok(v) => out.push(v),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

const FINDINGS: &str = "findings.jsonl";

/// The branch HEAD is on (`HEAD` when detached) and its commit, if any.
fn head_of(repo: &Repository) -> Result<(String, Option<Oid>)> {
    let (name, oid) = crate::git::head_state(repo)?;
    Ok((name.unwrap_or_else(|| "HEAD".to_owned()), oid))
}

/// A folder name for a ref name.
fn encode(branch: &str) -> String {
    branch
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The index folder of a branch and a store prefix: readable when short, and never past a
/// file name's 255 bytes however long or odd the branch name (then a readable start and the
/// SHA-256 of the whole).
fn folder_name(branch: &str, prefix: &str) -> String {
    let name = match prefix.trim_end_matches('/') {
        "" => encode(branch),
        p => format!("{}@{}", encode(branch), encode(p)),
    };
    if name.len() <= 120 {
        return name;
    }
    let start = name
        .char_indices()
        .take_while(|(i, _)| *i < 40)
        .last()
        .map_or(0, |(i, _)| i);
    format!("{}~{}", &name[..start], sha256_hex(name.as_bytes()))
}

/// The id an index line's entry is of: the text of its first `"id":"…"`.
fn line_id(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"id\":\"";
    let start = memchr::memmem::find(line, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &line[start..])?;
    std::str::from_utf8(&line[start..start + len]).ok()
}

/// What the histories of some changes were read from: each log file's name and what the
/// meta recorded of it (nothing: no such file). Where the meta records the same of each,
/// the histories read from them are the same ([`Index::holds`]): a reader may keep what it
/// derived from them, keyed so, instead of reading them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryKey(Vec<(String, Option<Check>)>);

/// The log file (`log/NAME`) of a change id.
fn log_file(id: &str) -> String {
    format!("log/{}", bucket(id))
}

/// The log file of a change id: 100 numbers per file, so that the one change's history
/// that gate and implement read is a small file to verify.
fn bucket(id: &str) -> String {
    match id.rsplit_once('-') {
        Some((head, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            let n: u64 = n.parse().unwrap_or(0);
            format!("{}-{}.jsonl", encode(head), n / 100)
        }
        _ => "other.jsonl".to_owned(),
    }
}

/// The meta file: its JSON, a newline, and the JSON's SHA-256 (so a garbled meta that still
/// parses is not trusted either).
fn read_meta(dir: &Path) -> Option<Meta> {
    let text = fs::read(dir.join("meta.json")).ok()?;
    let text = text.strip_suffix(b"\n")?;
    let cut = text.iter().rposition(|b| *b == b'\n')?;
    let (json, sum) = (&text[..cut], &text[cut + 1..]);
    if sha256_hex(json).as_bytes() != sum {
        return None;
    }
    // The last meta parsed, by the SHA-256 of its JSON (just verified against the file):
    // at 100,000 changes parsing it is most of a gate's reading of the index, and a
    // long-lived reader (a server) reads the same one request after request.
    static LAST: std::sync::Mutex<Option<(Vec<u8>, Meta)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((kept, meta)) = last.as_ref()
        && kept.as_slice() == sum
    {
        return Some(meta.clone());
    }
    let meta: Meta = serde_json::from_slice(json).ok()?;
    *last = Some((sum.to_vec(), meta.clone()));
    Some(meta)
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let mut text = serde_json::to_vec(meta).map_err(|e| Error::Internal(e.to_string()))?;
    let sum = sha256_hex(&text);
    text.push(b'\n');
    text.extend_from_slice(sum.as_bytes());
    text.push(b'\n');
    crate::git::atomic_write(&dir.join("meta.json"), &text)
}

fn clear(dir: &Path) -> Result<()> {
    for name in ["findings.jsonl", "log"] {
        let p = dir.join(name);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("clearing {}", p.display()), e));
            }
            _ => {}
        }
    }
    fs::create_dir_all(dir.join("log")).map_err(|e| Error::io("creating the audit log folder", e))
}

/// Appends verdicts to the cache files, keeping each file's running SHA-256 so that a long
/// rebuild hashes every byte once.
struct Appender<'a> {
    dir: &'a Path,
    recorded: &'a BTreeMap<String, Check>,
    open: BTreeMap<String, (File, sha2::Sha256, u64)>,
}

impl<'a> Appender<'a> {
    fn new(dir: &'a Path, recorded: &'a BTreeMap<String, Check>) -> Self {
        Appender {
            dir,
            recorded,
            open: BTreeMap::new(),
        }
    }

    /// Appends; `false` when a file to extend does not hold what `meta.json` records.
    fn append(&mut self, verdicts: &[super::CommitAudit]) -> Result<bool> {
        let mut bufs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for v in verdicts {
            for f in &v.findings {
                let buf = bufs.entry(FINDINGS.to_owned()).or_default();
                serde_json::to_writer(&mut *buf, f).map_err(|e| Error::Internal(e.to_string()))?;
                buf.push(b'\n');
            }
            for e in &v.entries {
                let buf = bufs.entry(format!("log/{}", bucket(&e.id))).or_default();
                serde_json::to_writer(&mut *buf, e).map_err(|e| Error::Internal(e.to_string()))?;
                buf.push(b'\n');
            }
        }
        for (name, buf) in bufs {
            if !self.open.contains_key(&name) {
                match self.start(&name)? {
                    Some(o) => self.open.insert(name.clone(), o),
                    None => return Ok(false),
                };
            }
            let (file, hash, bytes) = self.open.get_mut(&name).expect("opened above");
            file.write_all(&buf)
                .map_err(|e| Error::io(format!("writing {}", self.dir.join(&name).display()), e))?;
            sha2::Digest::update(hash, &buf);
            *bytes += buf.len() as u64;
        }
        Ok(true)
    }

    /// Opens `name` for appending after checking what it holds and cutting off bytes past
    /// the recorded length (appended by a run that died before writing `meta.json`).
    fn start(&self, name: &str) -> Result<Option<(File, sha2::Sha256, u64)>> {
        use sha2::Digest;
        let path = self.dir.join(name);
        let io = |e| Error::io(format!("writing {}", path.display()), e);
        let mut hash = sha2::Sha256::new();
        let bytes = match self.recorded.get(name) {
            None => 0,
            Some(check) => {
                let Ok(old) = fs::read(&path) else {
                    return Ok(None);
                };
                let Some(covered) = usize::try_from(check.bytes).ok().and_then(|n| old.get(..n))
                else {
                    return Ok(None);
                };
                hash.update(covered);
                if hex(&hash.clone().finalize()) != check.sha256 {
                    return Ok(None);
                }
                check.bytes
            }
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(bytes).map_err(io)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(Some((file, hash, bytes)))
    }

    /// What each extended file now holds.
    fn finish(self) -> impl Iterator<Item = (String, Check)> {
        self.open.into_iter().map(|(name, (_, hash, bytes))| {
            let sha256 = hex(&sha2::Digest::finalize(hash));
            (name, Check { bytes, sha256 })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_every_commit_in_order_and_taper_to_a_small_last_one() {
        for n in [0, 1, TAIL, TAIL + 1, BATCH, 2 * BATCH + 1, 49_516, 493_022] {
            let oids: Vec<Oid> = (0..n as u32)
                .map(|i| {
                    let mut b = [0u8; 20];
                    b[..4].copy_from_slice(&i.to_be_bytes());
                    Oid::from_bytes(&b).unwrap()
                })
                .collect();
            let batches = tapered(&oids);
            assert_eq!(batches.concat(), oids, "{n}");
            assert!(
                batches.iter().all(|b| !b.is_empty() && b.len() <= BATCH),
                "{n}"
            );
            // Each batch after the full ones is at most what came before it, and the last
            // is small: the pass and write left alone at the end are short.
            if let Some(last) = batches.last() {
                assert!(last.len() <= TAIL, "{n}: {}", last.len());
            }
            for w in batches.windows(2) {
                assert!(w[1].len() <= w[0].len(), "{n}");
            }
        }
    }
}

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
//! - `log/<PREFIX>-<year>-<n>.jsonl`: `chg log` entries, 1,000 change numbers per file, so
//!   one change's history is a read of one small file.
//!
//! New verdicts are appended, then `meta.json` is replaced atomically. A crash in between
//! leaves lines that the next run appends again; readers drop the duplicates.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{AuditFinding, CommitAudit, Emergency, Entry};
use crate::error::{Error, Result};

const FORMAT: u32 = 1;

/// What judges commits for the index (the audit engine, in [`super`]).
pub trait Engine {
    /// The commits of `head`'s history not reachable from `hide`, oldest first.
    fn commits(&self, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>>;
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
        let dir = root.join(encode(&branch));
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // Concurrent updates would append the same lines twice; one at a time is simpler.
        let lock = File::create(root.join("lock"))
            .map_err(|e| Error::io("opening the audit index lock", e))?;
        lock.lock()
            .map_err(|e| Error::io("locking the audit index", e))?;

        let fresh = Meta {
            format: FORMAT,
            chg: env!("CARGO_PKG_VERSION").to_owned(),
            prefix: prefix.to_owned(),
            branch: branch.clone(),
            tip: None,
            commits: 0,
            emergencies: Vec::new(),
            rewrites: Vec::new(),
        };
        let stored = read_meta(&dir).filter(|m| {
            m.format == FORMAT
                && m.chg == fresh.chg
                && m.prefix == fresh.prefix
                && m.branch == fresh.branch
        });
        let mut update = Update::default();
        let mut meta = match stored {
            Some(m) if !full => m,
            other => {
                update.rebuilt = true;
                Meta {
                    rewrites: other.map(|m| m.rewrites).unwrap_or_default(),
                    ..fresh.clone()
                }
            }
        };
        let old_tip = meta.tip.as_deref().and_then(|t| Oid::from_str(t).ok());
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
                    branch: branch.clone(),
                    old_tip: old.to_string(),
                    new_tip: head.to_string(),
                    detected_at: now,
                };
                update.rewrite = Some(r.clone());
                update.rebuilt = true;
                meta = Meta {
                    rewrites: [meta.rewrites, vec![r]].concat(),
                    ..fresh.clone()
                };
            }
        } else if old_tip.is_some() && head.is_none() {
            update.rebuilt = true;
            meta = Meta {
                rewrites: meta.rewrites,
                ..fresh.clone()
            };
        }
        if update.rebuilt {
            clear(&dir)?;
        }
        if let Some(head) = head
            && Some(head) != hide
        {
            let oids = engine.commits(head, hide)?;
            for batch in oids.chunks(BATCH) {
                let verdicts = engine.verdicts(batch, meta.commits)?;
                append(&dir, &verdicts)?;
                for v in verdicts {
                    meta.emergencies.extend(v.emergencies);
                }
                meta.commits += batch.len() as u64;
                update.audited += batch.len() as u64;
            }
        }
        meta.tip = head.map(|h| h.to_string());
        write_meta(&dir, &meta)?;
        Ok((Index { dir, meta }, update))
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

    /// Every finding, oldest first.
    pub fn findings(&self) -> Result<Vec<AuditFinding>> {
        read_lines(&self.dir.join("findings.jsonl"))
    }

    /// The history of change `id`, oldest first.
    pub fn log(&self, id: &str) -> Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = read_lines(&self.dir.join("log").join(bucket(id)))?;
        entries.retain(|e| e.id == id);
        let mut seen = HashSet::new();
        entries.retain(|e| seen.insert(e.commit.clone()));
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }
}

impl Index {
    /// Every change's history, by change id, oldest first.
    pub fn all_logs(&self) -> Result<std::collections::HashMap<String, Vec<Entry>>> {
        let mut out: std::collections::HashMap<String, Vec<Entry>> = Default::default();
        let dir = self.dir.join("log");
        let list = match fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        for f in list.flatten() {
            for e in read_lines::<Entry>(&f.path())? {
                out.entry(e.id.clone()).or_default().push(e);
            }
        }
        for list in out.values_mut() {
            let mut seen = HashSet::new();
            list.retain(|e| seen.insert(e.commit.clone()));
            list.sort_by_key(|e| e.seq);
        }
        Ok(out)
    }
}

/// The branch HEAD is on (`HEAD` when detached) and its commit, if any.
fn head_of(repo: &Repository) -> Result<(String, Option<Oid>)> {
    let (name, oid) = crate::store::commit::head_state(repo)?;
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

/// The log file of a change id: 1,000 numbers per file.
fn bucket(id: &str) -> String {
    match id.rsplit_once('-') {
        Some((head, n)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            let n: u64 = n.parse().unwrap_or(0);
            format!("{}-{}.jsonl", encode(head), n / 1000)
        }
        _ => "other.jsonl".to_owned(),
    }
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let text = fs::read(dir.join("meta.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let text = serde_json::to_vec(meta).map_err(|e| Error::Internal(e.to_string()))?;
    crate::store::commit::atomic_write(&dir.join("meta.json"), &text)
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

fn append(dir: &Path, verdicts: &[super::CommitAudit]) -> Result<()> {
    let io = |e| Error::io(format!("writing the audit index in {}", dir.display()), e);
    let mut findings = Vec::new();
    let mut logs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for v in verdicts {
        for f in &v.findings {
            serde_json::to_writer(&mut findings, f).map_err(|e| Error::Internal(e.to_string()))?;
            findings.push(b'\n');
        }
        for e in &v.entries {
            let buf = logs.entry(bucket(&e.id)).or_default();
            serde_json::to_writer(&mut *buf, e).map_err(|e| Error::Internal(e.to_string()))?;
            buf.push(b'\n');
        }
    }
    let open = |p: PathBuf| OpenOptions::new().create(true).append(true).open(p);
    if !findings.is_empty() {
        open(dir.join("findings.jsonl"))
            .and_then(|mut f| f.write_all(&findings))
            .map_err(io)?;
    }
    fs::create_dir_all(dir.join("log")).map_err(io)?;
    for (name, buf) in logs {
        open(dir.join("log").join(name))
            .and_then(|mut f| f.write_all(&buf))
            .map_err(io)?;
    }
    Ok(())
}

/// Reads a JSON-lines file, skipping a torn last line and duplicates.
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if let Ok(v) = serde_json::from_str::<T>(&line)
            && seen.insert(line)
        {
            out.push(v);
        }
    }
    Ok(out)
}

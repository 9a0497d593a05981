//! The read summary: what `chg list`, `chg cab` and `chg report` need of every change file,
//! kept in `.git/chg/summary/` (never committed) so that a query at scale reads one file
//! instead of decoding every change.
//!
//! Layout, one folder per store (`store`, or `store@<sha256 of the prefix>`):
//! - `meta.json`: format, chg version, store prefix, the tree of HEAD's `changes/` last
//!   seen, and the count, length and SHA-256 of the rows; then a line with the JSON's own
//!   SHA-256, as the audit index writes its meta file;
//! - `rows.bin`: one record per change file of the work tree, by path (a 4-byte length,
//!   then the row in postcard: at 100,000 changes a fifth of the JSON it replaced, and
//!   decoded in parallel): the git blob id of the bytes summarized, the file's `lstat` when
//!   those bytes were seen, and the fields the queries filter, sort and show (no long
//!   texts: see [`Facts`]);
//! - `lock`: held while the summary is read and written.
//!
//! It is never a source of truth, and never trusted over the files. Each run lists
//! `changes/` and `lstat`s every file; a row is used for a file only when its recorded
//! stat (size, mtime, ctime, inode) is the file's now. Any other file (new, edited,
//! checked out anew, recorded too recently to tell) is read and hashed as git hashes a
//! blob: the row is used when the blob id is the same, else the file is decoded afresh
//! and its row replaced. A stat is only recorded when the file's mtime and ctime are
//! older than the start of the run by the filesystem's clock (the lock file's mtime), git's
//! rule against "racily clean" files: an edit within the same clock tick cannot pass for
//! the recorded version. Uncommitted edits and untracked files are therefore seen as in
//! the work tree, exactly as reading every file would see them.
//!
//! When HEAD's `changes/` tree moved, the two trees are diffed and only the changed blobs
//! are decoded again (by blob id); the work-tree check above still decides what is listed.
//! A summary that does not verify (emptied, garbled, cut short) or was written by another
//! version of chg is rebuilt, with a note. One that cannot be written (a read-only `.git`)
//! costs time, nothing else: the files are read as before.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use git2::{ObjectType, Oid};
use jiff::Timestamp;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Loaded, Store};
use crate::decode::{self, Decoded};
use crate::error::{Error, Result};
use crate::model::{
    Approval, ChangeModel, ChangeRequest, Decision, Implementation, Outcome, Priority, RiskLevel,
    Schedule, Status, Urgency,
};
use crate::text::sha256_hex;

/// Bumped whenever a row's shape or the decoding of change files changes.
const FORMAT: u32 = 4;
const ROWS: &str = "rows.bin";

/// A time as seconds and nanoseconds: parsing RFC 3339 text for 100,000 rows showed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct T(i64, i32);

impl T {
    fn of(t: Timestamp) -> T {
        T(t.as_second(), t.subsec_nanosecond())
    }
    fn get(self) -> Timestamp {
        Timestamp::new(self.0, self.1).unwrap_or_default()
    }
}

fn of(t: Option<Timestamp>) -> Option<T> {
    t.map(T::of)
}

fn get(t: Option<T>) -> Option<Timestamp> {
    t.map(T::get)
}

/// What the queries read of a change: every field but the long texts (description,
/// justification, impact, plans, test environment), the proposed policy's files (only
/// whether there are any: it adds the governance roles) and the deployments. Approvals
/// keep who, which role, what and when. A rule that reads more (a standard change judged
/// against its template's fixed fields) is given the file ([`Store::load_file`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Facts {
    id: Option<String>,
    title: Option<String>,
    requester: Option<String>,
    requested: Option<T>,
    kind: Option<String>,
    model: Option<ChangeModel>,
    priority: Option<Priority>,
    urgency: Option<Urgency>,
    risk: Option<RiskLevel>,
    answers: Option<BTreeMap<String, bool>>,
    systems: Vec<String>,
    testing: Option<bool>,
    template: Option<String>,
    template_digest: Option<String>,
    policy_change: bool,
    schedule: Option<(T, T, bool)>,
    status: Option<Status>,
    approvals: Vec<(String, String, Decision, T)>,
    implementation: Option<Done>,
}

/// What the queries read of an implementation: who, and when it started, ended and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Done {
    implementer: Option<String>,
    started: Option<T>,
    completed: Option<T>,
    outcome: Option<Outcome>,
    closed_by: Option<String>,
}

impl Facts {
    fn of(c: &ChangeRequest) -> Facts {
        Facts {
            id: c.id.as_ref().map(ToString::to_string),
            title: c.title.clone(),
            requester: c.requester.clone(),
            requested: of(c.request_date),
            kind: c.change_type.clone(),
            model: c.change_model,
            priority: c.priority,
            urgency: c.urgency,
            risk: c.risk_level,
            answers: c.risk_assessment.clone(),
            systems: c.affected_systems.clone(),
            testing: c.testing_required,
            template: c.template.clone(),
            template_digest: c.template_digest.clone(),
            policy_change: c.proposed_policy.is_some(),
            schedule: c
                .schedule
                .as_ref()
                .map(|s| (T::of(s.start), T::of(s.end), s.maintenance_window)),
            status: c.status,
            approvals: c
                .approvals
                .iter()
                .map(|a| (a.by.clone(), a.role.clone(), a.decision, T::of(a.at)))
                .collect(),
            implementation: c.implementation.as_ref().map(|i| Done {
                implementer: i.implementer.clone(),
                started: of(i.started_at),
                completed: of(i.completed_at),
                outcome: i.outcome,
                closed_by: i.closed_by.clone(),
            }),
        }
    }

    /// The change as far as the summary knows it.
    fn into_change(self) -> ChangeRequest {
        ChangeRequest {
            id: self.id.and_then(|i| i.parse().ok()),
            title: self.title,
            requester: self.requester,
            request_date: get(self.requested),
            change_type: self.kind,
            change_model: self.model,
            priority: self.priority,
            urgency: self.urgency,
            risk_level: self.risk,
            risk_assessment: self.answers,
            affected_systems: self.systems,
            testing_required: self.testing,
            template: self.template,
            template_digest: self.template_digest,
            proposed_policy: self.policy_change.then(BTreeMap::new),
            schedule: self.schedule.map(|(start, end, w)| Schedule {
                start: start.get(),
                end: end.get(),
                maintenance_window: w,
            }),
            status: self.status,
            approvals: self
                .approvals
                .into_iter()
                .map(|(by, role, decision, at)| Approval {
                    by,
                    role,
                    decision,
                    at: at.get(),
                    comments: None,
                    conditions: vec![],
                    digest: None,
                    signature: None,
                    attested_by: None,
                    attested_via: None,
                })
                .collect(),
            implementation: self.implementation.map(|d| Implementation {
                implementer: d.implementer,
                started_at: get(d.started),
                completed_at: get(d.completed),
                outcome: d.outcome,
                closed_by: d.closed_by,
                ..Implementation::default()
            }),
            ..ChangeRequest::default()
        }
    }
}

/// A file's `lstat` as far as it tells whether the file was rewritten: size, mtime, ctime
/// (seconds and nanoseconds) and inode.
type Stat = [i64; 6];

#[cfg(unix)]
fn stat_of(m: &fs::Metadata) -> Stat {
    use std::os::unix::fs::MetadataExt;
    [
        m.size() as i64,
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino() as i64,
    ]
}

#[cfg(not(unix))]
fn stat_of(m: &fs::Metadata) -> Stat {
    let t = |t: std::io::Result<SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos() as i64))
    };
    let (ms, mn) = t(m.modified());
    let (cs, cn) = t(m.created());
    [m.len() as i64, ms, mn, cs, cn, 0]
}

/// Bytes of a row: a span of the stored file, or the row's own (decoded this run).
#[derive(Debug, Clone)]
enum Bytes {
    Stored(u32, u32),
    Own(Box<[u8]>),
}

/// One change file of the work tree. Only what the freshness check needs is decoded when
/// the summary is read; the facts stay encoded until a query asks for them, so a warm run
/// at 100,000 changes holds the stored file and a small row per change, not 100,000
/// decoded changes.
#[derive(Debug, Clone)]
struct Row {
    /// Path relative to the store (UTF-8, checked when read).
    p: Bytes,
    /// The git blob id of the bytes summarized (zeros for a file over the size limit).
    b: [u8; 20],
    /// The file's stat when those bytes were read, if old enough to vouch for them.
    s: Option<Stat>,
    /// Over chg's size limit: read by nobody, so listed by nobody.
    big: bool,
    /// The file is readable YAML (its facts are some), and its status: a list filtered by
    /// status skips the other rows without decoding their facts.
    parsed: bool,
    status: Option<Status>,
    /// What the file says (`Option<Facts>` in postcard; none when it is not readable
    /// YAML).
    facts: Bytes,
}

/// The head of a stored record, followed by the facts' bytes.
#[derive(Serialize, Deserialize)]
struct Head<'a> {
    p: &'a str,
    b: [u8; 20],
    s: Option<Stat>,
    big: bool,
    parsed: bool,
    status: Option<Status>,
}

/// The rows, in path order, and the stored file their spans point into.
#[derive(Debug, Default)]
struct Rows {
    buf: Vec<u8>,
    rows: Vec<Row>,
}

impl Rows {
    fn bytes<'a>(&'a self, b: &'a Bytes) -> &'a [u8] {
        match b {
            Bytes::Stored(at, len) => {
                let (at, len) = (*at as usize, *len as usize);
                self.buf.get(at..at + len).unwrap_or_default()
            }
            Bytes::Own(own) => own,
        }
    }

    fn path<'a>(&'a self, r: &'a Row) -> &'a str {
        std::str::from_utf8(self.bytes(&r.p)).unwrap_or_default()
    }

    /// The row's facts, decoded; `Err` when they do not decode (the caller reads the file).
    fn facts(&self, r: &Row) -> std::result::Result<Option<Facts>, ()> {
        postcard::from_bytes(self.bytes(&r.facts)).map_err(|_| ())
    }

    /// Into path order. Paths compare as bytes (UTF-8 keeps the order of `str`), and rows
    /// already in order (as written) are left as they are: checking each path's UTF-8 on
    /// every comparison of a sort showed in profiles of a warm `chg list`.
    fn sort(&mut self) {
        if self
            .rows
            .is_sorted_by(|a, b| self.bytes(&a.p) <= self.bytes(&b.p))
        {
            return;
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.par_sort_unstable_by(|a, b| self.bytes(&a.p).cmp(self.bytes(&b.p)));
        self.rows = rows;
    }

    fn find(&self, p: &str) -> Option<usize> {
        self.rows.binary_search_by(|r| self.path(r).cmp(p)).ok()
    }
}

/// A blob id as stored in a row (a SHA-1 repository's 20 bytes; any other id matches no
/// row, so its file is read afresh).
fn blob_bytes(blob: Oid) -> [u8; 20] {
    blob.as_bytes().try_into().unwrap_or([0xff; 20])
}

impl Row {
    fn decode(p: String, blob: Oid, bytes: &[u8], s: Option<Stat>) -> Row {
        let own = |b: Vec<u8>| Bytes::Own(b.into_boxed_slice());
        let path = own(p.clone().into_bytes());
        if bytes.len() as u64 > decode::MAX_FILE_BYTES {
            return Row {
                p: path,
                b: [0; 20],
                s,
                big: true,
                parsed: false,
                status: None,
                facts: own(postcard::to_allocvec(&None::<Facts>).unwrap_or_default()),
            };
        }
        // Listing never places findings: skip recording places.
        let d = decode::decode_bytes_with(&p, bytes, false);
        let facts = d.parsed.then(|| Facts::of(&d.change));
        Row {
            p: path,
            b: blob_bytes(blob),
            s,
            big: false,
            parsed: d.parsed,
            status: d.change.status.filter(|_| d.parsed),
            facts: own(postcard::to_allocvec(&facts).unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    format: u32,
    chg: String,
    prefix: String,
    /// HEAD's `changes/` tree when the rows were written.
    tree: Option<String>,
    /// How many rows `rows.bin` holds.
    #[serde(default)]
    rows: u64,
    rows_bytes: u64,
    rows_sha256: String,
}

/// What became of the stored summary.
enum Stored {
    /// Rows by path, in path order, and the tree they were refreshed to.
    Usable(Rows, Option<Oid>),
    /// None yet: built without a word.
    Missing,
    /// Written by another chg or for another store; the sentence says which.
    Foreign(String),
    /// Did not verify.
    Damaged,
}

fn read_stored(dir: &Path, prefix: &str) -> Stored {
    let Ok(text) = fs::read(dir.join("meta.json")) else {
        return Stored::Missing;
    };
    let meta = (|| {
        let text = text.strip_suffix(b"\n")?;
        let cut = text.iter().rposition(|b| *b == b'\n')?;
        let (json, sum) = (&text[..cut], &text[cut + 1..]);
        (sha256_hex(json).as_bytes() == sum)
            .then(|| serde_json::from_slice::<Meta>(json).ok())
            .flatten()
    })();
    let Some(meta) = meta else {
        return Stored::Damaged;
    };
    if meta.format != FORMAT || meta.chg != env!("CARGO_PKG_VERSION") || meta.prefix != prefix {
        return Stored::Foreign(format!(
            "was written by chg {} (format {})",
            meta.chg, meta.format
        ));
    }
    let Ok(bytes) = fs::read(dir.join(ROWS)) else {
        return Stored::Damaged;
    };
    if bytes.len() as u64 != meta.rows_bytes || sha256_hex(&bytes) != meta.rows_sha256 {
        return Stored::Damaged;
    }
    // Records: a 4-byte little-endian length, then the row's head and facts in postcard.
    // Only the heads are decoded (borrowing the path): the facts wait for a query.
    let mut spans = Vec::with_capacity(meta.rows as usize);
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else {
            return Stored::Damaged;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if bytes.len() - at - 4 < len {
            return Stored::Damaged;
        }
        spans.push((at + 4, len));
        at += 4 + len;
    }
    // Spans are 32-bit: a summary past 4 GiB (tens of millions of changes) is not kept.
    if u32::try_from(bytes.len()).is_err() {
        return Stored::Damaged;
    }
    let base = bytes.as_ptr() as usize;
    // An indexed collect, straight into place (collecting into `Option<Vec>` goes through
    // a list of growing vectors, which showed in profiles).
    let rows: Vec<Option<Row>> = spans
        .into_par_iter()
        .map(|(at, len)| {
            let record = &bytes[at..at + len];
            let (head, facts) = postcard::take_from_bytes::<Head<'_>>(record).ok()?;
            let span =
                |b: &[u8]| Bytes::Stored((b.as_ptr() as usize - base) as u32, b.len() as u32);
            Some(Row {
                p: span(head.p.as_bytes()),
                b: head.b,
                s: head.s,
                big: head.big,
                parsed: head.parsed,
                status: head.status,
                facts: span(facts),
            })
        })
        .collect();
    if rows.iter().any(Option::is_none) {
        return Stored::Damaged;
    }
    let mut kept = Vec::with_capacity(rows.len());
    kept.extend(rows.into_iter().flatten());
    let rows = kept;
    let mut rows = Rows { buf: bytes, rows };
    // Written in path order; a hand-edited file with a valid sum still is sorted.
    rows.sort();
    let tree = meta.tree.as_deref().and_then(|t| Oid::from_str(t).ok());
    Stored::Usable(rows, tree)
}

fn write_stored(dir: &Path, prefix: &str, tree: Option<Oid>, rows: &Rows) -> Result<()> {
    let internal = |e: String| Error::Internal(e);
    let records: Vec<Vec<u8>> = rows
        .rows
        .par_iter()
        .map(|r| {
            let head = Head {
                p: rows.path(r),
                b: r.b,
                s: r.s,
                big: r.big,
                parsed: r.parsed,
                status: r.status,
            };
            let mut body = postcard::to_allocvec(&head).map_err(|e| e.to_string())?;
            body.extend_from_slice(rows.bytes(&r.facts));
            let len = u32::try_from(body.len()).map_err(|e| e.to_string())?;
            let mut v = Vec::with_capacity(body.len() + 4);
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&body);
            Ok(v)
        })
        .collect::<std::result::Result<_, String>>()
        .map_err(internal)?;
    let bytes = records.concat();
    let meta = Meta {
        format: FORMAT,
        chg: env!("CARGO_PKG_VERSION").to_owned(),
        prefix: prefix.to_owned(),
        tree: tree.map(|t| t.to_string()),
        rows: rows.rows.len() as u64,
        rows_bytes: bytes.len() as u64,
        rows_sha256: sha256_hex(&bytes),
    };
    super::commit::atomic_write(&dir.join(ROWS), &bytes)?;
    let mut text = serde_json::to_vec(&meta).map_err(|e| internal(e.to_string()))?;
    let sum = sha256_hex(&text);
    text.push(b'\n');
    text.extend_from_slice(sum.as_bytes());
    text.push(b'\n');
    super::commit::atomic_write(&dir.join("meta.json"), &text)
}

/// Every regular `.yaml` file under the store's `changes/` (as
/// [`crate::layout::change_entries`] lists them), by store path in byte order, with its
/// `lstat`. The month folders are read in parallel and each file is stat'ed relative to its
/// folder (no walk of the whole path per file): at 100,000 files this is most of a warm
/// `chg list`.
fn listed_with_stats(root: &Path) -> std::io::Result<Vec<(String, Stat)>> {
    let changes = root.join("changes");
    let mut dirs = vec![(changes.clone(), "changes".to_owned())];
    // Years, then months: the folders are few, their files many.
    let mut folders = Vec::new();
    while let Some((dir, rel)) = dirs.pop() {
        folders.push((dir.clone(), rel.clone()));
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                dirs.push((entry.path(), format!("{rel}/{name}")));
            }
        }
    }
    let found: Vec<std::io::Result<Vec<(String, Stat)>>> = folders
        .into_par_iter()
        .map(|(dir, rel)| {
            let mut out = Vec::new();
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') || !name.ends_with(".yaml") {
                    continue;
                }
                if !entry.file_type()?.is_file() {
                    continue;
                }
                // Gone since it was listed: as reading it would, skip it.
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    out.push((format!("{rel}/{name}"), stat_of(&meta)));
                }
            }
            Ok(out)
        })
        .collect();
    let mut out: Vec<(String, Stat)> =
        Vec::with_capacity(found.iter().flatten().map(Vec::len).sum());
    for f in found {
        out.extend(f?);
    }
    out.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Locks the summary folder `dir` and reads the filesystem's clock at the start of the run
/// (the lock file's mtime, just written): stats from before it are safe to record.
fn lock_summary(dir: &Path) -> Result<(File, (i64, i64))> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e| Error::io(what, e)
    };
    let mut lock = File::create(dir.join("lock")).map_err(io("opening the summary lock"))?;
    lock.lock().map_err(io("locking the summary"))?;
    // The filesystem's clock at the start of the run: stats from before it are safe.
    lock.write_all(b"\n")
        .map_err(io("writing the summary lock"))?;
    let start = lock
        .metadata()
        .and_then(|m| m.modified())
        .map_err(io("reading the summary lock"))?;
    let start = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or((0, 0), |d| {
            (d.as_secs() as i64, i64::from(d.subsec_nanos()))
        });
    Ok((lock, start))
}

/// What one work-tree file turned out to be.
enum Seen {
    /// The stored row, its stat still the file's.
    Same(usize),
    /// The stored row's bytes, under a new stat (or one too recent to record).
    Restat(usize, Option<Stat>),
    /// Read and decoded afresh.
    New(Box<Row>),
    /// Gone or unreadable since it was listed: as reading it would, skip it.
    Gone,
}

impl Store {
    fn summary_dir(&self) -> PathBuf {
        let name = match self.prefix.as_str() {
            "" => "store".to_owned(),
            p => format!("store@{}", &sha256_hex(p.as_bytes())[..16]),
        };
        self.repo.path().join("chg").join("summary").join(name)
    }

    /// HEAD's `changes/` tree, if any.
    fn changes_tree(&self) -> Result<Option<Oid>> {
        let Some(head) = super::commit::head_state(&self.repo)?.1 else {
            return Ok(None);
        };
        let tree = self.repo.find_commit(head)?.tree()?;
        match tree.get_path(Path::new(&format!("{}changes", self.prefix))) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => Ok(Some(e.id())),
            Ok(_) => Ok(None),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-decodes, by blob id, the files HEAD's `changes/` tree changed since `old`;
    /// rows of removed files go (the work tree says whether they are still there).
    fn follow_head(&self, rows: &mut Rows, old: Option<Oid>, new: Option<Oid>) -> Result<()> {
        let find = |t: Option<Oid>| t.and_then(|t| self.repo.find_tree(t).ok());
        let (Some(old), Some(new)) = (find(old), find(new)) else {
            // No tree to diff against: the work-tree check alone refreshes the rows.
            return Ok(());
        };
        let diff = self.repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
        let mut changed: BTreeMap<String, Option<Oid>> = BTreeMap::new();
        for d in diff.deltas() {
            for (f, live) in [(d.old_file(), false), (d.new_file(), true)] {
                if let Some(p) = f.path().and_then(Path::to_str) {
                    let id = (live && !f.id().is_zero()).then(|| f.id());
                    let e = changed.entry(format!("changes/{p}")).or_insert(None);
                    *e = e.or(id);
                }
            }
        }
        let mut redecoded = Vec::new();
        let mut kept = std::mem::take(&mut rows.rows);
        kept.retain(|r| match changed.get(rows.path(r)) {
            None => true,
            Some(Some(blob)) if r.b == blob_bytes(*blob) => true,
            Some(_) => false,
        });
        rows.rows = kept;
        for (p, blob) in &changed {
            let Some(blob) = blob else { continue };
            if rows.find(p).is_some() {
                continue;
            }
            if let Ok(b) = self.repo.find_blob(*blob) {
                redecoded.push((p.clone(), *blob, b.content().to_vec()));
            }
        }
        let fresh: Vec<Row> = redecoded
            .into_par_iter()
            .map(|(p, blob, bytes)| Row::decode(p, blob, &bytes, None))
            .collect();
        rows.rows.extend(fresh);
        rows.sort();
        Ok(())
    }

    /// The change files `keep` accepts, and every undecodable one, as [`Store::load_where`]
    /// returns them but read from the summary (see [`self`]): each [`Loaded`] has no text
    /// and holds the change as far as [`Facts`] go. Use [`Store::load_file`] for the rest.
    /// Falls back to reading every file when the summary cannot be kept.
    pub fn load_summaries_where(
        &self,
        keep: impl Fn(&ChangeRequest) -> bool + Sync,
    ) -> Result<Vec<Loaded>> {
        self.load_summaries_with_status(|_| true, keep)
    }

    /// [`Store::load_summaries_where`], skipping first, without decoding more of them,
    /// the readable files whose status (`None`: none given) `status` refuses: a necessary
    /// condition of `keep`, which a list filtered by status gives (see
    /// [`crate::query::Query::status_may_match`]).
    pub fn load_summaries_with_status(
        &self,
        status: impl Fn(Option<Status>) -> bool + Sync,
        keep: impl Fn(&ChangeRequest) -> bool + Sync,
    ) -> Result<Vec<Loaded>> {
        let rows = match self.summary_rows() {
            Ok(rows) => rows,
            Err(_) => return self.load_where(|c| status(c.status) && keep(c)),
        };
        enum Found {
            Kept(Box<Loaded>),
            Skipped,
            /// Facts that did not decode (never written so): the file is read instead.
            Reread(PathBuf),
        }
        let found: Vec<Found> = rows
            .rows
            .par_iter()
            .map(|r| {
                if r.big || r.parsed && !status(r.status) {
                    return Found::Skipped;
                }
                let rel = PathBuf::from(rows.path(r));
                let decoded = match rows.facts(r) {
                    Ok(Some(f)) => {
                        let change = f.into_change();
                        if !keep(&change) {
                            return Found::Skipped;
                        }
                        Decoded {
                            change,
                            parsed: true,
                            ..Decoded::default()
                        }
                    }
                    Ok(None) => Decoded::default(),
                    Err(()) => return Found::Reread(rel),
                };
                Found::Kept(Box::new(Loaded {
                    rel,
                    text: String::new(),
                    decoded,
                }))
            })
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for f in found {
            match f {
                Found::Kept(l) => out.push(*l),
                Found::Skipped => {}
                Found::Reread(rel) => {
                    let l = self.load_file(&rel)?;
                    if !l.decoded.parsed
                        || status(l.decoded.change.status) && keep(&l.decoded.change)
                    {
                        out.push(l);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The stored rows, the tree they were refreshed to, and whether they must be written
    /// anew (none yet, or rebuilt with a note: damaged or another version's).
    fn stored_rows(&self, dir: &Path) -> (Rows, Option<Oid>, bool) {
        match read_stored(dir, &self.prefix) {
            Stored::Usable(rows, t) => (rows, t, false),
            Stored::Missing => (Rows::default(), None, true),
            Stored::Foreign(why) => {
                self.notices.borrow_mut().push(format!(
                    "chg: note: the read summary in .git/chg/summary {why}; it was rebuilt from the change files"
                ));
                (Rows::default(), None, true)
            }
            Stored::Damaged => {
                self.notices.borrow_mut().push(
                    "chg: note: the read summary in .git/chg/summary did not verify (emptied, garbled or cut short); it was rebuilt from the change files".to_owned(),
                );
                (Rows::default(), None, true)
            }
        }
    }

    /// The rows of every change file of the work tree, the summary brought up to date.
    fn summary_rows(&self) -> Result<Rows> {
        let dir = self.summary_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // Held until the rows are written; its mtime is the start of the run.
        let (_lock, start) = lock_summary(&dir)?;
        let safe = |s: &Stat| (s[1], s[2]) < start && (s[3], s[4]) < start;

        let tree = self.changes_tree()?;
        let (mut rows, old_tree, mut dirty) = self.stored_rows(&dir);
        if old_tree != tree {
            self.follow_head(&mut rows, old_tree, tree)?;
            dirty = true;
        }

        let files =
            listed_with_stats(&self.root).map_err(|e| Error::io("cannot read changes/", e))?;
        let root = &self.root;
        // Both in path order: pair each file with its row by a merge, not a map.
        let mut pairs: Vec<(String, Stat, Option<usize>)> = Vec::with_capacity(files.len());
        let mut i = 0;
        for (f, meta) in files {
            while i < rows.rows.len() && rows.bytes(&rows.rows[i].p) < f.as_bytes() {
                i += 1;
            }
            let found =
                (i < rows.rows.len() && rows.bytes(&rows.rows[i].p) == f.as_bytes()).then_some(i);
            pairs.push((f, meta, found));
        }
        let seen: Vec<Seen> = pairs
            .into_par_iter()
            .map(|(p, stat, found)| {
                let row = found.map(|i| &rows.rows[i]);
                if let Some(r) = row
                    && r.s == Some(stat)
                {
                    return Seen::Same(found.unwrap_or_default());
                }
                let s = safe(&stat).then_some(stat);
                let abs = root.join(&p);
                // Read at most one byte past the limit, as load_where does.
                let size = usize::try_from(stat[0]).unwrap_or(0);
                let mut bytes = Vec::with_capacity(size.min(decode::MAX_FILE_BYTES as usize) + 1);
                let read = File::open(&abs)
                    .and_then(|f| f.take(decode::MAX_FILE_BYTES + 1).read_to_end(&mut bytes));
                if read.is_err() {
                    return Seen::Gone;
                }
                if bytes.len() as u64 > decode::MAX_FILE_BYTES {
                    return Seen::New(Box::new(Row::decode(p, Oid::ZERO_SHA1, &bytes, s)));
                }
                let Ok(blob) = Oid::hash_object(ObjectType::Blob, &bytes) else {
                    return Seen::Gone;
                };
                match row {
                    Some(r) if r.b == blob_bytes(blob) => {
                        Seen::Restat(found.unwrap_or_default(), s)
                    }
                    _ => Seen::New(Box::new(Row::decode(p, blob, &bytes, s))),
                }
            })
            .collect();

        dirty |= seen.len() != rows.rows.len()
            || seen.iter().any(|s| match s {
                Seen::Same(_) => false,
                // A stat still too recent to record changes nothing stored.
                Seen::Restat(i, s) => rows.rows[*i].s != *s,
                _ => true,
            });
        if !dirty {
            // Every file as summarized (the warm case): the rows as they are.
            return Ok(rows);
        }
        let Rows { buf, rows } = rows;
        let mut stored: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
        let out: Vec<Row> = seen
            .into_iter()
            .filter_map(|s| match s {
                Seen::Same(i) => stored[i].take(),
                Seen::Restat(i, s) => stored[i].take().map(|r| Row { s, ..r }),
                Seen::New(r) => Some(*r),
                Seen::Gone => None,
            })
            .collect();
        let out = Rows { buf, rows: out };
        if dirty {
            // A cache: failing to keep it costs the next run time, nothing else.
            let _ = write_stored(&dir, &self.prefix, tree, &out);
        }
        Ok(out)
    }

    /// Reads the change file at `rel` (relative to the store) whole, as
    /// [`Store::load_where`] would: for a row of a summary that a rule needs all of.
    pub fn load_file(&self, rel: &Path) -> Result<Loaded> {
        let bytes = self.read_change(rel)?;
        let decoded = decode::decode_bytes_with(&rel.display().to_string(), &bytes, false);
        let text = String::from_utf8(bytes).unwrap_or_default();
        Ok(Loaded {
            rel: rel.to_path_buf(),
            text,
            decoded,
        })
    }
}

//! The read summary: what `chg list`, `chg cab` and `chg report` need of every change file,
//! kept in `.git/chg/summary/` (never committed) so that a query at scale reads one file
//! instead of decoding every change.
//!
//! Layout, one folder per store (`store`, or `store@<sha256 of the prefix>`):
//! - `meta.json`: format, chg version, store prefix, the tree of HEAD's `changes/` last
//!   seen, the count, length and CRC-32 of the rows, and the file-system monitor's token
//!   they were verified at (if one is used); then a line with the JSON's own SHA-256;
//! - `rows.bin`: one record per change file of the work tree, by path (their lengths
//!   first, then the records: read through a memory map, the heads in parallel): the git
//!   blob id of the bytes summarized, the file's `lstat` when those bytes were seen, and
//!   the fields the queries filter, sort and show (no long texts: see [`facts::Facts`]),
//!   in postcard;
//! - `lock`: held while the summary is read and written.
//!
//! It is never a source of truth, and never trusted over the files. Each run lists
//! `changes/` and `lstat`s every file (or, with `chg.fsmonitor`, asks the [`monitor`]
//! which paths may have changed and looks at those alone); a row is used for a file only
//! when its recorded stat (size, mtime, ctime, inode) is the file's now. Any other file
//! (new, edited, checked out anew, recorded too recently to tell) is read and hashed as
//! git hashes a blob: the row is used when the blob id is the same, else the file is decoded afresh
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
//!
//! The parts: `facts` (what a row keeps of a change), `stored` (the rows, and how they are
//! read from and written to `rows.bin`), `files` (the work tree's change files and their
//! stats, and the lock), `monitor` (the file-system monitor and how it is asked).

mod facts;
mod files;
pub mod monitor;
mod stored;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid};
use rayon::prelude::*;

use super::{Loaded, Store};
use crate::decode::{self, Decoded};
use crate::error::{Error, Result};
use crate::model::{ChangeRequest, Status};
use crate::text::sha256_hex;

use files::*;
use monitor::Answer;
use stored::*;

/// Bumped whenever a row's shape or the decoding of change files changes.
const FORMAT: u32 = 5;
const ROWS: &str = "rows.bin";

/// Starts a file-system monitor for the store at the first path, with the summary folder
/// at the second (see [`monitor`]), in the background.
pub type StartMonitor = dyn Fn(&Path, &Path) -> std::io::Result<()>;

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
    /// and holds the change as far as [`facts::Facts`] go. Use [`Store::load_file`] for the rest.
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

    /// Folds `add` over the changes of the summary that `keep` accepts, in parallel and in
    /// path order (parts made by `init` are merged in order by `merge`), never holding more
    /// than one decoded change per thread: for a figure over every change (`chg report`),
    /// where [`Store::load_summaries_where`] built all 100,000 changes at once (a quarter
    /// of the time went to the memory). Also returns how many change files do not decode.
    pub fn fold_summaries<A: Send>(
        &self,
        keep: impl Fn(&ChangeRequest) -> bool + Sync,
        init: impl Fn() -> A + Sync + Send,
        add: impl Fn(&mut A, &ChangeRequest) + Sync + Send,
        merge: impl Fn(&mut A, A) + Sync + Send,
    ) -> Result<(A, usize)> {
        let Ok(rows) = self.summary_rows() else {
            let mut acc = init();
            let mut unreadable = 0;
            for l in self.load_where(&keep)? {
                match l.decoded.parsed {
                    true => add(&mut acc, &l.decoded.change),
                    false => unreadable += 1,
                }
            }
            return Ok((acc, unreadable));
        };
        let part = || (init(), 0usize, Vec::new());
        let (mut acc, mut unreadable, reread) = rows
            .rows
            .par_iter()
            .fold(part, |(mut acc, mut unreadable, mut reread), r| {
                if !r.big {
                    match rows.facts(r) {
                        Ok(Some(f)) => {
                            let change = f.into_change();
                            if keep(&change) {
                                add(&mut acc, &change);
                            }
                        }
                        Ok(None) => unreadable += 1,
                        Err(()) => reread.push(PathBuf::from(rows.path(r))),
                    }
                }
                (acc, unreadable, reread)
            })
            .reduce(part, |(mut a, n, mut r), (b, m, s)| {
                merge(&mut a, b);
                r.extend(s);
                (a, n + m, r)
            });
        // Facts that did not decode (never written so): the file is read instead.
        for rel in reread {
            let l = self.load_file(&rel)?;
            match l.decoded.parsed {
                true if keep(&l.decoded.change) => add(&mut acc, &l.decoded.change),
                true => {}
                false => unreadable += 1,
            }
        }
        Ok((acc, unreadable))
    }

    /// The stored rows, the meta file that vouched for them, and whether they must be
    /// written anew (none yet, or rebuilt with a note: damaged or another version's).
    fn stored_rows(&self, dir: &Path) -> (Rows, Option<Meta>, bool) {
        match read_stored(dir, &self.prefix) {
            Stored::Usable(rows, meta) => (rows, Some(*meta), false),
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
        let (mut rows, meta, mut dirty) = self.stored_rows(&dir);
        let old_tree = meta.as_ref().and_then(Meta::tree);
        if old_tree != tree {
            self.follow_head(&mut rows, old_tree, tree)?;
            dirty = true;
        }
        // Asked before any file is looked at: an edit made while they are is in the next
        // answer.
        let answer = self.ask_monitor(&dir, meta.as_ref().and_then(|m| m.monitor.as_ref()));
        let token = match &answer {
            Some(Answer::All(t) | Answer::Paths(t, _)) => Some(t.clone()),
            _ => None,
        };

        // Rows the monitor vouches for, and the files to look at, by path.
        let (trusted, files) = match answer {
            Some(Answer::Paths(_, changed)) if meta.is_some() => self.files_after(&rows, &changed),
            _ => (
                Vec::new(),
                listed_with_stats(&self.root).map_err(|e| Error::io("cannot read changes/", e))?,
            ),
        };
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
        let mut seen: Vec<Seen> = trusted.into_iter().map(Seen::Same).collect();
        seen.par_extend(pairs.into_par_iter().map(|(p, stat, found)| {
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
                Some(r) if r.b == blob_bytes(blob) => Seen::Restat(found.unwrap_or_default(), s),
                _ => Seen::New(Box::new(Row::decode(p, blob, &bytes, s))),
            }
        }));

        dirty |= seen.len() != rows.rows.len()
            || seen.iter().any(|s| match s {
                Seen::Same(_) => false,
                // A stat still too recent to record changes nothing stored.
                Seen::Restat(i, s) => rows.rows[*i].s != *s,
                _ => true,
            });
        if !dirty {
            // Every file as summarized (the warm case): the rows as they are, under the
            // monitor's new token (a cache: failing to keep it costs time, nothing else).
            if let Some(mut meta) = meta
                && meta.monitor != token
            {
                meta.monitor = token;
                let _ = write_meta(&dir, &meta);
            }
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
        let mut out = Rows { buf, rows: out };
        out.sort();
        // A cache: failing to keep it costs the next run time, nothing else.
        let _ = write_stored(&dir, &self.prefix, tree, token, &out);
        Ok(out)
    }

    /// What the file-system monitor says changed since `since`, starting one when the
    /// store uses one and none answers (waiting up to a second for it to answer).
    fn ask_monitor(&self, dir: &Path, since: Option<&monitor::Token>) -> Option<Answer> {
        let start = self.monitor.as_ref()?;
        monitor::socket(dir)?;
        match monitor::ask(dir, since) {
            None => {}
            // Another chg's, quitting: once it has let go of its lock, this one's starts.
            Some(Answer::Quit) => {
                for _ in 0..50 {
                    if !monitor::running(dir) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            Some(a) => return Some(a),
        }
        if !self.root.join("changes").is_dir() {
            return None;
        }
        // One may be starting (its lock held, its socket not yet bound): wait for it.
        if !monitor::running(dir) {
            start(&self.root, dir).ok()?;
        }
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            match monitor::ask(dir, since) {
                None => continue,
                Some(Answer::Quit) => return None,
                Some(a) => return Some(a),
            }
        }
        None
    }

    /// With the monitor's word that only `changed` (files and folders) may have changed:
    /// the rows it vouches for (unchanged, with a stat recorded), and every other change
    /// file to look at, in path order with its stat now.
    fn files_after(&self, rows: &Rows, changed: &[String]) -> (Vec<usize>, Vec<(String, Stat)>) {
        let changed: std::collections::HashSet<&str> = changed.iter().map(String::as_str).collect();
        // A path is affected when it, or a folder it is in, changed.
        let affected = |p: &str| {
            !changed.is_empty()
                && (changed.contains(p)
                    || p.char_indices()
                        .filter(|(_, c)| *c == '/')
                        .any(|(i, _)| changed.contains(&p[..i])))
        };
        let mut trusted = Vec::with_capacity(rows.rows.len());
        let mut look: Vec<String> = Vec::new();
        for (i, r) in rows.rows.iter().enumerate() {
            // The path is only read when it must be (checking 100,000 paths' UTF-8 showed).
            if r.s.is_some() && changed.is_empty() {
                trusted.push(i);
                continue;
            }
            let p = rows.path(r);
            if affected(p) || p.is_empty() {
                continue;
            }
            match r.s {
                Some(_) => trusted.push(i),
                None => look.push(p.to_owned()),
            }
        }
        let mut files: Vec<(String, Stat)> = Vec::new();
        for c in changed {
            let abs = self.root.join(c);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() && listed_folder(c) => {
                    // Unreadable by now: as without a monitor, what can be read is listed.
                    if let Ok(under) = listed_under(&self.root, c) {
                        files.extend(under);
                    }
                }
                Ok(m) if m.is_file() && listed_file(c) => files.push((c.to_owned(), stat_of(&m))),
                _ => {}
            }
        }
        for p in look {
            if let Ok(m) = fs::symlink_metadata(self.root.join(&p))
                && m.is_file()
            {
                files.push((p, stat_of(&m)));
            }
        }
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        (trusted, files)
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

//! The rows of the read summary, and how they are read from and written to `rows.bin`
//! (with `meta.json`, which vouches for them).

use std::fs::{self};
use std::path::Path;

use git2::Oid;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decode::{self};
use crate::error::{Error, Result};
use crate::model::Status;
use crate::text::sha256_hex;

use super::facts::*;
use super::files::*;
use super::monitor::Token;
use super::{FORMAT, ROWS};

/// Bytes of a row: a span of the stored file, or the row's own (decoded this run).
#[derive(Debug, Clone)]
pub(super) enum Bytes {
    Stored(u32, u32),
    Own(Box<[u8]>),
}

/// One change file of the work tree. Only what the freshness check needs is decoded when
/// the summary is read; the facts stay encoded until a query asks for them, so a warm run
/// at 100,000 changes holds the stored file and a small row per change, not 100,000
/// decoded changes.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// Path relative to the store (UTF-8, checked when read).
    pub(super) p: Bytes,
    /// The git blob id of the bytes summarized (zeros for a file over the size limit).
    pub(super) b: [u8; 20],
    /// The file's stat when those bytes were read, if old enough to vouch for them.
    pub(super) s: Option<Stat>,
    /// Over chg's size limit: read by nobody, so listed by nobody.
    pub(super) big: bool,
    /// The file is readable YAML (its facts are some), and its status: a list filtered by
    /// status skips the other rows without decoding their facts.
    pub(super) parsed: bool,
    pub(super) status: Option<Status>,
    /// What the file says (`Option<Facts>` in postcard; none when it is not readable
    /// YAML).
    pub(super) facts: Bytes,
}

/// The rows, in path order, and the stored file their spans point into.
#[derive(Debug, Default)]
pub(super) struct Rows {
    pub(super) buf: Buf,
    pub(super) rows: Vec<Row>,
}

/// The stored file, mapped: read whole at 100,000 changes (32 MB), copying it into fresh
/// memory was a quarter of a warm `chg list` (the copy, and the kernel zeroing the pages).
#[derive(Debug, Default)]
pub(super) enum Buf {
    #[default]
    Empty,
    Map(memmap2::Mmap),
}

impl Buf {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Empty => &[],
            Buf::Map(m) => m,
        }
    }

    /// Maps `rows.bin`.
    fn open(path: &Path) -> std::io::Result<Buf> {
        let file = fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Buf::Empty);
        }
        // SAFETY: the mapped file must not change while mapped. chg never writes
        // `rows.bin` in place: it is replaced by a rename (`atomic_write`), under the
        // summary's lock, so this process keeps the file it opened.
        Ok(Buf::Map(unsafe { memmap2::Mmap::map(&file)? }))
    }
}

impl Rows {
    pub(super) fn bytes<'a>(&'a self, b: &'a Bytes) -> &'a [u8] {
        match b {
            Bytes::Stored(at, len) => {
                let (at, len) = (*at as usize, *len as usize);
                self.buf.as_slice().get(at..at + len).unwrap_or_default()
            }
            Bytes::Own(own) => own,
        }
    }

    pub(super) fn path<'a>(&'a self, r: &'a Row) -> &'a str {
        std::str::from_utf8(self.bytes(&r.p)).unwrap_or_default()
    }

    /// The row's facts, decoded; `Err` when they do not decode (the caller reads the file).
    pub(super) fn facts(&self, r: &Row) -> std::result::Result<Option<Facts>, ()> {
        postcard::from_bytes(self.bytes(&r.facts)).map_err(|_| ())
    }

    /// Into path order. Paths compare as bytes (UTF-8 keeps the order of `str`), and rows
    /// already in order (as written) are left as they are: checking each path's UTF-8 on
    /// every comparison of a sort showed in profiles of a warm `chg list`.
    pub(super) fn sort(&mut self) {
        // Checked in parallel: the paths are spread over the whole stored file.
        if self
            .rows
            .par_windows(2)
            .all(|w| self.bytes(&w[0].p) <= self.bytes(&w[1].p))
        {
            return;
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.par_sort_unstable_by(|a, b| self.bytes(&a.p).cmp(self.bytes(&b.p)));
        self.rows = rows;
    }

    pub(super) fn find(&self, p: &str) -> Option<usize> {
        self.rows.binary_search_by(|r| self.path(r).cmp(p)).ok()
    }
}

/// A blob id as stored in a row (a SHA-1 repository's 20 bytes; any other id matches no
/// row, so its file is read afresh).
pub(super) fn blob_bytes(blob: Oid) -> [u8; 20] {
    blob.as_bytes().try_into().unwrap_or([0xff; 20])
}

impl Row {
    pub(super) fn decode(p: String, blob: Oid, bytes: &[u8], s: Option<Stat>) -> Row {
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
pub(super) struct Meta {
    pub(super) format: u32,
    pub(super) chg: String,
    pub(super) prefix: String,
    /// HEAD's `changes/` tree when the rows were written.
    pub(super) tree: Option<String>,
    /// How many rows `rows.bin` holds.
    #[serde(default)]
    pub(super) rows: u64,
    pub(super) rows_bytes: u64,
    /// CRC-32 of `rows.bin`: against damage, which is all a cache in `.git` can be checked
    /// for (whoever can write it can write a matching hash of any kind); SHA-256 of the
    /// 32 MB at 100,000 changes was a tenth of a warm `chg list`.
    #[serde(default)]
    pub(super) rows_crc32: u32,
    /// The file-system monitor's token when the rows were last verified (see [`super::monitor`]).
    #[serde(default)]
    pub(super) monitor: Option<Token>,
}

impl Meta {
    /// The tree the rows were refreshed to.
    pub(super) fn tree(&self) -> Option<Oid> {
        self.tree.as_deref().and_then(|t| Oid::from_str(t).ok())
    }
}

/// What became of the stored summary.
pub(super) enum Stored {
    /// Rows by path, in path order, and the meta file that vouched for them.
    Usable(Rows, Box<Meta>),
    /// None yet: built without a word.
    Missing,
    /// Written by another chg or for another store; the sentence says which.
    Foreign(String),
    /// Did not verify.
    Damaged,
}

pub(super) fn read_stored(dir: &Path, prefix: &str) -> Stored {
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
    let Ok(buf) = Buf::open(&dir.join(ROWS)) else {
        return Stored::Damaged;
    };
    let bytes = buf.as_slice();
    if bytes.len() as u64 != meta.rows_bytes || crc32fast::hash(bytes) != meta.rows_crc32 {
        return Stored::Damaged;
    }
    // The records' lengths (4 bytes each, little-endian), then the records: the row's
    // head (see [`head`]) and its facts in postcard. The lengths come first so that
    // finding the records reads 400 KB, not a word in every page of 32 MB (that walk was
    // a tenth of a warm `chg report`). Only the heads are read: the facts wait for a query.
    let Some((table, _)) = usize::try_from(meta.rows)
        .ok()
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| bytes.split_at_checked(n))
    else {
        return Stored::Damaged;
    };
    let mut spans = Vec::with_capacity(table.len() / 4);
    let mut at = table.len();
    for len in table.chunks_exact(4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if bytes.len() - at < len {
            return Stored::Damaged;
        }
        spans.push((at, len));
        at += len;
    }
    if at != bytes.len() {
        return Stored::Damaged;
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
            let span =
                |b: &[u8]| Bytes::Stored((b.as_ptr() as usize - base) as u32, b.len() as u32);
            let (mut row, facts) = head(&bytes[at..at + len], span)?;
            row.facts = span(facts);
            Some(row)
        })
        .collect();
    if rows.iter().any(Option::is_none) {
        return Stored::Damaged;
    }
    let mut kept = Vec::with_capacity(rows.len());
    kept.extend(rows.into_iter().flatten());
    let rows = kept;
    let mut rows = Rows { buf, rows };
    // Written in path order; a hand-edited file with a valid sum still is sorted.
    rows.sort();
    Stored::Usable(rows, Box::new(meta))
}

/// Writes the rows and their meta file (the tree they were refreshed to, the monitor's
/// token they were verified at).
pub(super) fn write_stored(
    dir: &Path,
    prefix: &str,
    tree: Option<Oid>,
    monitor: Option<Token>,
    rows: &Rows,
) -> Result<()> {
    let internal = |e: String| Error::Internal(e);
    let records: Vec<Vec<u8>> = rows
        .rows
        .par_iter()
        .map(|r| {
            let mut v = Vec::new();
            write_head(&mut v, rows.bytes(&r.p), r)?;
            v.extend_from_slice(rows.bytes(&r.facts));
            u32::try_from(v.len()).map_err(|e| e.to_string())?;
            Ok(v)
        })
        .collect::<std::result::Result<_, String>>()
        .map_err(internal)?;
    let mut bytes = Vec::with_capacity(records.iter().map(|r| r.len() + 4).sum());
    for r in &records {
        bytes.extend_from_slice(&(r.len() as u32).to_le_bytes());
    }
    for r in &records {
        bytes.extend_from_slice(r);
    }
    let meta = Meta {
        format: FORMAT,
        chg: env!("CARGO_PKG_VERSION").to_owned(),
        prefix: prefix.to_owned(),
        tree: tree.map(|t| t.to_string()),
        rows: rows.rows.len() as u64,
        rows_bytes: bytes.len() as u64,
        rows_crc32: crc32fast::hash(&bytes),
        monitor,
    };
    super::super::commit::atomic_write(&dir.join(ROWS), &bytes)?;
    write_meta(dir, &meta)
}

/// Writes the meta file alone (a new monitor token for the same rows).
pub(super) fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let internal = |e: String| Error::Internal(e);
    let mut text = serde_json::to_vec(meta).map_err(|e| internal(e.to_string()))?;
    let sum = sha256_hex(&text);
    text.push(b'\n');
    text.extend_from_slice(sum.as_bytes());
    text.push(b'\n');
    super::super::commit::atomic_write(&dir.join("meta.json"), &text)
}

/// A row's head, as stored: the path's length (2 bytes, little-endian) and bytes, the blob
/// id (20 bytes), flags (1: a stat follows, 2: over the size limit, 4: readable YAML), the
/// stat (six 8-byte little-endian numbers), then the status (postcard). Fixed widths read
/// by slicing: decoding the heads through serde was a tenth of a warm `chg list`.
fn write_head(v: &mut Vec<u8>, path: &[u8], r: &Row) -> std::result::Result<(), String> {
    let len = u16::try_from(path.len()).map_err(|_| "a path over 64 KiB".to_owned())?;
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(path);
    v.extend_from_slice(&r.b);
    let flags = u8::from(r.s.is_some()) | u8::from(r.big) << 1 | u8::from(r.parsed) << 2;
    v.push(flags);
    for n in r.s.iter().flatten() {
        v.extend_from_slice(&n.to_le_bytes());
    }
    let status = postcard::to_allocvec(&r.status).map_err(|e| e.to_string())?;
    v.extend_from_slice(&status);
    Ok(())
}

/// Reads a head written by [`write_head`] (the path's span made by `span`): the row with
/// no facts yet, and the rest of the record (the facts' bytes).
fn head(record: &[u8], span: impl Fn(&[u8]) -> Bytes) -> Option<(Row, &[u8])> {
    let (len, rest) = record.split_first_chunk::<2>()?;
    let (path, rest) = rest.split_at_checked(u16::from_le_bytes(*len) as usize)?;
    let (b, rest) = rest.split_first_chunk::<20>()?;
    let (flags, mut rest) = rest.split_first()?;
    let s = if flags & 1 == 1 {
        let (stat, after) = rest.split_first_chunk::<48>()?;
        rest = after;
        let mut s: Stat = [0; 6];
        for (n, bytes) in s.iter_mut().zip(stat.chunks_exact(8)) {
            *n = i64::from_le_bytes(bytes.try_into().ok()?);
        }
        Some(s)
    } else {
        None
    };
    let (status, facts) = postcard::take_from_bytes::<Option<Status>>(rest).ok()?;
    let row = Row {
        p: span(path),
        b: *b,
        s,
        big: flags & 2 == 2,
        parsed: flags & 4 == 4,
        status,
        facts: Bytes::Own(Box::default()),
    };
    Some((row, facts))
}

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

/// The head of a stored record, followed by the facts' bytes.
#[derive(Serialize, Deserialize)]
pub(super) struct Head<'a> {
    pub(super) p: &'a str,
    pub(super) b: [u8; 20],
    pub(super) s: Option<Stat>,
    pub(super) big: bool,
    pub(super) parsed: bool,
    pub(super) status: Option<Status>,
}

/// The rows, in path order, and the stored file their spans point into.
#[derive(Debug, Default)]
pub(super) struct Rows {
    pub(super) buf: Vec<u8>,
    pub(super) rows: Vec<Row>,
}

impl Rows {
    pub(super) fn bytes<'a>(&'a self, b: &'a Bytes) -> &'a [u8] {
        match b {
            Bytes::Stored(at, len) => {
                let (at, len) = (*at as usize, *len as usize);
                self.buf.get(at..at + len).unwrap_or_default()
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
    pub(super) rows_sha256: String,
}

/// What became of the stored summary.
pub(super) enum Stored {
    /// Rows by path, in path order, and the tree they were refreshed to.
    Usable(Rows, Option<Oid>),
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

pub(super) fn write_stored(dir: &Path, prefix: &str, tree: Option<Oid>, rows: &Rows) -> Result<()> {
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
    super::super::commit::atomic_write(&dir.join(ROWS), &bytes)?;
    let mut text = serde_json::to_vec(&meta).map_err(|e| internal(e.to_string()))?;
    let sum = sha256_hex(&text);
    text.push(b'\n');
    text.extend_from_slice(sum.as_bytes());
    text.push(b'\n');
    super::super::commit::atomic_write(&dir.join("meta.json"), &text)
}

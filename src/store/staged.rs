//! What git's index stages at one path, found by walking the index file's entries.
//!
//! libgit2 reads the whole index to answer for one path: at 100,000 change files that is a
//! 10 MB file checksummed with its collision-detecting SHA-1 and every entry copied into a
//! map, four fifths of a gate's time and half an approval's. Walking the file's entries to
//! the one path costs a read of the file. The checksum is not verified, as git itself does
//! not on an ordinary read (only `git fsck` does); a file this walk does not fully
//! understand (an unknown version, a split or sparse index, an entry or extension that
//! does not fit) is left to libgit2 ([`staged_blob`]).

use std::path::Path;

use git2::{Oid, Repository};

use crate::error::Result;

/// The blob staged (stage 0) at `path` (relative to the work tree, `/`-separated), as
/// libgit2's `Index::get_path(path, 0)` answers it.
pub fn staged_blob(repo: &Repository, path: &str) -> Result<Option<Oid>> {
    let file = repo.path().join("index");
    if let Ok(bytes) = std::fs::read(&file)
        && let Some(found) = lookup(&bytes, path.as_bytes())
    {
        return Ok(found);
    }
    let index = super::commit::fresh_index(repo)?;
    Ok(index.get_path(Path::new(path), 0).map(|e| e.id))
}

const HASH: usize = 20;
/// ctime, mtime, dev, ino, mode, uid, gid, size (4 bytes each, the times 8), the object
/// name, then the flags.
const FLAGS_AT: usize = 40 + HASH;
const DIRECTORY: u32 = 0o040000;

/// The stage-0 blob at `path` in the index file `bytes`: `Some(None)` when there is none,
/// `None` when the file is not one this walk reads whole (left to libgit2).
fn lookup(bytes: &[u8], path: &[u8]) -> Option<Option<Oid>> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.get(..4)? != b"DIRC" {
        return None;
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = u32_at(8)?;
    let mut at = 12;
    let mut name: Vec<u8> = Vec::new();
    let mut found = None;
    for _ in 0..count {
        let mode = u32_at(at + 24)?;
        let flags = u16::from_be_bytes(
            bytes
                .get(at + FLAGS_AT..at + FLAGS_AT + 2)?
                .try_into()
                .ok()?,
        );
        let extended = flags & 0x4000 != 0;
        if extended && version < 3 {
            return None;
        }
        let name_at = at + FLAGS_AT + 2 + if extended { 2 } else { 0 };
        let next = if version == 4 {
            // The name is the previous one less N bytes, then a NUL-terminated suffix.
            let (strip, used) = varint(bytes.get(name_at..)?)?;
            let keep = name.len().checked_sub(usize::try_from(strip).ok()?)?;
            name.truncate(keep);
            let start = name_at + used;
            let len = bytes.get(start..)?.iter().position(|b| *b == 0)?;
            name.extend_from_slice(&bytes[start..start + len]);
            start + len + 1
        } else {
            let len = bytes.get(name_at..)?.iter().position(|b| *b == 0)?;
            name.clear();
            name.extend_from_slice(&bytes[name_at..name_at + len]);
            // Padded with 1 to 8 NULs to a multiple of 8 bytes from the entry's start.
            at + ((name_at - at + len + 8) & !7)
        };
        if mode == DIRECTORY {
            // A sparse index's folder entry: what it holds is not listed.
            return None;
        }
        let stage = (flags >> 12) & 3;
        if stage == 0 && name == path {
            found = Some(Oid::from_bytes(bytes.get(at + 40..at + 40 + HASH)?).ok()?);
        }
        at = next;
    }
    // Extensions (a four-byte signature, a length, the data), then the checksum, exactly.
    while bytes.len().checked_sub(at)? > HASH {
        let sig = bytes.get(at..at + 4)?;
        // A split index keeps most entries in another file.
        if sig == b"link" || sig == b"sdir" {
            return None;
        }
        let len = usize::try_from(u32_at(at + 4)?).ok()?;
        at = at.checked_add(8 + len)?;
    }
    (bytes.len().checked_sub(at)? == HASH).then_some(found)
}

/// git's offset varint (`decode_varint`): the value and the bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut i = 0;
    let mut c = *b.first()?;
    let mut val = u64::from(c & 127);
    while c & 128 != 0 {
        i += 1;
        c = *b.get(i)?;
        val = val.checked_add(1)?.checked_mul(128)? | u64::from(c & 127);
    }
    Some((val, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], id: Oid, stage: u16, flags_extended: u16) -> git2::IndexEntry {
        git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: 0,
            id,
            flags: stage << 12,
            flags_extended,
            path: path.to_vec(),
        }
    }

    /// An index of `paths` written by libgit2 at `version`, some entries with extended
    /// flags and some in conflict; every path (and some that are not there) is answered as
    /// libgit2 answers it.
    fn agrees(version: u32, paths: &[String]) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let mut index = repo.index().unwrap();
        for (i, p) in paths.iter().enumerate() {
            let id = repo.blob(p.as_bytes()).unwrap();
            let stages: &[u16] = if i % 7 == 3 { &[1, 2, 3] } else { &[0] };
            for stage in stages {
                // Some intent-to-add (an extended flag, version 3 and up).
                let ext = if version > 2 && i % 5 == 1 {
                    1 << 13
                } else {
                    0
                };
                index.add(&entry(p.as_bytes(), id, *stage, ext)).unwrap();
            }
        }
        index.set_version(version).unwrap();
        index.write().unwrap();
        let bytes = std::fs::read(dir.path().join(".git/index")).unwrap();
        assert_eq!(u32::from_be_bytes(bytes[4..8].try_into().unwrap()), version);
        let fresh = super::super::commit::fresh_index(&repo).unwrap();
        let mut asked: Vec<String> = paths.to_vec();
        asked.extend(paths.iter().map(|p| format!("{p}x")));
        asked.extend(["a", "zzzz", "changes"].map(String::from));
        for p in &asked {
            let want = fresh.get_path(Path::new(p), 0).map(|e| e.id);
            assert_eq!(
                lookup(&bytes, p.as_bytes()),
                Some(want),
                "{p} at version {version}"
            );
            assert_eq!(staged_blob(&repo, p).unwrap(), want);
        }
    }

    fn paths() -> Vec<String> {
        let mut out: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "changes/{}/{:02}/CHG-{}-{i:03}.yaml",
                    2020 + i % 3,
                    i % 12,
                    2020 + i % 3
                )
            })
            .collect();
        out.push("README.md".into());
        out.push("policy/policy.yaml".into());
        // A name past the flags' 12 bits of length.
        out.push(format!("deep/{}/f", vec!["d".repeat(200); 25].join("/")));
        out
    }

    #[test]
    fn answers_as_libgit2_at_every_index_version() {
        for version in [2, 3, 4] {
            agrees(version, &paths());
        }
    }

    #[test]
    fn a_file_it_does_not_read_whole_is_left_to_libgit2() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let mut index = repo.index().unwrap();
        let id = repo.blob(b"x").unwrap();
        index.add(&entry(b"a/b.yaml", id, 0, 0)).unwrap();
        index.write().unwrap();
        let good = std::fs::read(dir.path().join(".git/index")).unwrap();
        assert_eq!(lookup(&good, b"a/b.yaml"), Some(Some(id)));
        // Cut short, an unknown version, a split index's link, a stray byte: declined.
        assert_eq!(lookup(&good[..good.len() - 1], b"a/b.yaml"), None);
        let mut v9 = good.clone();
        v9[7] = 9;
        assert_eq!(lookup(&v9, b"a/b.yaml"), None);
        let mut split = good[..good.len() - HASH].to_vec();
        split.extend_from_slice(b"link\0\0\0\x14");
        split.extend_from_slice(&[0; 20 + HASH]);
        assert_eq!(lookup(&split, b"a/b.yaml"), None);
        let mut stray = good.clone();
        stray.insert(good.len() - HASH, 0);
        assert_eq!(lookup(&stray, b"a/b.yaml"), None);
        // libgit2 still answers for such a file.
        std::fs::write(dir.path().join(".git/index"), &good).unwrap();
        assert_eq!(staged_blob(&repo, "a/b.yaml").unwrap(), Some(id));
    }

    #[test]
    fn varints_decode_as_git_writes_them() {
        assert_eq!(varint(&[0]), Some((0, 1)));
        assert_eq!(varint(&[127]), Some((127, 1)));
        // git writes 128 as 0x80 0x00.
        assert_eq!(varint(&[0x80, 0]), Some((128, 2)));
        assert_eq!(varint(&[0x80]), None);
    }
}

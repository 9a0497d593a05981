//! A git pack written directly, for histories of hundreds of thousands of commits.
//!
//! `git fast-import` rebuilds and deltifies a whole tree on every commit (it sorts and prints
//! every entry of a 1,700-file month folder, twice), which made a 100,000-change history
//! take ten minutes. The generator knows exactly which entry each commit changes, so it
//! writes each new tree version as a three-instruction delta against the previous version
//! (copy the head, insert the new entry, copy the tail), hashes it, and writes the pack index
//! itself. Objects are the standard ones (`git fsck --strict` checks the result in the
//! tests); delta chains are capped at git's default depth of 50 so reading stays cheap.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sha1::{Digest, Sha1};

pub type Oid = [u8; 20];

/// git's default `pack.depth`: longer chains make every read of the object slower.
const MAX_DEPTH: u32 = 50;

#[derive(Clone, Copy)]
pub enum Kind {
    Commit = 1,
    Tree = 2,
    Blob = 3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Tree => "tree",
            Kind::Blob => "blob",
        }
    }
}

const OFS_DELTA: u8 = 6;

/// The object id git gives `data` as an object of `kind`.
pub fn object_id(kind: Kind, data: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(format!("{} {}\0", kind.name(), data.len()));
    h.update(data);
    h.finalize().into()
}

pub fn hex(oid: &Oid) -> String {
    oid.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an object sits in the pack, and how many deltas lead to it.
#[derive(Clone, Copy)]
pub struct Written {
    offset: u64,
    depth: u32,
}

pub struct PackWriter {
    out: BufWriter<File>,
    path: PathBuf,
    offset: u64,
    /// (id, offset, crc32 of the packed entry) of every object, for the index.
    index: Vec<(Oid, u64, u32)>,
    /// One compressor, reset per object: making one allocates and clears 300 KB of tables.
    zlib: Compress,
}

impl PackWriter {
    pub fn create(pack_dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(pack_dir)?;
        let path = pack_dir.join("tmp_chg_bench.pack");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // The object count is patched in by `finish`.
        out.write_all(b"PACK\0\0\0\x02\0\0\0\0")?;
        Ok(PackWriter {
            out,
            path,
            offset: 12,
            index: Vec::new(),
            zlib: Compress::new(Compression::fast(), true),
        })
    }

    /// Writes `data` whole.
    pub fn whole(&mut self, kind: Kind, oid: Oid, data: &[u8]) -> io::Result<Written> {
        let mut entry = header(kind as u8, data.len());
        self.deflate_into(&mut entry, data)?;
        self.push(oid, &entry, 0)
    }

    /// Writes the object `oid` as `delta` against `base`, or whole (`data`) when the chain
    /// would be too long.
    fn delta(
        &mut self,
        kind: Kind,
        oid: Oid,
        data: &[u8],
        base: Written,
        delta: &[u8],
    ) -> io::Result<Written> {
        if base.depth + 1 >= MAX_DEPTH {
            return self.whole(kind, oid, data);
        }
        let mut entry = header(OFS_DELTA, delta.len());
        // The distance back to the base, in git's offset encoding (each continuation byte
        // stands for one more than its bits say).
        let mut distance = self.offset - base.offset;
        let mut enc = vec![(distance & 0x7f) as u8];
        while {
            distance >>= 7;
            distance != 0
        } {
            distance -= 1;
            enc.push(0x80 | (distance & 0x7f) as u8);
        }
        enc.reverse();
        entry.extend_from_slice(&enc);
        stored_into(&mut entry, delta);
        self.push(oid, &entry, base.depth + 1)
    }

    /// Writes a new version of a file, as a delta against its previous version when there
    /// is one (the bytes before the first and after the last difference are copied).
    pub fn blob(&mut self, data: &[u8], previous: Option<(&[u8], Written)>) -> io::Result<Written> {
        let oid = object_id(Kind::Blob, data);
        let Some((old, base)) = previous else {
            return self.whole(Kind::Blob, oid, data);
        };
        let head = old.iter().zip(data).take_while(|(a, b)| a == b).count();
        let tail = old[head..]
            .iter()
            .rev()
            .zip(data[head..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let mut d = Delta::new(old.len(), data.len());
        d.copy(0, head);
        d.insert(&data[head..data.len() - tail]);
        d.copy(old.len() - tail, tail);
        self.delta(Kind::Blob, oid, data, base, &d.0)
    }

    fn deflate_into(&mut self, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
        self.zlib.reset();
        out.reserve(data.len() / 2 + 64);
        loop {
            let before = self.zlib.total_in() as usize;
            let status = self
                .zlib
                .compress_vec(&data[before..], out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            match status {
                Status::StreamEnd => return Ok(()),
                _ => out.reserve(out.capacity().max(64)),
            }
        }
    }

    fn push(&mut self, oid: Oid, entry: &[u8], depth: u32) -> io::Result<Written> {
        let mut crc = Crc::new();
        crc.update(entry);
        self.out.write_all(entry)?;
        let offset = self.offset;
        self.index.push((oid, offset, crc.sum()));
        self.offset += entry.len() as u64;
        Ok(Written { offset, depth })
    }

    /// Completes the pack (object count, checksum), writes its index next to it, and
    /// returns the pack's name.
    pub fn finish(self) -> io::Result<String> {
        let PackWriter {
            out,
            path,
            mut index,
            ..
        } = self;
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(8))?;
        file.write_all(&(index.len() as u32).to_be_bytes())?;
        file.seek(SeekFrom::Start(0))?;
        let mut h = Sha1::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let checksum: Oid = h.finalize().into();
        file.seek(SeekFrom::End(0))?;
        file.write_all(&checksum)?;
        file.sync_all()?;
        drop(file);

        index.sort_unstable_by_key(|e| e.0);
        if let Some(w) = index.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(io::Error::other(format!(
                "object {} written twice",
                hex(&w[0].0)
            )));
        }
        // Pack index version 2: fan-out table, ids, CRCs, offsets (large ones in a table).
        let mut idx = Vec::with_capacity(index.len() * 28 + 2048);
        idx.extend_from_slice(b"\xfftOc\0\0\0\x02");
        let mut count = 0u32;
        for byte in 0..=255u8 {
            count += index[count as usize..]
                .iter()
                .take_while(|e| e.0[0] == byte)
                .count() as u32;
            idx.extend_from_slice(&count.to_be_bytes());
        }
        for e in &index {
            idx.extend_from_slice(&e.0);
        }
        for e in &index {
            idx.extend_from_slice(&e.2.to_be_bytes());
        }
        let mut large = Vec::new();
        for e in &index {
            let small = if e.1 < 0x8000_0000 {
                e.1 as u32
            } else {
                large.push(e.1);
                0x8000_0000 | (large.len() as u32 - 1)
            };
            idx.extend_from_slice(&small.to_be_bytes());
        }
        for o in large {
            idx.extend_from_slice(&o.to_be_bytes());
        }
        idx.extend_from_slice(&checksum);
        let sum: Oid = Sha1::digest(&idx).into();
        idx.extend_from_slice(&sum);

        let name = format!("pack-{}", hex(&checksum));
        let dir = path.parent().expect("a pack directory");
        std::fs::write(dir.join(format!("{name}.idx")), idx)?;
        std::fs::rename(&path, dir.join(format!("{name}.pack")))?;
        Ok(name)
    }
}

/// A pack entry's header: type and uncompressed size, seven bits at a time.
fn header(kind: u8, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut size = size as u64;
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size != 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
    out
}

/// A zlib stream of stored (uncompressed) blocks. Deltas are a few dozen bytes, mostly
/// object ids that do not compress; resetting a compressor for each costs more than it saves.
fn stored_into(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    // Adler-32 of the data.
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
}

/// git's delta format: both sizes, then copy-from-base and insert-literal instructions.
struct Delta(Vec<u8>);

impl Delta {
    fn new(base: usize, result: usize) -> Self {
        let mut d = Delta(Vec::with_capacity(128));
        d.varint(base);
        d.varint(result);
        d
    }

    fn varint(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn copy(&mut self, mut offset: usize, mut len: usize) {
        while len > 0 {
            // One instruction copies at most 2^24 - 1 bytes.
            let n = len.min(0xff_ffff);
            let mut op = 0x80u8;
            let mut args = Vec::with_capacity(7);
            for (i, byte) in (offset as u32).to_le_bytes().into_iter().enumerate() {
                if byte != 0 {
                    op |= 1 << i;
                    args.push(byte);
                }
            }
            for (i, byte) in (n as u32).to_le_bytes()[..3].iter().enumerate() {
                if *byte != 0 {
                    op |= 0x10 << i;
                    args.push(*byte);
                }
            }
            self.0.push(op);
            self.0.extend_from_slice(&args);
            offset += n;
            len -= n;
        }
    }

    fn insert(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = bytes.len().min(0x7f);
            self.0.push(n as u8);
            self.0.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }
}

/// One directory, version after version: each `set` writes the new version to the pack as a
/// delta against the one before.
pub struct Tree {
    /// (name, is a directory, id), in git's order.
    entries: Vec<(Vec<u8>, bool, Oid)>,
    text: Vec<u8>,
    last: Written,
    pub oid: Oid,
}

fn entry_bytes((name, dir, oid): &(Vec<u8>, bool, Oid)) -> Vec<u8> {
    let mut e = Vec::with_capacity(name.len() + 28);
    e.extend_from_slice(if *dir { b"40000 " } else { b"100644 " });
    e.extend_from_slice(name);
    e.push(0);
    e.extend_from_slice(oid);
    e
}

fn entry_len((name, dir, _): &(Vec<u8>, bool, Oid)) -> usize {
    (if *dir { 6 } else { 7 }) + name.len() + 21
}

/// git sorts a directory as if its name ended in '/'.
fn order(name: &[u8], dir: bool) -> impl Iterator<Item = u8> + '_ {
    name.iter().copied().chain(dir.then_some(b'/'))
}

impl Tree {
    /// Writes the first version of a directory.
    pub fn create(pack: &mut PackWriter, entries: &[(&str, bool, Oid)]) -> io::Result<Self> {
        let mut entries: Vec<(Vec<u8>, bool, Oid)> = entries
            .iter()
            .map(|(n, d, o)| (n.as_bytes().to_vec(), *d, *o))
            .collect();
        entries.sort_by(|a, b| order(&a.0, a.1).cmp(order(&b.0, b.1)));
        let text: Vec<u8> = entries.iter().flat_map(entry_bytes).collect();
        let oid = object_id(Kind::Tree, &text);
        let last = pack.whole(Kind::Tree, oid, &text)?;
        Ok(Tree {
            entries,
            text,
            last,
            oid,
        })
    }

    /// Sets one entry and writes the resulting version; returns its id.
    pub fn set(
        &mut self,
        pack: &mut PackWriter,
        name: &str,
        dir: bool,
        oid: Oid,
    ) -> io::Result<Oid> {
        let found = self
            .entries
            .binary_search_by(|e| order(&e.0, e.1).cmp(order(name.as_bytes(), dir)));
        let (i, replaced) = match found {
            Ok(i) => {
                self.entries[i].2 = oid;
                (i, true)
            }
            Err(i) => {
                self.entries.insert(i, (name.as_bytes().to_vec(), dir, oid));
                (i, false)
            }
        };
        let at: usize = self.entries[..i].iter().map(entry_len).sum();
        let new_entry = entry_bytes(&self.entries[i]);
        let old_len = if replaced { new_entry.len() } else { 0 };
        let old = std::mem::take(&mut self.text);
        let mut text = Vec::with_capacity(old.len() + new_entry.len());
        text.extend_from_slice(&old[..at]);
        text.extend_from_slice(&new_entry);
        text.extend_from_slice(&old[at + old_len..]);
        self.oid = object_id(Kind::Tree, &text);
        let mut d = Delta::new(old.len(), text.len());
        d.copy(0, at);
        d.insert(&new_entry);
        d.copy(at + old_len, old.len() - at - old_len);
        self.last = pack.delta(Kind::Tree, self.oid, &text, self.last, &d.0)?;
        self.text = text;
        Ok(self.oid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_gits() {
        // `git hash-object -t blob --stdin </dev/null` and `git mktree </dev/null`.
        assert_eq!(
            hex(&object_id(Kind::Blob, b"")),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            hex(&object_id(Kind::Tree, b"")),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }

    #[test]
    fn stored_streams_inflate_to_their_data() {
        use std::io::Read;
        for data in [&b""[..], b"tree 0\0", &vec![7u8; 70_000]] {
            let mut z = Vec::new();
            stored_into(&mut z, data);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn headers_and_copies_use_gits_encodings() {
        assert_eq!(header(3, 15), vec![0x3f]);
        assert_eq!(header(3, 16), vec![0xb0, 0x01]);
        let mut d = Delta(Vec::new());
        d.copy(0x10000, 0x10000);
        assert_eq!(d.0, vec![0x80 | 0x04 | 0x40, 0x01, 0x01]);
    }
}

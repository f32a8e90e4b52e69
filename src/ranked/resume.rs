//! Checkpoints of a large first build, so that one interrupted (the process killed,
//! the power cut) goes on from where it was instead of reading every file again.
//!
//! Only a build that spills ([`super::build::SpillPlan`]) keeps them: its documents are
//! on disk already, and what else the next files depend on is small beside them. Its
//! files are kept, named, in a directory of their own (`ranked.resume` beside the
//! stored index):
//! ```text
//! body, path, defs, comments   the fields' spilled documents: (term id u32,
//!                              frequency u32) pairs, little-endian, by slot then term
//! terms                        the terms in id order: varint len, bytes
//! files                        one entry per file taken back, in tree order: 0 for a
//!                              file not indexed (binary), else 1 and its four
//!                              documents' lengths in pairs (varints)
//! checkpoint                   the record below, replaced whole (written aside, synced,
//!                              renamed)
//! ```
//! The data files are only ever appended to. A checkpoint makes them durable, then
//! records how far they held: magic, its version and the stored format's, the tree the
//! build reads, how many files it has, how many it had taken back, how many terms, and
//! each data file's length and CRC-32 at that point; then the record's own CRC-32. A
//! later build of the same tree checks all of it (the record, each file's bytes against
//! its CRC, the journals' structure against the counts), cuts the files back to the
//! recorded lengths and goes on from the next file. Anything that does not hold
//! together is removed and the build starts over: a checkpoint is used whole or not at
//! all.
//!
//! Who may touch the directory is the caller's to decide: the store lets only the
//! process holding a repo's build lock do so.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Oid;

use super::dict::TermTable;
use super::disk::FORMAT_VERSION;
use super::field::Documents;

/// When a build writes checkpoints, and where.
#[derive(Debug, Clone)]
pub struct ResumePlan {
    /// The checkpoint's directory (made when the build first spills).
    pub dir: PathBuf,
    /// At most this long between checkpoints.
    pub every: Duration,
    /// And at most this many files (0: no bound by files).
    pub every_files: usize,
    /// Test hook: after the first checkpoint short of the last file, write this
    /// process's id to this file and wait for as long as it exists.
    pub hold: Option<std::ffi::OsString>,
}

/// The default time between checkpoints: each costs a sync of what was written since,
/// which the build pays for as a stall (see `BENCHMARKS.md`); an interrupted build
/// loses at most this much of its reading.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

const MAGIC: &[u8; 8] = b"SRMRSUME";
/// Bumped whenever what a checkpoint records, or how, changes.
const VERSION: u32 = 1;
/// The record's file name in the checkpoint's directory.
const RECORD: &str = "checkpoint";
/// The data files, in the order the record lists them: the four spilled fields, the
/// terms, the files.
pub(super) const STREAMS: [&str; 6] = ["body", "path", "defs", "comments", "terms", "files"];
const TERMS: usize = 4;
const FILES: usize = 5;
const RECORD_LEN: usize = 8 + 4 + 4 + 20 + 8 * 3 + 12 * STREAMS.len() + 4;

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub tree: Oid,
    pub total: u64,
    pub taken: u64,
    pub terms: u64,
    /// Each data file's length in bytes and CRC-32, in [`STREAMS`] order.
    pub streams: [(u64, u32); 6],
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECORD_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(self.tree.as_bytes());
        for v in [self.total, self.taken, self.terms] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for (len, crc) in self.streams {
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() != RECORD_LEN || &b[..8] != MAGIC {
            return Err("not a checkpoint record");
        }
        let (body, crc) = b.split_at(RECORD_LEN - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("the record's checksum");
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(8) != VERSION || u32_at(12) != FORMAT_VERSION {
            return Err("another version");
        }
        let tree = Oid::from_bytes(&b[16..36]).map_err(|_| "the tree")?;
        let mut streams = [(0, 0); 6];
        for (i, s) in streams.iter_mut().enumerate() {
            let at = 60 + 12 * i;
            *s = (u64_at(at), u32_at(at + 8));
        }
        Ok(Self {
            tree,
            total: u64_at(36),
            taken: u64_at(44),
            terms: u64_at(52),
            streams,
        })
    }
}

/// An append-only data file of a checkpoint, counting and checksumming what it takes.
#[derive(Debug)]
pub(super) struct Journal {
    out: std::io::BufWriter<std::fs::File>,
    len: u64,
    crc: crc32fast::Hasher,
}

impl Journal {
    fn new(file: std::fs::File, len: u64, crc: u32) -> Self {
        Self {
            out: std::io::BufWriter::with_capacity(1 << 16, file),
            len,
            crc: crc32fast::Hasher::new_with_initial_len(crc, len),
        }
    }

    /// Append `b`.
    pub fn append(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b)?;
        self.crc.update(b);
        self.len += b.len() as u64;
        Ok(())
    }

    /// Make what was appended durable: its length and CRC-32.
    pub fn sync(&mut self) -> std::io::Result<(u64, u32)> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok((self.len, self.crc.clone().finalize()))
    }
}

/// Make data file `name` in `dir`, empty, to read and write.
pub(super) fn create(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))
}

/// A new journal `name` in `dir`.
pub(super) fn create_journal(dir: &Path, name: &str) -> std::io::Result<Journal> {
    Ok(Journal::new(create(dir, name)?, 0, 0))
}

/// Record `rec` as the checkpoint in `dir`: written aside, synced, renamed over the
/// last one, and the directory synced, so that a crash leaves one record or the other.
pub(super) fn write_record(dir: &Path, rec: &Record) -> std::io::Result<()> {
    let tmp = dir.join(format!("{RECORD}.new"));
    let mut f = create(dir, &format!("{RECORD}.new"))?;
    f.write_all(&rec.encode())?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(RECORD))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Remove the checkpoint in `dir`, if any.
pub fn discard(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "ranked build checkpoint removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), cause = %e, "a ranked build checkpoint could not be removed")
        }
    }
}

/// The tree a checkpoint in `dir` is of, read from its record alone (unchecked beyond
/// the record's own checksum); `None` when there is none.
pub fn checkpoint_tree(dir: &Path) -> Option<Oid> {
    let b = std::fs::read(dir.join(RECORD)).ok()?;
    Record::decode(&b).ok().map(|r| r.tree)
}

/// A build taken up from a checkpoint: the state the next file needs.
pub(super) struct TakenUp {
    /// Files taken back before.
    pub taken: usize,
    /// Whether each of them was indexed (text), in order.
    pub text: Vec<bool>,
    pub terms: TermTable,
    /// Body, path, definitions, comments.
    pub docs: [Documents; 4],
    pub terms_out: Journal,
    pub files_out: Journal,
}

fn read_varint(b: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or("a journal cut short")?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("a number too long")
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read the first `len` bytes of `f`, checking them against `crc`.
fn read_checked(f: &mut std::fs::File, len: u64, crc: u32) -> Result<Vec<u8>, String> {
    let mut b = Vec::with_capacity(usize::try_from(len).map_err(|_| "too long")?);
    f.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| e.to_string())?;
    f.take(len).read_to_end(&mut b).map_err(|e| e.to_string())?;
    if b.len() as u64 != len {
        return Err("a data file shorter than recorded".into());
    }
    if crc32fast::hash(&b) != crc {
        return Err("a data file's checksum".into());
    }
    Ok(b)
}

/// Check the first `len` bytes of `f` against `crc` without holding them.
fn check_crc(f: &mut std::fs::File, len: u64, crc: u32) -> Result<(), String> {
    f.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f.take(len));
    let mut h = crc32fast::Hasher::new();
    let mut n = 0u64;
    loop {
        let b = r.fill_buf().map_err(|e| e.to_string())?;
        if b.is_empty() {
            break;
        }
        h.update(b);
        n += b.len() as u64;
        let k = b.len();
        std::io::BufRead::consume(&mut r, k);
    }
    if n != len {
        return Err("a data file shorter than recorded".into());
    }
    if h.finalize() != crc {
        return Err("a data file's checksum".into());
    }
    Ok(())
}

use std::io::BufRead;

/// Take up the checkpoint in `dir` for a build of `tree`'s `total` files, checked
/// whole; `None` when there is none or it does not hold together, after removing
/// whatever is in `dir` (a build then starts over, with the directory its own).
pub(super) fn take_up(dir: &Path, tree: Oid, total: usize) -> Option<TakenUp> {
    let record = match std::fs::read(dir.join(RECORD)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Data files with no record: a build killed before its first checkpoint.
            discard(dir);
            return None;
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), cause = %e, "a ranked build checkpoint could not be read; starting over");
            discard(dir);
            return None;
        }
    };
    let checked = Record::decode(&record)
        .map_err(String::from)
        .and_then(|rec| {
            if rec.tree != tree || rec.total != total as u64 {
                return Err("a checkpoint of another tree".into());
            }
            take_up_record(dir, &rec)
        });
    match checked {
        Ok(t) => Some(t),
        Err(why) => {
            tracing::warn!(dir = %dir.display(), cause = %why, "a ranked build checkpoint not used; starting over");
            discard(dir);
            None
        }
    }
}

fn take_up_record(dir: &Path, rec: &Record) -> Result<TakenUp, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut files = Vec::with_capacity(STREAMS.len());
    for name in STREAMS {
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .open(dir.join(name))
            .map_err(io)?;
        files.push(f);
    }
    for (f, &(len, crc)) in files.iter_mut().zip(&rec.streams).take(TERMS) {
        check_crc(f, len, crc)?;
    }
    let (tlen, tcrc) = rec.streams[TERMS];
    let term_bytes = read_checked(&mut files[TERMS], tlen, tcrc)?;
    let (flen, fcrc) = rec.streams[FILES];
    let file_bytes = read_checked(&mut files[FILES], flen, fcrc)?;

    let mut terms = TermTable::default();
    let mut at = 0usize;
    while at < term_bytes.len() {
        let n = usize::try_from(read_varint(&term_bytes, &mut at)?).map_err(|_| "a term")?;
        let t = term_bytes
            .get(at..at.checked_add(n).ok_or("a term")?)
            .ok_or("a journal cut short")?;
        at += n;
        let next = terms.len();
        if terms.intern(t) != Some(next as u32) {
            return Err("a term listed twice".into());
        }
    }
    if terms.len() as u64 != rec.terms {
        return Err("the terms do not match the record".into());
    }

    let mut text = Vec::new();
    let mut ats: [Vec<u32>; 4] = std::array::from_fn(|_| vec![0u32]);
    let mut at = 0usize;
    while at < file_bytes.len() {
        let flag = file_bytes[at];
        at += 1;
        match flag {
            0 => text.push(false),
            1 => {
                text.push(true);
                for a in &mut ats {
                    let n = read_varint(&file_bytes, &mut at)?;
                    let end = u64::from(*a.last().expect("one entry at least")) + n;
                    a.push(u32::try_from(end).map_err(|_| "a document past 32-bit offsets")?);
                }
            }
            _ => return Err("a file entry".into()),
        }
    }
    if text.len() as u64 != rec.taken || rec.taken > rec.total {
        return Err("the files do not match the record".into());
    }
    for (a, &(len, _)) in ats.iter().zip(&rec.streams) {
        if u64::from(*a.last().expect("one entry at least")) * 8 != len {
            return Err("the documents do not match their file".into());
        }
    }
    for (f, &(len, _)) in files.iter().zip(&rec.streams) {
        f.set_len(len).map_err(io)?;
    }
    let mut files = files.into_iter();
    let mut docs = Vec::with_capacity(4);
    for (a, &(_, crc)) in ats.into_iter().zip(&rec.streams) {
        let f = files.next().expect("six files");
        docs.push(Documents::resume_spilled(f, a, crc).map_err(io)?);
    }
    let docs = <[Documents; 4]>::try_from(docs).expect("four fields");
    let mut journal = |(len, crc): (u64, u32)| -> Result<Journal, String> {
        let mut f = files.next().expect("six files");
        f.seek(std::io::SeekFrom::Start(len)).map_err(io)?;
        Ok(Journal::new(f, len, crc))
    };
    let terms_out = journal(rec.streams[TERMS])?;
    let files_out = journal(rec.streams[FILES])?;
    Ok(TakenUp {
        taken: text.len(),
        text,
        terms,
        docs,
        terms_out,
        files_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_any_damage_is_refused() {
        let rec = Record {
            tree: Oid::from_bytes(&[7; 20]).unwrap(),
            total: 86_000,
            taken: 512,
            terms: 12_345,
            streams: [(8, 1), (16, 2), (24, 3), (32, 4), (40, 5), (48, 6)],
        };
        let b = rec.encode();
        assert_eq!(Record::decode(&b).unwrap(), rec);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x04;
            assert!(Record::decode(&d).is_err(), "byte {i}");
        }
        assert!(Record::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn a_checksum_goes_on_from_a_recorded_one() {
        let whole = crc32fast::hash(b"abcdef");
        let mut h = crc32fast::Hasher::new_with_initial_len(crc32fast::hash(b"abc"), 3);
        h.update(b"def");
        assert_eq!(h.finalize(), whole);
    }
}

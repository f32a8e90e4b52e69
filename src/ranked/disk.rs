//! The ranked index as a file: what a process stores so that the next one loads the
//! index instead of building it, and reads its large parts in place.
//!
//! Layout (integers little-endian; `varint` is LEB128):
//! ```text
//! header, 48 bytes
//!    0  magic "SRMRANK\n"   8  version u32 (FORMAT_VERSION)
//!   12  crc32 u32 of every byte from 24 to the end
//!   16  length u64: bytes after the header
//!   24  head, 20 bytes: the commit the index describes
//!   44  term id bound u32: one past the highest term id in use or free
//! sections, each at a multiple of 8 bytes from the start (zeros between them):
//!    0  term bytes: the live terms' UTF-8, one after the other, sorted
//!    1  term offsets: u32 each, where each term starts in the term bytes, and
//!       where the last ends
//!    2  term ids: u32 each, the id of each term in sorted order; ids no term has are
//!       free
//!    3  slots: varint s, then s × (varint len, path bytes, 20-byte blob id); len 0
//!       is a free slot
//!    4..24  five fields (body, path, defs, msgs, comments), four sections each:
//!       postings at  u32 × (term id bound + 1): where each term's postings start
//!       postings     (slot u32, frequency u32) pairs, by term, then by slot
//!       documents at u32 × (slots + 1): where each slot's document starts
//!       documents    (term id u32, frequency u32) pairs, by slot, then by term
//!   24  history, varint-encoded:
//!       kept     varint k, then k × 20-byte commit id, oldest first
//!       messages varint m, then m × (path, document): each path's summed message terms
//!       touches  varint t, then t × (path, varint commits that changed it)
//!       pairs    varint q, then q × (path, varint r, r × (path, varint commits))
//!       where path = varint len, bytes (each list sorted by path), and
//!       document = varint pairs, then pairs × (varint term id delta, varint frequency)
//! table, at the end: 25 × (offset u64, length u64), one per section, in order
//! ```
//! The terms and the fields' arrays are raw and aligned, so that a loaded index maps
//! the file and reads them in place ([`RankedIndex::open`]): they take page cache,
//! shared between processes, not heap. What can be derived is not stored: the
//! documents' lengths. The history keeps no commit's record (it reads one from git
//! again when the commit leaves), so it stores the per-path sums themselves.
//!
//! Loading checks the magic, the version, the length and the checksum (a pass over the
//! file), then the structure: sections in order and in bounds, terms sorted and UTF-8,
//! every id against its table (term ids against the dictionary, slots against the
//! slots, offsets against their arrays), lists sorted, and each field's postings the
//! transposition of its documents. A damaged file is refused, and rebuilt, never
//! trusted; malformed contents under a good checksum are refused or read, never a
//! panic.
//!
//! The checks read the whole file through the mapping, and let go of its pages as they
//! pass, so that a load holds a window of the file, not all of it.
//!
//! A stored file is never changed: a newer copy is written to a new file and renamed
//! over it, so a process that has the old one mapped keeps reading it unchanged. A
//! large first build writes its file from documents it spilled to files as it read
//! (`RankedIndex::store_spilled`): the same bytes a build held in memory writes.

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use git2::Oid;

use super::backing::{Backing, Mapped, Plain};
use super::dict::{Dict, DictSnapshot, SortedTerms};
use super::field::{
    BaseArrays, EachDocument, EachPostings, Field, FieldSnapshot, SpilledDocuments,
};
use super::{History, MAX_HISTORY_COMMITS, RankedIndex};

const MAGIC: &[u8; 8] = b"SRMRANK\n";
/// Bumped whenever the layout or the meaning of what it stores changes (the tokenizer's
/// terms included): a file of another version is rebuilt, not read.
pub const FORMAT_VERSION: u32 = 6;
/// Bytes of the header.
pub const HEADER: usize = 48;
/// Where the checksummed bytes start.
const CHECKED_FROM: usize = 24;
const SECTIONS: usize = 25;
const TABLE: usize = SECTIONS * 16;
const SLOTS: usize = 3;
const FIELDS: usize = 5;
const HISTORY: usize = 24;

/// Why stored bytes were not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a stored ranked index.
    #[error("not a stored ranked index")]
    Magic,
    /// Stored by another version of the format.
    #[error("format version {0}, expected {FORMAT_VERSION}")]
    Version(u32),
    /// Shorter or longer than its header says: a write cut short, or appended to.
    #[error("{actual} bytes where the header says {expected}")]
    Length {
        /// What the header says.
        expected: u64,
        /// What there is.
        actual: u64,
    },
    /// The bytes changed since they were written.
    #[error("checksum mismatch")]
    Checksum,
    /// The checksum matched but the contents do not hold together.
    #[error("malformed contents: {0}")]
    Malformed(&'static str),
    /// The file could not be read or mapped.
    #[error("could not be read: {0}")]
    Io(String),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_document(out: &mut Vec<u8>, doc: &[(u32, u32)]) {
    put_varint(out, doc.len() as u64);
    let mut prev = 0u32;
    for &(t, tf) in doc {
        put_varint(out, u64::from(t - prev));
        put_varint(out, u64::from(tf));
        prev = t;
    }
}

/// A cursor over stored bytes; every read is checked.
struct Reader<'a>(&'a [u8]);

type Read<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed("a field runs past the end"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn varint(&mut self) -> Read<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("a number too long"))
    }

    /// A count of items each taking at least one byte: never more than the bytes left,
    /// so a damaged count cannot ask for a huge allocation.
    fn count(&mut self) -> Read<usize> {
        let n = self.varint()?;
        if n > self.0.len() as u64 {
            return Err(DecodeError::Malformed("a count larger than the file"));
        }
        Ok(n as usize)
    }

    fn u32(&mut self) -> Read<u32> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("a number too large"))
    }

    fn str(&mut self) -> Read<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Malformed("a name not UTF-8"))
    }

    fn oid(&mut self) -> Read<Oid> {
        Oid::from_bytes(self.take(20)?).map_err(|_| DecodeError::Malformed("a commit id"))
    }

    /// A path of a list sorted by path: not empty, and after `last` (then its new value).
    fn next_path(&mut self, last: &mut Option<String>) -> Read<String> {
        let p = self.str()?.to_string();
        if p.is_empty() || last.as_ref().is_some_and(|l| *l >= p) {
            return Err(DecodeError::Malformed("paths empty or out of order"));
        }
        *last = Some(p.clone());
        Ok(p)
    }

    /// A document of known term ids (`known[id]`), sorted.
    fn document(&mut self, known: &[bool]) -> Read<Vec<(u32, u32)>> {
        let n = self.count()?;
        let mut doc = Vec::with_capacity(n);
        let mut t = 0u32;
        for i in 0..n {
            let delta = self.u32()?;
            if i > 0 && delta == 0 {
                return Err(DecodeError::Malformed("a document's terms out of order"));
            }
            t = t
                .checked_add(delta)
                .filter(|&t| known.get(t as usize) == Some(&true))
                .ok_or(DecodeError::Malformed("an unknown term id"))?;
            doc.push((t, self.u32()?));
        }
        Ok(doc)
    }
}

/// The head a stored index describes, read from its header without checking the rest:
/// enough to decide whether loading it is worth trying.
pub fn stored_head(bytes: &[u8]) -> Option<Oid> {
    (bytes.len() >= HEADER && &bytes[..8] == MAGIC)
        .then(|| Oid::from_bytes(&bytes[24..44]).ok())
        .flatten()
}

/// The index as it was when [`RankedIndex::snapshot`] took it: everything storing it
/// writes, taken under the index's lock in little time (the large parts are shared,
/// not copied) and written without it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    head: Oid,
    dict: DictSnapshot,
    /// The slots section, encoded.
    slots: Vec<u8>,
    fields: [FieldPart; FIELDS],
    /// The history section, encoded.
    history: Vec<u8>,
}

/// Bytes of postings a pass over a spilled field's documents fills at most (see
/// [`SpilledDocuments::for_each_postings`]).
pub const POSTINGS_PASS_BYTES: usize = 64 << 20;

/// A field as storing it writes it: a snapshot of one held in memory, or the documents
/// a large build spilled to a file.
#[derive(Debug, Clone)]
enum FieldPart {
    Held(FieldSnapshot),
    Spilled(Arc<SpilledDocuments>, usize),
}

impl FieldPart {
    fn for_each_postings(&self, terms: u32, each: &mut EachPostings<'_>) -> std::io::Result<()> {
        match self {
            FieldPart::Held(f) => f.for_each_postings(terms, each),
            FieldPart::Spilled(d, budget) => d.for_each_postings(terms, *budget, each),
        }
    }

    fn for_each_document(&self, each: &mut EachDocument<'_>) -> std::io::Result<()> {
        match self {
            FieldPart::Held(f) => (0..f.slots() as u32).try_for_each(|s| each(f.terms_of(s))),
            FieldPart::Spilled(d, _) => d.for_each_document(each),
        }
    }
}

/// A writer that counts what it writes and checksums it from [`CHECKED_FROM`] on.
struct Counted<'a, W: Write> {
    w: &'a mut W,
    at: u64,
    crc: crc32fast::Hasher,
    buf: Vec<u8>,
}

impl<W: Write> Counted<'_, W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        let skip = (CHECKED_FROM as u64)
            .saturating_sub(self.at)
            .min(b.len() as u64) as usize;
        self.crc.update(&b[skip..]);
        self.at += b.len() as u64;
        Ok(())
    }

    /// Append `v` to the buffer, writing it out once it is large.
    fn value<T: Plain>(&mut self, v: &T) -> std::io::Result<()> {
        v.put_le(&mut self.buf);
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        let b = std::mem::take(&mut self.buf);
        self.put(&b)?;
        self.buf = b;
        self.buf.clear();
        Ok(())
    }

    /// Zeros up to the next multiple of 8; returns where that is.
    fn align(&mut self) -> std::io::Result<u64> {
        self.flush_buf()?;
        let pad = (8 - self.at % 8) % 8;
        self.put(&[0; 8][..pad as usize])?;
        Ok(self.at)
    }
}

fn too_large() -> std::io::Error {
    std::io::Error::other("too large for the stored format's 32-bit offsets")
}

impl Snapshot {
    /// The head the snapshot describes.
    pub fn head(&self) -> Oid {
        self.head
    }

    /// Write the snapshot in the stored layout (see the module's documentation): one
    /// pass, then the checksum and length into the header.
    pub fn write<W: Write + Seek>(&self, w: &mut W) -> std::io::Result<()> {
        let start = w.stream_position()?;
        let mut c = Counted {
            w,
            at: 0,
            crc: crc32fast::Hasher::new(),
            buf: Vec::with_capacity(1 << 17),
        };
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&[0; 4 + 8]);
        header.extend_from_slice(self.head.as_bytes());
        header.extend_from_slice(&self.dict.id_bound().to_le_bytes());
        c.put(&header)?;
        let mut table = [(0u64, 0u64); SECTIONS];
        // Sections go into the file in the order they can be written in; the table says
        // where each is.
        let mut section = |c: &mut Counted<'_, W>,
                           i: usize,
                           write: &mut dyn FnMut(&mut Counted<'_, W>) -> std::io::Result<()>|
         -> std::io::Result<()> {
            let from = c.align()?;
            write(c)?;
            c.flush_buf()?;
            table[i] = (from, c.at - from);
            Ok(())
        };
        // The terms: bytes, then offsets and ids gathered meanwhile.
        let mut at = vec![0u32];
        let mut ids = Vec::new();
        let mut len = 0u64;
        section(&mut c, 0, &mut |c| {
            self.dict.for_each_sorted(&mut |t, id| {
                c.buf.extend_from_slice(t);
                if c.buf.len() >= 1 << 16 {
                    c.flush_buf()?;
                }
                len += t.len() as u64;
                at.push(u32::try_from(len).map_err(|_| too_large())?);
                ids.push(id);
                Ok(())
            })
        })?;
        section(&mut c, 1, &mut |c| at.iter().try_for_each(|v| c.value(v)))?;
        drop(at);
        section(&mut c, 2, &mut |c| ids.iter().try_for_each(|v| c.value(v)))?;
        drop(ids);
        section(&mut c, SLOTS, &mut |c| c.put(&self.slots))?;
        let bound = self.dict.id_bound();
        for (i, f) in self.fields.iter().enumerate() {
            let first = SLOTS + 1 + 4 * i;
            let mut offsets = Vec::with_capacity(bound as usize + 1);
            let mut n = 0u64;
            section(&mut c, first + 1, &mut |c| {
                f.for_each_postings(bound, &mut |_, p| {
                    offsets.push(u32::try_from(n).map_err(|_| too_large())?);
                    n += p.len() as u64;
                    p.iter().try_for_each(|v| c.value(v))
                })?;
                offsets.push(u32::try_from(n).map_err(|_| too_large())?);
                Ok(())
            })?;
            section(&mut c, first, &mut |c| {
                offsets.iter().try_for_each(|v| c.value(v))
            })?;
            offsets.clear();
            let mut n = 0u64;
            section(&mut c, first + 3, &mut |c| {
                offsets.push(0);
                f.for_each_document(&mut |d| {
                    n += d.len() as u64;
                    offsets.push(u32::try_from(n).map_err(|_| too_large())?);
                    d.iter().try_for_each(|v| c.value(v))
                })
            })?;
            section(&mut c, first + 2, &mut |c| {
                offsets.iter().try_for_each(|v| c.value(v))
            })?;
        }
        section(&mut c, HISTORY, &mut |c| c.put(&self.history))?;
        c.align()?;
        for &(off, len) in &table {
            c.buf.extend_from_slice(&off.to_le_bytes());
            c.buf.extend_from_slice(&len.to_le_bytes());
        }
        c.flush_buf()?;
        let (end, crc) = (c.at, c.crc.finalize());
        w.seek(SeekFrom::Start(start + 12))?;
        w.write_all(&crc.to_le_bytes())?;
        w.write_all(&(end - HEADER as u64).to_le_bytes())?;
        w.seek(SeekFrom::Start(start + end))?;
        Ok(())
    }
}

/// A new temporary file's name beside `path`: `.<name>.<pid>.<random>`.
pub(super) fn temp_beside(path: &std::path::Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(
        ".{name}.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// Where a stored index's bytes are: mapped (its large parts read in place), or a
/// buffer (everything decoded onto the heap).
#[derive(Clone, Copy)]
enum Source<'a> {
    Mapped(&'a Arc<Mapped>),
    Bytes(&'a [u8]),
}

impl Source<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m.bytes(),
            Source::Bytes(b) => b,
        }
    }

    fn array<T: Plain>(&self, range: std::ops::Range<usize>) -> Read<Backing<T>> {
        match self {
            Source::Mapped(m) => Backing::in_map(m, range),
            Source::Bytes(b) => Backing::decode(&b[range]),
        }
        .ok_or(DecodeError::Malformed(
            "a section not a whole number of values",
        ))
    }
}

/// The CRC-32 of the bytes from [`CHECKED_FROM`] on. A mapped file's pages are let go
/// of as the pass goes: checking the file holds a window of it, not all of it.
fn checksum(src: Source<'_>) -> u32 {
    const WINDOW: usize = 8 << 20;
    let bytes = src.bytes();
    let mut crc = crc32fast::Hasher::new();
    let mut at = CHECKED_FROM;
    while at < bytes.len() {
        let end = (at + WINDOW).min(bytes.len());
        crc.update(&bytes[at..end]);
        if let Source::Mapped(m) = src {
            m.release_range(at..end);
        }
        at = end;
    }
    crc.finalize()
}

/// What a stored index holds, checked.
struct Parsed {
    head: Oid,
    terms: SortedTerms,
    used: Vec<bool>,
    paths: Vec<Option<String>>,
    blobs: Vec<Oid>,
    slot_of: std::collections::HashMap<String, u32>,
    free: Vec<u32>,
    fields: [Field; FIELDS],
    history: Option<History>,
}

/// Check `src` and read what it holds (the history only when `history`).
fn parse(src: Source<'_>, history: bool) -> Read<Parsed> {
    let bytes = src.bytes();
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    if bytes.len() < HEADER + TABLE {
        return Err(DecodeError::Length {
            expected: (HEADER + TABLE) as u64,
            actual: bytes.len() as u64,
        });
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER) as u64;
    if len != actual {
        return Err(DecodeError::Length {
            expected: len,
            actual,
        });
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if checksum(src) != crc {
        return Err(DecodeError::Checksum);
    }
    let head = Oid::from_bytes(&bytes[24..44]).map_err(|_| DecodeError::Malformed("head"))?;
    let bound = u32::from_le_bytes(bytes[44..48].try_into().expect("4 bytes"));
    let end = bytes.len() - TABLE;
    let mut ranges = Vec::with_capacity(SECTIONS);
    for e in bytes[end..].chunks_exact(16) {
        let off = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
        let to = off.checked_add(len);
        if off % 8 != 0 || off < HEADER as u64 || to.is_none_or(|t| t > end as u64) {
            return Err(DecodeError::Malformed("a section out of place"));
        }
        ranges.push(off as usize..(off + len) as usize);
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| (r.start, r.end));
    if sorted.windows(2).any(|w| w[0].end > w[1].start) {
        return Err(DecodeError::Malformed("sections overlap"));
    }
    // The term id bound sizes tables: it must agree with the first field's before any
    // is made, so that a damaged bound cannot ask for a huge allocation.
    if ranges[SLOTS + 1].len() as u64 != (u64::from(bound) + 1) * 4 {
        return Err(DecodeError::Malformed("the term id bound"));
    }
    let (terms, used) = SortedTerms::from_arrays(
        src.array(ranges[0].clone())?,
        src.array(ranges[1].clone())?,
        src.array(ranges[2].clone())?,
        bound,
    )
    .map_err(DecodeError::Malformed)?;

    let mut r = Reader(&bytes[ranges[SLOTS].clone()]);
    let s = r.count()?;
    let mut paths = Vec::with_capacity(s);
    let mut blobs = Vec::with_capacity(s);
    let mut slot_of = std::collections::HashMap::with_capacity(s);
    let mut free = Vec::new();
    let mut is_free = Vec::with_capacity(s);
    for slot in 0..s {
        let p = r.str()?;
        is_free.push(p.is_empty());
        if p.is_empty() {
            paths.push(None);
            blobs.push(Oid::zero());
            free.push(slot as u32);
            continue;
        }
        blobs.push(r.oid()?);
        if slot_of.insert(p.to_string(), slot as u32).is_some() {
            return Err(DecodeError::Malformed("a path stored twice"));
        }
        paths.push(Some(p.to_string()));
    }
    if !r.0.is_empty() {
        return Err(DecodeError::Malformed("bytes after the slots"));
    }
    // Lowest slot on top, as a fresh index would hand them out.
    free.reverse();

    let mut fields = Vec::with_capacity(FIELDS);
    for i in 0..FIELDS {
        let first = SLOTS + 1 + 4 * i;
        let a = BaseArrays {
            base_at: src.array(ranges[first].clone())?,
            base: src.array(ranges[first + 1].clone())?,
            docs_at: src.array(ranges[first + 2].clone())?,
            docs_base: src.array(ranges[first + 3].clone())?,
        };
        fields.push(Field::from_base(a, bound, &used, &is_free).map_err(DecodeError::Malformed)?);
    }
    let fields = <[Field; FIELDS]>::try_from(fields).expect("five fields");

    let history = if history {
        let mut r = Reader(&bytes[ranges[HISTORY].clone()]);
        let h = read_history(&mut r, &used)?;
        if !r.0.is_empty() {
            return Err(DecodeError::Malformed("bytes after the end"));
        }
        Some(h)
    } else {
        None
    };
    if let Source::Mapped(m) = src {
        // The checks read every page; queries read a few.
        m.release();
    }
    Ok(Parsed {
        head,
        terms,
        used,
        paths,
        blobs,
        slot_of,
        free,
        fields,
        history,
    })
}

/// The history section: the kept commits, oldest first, and the per-path sums.
fn put_history(ix: &RankedIndex, out: &mut Vec<u8>) {
    let h = &ix.history;
    put_varint(out, h.kept.len() as u64);
    for oid in &h.kept {
        out.extend_from_slice(oid.as_bytes());
    }
    // Sorted by path, so that one index always makes the same bytes.
    let sorted = |keys: &mut dyn Iterator<Item = &String>| {
        let mut v: Vec<String> = keys.cloned().collect();
        v.sort_unstable();
        v
    };
    let paths = sorted(&mut h.per_file.keys());
    put_varint(out, paths.len() as u64);
    for p in &paths {
        put_bytes(out, p.as_bytes());
        put_document(out, &ix.history_terms(p));
    }
    let paths = sorted(&mut h.touches.keys());
    put_varint(out, paths.len() as u64);
    for p in &paths {
        put_bytes(out, p.as_bytes());
        put_varint(out, u64::from(h.touches[p]));
    }
    let paths = sorted(&mut h.pairs.keys());
    put_varint(out, paths.len() as u64);
    for p in &paths {
        put_bytes(out, p.as_bytes());
        let with = &h.pairs[p];
        let others = sorted(&mut with.keys());
        put_varint(out, others.len() as u64);
        for q in &others {
            put_bytes(out, q.as_bytes());
            put_varint(out, u64::from(with[q]));
        }
    }
}

/// The history section as [`put_history`] wrote it.
fn read_history(r: &mut Reader<'_>, known: &[bool]) -> Read<History> {
    let mut history = History::default();
    let nkept = r.count()?;
    let mut seen = HashSet::with_capacity(nkept);
    for _ in 0..nkept {
        let oid = r.oid()?;
        if !seen.insert(oid) {
            return Err(DecodeError::Malformed("a commit stored twice"));
        }
        history.kept.push_back(oid);
    }
    // The sums keep no zero and no empty map (see `History::apply`); a stored one that
    // does is not one this code wrote.
    let nonzero = |n: u32| {
        (n > 0)
            .then_some(n)
            .ok_or(DecodeError::Malformed("a zero sum"))
    };
    let mut last = None;
    for _ in 0..r.count()? {
        let p = r.next_path(&mut last)?;
        let doc = r.document(known)?;
        if doc.is_empty() {
            return Err(DecodeError::Malformed("an empty sum"));
        }
        let mut m = std::collections::HashMap::with_capacity(doc.len());
        for (t, c) in doc {
            m.insert(t, nonzero(c)?);
        }
        history.per_file.insert(p, m);
    }
    let mut last = None;
    for _ in 0..r.count()? {
        let p = r.next_path(&mut last)?;
        let n = nonzero(r.u32()?)?;
        history.touches.insert(p, n);
    }
    let mut last = None;
    for _ in 0..r.count()? {
        let p = r.next_path(&mut last)?;
        let n = r.count()?;
        if n == 0 {
            return Err(DecodeError::Malformed("an empty sum"));
        }
        let mut m = std::collections::HashMap::with_capacity(n);
        let mut prev: Option<&str> = None;
        for _ in 0..n {
            let q = r.str()?;
            if q.is_empty() || q == p || prev.is_some_and(|l| l >= q) {
                return Err(DecodeError::Malformed("paths empty or out of order"));
            }
            prev = Some(q);
            m.insert(q.to_string(), nonzero(r.u32()?)?);
        }
        history.pairs.insert(p, m);
    }
    Ok(history)
}

/// A stored base to move an index onto ([`RankedIndex::rebase`]): the terms and the
/// fields of a file written from a [`Snapshot`], checked.
pub struct StoredBase {
    head: Oid,
    terms: SortedTerms,
    sweeps: u64,
    fields: [Field; FIELDS],
}

impl std::fmt::Debug for StoredBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBase")
            .field("head", &self.head)
            .finish()
    }
}

impl StoredBase {
    /// Map `file`, written from `snap`, and check it as loading does.
    pub fn open(file: &std::fs::File, snap: &Snapshot) -> Result<Self, DecodeError> {
        let map = Mapped::new(file).map_err(|e| DecodeError::Io(e.to_string()))?;
        let p = parse(Source::Mapped(&map), false)?;
        if p.head != snap.head {
            return Err(DecodeError::Malformed("another head than the snapshot's"));
        }
        Ok(Self {
            head: p.head,
            terms: p.terms,
            sweeps: snap.dict.sweeps(),
            fields: p.fields,
        })
    }
}

impl RankedIndex {
    fn snapshot_of(&self) -> Snapshot {
        let mut slots = Vec::with_capacity(self.paths.len() * 48 + 8);
        put_varint(&mut slots, self.paths.len() as u64);
        for (p, b) in self.paths.iter().zip(&self.blobs) {
            match p {
                Some(p) => {
                    put_bytes(&mut slots, p.as_bytes());
                    slots.extend_from_slice(b.as_bytes());
                }
                None => put_varint(&mut slots, 0),
            }
        }
        let mut history = Vec::new();
        put_history(self, &mut history);
        let slots_n = self.paths.len();
        let field = |f: &Field| {
            let mut s = f.snapshot();
            s.span(slots_n);
            FieldPart::Held(s)
        };
        Snapshot {
            head: self.head,
            dict: self.dict.snapshot(),
            slots,
            fields: [
                field(&self.body),
                field(&self.path),
                field(&self.defs),
                field(&self.msgs),
                field(&self.comments),
            ],
            history,
        }
    }

    /// The index as it is now, to store while it moves on; from now on the index notes
    /// what changes, so that it can move onto the stored base once written
    /// ([`RankedIndex::rebase`]).
    pub fn snapshot(&mut self) -> Snapshot {
        for f in self.fields_mut() {
            f.mark();
        }
        self.snapshot_of()
    }

    /// Move onto `stored`, the base written from this index's last
    /// [`RankedIndex::snapshot`]: the terms and fields are then read from it (mapped,
    /// off the heap), with what changed since the snapshot carried over. `false` (and
    /// the index unchanged, still correct) when it cannot: no snapshot is pending, or
    /// terms were forgotten since it was taken.
    pub fn rebase(&mut self, stored: StoredBase) -> bool {
        let fields = [
            &mut self.body,
            &mut self.path,
            &mut self.defs,
            &mut self.msgs,
            &mut self.comments,
        ];
        if fields.iter().any(|f| !f.is_marked()) || !self.dict.rebase(stored.terms, stored.sweeps) {
            for f in fields {
                f.unmark();
            }
            return false;
        }
        for (f, base) in fields.into_iter().zip(stored.fields) {
            f.rebase(base).expect("marked");
        }
        true
    }

    /// Store the index at `path` and move onto the stored file, all at once, as the
    /// store does on a thread of its own: a snapshot written to a new file beside
    /// `path`, synced, checked and mapped, then renamed over `path`. For tools and
    /// tests; returns whether the index moved onto the file.
    pub fn store_at(&mut self, path: &std::path::Path) -> Result<bool, DecodeError> {
        let io = |e: std::io::Error| DecodeError::Io(e.to_string());
        let snap = self.snapshot();
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(name);
        let stored = (|| {
            let mut f = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            snap.write(&mut w).map_err(io)?;
            w.flush().map_err(io)?;
            drop(w);
            f.sync_all().map_err(io)?;
            let stored = StoredBase::open(&f, &snap)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(stored)
        })();
        drop(snap);
        match stored {
            Ok(stored) => Ok(self.rebase(stored)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.forget_snapshot();
                Err(e)
            }
        }
    }

    /// Store a first build whose file fields were spilled (`spilled`: body, path,
    /// definitions, comments) at `path`, and open what was stored, mapped, as a
    /// restart does: the index is written to a temporary file beside `path`
    /// (`.<name>.<pid>.<random>`, a name the store's sweep of dead writers' files
    /// knows), synced, checked and renamed over `path`. The in-memory parts are freed
    /// before the file is opened. Each field's postings are made in passes of at most
    /// `budget` bytes.
    pub(super) fn store_spilled(
        self,
        spilled: [SpilledDocuments; 4],
        path: &std::path::Path,
        budget: usize,
    ) -> Result<RankedIndex, DecodeError> {
        let io = |e: std::io::Error| DecodeError::Io(e.to_string());
        let mut snap = self.snapshot_of();
        let head = self.head;
        drop(self);
        for (i, d) in [0, 1, 2, 4].into_iter().zip(spilled) {
            snap.fields[i] = FieldPart::Spilled(Arc::new(d), budget);
        }
        let tmp = temp_beside(path);
        // Removed on every way out but the rename, a panic included.
        struct Unfinished<'a>(&'a std::path::Path);
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        let unfinished = Unfinished(&tmp);
        let stored = (|| {
            let mut f = std::fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io)?;
            // Held while it is written: the store's sweep removes only a temporary
            // nobody holds (its writer died), never one being written.
            let _ = f.try_lock();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            snap.write(&mut w).map_err(io)?;
            w.flush().map_err(io)?;
            drop(w);
            drop(snap);
            f.sync_all().map_err(io)?;
            let ix = RankedIndex::open(&f)?;
            if ix.head != head {
                return Err(DecodeError::Malformed("another head than the build's"));
            }
            std::fs::rename(&tmp, path).map_err(io)?;
            if let Some(dir) = path.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(ix)
        })();
        if stored.is_ok() {
            std::mem::forget(unfinished);
        }
        stored
    }

    /// Give up the pending snapshot: it will not be moved onto (its write failed).
    pub fn forget_snapshot(&mut self) {
        for f in self.fields_mut() {
            f.unmark();
        }
    }

    /// The index as bytes (see the module's documentation for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.snapshot_of()
            .write(&mut out)
            .expect("an index too large for the stored format");
        out.into_inner()
    }

    /// An index from bytes [`RankedIndex::to_bytes`] wrote, every part checked and
    /// decoded onto the heap.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_parsed(parse(Source::Bytes(bytes), true)?)
    }

    /// The index stored in `file`, mapped: every part checked, the terms and fields
    /// read in place.
    pub fn open(file: &std::fs::File) -> Result<Self, DecodeError> {
        let map = Mapped::new(file).map_err(|e| DecodeError::Io(e.to_string()))?;
        Self::from_parsed(parse(Source::Mapped(&map), true)?)
    }

    fn from_parsed(p: Parsed) -> Result<Self, DecodeError> {
        let dict = Dict::from_base(p.terms, &p.used);
        let [body, path, defs, msgs, comments] = p.fields;
        Ok(Self {
            head: p.head,
            dict,
            slot_of: p.slot_of,
            live: p.paths.len() - p.free.len(),
            roles: p
                .paths
                .iter()
                .map(|p| {
                    p.as_deref()
                        .map_or(super::role::Role::Other, super::role::role)
                })
                .collect(),
            paths: p.paths,
            blobs: p.blobs,
            free: p.free,
            body,
            path,
            defs,
            msgs,
            comments,
            history: p.history.unwrap_or_default(),
            history_cap: MAX_HISTORY_COMMITS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranked::Weights;
    use crate::ranked::tests::{commit, delete};
    use git2::Repository;

    fn sample() -> (tempfile::TempDir, Repository, RankedIndex) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = commit(
            &repo,
            None,
            &[
                (
                    "src/retry/backoff.rs",
                    "/// Delay before the next attempt.\npub fn compute_backoff(attempt: u32) -> u64 { 100 }\n",
                ),
                (
                    "src/auth/token.rs",
                    "pub fn verify_token(token: &str) -> bool { true }\n",
                ),
                ("docs/old.md", "# Zeppelin notes\n"),
                ("README.md", "# Demo\n"),
            ],
            "Start the demo",
        );
        let b = commit(
            &repo,
            Some(a),
            &[(
                "src/auth/token.rs",
                "pub fn verify_token(token: &str) -> bool { check(token) }\n",
            )],
            "Check tokens against the stored hash",
        );
        let mut ix = RankedIndex::build(&repo, b).unwrap();
        // A removed file leaves a free slot behind, which must survive the round trip.
        let c = delete(&repo, b, "docs/old.md", "Drop the zeppelin notes");
        ix.advance(&repo, c).unwrap();
        (dir, repo, ix)
    }

    fn answers(ix: &RankedIndex) -> Vec<Vec<(String, u32)>> {
        [
            "retry backoff delay",
            "verify stored hash tokens",
            "zeppelin",
            "demo start",
        ]
        .iter()
        .map(|q| {
            ix.rank(q, 10, &Weights::default(), &|_| true)
                .into_iter()
                .map(|f| (f.path, f.score.to_bits()))
                .collect()
        })
        .collect()
    }

    #[test]
    fn an_index_read_back_answers_exactly_as_the_one_written() {
        let (_dir, repo, ix) = sample();
        let bytes = ix.to_bytes();
        let back = RankedIndex::from_bytes(&bytes).unwrap();
        assert_eq!(stored_head(&bytes), Some(ix.head()));
        assert_eq!(back.head(), ix.head());
        assert_eq!(back.len(), ix.len());
        assert_eq!(back.free, ix.free);
        assert_eq!(answers(&back), answers(&ix));
        assert!(!answers(&ix)[1].is_empty());
        assert_eq!(back.to_bytes(), bytes, "written again, the same bytes");
        for slot in 0..ix.paths.len() as u32 {
            assert_eq!(back.msgs.terms_of(slot), ix.msgs.terms_of(slot));
            assert_eq!(back.comments.terms_of(slot), ix.comments.terms_of(slot));
        }
        for oid in ix.history.kept.iter() {
            assert!(back.includes_commit(*oid));
        }
        // Both move on alike.
        let (mut a, mut b) = (ix, back);
        let next = commit(
            &repo,
            Some(a.head()),
            &[("src/new.rs", "fn gyroscope_calibration() {}\n")],
            "Calibrate the gyroscope",
        );
        a.advance(&repo, next).unwrap();
        b.advance(&repo, next).unwrap();
        assert_eq!(answers(&a), answers(&b));
        assert_eq!(
            a.rank("gyroscope", 1, &Weights::default(), &|_| true)[0].path,
            "src/new.rs"
        );
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    // A head moved to another branch and back names its commits twice in the history's
    // order; storing them twice made the copy unreadable.
    #[test]
    fn a_commit_withdrawn_and_brought_back_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(&repo, None, &[("a.py", "x = 1\n")], "Start");
        let left = commit(
            &repo,
            Some(base),
            &[("a.py", "x = 2\n")],
            "Tune the zeppelin",
        );
        let right = commit(&repo, Some(base), &[("b.py", "y = 2\n")], "Calibrate");
        let mut ix = RankedIndex::build(&repo, left).unwrap();
        ix.advance(&repo, right).unwrap();
        ix.advance(&repo, left).unwrap();
        let bytes = ix.to_bytes();
        let back = RankedIndex::from_bytes(&bytes).unwrap();
        assert_eq!(answers(&back), answers(&ix));
        assert!(back.includes_commit(left));
        assert_eq!(back.to_bytes(), bytes);
    }

    // A term id the dictionary has freed, used by a document, would hand that
    // document's counts to whichever new term gets the id next.
    #[test]
    fn documents_naming_a_free_term_id_are_refused() {
        let mut b = Vec::new();
        put_document(&mut b, &[(0, 2), (2, 1)]);
        assert_eq!(
            Reader(&b).document(&[true, false, true]).unwrap(),
            [(0, 2), (2, 1)]
        );
        let mut b = Vec::new();
        put_document(&mut b, &[(0, 2), (1, 1)]);
        assert!(Reader(&b).document(&[true, false, true]).is_err());
        assert!(Reader(&b).document(&[true]).is_err());
    }

    #[test]
    fn a_cut_or_damaged_file_is_refused() {
        let (_dir, _repo, ix) = sample();
        let bytes = ix.to_bytes();
        for n in 0..bytes.len() {
            assert!(RankedIndex::from_bytes(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            RankedIndex::from_bytes(&longer),
            Err(DecodeError::Length { .. })
        ));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(RankedIndex::from_bytes(&b).is_err(), "byte {i} flipped");
        }
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(
            RankedIndex::from_bytes(&other).err(),
            Some(DecodeError::Version(FORMAT_VERSION + 1))
        );
    }

    // Contents damaged before the checksum was taken (a bug, or a file made by hand)
    // must be refused or read, never panic.
    #[test]
    fn malformed_contents_with_a_valid_checksum_never_panic() {
        let (_dir, _repo, ix) = sample();
        let bytes = ix.to_bytes();
        for i in CHECKED_FROM..bytes.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let crc = crc32fast::hash(&b[CHECKED_FROM..]);
                b[12..16].copy_from_slice(&crc.to_le_bytes());
                let _ = RankedIndex::from_bytes(&b);
            }
        }
    }

    /// Store `ix` at `path` as the store does: a snapshot, written to a new file,
    /// checked and mapped, renamed over `path`; `between` runs after the snapshot is
    /// taken and before the index moves onto the file. Returns whether it did.
    fn store_as_the_store_does(
        ix: &mut RankedIndex,
        path: &std::path::Path,
        between: &mut dyn FnMut(&mut RankedIndex),
    ) -> bool {
        let snap = ix.snapshot();
        between(ix);
        let tmp = path.with_extension(format!("tmp{}", rand_suffix()));
        let mut f = std::fs::File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .unwrap();
        snap.write(&mut std::io::BufWriter::new(&mut f)).unwrap();
        f.sync_all().unwrap();
        let stored = StoredBase::open(&f, &snap).unwrap();
        std::fs::rename(&tmp, path).unwrap();
        ix.rebase(stored)
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Every file the query matches, with its score, by path: independent of slots.
    fn all_answers(ix: &RankedIndex, queries: &[&str]) -> Vec<Vec<(String, u32)>> {
        queries
            .iter()
            .map(|q| {
                let mut v: Vec<(String, u32)> = ix
                    .rank(q, usize::MAX, &Weights::default(), &|_| true)
                    .into_iter()
                    .map(|f| (f.path, f.score.to_bits()))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }

    fn open(path: &std::path::Path) -> RankedIndex {
        RankedIndex::open(&std::fs::File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn a_mapped_index_answers_exactly_as_the_built_one() {
        let (dir, repo, ix) = sample();
        let path = dir.path().join("ranked.bin");
        std::fs::write(&path, ix.to_bytes()).unwrap();
        let mapped = open(&path);
        assert_eq!(answers(&mapped), answers(&ix));
        assert_eq!(mapped.free, ix.free);
        assert_eq!(mapped.to_bytes(), ix.to_bytes());
        let heap = mapped.heap_bytes();
        if cfg!(target_endian = "little") {
            assert!(heap.mapped > 0, "{heap:?}");
        }
        // Both move on alike.
        let (mut a, mut b) = (ix, mapped);
        let next = commit(
            &repo,
            Some(a.head()),
            &[("src/new.rs", "fn gyroscope_calibration() {}\n")],
            "Calibrate the gyroscope",
        );
        a.advance(&repo, next).unwrap();
        b.advance(&repo, next).unwrap();
        assert_eq!(answers(&a), answers(&b));
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    // What the store does over a server's life: load the stored file mapped, take
    // commits, store a snapshot while more commits land, move onto the stored file, and
    // so on. At each step the index must answer as one built afresh at its head.
    #[test]
    fn a_mapped_index_advanced_by_commits_answers_as_one_built_at_the_head() {
        let (dir, repo, ix) = sample();
        let path = dir.path().join("ranked.bin");
        std::fs::write(&path, ix.to_bytes()).unwrap();
        let mut ix = open(&path);
        let queries = [
            "retry backoff delay",
            "verify stored hash tokens",
            "gyroscope calibration",
            "throttle request rate",
            "zeppelin demo",
            "kestrel",
        ];
        let check = |ix: &RankedIndex| {
            let fresh = RankedIndex::build(&repo, ix.head()).unwrap();
            assert_eq!(all_answers(ix, &queries), all_answers(&fresh, &queries));
            assert_eq!(ix.len(), fresh.len());
        };
        let mut head = ix.head();
        type Step<'a> = (Vec<(&'a str, String)>, Option<&'a str>, &'a str);
        let steps: Vec<Step<'_>> = vec![
            (
                vec![("src/gyro.rs", "fn gyroscope_calibration() {}\n".into())],
                None,
                "Calibrate the gyroscope",
            ),
            (
                vec![(
                    "src/retry/backoff.rs",
                    "/// Throttle the request rate.\npub fn throttle() {}\n".into(),
                )],
                Some("README.md"),
                "Throttle instead of backing off",
            ),
            (
                vec![("docs/kestrel.md", "# Kestrel kestrel notes\n".into())],
                Some("src/gyro.rs"),
                "Kestrel notes",
            ),
        ];
        for (i, (files, removed, msg)) in steps.into_iter().enumerate() {
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
            head = commit(&repo, Some(head), &files, msg);
            if let Some(r) = removed {
                head = delete(&repo, head, r, &format!("Drop {r}"));
            }
            ix.advance(&repo, head).unwrap();
            check(&ix);
            // Stored, with a commit landing between the snapshot and the move onto the
            // stored file.
            let next = commit(
                &repo,
                Some(head),
                &[(
                    "src/auth/token.rs",
                    &format!("pub fn verify_token() {{ step({i}) }}\n"),
                )],
                &format!("Step {i}"),
            );
            assert!(store_as_the_store_does(&mut ix, &path, &mut |ix| {
                ix.advance(&repo, next).unwrap();
            }));
            head = next;
            check(&ix);
            if cfg!(target_endian = "little") {
                assert!(ix.heap_bytes().mapped > 0);
            }
            // And the stored file, loaded, is the index at the snapshot's head.
            let loaded = open(&path);
            assert_ne!(loaded.head(), head);
            let mut loaded = loaded;
            loaded.advance(&repo, head).unwrap();
            assert_eq!(all_answers(&loaded, &queries), all_answers(&ix, &queries));
        }
    }

    // Another process's save renames a new file over the one this process has mapped:
    // the old file lives on under the mapping, unchanged, and this process's answers
    // with it.
    #[test]
    fn a_stored_file_replaced_while_mapped_keeps_the_answers_right() {
        let (dir, repo, ix) = sample();
        let path = dir.path().join("ranked.bin");
        std::fs::write(&path, ix.to_bytes()).unwrap();
        let mut mine = open(&path);
        let before = answers(&mine);
        // The other process: its own index at a later head, stored over the same path.
        let mut theirs = open(&path);
        let next = commit(
            &repo,
            Some(theirs.head()),
            &[("src/retry/backoff.rs", "fn kestrel() {}\n")],
            "Replace the backoff with a kestrel",
        );
        theirs.advance(&repo, next).unwrap();
        assert!(store_as_the_store_does(&mut theirs, &path, &mut |_| {}));
        assert_eq!(open(&path).head(), next);
        assert_eq!(answers(&mine), before);
        assert_eq!(mine.head(), ix.head());
        // This process moves on to the same head, stores its own copy over theirs, and
        // moves onto it: both agree.
        mine.advance(&repo, next).unwrap();
        assert!(store_as_the_store_does(&mut mine, &path, &mut |_| {}));
        assert_eq!(answers(&mine), answers(&theirs));
        assert_eq!(answers(&open(&path)), answers(&theirs));
        assert_eq!(
            theirs.rank("kestrel", 1, &Weights::default(), &|_| true)[0].path,
            "src/retry/backoff.rs"
        );
    }

    // A sweep between a snapshot and the move onto its stored file may have forgotten
    // terms the file holds: the index stays as it is (and right) rather than move.
    #[test]
    fn a_sweep_after_the_snapshot_keeps_the_index_off_the_stored_file() {
        let (dir, repo, mut ix) = sample();
        let path = dir.path().join("ranked.bin");
        let before = answers(&ix);
        let moved = store_as_the_store_does(&mut ix, &path, &mut |ix| {
            ix.dict.sweep(&|_| true);
        });
        assert!(!moved);
        assert_eq!(answers(&ix), before);
        assert!(ix.body.heap_bytes() > 0 && !ix.body.is_marked());
        let _ = repo;
    }

    // Terms forgotten while the terms are read from a mapped file (marked removed
    // there, their ids handed out again to new terms), then stored and moved onto: the
    // index answers as one built at the head, before and after.
    #[test]
    fn terms_forgotten_from_a_mapped_index_stay_forgotten_through_a_store() {
        let (dir, repo, ix) = sample();
        let path = dir.path().join("ranked.bin");
        std::fs::write(&path, ix.to_bytes()).unwrap();
        let mut ix = open(&path);
        let words = |prefix: &str, n: usize| {
            (0..n)
                .map(|i| {
                    // Letters only, so that no term splits or stems into another.
                    let mut w = String::from(prefix);
                    let mut i = i;
                    for _ in 0..4 {
                        w.push(b"bcdfghjklmnpqrstvwxz"[i % 20] as char);
                        i /= 20;
                    }
                    w
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let old_words = words("qo", 1100);
        let mut head = commit(
            &repo,
            Some(ix.head()),
            &[("big.txt", &old_words)],
            "Add words",
        );
        ix.advance(&repo, head).unwrap();
        assert!(ix.store_at(&path).unwrap());
        let before = ix.dict.len();
        head = commit(
            &repo,
            Some(head),
            &[("big.txt", &words("yu", 3500))],
            "Other words",
        );
        ix.advance(&repo, head).unwrap();
        assert!(ix.dict.len() < before + 3500, "the old words were swept");
        let queries = ["qobbbb qocbbb", "yubbbb", "retry backoff", "verify token"];
        let fresh = RankedIndex::build(&repo, head).unwrap();
        assert_eq!(all_answers(&ix, &queries), all_answers(&fresh, &queries));
        assert!(all_answers(&ix, &queries)[0].is_empty());
        assert!(ix.store_at(&path).unwrap());
        assert_eq!(all_answers(&ix, &queries), all_answers(&fresh, &queries));
        let loaded = open(&path);
        assert_eq!(
            all_answers(&loaded, &queries),
            all_answers(&fresh, &queries)
        );
        assert_eq!(loaded.dict.len(), ix.dict.len());
    }
}

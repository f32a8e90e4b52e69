//! The stored form of a line index: a segment, one immutable file holding file contents
//! and their trigram postings, mapped into memory and searched in place.
//!
//! A *base* segment holds every text file of one head. A *delta* holds what one or more
//! commits changed on top of its parent head: the changed files' new contents and
//! postings, and the set of paths it removes from the segments below it (every path it
//! changed, deleted or rewrote). An index is a base and a chain of deltas, each naming
//! the head it was made at and its parent's head.
//!
//! # Format, version 1 (all integers little-endian)
//! ```text
//! header, 256 bytes
//!     0  magic "SRMLSEG\0"          8  version u32       12  kind u32 (0 base, 1 delta)
//!    16  file length u64           24  block size u32    28  zero
//!    32  head, 40 bytes            72  parent head, 40 bytes (zeros in a base); each
//!        a commit id in hex, padded with NULs
//!   112  files u64                120  removed paths u64  128  trigrams u64
//!   136..200  section offsets u64: files, removed, strings, keys, offsets, postings,
//!             contents, sums (each section ends where the next begins)
//!   200  crc32 of the sums table  204  crc32 of the header but these 4 bytes
//!   208..256 zero
//! files     32 bytes each, sorted by path: path offset u64 (into strings),
//!           content offset u64 (into contents), content length u64, path length u32, 0
//! removed   16 bytes each, sorted: path offset u64 (into strings), length u32, 0
//! strings   the paths' bytes (UTF-8)
//! keys      u32 each: the trigrams, sorted
//! offsets   u64 each, one more than keys: where each trigram's list starts in postings
//! postings  each list a delta- and varint-encoded ascending list of file numbers
//! contents  the files' bytes
//! sums      crc32 of each block of `block size` bytes from offset 256 up to `sums`
//! ```
//!
//! # Checks
//! On open: the magic, version and kind; the file's length against the header's; the
//! header's checksum; the sums table's checksum; then every block of the directory
//! (files, removed, strings, keys, offsets) against its sum, and the directory's shape
//! (sorted, in bounds, UTF-8 paths). Those are small next to the contents, so checking
//! them costs little. The postings and contents, the bulk, are checked lazily: a block is
//! checked against its sum the first time any part of it is used, and remembered as
//! good. A block that fails marks the segment damaged and is never used: a damaged
//! posting list is treated as "every file may match" (a superset, so still a right
//! answer), and damaged contents read as empty, which the store notices (the segment says
//! it is [`damaged`](SegmentData::is_damaged)) and answers again from a rebuilt index.
//! So a flipped byte anywhere costs a rebuild, never a wrong answer.

use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::mapped::Mapping;

/// The first 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"SRMLSEG\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 256;
/// Bytes covered by one checksum.
pub const BLOCK: usize = 64 * 1024;

const FILE_REC: usize = 32;
const REMOVED_REC: usize = 16;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every file of its head.
    Base,
    /// The changes from its parent head to its head.
    Delta,
}

/// Where each section of a segment lies, from its header.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Base or delta.
    pub kind: Kind,
    /// The head it was made at.
    pub head: String,
    /// A delta's parent head; empty for a base.
    pub parent: String,
    /// Files it holds.
    pub files: usize,
    /// Paths it removes from the segments below.
    pub removed: usize,
    /// Distinct trigrams.
    pub keys: usize,
    files_off: usize,
    removed_off: usize,
    strings_off: usize,
    keys_off: usize,
    offsets_off: usize,
    /// Byte range of the posting lists in the file.
    pub postings: Range<usize>,
    /// Byte range of the file contents in the file.
    pub contents: Range<usize>,
    sums_off: usize,
    /// The file's length.
    pub len: usize,
}

/// The bytes of a segment: mapped from its file, or on the heap when it could not be
/// stored.
enum Bytes {
    Mapped(Arc<Mapping>),
    Heap(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m.bytes(),
            Bytes::Heap(v) => v,
        }
    }
}

/// The bytes of an open segment, its layout, and which of its blocks are known good.
pub struct SegmentData {
    bytes: Bytes,
    layout: Layout,
    /// One bit per block: set once the block matched its sum.
    checked: Vec<AtomicU64>,
    damaged: AtomicBool,
}

impl std::fmt::Debug for SegmentData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentData")
            .field("layout", &self.layout)
            .field("mapped", &matches!(self.bytes, Bytes::Mapped(_)))
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Why a segment cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("index segment unusable: {0}")]
pub struct Unusable(pub String);

fn bad(why: &str) -> Unusable {
    Unusable(why.to_string())
}

/// A head as stored: up to 40 bytes of UTF-8 without NUL, padded with NULs.
fn name(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[end..].iter().any(|&b| b != 0) {
        return None;
    }
    std::str::from_utf8(&field[..end]).ok().map(str::to_string)
}

/// The checksum of a header: every byte but the checksum's own four.
fn header_sum(h: &[u8]) -> u32 {
    let mut s = crc32fast::Hasher::new();
    s.update(&h[..204]);
    s.update(&h[208..HEADER_LEN]);
    s.finalize()
}

/// Read and check the header of `b`; the layout it describes.
fn layout(b: &[u8]) -> Result<Layout, Unusable> {
    if b.len() < HEADER_LEN {
        return Err(bad("shorter than its header"));
    }
    if &b[..8] != MAGIC {
        return Err(bad("not a segment (wrong magic)"));
    }
    if u32_at(b, 8) != VERSION {
        return Err(bad("another format version"));
    }
    if header_sum(&b[..HEADER_LEN]) != u32_at(b, 204) {
        return Err(bad("header checksum mismatch"));
    }
    let kind = match u32_at(b, 12) {
        0 => Kind::Base,
        1 => Kind::Delta,
        _ => return Err(bad("unknown kind")),
    };
    let len = usize::try_from(u64_at(b, 16)).map_err(|_| bad("length"))?;
    if len != b.len() {
        return Err(bad("length differs from its header's (truncated?)"));
    }
    if u32_at(b, 24) as usize != BLOCK {
        return Err(bad("another block size"));
    }
    let head = name(&b[32..72])
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("head"))?;
    let parent = match kind {
        Kind::Base => String::new(),
        Kind::Delta => name(&b[72..112])
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("parent head"))?,
    };
    let n = |at| usize::try_from(u64_at(b, at)).map_err(|_| bad("count"));
    let (files, removed, keys) = (n(112)?, n(120)?, n(128)?);
    let offs: Vec<usize> = (0..8).map(|i| n(136 + i * 8)).collect::<Result<_, _>>()?;
    let [
        files_off,
        removed_off,
        strings_off,
        keys_off,
        offsets_off,
        postings_off,
        contents_off,
        sums_off,
    ] = offs[..]
    else {
        return Err(bad("offsets"));
    };
    let ordered = HEADER_LEN == files_off
        && [
            files_off,
            removed_off,
            strings_off,
            keys_off,
            offsets_off,
            postings_off,
            contents_off,
            sums_off,
        ]
        .windows(2)
        .all(|w| w[0] <= w[1]);
    let sized = ordered
        && files.checked_mul(FILE_REC) == Some(removed_off - files_off)
        && removed.checked_mul(REMOVED_REC) == Some(strings_off - removed_off)
        && keys.checked_mul(4) == Some(offsets_off - keys_off)
        && keys
            .checked_add(1)
            .and_then(|k| k.checked_mul(8))
            .is_some_and(|s| s == postings_off - offsets_off)
        && sums_off
            .checked_add((sums_off - HEADER_LEN).div_ceil(BLOCK) * 4)
            .is_some_and(|end| end == len);
    if !sized {
        return Err(bad("sections do not fit together"));
    }
    if crc32fast::hash(&b[sums_off..len]) != u32_at(b, 200) {
        return Err(bad("checksum table mismatch"));
    }
    Ok(Layout {
        kind,
        head,
        parent,
        files,
        removed,
        keys,
        files_off,
        removed_off,
        strings_off,
        keys_off,
        offsets_off,
        postings: postings_off..contents_off,
        contents: contents_off..sums_off,
        sums_off,
        len,
    })
}

impl SegmentData {
    /// Open the segment file at `path`, checking it as the module says.
    pub fn open(path: &Path) -> Result<Self, Unusable> {
        let file = std::fs::File::open(path).map_err(|e| Unusable(e.to_string()))?;
        // Segment files are written once, under a temporary name, and renamed into
        // place; this program never writes to, truncates or extends one after that
        // (they are removed by unlinking, which leaves a mapping intact): what
        // `Mapping` assumes. A file truncated before it was opened is refused here, as
        // its length is checked against the header.
        let map = Mapping::new(&file).map_err(|e| Unusable(e.to_string()))?;
        Self::new(Bytes::Mapped(map), false)
    }

    /// A segment held on the heap; `trusted` when this process just wrote `bytes` (its
    /// blocks need no checking).
    pub fn from_vec(bytes: Vec<u8>, trusted: bool) -> Result<Self, Unusable> {
        Self::new(Bytes::Heap(bytes), trusted)
    }

    fn new(bytes: Bytes, trusted: bool) -> Result<Self, Unusable> {
        let layout = layout(&bytes)?;
        let blocks = (layout.sums_off - HEADER_LEN).div_ceil(BLOCK);
        let fill = if trusted { u64::MAX } else { 0 };
        let data = Self {
            checked: (0..blocks.div_ceil(64))
                .map(|_| AtomicU64::new(fill))
                .collect(),
            bytes,
            layout,
            damaged: AtomicBool::new(false),
        };
        let dir = data.layout.files_off..data.layout.postings.start;
        if data.checked(dir).is_none() {
            return Err(bad("directory checksum mismatch"));
        }
        data.check_shape()?;
        Ok(data)
    }

    /// The directory's shape: sorted, in bounds, UTF-8.
    fn check_shape(&self) -> Result<(), Unusable> {
        let l = &self.layout;
        let strings = l.keys_off - l.strings_off;
        let mut last: Option<&[u8]> = None;
        for i in 0..l.files {
            let r = l.files_off + i * FILE_REC;
            let (po, co, cl, pl) = (
                u64_at(&self.bytes, r),
                u64_at(&self.bytes, r + 8),
                u64_at(&self.bytes, r + 16),
                u64::from(u32_at(&self.bytes, r + 24)),
            );
            let fits = |off: u64, len: u64, size: usize| {
                off.checked_add(len).is_some_and(|e| e <= size as u64)
            };
            if !fits(po, pl, strings) || !fits(co, cl, l.contents.len()) {
                return Err(bad("a file lies out of bounds"));
            }
            let path = &self.bytes[l.strings_off + po as usize..][..pl as usize];
            if std::str::from_utf8(path).is_err() || last.is_some_and(|p| p >= path) {
                return Err(bad("file paths not sorted UTF-8"));
            }
            last = Some(path);
        }
        let mut last: Option<&[u8]> = None;
        for i in 0..l.removed {
            let r = l.removed_off + i * REMOVED_REC;
            let (po, pl) = (
                u64_at(&self.bytes, r),
                u64::from(u32_at(&self.bytes, r + 8)),
            );
            if po.checked_add(pl).is_none_or(|e| e > strings as u64) {
                return Err(bad("a removed path lies out of bounds"));
            }
            let path = &self.bytes[l.strings_off + po as usize..][..pl as usize];
            if std::str::from_utf8(path).is_err() || last.is_some_and(|p| p >= path) {
                return Err(bad("removed paths not sorted UTF-8"));
            }
            last = Some(path);
        }
        let mut prev_key = None;
        for i in 0..l.keys {
            let k = u32_at(&self.bytes, l.keys_off + i * 4);
            if prev_key.is_some_and(|p| p >= k) {
                return Err(bad("trigrams not sorted"));
            }
            prev_key = Some(k);
        }
        let mut prev = 0;
        for i in 0..=l.keys {
            let o = u64_at(&self.bytes, l.offsets_off + i * 8);
            if o < prev || o > l.postings.len() as u64 {
                return Err(bad("posting offsets out of order"));
            }
            prev = o;
        }
        if prev != l.postings.len() as u64 {
            return Err(bad("posting offsets do not end with the postings"));
        }
        Ok(())
    }

    /// Its layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether this segment lives on the heap rather than in a mapped file.
    pub fn on_heap(&self) -> bool {
        matches!(self.bytes, Bytes::Heap(_))
    }

    /// Heap bytes this segment holds (its bytes when on the heap, and its block bitmap).
    pub fn heap_bytes(&self) -> usize {
        let own = match &self.bytes {
            Bytes::Heap(v) => v.capacity(),
            Bytes::Mapped(_) => 0,
        };
        own + self.checked.len() * 8 + std::mem::size_of::<Self>()
    }

    /// Whether a block failed its check.
    pub fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::SeqCst)
    }

    /// Bytes `r` of the file once every block they touch has matched its sum; `None`
    /// (and the segment marked damaged) when one does not.
    pub fn checked(&self, r: Range<usize>) -> Option<&[u8]> {
        if r.start >= r.end {
            return Some(&[]);
        }
        let first = (r.start - HEADER_LEN) / BLOCK;
        let last = (r.end - 1 - HEADER_LEN) / BLOCK;
        for block in first..=last {
            let (word, bit) = (&self.checked[block / 64], 1u64 << (block % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let start = HEADER_LEN + block * BLOCK;
            let end = (start + BLOCK).min(self.layout.sums_off);
            let want = u32_at(&self.bytes, self.layout.sums_off + block * 4);
            if crc32fast::hash(&self.bytes[start..end]) != want {
                self.damaged.store(true, Ordering::SeqCst);
                return None;
            }
            word.fetch_or(bit, Ordering::AcqRel);
        }
        Some(&self.bytes[r])
    }

    /// File `i`'s path.
    pub fn path(&self, i: usize) -> &str {
        let l = &self.layout;
        let r = l.files_off + i * FILE_REC;
        let (po, pl) = (
            u64_at(&self.bytes, r) as usize,
            u32_at(&self.bytes, r + 24) as usize,
        );
        // Checked UTF-8 on open; a failure here cannot happen short of the mapping
        // changing under us, and then an empty path matches nothing.
        std::str::from_utf8(&self.bytes[l.strings_off + po..][..pl]).unwrap_or("")
    }

    /// File `i`'s contents as a byte range of the segment (unchecked: see
    /// [`SegmentData::checked`]).
    pub fn content_range(&self, i: usize) -> Range<usize> {
        let l = &self.layout;
        let r = l.files_off + i * FILE_REC;
        let start = l.contents.start + u64_at(&self.bytes, r + 8) as usize;
        start..start + u64_at(&self.bytes, r + 16) as usize
    }

    /// Removed path `i`.
    pub fn removed(&self, i: usize) -> &str {
        let l = &self.layout;
        let r = l.removed_off + i * REMOVED_REC;
        let (po, pl) = (
            u64_at(&self.bytes, r) as usize,
            u32_at(&self.bytes, r + 8) as usize,
        );
        std::str::from_utf8(&self.bytes[l.strings_off + po..][..pl]).unwrap_or("")
    }

    /// The encoded list of `trigram`: empty when no file has it; `None` when the block
    /// holding it is damaged (then any file may match).
    pub fn list(&self, trigram: u32) -> Option<&[u8]> {
        self.checked(self.list_range(trigram))
    }

    /// How long `trigram`'s list is, in bytes, without reading it.
    pub fn list_len(&self, trigram: u32) -> usize {
        self.list_range(trigram).len()
    }

    /// Where `trigram`'s list lies in the file (empty when no file has it).
    pub fn list_range(&self, trigram: u32) -> Range<usize> {
        let l = &self.layout;
        let (mut lo, mut hi) = (0, l.keys);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match u32_at(&self.bytes, l.keys_off + mid * 4).cmp(&trigram) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let a = u64_at(&self.bytes, l.offsets_off + mid * 8) as usize;
                    let b = u64_at(&self.bytes, l.offsets_off + mid * 8 + 8) as usize;
                    return l.postings.start + a..l.postings.start + b;
                }
            }
        }
        l.postings.start..l.postings.start
    }
}

/// Read the layout of the segment file at `path` (for tools and tests that look inside
/// one), checking its header.
pub fn inspect(path: &Path) -> Result<Layout, Unusable> {
    let bytes = std::fs::read(path).map_err(|e| Unusable(e.to_string()))?;
    layout(&bytes)
}

/// What a segment is written from.
pub struct Contents<'a> {
    /// Base or delta.
    pub kind: Kind,
    /// The head it is made at (a commit id: at most 40 bytes).
    pub head: &'a str,
    /// A delta's parent head; ignored for a base.
    pub parent: &'a str,
    /// Paths and contents, sorted by path, no path twice.
    pub files: Vec<(&'a str, &'a [u8])>,
    /// Paths removed from the segments below, sorted, no path twice.
    pub removed: Vec<&'a str>,
    /// Trigrams, sorted.
    pub keys: &'a [u32],
    /// Where each trigram's list starts in `postings`; one more entry than `keys`.
    pub offsets: &'a [u64],
    /// The encoded lists.
    pub postings: &'a [u8],
}

/// A writer that sums each block of what passes through it.
struct Summing<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    in_block: usize,
    sums: Vec<u32>,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.in_block);
        let n = self.inner.write(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        self.in_block += n;
        if self.in_block == BLOCK {
            let h = std::mem::take(&mut self.hasher);
            self.sums.push(h.finalize());
            self.in_block = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn head_bytes(head: &str) -> io::Result<[u8; 40]> {
    let b = head.as_bytes();
    if b.is_empty() || b.len() > 40 || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a segment's head must be 1 to 40 bytes without NUL",
        ));
    }
    let mut out = [0; 40];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// Write a segment of `c` to `w`, which starts empty at position 0.
pub fn write<W: Write + Seek>(w: W, c: &Contents<'_>) -> io::Result<W> {
    let head = head_bytes(c.head)?;
    let parent = match c.kind {
        Kind::Base => [0; 40],
        Kind::Delta => head_bytes(c.parent)?,
    };
    let strings_len: usize = c.files.iter().map(|f| f.0.len()).sum::<usize>()
        + c.removed.iter().map(|p| p.len()).sum::<usize>();
    let contents_len: usize = c.files.iter().map(|f| f.1.len()).sum();
    let files_off = HEADER_LEN;
    let removed_off = files_off + c.files.len() * FILE_REC;
    let strings_off = removed_off + c.removed.len() * REMOVED_REC;
    let keys_off = strings_off + strings_len;
    let offsets_off = keys_off + c.keys.len() * 4;
    let postings_off = offsets_off + c.offsets.len() * 8;
    let contents_off = postings_off + c.postings.len();
    let sums_off = contents_off + contents_len;
    let blocks = (sums_off - HEADER_LEN).div_ceil(BLOCK);
    let len = sums_off + blocks * 4;
    if c.offsets.len() != c.keys.len() + 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "offsets must have one more entry than keys",
        ));
    }

    let mut w = w;
    w.write_all(&[0; HEADER_LEN])?;
    let mut s = Summing {
        inner: w,
        hasher: crc32fast::Hasher::new(),
        in_block: 0,
        sums: Vec::with_capacity(blocks),
    };
    let (mut path_at, mut content_at) = (0u64, 0u64);
    for (path, content) in &c.files {
        s.write_all(&path_at.to_le_bytes())?;
        s.write_all(&content_at.to_le_bytes())?;
        s.write_all(&(content.len() as u64).to_le_bytes())?;
        s.write_all(&(path.len() as u32).to_le_bytes())?;
        s.write_all(&[0; 4])?;
        path_at += path.len() as u64;
        content_at += content.len() as u64;
    }
    for path in &c.removed {
        s.write_all(&path_at.to_le_bytes())?;
        s.write_all(&(path.len() as u32).to_le_bytes())?;
        s.write_all(&[0; 4])?;
        path_at += path.len() as u64;
    }
    for (path, _) in &c.files {
        s.write_all(path.as_bytes())?;
    }
    for path in &c.removed {
        s.write_all(path.as_bytes())?;
    }
    for k in c.keys {
        s.write_all(&k.to_le_bytes())?;
    }
    for o in c.offsets {
        s.write_all(&o.to_le_bytes())?;
    }
    s.write_all(c.postings)?;
    for (_, content) in &c.files {
        s.write_all(content)?;
    }
    if s.in_block > 0 {
        let h = std::mem::take(&mut s.hasher);
        s.sums.push(h.finalize());
    }
    let mut w = s.inner;
    let mut sums = Vec::with_capacity(s.sums.len() * 4);
    for sum in &s.sums {
        sums.extend_from_slice(&sum.to_le_bytes());
    }
    w.write_all(&sums)?;

    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(c.kind as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    h[24..28].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    h[32..72].copy_from_slice(&head);
    h[72..112].copy_from_slice(&parent);
    h[112..120].copy_from_slice(&(c.files.len() as u64).to_le_bytes());
    h[120..128].copy_from_slice(&(c.removed.len() as u64).to_le_bytes());
    h[128..136].copy_from_slice(&(c.keys.len() as u64).to_le_bytes());
    for (i, off) in [
        files_off,
        removed_off,
        strings_off,
        keys_off,
        offsets_off,
        postings_off,
        contents_off,
        sums_off,
    ]
    .into_iter()
    .enumerate()
    {
        h[136 + i * 8..144 + i * 8].copy_from_slice(&(off as u64).to_le_bytes());
    }
    h[200..204].copy_from_slice(&crc32fast::hash(&sums).to_le_bytes());
    let sum = header_sum(&h);
    h[204..208].copy_from_slice(&sum.to_le_bytes());
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&h)?;
    w.seek(SeekFrom::End(0))?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222";

    fn sample(kind: Kind, big: usize) -> Vec<u8> {
        let big_text = vec![b'x'; big];
        let c = Contents {
            kind,
            head: H2,
            parent: H1,
            files: vec![("a.rs", b"fn a() {}\n"), ("b/c.rs", &big_text)],
            removed: vec!["a.rs", "gone.rs"],
            keys: &[7, 9],
            offsets: &[0, 1, 3],
            postings: &[0, 0, 1],
        };
        write(io::Cursor::new(Vec::new()), &c).unwrap().into_inner()
    }

    #[test]
    fn a_written_segment_reads_back() {
        let bytes = sample(Kind::Delta, 3 * BLOCK + 5);
        let s = SegmentData::from_vec(bytes, false).unwrap();
        let l = s.layout();
        assert_eq!(
            (l.kind, l.head.as_str(), l.parent.as_str()),
            (Kind::Delta, H2, H1)
        );
        assert_eq!((l.files, l.removed, l.keys), (2, 2, 2));
        assert_eq!(s.path(1), "b/c.rs");
        assert_eq!(s.removed(1), "gone.rs");
        assert_eq!(s.checked(s.content_range(0)), Some(&b"fn a() {}\n"[..]));
        assert_eq!(
            s.checked(s.content_range(1)).map(<[u8]>::len),
            Some(3 * BLOCK + 5)
        );
        assert_eq!(s.list(9), Some(&[0u8, 1][..]));
        assert_eq!(s.list(8), Some(&[][..]));
        assert_eq!(s.list_len(7), 1);
        assert!(!s.is_damaged());
    }

    #[test]
    fn a_flipped_byte_anywhere_is_caught_before_use() {
        let good = sample(Kind::Base, 2 * BLOCK);
        let l = SegmentData::from_vec(good.clone(), false).unwrap().layout;
        // Every byte of a small segment, and a sample of a larger one's contents.
        for at in (0..l.contents.start + 64).chain((l.contents.start..l.len).step_by(997)) {
            let mut bytes = good.clone();
            bytes[at] ^= 0x20;
            let Ok(s) = SegmentData::from_vec(bytes, false) else {
                continue;
            };
            let lists = [7, 9].map(|k| s.list(k).map(<[u8]>::to_vec));
            let texts = [0, 1].map(|i| s.checked(s.content_range(i)).map(<[u8]>::to_vec));
            let intact = SegmentData::from_vec(good.clone(), false).unwrap();
            let want_lists = [7, 9].map(|k| intact.list(k).map(<[u8]>::to_vec));
            let want_texts =
                [0, 1].map(|i| intact.checked(intact.content_range(i)).map(<[u8]>::to_vec));
            for (got, want) in lists
                .iter()
                .zip(&want_lists)
                .chain(texts.iter().zip(&want_texts))
            {
                assert!(got.is_none() || got == want, "byte {at}: a changed answer");
            }
            assert!(s.is_damaged(), "byte {at}: the flip went unnoticed");
        }
    }

    #[test]
    fn truncation_and_other_versions_are_refused() {
        let good = sample(Kind::Base, 10);
        for cut in [0, 8, HEADER_LEN, good.len() - 1] {
            assert!(SegmentData::from_vec(good[..cut].to_vec(), false).is_err());
        }
        let mut other = good.clone();
        other[8] = 2;
        assert!(SegmentData::from_vec(other, false).is_err());
    }
}

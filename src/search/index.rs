//! The line-search index of one repo at one head: every text file's contents and the
//! trigram posting lists that narrow a query to the files that can match before any
//! regex runs, held in [`segment`](super::segment)s: a base with every file of some
//! head, then a delta per later change, each a file mapped into memory (or, when it
//! could not be stored, a buffer on the heap) and searched in place.
//!
//! An index is an immutable value tied to one head, so a search holding it sees one
//! head and never a mix. A commit makes the next index cheaply: the segments are shared,
//! a small delta is added, and a bitmap per segment marks the files a later segment
//! replaced or removed. The heap holds only those bitmaps and a list of each segment's
//! files; the contents stay in the mapped files (the page cache, shared by every process
//! on the data directory).

use std::collections::BTreeMap;
use std::io::{self, Seek, Write};
use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::plan::{TrigramQuery, fold};
use super::segment::{self, Kind, Layout, SegmentData, Unusable};

/// One text file at a head.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Its path in the repo.
    pub path: Box<str>,
    /// Its bytes.
    pub content: Content,
}

/// A file's bytes: on the heap, or a range of a segment.
///
/// Reading a segment's bytes (through `Deref`) first checks the blocks they lie in
/// against their checksums, once per block; bytes that fail read as empty, and the
/// segment says it is damaged ([`LineIndex::damaged`]), so a caller that checks after
/// its search never keeps an answer computed from them. `len` reads no bytes.
#[derive(Clone)]
pub struct Content(Repr);

#[derive(Clone)]
enum Repr {
    Heap(Box<[u8]>),
    Mapped {
        data: Arc<SegmentData>,
        range: Range<usize>,
    },
}

impl Content {
    /// Its length in bytes (without reading them).
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Heap(b) => b.len(),
            Repr::Mapped { range, .. } => range.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Deref for Content {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Heap(b) => b,
            Repr::Mapped { data, range } => data.checked(range.clone()).unwrap_or(&[]),
        }
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Heap(b) => write!(f, "Content({} bytes on the heap)", b.len()),
            Repr::Mapped { range, .. } => write!(f, "Content({} bytes mapped)", range.len()),
        }
    }
}

impl From<Box<[u8]>> for Content {
    fn from(b: Box<[u8]>) -> Self {
        Content(Repr::Heap(b))
    }
}

impl From<Vec<u8>> for Content {
    fn from(v: Vec<u8>) -> Self {
        Content(Repr::Heap(v.into_boxed_slice()))
    }
}

impl From<&[u8]> for Content {
    fn from(b: &[u8]) -> Self {
        Content(Repr::Heap(b.into()))
    }
}

/// Posting lists of every trigram, each a delta- and varint-encoded list of file ids.
#[derive(Debug, Default)]
struct Postings {
    /// Trigrams, sorted.
    keys: Vec<u32>,
    /// Where each trigram's list starts in `data`; one more entry than `keys`.
    offsets: Vec<u64>,
    data: Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    while let Some(&b) = data.get(*pos) {
        *pos += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    v
}

fn decode(list: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(list.len());
    let (mut pos, mut last) = (0, 0u32);
    while pos < list.len() {
        last = last.wrapping_add(get_varint(list, &mut pos));
        out.push(last);
    }
    out
}

/// Posting lists under construction for a contiguous range of file ids.
struct PartialPostings {
    slot: Slots,
    lists: Vec<(u32, u32, Vec<u8>)>,
    /// A bitmap of the trigram space beside [`Slots::Table`], cleared between files;
    /// empty beside [`Slots::Map`] (a file's trigrams are then sorted to drop repeats).
    seen: Vec<u64>,
    /// The current file's distinct trigrams.
    distinct: Vec<u32>,
}

/// One more than the slot of each trigram in `lists`, 0 when absent.
enum Slots {
    /// A flat table over the trigram space (64 MiB, with a 2 MiB bitmap beside it): several
    /// times faster than a hash map for the hundreds of millions of updates of a large
    /// build. Zeroed pages cost nothing until touched, but text touches a few thousand
    /// of them, megabytes a thread whatever the build's size.
    Table(Vec<u32>),
    /// A hash map, for builds under [`SMALL_BUILD`]: a merge of a small repo's segments,
    /// which a busy server makes every few dozen commits, then costs memory in
    /// proportion to its text, not the trigram space.
    Map(foldhash::HashMap<u32, u32>),
}

const TRIGRAM_SPACE: usize = 1 << 24;
/// Text below which postings are built on one thread, with a hash map ([`Slots::Map`]).
const SMALL_BUILD: usize = 8 << 20;

impl PartialPostings {
    fn new(small: bool) -> Self {
        Self {
            slot: if small {
                Slots::Map(foldhash::HashMap::default())
            } else {
                Slots::Table(vec![0; TRIGRAM_SPACE])
            },
            lists: Vec::new(),
            seen: if small {
                Vec::new()
            } else {
                vec![0u64; TRIGRAM_SPACE / 64]
            },
            distinct: Vec::new(),
        }
    }

    /// Add the distinct trigrams of `content` to file `id`'s postings.
    fn add(&mut self, id: u32, content: &[u8]) {
        let Self {
            slot,
            lists,
            seen,
            distinct,
        } = self;
        let mut t = 0u32;
        let mut run = 0usize;
        for &b in content {
            if b == b'\n' {
                run = 0;
                continue;
            }
            t = ((t << 8) | u32::from(fold(b))) & 0x00ff_ffff;
            run += 1;
            if run >= 3 {
                if seen.is_empty() {
                    distinct.push(t);
                    continue;
                }
                let (w, bit) = ((t >> 6) as usize, 1u64 << (t & 63));
                if seen[w] & bit == 0 {
                    seen[w] |= bit;
                    distinct.push(t);
                }
            }
        }
        if seen.is_empty() {
            distinct.sort_unstable();
            distinct.dedup();
        }
        for &t in distinct.iter() {
            if !seen.is_empty() {
                seen[(t >> 6) as usize] &= !(1u64 << (t & 63));
            }
            let s = match slot {
                Slots::Table(table) => &mut table[t as usize],
                Slots::Map(map) => map.entry(t).or_insert(0),
            };
            if *s == 0 {
                lists.push((t, 0, Vec::new()));
                *s = lists.len() as u32;
            }
            let (_, last, bytes) = &mut lists[*s as usize - 1];
            put_varint(bytes, id - *last);
            *last = id;
        }
        distinct.clear();
    }

    /// The lists sorted by trigram, with the table freed.
    fn finish(mut self) -> Vec<(u32, u32, Vec<u8>)> {
        self.slot = Slots::Map(foldhash::HashMap::default());
        self.seen = Vec::new();
        self.lists.sort_unstable_by_key(|l| l.0);
        self.lists
    }
}

/// Merge partial postings over consecutive id ranges into one set of lists.
fn merge(parts: Vec<Vec<(u32, u32, Vec<u8>)>>) -> Postings {
    let total: usize = parts.iter().flat_map(|p| p.iter().map(|l| l.2.len())).sum();
    let mut out = Postings {
        keys: Vec::new(),
        offsets: vec![0],
        data: Vec::with_capacity(total),
    };
    let mut iters: Vec<_> = parts
        .into_iter()
        .map(|p| p.into_iter().peekable())
        .collect();
    while let Some(next) = iters.iter_mut().filter_map(|i| i.peek().map(|l| l.0)).min() {
        let mut last = 0u32;
        let mut first = true;
        for it in iters.iter_mut() {
            if it.peek().is_some_and(|l| l.0 == next) {
                let Some((_, part_last, bytes)) = it.next() else {
                    continue;
                };
                if first {
                    out.data.extend_from_slice(&bytes);
                    first = false;
                } else {
                    // The part's first id was encoded against zero; re-encode it against
                    // the previous part's last id so the list stays one delta chain.
                    let mut pos = 0;
                    let head = get_varint(&bytes, &mut pos);
                    put_varint(&mut out.data, head - last);
                    out.data.extend_from_slice(&bytes[pos..]);
                }
                last = part_last;
            }
        }
        out.keys.push(next);
        out.offsets.push(out.data.len() as u64);
    }
    out
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Build postings over `files` (ids are positions), on every core. `progress` is told
/// the number of files done so far, from the calling thread only (so it need not be
/// `Sync`: a terminal progress bar is not).
fn build_postings(files: &[Arc<FileEntry>], progress: &dyn Fn(u64)) -> Postings {
    let total: usize = files.iter().map(|f| f.content.len()).sum();
    let n = if total < SMALL_BUILD {
        1
    } else {
        threads().min(files.len().max(1))
    };
    // Cut the id space into `n` ranges of about equal bytes.
    let mut bounds = vec![0];
    let mut acc = 0;
    for (i, f) in files.iter().enumerate() {
        acc += f.content.len();
        if bounds.len() < n && acc * n >= total * bounds.len() {
            bounds.push(i + 1);
        }
    }
    while bounds.len() <= n {
        bounds.push(files.len());
    }
    let done = AtomicU64::new(0);
    let done = &done;
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = bounds[1..]
            .windows(2)
            .map(|w| {
                let (lo, hi) = (w[0], w[1]);
                s.spawn(move || index_range(files, lo, hi, done, None))
            })
            .collect();
        let mut parts = vec![index_range(
            files,
            bounds[0],
            bounds[1],
            done,
            Some(progress),
        )];
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_default()));
        parts
    });
    progress(files.len() as u64);
    merge(parts)
}

/// Postings of files `lo..hi`; `done` counts files across threads, and `report`, on the
/// one thread that has it, is told that count now and then.
fn index_range(
    files: &[Arc<FileEntry>],
    lo: usize,
    hi: usize,
    done: &AtomicU64,
    report: Option<&dyn Fn(u64)>,
) -> Vec<(u32, u32, Vec<u8>)> {
    let bytes: usize = files[lo..hi].iter().map(|f| f.content.len()).sum();
    let small = bytes < SMALL_BUILD;
    let mut part = PartialPostings::new(small);
    for (id, f) in files.iter().enumerate().take(hi).skip(lo) {
        part.add(id as u32, &f.content);
        if id % 256 == 255 {
            let d = done.fetch_add(256, Ordering::Relaxed) + 256;
            if let Some(report) = report {
                report(d);
            }
        }
    }
    part.finish()
}

/// One open segment: its bytes and the list of its files.
#[derive(Debug)]
pub struct Segment {
    data: Arc<SegmentData>,
    /// Files sorted by path; a file's id is its position.
    files: Vec<Arc<FileEntry>>,
    /// Its file name in the index directory, when it is stored.
    name: Option<String>,
    heap: usize,
}

impl Segment {
    fn new(data: SegmentData, name: Option<String>) -> Self {
        let data = Arc::new(data);
        let files: Vec<Arc<FileEntry>> = (0..data.layout().files)
            .map(|i| {
                Arc::new(FileEntry {
                    path: data.path(i).into(),
                    content: Content(Repr::Mapped {
                        data: data.clone(),
                        range: data.content_range(i),
                    }),
                })
            })
            .collect();
        let heap = data.heap_bytes()
            + files.capacity() * std::mem::size_of::<Arc<FileEntry>>()
            + files
                .iter()
                .map(|f| f.path.len() + std::mem::size_of::<FileEntry>() + 16)
                .sum::<usize>();
        Self {
            data,
            files,
            name,
            heap,
        }
    }

    /// Open the segment file at `path`, checked as [`segment`](super::segment) says;
    /// `name` is how the index directory knows it.
    pub fn open(path: &Path, name: &str) -> Result<Self, Unusable> {
        Ok(Self::new(SegmentData::open(path)?, Some(name.to_string())))
    }

    /// A segment held on the heap; `trusted` when this process just wrote `bytes`.
    pub fn from_vec(bytes: Vec<u8>, trusted: bool) -> Result<Self, Unusable> {
        Ok(Self::new(SegmentData::from_vec(bytes, trusted)?, None))
    }

    /// Its file name in the index directory, when it is stored.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its header.
    pub fn layout(&self) -> &Layout {
        self.data.layout()
    }

    /// Heap bytes it holds.
    pub fn heap_bytes(&self) -> usize {
        self.heap
    }

    fn file_id(&self, path: &str) -> Option<usize> {
        self.files.binary_search_by(|f| (*f.path).cmp(path)).ok()
    }

    /// Ids of this segment's files satisfying `query`, sorted; `None` for every file
    /// (also when a list needed is damaged: every file is then a candidate, which keeps
    /// the answer right).
    fn eval(&self, query: &TrigramQuery) -> Option<Vec<u32>> {
        match query {
            TrigramQuery::All => None,
            TrigramQuery::Trigram(t) => self.data.list(*t).map(decode),
            TrigramQuery::And(parts) => {
                // Cheapest lists first, so the running set shrinks early.
                let mut parts: Vec<&TrigramQuery> = parts.iter().collect();
                parts.sort_by_key(|q| match q {
                    TrigramQuery::Trigram(t) => self.data.list_len(*t),
                    _ => usize::MAX,
                });
                let mut acc: Option<Vec<u32>> = None;
                for q in parts {
                    if let Some(ids) = self.eval(q) {
                        acc = Some(match acc {
                            None => ids,
                            Some(a) => intersect(&a, &ids),
                        });
                        if acc.as_ref().is_some_and(Vec::is_empty) {
                            break;
                        }
                    }
                }
                acc
            }
            TrigramQuery::Or(parts) => {
                let mut acc = Vec::new();
                for q in parts {
                    acc = union(&acc, &self.eval(q)?);
                }
                Some(acc)
            }
        }
    }
}

/// Write a base segment of `files` (sorted by path, no path twice) at `head` to `w`,
/// extracting their trigrams on every core; `progress` is told of files indexed.
pub fn write_base<W: Write + Seek>(
    w: W,
    head: &str,
    files: &[Arc<FileEntry>],
    progress: &dyn Fn(u64),
) -> io::Result<W> {
    let postings = build_postings(files, progress);
    segment::write(
        w,
        &segment::Contents {
            kind: Kind::Base,
            head,
            parent: "",
            files: files.iter().map(|f| (&*f.path, &*f.content)).collect(),
            removed: Vec::new(),
            keys: &postings.keys,
            offsets: &postings.offsets,
            postings: &postings.data,
        },
    )
}

/// The paths that changed from one head to the next, each with its text at the new
/// head (`None` when it is gone, or is no longer a text file).
pub type Changes = Vec<(String, Option<Box<[u8]>>)>;

/// Write a delta segment from `parent` to `head` to `w`: every path of `changes` is
/// removed from the segments below, and those with contents are added.
pub fn write_delta<W: Write + Seek>(
    w: W,
    parent: &str,
    head: &str,
    changes: &Changes,
) -> io::Result<W> {
    let mut latest: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
    for (path, content) in changes {
        latest.insert(path, content.as_deref());
    }
    let files: Vec<Arc<FileEntry>> = latest
        .iter()
        .filter_map(|(p, c)| {
            c.map(|c| {
                Arc::new(FileEntry {
                    path: (*p).into(),
                    content: c.into(),
                })
            })
        })
        .collect();
    let postings = build_postings(&files, &|_| {});
    segment::write(
        w,
        &segment::Contents {
            kind: Kind::Delta,
            head,
            parent,
            files: files.iter().map(|f| (&*f.path, &*f.content)).collect(),
            removed: latest.keys().copied().collect(),
            keys: &postings.keys,
            offsets: &postings.offsets,
            postings: &postings.data,
        },
    )
}

/// The index of one repo at one head.
#[derive(Debug, Clone)]
pub struct LineIndex {
    head: String,
    /// A base, then deltas, each made on top of the one before.
    segments: Arc<Vec<Arc<Segment>>>,
    /// Per segment, its files replaced or removed by a later segment, one bit each.
    dead: Arc<Vec<Arc<Vec<u64>>>>,
}

/// Sizes of an index, for reports.
#[derive(Debug, Clone, Copy)]
pub struct IndexStats {
    /// Files indexed at this head.
    pub files: usize,
    /// Bytes of file contents at this head.
    pub content_bytes: usize,
    /// Bytes of trigram postings (keys, offsets and lists) of every segment.
    pub postings_bytes: usize,
    /// Segments: a base and its deltas.
    pub segments: usize,
    /// Bytes of the segments stored on disk and mapped.
    pub mapped_bytes: usize,
    /// Bytes this index holds on the heap.
    pub heap_bytes: usize,
}

/// Deltas past this many are merged into a new base.
const MAX_DELTAS: usize = 24;

fn in_memory(w: io::Result<io::Cursor<Vec<u8>>>) -> io::Result<Arc<Segment>> {
    let bytes = w?.into_inner();
    Segment::from_vec(bytes, true)
        .map(Arc::new)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl LineIndex {
    /// Index `files` (any order, no path twice) as the contents of `head`, in a segment
    /// on the heap. `progress` is told of files as they are indexed.
    pub fn build(
        head: String,
        mut files: Vec<Arc<FileEntry>>,
        progress: &dyn Fn(u64),
    ) -> io::Result<Self> {
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let seg = in_memory(write_base(
            io::Cursor::new(Vec::new()),
            &head,
            &files,
            progress,
        ))?;
        Self::from_segments(vec![seg])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a base segment"))
    }

    /// The index made of `segments`: a base, then deltas each on top of the one
    /// before; `None` when they do not chain so.
    pub fn from_segments(segments: Vec<Arc<Segment>>) -> Option<Self> {
        let mut it = segments.into_iter();
        let base = it.next()?;
        if base.layout().kind != Kind::Base {
            return None;
        }
        let mut ix = Self {
            head: base.layout().head.clone(),
            dead: Arc::new(vec![Arc::new(vec![0; base.files.len().div_ceil(64)])]),
            segments: Arc::new(vec![base]),
        };
        for seg in it {
            ix = ix.push(seg)?;
        }
        Some(ix)
    }

    /// This index with the delta `seg` on top; `None` unless `seg` is a delta made on
    /// this index's head.
    pub fn push(&self, seg: Arc<Segment>) -> Option<Self> {
        let l = seg.layout();
        if l.kind != Kind::Delta || l.parent != self.head {
            return None;
        }
        let mut dead: Vec<Arc<Vec<u64>>> = self.dead.iter().cloned().collect();
        for r in 0..l.removed {
            let path = seg.data.removed(r);
            for (s, below) in self.segments.iter().enumerate() {
                if let Some(id) = below.file_id(path) {
                    Arc::make_mut(&mut dead[s])[id / 64] |= 1 << (id % 64);
                }
            }
        }
        dead.push(Arc::new(vec![0; seg.files.len().div_ceil(64)]));
        let mut segments: Vec<Arc<Segment>> = self.segments.iter().cloned().collect();
        let head = l.head.clone();
        segments.push(seg);
        Some(Self {
            head,
            segments: Arc::new(segments),
            dead: Arc::new(dead),
        })
    }

    /// The index of `head`, which differs from this one's head by `changes`, with the
    /// delta held on the heap (merged into a new base when deltas have grown).
    pub fn apply(&self, head: String, changes: Changes) -> io::Result<Self> {
        let seg = in_memory(write_delta(
            io::Cursor::new(Vec::new()),
            &self.head,
            &head,
            &changes,
        ))?;
        let next = self
            .push(seg)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a delta"))?;
        if next.needs_merge() {
            return Self::build(next.head.clone(), next.live_files(), &|_| {});
        }
        Ok(next)
    }

    /// Whether the deltas have grown enough to merge them into a new base: past this
    /// much churn every query pays for searching many small segments, and a merge (from
    /// the segments, without reading git) costs about as much as a few such queries.
    pub fn needs_merge(&self) -> bool {
        let deltas = self.segments.len() - 1;
        let churn: usize = self.segments[1..]
            .iter()
            .map(|s| s.files.len())
            .sum::<usize>()
            + self.dead[0]
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>();
        deltas > MAX_DELTAS || (churn > 256 && churn * 8 > self.segments[0].files.len())
    }

    /// Write one base segment holding this index's files at its head to `w` (the
    /// merge of its segments). Fails, writing nothing usable, when a segment turns out
    /// to be damaged.
    pub fn write_merged<W: Write + Seek>(&self, w: W) -> io::Result<W> {
        let w = write_base(w, &self.head, &self.live_files(), &|_| {})?;
        if self.damaged() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a segment is damaged",
            ));
        }
        Ok(w)
    }

    /// Its segments, base first.
    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// The head this index reflects.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Whether a segment of this index failed a check: an answer computed from it may
    /// have missed contents, so it must be computed again from a rebuilt index.
    pub fn damaged(&self) -> bool {
        self.segments.iter().any(|s| s.data.is_damaged())
    }

    /// Heap bytes this index holds (shared with the indexes of nearby heads).
    pub fn heap_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.heap).sum::<usize>()
            + self.dead.iter().map(|d| d.len() * 8).sum::<usize>()
    }

    /// Sizes, for reports.
    pub fn stats(&self) -> IndexStats {
        let live = self.live_files();
        IndexStats {
            files: live.len(),
            content_bytes: live.iter().map(|f| f.content.len()).sum(),
            postings_bytes: self
                .segments
                .iter()
                .map(|s| {
                    let l = s.layout();
                    l.keys * 12 + 8 + l.postings.len()
                })
                .sum(),
            segments: self.segments.len(),
            mapped_bytes: self
                .segments
                .iter()
                .filter(|s| !s.data.on_heap())
                .map(|s| s.layout().len)
                .sum(),
            heap_bytes: self.heap_bytes(),
        }
    }

    fn is_dead(&self, seg: usize, id: usize) -> bool {
        self.dead[seg][id / 64] & (1 << (id % 64)) != 0
    }

    /// The live file at `path`, if this index holds one (a text file at its head).
    pub fn file(&self, path: &str) -> Option<Arc<FileEntry>> {
        // A live path is in one segment only.
        self.segments.iter().enumerate().find_map(|(s, seg)| {
            let i = seg.files.binary_search_by(|f| (*f.path).cmp(path)).ok()?;
            (!self.is_dead(s, i)).then(|| Arc::clone(&seg.files[i]))
        })
    }

    /// Every live file, in path order.
    pub fn live_files(&self) -> Vec<Arc<FileEntry>> {
        self.candidates(&TrigramQuery::All, |_| true)
    }

    /// The files that can hold a match of `query` and pass `wanted`, in path order.
    pub fn candidates(
        &self,
        query: &TrigramQuery,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<Arc<FileEntry>> {
        self.candidates_as(query, wanted, Arc::clone)
    }

    /// [`LineIndex::candidates`] borrowed from this index: a search that ends while the
    /// index is held need not count a reference to every file (a pattern without a
    /// literal takes them all).
    pub fn candidate_entries(
        &self,
        query: &TrigramQuery,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<&FileEntry> {
        self.candidates_as(query, wanted, |f| &**f)
    }

    fn candidates_as<'a, T: std::ops::Deref<Target = FileEntry>>(
        &'a self,
        query: &TrigramQuery,
        wanted: impl Fn(&str) -> bool,
        take: impl Fn(&'a Arc<FileEntry>) -> T,
    ) -> Vec<T> {
        let mut per_segment = self.segments.iter().enumerate().map(|(s, seg)| {
            let ids: Box<dyn Iterator<Item = usize>> = match seg.eval(query) {
                None => Box::new(0..seg.files.len()),
                Some(ids) => Box::new(ids.into_iter().map(|i| i as usize)),
            };
            ids.filter(|&i| i < seg.files.len() && !self.is_dead(s, i))
                .map(|i| &seg.files[i])
                .filter(|f| wanted(&f.path))
                .map(&take)
                .collect::<Vec<_>>()
        });
        let base = per_segment.next().unwrap_or_default();
        // A live path is in one segment only; the deltas' files are few.
        let mut rest: Vec<T> = per_segment.flatten().collect();
        if rest.is_empty() {
            return base;
        }
        rest.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        merge_by_path(base.into_iter(), rest.into_iter())
    }
}

fn merge_by_path<T: std::ops::Deref<Target = FileEntry>>(
    base: impl Iterator<Item = T>,
    overlay: impl Iterator<Item = T>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut base = base.peekable();
    let mut overlay = overlay.peekable();
    loop {
        let take_base = match (base.peek(), overlay.peek()) {
            (Some(b), Some(o)) => b.path <= o.path,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_base {
            base.next()
        } else {
            overlay.next()
        };
        out.extend(next);
    }
    out
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() || j < b.len() {
        if j == b.len() || (i < a.len() && a[i] < b[j]) {
            out.push(a[i]);
            i += 1;
        } else if i == a.len() || b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::plan::plan;

    fn entry(path: &str, text: &str) -> Arc<FileEntry> {
        Arc::new(FileEntry {
            path: path.into(),
            content: text.as_bytes().into(),
        })
    }

    // Small builds take a hash map and sort each file's trigrams instead of the flat
    // table and its bitmap: the postings must be the same bytes either way.
    #[test]
    fn a_small_build_makes_the_same_postings_as_the_table() {
        let texts = [
            "fn main() {\n    println!(\"hello\");\n}\n",
            "aaaa aaaa aaaa\nabcabcabc\n",
            "",
            "xy\nz\n\u{e9}t\u{e9} caf\u{e9} \u{1F600}\n",
            "MixedCase MIXEDCASE mixedcase\n",
        ];
        let build = |small: bool| {
            let mut part = PartialPostings::new(small);
            for round in 0..3u32 {
                for (i, t) in texts.iter().enumerate() {
                    part.add(round * 8 + i as u32, t.as_bytes());
                }
            }
            assert!(part.seen.iter().all(|&w| w == 0));
            part.finish()
        };
        let (small, table) = (build(true), build(false));
        assert!(small.len() > 20);
        assert_eq!(small, table);
    }

    fn paths(files: &[Arc<FileEntry>]) -> Vec<&str> {
        files.iter().map(|f| &*f.path).collect()
    }

    #[test]
    fn varints_round_trip_through_merged_parts() {
        let mut a = Vec::new();
        for v in [0u32, 1, 127, 128, 300, 1 << 20, u32::MAX - 5] {
            a.clear();
            put_varint(&mut a, v);
            assert_eq!(get_varint(&a, &mut 0), v);
        }
        let files: Vec<_> = (0..1000)
            .map(|i| {
                entry(
                    &format!("f{i:04}"),
                    if i % 3 == 0 { "needle" } else { "hay" },
                )
            })
            .collect();
        let ix = LineIndex::build("h".into(), files, &|_| {}).unwrap();
        let hits = ix.candidates(&plan("needle", false, false), |_| true);
        assert_eq!(hits.len(), 334);
        assert!(hits.iter().all(|f| &*f.content == b"needle"));
    }

    #[test]
    fn candidates_follow_changes_in_path_order() {
        let ix = LineIndex::build(
            "h1".into(),
            vec![
                entry("b", "alpha beta"),
                entry("a", "gamma"),
                entry("c", "alpha"),
            ],
            &|_| {},
        )
        .unwrap();
        let q = plan("alpha", false, false);
        assert_eq!(paths(&ix.candidates(&q, |_| true)), ["b", "c"]);
        let next = ix
            .apply(
                "h2".into(),
                vec![
                    ("c".into(), None),
                    ("a".into(), Some(b"ALPHA".as_slice().into())),
                    ("d".into(), Some(b"x".as_slice().into())),
                ],
            )
            .unwrap();
        assert_eq!(next.head(), "h2");
        // A delta has postings of its own: "d" cannot match.
        assert_eq!(paths(&next.candidates(&q, |_| true)), ["a", "b"]);
        assert_eq!(paths(&next.candidates(&q, |p| p != "a")), ["b"]);
        let every = next.candidates(&TrigramQuery::All, |_| true);
        assert_eq!(paths(&every), ["a", "b", "d"]);
        // The old index is untouched: a search holding it still sees its own head.
        assert_eq!(paths(&ix.candidates(&q, |_| true)), ["b", "c"]);
        assert_eq!(next.stats().files, 3);
        // A file by its path: the delta's copy, the base's, none where removed.
        let text = |ix: &LineIndex, p: &str| ix.file(p).map(|f| f.content.to_vec());
        assert_eq!(text(&next, "a"), Some(b"ALPHA".to_vec()));
        assert_eq!(text(&next, "b"), Some(b"alpha beta".to_vec()));
        assert_eq!(text(&next, "c"), None);
        assert_eq!(text(&ix, "c"), Some(b"alpha".to_vec()));
        assert_eq!(text(&next, "zz"), None);
    }

    #[test]
    fn trigrams_never_span_a_line_break() {
        let ix = LineIndex::build("h".into(), vec![entry("a", "ab\ncd")], &|_| {}).unwrap();
        assert!(
            ix.candidates(&plan("b\nc", false, false), |_| true)
                .is_empty()
        );
    }

    #[test]
    fn deltas_chain_and_merge_into_one_base() {
        let files: Vec<_> = (0..40)
            .map(|i| entry(&format!("f{i:02}"), "base text"))
            .collect();
        let mut ix = LineIndex::build("h0".into(), files, &|_| {}).unwrap();
        for n in 1..=30 {
            let changes = vec![
                (
                    format!("f{n:02}"),
                    Some(format!("changed {n}").into_bytes().into()),
                ),
                (format!("new{n:02}"), Some(b"fresh".as_slice().into())),
                (format!("new{:02}", n - 1), None),
            ];
            ix = ix.apply(format!("h{n}"), changes).unwrap();
            assert_eq!(ix.head(), format!("h{n}"));
            let fresh = ix.candidates(&plan("fresh", false, false), |_| true);
            assert_eq!(paths(&fresh), [format!("new{n:02}")]);
            let changed = ix.candidates(&plan("changed", false, false), |_| true);
            assert_eq!(changed.len(), n.min(39));
            assert_eq!(ix.stats().files, 41);
        }
        assert!(ix.segments().len() <= MAX_DELTAS + 1);
        let merged = ix.write_merged(io::Cursor::new(Vec::new())).unwrap();
        let seg = Segment::from_vec(merged.into_inner(), false).unwrap();
        let again = LineIndex::from_segments(vec![Arc::new(seg)]).unwrap();
        assert_eq!(again.head(), "h30");
        let names = |ix: &LineIndex| -> Vec<(String, Vec<u8>)> {
            ix.live_files()
                .iter()
                .map(|f| (f.path.to_string(), f.content.to_vec()))
                .collect()
        };
        assert_eq!(names(&again), names(&ix));
    }

    #[test]
    fn a_delta_on_another_head_does_not_chain() {
        let ix = LineIndex::build("h0".into(), vec![entry("a", "x")], &|_| {}).unwrap();
        let other = write_delta(io::Cursor::new(Vec::new()), "h9", "h10", &Vec::new()).unwrap();
        let seg = Arc::new(Segment::from_vec(other.into_inner(), true).unwrap());
        assert!(ix.push(seg).is_none());
    }
}

//! The line-search index of one repo at one head: every text file's contents, held
//! uncompressed in memory, and trigram posting lists that narrow a query to the files
//! that can match before any regex runs.
//!
//! An index is an immutable value tied to one head, so a search holding it sees one
//! head and never a mix. A commit makes the next index cheaply: the bulk (`Base`: the
//! files and their compressed postings as of the last full build) is shared, and only a
//! small overlay of changed files and a bitmap of dead base files is copied. When the
//! overlay grows past a fraction of the base, the next index is rebuilt whole, from the
//! contents already in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::plan::{TrigramQuery, fold};

/// One text file at a head.
#[derive(Debug)]
pub struct FileEntry {
    /// Its path in the repo.
    pub path: Box<str>,
    /// Its bytes.
    pub content: Box<[u8]>,
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

impl Postings {
    fn list(&self, trigram: u32) -> &[u8] {
        match self.keys.binary_search(&trigram) {
            Ok(i) => &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize],
            Err(_) => &[],
        }
    }

    fn size_bytes(&self) -> usize {
        self.keys.len() * 4 + self.offsets.len() * 8 + self.data.len()
    }
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
        last += get_varint(list, &mut pos);
        out.push(last);
    }
    out
}

/// Posting lists under construction for a contiguous range of file ids.
struct PartialPostings {
    /// One more than the slot of each trigram in `lists`, 0 when absent: a flat table
    /// is several times faster than a hash map for the hundreds of millions of updates
    /// of a build, and being zeroed it costs nothing for the pages a small build never
    /// touches.
    slot: Vec<u32>,
    lists: Vec<(u32, u32, Vec<u8>)>,
}

const TRIGRAM_SPACE: usize = 1 << 24;

impl PartialPostings {
    fn new() -> Self {
        Self {
            slot: vec![0; TRIGRAM_SPACE],
            lists: Vec::new(),
        }
    }

    /// Add the distinct trigrams of `content` to file `id`'s postings; `seen` is a
    /// cleared bitmap of the trigram space, left cleared.
    fn add(&mut self, id: u32, content: &[u8], seen: &mut [u64], distinct: &mut Vec<u32>) {
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
                let (w, bit) = ((t >> 6) as usize, 1u64 << (t & 63));
                if seen[w] & bit == 0 {
                    seen[w] |= bit;
                    distinct.push(t);
                }
            }
        }
        for &t in distinct.iter() {
            seen[(t >> 6) as usize] &= !(1u64 << (t & 63));
            let s = &mut self.slot[t as usize];
            if *s == 0 {
                self.lists.push((t, 0, Vec::new()));
                *s = self.lists.len() as u32;
            }
            let (_, last, bytes) = &mut self.lists[*s as usize - 1];
            put_varint(bytes, id - *last);
            *last = id;
        }
        distinct.clear();
    }

    /// The lists sorted by trigram, with the table freed.
    fn finish(mut self) -> Vec<(u32, u32, Vec<u8>)> {
        self.slot = Vec::new();
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
    let n = threads().min(files.len().max(1));
    let total: usize = files.iter().map(|f| f.content.len()).sum();
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
    let mut part = PartialPostings::new();
    let mut seen = vec![0u64; TRIGRAM_SPACE / 64];
    let mut distinct = Vec::new();
    for (id, f) in files.iter().enumerate().take(hi).skip(lo) {
        part.add(id as u32, &f.content, &mut seen, &mut distinct);
        if id % 256 == 255 {
            let d = done.fetch_add(256, Ordering::Relaxed) + 256;
            if let Some(report) = report {
                report(d);
            }
        }
    }
    part.finish()
}

/// The base of an index in a form that can be stored and loaded again: file paths in
/// id order, and the postings' three arrays.
#[derive(Debug)]
pub struct BaseParts<'a> {
    /// Paths of the base files, a file's id being its position.
    pub paths: Vec<&'a str>,
    /// Trigrams, sorted.
    pub keys: &'a [u32],
    /// Where each trigram's list starts in `data`; one more entry than `keys`.
    pub offsets: &'a [u64],
    /// The delta- and varint-encoded lists.
    pub data: &'a [u8],
}

#[derive(Debug)]
struct Base {
    /// Files sorted by path; a file's id is its position.
    files: Vec<Arc<FileEntry>>,
    postings: Postings,
}

/// The index of one repo at one head.
#[derive(Debug, Clone)]
pub struct LineIndex {
    head: String,
    base: Arc<Base>,
    /// Base files deleted or changed since the base was built, one bit each.
    dead: Arc<Vec<u64>>,
    /// Files added or changed since the base was built, by path.
    overlay: Arc<BTreeMap<Box<str>, Arc<FileEntry>>>,
}

/// Sizes of an index, for reports.
#[derive(Debug, Clone, Copy)]
pub struct IndexStats {
    /// Files indexed at this head.
    pub files: usize,
    /// Bytes of file contents held.
    pub content_bytes: usize,
    /// Bytes of trigram postings (keys, offsets and lists).
    pub postings_bytes: usize,
}

impl LineIndex {
    /// Index `files` (any order) as the contents of `head`. `progress` is told of files
    /// as they are indexed.
    pub fn build(head: String, mut files: Vec<Arc<FileEntry>>, progress: &dyn Fn(u64)) -> Self {
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        let postings = build_postings(&files, progress);
        let dead = vec![0u64; files.len().div_ceil(64)];
        Self {
            head,
            base: Arc::new(Base { files, postings }),
            dead: Arc::new(dead),
            overlay: Arc::new(BTreeMap::new()),
        }
    }

    /// Reassemble an index of `head` from stored parts and the files they name (in the
    /// same order); `None` when they do not fit together.
    pub fn from_parts(
        head: String,
        files: Vec<Arc<FileEntry>>,
        keys: Vec<u32>,
        offsets: Vec<u64>,
        data: Vec<u8>,
    ) -> Option<Self> {
        let sorted = files.windows(2).all(|w| w[0].path < w[1].path);
        let shaped = offsets.len() == keys.len() + 1
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last() == Some(&(data.len() as u64))
            && keys.windows(2).all(|w| w[0] < w[1]);
        if !sorted || !shaped {
            return None;
        }
        let dead = vec![0u64; files.len().div_ceil(64)];
        Some(Self {
            head,
            base: Arc::new(Base {
                files,
                postings: Postings {
                    keys,
                    offsets,
                    data,
                },
            }),
            dead: Arc::new(dead),
            overlay: Arc::new(BTreeMap::new()),
        })
    }

    /// The base as stored parts, and whether it is the whole index (no overlay): only
    /// then do the parts describe this head.
    pub fn base_parts(&self) -> (BaseParts<'_>, bool) {
        let whole = self.overlay.is_empty() && self.dead.iter().all(|w| *w == 0);
        let p = &self.base.postings;
        (
            BaseParts {
                paths: self.base.files.iter().map(|f| &*f.path).collect(),
                keys: &p.keys,
                offsets: &p.offsets,
                data: &p.data,
            },
            whole,
        )
    }

    /// The head this index reflects.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Sizes, for reports.
    pub fn stats(&self) -> IndexStats {
        let live = self.live_files();
        IndexStats {
            files: live.len(),
            content_bytes: live.iter().map(|f| f.content.len()).sum(),
            postings_bytes: self.base.postings.size_bytes(),
        }
    }

    fn is_dead(&self, id: usize) -> bool {
        self.dead[id / 64] & (1 << (id % 64)) != 0
    }

    /// The index of `head`, which differs from this one's head by `changes`: each path
    /// with its new contents, or `None` when it no longer exists as a text file.
    pub fn apply(&self, head: String, changes: Vec<(String, Option<Box<[u8]>>)>) -> Self {
        let mut next = self.clone();
        next.head = head;
        {
            let dead = Arc::make_mut(&mut next.dead);
            let overlay = Arc::make_mut(&mut next.overlay);
            for (path, content) in changes {
                if let Ok(id) = self
                    .base
                    .files
                    .binary_search_by(|f| (*f.path).cmp(path.as_str()))
                {
                    dead[id / 64] |= 1 << (id % 64);
                }
                let path: Box<str> = path.into();
                match content {
                    Some(content) => {
                        let entry = Arc::new(FileEntry {
                            path: path.clone(),
                            content,
                        });
                        overlay.insert(path, entry);
                    }
                    None => {
                        overlay.remove(&path);
                    }
                }
            }
        }
        let dead_count: usize = next.dead.iter().map(|w| w.count_ones() as usize).sum();
        let churn = dead_count + next.overlay.len();
        // Past this much churn every query pays for scanning the overlay in full; one
        // rebuild from memory (no git reads) costs about as much as a few such queries.
        if churn > 256 && churn * 8 > self.base.files.len() {
            return Self::build(next.head.clone(), next.live_files(), &|_| {});
        }
        next
    }

    /// Every live file, in path order.
    pub fn live_files(&self) -> Vec<Arc<FileEntry>> {
        let base = self
            .base
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_dead(*i))
            .map(|(_, f)| f.clone());
        merge_by_path(base, self.overlay.values().cloned(), |_| true)
    }

    /// The files that can hold a match of `query` and pass `wanted`, in path order.
    pub fn candidates(
        &self,
        query: &TrigramQuery,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<Arc<FileEntry>> {
        let base: Box<dyn Iterator<Item = Arc<FileEntry>>> = match self.eval(query) {
            None => Box::new(
                self.base
                    .files
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !self.is_dead(*i))
                    .map(|(_, f)| f.clone()),
            ),
            Some(ids) => Box::new(
                ids.into_iter()
                    .filter(|&i| !self.is_dead(i as usize))
                    .map(|i| self.base.files[i as usize].clone()),
            ),
        };
        // Overlay files are few; they go to the regex unfiltered.
        merge_by_path(base, self.overlay.values().cloned(), wanted)
    }

    /// Base ids satisfying `query`, sorted; `None` for every file.
    fn eval(&self, query: &TrigramQuery) -> Option<Vec<u32>> {
        match query {
            TrigramQuery::All => None,
            TrigramQuery::Trigram(t) => Some(decode(self.base.postings.list(*t))),
            TrigramQuery::And(parts) => {
                // Cheapest lists first, so the running set shrinks early.
                let mut parts: Vec<&TrigramQuery> = parts.iter().collect();
                parts.sort_by_key(|q| match q {
                    TrigramQuery::Trigram(t) => self.base.postings.list(*t).len(),
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

fn merge_by_path(
    base: impl Iterator<Item = Arc<FileEntry>>,
    overlay: impl Iterator<Item = Arc<FileEntry>>,
    wanted: impl Fn(&str) -> bool,
) -> Vec<Arc<FileEntry>> {
    let mut out = Vec::new();
    let mut base = base.filter(|f| wanted(&f.path)).peekable();
    let mut overlay = overlay.filter(|f| wanted(&f.path)).peekable();
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
        let ix = LineIndex::build("h".into(), files, &|_| {});
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
        );
        let q = plan("alpha", false, false);
        assert_eq!(paths(&ix.candidates(&q, |_| true)), ["b", "c"]);
        let next = ix.apply(
            "h2".into(),
            vec![
                ("c".into(), None),
                ("a".into(), Some(b"ALPHA".as_slice().into())),
                ("d".into(), Some(b"x".as_slice().into())),
            ],
        );
        assert_eq!(next.head(), "h2");
        assert_eq!(paths(&next.candidates(&q, |_| true)), ["a", "b", "d"]);
        assert_eq!(paths(&next.candidates(&q, |p| p != "a")), ["b", "d"]);
        // The old index is untouched: a search holding it still sees its own head.
        assert_eq!(paths(&ix.candidates(&q, |_| true)), ["b", "c"]);
        assert_eq!(next.stats().files, 3);
    }

    #[test]
    fn trigrams_never_span_a_line_break() {
        let ix = LineIndex::build("h".into(), vec![entry("a", "ab\ncd")], &|_| {});
        assert!(
            ix.candidates(&plan("b\nc", false, false), |_| true)
                .is_empty()
        );
    }
}

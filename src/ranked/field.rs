//! One field of an inverted index (a file's body, its path, its definitions, the
//! messages of the commits that touched it), kept incrementally: a document's terms
//! can be replaced without touching any other document, and scored with BM25.

use std::collections::{HashMap, HashSet};

use super::backing::{Backing, Plain};

/// BM25 parameters of one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Length normalization (0: none, 1: full).
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

/// An inverted index over documents numbered by slot.
///
/// Two parts: a *base*, flat arrays as of the last compaction (postings by term, and
/// each document's terms by slot), which are built in one sequential pass, or read in
/// place from the stored file ([`Backing`]); and a *delta* of documents set since, in
/// hash maps, so that replacing one document costs its own terms only, whatever the
/// corpus size. A base document replaced or removed is marked stale and skipped. The
/// base is never changed in place: storing the index writes a new base (the delta
/// merged in) to a new file, which the index then reads instead ([`Field::rebase`]).
/// Should the delta grow before that (storing failing, or no store at all) to a quarter
/// of a base on the heap, or to the size of a mapped one, the two are merged into a new
/// base on the heap.
#[derive(Debug, Default, Clone)]
pub struct Field {
    /// term id → its base postings: `base[base_at[t]..base_at[t + 1]]`, (slot, term
    /// frequency) sorted by slot. The base document frequency of `t` is the length of
    /// its list.
    base_at: Backing<u32>,
    base: Backing<(u32, u32)>,
    /// slot → its base document: `docs_base[docs_at[s]..docs_at[s + 1]]`, (term id,
    /// frequency) sorted by term.
    docs_at: Backing<u32>,
    docs_base: Backing<(u32, u32)>,
    /// slot → whether its base document no longer counts.
    stale: Vec<bool>,
    /// term id → (slot → term frequency) of the documents set since the base was made.
    delta: HashMap<u32, HashMap<u32, u32>>,
    /// slot → the (term id, frequency) pairs of a document set since the base was made.
    delta_docs: HashMap<u32, Vec<(u32, u32)>>,
    delta_pairs: usize,
    /// term id → how many live documents hold it, less its base document frequency
    /// (only terms where the two differ).
    df_delta: HashMap<u32, i64>,
    /// slot → the document's length in terms.
    lens: Vec<u32>,
    total_len: u64,
    docs: u32,
    /// Slots set or cleared since [`Field::mark`], while a snapshot is being stored.
    touched: Option<HashSet<u32>>,
}

/// A field's base as stored: the four arrays, every id checked against its table by
/// [`Field::from_base`].
#[derive(Debug, Default, Clone)]
pub struct BaseArrays {
    /// term id → start of its postings (one more entry than terms).
    pub base_at: Backing<u32>,
    /// (slot, frequency) postings, by term then slot.
    pub base: Backing<(u32, u32)>,
    /// slot → start of its document (one more entry than slots).
    pub docs_at: Backing<u32>,
    /// (term id, frequency) pairs, by slot then term.
    pub docs_base: Backing<(u32, u32)>,
}

/// Documents laid end to end by slot, each a list of (term id, frequency) sorted by
/// term: what [`Field::from_flat`] makes a base of. A large build spills them to a
/// file instead ([`Documents::spill_to`]), which is written as it goes and stored from
/// there ([`SpilledDocuments`]).
#[derive(Debug)]
pub struct Documents {
    at: Vec<u32>,
    pairs: Vec<(u32, u32)>,
    spill: Option<SpillOut>,
}

/// Where spilled documents are being written.
#[derive(Debug)]
struct SpillOut {
    out: std::io::BufWriter<std::fs::File>,
    /// Pairs written so far.
    pairs: u64,
    /// The first write that failed: nothing is written after it, and
    /// [`Documents::into_spilled`] returns it.
    failed: Option<std::io::Error>,
    buf: Vec<u8>,
    /// CRC-32 of every byte written, for a build's checkpoint to record
    /// ([`Documents::sync_spill`]).
    crc: crc32fast::Hasher,
}

impl Default for Documents {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl Documents {
    /// Room for `slots` documents and `pairs` pairs in all.
    pub fn with_capacity(slots: usize, pairs: usize) -> Self {
        let mut at = Vec::with_capacity(slots + 1);
        at.push(0);
        Self {
            at,
            pairs: Vec::with_capacity(pairs),
            spill: None,
        }
    }

    /// Add the next slot's document. Offsets past 32 bits saturate, which
    /// [`Field::from_flat`] then refuses (its pair count no longer fits either), as
    /// storing spilled ones does.
    pub fn push(&mut self, doc: &[(u32, u32)]) {
        let Some(sp) = self.spill.as_mut() else {
            self.pairs.extend_from_slice(doc);
            self.at
                .push(u32::try_from(self.pairs.len()).unwrap_or(u32::MAX));
            return;
        };
        sp.pairs += doc.len() as u64;
        self.at.push(u32::try_from(sp.pairs).unwrap_or(u32::MAX));
        if sp.failed.is_none() {
            sp.buf.clear();
            for v in doc {
                v.put_le(&mut sp.buf);
            }
            sp.crc.update(&sp.buf);
            if let Err(e) = std::io::Write::write_all(&mut sp.out, &sp.buf) {
                sp.failed = Some(e);
            }
        }
    }

    /// How many (term, frequency) pairs the documents hold.
    pub fn pairs(&self) -> u64 {
        self.spill
            .as_ref()
            .map_or(self.pairs.len() as u64, |sp| sp.pairs)
    }

    /// Whether the documents go to a file ([`Documents::spill_to`]).
    pub fn is_spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// Write the documents so far to `file` (empty, read and write, which nothing else
    /// writes) and the next ones after them as they come: only their offsets stay in
    /// memory.
    pub fn spill_to(&mut self, file: std::fs::File) -> std::io::Result<()> {
        if self.spill.is_some() {
            return Ok(());
        }
        let mut sp = SpillOut {
            out: std::io::BufWriter::with_capacity(SPILL_BUFFER, file),
            pairs: self.pairs.len() as u64,
            failed: None,
            buf: Vec::new(),
            crc: crc32fast::Hasher::new(),
        };
        for chunk in self.pairs.chunks(SPILL_BUFFER / 8) {
            sp.buf.clear();
            for v in chunk {
                v.put_le(&mut sp.buf);
            }
            sp.crc.update(&sp.buf);
            std::io::Write::write_all(&mut sp.out, &sp.buf)?;
        }
        self.pairs = Vec::new();
        self.spill = Some(sp);
        Ok(())
    }

    /// Spilled documents taken up again from a checkpoint: `file` holds the pairs of
    /// the documents `at` delimits, exactly (`crc` their CRC-32), and the next ones are
    /// written after them.
    pub fn resume_spilled(
        mut file: std::fs::File,
        at: Vec<u32>,
        crc: u32,
    ) -> std::io::Result<Self> {
        use std::io::Seek;
        let pairs = u64::from(*at.last().unwrap_or(&0));
        file.seek(std::io::SeekFrom::Start(pairs * 8))?;
        Ok(Self {
            at,
            pairs: Vec::new(),
            spill: Some(SpillOut {
                out: std::io::BufWriter::with_capacity(SPILL_BUFFER, file),
                pairs,
                failed: None,
                buf: Vec::new(),
                crc: crc32fast::Hasher::new_with_initial_len(crc, pairs * 8),
            }),
        })
    }

    /// Write out what the spill file's buffer holds and make it durable: the file's
    /// length in bytes and their CRC-32, for a checkpoint to record. `None` for
    /// documents held in memory.
    pub fn sync_spill(&mut self) -> Option<std::io::Result<(u64, u32)>> {
        let sp = self.spill.as_mut()?;
        if let Some(e) = &sp.failed {
            return Some(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        let synced = std::io::Write::flush(&mut sp.out).and_then(|()| sp.out.get_ref().sync_data());
        Some(synced.map(|()| (sp.pairs * 8, sp.crc.clone().finalize())))
    }

    /// The spilled documents, written out whole; an error when a write failed or the
    /// documents were never spilled.
    pub fn into_spilled(self) -> std::io::Result<SpilledDocuments> {
        let Some(sp) = self.spill else {
            return Err(std::io::Error::other(
                "documents held in memory, not spilled",
            ));
        };
        if let Some(e) = sp.failed {
            return Err(e);
        }
        let file = sp.out.into_inner().map_err(|e| e.into_error())?;
        let mut at = self.at;
        at.shrink_to_fit();
        Ok(SpilledDocuments {
            file,
            at,
            pairs: sp.pairs,
        })
    }

    /// How many documents there are.
    pub fn len(&self) -> usize {
        self.at.len() - 1
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why stored base arrays were refused.
pub type BaseError = &'static str;

/// A hash of one posting, summed (wrapping) over a field's postings and over its
/// documents: equal sums, with equal counts per term and both sides sorted, say that
/// the postings are the documents' transposition (up to a collision of this mixer,
/// which damage does not aim at: the file's checksum is the check against damage).
fn posting_hash(term: u32, slot: u32, tf: u32) -> u64 {
    let mut x = (u64::from(term) << 32 | u64::from(slot)) ^ u64::from(tf).rotate_left(17);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Values of a mapped array a check reads from start to end before letting go of
/// their pages: the check of a stored field holds this much of it at a time, not the
/// whole field.
const RELEASE_WINDOW: usize = 1 << 20;

/// The pages behind a pass over a mapped array, let go of a window at a time.
struct Behind<'a, T: Plain> {
    array: &'a Backing<T>,
    done: usize,
}

impl<'a, T: Plain> Behind<'a, T> {
    fn new(array: &'a Backing<T>) -> Self {
        Self { array, done: 0 }
    }

    /// The pass has read every value before `i`.
    fn at(&mut self, i: usize) {
        if i >= self.done + RELEASE_WINDOW {
            self.array.release(self.done..i);
            self.done = i;
        }
    }

    /// The pass has read the whole array.
    fn end(&mut self) {
        self.array.release(self.done..self.array.len());
        self.done = self.array.len();
    }
}

/// Document `slot`: its delta document if it has one, else its base document unless
/// stale, else none.
fn document<'a>(
    delta_docs: &'a HashMap<u32, Vec<(u32, u32)>>,
    docs_at: &'a Backing<u32>,
    docs_base: &'a Backing<(u32, u32)>,
    stale: &[bool],
    slot: u32,
) -> &'a [(u32, u32)] {
    if let Some(d) = delta_docs.get(&slot) {
        return d;
    }
    let s = slot as usize;
    if s + 1 < docs_at.len() && !stale[s] {
        return &docs_base[docs_at[s] as usize..docs_at[s + 1] as usize];
    }
    &[]
}

impl Field {
    /// Replace the terms of document `slot` (an empty list removes it from the field).
    pub fn set(&mut self, slot: u32, terms: Vec<(u32, u32)>) {
        self.clear(slot);
        if let Some(t) = self.touched.as_mut() {
            t.insert(slot);
        }
        let s = slot as usize;
        if self.lens.len() <= s {
            self.lens.resize(s + 1, 0);
        }
        if terms.is_empty() {
            return;
        }
        let mut len = 0u32;
        for &(t, tf) in &terms {
            self.bump_df(t, 1);
            self.delta.entry(t).or_default().insert(slot, tf);
            len += tf;
        }
        self.lens[s] = len;
        self.total_len += len as u64;
        self.docs += 1;
        self.delta_pairs += terms.len();
        self.delta_docs.insert(slot, terms);
        // A base on the heap is merged with the delta once the delta holds a quarter as
        // many postings. A mapped one is merged by storing the index (a new file), not
        // here: merging would bring the whole field onto the heap, three times what
        // the delta takes. Only a delta as large as the base itself (storing failing
        // for long) is merged on the heap, so that queries stay fast.
        let limit = if self.base.is_mapped() {
            self.base.len()
        } else {
            self.base.len() / 4
        };
        if self.delta_pairs > limit.max(1 << 16) {
            self.compact();
        }
    }

    fn bump_df(&mut self, t: u32, by: i64) {
        let e = self.df_delta.entry(t).or_default();
        *e += by;
        if *e == 0 {
            self.df_delta.remove(&t);
        }
    }

    /// Remove document `slot` from the field.
    pub fn clear(&mut self, slot: u32) {
        if let Some(t) = self.touched.as_mut() {
            t.insert(slot);
        }
        let s = slot as usize;
        if let Some(old) = self.delta_docs.remove(&slot) {
            for &(t, _) in &old {
                self.bump_df(t, -1);
                if let Some(post) = self.delta.get_mut(&t) {
                    post.remove(&slot);
                    if post.is_empty() {
                        self.delta.remove(&t);
                    }
                }
            }
            self.delta_pairs -= old.len();
        } else if s + 1 < self.docs_at.len() && !self.stale[s] {
            self.stale[s] = true;
            let (a, b) = (self.docs_at[s] as usize, self.docs_at[s + 1] as usize);
            if a == b {
                return;
            }
            let docs_base = self.docs_base.clone();
            for &(t, _) in &docs_base[a..b] {
                self.bump_df(t, -1);
            }
        } else {
            return;
        }
        self.total_len -= self.lens[s] as u64;
        self.lens[s] = 0;
        self.docs -= 1;
    }

    /// Merge the delta into a new base on the heap (one pass over every document).
    pub fn compact(&mut self) {
        // A base alone, all of it live and spanning every slot, is what merging would
        // make again.
        if self.delta_docs.is_empty()
            && !self.stale.contains(&true)
            && self.docs_at.len() == self.lens.len() + 1
        {
            return;
        }
        let slots = self.lens.len();
        let documents: Vec<Vec<(u32, u32)>> = (0..slots as u32)
            .map(|s| self.terms_of(s).to_vec())
            .collect();
        let terms = self.term_bound();
        let touched = self.touched.take();
        *self = Self::from_documents(documents, terms).expect("documents the field holds");
        self.touched = touched;
    }

    /// One past the highest term id the field may hold postings for.
    pub fn term_bound(&self) -> u32 {
        let base = self.base_at.len().saturating_sub(1) as u32;
        let delta = self.delta.keys().max().map_or(0, |&t| t + 1);
        base.max(delta)
    }

    /// Called once the dictionary no longer hands out term ids from `bound` on: no
    /// live document holds them (stale base postings may, and are skipped). Nothing is
    /// kept per id beyond the base's own table, so there is nothing to drop: a term's
    /// count is its base count plus a correction kept only where they differ, and an
    /// id handed out again starts from the corrected count.
    pub fn truncate_terms(&mut self, bound: u32) {
        debug_assert!((bound..self.term_bound()).all(|t| self.df(t) == 0));
    }

    /// A field holding `documents` (by slot, each sorted by term id, as
    /// [`Field::terms_of`] gives them) over term ids below `terms`, all in its base.
    /// `None` when a document is not sorted or names a term id out of range, or the
    /// field is too large for the stored format's 32-bit offsets.
    pub fn from_documents(documents: Vec<Vec<(u32, u32)>>, terms: u32) -> Option<Self> {
        let pairs: usize = documents.iter().map(Vec::len).sum();
        let mut docs = Documents::with_capacity(documents.len(), pairs);
        for d in documents {
            docs.push(&d);
        }
        Self::from_flat(docs, terms)
    }

    /// [`Field::from_documents`] from documents already laid end to end, which become
    /// the base's documents as they are (a build adds each file's terms there as it
    /// reads it, so the corpus's pairs are never held twice over).
    pub fn from_flat(documents: Documents, terms: u32) -> Option<Self> {
        if documents.is_spilled() {
            return None;
        }
        let Documents {
            at: mut docs_at,
            pairs: mut docs_base,
            ..
        } = documents;
        docs_at.shrink_to_fit();
        docs_base.shrink_to_fit();
        let slots = docs_at.len().saturating_sub(1);
        let mut df = vec![0u32; terms as usize];
        let mut lens = Vec::with_capacity(slots);
        let mut total_len = 0u64;
        let mut docs = 0u32;
        let pairs = docs_base.len();
        u32::try_from(pairs).ok()?;
        for slot in 0..slots {
            let d = &docs_base[docs_at[slot] as usize..docs_at[slot + 1] as usize];
            if !d.windows(2).all(|w| w[0].0 < w[1].0) {
                return None;
            }
            let mut len = 0u32;
            for &(t, tf) in d {
                *df.get_mut(t as usize)? += 1;
                len = len.checked_add(tf)?;
            }
            docs += u32::from(!d.is_empty());
            total_len += len as u64;
            lens.push(len);
        }
        // Postings by a counting sort: slots are visited in order, so each term's
        // postings come out sorted by slot.
        let mut base_at = Vec::with_capacity(df.len() + 1);
        base_at.push(0u32);
        for &n in &df {
            base_at.push(base_at.last().unwrap() + n);
        }
        drop(df);
        let mut next = base_at.clone();
        let mut base = vec![(0u32, 0u32); pairs];
        for slot in 0..lens.len() {
            for &(t, tf) in &docs_base[docs_at[slot] as usize..docs_at[slot + 1] as usize] {
                let at = &mut next[t as usize];
                base[*at as usize] = (slot as u32, tf);
                *at += 1;
            }
        }
        let a = BaseArrays {
            base_at: base_at.into(),
            base: base.into(),
            docs_at: docs_at.into(),
            docs_base: docs_base.into(),
        };
        Some(Self::with_base(a, lens, total_len, docs))
    }

    /// A field of base `a` alone (no delta), whose documents' lengths, their sum and
    /// the count of non-empty ones are given.
    fn with_base(a: BaseArrays, lens: Vec<u32>, total_len: u64, docs: u32) -> Self {
        Self {
            base_at: a.base_at,
            base: a.base,
            docs_at: a.docs_at,
            docs_base: a.docs_base,
            stale: vec![false; lens.len()],
            delta: HashMap::new(),
            delta_docs: HashMap::new(),
            delta_pairs: 0,
            df_delta: HashMap::new(),
            lens,
            total_len,
            docs,
            touched: None,
        }
    }

    /// A field whose base is `a` (as stored, e.g. read in place from a mapped file),
    /// over `slots` slots and term ids below `terms`; `known[t]` says whether term id
    /// `t` is in the dictionary and `free[s]` whether slot `s` is free. Every array is
    /// checked: offsets in order and in bounds, ids in range, lists sorted, and the
    /// postings the transposition of the documents; `Err` says what failed.
    pub fn from_base(
        a: BaseArrays,
        terms: u32,
        known: &[bool],
        free: &[bool],
    ) -> Result<Self, BaseError> {
        let slots = free.len();
        let (base_at, base, docs_at, docs_base) = (&a.base_at, &a.base, &a.docs_at, &a.docs_base);
        if base_at.len() != terms as usize + 1 || docs_at.len() != slots + 1 {
            return Err("a field's tables are not of the dictionary's or the slots' size");
        }
        let offsets_ok = |at: &[u32], end: usize| {
            at[0] == 0 && at[at.len() - 1] as usize == end && at.windows(2).all(|w| w[0] <= w[1])
        };
        if !offsets_ok(base_at, base.len()) || !offsets_ok(docs_at, docs_base.len()) {
            return Err("a field's offsets out of order or bounds");
        }
        if base.len() != docs_base.len() {
            return Err("a field's postings and documents differ in size");
        }
        let mut lens = Vec::with_capacity(slots);
        let mut total_len = 0u64;
        let mut docs = 0u32;
        let mut from_docs = 0u64;
        let mut df = vec![0u32; terms as usize];
        let mut docs_behind = Behind::new(docs_base);
        for s in 0..slots {
            docs_behind.at(docs_at[s] as usize);
            let d = &docs_base[docs_at[s] as usize..docs_at[s + 1] as usize];
            if free[s] && !d.is_empty() {
                return Err("terms for a free slot");
            }
            let mut len = 0u32;
            let mut prev = None;
            for &(t, tf) in d {
                if known.get(t as usize) != Some(&true) {
                    return Err("an unknown term id");
                }
                if prev.is_some_and(|p| p >= t) {
                    return Err("a document's terms out of order");
                }
                if tf == 0 {
                    return Err("a term counted zero times");
                }
                prev = Some(t);
                len = len.checked_add(tf).ok_or("a document too long")?;
                df[t as usize] += 1;
                from_docs = from_docs.wrapping_add(posting_hash(t, s as u32, tf));
            }
            docs += u32::from(!d.is_empty());
            total_len += len as u64;
            lens.push(len);
        }
        docs_behind.end();
        let mut from_postings = 0u64;
        let mut postings_behind = Behind::new(base);
        for t in 0..terms as usize {
            postings_behind.at(base_at[t] as usize);
            let p = &base[base_at[t] as usize..base_at[t + 1] as usize];
            if p.len() != df[t] as usize {
                return Err("a term's postings and documents disagree");
            }
            let mut prev = None;
            for &(s, tf) in p {
                if s as usize >= slots || prev.is_some_and(|p| p >= s) {
                    return Err("a posting's slot out of order or range");
                }
                prev = Some(s);
                from_postings = from_postings.wrapping_add(posting_hash(t as u32, s, tf));
            }
        }
        postings_behind.end();
        if from_postings != from_docs {
            return Err("a field's postings are not its documents'");
        }
        Ok(Self::with_base(a, lens, total_len, docs))
    }

    /// Start noting which slots are set or cleared from now on (a snapshot of the
    /// field is being stored; see [`Field::rebase`]).
    pub fn mark(&mut self) {
        self.touched = Some(HashSet::new());
    }

    /// Whether a snapshot is pending ([`Field::mark`]).
    pub fn is_marked(&self) -> bool {
        self.touched.is_some()
    }

    /// Stop noting changes: the pending snapshot will not be moved onto.
    pub fn unmark(&mut self) {
        self.touched = None;
    }

    /// Move onto `base`, the stored base of a snapshot taken at the last
    /// [`Field::mark`]: every document set or cleared since is carried over onto it.
    /// `None` (and `self` unchanged) when there was no mark.
    pub fn rebase(&mut self, mut base: Field) -> Option<()> {
        let touched = self.touched.take()?;
        let mut touched: Vec<u32> = touched.into_iter().collect();
        touched.sort_unstable();
        for slot in touched {
            base.set(slot, self.terms_of(slot).to_vec());
        }
        if base.lens.len() < self.lens.len() {
            base.lens.resize(self.lens.len(), 0);
        }
        *self = base;
        Some(())
    }

    /// The document's (term id, frequency) pairs.
    pub fn terms_of(&self, slot: u32) -> &[(u32, u32)] {
        document(
            &self.delta_docs,
            &self.docs_at,
            &self.docs_base,
            &self.stale,
            slot,
        )
    }

    /// How many base documents held `term` when the base was made.
    fn base_df(&self, term: u32) -> usize {
        let t = term as usize;
        if t + 1 < self.base_at.len() {
            (self.base_at[t + 1] - self.base_at[t]) as usize
        } else {
            0
        }
    }

    /// How many documents hold `term`.
    pub fn df(&self, term: u32) -> usize {
        let d = self.df_delta.get(&term).copied().unwrap_or(0);
        (self.base_df(term) as i64 + d).max(0) as usize
    }

    /// Inverse document frequency of `term` among `n` documents (BM25's, never negative).
    pub fn idf(&self, term: u32, n: usize) -> f32 {
        let df = self.df(term) as f32;
        (1.0 + (n as f32 - df + 0.5) / (df + 0.5)).ln()
    }

    /// Add `weight` × BM25(term) to `acc[slot]` for every document holding `term`.
    /// `n` is the number of documents in the corpus (not only those with this field),
    /// so that a term in a sparse field is not judged rare merely for the field's size.
    pub fn accumulate(&self, term: u32, weight: f32, p: Bm25, n: usize, acc: &mut [f32]) {
        if self.df(term) == 0 || self.docs == 0 {
            return;
        }
        let idf = self.idf(term, n);
        let avg = (self.total_len as f32 / self.docs as f32).max(1.0);
        let mut add = |slot: u32, tf: u32| {
            let tf = tf as f32;
            let norm = 1.0 - p.b + p.b * self.lens[slot as usize] as f32 / avg;
            acc[slot as usize] += weight * idf * tf * (p.k1 + 1.0) / (tf + p.k1 * norm);
        };
        let t = term as usize;
        if t + 1 < self.base_at.len() {
            let (a, b) = (self.base_at[t] as usize, self.base_at[t + 1] as usize);
            for &(slot, tf) in &self.base[a..b] {
                if !self.stale[slot as usize] {
                    add(slot, tf);
                }
            }
        }
        if let Some(post) = self.delta.get(&term) {
            for (&slot, &tf) in post {
                add(slot, tf);
            }
        }
    }

    /// The field as it is now, to store while the field itself moves on: the base is
    /// shared, the delta copied.
    pub fn snapshot(&self) -> FieldSnapshot {
        let mut delta: Vec<(u32, u32, u32)> = self
            .delta
            .iter()
            .flat_map(|(&t, post)| post.iter().map(move |(&s, &tf)| (t, s, tf)))
            .collect();
        delta.sort_unstable();
        FieldSnapshot {
            base_at: self.base_at.clone(),
            base: self.base.clone(),
            docs_at: self.docs_at.clone(),
            docs_base: self.docs_base.clone(),
            stale: self.stale.clone(),
            delta,
            delta_docs: self.delta_docs.clone(),
            slots: self.lens.len(),
        }
    }

    /// About how many bytes of heap the field holds.
    pub fn heap_bytes(&self) -> usize {
        let pair = size_of::<(u32, u32)>();
        self.base_at.heap_bytes()
            + self.base.heap_bytes()
            + self.docs_at.heap_bytes()
            + self.docs_base.heap_bytes()
            + self.stale.capacity()
            + self.delta.capacity() * (size_of::<(u32, HashMap<u32, u32>)>() + 1)
            + self
                .delta
                .values()
                .map(|p| p.capacity() * (pair + 1))
                .sum::<usize>()
            + self.delta_docs.capacity() * (size_of::<(u32, Vec<(u32, u32)>)>() + 1)
            + self
                .delta_docs
                .values()
                .map(|d| d.capacity() * pair)
                .sum::<usize>()
            + self.df_delta.capacity() * (size_of::<(u32, i64)>() + 1)
            + self.lens.capacity() * 4
            + self.touched.as_ref().map_or(0, |t| t.capacity() * 5)
    }

    /// Bytes of mapped file the field reads in place.
    pub fn mapped_bytes(&self) -> usize {
        self.base_at.mapped_bytes()
            + self.base.mapped_bytes()
            + self.docs_at.mapped_bytes()
            + self.docs_base.mapped_bytes()
    }
}

/// Bytes of buffer between spilled documents and their file, each way.
const SPILL_BUFFER: usize = 1 << 18;

/// A field's documents written to a file by [`Documents::spill_to`], their offsets in
/// memory: what a large build stores a field from without holding it. The postings
/// are made from them in passes over the file, each filling at most a budget of memory
/// ([`SpilledDocuments::for_each_postings`]).
#[derive(Debug)]
pub struct SpilledDocuments {
    /// (term id, frequency) pairs, little-endian, by slot then term.
    file: std::fs::File,
    /// slot → where its document starts in the file, in pairs (one more than slots).
    at: Vec<u32>,
    pairs: u64,
}

impl SpilledDocuments {
    /// How many slots (documents) there are.
    pub fn slots(&self) -> usize {
        self.at.len() - 1
    }

    /// Read the file from the start, handing each slot's document to `each(slot, doc)`,
    /// in order.
    fn read(&self, each: &mut EachPostings<'_>) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        if u32::try_from(self.pairs).is_err() {
            return Err(std::io::Error::other(
                "too large for the stored format's 32-bit offsets",
            ));
        }
        let mut file = &self.file;
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut r = std::io::BufReader::with_capacity(SPILL_BUFFER, file);
        let mut bytes = Vec::new();
        let mut doc = Vec::new();
        for s in 0..self.slots() {
            let n = (self.at[s + 1] - self.at[s]) as usize;
            bytes.resize(n * 8, 0);
            r.read_exact(&mut bytes)?;
            doc.clear();
            doc.extend(bytes.chunks_exact(8).map(<(u32, u32)>::from_le));
            each(s as u32, &doc)?;
        }
        Ok(())
    }

    /// Each document, in slot order.
    pub fn for_each_document(&self, each: &mut EachDocument<'_>) -> std::io::Result<()> {
        self.read(&mut |_, d| each(d))
    }

    /// Each term's postings, sorted by slot, for terms `0..terms` in order, as
    /// [`FieldSnapshot::for_each_postings`] gives a field's: one pass over the file
    /// counts each term's documents, then each further pass fills the postings of the
    /// next range of terms that fits in `budget` bytes (one term at least) and hands
    /// them on.
    pub fn for_each_postings(
        &self,
        terms: u32,
        budget: usize,
        each: &mut EachPostings<'_>,
    ) -> std::io::Result<()> {
        let unknown = || std::io::Error::other("a spilled document names an unknown term");
        let mut starts = vec![0u32; terms as usize + 1];
        self.read(&mut |_, d| {
            for &(t, _) in d {
                *starts.get_mut(t as usize + 1).ok_or_else(unknown)? += 1;
            }
            Ok(())
        })?;
        for t in 0..terms as usize {
            starts[t + 1] += starts[t];
        }
        let budget = (budget / size_of::<(u32, u32)>()).max(1);
        let mut buf: Vec<(u32, u32)> = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        let mut from = 0usize;
        while from < terms as usize {
            // The terms whose postings fit in the budget, one at least.
            let base = starts[from];
            let mut to = from + 1;
            while to < terms as usize && (starts[to + 1] - base) as usize <= budget {
                to += 1;
            }
            let n = (starts[to] - base) as usize;
            if n > 0 {
                buf.clear();
                buf.resize(n, (0, 0));
                next.clear();
                next.extend(starts[from..to].iter().map(|&a| a - base));
                self.read(&mut |slot, d| {
                    // A document's terms are sorted: those in range are one run.
                    let lo = d.partition_point(|p| (p.0 as usize) < from);
                    for &(t, tf) in &d[lo..] {
                        if t as usize >= to {
                            break;
                        }
                        let at = &mut next[t as usize - from];
                        buf[*at as usize] = (slot, tf);
                        *at += 1;
                    }
                    Ok(())
                })?;
            }
            for t in from..to {
                let (a, b) = ((starts[t] - base) as usize, (starts[t + 1] - base) as usize);
                each(t as u32, &buf[a..b])?;
            }
            from = to;
        }
        Ok(())
    }
}

/// What [`SpilledDocuments::for_each_document`] calls with each document.
pub type EachDocument<'a> = dyn FnMut(&[(u32, u32)]) -> std::io::Result<()> + 'a;

/// What [`FieldSnapshot::for_each_postings`] calls with each term and its postings.
pub type EachPostings<'a> = dyn FnMut(u32, &[(u32, u32)]) -> std::io::Result<()> + 'a;

/// A field as it was when [`Field::snapshot`] took it: what storing it writes.
#[derive(Debug, Clone)]
pub struct FieldSnapshot {
    base_at: Backing<u32>,
    base: Backing<(u32, u32)>,
    docs_at: Backing<u32>,
    docs_base: Backing<(u32, u32)>,
    stale: Vec<bool>,
    /// The delta's postings, (term, slot, frequency), sorted.
    delta: Vec<(u32, u32, u32)>,
    delta_docs: HashMap<u32, Vec<(u32, u32)>>,
    slots: usize,
}

impl FieldSnapshot {
    /// Span `slots` slots (the index's, which a field whose last slots never held a
    /// document may fall short of).
    pub fn span(&mut self, slots: usize) {
        self.slots = slots;
    }

    /// How many slots the field spans.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The document of `slot`, as [`Field::terms_of`].
    pub fn terms_of(&self, slot: u32) -> &[(u32, u32)] {
        document(
            &self.delta_docs,
            &self.docs_at,
            &self.docs_base,
            &self.stale,
            slot,
        )
    }

    /// Each term's live postings, sorted by slot, for terms `0..terms` in order:
    /// `each(term, postings)`. Base postings of stale documents are left out, the
    /// delta's merged in. Terms from `terms` on hold no live posting (the dictionary no
    /// longer hands them out).
    pub fn for_each_postings(
        &self,
        terms: u32,
        each: &mut EachPostings<'_>,
    ) -> std::io::Result<()> {
        let mut delta = self.delta.iter().peekable();
        let mut buf: Vec<(u32, u32)> = Vec::new();
        for t in 0..terms {
            buf.clear();
            let i = t as usize;
            let base: &[(u32, u32)] = if i + 1 < self.base_at.len() {
                &self.base[self.base_at[i] as usize..self.base_at[i + 1] as usize]
            } else {
                &[]
            };
            while delta.peek().is_some_and(|d| d.0 < t) {
                delta.next();
            }
            let mut base = base.iter().filter(|p| !self.stale[p.0 as usize]).peekable();
            loop {
                let d = delta.peek().filter(|d| d.0 == t);
                match (base.peek(), d) {
                    (Some(&&b), Some(&&(_, s, tf))) => {
                        if b.0 < s {
                            buf.push(b);
                            base.next();
                        } else {
                            buf.push((s, tf));
                            delta.next();
                        }
                    }
                    (Some(&&b), None) => {
                        buf.push(b);
                        base.next();
                    }
                    (None, Some(&&(_, s, tf))) => {
                        buf.push((s, tf));
                        delta.next();
                    }
                    (None, None) => break,
                }
            }
            each(t, &buf)?;
        }
        Ok(())
    }
}

/// Count terms into sorted (term id, frequency) pairs.
pub fn count(ids: impl IntoIterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut m: HashMap<u32, u32> = HashMap::new();
    for t in ids {
        *m.entry(t).or_default() += 1;
    }
    let mut v: Vec<(u32, u32)> = m.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_document_undoes_its_old_terms() {
        let mut f = Field::default();
        f.set(0, count([1, 1, 2]));
        f.set(1, count([2]));
        assert_eq!(f.df(2), 2);
        f.set(0, count([3]));
        assert_eq!((f.df(1), f.df(2), f.df(3)), (0, 1, 1));
        f.clear(1);
        f.clear(1);
        assert_eq!((f.df(2), f.docs, f.total_len), (0, 1, 1));
    }

    fn scores(f: &Field, term: u32, n: usize) -> Vec<f32> {
        let mut acc = vec![0.0; n];
        f.accumulate(term, 1.0, Bm25::default(), n, &mut acc);
        acc
    }

    // The base (flat, as loaded or compacted) and the delta (documents set since) must
    // answer exactly as one structure would: stale base documents skipped, replaced
    // ones counted once.
    #[test]
    fn base_and_delta_answer_as_one() {
        let docs = vec![
            count([1, 1, 2]),
            count([2, 3]),
            Vec::new(),
            count([1, 3, 3]),
        ];
        let mut f = Field::from_documents(docs.clone(), 4).unwrap();
        let mut g = Field::default();
        for (s, d) in docs.iter().enumerate() {
            g.set(s as u32, d.clone());
        }
        for t in 0..4 {
            assert_eq!(f.df(t), g.df(t));
            assert_eq!(scores(&f, t, 4), scores(&g, t, 4));
        }
        for x in [&mut f, &mut g] {
            x.set(0, count([3]));
            x.clear(1);
            x.set(2, count([2, 2]));
            x.set(5, count([1]));
        }
        for t in 0..4 {
            assert_eq!(f.df(t), g.df(t), "term {t}");
            assert_eq!(scores(&f, t, 6), scores(&g, t, 6), "term {t}");
        }
        assert_eq!(f.terms_of(0), &[(3, 1)]);
        assert_eq!(f.terms_of(1), &[]);
        assert_eq!(f.terms_of(3), &[(1, 1), (3, 2)]);
        let before: Vec<Vec<f32>> = (0..4).map(|t| scores(&f, t, 6)).collect();
        f.compact();
        assert_eq!((0..4).map(|t| scores(&f, t, 6)).collect::<Vec<_>>(), before);
        assert_eq!((f.docs, f.total_len), (g.docs, g.total_len));
        assert!(f.delta.is_empty() && f.delta_docs.is_empty());
    }

    // A term id the dictionary forgot and hands out again for a new term: the base
    // still lists the old term's (stale) postings under it, which must count for
    // nothing, not in the document frequency and not in the scores.
    #[test]
    fn a_reused_term_id_does_not_inherit_stale_base_postings() {
        let mut f = Field::from_documents(vec![count([5, 5, 1]), count([5, 2])], 6).unwrap();
        f.set(0, count([1]));
        f.clear(1);
        assert_eq!(f.df(5), 0);
        f.truncate_terms(5);
        f.set(2, count([5]));
        let mut g = Field::default();
        g.set(0, count([1]));
        g.set(2, count([5]));
        assert_eq!((f.df(5), g.df(5)), (1, 1));
        for t in [1, 2, 5] {
            assert_eq!(scores(&f, t, 3), scores(&g, t, 3), "term {t}");
        }
    }

    #[test]
    fn scores_favour_the_document_with_more_of_the_term() {
        let mut f = Field::default();
        f.set(0, count([1, 1, 2, 3]));
        f.set(1, count([1, 2, 3, 4]));
        let mut acc = vec![0.0; 2];
        f.accumulate(1, 1.0, Bm25::default(), 2, &mut acc);
        assert!(acc[0] > acc[1] && acc[1] > 0.0);
    }
}

//! One field of an inverted index (a file's body, its path, its definitions, the
//! messages of the commits that touched it), kept incrementally: a document's terms
//! can be replaced without touching any other document, and scored with BM25.

use std::collections::HashMap;

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
/// each document's terms by slot), which are built in one sequential pass and read
/// back from disk just as fast; and a *delta* of documents set since, in hash maps, so
/// that replacing one document costs its own terms only, whatever the corpus size. A
/// base document replaced or removed is marked stale and skipped. Once the delta holds
/// a quarter as many postings as the base, the two are merged into a new base.
#[derive(Debug, Default, Clone)]
pub struct Field {
    /// term id → its base postings: `base[base_at[t]..base_at[t + 1]]`, (slot, term
    /// frequency) sorted by slot.
    base_at: Vec<usize>,
    base: Vec<(u32, u32)>,
    /// slot → its base document: `docs_base[docs_at[s]..docs_at[s + 1]]`, (term id,
    /// frequency) sorted by term.
    docs_at: Vec<usize>,
    docs_base: Vec<(u32, u32)>,
    /// slot → whether its base document no longer counts.
    stale: Vec<bool>,
    /// term id → (slot → term frequency) of the documents set since the base was made.
    delta: HashMap<u32, HashMap<u32, u32>>,
    /// slot → the (term id, frequency) pairs of a document set since the base was made.
    delta_docs: HashMap<u32, Vec<(u32, u32)>>,
    delta_pairs: usize,
    /// term id → how many live documents (base or delta) hold it.
    df: Vec<u32>,
    /// slot → the document's length in terms.
    lens: Vec<u32>,
    total_len: u64,
    docs: u32,
}

impl Field {
    /// Replace the terms of document `slot` (an empty list removes it from the field).
    pub fn set(&mut self, slot: u32, terms: Vec<(u32, u32)>) {
        self.clear(slot);
        let s = slot as usize;
        if self.lens.len() <= s {
            self.lens.resize(s + 1, 0);
        }
        if terms.is_empty() {
            return;
        }
        let mut len = 0u32;
        for &(t, tf) in &terms {
            let t = t as usize;
            if self.df.len() <= t {
                self.df.resize(t + 1, 0);
            }
            self.df[t] += 1;
            self.delta.entry(t as u32).or_default().insert(slot, tf);
            len += tf;
        }
        self.lens[s] = len;
        self.total_len += len as u64;
        self.docs += 1;
        self.delta_pairs += terms.len();
        self.delta_docs.insert(slot, terms);
        if self.delta_pairs > (self.base.len() / 4).max(1 << 16) {
            self.compact();
        }
    }

    /// Remove document `slot` from the field.
    pub fn clear(&mut self, slot: u32) {
        let s = slot as usize;
        if let Some(old) = self.delta_docs.remove(&slot) {
            for &(t, _) in &old {
                self.df[t as usize] -= 1;
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
            let (a, b) = (self.docs_at[s], self.docs_at[s + 1]);
            if a == b {
                return;
            }
            for &(t, _) in &self.docs_base[a..b] {
                self.df[t as usize] -= 1;
            }
        } else {
            return;
        }
        self.total_len -= self.lens[s] as u64;
        self.lens[s] = 0;
        self.docs -= 1;
    }

    /// Merge the delta into a new base (one pass over every document).
    pub fn compact(&mut self) {
        let slots = self.lens.len();
        let documents: Vec<Vec<(u32, u32)>> = (0..slots as u32)
            .map(|s| self.terms_of(s).to_vec())
            .collect();
        let terms = self.df.len() as u32;
        *self = Self::from_documents(documents, terms).expect("documents the field holds");
    }

    /// Drop the counts of term ids from `bound` on, once the dictionary no longer
    /// hands them out (no live document holds them; stale base postings may, and are
    /// skipped).
    pub fn truncate_terms(&mut self, bound: u32) {
        debug_assert!(self.df.iter().skip(bound as usize).all(|&n| n == 0));
        let keep = (bound as usize).max(self.base_at.len().saturating_sub(1));
        self.df.truncate(keep);
        self.df.shrink_to_fit();
    }

    /// A field holding `documents` (by slot, each sorted by term id, as
    /// [`Field::terms_of`] gives them) over term ids below `terms`, all in its base.
    /// `None` when a document is not sorted or names a term id out of range.
    pub fn from_documents(documents: Vec<Vec<(u32, u32)>>, terms: u32) -> Option<Self> {
        let mut df = vec![0u32; terms as usize];
        let mut lens = Vec::with_capacity(documents.len());
        let mut docs_at = Vec::with_capacity(documents.len() + 1);
        let mut total_len = 0u64;
        let mut docs = 0u32;
        let pairs: usize = documents.iter().map(Vec::len).sum();
        let mut docs_base = Vec::with_capacity(pairs);
        docs_at.push(0);
        for d in &documents {
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
            docs_base.extend_from_slice(d);
            docs_at.push(docs_base.len());
        }
        drop(documents);
        // Postings by a counting sort: slots are visited in order, so each term's
        // postings come out sorted by slot.
        let mut base_at = Vec::with_capacity(df.len() + 1);
        base_at.push(0usize);
        for &n in &df {
            base_at.push(base_at.last().unwrap() + n as usize);
        }
        let mut next = base_at.clone();
        let mut base = vec![(0u32, 0u32); pairs];
        for slot in 0..lens.len() {
            for &(t, tf) in &docs_base[docs_at[slot]..docs_at[slot + 1]] {
                let at = &mut next[t as usize];
                base[*at] = (slot as u32, tf);
                *at += 1;
            }
        }
        Some(Self {
            base_at,
            base,
            stale: vec![false; lens.len()],
            docs_at,
            docs_base,
            delta: HashMap::new(),
            delta_docs: HashMap::new(),
            delta_pairs: 0,
            df,
            lens,
            total_len,
            docs,
        })
    }

    /// The document's (term id, frequency) pairs.
    pub fn terms_of(&self, slot: u32) -> &[(u32, u32)] {
        if let Some(d) = self.delta_docs.get(&slot) {
            return d;
        }
        let s = slot as usize;
        if s + 1 < self.docs_at.len() && !self.stale[s] {
            return &self.docs_base[self.docs_at[s]..self.docs_at[s + 1]];
        }
        &[]
    }

    /// How many documents hold `term`.
    pub fn df(&self, term: u32) -> usize {
        self.df.get(term as usize).map_or(0, |&n| n as usize)
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
            for &(slot, tf) in &self.base[self.base_at[t]..self.base_at[t + 1]] {
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

    /// About how many bytes of heap the field holds.
    pub fn heap_bytes(&self) -> usize {
        let pair = size_of::<(u32, u32)>();
        (self.base_at.capacity() + self.docs_at.capacity()) * size_of::<usize>()
            + (self.base.capacity() + self.docs_base.capacity()) * pair
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
            + (self.df.capacity() + self.lens.capacity()) * 4
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

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
#[derive(Debug, Default, Clone)]
pub struct Field {
    /// term id → (slot → term frequency). A map per term, not a sorted list, so that
    /// replacing one document costs its own terms only, whatever the corpus size.
    postings: Vec<HashMap<u32, u32>>,
    /// slot → the document's (term id, frequency) pairs, to undo them on replacement.
    forward: Vec<Vec<(u32, u32)>>,
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
        if self.forward.len() <= s {
            self.forward.resize_with(s + 1, Vec::new);
            self.lens.resize(s + 1, 0);
        }
        if terms.is_empty() {
            return;
        }
        let mut len = 0u32;
        for &(t, tf) in &terms {
            let t = t as usize;
            if self.postings.len() <= t {
                self.postings.resize_with(t + 1, HashMap::new);
            }
            self.postings[t].insert(slot, tf);
            len += tf;
        }
        self.lens[s] = len;
        self.total_len += len as u64;
        self.docs += 1;
        self.forward[s] = terms;
    }

    /// Remove document `slot` from the field.
    pub fn clear(&mut self, slot: u32) {
        let s = slot as usize;
        let Some(old) = self.forward.get_mut(s) else {
            return;
        };
        if old.is_empty() {
            return;
        }
        for (t, _) in std::mem::take(old) {
            let post = &mut self.postings[t as usize];
            post.remove(&slot);
            if post.is_empty() {
                // A term no document holds any more keeps no allocation: terms come
                // and go (numbers, names) for as long as the index lives.
                *post = HashMap::new();
            }
        }
        self.total_len -= self.lens[s] as u64;
        self.lens[s] = 0;
        self.docs -= 1;
    }

    /// Drop the (empty) postings of term ids from `bound` on, once the dictionary no
    /// longer hands them out.
    pub fn truncate_terms(&mut self, bound: u32) {
        debug_assert!(
            self.postings
                .iter()
                .skip(bound as usize)
                .all(HashMap::is_empty)
        );
        self.postings.truncate(bound as usize);
        self.postings.shrink_to_fit();
    }

    /// Every document's (term id, frequency) pairs, by slot.
    pub fn documents(&self) -> &[Vec<(u32, u32)>] {
        &self.forward
    }

    /// A field holding `documents` (by slot, each sorted by term id, as [`Field::documents`]
    /// gives them) over term ids below `terms`. `None` when a document is not sorted or
    /// names a term id out of range.
    pub fn from_documents(documents: Vec<Vec<(u32, u32)>>, terms: u32) -> Option<Self> {
        let mut df = vec![0u32; terms as usize];
        let mut lens = Vec::with_capacity(documents.len());
        let mut total_len = 0u64;
        let mut docs = 0u32;
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
        }
        // Sized up front: growing millions of small maps one insert at a time would
        // rehash each several times.
        let mut postings: Vec<HashMap<u32, u32>> = df
            .iter()
            .map(|&n| HashMap::with_capacity(n as usize))
            .collect();
        for (slot, d) in documents.iter().enumerate() {
            for &(t, tf) in d {
                postings[t as usize].insert(slot as u32, tf);
            }
        }
        Some(Self {
            postings,
            forward: documents,
            lens,
            total_len,
            docs,
        })
    }

    /// About how many bytes of heap the field holds.
    pub fn heap_bytes(&self) -> usize {
        let pair = size_of::<(u32, u32)>();
        self.postings.capacity() * size_of::<HashMap<u32, u32>>()
            + self
                .postings
                .iter()
                .map(|p| p.capacity() * (pair + 1))
                .sum::<usize>()
            + self.forward.capacity() * size_of::<Vec<(u32, u32)>>()
            + self
                .forward
                .iter()
                .map(|d| d.capacity() * pair)
                .sum::<usize>()
            + self.lens.capacity() * 4
    }

    /// The document's (term id, frequency) pairs.
    pub fn terms_of(&self, slot: u32) -> &[(u32, u32)] {
        self.forward
            .get(slot as usize)
            .map_or(&[], |v| v.as_slice())
    }

    /// How many documents hold `term`.
    pub fn df(&self, term: u32) -> usize {
        self.postings.get(term as usize).map_or(0, HashMap::len)
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
        let Some(post) = self.postings.get(term as usize) else {
            return;
        };
        if post.is_empty() || self.docs == 0 {
            return;
        }
        let idf = self.idf(term, n);
        let avg = (self.total_len as f32 / self.docs as f32).max(1.0);
        for (&slot, &tf) in post {
            let tf = tf as f32;
            let norm = 1.0 - p.b + p.b * self.lens[slot as usize] as f32 / avg;
            acc[slot as usize] += weight * idf * tf * (p.k1 + 1.0) / (tf + p.k1 * norm);
        }
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

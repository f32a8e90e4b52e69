//! The term dictionary: each distinct term a small id, reused once no file and no kept
//! commit holds the term any more, so a long-running index does not keep every term it
//! ever saw (a file rewritten with a new number in it adds a term each time).

use std::collections::HashMap;

use super::backing::Backing;

/// foldhash, seeded per map: several times faster than SipHash on short strings, and
/// still seeded at random so that crafted file contents cannot aim collisions.
type Hasher = foldhash::fast::RandomState;

/// Terms sorted by their bytes, each with its id, in three flat arrays (owned, or read
/// in place from the stored file): looked up by binary search.
#[derive(Debug, Default, Clone)]
pub struct SortedTerms {
    /// The terms' bytes, one after the other in sorted order.
    bytes: Backing<u8>,
    /// Where each term starts in `bytes`, and where the last ends (one more entry than
    /// terms; empty when there are none).
    at: Backing<u32>,
    /// Each term's id.
    ids: Backing<u32>,
}

impl SortedTerms {
    /// How many terms there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `i`th term in sorted order.
    pub fn term(&self, i: usize) -> &[u8] {
        &self.bytes[self.at[i] as usize..self.at[i + 1] as usize]
    }

    /// The `i`th term's id.
    pub fn id(&self, i: usize) -> u32 {
        self.ids[i]
    }

    fn find(&self, term: &[u8]) -> Option<u32> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.term(mid).cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.ids[mid]),
            }
        }
        None
    }

    /// Terms from their stored arrays, each checked: offsets in order and in bounds,
    /// terms non-empty, UTF-8, strictly ascending (so each is stored once), ids below
    /// `bound` and each used once. Also returns which ids below `bound` are used.
    pub fn from_arrays(
        bytes: Backing<u8>,
        at: Backing<u32>,
        ids: Backing<u32>,
        bound: u32,
    ) -> Result<(Self, Vec<bool>), &'static str> {
        let n = ids.len();
        let offsets = if n == 0 {
            at.is_empty() || at.len() == 1 && at[0] == 0
        } else {
            at.len() == n + 1 && at[0] == 0 && at[n] as usize == bytes.len()
        };
        if !offsets || (n == 0 && !bytes.is_empty()) {
            return Err("the terms' offsets do not match their bytes");
        }
        if !at.windows(2).all(|w| w[0] < w[1]) {
            return Err("a term empty or out of place");
        }
        let t = Self { bytes, at, ids };
        let mut used = vec![false; bound as usize];
        for i in 0..n {
            if std::str::from_utf8(t.term(i)).is_err() {
                return Err("a term not UTF-8");
            }
            if i > 0 && t.term(i - 1) >= t.term(i) {
                return Err("terms out of order, or one stored twice");
            }
            match used.get_mut(t.ids[i] as usize) {
                Some(u) if !*u => *u = true,
                _ => return Err("a term id out of range or used twice"),
            }
        }
        Ok((t, used))
    }

    /// Sorted terms from the base `base` less the ids `removed` marks, merged with
    /// `overlay` (sorted). `None` when they do not fit the stored format's 32-bit
    /// offsets.
    fn merged<S: AsRef<str>>(base: &Self, removed: &[u64], overlay: &[(S, u32)]) -> Option<Self> {
        let mut bytes = Vec::new();
        let mut at = vec![0u32];
        let mut ids = Vec::new();
        merge(base, removed, overlay, &mut |t, id| {
            bytes.extend_from_slice(t);
            at.push(u32::try_from(bytes.len()).map_err(std::io::Error::other)?);
            ids.push(id);
            Ok(())
        })
        .ok()?;
        bytes.shrink_to_fit();
        at.shrink_to_fit();
        ids.shrink_to_fit();
        Some(Self {
            bytes: bytes.into(),
            at: at.into(),
            ids: ids.into(),
        })
    }

    /// The arrays, to store.
    pub fn arrays(&self) -> (&[u8], &[u32], &[u32]) {
        (&self.bytes, &self.at, &self.ids)
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.heap_bytes() + self.at.heap_bytes() + self.ids.heap_bytes()
    }

    fn mapped_bytes(&self) -> usize {
        self.bytes.mapped_bytes() + self.at.mapped_bytes() + self.ids.mapped_bytes()
    }
}

/// Terms numbered in the order they are first seen, for building: the bytes of every
/// term in one buffer and an open-addressed table of ids, so a term costs its bytes and
/// about twelve more, where a hash map of `String`s costs an allocation and forty
/// bytes. A build's dictionary has millions of terms; this one also serves per file,
/// emptied between files, for the terms of one file.
#[derive(Debug, Default)]
pub struct TermTable {
    /// The terms' bytes, in id order.
    bytes: Vec<u8>,
    /// Where term `id` ends in `bytes` (it starts where `id - 1` ends).
    ends: Vec<u32>,
    /// id + 1 at each used position, 0 at a free one; a power of two long.
    table: Vec<u32>,
    hasher: Hasher,
}

impl TermTable {
    /// How many terms there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The term of `id`.
    pub fn term(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    fn hash(&self, term: &[u8]) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(term) as usize
    }

    /// The id of `term`, numbering it next if it is new. `None` once the terms' bytes
    /// pass the stored format's 32-bit offsets.
    pub fn intern(&mut self, term: &[u8]) -> Option<u32> {
        if self.ends.len() * 2 >= self.table.len() {
            self.grow();
        }
        let mask = self.table.len() - 1;
        let mut at = self.hash(term) & mask;
        loop {
            match self.table[at] {
                0 => break,
                id => {
                    if self.term(id - 1) == term {
                        return Some(id - 1);
                    }
                    at = (at + 1) & mask;
                }
            }
        }
        let id = self.ends.len() as u32;
        self.bytes.extend_from_slice(term);
        self.ends.push(u32::try_from(self.bytes.len()).ok()?);
        self.table[at] = id + 1;
        Some(id)
    }

    fn grow(&mut self) {
        let size = (self.table.len() * 2).max(64);
        self.table = vec![0; size];
        let mask = size - 1;
        for id in 0..self.ends.len() as u32 {
            let mut at = self.hash(self.term(id)) & mask;
            while self.table[at] != 0 {
                at = (at + 1) & mask;
            }
            self.table[at] = id + 1;
        }
    }

    /// Forget every term, keeping the table's size when it is small (a table sized for
    /// one large file is let go rather than cleared for each small one after).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        if self.table.len() <= 1 << 12 {
            self.table.fill(0);
        } else {
            self.table = Vec::new();
        }
    }

    /// The terms in one buffer and where each ends, to hand to another thread; `self`
    /// is left empty.
    pub fn take(&mut self) -> (Vec<u8>, Vec<u32>) {
        let out = (
            std::mem::take(&mut self.bytes),
            std::mem::take(&mut self.ends),
        );
        self.clear();
        out
    }

    /// The terms as a sorted base, each with its id: the table is freed first, so the
    /// sort runs on the bytes and their offsets alone.
    pub fn into_sorted(mut self) -> SortedTerms {
        self.table = Vec::new();
        let mut order: Vec<u32> = (0..self.ends.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.term(a).cmp(self.term(b)));
        let mut bytes = Vec::with_capacity(self.bytes.len());
        let mut at = Vec::with_capacity(order.len() + 1);
        at.push(0u32);
        for &id in &order {
            bytes.extend_from_slice(self.term(id));
            // Fits: the same bytes fitted in `ends`.
            at.push(bytes.len() as u32);
        }
        drop(self);
        SortedTerms {
            bytes: bytes.into(),
            at: at.into(),
            ids: order.into(),
        }
    }
}

/// Terms and their ids. Ids index the fields' postings, so a live term keeps its id for
/// as long as it lives; only ids of terms nothing holds are handed out again.
///
/// Two parts, like a field: a *base* of sorted terms as of the last load or compaction
/// (read in place from the stored file once loaded), and an *overlay* hash map of the
/// terms added since. Base terms forgotten since are marked removed.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    base: SortedTerms,
    /// Bit per id: set when the base's term of that id was forgotten.
    removed: Vec<u64>,
    removed_count: usize,
    overlay: HashMap<String, u32, Hasher>,
    /// Ids of forgotten terms, handed out again before new ones.
    free: Vec<u32>,
    /// One past the highest id ever handed out.
    next: u32,
    /// How many terms were live after the last sweep: the next is due once the
    /// dictionary has grown well past it.
    live_at_sweep: usize,
    /// How many sweeps there were: a stored snapshot's base can replace this one's only
    /// if no id was freed since it was taken.
    sweeps: u64,
}

/// A dictionary as it was when [`Dict::snapshot`] took it: what storing it writes.
#[derive(Debug, Clone)]
pub struct DictSnapshot {
    base: SortedTerms,
    removed: Vec<u64>,
    /// The overlay's terms, sorted.
    overlay: Vec<(String, u32)>,
    next: u32,
    sweeps: u64,
}

impl DictSnapshot {
    /// One past the highest id in use or free.
    pub fn id_bound(&self) -> u32 {
        self.next
    }

    /// Every live term with its id, sorted by term: `each(term, id)`.
    pub fn for_each_sorted(
        &self,
        each: &mut dyn FnMut(&[u8], u32) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        merge(&self.base, &self.removed, &self.overlay, each)
    }

    /// The live terms as one sorted base (for tests of the stored form).
    #[cfg(test)]
    pub fn sorted_terms(&self) -> SortedTerms {
        SortedTerms::merged(&self.base, &self.removed, &self.overlay).unwrap()
    }

    /// Which sweep the snapshot was taken after.
    pub fn sweeps(&self) -> u64 {
        self.sweeps
    }
}

/// The terms of `base` but those `removed` marks, merged with `overlay` (sorted by
/// term), in order: `each(term, id)`.
fn merge<S: AsRef<str>>(
    base: &SortedTerms,
    removed: &[u64],
    overlay: &[(S, u32)],
    each: &mut dyn FnMut(&[u8], u32) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut over = overlay.iter().peekable();
    for i in 0..base.len() {
        let (t, id) = (base.term(i), base.id(i));
        if is_set(removed, id) {
            continue;
        }
        while let Some((o, oid)) = over.next_if(|(o, _)| o.as_ref().as_bytes() < t) {
            each(o.as_ref().as_bytes(), *oid)?;
        }
        each(t, id)?;
    }
    for (o, oid) in over {
        each(o.as_ref().as_bytes(), *oid)?;
    }
    Ok(())
}

fn is_set(bits: &[u64], id: u32) -> bool {
    bits.get(id as usize / 64)
        .is_some_and(|w| w >> (id % 64) & 1 == 1)
}

impl Dict {
    /// The id of `term`, assigning one if it is new.
    pub fn intern(&mut self, term: &str) -> u32 {
        if let Some(id) = self.get(term) {
            return id;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.overlay.insert(term.to_string(), id);
        id
    }

    /// The id of `term`, if it is known.
    pub fn get(&self, term: &str) -> Option<u32> {
        if let Some(&id) = self.overlay.get(term) {
            return Some(id);
        }
        self.base
            .find(term.as_bytes())
            .filter(|&id| !is_set(&self.removed, id))
    }

    /// How many terms are known.
    pub fn len(&self) -> usize {
        self.base.len() - self.removed_count + self.overlay.len()
    }

    /// Whether no term is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest id in use or free: the size a table indexed by id needs.
    pub fn id_bound(&self) -> u32 {
        self.next
    }

    /// Whether enough terms may have died since the last sweep for one to be worth it:
    /// the dictionary has doubled (plus some slack, so that small indexes are not swept
    /// on every commit). Sweeping costs a pass over every id, so amortized this is
    /// constant per new term.
    pub fn sweep_due(&self) -> bool {
        self.len() >= 2 * self.live_at_sweep + 1024
    }

    /// Forget every term whose id `used` says nothing holds any more; their ids become
    /// free. Returns how many were forgotten.
    pub fn sweep(&mut self, used: &dyn Fn(u32) -> bool) -> usize {
        let before = self.len();
        self.overlay.retain(|_, id| used(*id));
        let mut live = vec![false; self.next as usize];
        for &id in self.overlay.values() {
            live[id as usize] = true;
        }
        for i in 0..self.base.len() {
            let id = self.base.id(i);
            if is_set(&self.removed, id) {
                continue;
            }
            if used(id) {
                live[id as usize] = true;
            } else {
                let w = id as usize / 64;
                if self.removed.len() <= w {
                    self.removed.resize(w + 1, 0);
                }
                self.removed[w] |= 1 << (id % 64);
                self.removed_count += 1;
            }
        }
        // Dead ids above the highest live one are dropped, so tables indexed by id can
        // shrink; the rest are stacked highest first, so the lowest are reused first.
        self.next = live.iter().rposition(|&l| l).map_or(0, |i| i as u32 + 1);
        self.free = (0..self.next)
            .rev()
            .filter(|&id| !live[id as usize])
            .collect();
        self.overlay.shrink_to(self.overlay.len() * 2);
        self.live_at_sweep = self.len();
        self.sweeps += 1;
        before - self.len()
    }

    /// Move every term into a new sorted base on the heap, emptying the overlay: the
    /// sorted arrays take a fraction of a hash map of strings. `false` (and nothing
    /// changed) when the terms do not fit the stored format's 32-bit offsets.
    pub fn compact(&mut self) -> bool {
        if self.overlay.is_empty() && self.removed_count == 0 {
            return true;
        }
        let mut overlay: Vec<(&str, u32)> = self
            .overlay
            .iter()
            .map(|(t, &id)| (t.as_str(), id))
            .collect();
        overlay.sort_unstable();
        let Some(base) = SortedTerms::merged(&self.base, &self.removed, &overlay) else {
            return false;
        };
        drop(overlay);
        self.base = base;
        self.overlay = HashMap::default();
        self.removed = Vec::new();
        self.removed_count = 0;
        true
    }

    /// The dictionary as it is now, to store while it moves on: the base is shared, the
    /// overlay copied (sorted).
    pub fn snapshot(&self) -> DictSnapshot {
        let mut overlay: Vec<(String, u32)> = self
            .overlay
            .iter()
            .map(|(t, &id)| (t.clone(), id))
            .collect();
        overlay.sort_unstable();
        DictSnapshot {
            base: self.base.clone(),
            removed: self.removed.clone(),
            overlay,
            next: self.next,
            sweeps: self.sweeps,
        }
    }

    /// A dictionary of `base` (as stored, checked by [`SortedTerms::from_arrays`],
    /// which gave `used`) with ids below `bound`; the unused ids are free.
    pub fn from_base(base: SortedTerms, used: &[bool]) -> Self {
        let next = used.len() as u32;
        // Highest first, as `sweep` stacks them.
        let free = (0..next).rev().filter(|&id| !used[id as usize]).collect();
        let live_at_sweep = base.len();
        Self {
            base,
            removed: Vec::new(),
            removed_count: 0,
            overlay: HashMap::default(),
            free,
            next,
            live_at_sweep,
            sweeps: 0,
        }
    }

    /// A dictionary of a build's terms, their ids as `table` numbered them.
    pub fn from_table(table: TermTable) -> Self {
        let n = table.len();
        let base = table.into_sorted();
        let live_at_sweep = base.len();
        Self {
            base,
            next: n as u32,
            live_at_sweep,
            ..Self::default()
        }
    }

    /// Move onto `base`, the stored terms of a snapshot taken after `sweeps` sweeps:
    /// terms added since stay in the overlay. `false` (and nothing changed) when a sweep
    /// ran since the snapshot (the stored terms may hold ones forgotten since).
    pub fn rebase(&mut self, base: SortedTerms, sweeps: u64) -> bool {
        if sweeps != self.sweeps {
            return false;
        }
        self.overlay.retain(|t, id| {
            let stored = base.find(t.as_bytes());
            debug_assert!(stored.is_none_or(|s| s == *id));
            stored.is_none()
        });
        self.overlay.shrink_to_fit();
        self.base = base;
        self.removed = Vec::new();
        self.removed_count = 0;
        true
    }

    /// About how many bytes of heap the dictionary holds.
    pub fn heap_bytes(&self) -> usize {
        self.overlay.capacity() * (size_of::<(String, u32)>() + 1)
            + self.overlay.keys().map(String::capacity).sum::<usize>()
            + self.free.capacity() * 4
            + self.removed.capacity() * 8
            + self.base.heap_bytes()
    }

    /// Bytes of mapped file the dictionary reads in place.
    pub fn mapped_bytes(&self) -> usize {
        self.base.mapped_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_ids_are_reused_and_live_ones_kept() {
        let mut d = Dict::default();
        let a = d.intern("alpha");
        let b = d.intern("beta");
        let c = d.intern("gamma");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(d.sweep(&|id| id != b), 1);
        assert_eq!(d.id_bound(), 3);
        assert_eq!(d.get("beta"), None);
        assert_eq!(d.get("alpha"), Some(a));
        assert_eq!(d.intern("delta"), b, "the freed id is handed out again");
        assert_eq!(d.intern("epsilon"), 3);
        assert_eq!(d.id_bound(), 4);
        assert_eq!(d.sweep(&|id| id < 2), 2);
        assert_eq!(d.id_bound(), 2, "dead ids at the top are dropped");
        assert_eq!(d.intern("zeta"), 2);
    }

    #[test]
    fn a_stored_dictionary_comes_back_with_its_free_ids() {
        let mut d = Dict::default();
        for t in ["a1", "b2", "c3", "d4"] {
            d.intern(t);
        }
        d.sweep(&|id| id % 2 == 0);
        let snap = d.snapshot();
        let stored = snap.sorted_terms();
        let (b, a, i) = stored.arrays();
        let (terms, used) = SortedTerms::from_arrays(
            b.to_vec().into(),
            a.to_vec().into(),
            i.to_vec().into(),
            snap.id_bound(),
        )
        .unwrap();
        let mut back = Dict::from_base(terms, &used);
        assert_eq!(back.get("a1"), Some(0));
        assert_eq!(back.get("c3"), Some(2));
        assert_eq!(back.get("b2"), None);
        assert_eq!(back.intern("new"), 1);
        assert_eq!(back.intern("newer"), 3);
        assert_eq!(back.intern("newest"), 4);
        let twice = SortedTerms::from_arrays(
            b"xx".to_vec().into(),
            vec![0, 1, 2].into(),
            vec![0, 1].into(),
            2,
        );
        assert!(twice.is_err());
    }

    // A base (compacted, or loaded) and an overlay must answer as one map: terms
    // forgotten from the base hidden, their ids reused by new terms, and a snapshot's
    // stored terms taken back as the base with the terms added since kept.
    #[test]
    fn base_and_overlay_answer_as_one() {
        let mut d = Dict::default();
        for t in ["alpha", "beta", "gamma", "delta"] {
            d.intern(t);
        }
        assert!(d.compact());
        assert_eq!((d.len(), d.overlay.len()), (4, 0));
        assert_eq!(d.get("gamma"), Some(2));
        assert_eq!(d.intern("epsilon"), 4);
        assert_eq!(d.sweep(&|id| id != 1), 1);
        assert_eq!(d.get("beta"), None);
        assert_eq!(d.intern("zeta"), 1, "the forgotten id is reused");
        assert_eq!(d.get("zeta"), Some(1));
        assert_eq!(d.len(), 5);
        let snap = d.snapshot();
        let mut seen = Vec::new();
        snap.for_each_sorted(&mut |t, id| {
            seen.push((String::from_utf8(t.to_vec()).unwrap(), id));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("alpha", 0),
                ("delta", 3),
                ("epsilon", 4),
                ("gamma", 2),
                ("zeta", 1)
            ]
            .map(|(t, id)| (t.to_string(), id))
        );
        // Terms added after the snapshot stay when its stored base is taken.
        assert_eq!(d.intern("eta"), 5);
        assert!(d.rebase(snap.sorted_terms(), snap.sweeps()));
        assert_eq!(d.overlay.len(), 1);
        assert_eq!(
            (d.get("eta"), d.get("zeta"), d.get("beta")),
            (Some(5), Some(1), None)
        );
        // Not after a sweep: the stored terms may hold forgotten ones.
        let snap = d.snapshot();
        d.sweep(&|id| id != 5);
        assert!(!d.rebase(snap.sorted_terms(), snap.sweeps()));
        assert_eq!(d.get("eta"), None);
    }
}

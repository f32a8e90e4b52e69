//! The term dictionary: each distinct term a small id, reused once no file and no kept
//! commit holds the term any more, so a long-running index does not keep every term it
//! ever saw (a file rewritten with a new number in it adds a term each time).

use std::collections::HashMap;

/// foldhash, seeded per map: several times faster than SipHash on short strings, which
/// is most of what reading a large stored index back costs, and still seeded at random
/// so that crafted file contents cannot aim collisions.
type Hasher = foldhash::fast::RandomState;

/// Terms and their ids. Ids index the fields' postings, so a live term keeps its id for
/// as long as it lives; only ids of terms nothing holds are handed out again.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    ids: HashMap<String, u32, Hasher>,
    /// Ids of forgotten terms, handed out again before new ones.
    free: Vec<u32>,
    /// One past the highest id ever handed out.
    next: u32,
    /// How many terms were live after the last sweep: the next is due once the
    /// dictionary has grown well past it.
    live_at_sweep: usize,
}

impl Dict {
    /// The id of `term`, assigning one if it is new.
    pub fn intern(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.ids.get(term) {
            return id;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.ids.insert(term.to_string(), id);
        id
    }

    /// The id of `term`, if it is known.
    pub fn get(&self, term: &str) -> Option<u32> {
        self.ids.get(term).copied()
    }

    /// How many terms are known.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no term is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
        self.ids.len() >= 2 * self.live_at_sweep + 1024
    }

    /// Forget every term whose id `used` says nothing holds any more; their ids become
    /// free. Returns how many were forgotten.
    pub fn sweep(&mut self, used: &dyn Fn(u32) -> bool) -> usize {
        let before = self.ids.len();
        self.ids.retain(|_, id| used(*id));
        let mut live = vec![false; self.next as usize];
        for &id in self.ids.values() {
            live[id as usize] = true;
        }
        // Dead ids above the highest live one are dropped, so tables indexed by id can
        // shrink; the rest are stacked highest first, so the lowest are reused first.
        self.next = live.iter().rposition(|&l| l).map_or(0, |i| i as u32 + 1);
        self.free = (0..self.next)
            .rev()
            .filter(|&id| !live[id as usize])
            .collect();
        self.ids.shrink_to(self.ids.len() * 2);
        self.live_at_sweep = self.ids.len();
        before - self.ids.len()
    }

    /// About how many bytes of heap the dictionary holds.
    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * (size_of::<(String, u32)>() + 1)
            + self.ids.keys().map(String::capacity).sum::<usize>()
            + self.free.capacity() * 4
    }

    /// Every term by id (`None` for a free id), for storing the dictionary.
    pub fn by_id(&self) -> Vec<Option<&str>> {
        let mut v = vec![None; self.next as usize];
        for (t, &id) in &self.ids {
            v[id as usize] = Some(t.as_str());
        }
        v
    }

    /// A dictionary holding `terms` by id (`None` for a free id), as [`Dict::by_id`]
    /// gave them. `None` when a term appears twice.
    pub fn from_ids(terms: Vec<Option<String>>) -> Option<Self> {
        let next = u32::try_from(terms.len()).ok()?;
        let mut ids = HashMap::with_capacity_and_hasher(terms.len(), Hasher::default());
        let mut free = Vec::new();
        // Highest first, as `sweep` stacks them.
        for (id, t) in terms.into_iter().enumerate().rev() {
            match t {
                Some(t) => {
                    if ids.insert(t, id as u32).is_some() {
                        return None;
                    }
                }
                None => free.push(id as u32),
            }
        }
        let live_at_sweep = ids.len();
        Some(Self {
            ids,
            free,
            next,
            live_at_sweep,
        })
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
        let stored: Vec<Option<String>> =
            d.by_id().into_iter().map(|t| t.map(String::from)).collect();
        let mut back = Dict::from_ids(stored).unwrap();
        assert_eq!(back.get("a1"), Some(0));
        assert_eq!(back.get("c3"), Some(2));
        assert_eq!(back.get("b2"), None);
        assert_eq!(back.intern("new"), 1);
        assert_eq!(back.intern("newer"), 3);
        assert_eq!(back.intern("newest"), 4);
        assert!(Dict::from_ids(vec![Some("x".into()), Some("x".into())]).is_none());
    }
}

//! The heap the search indexes of all repos hold, and which of them to drop when the
//! total passes its bound (`--index-memory`).
//!
//! Each index registers what it holds each time it is used; past the bound, the least
//! recently used others are dropped from memory (their files on disk stay, so using one
//! again costs a load, not a build). The index just used is never the one dropped: its
//! caller holds it anyway, and dropping it would only make the next call load it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::RepoId;

/// Which index of a repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// The line-search index (its segments' file lists and bitmaps; contents are mapped).
    Line,
    /// The ranked index.
    Ranked,
}

/// One index's share of the heap, as last registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldIndex {
    /// Its repo.
    pub repo: RepoId,
    /// Which index.
    pub kind: IndexKind,
    /// Heap bytes it holds (an estimate).
    pub bytes: usize,
}

#[derive(Default)]
struct Ledger {
    clock: u64,
    held: HashMap<(RepoId, IndexKind), (usize, u64)>,
}

/// The ledger of heap held by indexes, with its bound.
pub(super) struct IndexMemory {
    limit: AtomicUsize,
    ledger: Mutex<Ledger>,
}

impl IndexMemory {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: AtomicUsize::new(limit),
            ledger: Mutex::default(),
        }
    }

    pub(super) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Record that `repo`'s `kind` index was just used and holds `bytes`; the indexes
    /// to drop (least recently used first) so that the total fits the bound again. They
    /// are forgotten here; the caller drops them.
    pub(super) fn used(&self, repo: RepoId, kind: IndexKind, bytes: usize) -> Vec<HeldIndex> {
        let limit = self.limit();
        let mut l = super::lock(&self.ledger);
        l.clock += 1;
        let now = l.clock;
        l.held.insert((repo, kind), (bytes, now));
        let mut total: usize = l.held.values().map(|h| h.0).sum();
        if total <= limit {
            return Vec::new();
        }
        let mut order: Vec<((RepoId, IndexKind), (usize, u64))> = l
            .held
            .iter()
            .filter(|(k, _)| **k != (repo, kind))
            .map(|(k, v)| (*k, *v))
            .collect();
        order.sort_by_key(|(_, (_, used))| *used);
        let mut out = Vec::new();
        for ((r, k), (b, _)) in order {
            if total <= limit {
                break;
            }
            l.held.remove(&(r, k));
            total -= b;
            out.push(HeldIndex {
                repo: r,
                kind: k,
                bytes: b,
            });
        }
        out
    }

    /// Forget `repo`'s `kind` index (dropped, or its repo deleted).
    pub(super) fn forget(&self, repo: &RepoId, kind: IndexKind) {
        super::lock(&self.ledger).held.remove(&(*repo, kind));
    }

    /// Every index registered, most recently used first.
    pub(super) fn held(&self) -> Vec<HeldIndex> {
        let l = super::lock(&self.ledger);
        let mut v: Vec<_> = l.held.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by_key(|(_, (_, used))| std::cmp::Reverse(*used));
        v.into_iter()
            .map(|((repo, kind), (bytes, _))| HeldIndex { repo, kind, bytes })
            .collect()
    }
}

/// Hand the free pages of the heap back to the system. glibc keeps what a thread frees
/// in that thread's arena for reuse, so without this a dropped index, or the buffers of
/// a stored one, would go on counting in the process's resident memory, and a server
/// taking commits for hours would grow by fragments. Costs a walk of the free lists (a
/// few milliseconds); called after indexes are dropped and after a ranked index is
/// stored. Does nothing with other allocators.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's own heap to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The default bound: a quarter of the machine's memory (2 GiB when it cannot be read).
pub fn default_index_memory() -> usize {
    physical_memory().map_or(2 << 30, |m| m / 4)
}

fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_others_go_first() {
        let m = IndexMemory::new(100);
        let (a, b, c) = (
            RepoId::new_random(),
            RepoId::new_random(),
            RepoId::new_random(),
        );
        assert!(m.used(a, IndexKind::Line, 40).is_empty());
        assert!(m.used(b, IndexKind::Line, 40).is_empty());
        assert!(m.used(a, IndexKind::Ranked, 10).is_empty());
        // 130 > 100: a's line index is the oldest.
        let out = m.used(c, IndexKind::Line, 40);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].repo, out[0].kind), (a, IndexKind::Line));
        // One alone over the bound is kept; every other goes.
        let out = m.used(c, IndexKind::Ranked, 1000);
        assert_eq!(out.len(), 3);
        assert_eq!(m.held().len(), 1);
        assert!(default_index_memory() > 0);
    }
}

//! The store's ranked indexes: one per repo, built on the first ranked query, then
//! moved forward incrementally when a commit lands (and, should that have been skipped,
//! on the next query), so a commit costs only the files and commits it changed.

use std::sync::{Arc, Mutex};

use super::{IndexKind, Store, StoreError, git, lock};
use crate::model::{RankedQuery, RankedResults, RepoId};
use crate::ranked::{RankedError, RankedIndex, Weights};
use crate::search::compile_glob;

/// One repo's ranked index, if built yet. The mutex also makes concurrent first
/// queries wait for one build rather than each building their own.
pub(super) type Slot = Arc<Mutex<Option<RankedIndex>>>;

/// Heap a ranked index holds per file indexed, roughly (its fields' postings, the
/// dictionary and the history), for the bound on index memory.
const RANKED_HEAP_PER_FILE: usize = 16 * 1024;

impl From<RankedError> for StoreError {
    fn from(e: RankedError) -> Self {
        match e {
            RankedError::Git(m) => StoreError::Git(m),
        }
    }
}

impl Store {
    fn ranked_slot(&self, id: &RepoId) -> Slot {
        lock(&self.ranked).entry(*id).or_default().clone()
    }

    /// Move a built ranked index to a freshly landed commit. Skipped, not waited for,
    /// when a query holds the index: that query or the next one catches up instead.
    pub(super) fn advance_ranked(&self, id: &RepoId, repo: &git2::Repository, head: git2::Oid) {
        let Some(slot) = lock(&self.ranked).get(id).cloned() else {
            return;
        };
        let Ok(mut guard) = slot.try_lock() else {
            return;
        };
        if let Some(ix) = guard.as_mut()
            && let Err(e) = ix.advance(repo, head)
        {
            tracing::warn!(repo = %id, cause = %e, "ranked index not advanced; rebuilding on next query");
            *guard = None;
        }
    }

    /// Drop repo `id`'s ranked index from memory, unless a query is using it.
    pub(super) fn drop_ranked(&self, id: &RepoId) {
        let Some(slot) = lock(&self.ranked).get(id).cloned() else {
            return;
        };
        if let Ok(mut guard) = slot.try_lock() {
            *guard = None;
        }
    }

    /// Ranked natural-language search at the head.
    pub fn search_ranked(
        &self,
        id: &RepoId,
        query: &RankedQuery,
    ) -> Result<RankedResults, StoreError> {
        let glob = query.path_glob.as_deref().map(compile_glob).transpose()?;
        let h = self.handle(id)?;
        // A handle of its own: indexing a large repo must not hold up `read_file` calls
        // waiting on the shared reader.
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let head = git::head(&repo)?;
        let slot = self.ranked_slot(id);
        let mut guard = lock(&slot);
        match guard.as_mut() {
            Some(ix) => {
                let stats = ix.advance(&repo, head)?;
                if stats != Default::default() {
                    tracing::debug!(repo = %id, files = stats.files, commits = stats.commits, "ranked index advanced");
                }
            }
            None => {
                let started = std::time::Instant::now();
                let ix = RankedIndex::build(&repo, head)?;
                tracing::info!(repo = %id, files = ix.len(), took_ms = started.elapsed().as_millis() as u64, "ranked index built");
                *guard = Some(ix);
            }
        }
        let ix = guard.as_ref().expect("built above");
        let keep = |p: &str| {
            glob.as_ref().is_none_or(|g| g.is_match(p))
                && query.visible.as_ref().is_none_or(|v| v.sees(p))
        };
        let (hits, truncated) = ix.answer(&repo, query, &Weights::default(), &keep)?;
        self.index_used(id, IndexKind::Ranked, ix.len() * RANKED_HEAP_PER_FILE);
        Ok(RankedResults {
            head: head.to_string(),
            hits,
            truncated,
            // A path-limited view counts only what it sees.
            files_indexed: if query.visible.is_some() {
                ix.count(&|p| query.visible.as_ref().is_none_or(|v| v.sees(p)))
            } else {
                ix.len()
            },
        })
    }
}

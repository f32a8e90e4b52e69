//! Keeping each repo's line-search index at its head: built from git on first use (blobs
//! inflated on every core), then carried forward commit by commit from the paths that
//! changed, whichever process made the commit.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};

use super::{RepoHandle, Store, StoreError, git, is_binary, lock};
use crate::model::RepoId;
use crate::search::index::{FileEntry, IndexStats, LineIndex};

/// Progress of an index build: files read from git, then files indexed, each out of
/// the same total.
#[derive(Debug, Clone, Copy)]
pub enum IndexProgress {
    /// Inflating blobs.
    Reading {
        /// Files read.
        done: u64,
        /// Files to read.
        total: u64,
    },
    /// Extracting trigrams.
    Indexing {
        /// Files indexed.
        done: u64,
        /// Files to index.
        total: u64,
    },
}

/// The slot a repo's current index lives in.
#[derive(Default)]
pub(super) struct IndexSlot {
    current: Mutex<Option<Arc<LineIndex>>>,
    /// Held by the one thread building or updating; others wait and reuse its work.
    building: Mutex<()>,
}

const MODE_FILE: i32 = 0o100644;
const MODE_EXEC: i32 = 0o100755;

/// Read every text file of `files` from the repository at `dir`, on every core (each
/// thread with its own libgit2 handle: a `Repository` is not `Sync`).
fn read_all(
    dir: &Path,
    files: &[(String, Oid)],
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<Vec<Arc<FileEntry>>, StoreError> {
    const CHUNK: usize = 64;
    let total = files.len() as u64;
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let n = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(8))
        .min(files.len().div_ceil(CHUNK).max(1));
    let work = || -> Result<Vec<Arc<FileEntry>>, StoreError> {
        let repo = Repository::open_bare(dir).map_err(git::git_err)?;
        let mut out = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= files.len() {
                break;
            }
            for (path, oid) in &files[start..(start + CHUNK).min(files.len())] {
                let blob = repo.find_blob(*oid).map_err(git::git_err)?;
                if !is_binary(blob.content()) {
                    out.push(Arc::new(FileEntry {
                        path: path.as_str().into(),
                        content: blob.content().into(),
                    }));
                }
            }
            let d = done.fetch_add(CHUNK as u64, Ordering::Relaxed) + CHUNK as u64;
            progress(IndexProgress::Reading {
                done: d.min(total),
                total,
            });
        }
        Ok(out)
    };
    let parts: Vec<Result<Vec<Arc<FileEntry>>, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..n).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        for h in handles {
            parts.push(
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Io("an index thread panicked".into()))),
            );
        }
        parts
    });
    let mut all = Vec::with_capacity(files.len());
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

/// Build the index of commit `head` from scratch.
fn build(
    dir: &Path,
    head: Oid,
    progress: &(dyn Fn(IndexProgress) + Sync),
) -> Result<LineIndex, StoreError> {
    let files = {
        let repo = Repository::open_bare(dir).map_err(git::git_err)?;
        let tree = git::tree_at(&repo, head)?;
        git::files(&repo, &tree)?
    };
    let total = files.len() as u64;
    let entries = read_all(dir, &files, progress)?;
    let done = AtomicU64::new(0);
    Ok(LineIndex::build(head.to_string(), entries, &|n| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(IndexProgress::Indexing {
            done: d.min(total),
            total,
        });
    }))
}

/// The paths that differ between commits `old` and `new`, each with its text at `new`
/// (`None` when it is gone, or is no longer a text file).
type Changes = Vec<(String, Option<Box<[u8]>>)>;

fn changes(repo: &Repository, old: &str, new: Oid) -> Result<Changes, StoreError> {
    let old = Oid::from_str(old).map_err(git::git_err)?;
    let old_tree = git::tree_at(repo, old)?;
    let new_tree = git::tree_at(repo, new)?;
    let mut out = Vec::new();
    for path in git::changed_paths(repo, Some(&old_tree), &new_tree)? {
        let content = match new_tree.get_path(Path::new(&path)) {
            Ok(e) if e.filemode() == MODE_FILE || e.filemode() == MODE_EXEC => {
                let blob = repo.find_blob(e.id()).map_err(git::git_err)?;
                (!is_binary(blob.content())).then(|| blob.content().into())
            }
            _ => None,
        };
        out.push((path, content));
    }
    Ok(out)
}

impl Store {
    fn current_head(h: &RepoHandle) -> Result<Oid, StoreError> {
        let repo = lock(&h.reader);
        git::head(&repo)
    }

    /// The line index of repo `id` at its current head, built or brought up to date
    /// first. The index names the head it reflects; a commit landing meanwhile (from
    /// this process or another) is picked up by the next call.
    pub fn line_index(&self, id: &RepoId) -> Result<Arc<LineIndex>, StoreError> {
        self.line_index_with(id, &|_| {})
    }

    /// [`Store::line_index`], telling `progress` how a first build goes.
    pub fn line_index_with(
        &self,
        id: &RepoId,
        progress: &(dyn Fn(IndexProgress) + Sync),
    ) -> Result<Arc<LineIndex>, StoreError> {
        let h = self.handle(id)?;
        let head = Self::current_head(&h)?.to_string();
        if let Some(ix) = lock(&h.index.current).clone()
            && ix.head() == head
        {
            return Ok(ix);
        }
        let _building = lock(&h.index.building);
        // Read the head again: the thread that held the lock may have indexed it, or a
        // newer one.
        let head = Self::current_head(&h)?;
        let current = lock(&h.index.current).clone();
        let next = match current {
            Some(ix) if ix.head() == head.to_string() => return Ok(ix),
            Some(ix) => {
                let changed = {
                    let repo = lock(&h.reader);
                    changes(&repo, ix.head(), head)
                };
                match changed {
                    Ok(changed) => ix.apply(head.to_string(), changed),
                    Err(e) => {
                        tracing::warn!(repo = %id, cause = %e, "rebuilding the line index: the change since its head could not be read");
                        build(&h.dir, head, progress)?
                    }
                }
            }
            None => {
                let started = std::time::Instant::now();
                let ix = build(&h.dir, head, progress)?;
                let stats = ix.stats();
                tracing::info!(
                    repo = %id,
                    files = stats.files,
                    content_bytes = stats.content_bytes,
                    postings_bytes = stats.postings_bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "built the line index"
                );
                ix
            }
        };
        let next = Arc::new(next);
        *lock(&h.index.current) = Some(next.clone());
        Ok(next)
    }

    /// Bring repo `id`'s index up to date if this process holds one (after a commit,
    /// so the next search does not pay for it).
    pub(super) fn refresh_line_index(&self, id: &RepoId) {
        let Ok(h) = self.handle(id) else { return };
        if lock(&h.index.current).is_none() {
            return;
        }
        if let Err(e) = self.line_index(id) {
            tracing::warn!(repo = %id, cause = %e, "the line index could not follow a commit; the next search retries");
        }
    }

    /// Sizes of repo `id`'s index at its head (building it if needed).
    pub fn line_index_stats(&self, id: &RepoId) -> Result<IndexStats, StoreError> {
        Ok(self.line_index(id)?.stats())
    }
}

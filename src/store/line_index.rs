//! Keeping each repo's line-search index at its head: built from git on first use (blobs
//! inflated on every core), then carried forward commit by commit from the paths that
//! changed, whichever process made the commit.
//!
//! The trigram postings of a full build are also stored, in
//! `<data-dir>/index/<repo-id>/base.bin` (written whole to a temporary file, then renamed
//! over the old one, so a reader in another process sees one complete file or the other).
//! A process that finds it reads the file contents it names from git and carries it
//! forward to the head, instead of extracting every trigram again: `repo create
//! --from-dir` builds it, and a server then starts searching sooner.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
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
/// thread with its own libgit2 handle: a `Repository` is not `Sync`). Progress is told
/// from the calling thread only.
fn read_all(
    dir: &Path,
    files: &[(String, Oid)],
    progress: &dyn Fn(IndexProgress),
) -> Result<Vec<Arc<FileEntry>>, StoreError> {
    const CHUNK: usize = 64;
    let total = files.len() as u64;
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let n = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(8))
        .min(files.len().div_ceil(CHUNK).max(1));
    let work = |report: Option<&dyn Fn(IndexProgress)>| -> Result<Vec<Arc<FileEntry>>, StoreError> {
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
            if let Some(report) = report {
                report(IndexProgress::Reading {
                    done: d.min(total),
                    total,
                });
            }
        }
        Ok(out)
    };
    let parts: Vec<Result<Vec<Arc<FileEntry>>, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..n).map(|_| s.spawn(|| work(None))).collect();
        let mut parts = vec![work(Some(progress))];
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
    // Threads took chunks in turn; the index wants path order, which is git's order.
    all.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(all)
}

/// Build the index of commit `head` from scratch, and store its base under `index_dir`.
fn build(
    dir: &Path,
    index_dir: &Path,
    head: Oid,
    progress: &dyn Fn(IndexProgress),
) -> Result<LineIndex, StoreError> {
    let files = {
        let repo = Repository::open_bare(dir).map_err(git::git_err)?;
        let tree = git::tree_at(&repo, head)?;
        git::files(&repo, &tree)?
    };
    let entries = read_all(dir, &files, progress)?;
    let total = entries.len() as u64;
    let ix = LineIndex::build(head.to_string(), entries, &|done| {
        progress(IndexProgress::Indexing {
            done: done.min(total),
            total,
        });
    });
    let oids: HashMap<&str, Oid> = files.iter().map(|(p, o)| (p.as_str(), *o)).collect();
    if let Err(e) = save(index_dir, &ix, &oids) {
        tracing::warn!(dir = %index_dir.display(), cause = %e, "the line index could not be stored; it is rebuilt when next needed");
    }
    Ok(ix)
}

const MAGIC: &[u8; 8] = b"SRMIDX01";

/// Store the base of a freshly built `ix` under `index_dir`; `oids` names each path's
/// blob, so a loader can read the contents back from git.
fn save(index_dir: &Path, ix: &LineIndex, oids: &HashMap<&str, Oid>) -> Result<(), StoreError> {
    let (parts, whole) = ix.base_parts();
    if !whole {
        return Ok(());
    }
    std::fs::create_dir_all(index_dir)?;
    let tmp = index_dir.join(format!(
        ".base.bin.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| -> Result<(), StoreError> {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        w.write_all(MAGIC)?;
        w.write_all(ix.head().as_bytes())?;
        w.write_all(&(parts.paths.len() as u64).to_le_bytes())?;
        for path in &parts.paths {
            let oid = oids
                .get(path)
                .ok_or_else(|| StoreError::Io(format!("no blob id for `{path}`")))?;
            w.write_all(oid.as_bytes())?;
            w.write_all(&(path.len() as u32).to_le_bytes())?;
            w.write_all(path.as_bytes())?;
        }
        w.write_all(&(parts.keys.len() as u64).to_le_bytes())?;
        for k in parts.keys {
            w.write_all(&k.to_le_bytes())?;
        }
        for o in parts.offsets {
            w.write_all(&o.to_le_bytes())?;
        }
        w.write_all(&(parts.data.len() as u64).to_le_bytes())?;
        w.write_all(parts.data)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, index_dir.join("base.bin"))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A cursor over a stored base.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The stored base under `index_dir`, its files read back from git; `None` when there
/// is none or it does not fit the repository (then the caller builds afresh).
fn load(repo_dir: &Path, index_dir: &Path, progress: &dyn Fn(IndexProgress)) -> Option<LineIndex> {
    let bytes = std::fs::read(index_dir.join("base.bin")).ok()?;
    let mut r = Reader(&bytes);
    if r.take(8)? != MAGIC {
        return None;
    }
    let head = std::str::from_utf8(r.take(40)?).ok()?.to_string();
    let n = r.u64()? as usize;
    let mut files = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let oid = Oid::from_bytes(r.take(20)?).ok()?;
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        files.push((path, oid));
    }
    let nkeys = r.u64()? as usize;
    let keys: Vec<u32> = (0..nkeys).map(|_| r.u32()).collect::<Option<_>>()?;
    let offsets: Vec<u64> = (0..=nkeys).map(|_| r.u64()).collect::<Option<_>>()?;
    let len = r.u64()? as usize;
    let data = r.take(len)?.to_vec();
    drop(bytes);
    let entries = read_all(repo_dir, &files, progress).ok()?;
    // A file that is no longer text (or gone) would shift every id after it.
    if entries.len() != files.len() {
        return None;
    }
    LineIndex::from_parts(head, entries, keys, offsets, data)
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

    /// Where repo `id`'s stored index lives.
    pub(super) fn index_dir(&self, id: &RepoId) -> PathBuf {
        self.root.join("index").join(id.to_string())
    }

    /// [`Store::line_index`], telling `progress` how a first build goes.
    pub fn line_index_with(
        &self,
        id: &RepoId,
        progress: &dyn Fn(IndexProgress),
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
                        build(&h.dir, &self.index_dir(id), head, progress)?
                    }
                }
            }
            None => {
                let started = std::time::Instant::now();
                let stored = load(&h.dir, &self.index_dir(id), progress).and_then(|ix| {
                    if ix.head() == head.to_string() {
                        return Some(ix);
                    }
                    let repo = lock(&h.reader);
                    let changed = changes(&repo, ix.head(), head).ok()?;
                    Some(ix.apply(head.to_string(), changed))
                });
                let loaded = stored.is_some();
                let ix = match stored {
                    Some(ix) => ix,
                    None => build(&h.dir, &self.index_dir(id), head, progress)?,
                };
                let stats = ix.stats();
                tracing::info!(
                    loaded,
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

//! Keeping each repo's line-search index at its head: built from git on first use (blobs
//! inflated on every core; an import gives the files it read instead) into a stored
//! segment, then carried forward commit by commit from the paths that changed,
//! whichever process made the commit, each commit adding a small delta segment; deltas
//! are merged into a new base in the background when they grow.
//!
//! On disk, under `<data-dir>/index/<repo-id>/`:
//! ```text
//! manifest          the current set: its head and its segments' names, base first,
//!                   with a checksum (see `Manifest`)
//! <uuid>.seg        segments (format in `crate::search::segment`), never changed once
//!                   written
//! lock              held (flock) by the one process changing the set at a time
//! .tmp-<pid>-<uuid> a segment or manifest being written
//! ```
//! Every file is written under a temporary name, synced, and renamed into place, so a
//! reader sees a whole file or none. A process opens the set the manifest names (mapping
//! the segments, checking each as its format says) instead of reading the blobs back
//! from git, and processes on one data directory share the segments' pages in the page
//! cache. A set that is missing, damaged or does not fit together is rebuilt from git.

use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};

use super::memory::IndexKind;
use super::{RepoHandle, Store, StoreError, git, lock};
use crate::model::RepoId;
use crate::search::index::{
    Changes, FileEntry, IndexStats, LineIndex, Segment, write_base, write_delta,
};
use crate::text::is_text;

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
    /// Set while a background merge runs.
    merging: AtomicBool,
}

impl IndexSlot {
    /// Drop the index from memory (its segments on disk stay).
    pub(super) fn drop_current(&self) {
        *lock(&self.current) = None;
    }
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
                if is_text(blob.content()) {
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

/// A writer and a seeker, as a segment writer needs.
trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

/// For tests of a writer killed mid-write: when this variable holds a number of
/// milliseconds, a segment writer pauses that long once 64 KiB of its temporary file
/// are written. `base:MS`, `delta:MS` or `merge:MS` pause only that kind of write.
const PAUSE_ENV: &str = "SCOPED_REPO_TEST_PAUSE_SEGMENT_WRITE_MS";

/// Which kind of file a write makes (for [`PAUSE_ENV`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Base,
    Delta,
    Merge,
    Manifest,
}

/// How long [`PAUSE_ENV`] asks a write of `kind` to pause.
fn test_pause(kind: WriteKind) -> Option<std::time::Duration> {
    let v = std::env::var(PAUSE_ENV).ok()?;
    let (only, ms) = match v.split_once(':') {
        Some((k, ms)) => (Some(k.to_string()), ms.to_string()),
        None => (None, v),
    };
    let named = match kind {
        WriteKind::Base => "base",
        WriteKind::Delta => "delta",
        WriteKind::Merge => "merge",
        WriteKind::Manifest => "manifest",
    };
    if only.is_some_and(|k| k != named) {
        return None;
    }
    ms.parse().ok().map(std::time::Duration::from_millis)
}

/// The writer under a segment's buffer: counts bytes, and pauses as [`PAUSE_ENV`] says.
struct FileSink {
    file: std::fs::File,
    written: u64,
    pause: Option<std::time::Duration>,
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written >= 64 * 1024
            && let Some(p) = self.pause.take()
        {
            self.file.flush()?;
            std::thread::sleep(p);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for FileSink {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

const MANIFEST_MAGIC: &str = "scoped-repo-mcp line index 1";

/// The current set of segments as the manifest names it:
/// ```text
/// scoped-repo-mcp line index 1
/// head <commit>
/// segment <name>          (one line each, base first)
/// crc32 <8 hex digits>    (of every byte before this line)
/// ```
#[derive(Debug, PartialEq, Eq)]
struct Manifest {
    head: String,
    segments: Vec<String>,
}

impl Manifest {
    fn render(&self) -> String {
        let mut s = format!("{MANIFEST_MAGIC}\nhead {}\n", self.head);
        for name in &self.segments {
            s.push_str(&format!("segment {name}\n"));
        }
        let sum = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc32 {sum:08x}\n"));
        s
    }

    fn parse(text: &str) -> Option<Self> {
        let body_end = text.rfind("crc32 ")?;
        let (body, sum) = text.split_at(body_end);
        let sum = u32::from_str_radix(sum.strip_prefix("crc32 ")?.trim_end(), 16).ok()?;
        if crc32fast::hash(body.as_bytes()) != sum {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != MANIFEST_MAGIC {
            return None;
        }
        let head = lines.next()?.strip_prefix("head ")?.to_string();
        let segments: Vec<String> = lines
            .map(|l| l.strip_prefix("segment ").map(str::to_string))
            .collect::<Option<_>>()?;
        let safe = |n: &String| {
            n.ends_with(".seg") && !n.starts_with('.') && !n.contains('/') && !n.contains('\\')
        };
        (!segments.is_empty() && segments.iter().all(safe)).then_some(Self { head, segments })
    }
}

/// A repo's index directory.
struct IndexDir {
    path: PathBuf,
}

/// Whether process `pid` is alive (a temporary file of a dead one is litter).
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

impl IndexDir {
    fn tmp_name(&self) -> PathBuf {
        self.path.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// Take the directory's lock (blocking); `None` when the directory cannot be
    /// written, and then nothing is stored.
    fn lock(&self) -> Option<std::fs::File> {
        let taken = (|| -> io::Result<std::fs::File> {
            std::fs::create_dir_all(&self.path)?;
            let f = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.path.join("lock"))?;
            f.lock()?;
            Ok(f)
        })();
        match taken {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(dir = %self.path.display(), cause = %e, "the line index cannot be stored; it is kept in memory");
                None
            }
        }
    }

    fn manifest(&self) -> Option<Manifest> {
        Manifest::parse(&std::fs::read_to_string(self.path.join("manifest")).ok()?)
    }

    /// Write `bytes` to `name` by temporary file, sync and rename.
    fn write_file(
        &self,
        name: &str,
        kind: WriteKind,
        write: &dyn Fn(&mut dyn WriteSeek) -> io::Result<()>,
    ) -> io::Result<()> {
        let tmp = self.write_tmp(kind, write)?;
        self.install(&tmp, name)
    }

    /// Write to a new temporary file of this process (which no other process clears
    /// while this one lives) and sync it; its path.
    fn write_tmp(
        &self,
        kind: WriteKind,
        write: &dyn Fn(&mut dyn WriteSeek) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        let tmp = self.tmp_name();
        let written = (|| -> io::Result<()> {
            let sink = FileSink {
                file: std::fs::File::create(&tmp)?,
                written: 0,
                pause: test_pause(kind),
            };
            let mut w = BufWriter::with_capacity(1 << 20, sink);
            write(&mut w)?;
            let sink = w.into_inner().map_err(|e| e.into_error())?;
            sink.file.sync_all()
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Rename the temporary file `tmp` to `name`, durably; on failure it is removed.
    fn install(&self, tmp: &Path, name: &str) -> io::Result<()> {
        if let Err(e) = std::fs::rename(tmp, self.path.join(name)) {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.path) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A segment written by `write`: stored and mapped when `store` (and the disk
    /// allows), else held on the heap. The caller holds the directory's lock.
    fn segment(
        &self,
        store: bool,
        kind: WriteKind,
        write: &dyn Fn(&mut dyn WriteSeek) -> io::Result<()>,
    ) -> Result<Arc<Segment>, StoreError> {
        let (seg, unplaced) = self.unplaced_segment(store, kind, write)?;
        if let Some(tmp) = unplaced {
            self.place(&seg, &tmp);
        }
        Ok(seg)
    }

    /// As [`Self::segment`], for a writer that does not hold the directory's lock (a
    /// merge): a stored segment is written and mapped under a temporary name of this
    /// process, which no other process clears while this one lives, and returned with
    /// that path; [`Self::place`] gives it its name once the lock is held. (Renamed at
    /// once, it could be cleared by another process publishing its own set before this
    /// one publishes it.)
    fn unplaced_segment(
        &self,
        store: bool,
        kind: WriteKind,
        write: &dyn Fn(&mut dyn WriteSeek) -> io::Result<()>,
    ) -> Result<(Arc<Segment>, Option<PathBuf>), StoreError> {
        if store {
            let name = format!("{}.seg", uuid::Uuid::new_v4().simple());
            let opened = self
                .write_tmp(kind, write)
                .map_err(|e| e.to_string())
                .and_then(|tmp| match Segment::open(&tmp, &name) {
                    Ok(seg) => Ok((Arc::new(seg), Some(tmp))),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e.to_string())
                    }
                });
            match opened {
                Ok(placed) => return Ok(placed),
                Err(e) => {
                    tracing::warn!(dir = %self.path.display(), cause = %e, "an index segment could not be stored; it is kept in memory");
                }
            }
        }
        let mut cur = io::Cursor::new(Vec::new());
        write(&mut cur)?;
        Segment::from_vec(cur.into_inner(), true)
            .map(|seg| (Arc::new(seg), None))
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// Give the mapped segment `seg`, written at `tmp`, its name in the directory (the
    /// caller holds the lock). Should that fail, the segment stays readable through its
    /// mapping, and a set naming it is not published (see [`Self::publish`]).
    fn place(&self, seg: &Segment, tmp: &Path) {
        let Some(name) = seg.name() else {
            let _ = std::fs::remove_file(tmp);
            return;
        };
        if let Err(e) = self.install(tmp, name) {
            tracing::warn!(dir = %self.path.display(), cause = %e, "an index segment could not be named; the stored set stays as it was");
        }
    }

    /// The set the manifest names, reusing the segments `reuse` has open; `None` when
    /// there is none or it is unusable.
    fn open_set(&self, reuse: Option<&LineIndex>) -> Option<LineIndex> {
        let m = self.manifest()?;
        let mut segs = Vec::with_capacity(m.segments.len());
        for name in &m.segments {
            let open = reuse.and_then(|ix| {
                ix.segments()
                    .iter()
                    .find(|s| s.name() == Some(name))
                    .cloned()
            });
            let seg = match open {
                Some(s) => s,
                None => match Segment::open(&self.path.join(name), name) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(dir = %self.path.display(), segment = %name, cause = %e, "rebuilding the line index");
                        return None;
                    }
                },
            };
            segs.push(seg);
        }
        LineIndex::from_segments(segs).filter(|ix| ix.head() == m.head)
    }

    /// Make `ix` the stored set (the caller holds the lock), and clear what no set uses.
    fn publish(&self, ix: &LineIndex) {
        let names: Option<Vec<String>> = ix
            .segments()
            .iter()
            .map(|s| s.name().map(str::to_string))
            .collect();
        // A segment held on the heap, or one another process has cleared meanwhile,
        // cannot be named: the stored set stays as it was.
        let Some(names) = names.filter(|n| n.iter().all(|n| self.path.join(n).exists())) else {
            return;
        };
        let m = Manifest {
            head: ix.head().to_string(),
            segments: names,
        };
        let text = m.render();
        if let Err(e) = self.write_file("manifest", WriteKind::Manifest, &|w| {
            w.write_all(text.as_bytes())
        }) {
            tracing::warn!(dir = %self.path.display(), cause = %e, "the line index's manifest could not be stored");
            return;
        }
        self.clear_litter(&m.segments);
    }

    /// Remove segments outside `keep`, the old postings file, and temporary files of
    /// processes that died writing them (the caller holds the lock).
    fn clear_litter(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let litter = if let Some(rest) = name.strip_prefix(".tmp-") {
                rest.split('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| !alive(pid))
            } else {
                (name.ends_with(".seg") && !keep.contains(&name)) || name == "base.bin"
            };
            if litter {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn changes(repo: &Repository, old: &str, new: Oid) -> Result<Changes, StoreError> {
    let old = Oid::from_str(old).map_err(git::git_err)?;
    let old_tree = git::tree_at(repo, old)?;
    let new_tree = git::tree_at(repo, new)?;
    let mut out = Vec::new();
    for path in git::changed_paths(repo, Some(&old_tree), &new_tree)? {
        let content = match new_tree.get_path(Path::new(&path)) {
            Ok(e) if e.filemode() == MODE_FILE || e.filemode() == MODE_EXEC => {
                let blob = repo.find_blob(e.id()).map_err(git::git_err)?;
                is_text(blob.content()).then(|| blob.content().into())
            }
            _ => None,
        };
        out.push((path, content));
    }
    Ok(out)
}

/// Whether `long` begins with the very segments of `prefix`.
fn starts_with(long: &LineIndex, prefix: &LineIndex) -> bool {
    long.segments().len() >= prefix.segments().len()
        && long
            .segments()
            .iter()
            .zip(prefix.segments())
            .all(|(a, b)| Arc::ptr_eq(a, b))
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
        self.line_index_given(id, progress, None)
    }

    /// [`Store::line_index_with`], where a first build at `given`'s commit indexes its
    /// files (every text file of that commit's tree, in path order) instead of
    /// inflating their blobs: an import holds them already.
    pub(super) fn line_index_given(
        &self,
        id: &RepoId,
        progress: &dyn Fn(IndexProgress),
        given: Option<(Oid, Vec<Arc<FileEntry>>)>,
    ) -> Result<Arc<LineIndex>, StoreError> {
        let h = self.handle(id)?;
        let head = Self::current_head(&h)?.to_string();
        if let Some(ix) = lock(&h.index.current).clone()
            && ix.head() == head
        {
            self.index_used(id, IndexKind::Line, ix.heap_bytes());
            return Ok(ix);
        }
        let _building = lock(&h.index.building);
        // Read the head again: the thread that held the lock may have indexed it, or a
        // newer one.
        let head = Self::current_head(&h)?;
        let current = lock(&h.index.current).clone();
        if let Some(ix) = &current
            && ix.head() == head.to_string()
        {
            self.index_used(id, IndexKind::Line, ix.heap_bytes());
            return Ok(ix.clone());
        }
        let next =
            Arc::new(self.advance_line_index(id, &h, current.as_deref(), progress, given)?);
        *lock(&h.index.current) = Some(next.clone());
        self.index_used(id, IndexKind::Line, next.heap_bytes());
        if next.needs_merge() {
            self.merge_in_background(id, &h, next.clone());
        }
        Ok(next)
    }

    /// The index at the head: the stored set (or `current`) carried forward by a delta,
    /// or a fresh build: from `given`'s files when it is at the head, else from git.
    fn advance_line_index(
        &self,
        id: &RepoId,
        h: &RepoHandle,
        current: Option<&LineIndex>,
        progress: &dyn Fn(IndexProgress),
        given: Option<(Oid, Vec<Arc<FileEntry>>)>,
    ) -> Result<LineIndex, StoreError> {
        let started = std::time::Instant::now();
        let dir = IndexDir {
            path: self.index_dir(id),
        };
        // Held until the set is published, so processes on one data directory take
        // turns and reuse each other's segments.
        let held = dir.lock();
        let store = held.is_some();
        // The head as of holding the lock: another process may have moved it and
        // stored its index meanwhile.
        let head = Self::current_head(h)?;
        let stored = if store { dir.open_set(current) } else { None };
        let opened = stored.is_some();
        if let Some(ix) = stored.or_else(|| current.cloned()) {
            if ix.head() == head.to_string() {
                if opened {
                    log_index(id, &ix, "opened the stored line index", started);
                }
                return Ok(ix);
            }
            let changed = {
                let repo = lock(&h.reader);
                changes(&repo, ix.head(), head)
            };
            match changed {
                Ok(changed) => {
                    let (parent, next_head) = (ix.head().to_string(), head.to_string());
                    let seg = dir.segment(store, WriteKind::Delta, &|w| {
                        write_delta(w, &parent, &next_head, &changed).map(drop)
                    })?;
                    if let Some(next) = ix.push(seg) {
                        if store {
                            dir.publish(&next);
                        }
                        if opened && current.is_none() {
                            log_index(id, &next, "opened the stored line index", started);
                        }
                        return Ok(next);
                    }
                }
                Err(e) => {
                    tracing::warn!(repo = %id, cause = %e, "rebuilding the line index: the change since its head could not be read");
                }
            }
        }
        let entries = match given.filter(|(at, _)| *at == head) {
            Some((_, entries)) => entries,
            None => {
                let files = {
                    let repo = Repository::open_bare(&h.dir).map_err(git::git_err)?;
                    let tree = git::tree_at(&repo, head)?;
                    git::files(&repo, &tree)?
                };
                read_all(&h.dir, &files, progress)?
            }
        };
        let total = entries.len() as u64;
        let indexing = |done: u64| {
            progress(IndexProgress::Indexing {
                done: done.min(total),
                total,
            })
        };
        let head = head.to_string();
        let seg = dir.segment(store, WriteKind::Base, &|w| {
            write_base(w, &head, &entries, &indexing).map(drop)
        })?;
        drop(entries);
        let ix = LineIndex::from_segments(vec![seg])
            .ok_or_else(|| StoreError::Io("a fresh index segment does not open".into()))?;
        if store {
            dir.publish(&ix);
        }
        log_index(id, &ix, "built the line index", started);
        Ok(ix)
    }

    /// Merge `ix`'s segments into one base on a thread of its own, then put it in
    /// place of them: in this process when the index in use still starts with them, and
    /// in the stored set when that is still what this process uses. Readers go on with
    /// the old segments until then.
    fn merge_in_background(&self, id: &RepoId, h: &Arc<RepoHandle>, ix: Arc<LineIndex>) {
        if h.index.merging.swap(true, Ordering::SeqCst) {
            return;
        }
        let dir = IndexDir {
            path: self.index_dir(id),
        };
        let (flag, h, id) = (h.clone(), h.clone(), *id);
        let spawned = std::thread::Builder::new()
            .name("line-index-merge".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let store = ix.segments().iter().all(|s| s.name().is_some());
                let merged = dir.unplaced_segment(store, WriteKind::Merge, &|w| {
                    ix.write_merged(w).map(drop)
                });
                match merged {
                    Ok((merged, unplaced)) => {
                        let _building = lock(&h.index.building);
                        let held = if merged.name().is_some() { dir.lock() } else { None };
                        if let Some(tmp) = unplaced {
                            if held.is_some() {
                                dir.place(&merged, &tmp);
                            } else {
                                let _ = std::fs::remove_file(&tmp);
                            }
                        }
                        let current = lock(&h.index.current).clone();
                        if let Some(cur) = current.filter(|c| starts_with(c, &ix)) {
                            let mut segs = vec![merged];
                            segs.extend(cur.segments()[ix.segments().len()..].iter().cloned());
                            if let Some(next) = LineIndex::from_segments(segs) {
                                let names: Vec<Option<&str>> =
                                    cur.segments().iter().map(|s| s.name()).collect();
                                let stored_is_ours = dir.manifest().is_some_and(|m| {
                                    m.head == cur.head()
                                        && m.segments
                                            .iter()
                                            .map(|n| Some(n.as_str()))
                                            .eq(names.iter().copied())
                                });
                                if held.is_some() && stored_is_ours {
                                    dir.publish(&next);
                                }
                                tracing::info!(repo = %id, segments = ix.segments().len(), ms = started.elapsed().as_millis() as u64, "merged the line index's segments");
                                *lock(&h.index.current) = Some(Arc::new(next));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(repo = %id, cause = %e, "the line index's segments could not be merged");
                    }
                }
                h.index.merging.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!(repo = %id, cause = %e, "no thread to merge the line index's segments");
            flag.index.merging.store(false, Ordering::SeqCst);
        }
    }

    /// Forget `ix`, found damaged, in this process and in the stored set, so that the
    /// next call builds afresh.
    fn discard_damaged(&self, id: &RepoId, ix: &Arc<LineIndex>) -> Result<(), StoreError> {
        let h = self.handle(id)?;
        let _building = lock(&h.index.building);
        {
            let mut cur = lock(&h.index.current);
            if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, ix)) {
                *cur = None;
            }
        }
        let dir = IndexDir {
            path: self.index_dir(id),
        };
        if let Some(_held) = dir.lock()
            && dir.manifest().is_some_and(|m| {
                ix.segments()
                    .iter()
                    .any(|s| s.name().is_some_and(|n| m.segments.iter().any(|x| x == n)))
            })
        {
            tracing::warn!(repo = %id, "a stored line index segment failed its checksum; rebuilding");
            let _ = std::fs::remove_file(dir.path.join("manifest"));
        }
        Ok(())
    }

    /// Repo `id`'s line index at `head` when one is at hand without a build: the one
    /// this process holds, or the stored set when it is at `head` (then held from now
    /// on). `None` while another thread builds or carries it, or when none is at `head`:
    /// a caller that only wants files' text reads them from git instead.
    pub(super) fn line_index_at(
        &self,
        id: &RepoId,
        h: &RepoHandle,
        head: Oid,
    ) -> Option<Arc<LineIndex>> {
        let head = head.to_string();
        let at_head = || {
            lock(&h.index.current)
                .clone()
                .filter(|ix| ix.head() == head)
        };
        if let Some(ix) = at_head() {
            return Some(ix);
        }
        let _building = h.index.building.try_lock().ok()?;
        if let Some(ix) = at_head() {
            return Some(ix);
        }
        let dir = IndexDir {
            path: self.index_dir(id),
        };
        if dir.manifest()?.head != head {
            return None;
        }
        let current = lock(&h.index.current).clone();
        let ix = Arc::new(dir.open_set(current.as_deref())?);
        if ix.head() != head {
            return None;
        }
        *lock(&h.index.current) = Some(ix.clone());
        self.index_used(id, IndexKind::Line, ix.heap_bytes());
        Some(ix)
    }

    /// Search with repo `id`'s line index: `run` computes an answer from an index, and
    /// is run again on a rebuilt one when a segment it read turns out damaged, so no
    /// answer ever comes from bytes that failed their checks.
    pub(super) fn with_line_index<T>(
        &self,
        id: &RepoId,
        run: impl Fn(&LineIndex) -> T,
    ) -> Result<T, StoreError> {
        let _reading = crate::mapped::reading();
        for _ in 0..3 {
            let ix = self.line_index(id)?;
            let answer = run(&ix);
            if !ix.damaged() {
                return Ok(answer);
            }
            self.discard_damaged(id, &ix)?;
        }
        Err(StoreError::Io(
            "the line index keeps failing its checks after rebuilds; check the disk holding the data directory".into(),
        ))
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

fn log_index(id: &RepoId, ix: &LineIndex, what: &str, started: std::time::Instant) {
    let stats = ix.stats();
    tracing::info!(
        repo = %id,
        files = stats.files,
        segments = stats.segments,
        content_bytes = stats.content_bytes,
        postings_bytes = stats.postings_bytes,
        heap_bytes = stats.heap_bytes,
        ms = started.elapsed().as_millis() as u64,
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::RepoPath;

    /// A first build given the files of the head's tree (an import holds them) indexes
    /// them without reading git; given files of another commit, it reads git.
    #[test]
    fn a_first_build_indexes_the_files_given_at_the_head() {
        let given = |at: Oid| {
            let entries = vec![Arc::new(FileEntry {
                path: "a.txt".into(),
                content: b"given\n".to_vec().into(),
            })];
            Some((at, entries))
        };
        let text = |ix: &LineIndex| ix.file("a.txt").map(|f| f.content.to_vec());

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let files = [(RepoPath::parse("a.txt").unwrap(), "in git\n".to_string())];
        let (row, outcome) = store.create_repo(Default::default(), &files).unwrap();
        let head = Oid::from_str(&outcome.head).unwrap();
        let ix = store
            .line_index_given(&row.id, &|_| {}, given(head))
            .unwrap();
        assert_eq!(text(&ix), Some(b"given\n".to_vec()));

        let (row, _) = store.create_repo(Default::default(), &files).unwrap();
        let ix = store
            .line_index_given(&row.id, &|_| {}, given(Oid::zero()))
            .unwrap();
        assert_eq!(text(&ix), Some(b"in git\n".to_vec()));
    }
}

//! The store's ranked indexes: one per repo, built and stored by an import, loaded from
//! its stored copy (or built from git when there is none it can trust) on the first
//! ranked query, then moved forward incrementally when a commit lands (and, should that
//! have been skipped, on the next query), so a commit costs only the files and commits
//! it changed.
//!
//! One process builds a repo's index at a time, under an `flock` on [`BUILD_LOCK`] held
//! until its stored copy is in place, on a thread of its own; a question waits for that
//! build, in whichever process it runs, at most the ranked wait, and past it is answered
//! partially from the line index (`ranked_partial`).
//!
//! The stored copy is `<data-dir>/index/<repo-id>/ranked.bin` ([`crate::ranked::disk`]
//! has its layout). A large repo's build writes it itself, as it goes, and is opened
//! from it ([`RankedIndex::build_stored`]), so that no process holds a large index
//! whole; a small one's is written after the build, and again once enough has changed
//! since the last write ([`SAVE_AFTER_COMMITS`], [`SAVE_AFTER_FILES`], at most every
//! [`SAVE_INTERVAL`]): a snapshot is taken under the index's lock (the large parts
//! shared, not copied), and written on a thread of its own to a temporary file, which
//! is synced, checked, mapped and renamed over the old one, so a reader in any process
//! sees one complete file or the other. A process that loads it maps it and carries it
//! forward from the head it names to the current one, whichever process made the
//! commits in between.
//!
//! Loaded or just stored, an index reads its terms and postings in place from the
//! mapped file: they are page cache, shared by every process on the data directory,
//! not heap. Once a write lands, the index moves onto the new file
//! ([`RankedIndex::rebase`]), with whatever changed since the snapshot carried over, so
//! that what a build or a stream of commits put on the heap leaves it at each store.
//! A file is never written in place: another process may have it mapped.

use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

use super::{IndexKind, Store, StoreError, git, lock};
use crate::model::{IndexBuilding, RankedQuery, RankedResults, RepoId};
use crate::ranked::disk::{Snapshot, StoredBase};
use crate::ranked::{AdvanceStats, RankedError, RankedIndex, RankedProgress, Weights};
use crate::search::compile_glob;
use crate::search::index::LineIndex;

/// The stored copy's file name in the repo's index directory.
const FILE: &str = "ranked.bin";
/// Write the stored copy again once this many commits have been applied since the last
/// write: loading it then costs at most this many commits' diffs on top.
pub const SAVE_AFTER_COMMITS: usize = 256;
/// Or once this many files have been re-read since the last write.
pub const SAVE_AFTER_FILES: usize = 4096;
/// But not more often than this: each write serializes the whole index.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// A temporary file older than this was left by a process that died mid-write.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// A temporary file nobody holds a lock on, and older than this, was left by a process
/// that died mid-write (younger, its writer may not have locked it yet).
const TEMP_GRACE: Duration = Duration::from_secs(10);
/// Test hook: when set (to a file path), a writer stops halfway through writing the
/// stored copy, writes its process id to that path, and waits for as long as that file
/// exists, so that a test can kill or stop it there.
const PAUSE_HOOK: &str = "SCOPED_REPO_MCP_TEST_PAUSE_RANKED_SAVE";
/// The file whose `flock` marks the one process building a repo's ranked index, in its
/// index directory; it holds the build's percent, for the other processes to report.
const BUILD_LOCK: &str = "ranked.build";
/// Test hook: when set (to a file path), a build, at its first report of progress,
/// writes its process id to that path and waits for as long as the file exists, so
/// that a test can ask questions during a build, or kill the builder.
const HOLD_BUILD_HOOK: &str = "SCOPED_REPO_MCP_TEST_HOLD_RANKED_BUILD";
/// Test hook: when set (to a number of bytes), a build spills its documents to files
/// once they pass that many bytes, instead of [`crate::ranked::SPILL_AFTER_BYTES`],
/// so that a test's small repo takes the large repos' path.
const SPILL_HOOK: &str = "SCOPED_REPO_MCP_TEST_RANKED_SPILL_AFTER";
/// The directory a large build keeps its checkpoints in, in the repo's index directory
/// ([`crate::ranked::resume`]): touched only under [`BUILD_LOCK`].
const RESUME_DIR: &str = "ranked.resume";
/// Test hook: when set (to a number of files), a build that spills writes a checkpoint
/// at least every that many files, instead of every
/// [`crate::ranked::resume::CHECKPOINT_EVERY`] only.
const CHECKPOINT_FILES_HOOK: &str = "SCOPED_REPO_MCP_TEST_RANKED_CHECKPOINT_FILES";
/// Test hook: when set (to a file path), a build, after its first checkpoint short of
/// the last file, writes its process id to that path and waits for as long as the file
/// exists, so that a test can kill it with a checkpoint behind it.
const HOLD_CHECKPOINT_HOOK: &str = "SCOPED_REPO_MCP_TEST_HOLD_RANKED_CHECKPOINT";
/// How long a ranked question waits for a build under way, by default, before it is
/// answered partially: a small repo's build ends within it, a large one's does not.
pub const RANKED_WAIT: Duration = Duration::from_secs(5);
/// How often a question waiting on another process's build looks again.
const POLL: Duration = Duration::from_millis(100);

/// The stored copies this process is writing: how many saves are under way (counted
/// from before their thread starts), the temporary files they write, and a signal for
/// each one that ends, so that a process stopping can wait for them
/// ([`finish_index_writes`]) rather than leave half-written files behind.
static WRITES: Mutex<Writes> = Mutex::new(Writes {
    saves: 0,
    temps: Vec::new(),
    builds: Vec::new(),
});
static WRITE_ENDED: std::sync::Condvar = std::sync::Condvar::new();

struct Writes {
    saves: usize,
    temps: Vec<PathBuf>,
    /// The index directories of the builds under way, whose large ones write their
    /// stored copy as they go (under a name of this process's, see
    /// [`crate::ranked::disk`]).
    builds: Vec<PathBuf>,
}

fn writes() -> std::sync::MutexGuard<'static, Writes> {
    WRITES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait, at most `within`, for the stored copies this process is writing to be whole;
/// past it, remove what they wrote so far (their threads write on into files no name
/// leads to, and the process is about to end). `true` when every write finished.
///
/// A server calls it as it stops (stdin closed, SIGTERM, Ctrl-C): the index it just
/// built is then stored for the next process, instead of rebuilt by it.
///
/// A build under way is not waited for (it may have a minute left on a large repo): the
/// copy a large build writes as it goes is removed, and the next process builds again.
pub fn finish_index_writes(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut w = writes();
    while w.saves > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            for tmp in w.temps.drain(..) {
                let _ = std::fs::remove_file(&tmp);
            }
            for dir in &w.builds {
                remove_own_temps(dir);
            }
            return false;
        }
        w = WRITE_ENDED
            .wait_timeout(w, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    // The saves are done, their copies renamed into place: what is left of this
    // process's under its names is a build's, which will not finish.
    for dir in &w.builds {
        remove_own_temps(dir);
    }
    true
}

/// One save under way, counted until dropped.
struct Saving;

impl Saving {
    fn begin() -> Self {
        writes().saves += 1;
        Self
    }
}

impl Drop for Saving {
    fn drop(&mut self) {
        writes().saves -= 1;
        WRITE_ENDED.notify_all();
    }
}

/// A path listed in one of [`Writes`]' lists (a temporary file being written, or
/// the index directory of a build under way) until dropped.
struct Listed {
    path: PathBuf,
    list: fn(&mut Writes) -> &mut Vec<PathBuf>,
}

impl Listed {
    fn begin(path: &Path, list: fn(&mut Writes) -> &mut Vec<PathBuf>) -> Self {
        list(&mut writes()).push(path.to_path_buf());
        Self {
            path: path.to_path_buf(),
            list,
        }
    }

    fn temp(tmp: &Path) -> Self {
        Self::begin(tmp, |w| &mut w.temps)
    }

    fn build(dir: &Path) -> Self {
        Self::begin(dir, |w| &mut w.builds)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut w = writes();
        let list = (self.list)(&mut w);
        if let Some(i) = list.iter().position(|p| *p == self.path) {
            list.swap_remove(i);
        }
    }
}

/// How this process came by a repo's ranked index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankedOrigin {
    /// Built from git: there was no stored copy, or none that could be trusted.
    Built,
    /// Loaded from the stored copy, then carried forward by this much.
    Loaded(AdvanceStats),
}

/// One repo's ranked index, if this process has one yet.
#[derive(Default)]
pub(super) struct RankedState {
    index: Option<RankedIndex>,
    origin: Option<RankedOrigin>,
    /// What has been applied since the stored copy was last written (or loaded).
    unsaved: AdvanceStats,
    last_save: Option<Instant>,
    /// Set while a write of this repo's copy is under way: one at a time.
    saving: Arc<AtomicBool>,
    /// A build under way in this process, which questions wait on.
    build: Option<Arc<Build>>,
    /// The index's heap as last measured (at its load, and at each save), for the bound
    /// on index memory.
    heap: usize,
}

/// The mutex is not held during a build: questions meanwhile see [`RankedState::build`].
pub(super) type Slot = Arc<Mutex<RankedState>>;

impl From<RankedError> for StoreError {
    fn from(e: RankedError) -> Self {
        match e {
            RankedError::Git(m) => StoreError::Git(m),
            RankedError::Store(m) => StoreError::Io(m),
        }
    }
}

/// The file under a stored copy's buffer: stops halfway through its first write, for
/// as long as the file [`PAUSE_HOOK`] names exists, when that hook is set.
struct Sink {
    file: std::fs::File,
    pause: Option<std::ffi::OsString>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(marker) = self.pause.take() {
            let half = buf.len().div_ceil(2);
            self.file.write_all(&buf[..half])?;
            self.file.sync_all()?;
            std::fs::write(&marker, std::process::id().to_string())?;
            while std::path::Path::new(&marker).exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.file.write_all(&buf[half..])?;
            return Ok(buf.len());
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Sink {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Write `snap` as the stored copy in `dir`: to a temporary file, synced, checked and
/// mapped (what the index moves onto), then renamed over the old one.
fn write_stored(dir: &Path, snap: &Snapshot) -> Result<StoredBase, StoreError> {
    std::fs::create_dir_all(dir)?;
    remove_stale_temps(dir);
    remove_abandoned_checkpoint(dir);
    let tmp = dir.join(format!(
        ".{FILE}.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let _temp = Listed::temp(&tmp);
    let written = (|| -> Result<StoredBase, StoreError> {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        // Held while it is written (see `remove_stale_temps`).
        super::try_flock(&file);
        let mut w = BufWriter::with_capacity(
            1 << 20,
            Sink {
                file,
                pause: std::env::var_os(PAUSE_HOOK),
            },
        );
        snap.write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?.file;
        file.sync_all()?;
        // Read back as a load would: what this process moves onto is what the next
        // one will load.
        let stored = StoredBase::open(&file, snap)
            .map_err(|e| StoreError::Io(format!("the copy just written reads back wrong: {e}")))?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(stored)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Remove temporary files that writers killed mid-write left behind. A writer holds
/// an exclusive `flock` on its temporary while it writes, so one that nobody holds is a
/// dead writer's, removed at once, whatever machine or container it ran in; a few
/// seconds' grace covers the instant between a file's creation and its lock. One an
/// hour old goes whatever its lock says (a writer of a version that took no lock).
fn remove_stale_temps(dir: &Path) {
    for e in temps_in(dir, &format!(".{FILE}.")) {
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        let abandoned =
            age > TEMP_GRACE && std::fs::File::open(e.path()).is_ok_and(|f| super::try_flock(&f));
        if abandoned || age > STALE_TEMP {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Remove the checkpoint an interrupted build left in `dir` when a stored copy is being
/// written there: the next process loads that copy and builds nothing, so nothing would
/// go on from it. Only when no process holds the build lock (a build under way owns
/// its checkpoint; this process's own build, holding it, removed any of another tree
/// as it began).
fn remove_abandoned_checkpoint(dir: &Path) {
    let resume = dir.join(RESUME_DIR);
    if !resume.exists() {
        return;
    }
    let Ok(lock) = std::fs::File::open(dir.join(BUILD_LOCK)) else {
        return;
    };
    if super::try_flock(&lock) {
        crate::ranked::resume::discard(&resume);
    }
}

/// Move into `index_dir` a checkpoint of `tree` that another repo's interrupted build
/// left, when this repo has none: a rerun of an interrupted `repo create` makes a new
/// repo of the same files, whose build then goes on from the first one's. Only a
/// checkpoint whose repo's build lock this process can take (no build of that repo
/// owns it) is moved.
fn adopt_checkpoint(index_dir: &Path, tree: Oid) {
    use crate::ranked::resume::checkpoint_tree;
    let own = index_dir.join(RESUME_DIR);
    if checkpoint_tree(&own).is_some() {
        return;
    }
    let Some(root) = index_dir.parent() else {
        return;
    };
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let other = e.path();
        let dir = other.join(RESUME_DIR);
        if other == index_dir || checkpoint_tree(&dir) != Some(tree) {
            continue;
        }
        let Ok(lock) = std::fs::File::open(other.join(BUILD_LOCK)) else {
            continue;
        };
        if !super::try_flock(&lock) {
            continue;
        }
        // Data files with no record (a build killed before its first checkpoint).
        crate::ranked::resume::discard(&own);
        match std::fs::rename(&dir, &own) {
            Ok(()) => {
                tracing::info!(from = %other.display(), "took over another repo's ranked build checkpoint of the same tree");
                return;
            }
            Err(e) => {
                tracing::warn!(from = %other.display(), cause = %e, "another repo's ranked build checkpoint could not be taken over")
            }
        }
    }
}

/// Remove the temporary copies this process is writing in `dir`.
fn remove_own_temps(dir: &Path) {
    for e in temps_in(dir, &format!(".{FILE}.{}.", std::process::id())) {
        let _ = std::fs::remove_file(e.path());
    }
}

/// The entries of `dir` whose names start with `prefix` (none when it cannot be read).
fn temps_in(dir: &Path, prefix: &str) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(move |e| e.file_name().to_string_lossy().starts_with(prefix))
}

/// The stored copy in `dir`, carried forward to `head`; `None` (with the reason
/// logged) when there is none or it cannot be trusted, so the caller builds afresh.
fn load(
    id: &RepoId,
    dir: &Path,
    repo: &Repository,
    head: Oid,
) -> Option<(RankedIndex, AdvanceStats)> {
    let path = dir.join(FILE);
    let mut header = [0u8; crate::ranked::disk::HEADER];
    let file = match std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header).map(|()| f))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "the stored ranked index could not be read; rebuilding");
            return None;
        }
    };
    // Decide from the header alone whether the copy can be carried to the head: it must
    // describe the head or one of its ancestors.
    let stored = crate::ranked::disk::stored_head(&header);
    if !stored.is_some_and(|s| s == head || repo.graph_descendant_of(head, s).unwrap_or(false)) {
        tracing::warn!(repo = %id, stored = ?stored.map(|s| s.to_string()), "the stored ranked index is not of the head's history; rebuilding");
        return None;
    }
    // The file as opened: a newer copy renamed over the path meanwhile is another file.
    let mut ix = match RankedIndex::open(&file) {
        Ok(ix) => ix,
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "the stored ranked index is damaged; rebuilding");
            return None;
        }
    };
    match ix.advance(repo, head) {
        Ok(stats) => Some((ix, stats)),
        Err(e) => {
            tracing::warn!(repo = %id, cause = %e, "the stored ranked index could not be carried to the head; rebuilding");
            None
        }
    }
}

/// Percent of a build that `p` marks: reading the tree's files is most of it (90%),
/// the history the rest.
fn percent(p: RankedProgress) -> u32 {
    let part = |done: u64, total: u64| (done.min(total) * 100 / total.max(1)) as u32;
    match p {
        RankedProgress::Files { done, total } => part(done, total) * 9 / 10,
        RankedProgress::Resumed { from, total } => part(from, total) * 9 / 10,
        RankedProgress::Commits { done, total } => 90 + part(done, total) / 10,
    }
}

/// The lock of the one process building a repo's ranked index (an `flock` on
/// [`BUILD_LOCK`], let go when the process ends, however it ends), held from before the
/// build until its stored copy is renamed into place. The file holds the build's percent
/// for the other processes to report.
struct BuildLock {
    file: std::fs::File,
}

impl BuildLock {
    /// The lock, unless another process holds it.
    fn try_take(dir: &Path) -> Result<Option<Self>, StoreError> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(BUILD_LOCK))?;
        if !super::try_flock(&file) {
            return Ok(None);
        }
        let held = Self { file };
        held.note(None);
        Ok(Some(held))
    }

    /// Tell the other processes how far the build is.
    fn note(&self, percent: Option<u32>) {
        let text = percent.map(|p| format!("{p}\n")).unwrap_or_default();
        let mut f = &self.file;
        let _ = f
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| f.write_all(text.as_bytes()))
            .and_then(|()| self.file.set_len(text.len() as u64));
    }

    /// How far another process's build is, as its lock file says.
    fn read(dir: &Path) -> Option<u32> {
        std::fs::read_to_string(dir.join(BUILD_LOCK))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Stop the build here for as long as the file `marker` exists ([`HOLD_BUILD_HOOK`]),
/// having written this process's id into it.
fn hold_build(marker: &std::ffi::OsStr) {
    if std::fs::write(marker, std::process::id().to_string()).is_err() {
        return;
    }
    while Path::new(marker).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same error, for every question that waited on one build.
fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Git(m) => StoreError::Git(m.clone()),
        StoreError::NoSpace(m) => StoreError::NoSpace(m.clone()),
        StoreError::Io(m) => StoreError::Io(m.clone()),
        other => StoreError::Io(other.to_string()),
    }
}

/// A build of a repo's ranked index under way in this process: its progress so far,
/// and how it ended, for the questions that wait on it.
#[derive(Default)]
pub(super) struct Build {
    state: Mutex<BuildState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct BuildState {
    events: Vec<RankedProgress>,
    ended: Option<Result<(), StoreError>>,
}

impl Build {
    fn note(&self, p: RankedProgress) {
        lock(&self.state).events.push(p);
        self.changed.notify_all();
    }

    fn end(&self, outcome: Result<(), StoreError>) {
        lock(&self.state).ended = Some(outcome);
        self.changed.notify_all();
    }

    /// How far it is.
    fn building(&self) -> IndexBuilding {
        let last = lock(&self.state).events.last().copied();
        IndexBuilding {
            percent: Some(last.map_or(0, percent)),
            files_pending: match last {
                Some(RankedProgress::Files { done, total })
                | Some(RankedProgress::Resumed { from: done, total }) => {
                    Some(total.saturating_sub(done))
                }
                Some(RankedProgress::Commits { .. }) => Some(0),
                None => None,
            },
            elsewhere: false,
        }
    }

    /// Wait for the build to end, until `deadline`, telling `progress` each report from
    /// the `seen`th on; how it ended, or `None` at the deadline.
    fn wait(
        &self,
        deadline: Instant,
        seen: &mut usize,
        progress: &dyn Fn(RankedProgress),
    ) -> Option<Result<(), StoreError>> {
        let mut st = lock(&self.state);
        loop {
            if st.events.len() > *seen {
                let new = st.events[*seen..].to_vec();
                *seen = st.events.len();
                drop(st);
                new.into_iter().for_each(progress);
                st = lock(&self.state);
                continue;
            }
            if let Some(ended) = &st.ended {
                return Some(ended.as_ref().map(|_| ()).map_err(copy_err));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A build of one repo's ranked index, from its lock taken to the index in its slot.
struct BuildJob {
    id: RepoId,
    repo_dir: PathBuf,
    index_dir: PathBuf,
    slot: Slot,
    build: Arc<Build>,
    held: BuildLock,
    head: Oid,
    /// The line index at `head`, when at hand: the build reads files' text from it
    /// rather than inflating their blobs.
    lines: Option<Arc<LineIndex>>,
}

impl BuildJob {
    /// Build, put the index in its slot, and store it: before returning when
    /// `store_now` (an import, whose process may end next), else on a thread of its own.
    /// The lock is let go once the stored copy is in place (or could not be written).
    fn run(self, progress: &dyn Fn(RankedProgress), store_now: bool) -> Result<(), StoreError> {
        let started = Instant::now();
        let hold = std::cell::Cell::new(std::env::var_os(HOLD_BUILD_HOOK));
        // What builds killed midway left (see `remove_stale_temps`) goes before this
        // build adds its own.
        remove_stale_temps(&self.index_dir);
        let building = Listed::build(&self.index_dir);
        // A large repo's build writes its stored copy as it goes and reads it mapped
        // (`RankedIndex::build_stored`); a small one's is stored below.
        let spill_after = std::env::var(SPILL_HOOK)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::ranked::SPILL_AFTER_BYTES);
        // A build that spills keeps checkpoints, and goes on from one an interrupted
        // build of the same tree left (this process holds the build lock: no other
        // touches them meanwhile).
        let resume = crate::ranked::resume::ResumePlan {
            dir: self.index_dir.join(RESUME_DIR),
            every: crate::ranked::resume::CHECKPOINT_EVERY,
            every_files: std::env::var(CHECKPOINT_FILES_HOOK)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            hold: std::env::var_os(HOLD_CHECKPOINT_HOOK),
        };
        let built = Repository::open_bare(&self.repo_dir)
            .map_err(git::git_err)
            .and_then(|repo| {
                if let Ok(tree) = repo.find_commit(self.head).map(|c| c.tree_id()) {
                    adopt_checkpoint(&self.index_dir, tree);
                }
                // A file's text from the line index at this head; a segment failing
                // its checks reads as empty and marks the index damaged, so the text
                // is then read from git. The pages read are let go as a search's are.
                let lines = self.lines.as_deref();
                let stored_text = |path: &str, read: &mut dyn FnMut(&[u8])| {
                    let Some(f) = lines.and_then(|l| l.file(path)) else {
                        return false;
                    };
                    let _reading = crate::mapped::reading();
                    let bytes: &[u8] = &f.content;
                    if lines.is_some_and(|l| l.damaged()) {
                        return false;
                    }
                    read(bytes);
                    true
                };
                RankedIndex::build_stored_resuming(
                    &repo,
                    self.head,
                    &|p| {
                        self.build.note(p);
                        self.held.note(Some(percent(p)));
                        progress(p);
                        if let Some(marker) = hold.take() {
                            hold_build(&marker);
                        }
                    },
                    &self.index_dir.join(FILE),
                    spill_after,
                    Some(resume),
                    &stored_text,
                )
                .map_err(StoreError::from)
            });
        drop(building);
        let (mut ix, stored) = match built {
            Ok(built) => built,
            Err(e) => {
                lock(&self.slot).build = None;
                self.build.end(Err(copy_err(&e)));
                return Err(e);
            }
        };
        tracing::info!(repo = %self.id, files = ix.len(), stored, took_ms = started.elapsed().as_millis() as u64, "ranked index built");
        if stored {
            // A repo deleted meanwhile keeps no copy (the index, mapped, reads on).
            if !self.repo_dir.is_dir() {
                let _ = std::fs::remove_file(self.index_dir.join(FILE));
            }
            let mut guard = lock(&self.slot);
            let state = &mut *guard;
            state.heap = ix.heap_bytes().total();
            state.index = Some(ix);
            state.origin = Some(RankedOrigin::Built);
            state.unsaved = AdvanceStats::default();
            state.last_save = Some(Instant::now());
            state.build = None;
            self.build.end(Ok(()));
            drop(guard);
            // The copy is in place: another process may load it now.
            drop(self.held);
            crate::store::memory::release_free_memory();
            return Ok(());
        }
        if store_now {
            let _save = Saving::begin();
            let snap = ix.snapshot();
            let written = if self.repo_dir.is_dir() {
                write_stored(&self.index_dir, &snap).map(Some)
            } else {
                Ok(None)
            };
            drop(snap);
            match written {
                Ok(Some(stored)) => {
                    ix.rebase(stored);
                    tracing::info!(repo = %self.id, took_ms = started.elapsed().as_millis() as u64, "ranked index stored");
                }
                Ok(None) => ix.forget_snapshot(),
                Err(e) => {
                    ix.forget_snapshot();
                    tracing::warn!(repo = %self.id, cause = %e, "the ranked index could not be stored; the next process may rebuild it");
                }
            }
        }
        let mut guard = lock(&self.slot);
        let state = &mut *guard;
        state.heap = ix.heap_bytes().total();
        state.index = Some(ix);
        state.origin = Some(RankedOrigin::Built);
        state.unsaved = AdvanceStats::default();
        state.build = None;
        self.build.end(Ok(()));
        if store_now {
            state.last_save = Some(Instant::now());
            drop(guard);
            crate::store::memory::release_free_memory();
        } else {
            save(
                &self.index_dir,
                &self.repo_dir,
                &self.id,
                &self.slot,
                state,
                Some(self.held),
            );
        }
        Ok(())
    }
}

/// How a request to build a repo's ranked index ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankedBuild {
    /// Built and stored by this call.
    Built,
    /// There was one already: in this process, or stored (loaded by this call).
    Ready,
    /// Another process (or another thread of this one) is building it.
    Elsewhere,
}

/// Write the stored copy of `state`'s index (`slot` holds `state`), on a thread of its
/// own, if none is being written already; once written, the index moves onto it.
/// `held`, a build's lock, is let go when the write ends.
fn save(
    index_dir: &Path,
    repo_dir: &Path,
    id: &RepoId,
    slot: &Slot,
    state: &mut RankedState,
    held: Option<BuildLock>,
) {
    let Some(ix) = state.index.as_mut() else {
        return;
    };
    if state.saving.swap(true, Ordering::AcqRel) {
        return;
    }
    let started = Instant::now();
    let snap = ix.snapshot();
    let snapshot_ms = started.elapsed().as_millis() as u64;
    state.unsaved = AdvanceStats::default();
    state.last_save = Some(Instant::now());
    let (dir, repo_dir, saving, id, slot) = (
        index_dir.to_path_buf(),
        repo_dir.to_path_buf(),
        state.saving.clone(),
        *id,
        slot.clone(),
    );
    let save = Saving::begin();
    let spawned = std::thread::Builder::new()
        .name("ranked-save".into())
        .spawn(move || {
            let _save = save;
            let started = Instant::now();
            // A repo deleted meanwhile gets no index directory back.
            let result = if repo_dir.is_dir() {
                write_stored(&dir, &snap).map(Some)
            } else {
                Ok(None)
            };
            drop(snap);
            // The copy is in place (or will not be): another process may build now.
            drop(held);
            let write_ms = started.elapsed().as_millis() as u64;
            let mut guard = lock(&slot);
            let state = &mut *guard;
            match (result, state.index.as_mut()) {
                (Ok(Some(stored)), Some(ix)) => {
                    let moved = ix.rebase(stored);
                    let heap = ix.heap_bytes();
                    state.heap = heap.total();
                    tracing::debug!(repo = %id, snapshot_ms, write_ms, moved, heap_bytes = heap.total(), terms = heap.terms, files = heap.files, fields = heap.fields, history = heap.history, mapped_bytes = heap.mapped, "ranked index stored");
                }
                (Ok(_), ix) => {
                    if let Some(ix) = ix {
                        ix.forget_snapshot();
                    }
                }
                (Err(e), ix) => {
                    if let Some(ix) = ix {
                        ix.forget_snapshot();
                    }
                    tracing::warn!(repo = %id, cause = %e, "the ranked index could not be stored; the next process may rebuild it");
                }
            }
            saving.store(false, Ordering::Release);
            drop(guard);
            // After the lock: the heap the index moved off, and the snapshot's
            // buffers, go back to the system.
            crate::store::memory::release_free_memory();
        });
    if let Err(e) = spawned {
        tracing::warn!(repo = %id, cause = %e, "the ranked index could not be stored");
        if let Some(ix) = state.index.as_mut() {
            ix.forget_snapshot();
        }
        state.saving.store(false, Ordering::Release);
    }
}

impl Store {
    fn ranked_slot(&self, id: &RepoId) -> Slot {
        lock(&self.ranked).entry(*id).or_default().clone()
    }

    /// How this process came by repo `id`'s ranked index, if it has one.
    pub fn ranked_origin(&self, id: &RepoId) -> Option<RankedOrigin> {
        let slot = lock(&self.ranked).get(id).cloned()?;
        lock(&slot).origin
    }

    /// Where repo `id`'s ranked index is stored.
    pub fn ranked_index_path(&self, id: &RepoId) -> PathBuf {
        self.index_dir(id).join(FILE)
    }

    fn save_ranked(&self, id: &RepoId, slot: &Slot, state: &mut RankedState) {
        save(
            &self.index_dir(id),
            &self.git_dir(id),
            id,
            slot,
            state,
            None,
        );
    }

    /// Count `stats` as applied to `state`'s index, and write the stored copy again if
    /// enough has changed since it was last written.
    fn note_advance(&self, id: &RepoId, slot: &Slot, state: &mut RankedState, stats: AdvanceStats) {
        state.unsaved.files += stats.files;
        state.unsaved.commits += stats.commits;
        let enough =
            state.unsaved.commits >= SAVE_AFTER_COMMITS || state.unsaved.files >= SAVE_AFTER_FILES;
        let due = state.last_save.is_none_or(|t| t.elapsed() >= SAVE_INTERVAL);
        if enough && due {
            self.save_ranked(id, slot, state);
        }
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
        let Some(ix) = guard.index.as_mut() else {
            return;
        };
        match ix.advance(repo, head) {
            Ok(stats) => self.note_advance(id, &slot, &mut guard, stats),
            Err(e) => {
                tracing::warn!(repo = %id, cause = %e, "ranked index not advanced; rebuilding on next query");
                guard.index = None;
            }
        }
    }

    /// Drop repo `id`'s ranked index from memory, unless a query is using it.
    pub(super) fn drop_ranked(&self, id: &RepoId) {
        let Some(slot) = lock(&self.ranked).get(id).cloned() else {
            return;
        };
        if let Ok(mut guard) = slot.try_lock() {
            // The stored copy stays: the next query loads it and carries it forward.
            guard.index = None;
            guard.unsaved = AdvanceStats::default();
        }
    }

    /// Ranked natural-language search at the head.
    pub fn search_ranked(
        &self,
        id: &RepoId,
        query: &RankedQuery,
    ) -> Result<RankedResults, StoreError> {
        self.search_ranked_with(id, query, &|_| {})
    }

    /// [`Store::search_ranked`], telling `progress` how a build of the index goes.
    ///
    /// With no index in memory, the stored copy is loaded; with none stored, one
    /// process builds it (on a thread of its own, under the repo's build lock) and the
    /// question waits for that build, in whichever process it runs, up to the ranked
    /// wait ([`Store::set_ranked_wait`]). Past it, the answer is partial: the line
    /// index's files holding the most of the question's words, with how far the build
    /// is ([`RankedResults::partial`]).
    pub fn search_ranked_with(
        &self,
        id: &RepoId,
        query: &RankedQuery,
        progress: &dyn Fn(RankedProgress),
    ) -> Result<RankedResults, StoreError> {
        let glob = query.path_glob.as_deref().map(compile_glob).transpose()?;
        let h = self.handle(id)?;
        let _reading = crate::mapped::reading();
        // A handle of its own: indexing a large repo must not hold up `read_file` calls
        // waiting on the shared reader.
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let head = git::head(&repo)?;
        // The answer's snippets are cut from the files' text: the line index holds it
        // uncompressed, where git would inflate each blob.
        let lines = self.line_index_at(id, &h, head);
        let slot = self.ranked_slot(id);
        let deadline = Instant::now() + self.ranked_wait();
        let mut seen = 0;
        // The stored copy's modification time when a load last found nothing to trust:
        // while another process builds, it is loaded again only once it has changed.
        let mut tried: Option<Option<std::time::SystemTime>> = None;
        loop {
            let mut guard = lock(&slot);
            if guard.index.is_some() {
                return self.answer_ranked(
                    id,
                    &slot,
                    &mut guard,
                    (&repo, lines.as_deref()),
                    head,
                    query,
                    &glob,
                );
            }
            if let Some(build) = guard.build.clone() {
                drop(guard);
                match build.wait(deadline, &mut seen, progress) {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => return Err(e),
                    None => return self.partial_ranked(id, query, build.building()),
                }
            }
            let dir = self.index_dir(id);
            let stamp = std::fs::metadata(dir.join(FILE))
                .and_then(|m| m.modified())
                .ok();
            if tried != Some(stamp) {
                tried = Some(stamp);
                if self.install_stored(id, &slot, &mut guard, &repo, head) {
                    continue;
                }
            }
            match BuildLock::try_take(&dir)? {
                Some(held) => {
                    // Stored by another process between the look above and the lock.
                    if self.install_stored(id, &slot, &mut guard, &repo, head) {
                        continue;
                    }
                    let build = Arc::new(Build::default());
                    guard.build = Some(build.clone());
                    drop(guard);
                    let job = BuildJob {
                        id: *id,
                        repo_dir: h.dir.clone(),
                        index_dir: dir,
                        slot: slot.clone(),
                        build: build.clone(),
                        held,
                        head,
                        lines: lines.clone(),
                    };
                    let spawned = std::thread::Builder::new()
                        .name("ranked-build".into())
                        .spawn(move || {
                            let _ = job.run(&|_| {}, false);
                        });
                    if let Err(e) = spawned {
                        lock(&slot).build = None;
                        let e =
                            StoreError::Io(format!("the ranked index build could not start: {e}"));
                        build.end(Err(copy_err(&e)));
                        return Err(e);
                    }
                }
                None => {
                    drop(guard);
                    let now = Instant::now();
                    if now >= deadline {
                        return self.partial_ranked(
                            id,
                            query,
                            IndexBuilding {
                                percent: BuildLock::read(&dir),
                                files_pending: None,
                                elsewhere: true,
                            },
                        );
                    }
                    std::thread::sleep(POLL.min(deadline - now));
                }
            }
        }
    }

    /// Build repo `id`'s ranked index and store it before returning (an import's last
    /// step), unless there is one already or another process builds it.
    pub fn build_ranked_index(
        &self,
        id: &RepoId,
        progress: &dyn Fn(RankedProgress),
    ) -> Result<RankedBuild, StoreError> {
        let h = self.handle(id)?;
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let head = git::head(&repo)?;
        let slot = self.ranked_slot(id);
        let mut guard = lock(&slot);
        if guard.index.is_some() {
            return Ok(RankedBuild::Ready);
        }
        if guard.build.is_some() {
            return Ok(RankedBuild::Elsewhere);
        }
        if self.install_stored(id, &slot, &mut guard, &repo, head) {
            return Ok(RankedBuild::Ready);
        }
        let dir = self.index_dir(id);
        let Some(held) = BuildLock::try_take(&dir)? else {
            return Ok(RankedBuild::Elsewhere);
        };
        if self.install_stored(id, &slot, &mut guard, &repo, head) {
            return Ok(RankedBuild::Ready);
        }
        let build = Arc::new(Build::default());
        guard.build = Some(build.clone());
        drop(guard);
        BuildJob {
            id: *id,
            repo_dir: h.dir.clone(),
            index_dir: dir,
            slot,
            build,
            held,
            head,
            lines: self.line_index_at(id, &h, head),
        }
        .run(progress, true)?;
        Ok(RankedBuild::Built)
    }

    /// Load repo `id`'s stored copy into `state`, carried to `head`; whether there was
    /// one to trust.
    fn install_stored(
        &self,
        id: &RepoId,
        slot: &Slot,
        state: &mut RankedState,
        repo: &Repository,
        head: Oid,
    ) -> bool {
        let started = Instant::now();
        let Some((ix, stats)) = load(id, &self.index_dir(id), repo, head) else {
            return false;
        };
        tracing::info!(repo = %id, files = ix.len(), advanced_files = stats.files, advanced_commits = stats.commits, took_ms = started.elapsed().as_millis() as u64, "ranked index loaded");
        state.heap = ix.heap_bytes().total();
        state.index = Some(ix);
        state.origin = Some(RankedOrigin::Loaded(stats));
        state.unsaved = AdvanceStats::default();
        self.note_advance(id, slot, state, stats);
        true
    }

    /// The ranked answer from the index in `state`, carried to `head` first.
    #[allow(clippy::too_many_arguments)]
    fn answer_ranked(
        &self,
        id: &RepoId,
        slot: &Slot,
        state: &mut RankedState,
        (repo, lines): (&Repository, Option<&LineIndex>),
        head: Oid,
        query: &RankedQuery,
        glob: &Option<crate::rules::PathGlob>,
    ) -> Result<RankedResults, StoreError> {
        let ix = state.index.as_mut().expect("the caller checked");
        let stats = ix.advance(repo, head)?;
        if stats != Default::default() {
            tracing::debug!(repo = %id, files = stats.files, commits = stats.commits, "ranked index advanced");
            self.note_advance(id, slot, state, stats);
        }
        let ix = state.index.as_ref().expect("present above");
        let keep = |p: &str| {
            glob.as_ref().is_none_or(|g| g.is_match(p))
                && query.visible.as_ref().is_none_or(|v| v.sees(p))
        };
        // A file's text from the line index at this head; a segment failing its checks
        // reads as empty and marks the index damaged, so its text is then read from git.
        let stored_text = |path: &str| {
            let lines = lines?;
            let bytes = lines.file(path)?.content.to_vec();
            (!lines.damaged()).then_some(bytes)
        };
        let (hits, truncated) = ix.answer(repo, query, &Weights::default(), &keep, &stored_text)?;
        self.index_used(id, IndexKind::Ranked, state.heap);
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
            partial: None,
        })
    }
}

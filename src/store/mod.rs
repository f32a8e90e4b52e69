//! The embedded store: git repositories under a data directory plus a SQLite database
//! of repo metadata, hashed repo tokens and hashed account keys.
//!
//! Layout of a data directory:
//! ```text
//! store.db                 SQLite (WAL): repos, tokens, account_keys
//! repos/<repo-id>.git/     a bare git repository; history on refs/heads/main
//! repos/<repo-id>.git/scoped-repo-mcp.lock   held (flock) by the one writer at a time
//! index/<repo-id>/         the line index's segments and their manifest (see `line_index`)
//! git-hooks/pre-receive    the hook through which a git push is checked (see `hook`, `push`)
//! repos/.fetch-<pid>-<n>/  a fetch of a git source in quarantine (see `history`)
//! index/<repo-id>/ranked.bin the ranked index as last stored (see `ranked`)
//! ```
//! Each repo's line-search index lives in segment files, mapped by every process that
//! searches it (see `line_index`): opened from disk, or built from git on first use, it
//! follows every commit. The heap the indexes of all repos hold is bounded (see
//! `memory`): past the bound, the least recently used are dropped from memory.
//! Every method is blocking; async callers run them on the blocking pool.
//! The store knows nothing of MCP or scopes: callers decide who may do what.

mod check;
pub mod commits;
mod db;
mod git;
mod history;
pub mod hook;
mod import;
mod line_index;
mod memory;
mod oauth;
pub mod push;
mod ranked;
mod ranked_partial;

pub use check::RuleReport;
pub use oauth::{OAuthClient, OAuthGrant, RefreshOutcome};

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use db::{AccountKeyRow, AuditQuery, AuditRow, RepoRow, TokenRow, TokenState};
pub use git::BRANCH_REF;
pub use history::{FETCHED_REF, Joined, MergeSpec};
pub use import::{ImportProgress, ImportReport, SkipKind};
pub use line_index::IndexProgress;
pub use memory::{HeldIndex, IndexKind, default_index_memory};
pub use ranked::{RANKED_WAIT, RankedBuild, RankedOrigin, SAVE_AFTER_COMMITS, finish_index_writes};

use crate::credentials::secrets;
use crate::model::{
    Change, FileList, FileText, LineQuery, LineResults, MintSpec, MintedToken, RepoId, RepoSummary,
    TokenInfo, UpdateControl, UpdateOutcome, UpdateSpec, rfc3339, unix_now,
};
use crate::paths::RepoPath;
use crate::search::{LineSearcher, SearchError};
use crate::text::is_text;
use db::Db;

pub use crate::rules::Limits;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No repo with this ID.
    #[error("repo {0} not found")]
    RepoNotFound(RepoId),
    /// A path that is not in the tree.
    #[error("{0}")]
    FileNotFound(String),
    /// `expected_head` did not match.
    #[error(
        "the repo's head is {actual}, not the expected {expected}; read the files again and retry on top of {actual}"
    )]
    Conflict {
        /// What the caller expected.
        expected: String,
        /// What the head is.
        actual: String,
    },
    /// Input the store refuses.
    #[error("{0}")]
    Invalid(String),
    /// Merging a fetched history into `main` conflicts in these paths; nothing changed.
    #[error(
        "merging the fetched history into `main` conflicts in {} path(s): {}; nothing changed: resolve the conflict in the source (merge this repo's `main` into it) and try again",
        .0.len(),
        .0.iter().map(|p| format!("`{}`", crate::text::one_line(p))).collect::<Vec<_>>().join(", ")
    )]
    MergeConflict(Vec<String>),
    /// The caller cancelled the update before it was committed.
    #[error("the update was cancelled before it was committed; nothing changed")]
    Cancelled,
    /// Input over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A bad search pattern.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// SQLite failed.
    #[error("database error: {0}")]
    Database(String),
    /// libgit2 failed.
    #[error("git error: {0}")]
    Git(String),
    /// The file system failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The disk holding the data directory is full; nothing was changed.
    #[error(
        "the disk holding the store is full ({0}); nothing was changed: free some space and retry"
    )]
    NoSpace(String),
}

impl StoreError {
    /// The same error, recognised as a full disk when its message says so (libgit2 and
    /// SQLite report it in words, not as an error kind).
    pub(crate) fn or_no_space(self) -> Self {
        match self {
            StoreError::Git(m) | StoreError::Database(m) | StoreError::Io(m)
                if m.contains("No space left on device")
                    || m.contains("database or disk is full")
                    || m.contains("disk quota exceeded") =>
            {
                StoreError::NoSpace(m)
            }
            other => other,
        }
    }
}

/// Make the data directory readable by its owner only (mode 0700): it holds every
/// repo's content. A directory created here gets that mode from the start; an existing
/// one is tightened when it is a store already (it holds `store.db`) or is empty, so a
/// `--data-dir` pointed at some shared directory by mistake is left as it was.
fn private_dirs(root: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)?;
            return Ok(());
        }
        let is_store = root.join("store.db").exists() || std::fs::read_dir(root)?.next().is_none();
        if is_store {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(root)?;
    Ok(())
}

/// The scratch directories of repos being made: `.new-<pid>-<repo id>`, renamed into
/// place when whole.
const SCRATCH_PREFIX: &str = ".new-";

/// A lock file beside a scratch or quarantine directory (`<dir>.lock`), held with
/// `flock` by the process working in the directory for as long as it does. The sweep
/// removes a directory only when it can take that lock, so it never touches another
/// live process's work, whatever its process id means (containers sharing a volume see
/// different ones) and however long the work takes.
pub(crate) struct WorkLock {
    path: PathBuf,
    _file: File,
}

impl WorkLock {
    /// Take the lock of `dir` (before making `dir`).
    pub(crate) fn take(dir: &Path) -> Result<Self, StoreError> {
        let path = lock_path(dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        if !try_flock(&file) {
            return Err(StoreError::Io(format!(
                "{} is locked by another process",
                path.display()
            )));
        }
        Ok(Self { path, _file: file })
    }
}

impl Drop for WorkLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(dir: &Path) -> PathBuf {
    let mut p = dir.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Take an exclusive `flock` on `file` without waiting; whether it was taken.
fn try_flock(file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; flock only takes an advisory lock.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        true
    }
}

/// Remove what interrupted work left under `repos/`: the scratch directory of a repo
/// being made (`.new-…`) and the quarantine of a fetch (`.fetch-…`), once no process
/// holds its [`WorkLock`] (a Ctrl-C or a kill during an import left them for ever). A
/// directory without a lock file (an older version's, or one whose maker died between
/// making the lock and the directory) goes once it is an hour old.
fn sweep_interrupted(repos: &Path) {
    let Ok(entries) = std::fs::read_dir(repos) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(SCRATCH_PREFIX) || name.starts_with(history::QUARANTINE_PREFIX)) {
            continue;
        }
        if let Some(dir) = name.strip_suffix(".lock") {
            // A lock whose directory is gone (its maker died before making it).
            if !repos.join(dir).exists()
                && let Ok(f) = File::open(entry.path())
                && try_flock(&f)
            {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        let abandoned = match File::open(lock_path(&entry.path())) {
            Ok(lock) => try_flock(&lock),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600)),
        };
        if abandoned {
            tracing::warn!(dir = %name, "removing what an interrupted import or fetch left");
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(lock_path(&entry.path()));
        }
    }
}

/// Remove a new repo's git directory that its maker moved into place but was killed
/// before recording: its `<ID>.git.lock` is left, and no process holds it. A lock
/// whose repo was recorded (its maker ended between the two) is only removed.
fn sweep_unrecorded(repos: &Path, db: &Db) {
    let Ok(entries) = std::fs::read_dir(repos) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".git.lock")
            .and_then(|id| id.parse::<RepoId>().ok())
        else {
            continue;
        };
        let Ok(lock) = File::open(entry.path()) else {
            continue;
        };
        if !try_flock(&lock) {
            continue;
        }
        match db.repo(&id) {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(repo = %id, "removing a new repo's directory whose maker was killed before recording it");
                let _ = std::fs::remove_dir_all(repos.join(format!("{id}.git")));
            }
            // Unsure whether it is recorded: leave it for a later start.
            Err(_) => continue,
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Taken (shared) for each step that writes into a scratch directory, and while a new
/// repo's directory moves into place and its row is written; taken (exclusive) by a
/// process about to exit on a signal, which then never lets go: no write lands in a
/// scratch directory after it is removed, and no repo is half recorded.
static SCRATCH_GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Leave to write one step into a scratch directory, or to record a new repo.
pub(crate) fn scratch_step() -> std::sync::RwLockReadGuard<'static, ()> {
    SCRATCH_GATE.read().unwrap_or_else(|p| p.into_inner())
}

/// For a process about to exit on Ctrl-C or SIGTERM: wait for a repo being recorded to
/// be whole, then remove the scratch and quarantine directories this very process made
/// under `root` (named with its process id), so that an interrupted import leaves
/// nothing behind at once rather than at the next start's sweep. The guard returned
/// keeps any other repo from being recorded, and any write into a scratch directory
/// from landing; exit while holding it. Also: how many directories were removed.
pub fn abandon_own_work(root: &Path) -> (std::sync::RwLockWriteGuard<'static, ()>, usize) {
    let guard = SCRATCH_GATE.write().unwrap_or_else(|p| p.into_inner());
    let repos = root.join("repos");
    let pid = std::process::id();
    let own = [
        format!("{SCRATCH_PREFIX}{pid}-"),
        format!("{}{pid}-", history::QUARANTINE_PREFIX),
    ];
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(&repos) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if own.iter().any(|p| name.starts_with(p)) && !name.ends_with(".lock") {
                if std::fs::remove_dir_all(entry.path()).is_ok() {
                    removed += 1;
                }
                let _ = std::fs::remove_file(lock_path(&entry.path()));
            }
        }
    }
    (guard, removed)
}

/// The cap on libgit2's object cache (the commits and trees it has parsed) in this
/// process. libgit2 counts the objects' raw sizes, and a parsed tree takes several times
/// its raw size, so its default of 256 MiB let a server taking thousands of commits grow
/// by far more than that. Measured: under a cap of 32 MiB a stdio server still grew by
/// 2.7 KB a commit after 20,000 commits; under 2 MiB its growth stopped at +9 MiB. The
/// objects read on every call (the head's trees) stay cached.
pub const GIT_OBJECT_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Age past which a push's quarantine is taken as left by a receive-pack that was
/// killed: far past the longest a live push's takes (the pack is whole before git
/// starts, and capped).
const STALE_PUSH_QUARANTINE: std::time::Duration = std::time::Duration::from_secs(3600);

fn cap_git_object_cache() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Initialises libgit2 first, as every git2 call does.
        git2::opts::enable_caching(true);
        // libgit2 hashes every object it reads again to check its id, which `git`
        // never does on a read: a third of a history walk's time went to it. Objects
        // are checked where they enter the store (git's `index-pack` on a push or
        // fetch, libgit2's own writes); `git fsck` checks them at rest.
        git2::opts::strict_hash_verification(false);
        // SAFETY: a process-wide option of libgit2, set once (under `Once`) before
        // this store opens any repository; the option takes one `ssize_t`.
        let failed = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as std::ffi::c_int,
                GIT_OBJECT_CACHE_BYTES as isize,
            )
        } < 0;
        if failed {
            tracing::warn!("libgit2's object cache could not be capped; it keeps its default");
        }
    });
}

/// Whether the file system holding `path` has no space left for an unprivileged writer.
fn no_space_left(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `c` is a valid NUL-terminated path and `stat` a plain struct the call
        // fills in.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
            return false;
        }
        // Less than one 64 KiB chunk free: nothing a commit writes fits.
        (stat.f_bavail as u128) * (stat.f_frsize as u128) < 64 * 1024
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Bytes the files under `dir` take, every level down (what cannot be read counts
/// nothing): the measure of the per-repo quota.
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Bytes a repo's objects directory takes, leaving out the quarantines of pushes in
/// flight (`tmp_objdir-…`), which are not the repo's until their push lands.
pub(crate) fn objects_bytes(objects: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(objects) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("tmp_objdir"))
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// A short id as `token list` and `key list` show it (at least 6 hex digits of the
/// secret's hash), lowercased.
fn short_id(listing: &str, id: &str) -> Result<String, StoreError> {
    if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!(
            "`{id}` is not an id: give the secret itself, or at least 6 hex digits of the id `{listing}` shows"
        )));
    }
    Ok(id.to_ascii_lowercase())
}

impl From<crate::rules::RuleError> for StoreError {
    fn from(e: crate::rules::RuleError) -> Self {
        match e {
            crate::rules::RuleError::TooLarge(m) => StoreError::TooLarge(m),
            crate::rules::RuleError::Invalid(m) => StoreError::Invalid(m),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string()).or_no_space()
    }
}

struct RepoHandle {
    /// A reader handle; git2's `Repository` is `Send` but not `Sync`.
    reader: Mutex<git2::Repository>,
    /// Serializes writers inside this process; the flock serializes across processes.
    writer: Mutex<()>,
    dir: PathBuf,
    /// The line-search index, built on first use and kept at the head.
    index: line_index::IndexSlot,
    /// The repo's objects on disk as last measured for the quota, with when, plus
    /// what this process's updates wrote since (see [`Store::check_update_quota`]).
    disk: Mutex<Option<(u64, std::time::Instant)>>,
}

/// How long an update trusts the last measure of its repo's disk use (plus what was
/// written since) instead of walking the objects directory again: a repo that took
/// thousands of updates holds tens of thousands of loose objects, and walking them
/// all on every update costs more than the update.
const QUOTA_MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The audit trail's own connection to a data directory's database, for the one
/// thread that writes a process's records (see [`crate::audit`]).
pub struct AuditSink {
    conn: rusqlite::Connection,
}

impl AuditSink {
    /// Open (creating if needed) the database of the data directory `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        private_dirs(root)?;
        Ok(Self {
            conn: db::open_audit_connection(&root.join("store.db"))?,
        })
    }

    /// Append `rows` in one transaction: all of them or none.
    pub fn write(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        db::insert_audit(&mut self.conn, rows).map_err(|e| StoreError::Database(e.to_string()))
    }

    /// Delete the records older than `before_ms` (Unix milliseconds); how many went.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        db::prune_audit(&self.conn, before_ms).map_err(|e| StoreError::Database(e.to_string()))
    }
}

/// The embedded store.
pub struct Store {
    root: PathBuf,
    /// Whether opening it made a new, empty database (none was there).
    made: bool,
    db: Db,
    handles: Mutex<HashMap<RepoId, Arc<RepoHandle>>>,
    limits: Limits,
    /// Ranked indexes, in memory, built on first use (see `ranked.rs`).
    ranked: Mutex<HashMap<RepoId, ranked::Slot>>,
    /// The heap held by indexes, and its bound.
    memory: memory::IndexMemory,
    /// Wall-clock budget of one line search, in milliseconds.
    search_budget_ms: std::sync::atomic::AtomicU64,
    /// How long a ranked question waits for a build of its index, in milliseconds.
    ranked_wait_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Open (creating if needed) the store in `root`.
    pub fn open(root: &Path, limits: Limits) -> Result<Self, StoreError> {
        cap_git_object_cache();
        // By path, no descriptor (see `db::open_private`): whether this open makes the
        // database, for servers to say so.
        let made = !root.join("store.db").exists();
        private_dirs(root)?;
        std::fs::create_dir_all(root.join("repos"))?;
        sweep_interrupted(&root.join("repos"));
        let db = Db::open(&root.join("store.db"))?;
        sweep_unrecorded(&root.join("repos"), &db);
        Ok(Self {
            root: root.to_path_buf(),
            made,
            db,
            handles: Mutex::new(HashMap::new()),
            limits,
            ranked: Mutex::new(HashMap::new()),
            memory: memory::IndexMemory::new(memory::default_index_memory()),
            search_budget_ms: std::sync::atomic::AtomicU64::new(
                crate::search::TIME_BUDGET.as_millis() as u64,
            ),
            ranked_wait_ms: std::sync::atomic::AtomicU64::new(
                ranked::RANKED_WAIT.as_millis() as u64
            ),
        })
    }

    /// Bound the heap the search indexes of all repos hold to `bytes` (default: a
    /// quarter of the machine's memory). Past it, the least recently used repo's
    /// indexes are dropped from memory; their files on disk stay.
    pub fn set_index_memory(&self, bytes: usize) {
        self.memory.set_limit(bytes);
    }

    /// The bound on the heap of indexes, and every index it counts (most recently used
    /// first).
    pub fn index_memory(&self) -> (usize, Vec<HeldIndex>) {
        (self.memory.limit(), self.memory.held())
    }

    /// Count repo `id`'s `kind` index, just used, as holding `bytes` of heap, and drop
    /// others from memory if the total passes the bound.
    fn index_used(&self, id: &RepoId, kind: IndexKind, bytes: usize) {
        let victims = self.memory.used(*id, kind, bytes);
        let dropped = !victims.is_empty();
        for victim in victims {
            tracing::debug!(repo = %victim.repo, kind = ?victim.kind, bytes = victim.bytes, "index dropped from memory");
            match victim.kind {
                IndexKind::Line => {
                    if let Some(h) = lock(&self.handles).get(&victim.repo) {
                        h.index.drop_current();
                    }
                }
                IndexKind::Ranked => self.drop_ranked(&victim.repo),
            }
        }
        if dropped {
            memory::release_free_memory();
        }
    }

    /// The audit records `q` asks for, oldest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        self.db.audit(q)
    }

    /// Append `rows` to the audit trail at once (for short-lived commands; servers
    /// write through [`crate::audit::Trail`], off their calls' path).
    pub fn record_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        self.db.insert_audit(rows)
    }

    /// Whether this open made a new, empty store (no database was in the directory).
    pub fn is_new(&self) -> bool {
        self.made
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Where a repo's git directory lives (for `git clone`).
    pub fn git_dir(&self, id: &RepoId) -> PathBuf {
        self.root.join("repos").join(format!("{id}.git"))
    }

    fn handle(&self, id: &RepoId) -> Result<Arc<RepoHandle>, StoreError> {
        if let Some(h) = lock(&self.handles).get(id) {
            return Ok(h.clone());
        }
        if self.db.repo(id)?.is_none() {
            return Err(StoreError::RepoNotFound(*id));
        }
        let dir = self.git_dir(id);
        let repo = git2::Repository::open_bare(&dir).map_err(|_| StoreError::RepoNotFound(*id))?;
        let h = Arc::new(RepoHandle {
            reader: Mutex::new(repo),
            writer: Mutex::new(()),
            dir,
            index: Default::default(),
            disk: Mutex::new(None),
        });
        Ok(lock(&self.handles).entry(*id).or_insert(h).clone())
    }

    fn summary(&self, row: &RepoRow) -> Result<RepoSummary, StoreError> {
        let head = self.head(&row.id)?;
        Ok(RepoSummary {
            repo_id: row.id.to_string(),
            head,
            metadata: row.metadata.clone(),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        })
    }

    /// Create a repo holding `files` in its first commit.
    pub fn create_repo(
        &self,
        metadata: BTreeMap<String, String>,
        files: &[(RepoPath, String)],
    ) -> Result<(RepoRow, UpdateOutcome), StoreError> {
        self.check_files(files)?;
        self.create_repo_unbounded(RepoId::new_random(), metadata, files, &|_| {})
    }

    /// Create a repo holding a copy of repo `from`'s files at its head, binary ones
    /// included, under an update's limits (the REST API's `source: {type: "relace"}`).
    pub fn copy_repo(
        &self,
        from: &RepoId,
        metadata: BTreeMap<String, String>,
    ) -> Result<(RepoRow, UpdateOutcome), StoreError> {
        let files: Vec<(RepoPath, Vec<u8>)> = {
            let h = self.handle(from)?;
            let repo = lock(&h.reader);
            let tree = git::tree_at(&repo, git::head(&repo)?)?;
            let mut files = Vec::new();
            for (path, oid) in git::files(&repo, &tree)? {
                let Ok(path) = RepoPath::parse(&path) else {
                    continue;
                };
                let blob = repo.find_blob(oid).map_err(git::git_err)?;
                files.push((path, blob.content().to_vec()));
            }
            files
        };
        self.limits.check_count(files.len(), "files")?;
        let mut total = 0usize;
        for (path, content) in &files {
            self.limits.check_size(path, content.len())?;
            total = total.saturating_add(content.len());
        }
        self.limits.check_total(total)?;
        self.create_repo_unbounded(RepoId::new_random(), metadata, &files, &|_| {})
    }

    /// Create repo `id` with no limit on the number or total size of files (imports),
    /// text or binary (only the per-repo quota holds), calling `written` with the count
    /// of files written as they are.
    fn create_repo_unbounded<C: AsRef<[u8]>>(
        &self,
        id: RepoId,
        metadata: BTreeMap<String, String>,
        files: &[(RepoPath, C)],
        written: &dyn Fn(usize),
    ) -> Result<(RepoRow, UpdateOutcome), StoreError> {
        // Build in a scratch directory and rename into place, so a crash never leaves a
        // half-made repo under a real ID.
        let scratch = self
            .root
            .join("repos")
            .join(format!("{SCRATCH_PREFIX}{}-{id}", std::process::id()));
        // Held until the directory is renamed into place (or removed): the sweep of
        // other processes leaves it alone meanwhile.
        let _work = WorkLock::take(&scratch)?;
        let outcome = (|| {
            let repo = {
                let _step = scratch_step();
                git::init_bare(&scratch)?
            };
            let mut index = git2::Index::new().map_err(git::git_err)?;
            // Step by step, blob by blob (see `scratch_step`).
            git::fill_index_with(&repo, &mut index, files, written)?;
            let _step = scratch_step();
            let tree_id = index.write_tree_to(&repo).map_err(git::git_err)?;
            let tree = repo.find_tree(tree_id).map_err(git::git_err)?;
            let changed = git::changed_paths(&repo, None, &tree)?;
            let commit = git::commit(&repo, tree_id, None, "Create repository", "scoped-repo-mcp")?;
            self.limits
                .check_quota(0, disk_bytes(&scratch.join("objects")))?;
            repo.reference(BRANCH_REF, commit, true, "create")
                .map_err(git::git_err)?;
            Ok::<_, StoreError>(UpdateOutcome {
                head: commit.to_string(),
                previous_head: None,
                changed_files: changed,
            })
        })();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        let row = self.register_repo(id, &scratch, metadata)?;
        Ok((row, outcome))
    }

    /// Move a new repo's finished git directory from `scratch` into place and record
    /// the repo; if the record cannot be written, the directory is removed again.
    fn register_repo(
        &self,
        id: RepoId,
        scratch: &Path,
        metadata: BTreeMap<String, String>,
    ) -> Result<RepoRow, StoreError> {
        // A process stopping on a signal waits for this to end (see
        // `abandon_own_work`), so it never leaves a directory in place without its row.
        let _committing = scratch_step();
        let dir = self.git_dir(&id);
        // Held from before the directory is in place until its row is written: a
        // process killed in between leaves `<ID>.git.lock` unheld, and the next start
        // removes the directory no row lists (`sweep_unrecorded`).
        let _recording = WorkLock::take(&dir)?;
        std::fs::rename(scratch, &dir)?;
        let now = unix_now();
        let row = RepoRow {
            id,
            created_at: now,
            updated_at: now,
            metadata,
            auto_index: true,
        };
        if let Err(e) = self.db.insert_repo(&row) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(row)
    }

    /// Delete a repo and its history.
    pub fn delete_repo(&self, id: &RepoId) -> Result<(), StoreError> {
        if !self.db.delete_repo(id)? {
            return Err(StoreError::RepoNotFound(*id));
        }
        lock(&self.handles).remove(id);
        lock(&self.ranked).remove(id);
        self.memory.forget(id, IndexKind::Line);
        self.memory.forget(id, IndexKind::Ranked);
        let _ = std::fs::remove_dir_all(self.index_dir(id));
        let dir = self.git_dir(id);
        // Rename first so the ID disappears at once, then remove at leisure.
        let trash = self.root.join("repos").join(format!(".deleted-{id}"));
        if std::fs::rename(&dir, &trash).is_ok() {
            std::fs::remove_dir_all(&trash)?;
        }
        Ok(())
    }

    /// Link `id` to the directory `serve --import dir` serves (an absolute path).
    /// Operator-only: no API route or tool reaches this.
    pub fn link_import(&self, id: &RepoId, dir: &str) -> Result<(), StoreError> {
        self.repo_row(id)?;
        self.db.link_import(id, dir)
    }

    /// Forget the directory linked to `id`; false when there was none.
    pub fn unlink_import(&self, id: &RepoId) -> Result<bool, StoreError> {
        self.db.unlink_import(id)
    }

    /// The repos linked to the directory `dir` (normally one).
    pub fn imports_of(&self, dir: &str) -> Result<Vec<RepoId>, StoreError> {
        self.db.imports_of(dir)
    }

    /// The directory linked to `id`, if any.
    pub fn import_dir_of(&self, id: &RepoId) -> Result<Option<String>, StoreError> {
        self.db.import_dir_of(id)
    }

    /// One repo's metadata row.
    pub fn repo_row(&self, id: &RepoId) -> Result<RepoRow, StoreError> {
        self.db.repo(id)?.ok_or(StoreError::RepoNotFound(*id))
    }

    /// Replace a repo's metadata.
    pub fn set_metadata(
        &self,
        id: &RepoId,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.repo_row(id)?;
        self.db.set_metadata(id, metadata)
    }

    /// One repo, as `list_repos` shows it.
    pub fn repo(&self, id: &RepoId) -> Result<RepoSummary, StoreError> {
        self.summary(&self.repo_row(id)?)
    }

    /// Every repo's row, oldest first.
    pub fn repo_rows(&self) -> Result<Vec<RepoRow>, StoreError> {
        self.db.repos()
    }

    /// Every repo, oldest first.
    pub fn repos(&self) -> Result<Vec<RepoSummary>, StoreError> {
        self.db.repos()?.iter().map(|r| self.summary(r)).collect()
    }

    /// The head commit id of a repo.
    pub fn head(&self, id: &RepoId) -> Result<String, StoreError> {
        let h = self.handle(id)?;
        let repo = lock(&h.reader);
        Ok(git::head(&repo)?.to_string())
    }

    /// The paths that differ between commits `old` and `new` of a repo, sorted; `old`
    /// all zeros (a branch made by the push) compares with an empty tree. For a record
    /// of a push, whose objects another process (git) wrote: the repo is opened afresh.
    pub fn changed_between(
        &self,
        id: &RepoId,
        old: &str,
        new: &str,
    ) -> Result<Vec<String>, StoreError> {
        let repo = git2::Repository::open_bare(self.git_dir(id)).map_err(git::git_err)?;
        let oid = |c: &str| {
            git2::Oid::from_str(c)
                .map_err(|_| StoreError::Invalid(format!("`{c}` is not a commit id")))
        };
        let new_tree = git::tree_at(&repo, oid(new)?)?;
        let old = oid(old)?;
        let old_tree = if old.is_zero() {
            None
        } else {
            Some(git::tree_at(&repo, old)?)
        };
        git::changed_paths(&repo, old_tree.as_ref(), &new_tree)
    }

    fn resolve(repo: &git2::Repository, at: Option<&str>) -> Result<git2::Oid, StoreError> {
        match at {
            None => git::head(repo),
            Some(c) => {
                let oid = git2::Oid::from_str(c)
                    .map_err(|_| StoreError::Invalid(format!("`{c}` is not a commit id")))?;
                repo.find_commit(oid)
                    .map(|c| c.id())
                    .map_err(|_| StoreError::FileNotFound(format!("commit {c} not found")))
            }
        }
    }

    /// A file's text at the head (or at commit `at`).
    pub fn read_file(
        &self,
        id: &RepoId,
        path: &RepoPath,
        at: Option<&str>,
    ) -> Result<FileText, StoreError> {
        let h = self.handle(id)?;
        let repo = lock(&h.reader);
        let head = Self::resolve(&repo, at)?;
        let tree = git::tree_at(&repo, head)?;
        let not_found = || StoreError::FileNotFound(format!("`{path}` does not exist at {head}"));
        let entry = tree.get_path(Path::new(path.as_str())).map_err(|_| {
            // A file the import left out says so, rather than seeming never to have been.
            match self.db.skipped_reason(id, path.as_str()) {
                Ok(Some(reason)) if at.is_none() => StoreError::FileNotFound(format!(
                    "`{path}` does not exist at {head}: the import of this repo left it out ({reason})"
                )),
                _ => not_found(),
            }
        })?;
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Err(StoreError::Invalid(format!(
                "`{path}` is a directory; use list_files to see what it holds"
            )));
        }
        let blob = repo.find_blob(entry.id()).map_err(git::git_err)?;
        let bytes = blob.content();
        let (content, binary) = match std::str::from_utf8(bytes) {
            Ok(text) if is_text(bytes) => (text.to_string(), None),
            _ => (String::new(), Some(bytes.len() as u64)),
        };
        Ok(FileText {
            head: head.to_string(),
            content,
            binary,
        })
    }

    /// The files the import of repo `id` left out, with why (at most
    /// [`import::MAX_SKIPPED_KEPT`]), by path.
    pub fn skipped_files(&self, id: &RepoId) -> Result<Vec<(String, String)>, StoreError> {
        self.repo_row(id)?;
        self.db.skipped(id)
    }

    /// A file's raw bytes at the head.
    pub fn read_bytes(&self, id: &RepoId, path: &RepoPath) -> Result<Vec<u8>, StoreError> {
        let h = self.handle(id)?;
        let repo = lock(&h.reader);
        let tree = git::tree_at(&repo, git::head(&repo)?)?;
        let entry = tree
            .get_path(Path::new(path.as_str()))
            .ok()
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .ok_or_else(|| StoreError::FileNotFound(format!("`{path}` does not exist")))?;
        Ok(repo
            .find_blob(entry.id())
            .map_err(git::git_err)?
            .content()
            .to_vec())
    }

    /// Every tracked file path at the head, the binary ones marked.
    ///
    /// The line index holds exactly the head's text files, so every other file is
    /// binary: asking it costs no blob read once it is built (imports and git sources
    /// build it at once). Should it fail, each blob is read instead.
    pub fn list_files(&self, id: &RepoId) -> Result<FileList, StoreError> {
        let h = self.handle(id)?;
        let index = self.line_index(id).map_err(|e| {
            tracing::warn!(repo = %id, cause = %e, "list_files reads every blob: the line index is not available");
        });
        let repo = lock(&h.reader);
        let (head, indexed) = match index {
            Ok(ix) => (
                git2::Oid::from_str(ix.head()).map_err(git::git_err)?,
                Some(ix.live_files()),
            ),
            Err(()) => (git::head(&repo)?, None),
        };
        let text: Option<std::collections::HashSet<&str>> = indexed
            .as_ref()
            .map(|files| files.iter().map(|f| &*f.path).collect());
        let tree = git::tree_at(&repo, head)?;
        let mut paths = Vec::new();
        let mut binary = Vec::new();
        for (path, oid) in git::files(&repo, &tree)? {
            let is_binary = match &text {
                Some(text) => !text.contains(path.as_str()),
                None => !is_text(repo.find_blob(oid).map_err(git::git_err)?.content()),
            };
            if is_binary {
                binary.push(path.clone());
            }
            paths.push(path);
        }
        Ok(FileList {
            head: head.to_string(),
            paths,
            binary,
        })
    }

    /// Every readable text file at the head (or `at`), for cloning.
    pub fn snapshot(
        &self,
        id: &RepoId,
        at: Option<&str>,
    ) -> Result<(String, Vec<(String, String)>), StoreError> {
        let h = self.handle(id)?;
        let repo = lock(&h.reader);
        let head = Self::resolve(&repo, at)?;
        let tree = git::tree_at(&repo, head)?;
        let mut out = Vec::new();
        for (path, oid) in git::files(&repo, &tree)? {
            let blob = repo.find_blob(oid).map_err(git::git_err)?;
            if is_text(blob.content())
                && let Ok(text) = std::str::from_utf8(blob.content())
            {
                out.push((path, text.to_string()));
            }
        }
        Ok((head.to_string(), out))
    }

    /// Set how long a ranked question waits for a build of its index under way, in
    /// any process (default [`RANKED_WAIT`]), before it is answered partially.
    pub fn set_ranked_wait(&self, wait: std::time::Duration) {
        self.ranked_wait_ms.store(
            wait.as_millis().min(u128::from(u64::MAX)) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How long a ranked question waits for a build of its index.
    fn ranked_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.ranked_wait_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Set the wall-clock budget of one line search (default
    /// [`crate::search::TIME_BUDGET`]): past it an answer is cut and marked truncated.
    pub fn set_search_budget(&self, budget: std::time::Duration) {
        self.search_budget_ms.store(
            budget.as_millis().min(u128::from(u64::MAX)) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Search the head's text files line by line: the index narrows the files to those
    /// that can match, then the regex runs over them on every core.
    pub fn search_lines(&self, id: &RepoId, query: &LineQuery) -> Result<LineResults, StoreError> {
        let searcher = LineSearcher::new(query)?;
        self.with_line_index(id, |index| {
            let candidates = index.candidate_entries(searcher.plan(), |p| searcher.wants_path(p));
            let budget = std::time::Duration::from_millis(
                self.search_budget_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            let (hits, truncated, files_searched) = searcher.search_files(&candidates, budget);
            LineResults {
                head: index.head().to_string(),
                hits,
                truncated,
                files_searched,
            }
        })
    }

    fn check_files(&self, files: &[(RepoPath, String)]) -> Result<(), StoreError> {
        Ok(self.limits.check_files(files)?)
    }

    /// Validate an update against the limits without touching the repo.
    pub fn check_update(&self, spec: &UpdateSpec) -> Result<(), StoreError> {
        Ok(spec.check(&self.limits)?)
    }

    /// Apply an update as one commit: all of it or none of it.
    ///
    /// Writers are serialized per repo, within the process by a mutex and across
    /// processes by an flock on the repo's lock file; the branch ref then moves by
    /// compare-and-swap. A process killed at any point leaves the ref at the old commit
    /// or the new one: objects written before the ref moves are unreachable, never seen.
    pub fn update(
        &self,
        id: &RepoId,
        spec: &UpdateSpec,
        author: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        self.update_unexplained(id, spec, author)
            .map_err(|e| self.explain(e))
    }

    /// A failure of the file system or of libgit2, recognised as a full disk when the
    /// data directory's file system has no space left: libgit2 often reports a failed
    /// write without its cause.
    fn explain(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Git(m) | StoreError::Io(m) if no_space_left(&self.root) => {
                StoreError::NoSpace(m)
            }
            other => other,
        }
    }

    fn update_unexplained(
        &self,
        id: &RepoId,
        spec: &UpdateSpec,
        author: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        self.check_update(spec)?;
        self.commit_on_head(
            id,
            spec.expected_head.as_deref(),
            spec.message.as_deref(),
            author,
            &spec.control,
            spec.written_bytes(),
            |repo, _head, old_tree| {
                let mut index = git2::Index::new().map_err(git::git_err)?;
                let default_message = match &spec.change {
                    Change::Operations(ops) => {
                        index.read_tree(old_tree).map_err(git::git_err)?;
                        git::apply_ops(
                            repo,
                            &mut index,
                            ops,
                            &spec.control,
                            spec.visible.as_deref(),
                        )?;
                        format!("Update {} path(s)", ops.len())
                    }
                    Change::ReplaceAll(files) => {
                        // The whole tree includes files a path-limited token cannot see.
                        if spec.visible.is_some() {
                            return Err(StoreError::Invalid(
                                "a token limited to paths cannot replace the whole tree; give operations instead"
                                    .into(),
                            ));
                        }
                        git::fill_index(repo, &mut index, files)?;
                        format!("Replace the tree with {} file(s)", files.len())
                    }
                };
                let tree_id = index.write_tree_to(repo).map_err(git::git_err)?;
                Ok((tree_id, default_message))
            },
        )
    }

    /// The one way a commit lands on a repo's `main` from the store's own writes (an
    /// update, a revert): under the repo's one-writer lock, checked against
    /// `expected_head`, the new tree made by `build` from the head's (with the message
    /// to use when none is given), then the ref moved by compare-and-swap and the
    /// indexes carried forward. A tree equal to the head's commits nothing.
    /// `written_bytes` is what the write may add, for the repo's quota.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_on_head(
        &self,
        id: &RepoId,
        expected_head: Option<&str>,
        message: Option<&str>,
        author: &str,
        control: &UpdateControl,
        written_bytes: u64,
        build: impl FnOnce(
            &git2::Repository,
            git2::Oid,
            &git2::Tree<'_>,
        ) -> Result<(git2::Oid, String), StoreError>,
    ) -> Result<UpdateOutcome, StoreError> {
        let h = self.handle(id)?;
        let _in_process = lock(&h.writer);
        let lock_file = Self::lock_writer(id, &h)?;
        self.check_update_quota(&h, written_bytes)?;
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let head = git::head(&repo)?;
        if let Some(expected) = expected_head
            && !expected.eq_ignore_ascii_case(&head.to_string())
        {
            return Err(StoreError::Conflict {
                expected: expected.to_string(),
                actual: head.to_string(),
            });
        }
        let old_tree = git::tree_at(&repo, head)?;
        let (tree_id, default_message) = build(&repo, head, &old_tree)?;
        if tree_id == old_tree.id() {
            return Ok(UpdateOutcome {
                head: head.to_string(),
                previous_head: Some(head.to_string()),
                changed_files: Vec::new(),
            });
        }
        let new_tree = repo.find_tree(tree_id).map_err(git::git_err)?;
        let changed_files = git::changed_paths(&repo, Some(&old_tree), &new_tree)?;
        let message = message
            .filter(|m| !m.trim().is_empty())
            .map(str::to_string)
            .unwrap_or(default_message);
        let commit = git::commit(&repo, tree_id, Some(head), &message, author)?;
        // The last point of return: once the ref moves, the update stands.
        if control.is_cancelled() {
            return Err(StoreError::Cancelled);
        }
        repo.reference_matching(BRANCH_REF, commit, true, head, "update")
            .map_err(|e| StoreError::Conflict {
                expected: head.to_string(),
                actual: format!("(moved by another writer: {})", e.message()),
            })?;
        drop(lock_file);
        self.landed(id, &repo, commit);
        Ok(UpdateOutcome {
            head: commit.to_string(),
            previous_head: Some(head.to_string()),
            changed_files,
        })
    }

    /// Check that an update writing `adding` bytes keeps the repo within its quota
    /// (called holding the writer lock). The last measure is trusted for
    /// [`QUOTA_MEASURE_EVERY`], with what was written since added; a refusal is only
    /// ever made on a fresh measure.
    fn check_update_quota(&self, h: &RepoHandle, adding: u64) -> Result<(), StoreError> {
        if adding == 0 {
            return Ok(());
        }
        let mut disk = lock(&h.disk);
        let measure = || {
            (
                objects_bytes(&h.dir.join("objects")),
                std::time::Instant::now(),
            )
        };
        let (mut used, mut at) = match *disk {
            Some((used, at)) if at.elapsed() < QUOTA_MEASURE_EVERY => (used, at),
            _ => measure(),
        };
        if self.limits.check_quota(used, adding).is_err() {
            (used, at) = measure();
        }
        if let Err(e) = self.limits.check_quota(used, adding) {
            *disk = Some((used, at));
            return Err(e.into());
        }
        *disk = Some((used.saturating_add(adding), at));
        Ok(())
    }

    /// Take the cross-process half of a repo's writer lock (the in-process half is
    /// `h.writer`), and clear what a writer that died holding it left behind.
    fn lock_writer(id: &RepoId, h: &RepoHandle) -> Result<File, StoreError> {
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(h.dir.join("scoped-repo-mcp.lock"))?;
        lock_file.lock()?;
        // Only a writer holding the flock creates the ref's lock file, so one found here
        // was left by a writer that died mid-update: it is safe to clear.
        let stale = h.dir.join(format!("{BRANCH_REF}.lock"));
        if stale.exists() {
            tracing::warn!(repo = %id, "removing a stale ref lock left by an interrupted update");
            let _ = std::fs::remove_file(&stale);
        }
        // Likewise a push's quarantine: git removes it when receive-pack ends, even on a
        // signal; one found here an hour old outlived a receive-pack that was killed
        // outright. A younger one may be a live push's: receive-pack fills its
        // quarantine without this lock, and asks for it only once the pack is checked.
        if let Ok(entries) = std::fs::read_dir(h.dir.join("objects")) {
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_PUSH_QUARANTINE);
                if stale
                    && entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("tmp_objdir-incoming-")
                {
                    tracing::warn!(repo = %id, "removing the quarantine of an interrupted push");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(lock_file)
    }

    /// Run `write` as the repo's one writer, for commits that land from outside the
    /// store's own update (a `git push` through git's receive-pack): `write` gets the
    /// repo's git directory and runs holding the same in-process mutex and the same
    /// flock as [`Store::update`], so it and every update, in this process or another,
    /// take turns. When the head moved, the store then follows it as after an update
    /// ([`Store::commit_landed`]).
    pub fn write_from_outside<T>(
        &self,
        id: &RepoId,
        write: impl FnOnce(&Path) -> T,
    ) -> Result<T, StoreError> {
        let h = self.handle(id)?;
        let _in_process = lock(&h.writer);
        let lock_file = Self::lock_writer(id, &h)?;
        let before = git::head(&git2::Repository::open_bare(&h.dir).map_err(git::git_err)?)?;
        let out = write(&h.dir);
        drop(lock_file);
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let after = git::head(&repo)?;
        if after != before {
            self.landed(id, &repo, after);
        }
        Ok(out)
    }

    /// A commit landed on the repo's branch from outside [`Store::update`] (a git push):
    /// record the change and carry the line and ranked indexes forward to it, exactly as
    /// an update does. [`Store::write_from_outside`] calls this itself.
    pub fn commit_landed(&self, id: &RepoId) -> Result<(), StoreError> {
        let h = self.handle(id)?;
        let repo = git2::Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let head = git::head(&repo)?;
        self.landed(id, &repo, head);
        Ok(())
    }

    fn landed(&self, id: &RepoId, repo: &git2::Repository, commit: git2::Oid) {
        if let Err(e) = self.db.touch_repo(id) {
            tracing::warn!(repo = %id, cause = %e, "commit landed but updated_at was not recorded");
        }
        self.refresh_line_index(id);
        self.advance_ranked(id, repo, commit);
    }

    /// Mint a repo token for `repo_ids`, read and write on every path.
    pub fn create_token(
        &self,
        name: &str,
        repo_ids: &[RepoId],
        ttl_seconds: Option<u64>,
    ) -> Result<MintedToken, StoreError> {
        self.mint(&MintSpec {
            name: name.to_string(),
            repo_ids: repo_ids.to_vec(),
            ttl_seconds,
            ..MintSpec::default()
        })
    }

    /// Mint a repo token as `spec` says. Whether the minter may grant that much is
    /// the caller's to check (the front door's delegation rule); the store checks the
    /// rules of every token: name, expiry, globs, existing repos, and a live parent.
    pub fn mint(&self, spec: &MintSpec) -> Result<MintedToken, StoreError> {
        self.mint_for(spec, None)
    }

    /// Mint a token as [`Store::mint`] does, usable only at `audience` (the MCP
    /// endpoint an OAuth grant names) when one is given.
    pub fn mint_for(
        &self,
        spec: &MintSpec,
        audience: Option<&str>,
    ) -> Result<MintedToken, StoreError> {
        let name = crate::rules::token_name(&spec.name)?;
        crate::rules::token_paths(&spec.paths)?;
        let now = unix_now();
        let expires_at = spec
            .ttl_seconds
            .map(|t| crate::rules::token_expiry(now, t))
            .transpose()?;
        for id in &spec.repo_ids {
            self.repo_row(id)?;
        }
        let parent = spec.parent.as_deref().map(secrets::hash);
        if let Some(parent) = &parent
            && self.db.token(parent)?.0 != TokenState::Live
        {
            return Err(StoreError::Invalid(
                "the token minting this one is no longer live".into(),
            ));
        }
        let token = secrets::mint(secrets::REPO_TOKEN_PREFIX);
        let mut ids = spec.repo_ids.clone();
        ids.sort();
        ids.dedup();
        let mut paths = spec.paths.clone();
        paths.sort();
        paths.dedup();
        let info = TokenInfo {
            name: name.to_string(),
            repo_ids: ids,
            expires_at,
            read_only: spec.read_only,
            paths,
            can_delegate: spec.can_delegate,
            rate: spec.rate,
            lineage: Vec::new(),
            audience: audience.map(str::to_string),
        };
        let hash = secrets::hash(&token);
        self.db.insert_token(&hash, &info, parent.as_deref(), now)?;
        // A parent revoked between the check above and the insert: the revocation's
        // cascade may have missed this row, so the lineage check in `token` stops it.
        Ok(MintedToken {
            token,
            info: TokenInfo {
                lineage: self.db.lineage(&hash)?,
                ..info
            },
        })
    }

    /// A token's state and, when known, what it grants. A token is revoked when it or
    /// any token it was minted from is revoked, and expired when any of them expired.
    pub fn token(&self, token: &str) -> Result<(TokenState, Option<TokenInfo>), StoreError> {
        let hash = secrets::hash(token);
        let (mut state, row) = self.db.token(&hash)?;
        let Some(row) = row else {
            return Ok((state, None));
        };
        let lineage = self.db.lineage(&hash)?;
        if state == TokenState::Live {
            for ancestor in &lineage {
                match self.db.token(ancestor)?.0 {
                    TokenState::Live => {}
                    TokenState::Expired => state = TokenState::Expired,
                    _ => {
                        state = TokenState::Revoked;
                        break;
                    }
                }
            }
        }
        Ok((
            state,
            Some(TokenInfo {
                lineage,
                ..row.info
            }),
        ))
    }

    /// Every token, never with its secret.
    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.db.tokens()
    }

    /// Revoke a token by its value; the description of what was revoked, or `None` when
    /// the token is unknown or was already revoked.
    pub fn revoke_token(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        self.revoke_hash(&secrets::hash(token))
    }

    /// Revoke by the short id `token list` shows; refuses an ambiguous id.
    pub fn revoke_token_by_id(&self, id: &str) -> Result<Option<TokenInfo>, StoreError> {
        let hashes = self.db.token_hashes_by_id(&short_id("token list", id)?)?;
        match hashes.as_slice() {
            [] => Ok(None),
            [one] => self.revoke_hash(one),
            _ => Err(StoreError::Invalid(format!(
                "token id `{id}` is ambiguous; give more digits"
            ))),
        }
    }

    /// Every account key, never with its secret.
    pub fn account_keys(&self) -> Result<Vec<AccountKeyRow>, StoreError> {
        self.db.account_keys()
    }

    /// Revoke an account key, given the key itself (`rlc-…`) or the id `key list`
    /// shows; its name when a live key was revoked, `None` when none matched.
    pub fn revoke_account_key(&self, key_or_id: &str) -> Result<Option<String>, StoreError> {
        if key_or_id.starts_with(secrets::ACCOUNT_KEY_PREFIX) {
            return self.db.revoke_account_key(&secrets::hash(key_or_id));
        }
        let hashes = self
            .db
            .account_key_hashes_by_id(&short_id("key list", key_or_id)?)?;
        match hashes.as_slice() {
            [] => Ok(None),
            [one] => self.db.revoke_account_key(one),
            _ => Err(StoreError::Invalid(format!(
                "key id `{key_or_id}` is ambiguous; give more digits"
            ))),
        }
    }

    fn revoke_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        let (_, row) = self.db.token(hash)?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.db.revoke_token(hash)?.then_some(row.info))
    }

    /// Make an account API key (`rlc-…`); returns the secret, shown once.
    pub fn create_account_key(&self, name: &str) -> Result<String, StoreError> {
        let name = crate::rules::token_name(name)?;
        let key = secrets::mint(secrets::ACCOUNT_KEY_PREFIX);
        self.db.insert_account_key(&secrets::hash(&key), name)?;
        Ok(key)
    }

    /// The live account key `key`: its short id and name; `None` when it is unknown
    /// or revoked.
    pub fn live_account_key(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        self.db.live_account_key(&secrets::hash(key))
    }

    /// Whether `key` is a live account key.
    pub fn account_key_live(&self, key: &str) -> Result<bool, StoreError> {
        self.db.account_key_live(&secrets::hash(key))
    }
}

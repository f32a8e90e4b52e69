//! A repo's history on the Relace backend: a git cache kept per credential under the
//! data directory, fetched with the `git` program from the API's git endpoint
//! (`<base>/repo/<id>.git`) and read with the embedded store's own history readers.
//!
//! Layout: `<data-dir>/relace-cache/<sha256 of base URL and credential>/<repo-id>.git`,
//! directories of mode 0700; the credential itself is never on disk, in a path, in a
//! child's arguments or in a log. git gets it through the environment only
//! (`GIT_CONFIG_COUNT` with `http.extraHeader`), from an otherwise empty environment,
//! with no credential helper, no prompt and no redirect followed (a redirect would
//! carry the header to another host).
//!
//! A cache made by a call that reads no file contents (a commit listing, changed
//! paths) starts blobless (`--filter=blob:none`: commits and trees). The first call
//! that needs contents (patches, stats, renames, pickaxe, blame, a file at a revision,
//! a revert) completes it once with a full fetch (`--refetch` without a filter); a
//! cache made by such a call is fetched whole at once. From then on it is a full clone
//! fetched incrementally. Lazy fetching of single blobs is not used: a server that
//! serves only what `main` reaches (this product's `api`) refuses blob ids as wants. A
//! server that ignores the filter gives a full clone at once, which is as correct.
//!
//! A call fetches only when the repo's head (asked of the REST API) is not the cache's
//! `main`, so a warm call costs one REST request; where the API refuses that request
//! to the credential, every call fetches (a no-op fetch when nothing changed). Fetches
//! into one cache are serialized by a file lock, so processes sharing the data
//! directory never fetch into it at once; readers need no lock (git's own ref and pack
//! writes are atomic to them).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use base64::Engine as _;
use git2::Repository;

use crate::backend::BackendError;
use crate::git_source::GitProgram;
use crate::model::RepoId;

/// The directory under the data directory holding every credential's caches.
pub const CACHE_DIR: &str = "relace-cache";

/// The file in a cache's git directory saying it holds every object `main` reaches.
const COMPLETE: &str = "scoped-repo-mcp-complete";

/// The oldest git whose `fetch --refetch` and partial clone this uses.
const MIN_GIT: (u32, u32) = (2, 36);

/// Longest a fetch may go under 1 KiB/s before git gives up, in seconds.
const LOW_SPEED_SECS: &str = "60";

fn git() -> Result<&'static GitProgram, BackendError> {
    static GIT: OnceLock<Result<GitProgram, String>> = OnceLock::new();
    GIT.get_or_init(|| GitProgram::find(MIN_GIT))
        .as_ref()
        .map_err(|e| {
            BackendError::Unavailable(format!(
                "history on the relace backend is fetched with git, which is missing or too old: {e}"
            ))
        })
}

/// Whether a cache holds every object of its history, or commits and trees only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Commits and trees; file contents are missing.
    Blobless,
    /// Everything `main` reaches.
    Complete,
}

/// The git caches of one credential against one API.
pub struct HistoryCache {
    /// `<data-dir>/relace-cache/<hash>`.
    dir: PathBuf,
    /// The API's base URL, without a trailing `/`.
    base: String,
    /// The `Authorization` header git sends.
    header: String,
    credential: String,
}

impl std::fmt::Debug for HistoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryCache")
            .field("dir", &self.dir)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Create `dir` (and its parents) and make it readable by this user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError::Internal(format!("{what} {}: {e}", path.display()))
}

impl HistoryCache {
    /// The caches of `credential` against the API at `base`, under `data_dir`.
    pub fn new(data_dir: &Path, base: &str, credential: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let key = crate::credentials::secrets::hash(&format!("{base}\n{credential}"));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("token:{credential}"));
        Self {
            dir: data_dir.join(CACHE_DIR).join(key),
            base,
            header: format!("Authorization: Basic {basic}"),
            credential: credential.to_string(),
        }
    }

    /// The git directory of repo `id`'s cache.
    pub fn git_dir(&self, id: &RepoId) -> PathBuf {
        self.dir.join(format!("{id}.git"))
    }

    /// How full repo `id`'s cache is; `None` when there is none yet. A cache is
    /// complete once a fetch that brought everything has succeeded ([`COMPLETE`]
    /// written after it), not when its settings stop promising missing objects: a
    /// process seeing the settings change mid-fetch would read objects not there yet.
    pub fn fill(&self, id: &RepoId) -> Option<Fill> {
        let dir = self.git_dir(id);
        let repo = Repository::open_bare(&dir).ok()?;
        repo.refname_to_id(crate::store::BRANCH_REF).ok()?;
        Some(if dir.join(COMPLETE).exists() {
            Fill::Complete
        } else {
            Fill::Blobless
        })
    }

    /// Remove repo `id`'s cache (the API no longer takes this credential).
    pub fn forget(&self, id: &RepoId) {
        let dir = self.git_dir(id);
        if dir.exists() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(repo = %id, "removed the history cache of a refused credential")
                }
                Err(e) => tracing::warn!(repo = %id, cause = %e, "cannot remove a history cache"),
            }
        }
    }

    /// The cache's `main`, when it has one.
    fn cached_head(&self, id: &RepoId) -> Option<String> {
        let repo = Repository::open_bare(self.git_dir(id)).ok()?;
        repo.refname_to_id(crate::store::BRANCH_REF)
            .ok()
            .map(|o| o.to_string())
    }

    /// Bring repo `id`'s cache up to `head` (the API's head, when it could be asked),
    /// complete when `need` is [`Fill::Complete`], and return its git directory and
    /// fill. Blocking: call it on the blocking pool.
    pub fn sync(
        &self,
        id: &RepoId,
        head: Option<&str>,
        need: Fill,
    ) -> Result<(PathBuf, Fill), BackendError> {
        let dir = self.git_dir(id);
        let fresh = |fill: Option<Fill>| {
            fill.is_some_and(|f| f == Fill::Complete || need == Fill::Blobless)
                && head.is_some_and(|h| self.cached_head(id).as_deref() == Some(h))
        };
        // The warm path: no lock, no process.
        let fill = self.fill(id);
        if let Some(fill) = fill.filter(|_| fresh(fill)) {
            return Ok((dir, fill));
        }
        private_dir(&self.dir)
            .and_then(|_| private_dir(self.dir.parent().unwrap_or(&self.dir)))
            .map_err(|e| io_err("cannot make the history cache directory", &self.dir, e))?;
        let lock_path = self.dir.join(format!("{id}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("cannot open the history cache lock", &lock_path, e))?;
        lock.lock()
            .map_err(|e| io_err("cannot lock the history cache", &lock_path, e))?;
        // Another process may have fetched while this one waited.
        let fill = self.fill(id);
        if fresh(fill) {
            return Ok((dir, fill.unwrap_or(Fill::Complete)));
        }
        let result = self.fetch_locked(id, &dir, fill, need);
        drop(lock);
        result
    }

    fn fetch_locked(
        &self,
        id: &RepoId,
        dir: &Path,
        fill: Option<Fill>,
        need: Fill,
    ) -> Result<(PathBuf, Fill), BackendError> {
        let started = std::time::Instant::now();
        let (refetch, whole) = match fill {
            // A first call that needs contents fetches everything at once: a blobless
            // fetch completed at once would cost both.
            None => {
                self.init(id, dir, need == Fill::Blobless)?;
                (false, need == Fill::Complete)
            }
            Some(Fill::Blobless) if need == Fill::Complete => {
                // The cache becomes an ordinary repository, and fetches everything
                // once; the blobless pack stays until git's own gc packs it away.
                self.no_longer_partial(dir);
                (true, true)
            }
            Some(_) => (false, false),
        };
        let mut args = vec!["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
        if refetch {
            args.push("--refetch");
        }
        args.extend(["origin", "+refs/heads/main:refs/heads/main"]);
        if let Err(e) = self.git(dir, &args) {
            if fill.is_none() || matches!(e, FetchFailure::Refused { status: 401, .. }) {
                // A first fetch that failed leaves nothing worth keeping; a credential
                // the API no longer takes has no use for its cache.
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e.into_backend(id));
        }
        let whole = whole || {
            // The server ignored the filter and sent everything: a full clone already.
            fill.is_none() && self.holds_contents(dir) && {
                self.no_longer_partial(dir);
                true
            }
        };
        if whole {
            File::create(dir.join(COMPLETE))
                .map_err(|e| io_err("cannot write to the history cache", dir, e))?;
        }
        let fill = self.fill(id).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "the API's git endpoint for repo {id} served no `main`: the repo has no commits to show"
            ))
        })?;
        tracing::info!(repo = %id, ?fill, refetch, elapsed_ms = started.elapsed().as_millis() as u64, "fetched history into the relace cache");
        Ok((dir.to_path_buf(), fill))
    }

    /// Make the cache an ordinary repository: no remote promises missing objects.
    /// (Unsetting a setting that is not there fails harmlessly.)
    fn no_longer_partial(&self, dir: &Path) {
        for key in [
            "remote.origin.promisor",
            "remote.origin.partialclonefilter",
            "extensions.partialclone",
        ] {
            let _ = self.git(dir, &["config", "--unset", key]);
        }
    }

    /// Whether the cache holds the contents of a file at its `main` (the first one
    /// found): a first fetch that brought one was not filtered.
    fn holds_contents(&self, dir: &Path) -> bool {
        let Ok(repo) = Repository::open_bare(dir) else {
            return false;
        };
        let Some(tree) = repo
            .refname_to_id(crate::store::BRANCH_REF)
            .ok()
            .and_then(|c| repo.find_commit(c).ok())
            .and_then(|c| c.tree().ok())
        else {
            return false;
        };
        let mut blob = None;
        let _ = tree.walk(git2::TreeWalkMode::PreOrder, |_, e| {
            if e.kind() == Some(git2::ObjectType::Blob) {
                blob = Some(e.id());
                git2::TreeWalkResult::Abort
            } else {
                git2::TreeWalkResult::Ok
            }
        });
        blob.is_some_and(|b| repo.odb().is_ok_and(|odb| odb.exists(b)))
    }

    /// A repository whose remote `origin` is the API's git URL for `id`; blobless
    /// (`partial`) or not. Repository format 0 keeps libgit2 able to open it (git
    /// honours `extensions.partialclone` there too).
    fn init(&self, id: &RepoId, dir: &Path, partial: bool) -> Result<(), BackendError> {
        let _ = std::fs::remove_dir_all(dir);
        let url = format!("{}/repo/{id}.git", self.base);
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["init", "--quiet", "--bare", "--initial-branch=main", "."],
            vec!["config", "remote.origin.url", &url],
        ];
        if partial {
            steps.extend([
                vec!["config", "remote.origin.promisor", "true"],
                vec!["config", "remote.origin.partialclonefilter", "blob:none"],
                vec!["config", "extensions.partialclone", "origin"],
            ]);
        }
        private_dir(dir).map_err(|e| io_err("cannot make the history cache", dir, e))?;
        for args in steps {
            self.git(dir, &args).map_err(|e| e.into_backend(id))?;
        }
        // No background gc outliving a fetch and its lock.
        self.git(dir, &["config", "gc.auto", "0"])
            .and_then(|_| self.git(dir, &["config", "maintenance.auto", "false"]))
            .map_err(|e| e.into_backend(id))?;
        let mut note = File::create(dir.join("description"))
            .map_err(|e| io_err("cannot write to the history cache", dir, e))?;
        let _ = writeln!(
            note,
            "A cache of repo {id}'s history, fetched by scoped-repo-mcp; safe to delete."
        );
        Ok(())
    }

    /// Run git in `dir` with the credential in its environment only.
    fn git(&self, dir: &Path, args: &[&str]) -> Result<(), FetchFailure> {
        let git = git().map_err(|e| FetchFailure::Other(e.to_string()))?;
        let mut cmd = git.command();
        cmd.env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_CONFIG_COUNT", "6")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", &self.header)
            .env("GIT_CONFIG_KEY_1", "credential.helper")
            .env("GIT_CONFIG_VALUE_1", "")
            .env("GIT_CONFIG_KEY_2", "http.followRedirects")
            .env("GIT_CONFIG_VALUE_2", "false")
            .env("GIT_CONFIG_KEY_3", "http.lowSpeedLimit")
            .env("GIT_CONFIG_VALUE_3", "1024")
            .env("GIT_CONFIG_KEY_4", "http.lowSpeedTime")
            .env("GIT_CONFIG_VALUE_4", LOW_SPEED_SECS)
            .env("GIT_CONFIG_KEY_5", "protocol.version")
            .env("GIT_CONFIG_VALUE_5", "2");
        // A proxy and a CA bundle the operator set for the API apply to git too.
        for name in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        let out = cmd
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FetchFailure::Other(format!("git could not run: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr).replace(&self.credential, "<redacted>");
        Err(FetchFailure::classify(&said))
    }
}

/// How a git run failed.
#[derive(Debug)]
enum FetchFailure {
    /// The API answered with an HTTP error status.
    Refused { status: u16, said: String },
    /// Anything else, in git's last words.
    Other(String),
}

impl FetchFailure {
    fn classify(said: &str) -> Self {
        let last = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let status = if said.contains("terminal prompts disabled")
            || said.contains("Authentication failed")
            || said.contains("error: 401")
        {
            Some(401)
        } else {
            ["403", "404"]
                .into_iter()
                .find(|s| said.contains(&format!("returned error: {s}")))
                .and_then(|s| s.parse().ok())
        };
        match status {
            Some(status) => FetchFailure::Refused { status, said: last },
            None => FetchFailure::Other(last),
        }
    }

    fn into_backend(self, id: &RepoId) -> BackendError {
        match self {
            FetchFailure::Refused { status: 401, .. } => BackendError::Refused(format!(
                "the API refused this credential when fetching repo {id}'s history over git (401): \
                 it is revoked, expired or wrong; the history cache kept for it was removed"
            )),
            FetchFailure::Refused { status: 403, .. } => BackendError::Refused(format!(
                "the API refused git to this credential for repo {id} (403). History on the relace \
                 backend is fetched over git, which a token limited to paths cannot use (git cannot \
                 fetch part of a tree): use a token without path limits, or the local backend"
            )),
            FetchFailure::Refused { status: 404, .. } => {
                BackendError::NotFound(format!("the API's git endpoint has no repo {id}"))
            }
            FetchFailure::Refused { status, said } => BackendError::Unavailable(format!(
                "fetching repo {id}'s history over git failed ({status}): {said}"
            )),
            FetchFailure::Other(said) => BackendError::Unavailable(format!(
                "fetching repo {id}'s history over git failed: {said}; retry later"
            )),
        }
    }
}

/// Whether a git2 failure was an object missing from a blobless cache.
pub fn is_missing_object(e: &crate::store::StoreError) -> bool {
    matches!(e, crate::store::StoreError::Git(m)
        if m.contains("object not found") || m.contains("failed to find") || m.contains("no match for id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_failures_are_named_by_status() {
        let f = FetchFailure::classify(
            "fatal: could not read Username for 'http://x/v1/repo/a.git': terminal prompts disabled\n",
        );
        assert!(matches!(f, FetchFailure::Refused { status: 401, .. }));
        let f = FetchFailure::classify(
            "fatal: unable to access 'http://x/': The requested URL returned error: 403\n",
        );
        assert!(matches!(f, FetchFailure::Refused { status: 403, .. }));
        let f = FetchFailure::classify("fatal: the remote end hung up unexpectedly\n");
        assert!(matches!(f, FetchFailure::Other(s) if s.contains("hung up")));
    }

    #[test]
    fn the_cache_path_never_holds_the_credential() {
        let c = HistoryCache::new(Path::new("/d"), "http://h/v1/", "rlcr-secret");
        let id: RepoId = "badfbff4-1c55-44f8-aa60-56f48439385e".parse().unwrap();
        let p = c.git_dir(&id).display().to_string();
        assert!(!p.contains("secret"), "{p}");
        assert!(p.starts_with("/d/relace-cache/"), "{p}");
        assert!(!format!("{c:?}").contains("secret"));
    }
}

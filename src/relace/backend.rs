//! The Relace API as a backend: each tool call becomes calls of the Relace Repos API,
//! made only after the scope guard admitted it. The history tools read a git cache of
//! the repo kept for this credential ([`super::history`]) with the embedded store's own
//! readers, so both backends answer them alike and hold them to the same view.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use git2::Repository;

use super::RelaceError;
use super::client::RelaceClient;
use super::history::{Fill, HistoryCache, is_missing_object};
use crate::backend::{
    Backend, BackendError, BackendFuture, ProgressSender, SearchOutcome, TokenStatus,
};
use crate::credentials::Authority;
use crate::model::{
    BlameQuery, BlameResult, Change, CommitInfo, CommitPage, CommitQuery, DiffDetail, DiffQuery,
    DiffResult, FileList, FileOp, FileText, HistoryMode, LineQuery, LineResults, MintSpec,
    MintedToken, RankedHit, RankedQuery, RankedResults, RepoId, RepoSummary, RevSpec, RevertSpec,
    TokenInfo, UpdateOutcome, UpdateSpec,
};
use crate::paths::RepoPath;
use crate::store::StoreError;
use crate::store::commits;
use crate::text::is_text;

/// Routes the tools through a [`RelaceClient`].
#[derive(Debug)]
pub struct RelaceBackend {
    client: RelaceClient,
    /// `list_files` answers by repo, keyed by the repo's version (its head, or its
    /// `updated_at` where the API reports no head), so an unchanged repo is not
    /// downloaded again.
    files: Mutex<HashMap<RepoId, (String, Arc<FileList>)>>,
    /// Where the history tools' git caches live; `None`: no history offered.
    history: Option<Arc<HistoryCache>>,
}

impl RelaceBackend {
    /// A backend over `client`.
    pub fn new(client: RelaceClient) -> Self {
        Self {
            client,
            files: Mutex::new(HashMap::new()),
            history: None,
        }
    }

    /// Offer the history tools, from git caches kept under `data_dir` for this
    /// backend's credential.
    pub fn with_history(mut self, data_dir: &Path) -> Self {
        self.history = Some(Arc::new(HistoryCache::new(
            data_dir,
            self.client.base(),
            self.client.credential(),
        )));
        self
    }

    /// The client.
    pub fn client(&self) -> &RelaceClient {
        &self.client
    }

    /// The repo's head as the REST API reports it; `None` when the API keeps it from
    /// this credential (the cache is then fetched on every call).
    async fn api_head(&self, id: &RepoId) -> Result<Option<String>, BackendError> {
        match self.client.get_repo(id).await {
            Ok(Some(meta)) => Ok(Some(meta.summary.head).filter(|h| !h.is_empty())),
            Ok(None) => Err(StoreError::RepoNotFound(*id).into()),
            Err(e) if e.status() == Some(403) => Ok(None),
            Err(e) => {
                if e.status() == Some(401)
                    && let Some(cache) = &self.history
                {
                    // A credential the API no longer takes has no use for its cache.
                    cache.forget(id);
                }
                Err(e.into())
            }
        }
    }

    /// Run `read` on repo `id`'s history cache, brought up to the API's head and
    /// filled as `need` says, on the blocking pool. A blobless cache that turns out to
    /// lack a file's contents is completed and `read` runs again.
    fn history<T, F>(&self, id: &RepoId, need: Fill, read: F) -> BackendFuture<'_, T>
    where
        T: Send + 'static,
        F: Fn(&Repository, &Path, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let id = *id;
        Box::pin(async move {
            let Some(cache) = self.history.clone() else {
                return crate::backend::no_history().await;
            };
            let head = self.api_head(&id).await?;
            tokio::task::spawn_blocking(move || {
                let (dir, fill) = cache.sync(&id, head.as_deref(), need)?;
                // The outer error: the cache could not be opened; the inner: the read.
                let attempt = || -> Result<Result<T, StoreError>, BackendError> {
                    let repo = Repository::open_bare(&dir).map_err(|e| {
                        BackendError::Internal(format!(
                            "cannot open the history cache {}: {e}",
                            dir.display()
                        ))
                    })?;
                    let head = repo
                        .refname_to_id(crate::store::BRANCH_REF)
                        .map_err(|e| {
                            BackendError::Internal(format!("the history cache has no main: {e}"))
                        })?
                        .to_string();
                    Ok(read(&repo, &dir, &head))
                };
                let answer = match attempt()? {
                    Err(e) if fill == Fill::Blobless && is_missing_object(&e) => {
                        tracing::debug!(repo = %id, cause = %e, "the blobless history cache lacks contents: completing it");
                        cache.sync(&id, head.as_deref(), Fill::Complete)?;
                        attempt()?
                    }
                    other => other,
                };
                answer.map_err(BackendError::from)
            })
            .await
            .map_err(|e| BackendError::Internal(format!("a background task failed: {e}")))?
        })
    }

    fn cached(&self, id: &RepoId, version: &str) -> Option<Arc<FileList>> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .get(id)
            .filter(|(v, _)| v == version)
            .map(|(_, list)| list.clone())
    }
}

/// Which of the hosted service's phases an operation runs in: it applies every delete,
/// then every write, then every rename.
fn phase(op: &FileOp) -> u8 {
    match op {
        FileOp::Delete { .. } => 0,
        FileOp::Write { .. } | FileOp::WriteBytes { .. } => 1,
        FileOp::Rename { .. } => 2,
    }
}

fn paths(op: &FileOp) -> Vec<&RepoPath> {
    match op {
        FileOp::Write { path, .. } | FileOp::WriteBytes { path, .. } | FileOp::Delete { path } => {
            vec![path]
        }
        FileOp::Rename { path, new_path } => vec![path, new_path],
    }
}

/// The MCP tool applies operations in the order given; the API in phases. Refuse a
/// list whose meaning would change under the API's order, rather than apply something
/// other than what was asked.
fn check_phase_order(ops: &[FileOp]) -> Result<(), RelaceError> {
    for (i, op) in ops.iter().enumerate() {
        for (j, earlier) in ops[..i].iter().enumerate() {
            if phase(earlier) <= phase(op) {
                continue;
            }
            let overlap = paths(op).iter().any(|a| {
                paths(earlier)
                    .iter()
                    .any(|b| a.contains(b.as_str()) || b.contains(a.as_str()))
            });
            if overlap {
                return Err(RelaceError::Unsupported(format!(
                    "operations[{j}] and operations[{i}] touch the same path, and the Relace API applies \
                     every delete, then every write, then every rename, so this order cannot be kept; \
                     split them into two updates"
                )));
            }
        }
    }
    Ok(())
}

impl Backend for RelaceBackend {
    fn list_repos<'a>(&'a self, ids: &'a [RepoId]) -> BackendFuture<'a, Vec<RepoSummary>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for id in ids {
                match self.client.get_repo(id).await {
                    Ok(Some(meta)) => out.push(meta.summary),
                    Ok(None) => {}
                    // The hosted service may keep `GET /repo/{id}` from repo tokens; the
                    // repo is in the token's grant, so it is listed with what is known.
                    Err(e) if e.status() == Some(403) => out.push(RepoSummary {
                        repo_id: id.to_string(),
                        head: String::new(),
                        metadata: Default::default(),
                        created_at: String::new(),
                        updated_at: String::new(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(out)
        })
    }

    fn read_file<'a>(&'a self, id: &'a RepoId, path: &'a RepoPath) -> BackendFuture<'a, FileText> {
        Box::pin(async move {
            let (head, bytes) = self.client.read_file(id, path).await?;
            // The file GET serves any file's raw bytes: a binary one is answered with
            // its size, as the embedded store answers it.
            let size = bytes.len() as u64;
            let (content, binary) = if is_text(&bytes) {
                match String::from_utf8(bytes) {
                    Ok(text) => (text, None),
                    Err(_) => (String::new(), Some(size)),
                }
            } else {
                (String::new(), Some(size))
            };
            Ok(FileText {
                // The hosted file GET reports no head; empty then (see docs/relace.md).
                head: head.unwrap_or_default(),
                content,
                binary,
            })
        })
    }

    fn list_files<'a>(&'a self, id: &'a RepoId) -> BackendFuture<'a, FileList> {
        Box::pin(async move {
            // Without `GET /repo/{id}` (the hosted service may refuse it to repo
            // tokens) there is no cheap version to key a cache on: clone every time.
            let meta = match self.client.get_repo(id).await {
                Ok(Some(meta)) => Some(meta),
                Ok(None) => return Err(StoreError::RepoNotFound(*id).into()),
                Err(e) if e.status() == Some(403) => None,
                Err(e) => return Err(e.into()),
            };
            if let Some(list) = meta.as_ref().and_then(|m| self.cached(id, &m.version)) {
                return Ok((*list).clone());
            }
            let (head, files) = self.client.clone_repo(id).await?;
            let mut paths: Vec<String> = files.into_iter().map(|(p, _)| p).collect();
            paths.sort();
            let list = FileList {
                head: head
                    .or_else(|| meta.as_ref().map(|m| m.summary.head.clone()))
                    .unwrap_or_default(),
                paths,
                // `clone` answers text files only: binary ones are not listed here.
                binary: Vec::new(),
            };
            // Keyed by the version seen before the clone: if the repo moved in between,
            // the next call sees a new version and downloads again.
            if let Some(meta) = meta {
                self.files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(*id, (meta.version, Arc::new(list.clone())));
            }
            Ok(list)
        })
    }

    fn search_lines<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a LineQuery,
    ) -> BackendFuture<'a, LineResults> {
        Box::pin(async move {
            match self.client.search(id, query, None).await? {
                SearchOutcome::Lines(l) => Ok(l),
                SearchOutcome::Agentic(_) => Err(RelaceError::Unsupported(
                    "the Relace API answered a line search with an agentic search".into(),
                )
                .into()),
            }
        })
    }

    fn search<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a LineQuery,
        progress: Option<ProgressSender>,
    ) -> BackendFuture<'a, SearchOutcome> {
        Box::pin(async move { Ok(self.client.search(id, query, progress).await?) })
    }

    fn search_ranked<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a RankedQuery,
        // The hosted service keeps its index ready; there is no build to report.
        _progress: Option<ProgressSender>,
    ) -> BackendFuture<'a, RankedResults> {
        Box::pin(async move {
            let glob = query
                .path_glob
                .as_deref()
                .map(crate::search::compile_glob)
                .transpose()
                .map_err(|e| BackendError::Refused(e.to_string()))?;
            // The hosted default threshold (0.3) keeps weak matches out.
            let found = self
                .client
                .retrieve(id, &query.text, true, 0.3, query.token_limit)
                .await?;
            let hits: Vec<RankedHit> = found
                .results
                .into_iter()
                .filter(|r| glob.as_ref().is_none_or(|g| g.is_match(&r.filename)))
                .take(query.max_results)
                .map(|r| {
                    let snippet = r.content.unwrap_or_default();
                    RankedHit {
                        role: crate::ranked::role::role(&r.filename).name().to_string(),
                        path: r.filename,
                        score: r.score as f32,
                        start_line: 1,
                        end_line: snippet.lines().count().max(1) as u64,
                        snippet,
                    }
                })
                .collect();
            Ok(RankedResults {
                head: found.hash.unwrap_or_default(),
                files_indexed: 0,
                truncated: false,
                hits,
                // Files still pending: `api` answering from line search while it builds.
                partial: (found.pending > 0).then_some(crate::model::IndexBuilding {
                    percent: None,
                    files_pending: Some(found.pending),
                    elsewhere: true,
                }),
            })
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a UpdateSpec,
        _author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome> {
        Box::pin(async move {
            if let Change::Operations(ops) = &spec.change {
                check_phase_order(ops)?;
            }
            Ok(self.client.update(id, spec).await?)
        })
    }

    /// The parent is not sent: upstream, the minting credential is this backend's own.
    fn create_token<'a>(&'a self, spec: &'a MintSpec) -> BackendFuture<'a, MintedToken> {
        Box::pin(async move { Ok(self.client.create_token(spec).await?) })
    }

    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus> {
        Box::pin(async move {
            match self.client.get_token(token).await {
                Ok(info) => Ok(TokenStatus::Live(info)),
                // Not shaped like a token: never sent, and no token.
                Err(RelaceError::Refused(_)) => Ok(TokenStatus::Unknown),
                // 404: not a live token. 401: the token asked about is this client's own
                // credential and the API no longer takes it. The detail says which.
                Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
                    let detail = e.detail().unwrap_or_default().to_ascii_lowercase();
                    Ok(if detail.contains("revoked") {
                        TokenStatus::Revoked
                    } else if detail.contains("expired") {
                        TokenStatus::Expired
                    } else {
                        TokenStatus::Unknown
                    })
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn revoke_token<'a>(&'a self, token: &'a str) -> BackendFuture<'a, Option<TokenInfo>> {
        Box::pin(async move {
            let info = match Backend::token_status(self, token).await? {
                TokenStatus::Live(info) => info,
                _ => return Ok(None),
            };
            Ok(self.client.delete_token(token).await?.then_some(info))
        })
    }

    fn read_file_at<'a>(
        &'a self,
        id: &'a RepoId,
        path: &'a RepoPath,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileText> {
        let (path, rev) = (path.clone(), rev.clone());
        self.history(id, Fill::Complete, move |repo, _, _| {
            file_at(repo, &commits::resolve(repo, &rev)?, &path)
        })
    }

    fn list_files_at<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileList> {
        let rev = rev.clone();
        self.history(id, Fill::Complete, move |repo, _, _| {
            commits::files_at(repo, &rev)
        })
    }

    fn list_commits<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a CommitQuery,
    ) -> BackendFuture<'a, CommitPage> {
        // Counting a string's occurrences reads every changed file: a missing one would
        // count as none, so the cache is completed first rather than found lacking.
        let need = match &query.matching {
            Some(m) if m.mode != HistoryMode::Message => Fill::Complete,
            _ => Fill::Blobless,
        };
        let query = query.clone();
        self.history(id, need, move |repo, _, _| {
            commits::list_commits(repo, &query)
        })
    }

    fn get_commit<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, (CommitInfo, DiffResult)> {
        let (rev, query) = (rev.clone(), query.clone());
        self.history(id, diff_fill(&query), move |repo, _, _| {
            commits::commit_diff(repo, &rev, &query)
        })
    }

    fn compare<'a>(
        &'a self,
        id: &'a RepoId,
        from: &'a RevSpec,
        to: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, DiffResult> {
        let (from, to, query) = (from.clone(), to.clone(), query.clone());
        self.history(id, diff_fill(&query), move |repo, _, _| {
            commits::compare(repo, &from, &to, &query)
        })
    }

    fn blame<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a BlameQuery,
    ) -> BackendFuture<'a, BlameResult> {
        let query = query.clone();
        self.history(id, Fill::Complete, move |repo, dir, _| {
            let (at, total) = commits::blame_target(repo, &query)?;
            crate::backend::blame::run(dir, &at, &query, total)
        })
    }

    /// The revert is made in the cache, at the head just fetched, and sent as an
    /// update of the files it changes with that head as `expected_head`: if the repo
    /// moved in between, the API refuses it and nothing changes.
    fn revert<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a RevertSpec,
        author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome> {
        Box::pin(async move {
            spec.control.report(0, 2);
            let s = spec.clone();
            let (head, ops, message) = self
                .history(id, Fill::Complete, move |repo, _, head| {
                    if let Some(expected) = &s.expected_head
                        && expected != head
                    {
                        return Err(StoreError::Conflict {
                            expected: expected.clone(),
                            actual: head.to_string(),
                        });
                    }
                    let head_id = git2::Oid::from_str(head).map_err(git_err)?;
                    let old_tree = repo
                        .find_commit(head_id)
                        .and_then(|c| c.tree())
                        .map_err(git_err)?;
                    let (tree, message) = commits::revert_tree(
                        repo,
                        &s.commit,
                        head_id,
                        &old_tree,
                        s.visible.as_deref(),
                    )?;
                    let new_tree = repo.find_tree(tree).map_err(git_err)?;
                    let ops = operations_between(repo, &old_tree, &new_tree)?;
                    Ok((head.to_string(), ops, s.message.clone().unwrap_or(message)))
                })
                .await?;
            spec.control.report(1, 2);
            if spec.control.is_cancelled() {
                return Err(BackendError::Refused(
                    "the revert was cancelled before it was sent; nothing changed".into(),
                ));
            }
            let update = UpdateSpec {
                change: Change::Operations(ops),
                expected_head: Some(head),
                message: Some(message),
                control: Default::default(),
                visible: spec.visible.clone(),
            };
            let outcome = Backend::update(self, id, &update, author).await?;
            spec.control.report(2, 2);
            Ok(outcome)
        })
    }
}

/// How full the cache must be for a diff: the changed paths alone need no file
/// contents (renames, which do, complete the cache when found).
fn diff_fill(q: &DiffQuery) -> Fill {
    match q.detail {
        DiffDetail::None => Fill::Blobless,
        _ => Fill::Complete,
    }
}

fn git_err(e: git2::Error) -> StoreError {
    StoreError::Git(e.message().to_string())
}

/// A text file at commit `at` (a full id), as the store's `read_file` answers it.
fn file_at(repo: &Repository, at: &str, path: &RepoPath) -> Result<FileText, StoreError> {
    let oid = git2::Oid::from_str(at).map_err(git_err)?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    let entry = tree
        .get_path(Path::new(path.as_str()))
        .map_err(|_| StoreError::FileNotFound(format!("`{path}` does not exist at {at}")))?;
    if entry.kind() != Some(git2::ObjectType::Blob) {
        return Err(StoreError::Invalid(format!(
            "`{path}` is a directory; use list_files to see what it holds"
        )));
    }
    let blob = repo.find_blob(entry.id()).map_err(git_err)?;
    let bytes = blob.content();
    let (content, binary) = match std::str::from_utf8(bytes) {
        Ok(text) if is_text(bytes) => (text.to_string(), None),
        _ => (String::new(), Some(bytes.len() as u64)),
    };
    Ok(FileText {
        head: at.to_string(),
        content,
        binary,
    })
}

/// The file operations that turn tree `old` into tree `new`: writes of every added or
/// changed file, deletes of every removed one. The update route takes text only, so a
/// change that writes a binary file is refused.
fn operations_between(
    repo: &Repository,
    old: &git2::Tree<'_>,
    new: &git2::Tree<'_>,
) -> Result<Vec<FileOp>, StoreError> {
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), None)
        .map_err(git_err)?;
    let mut ops = Vec::new();
    for delta in diff.deltas() {
        let file = match delta.status() {
            git2::Delta::Deleted => delta.old_file(),
            _ => delta.new_file(),
        };
        let raw = file
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = RepoPath::parse(&raw).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if delta.status() == git2::Delta::Deleted {
            ops.push(FileOp::Delete { path });
            continue;
        }
        let blob = repo.find_blob(file.id()).map_err(git_err)?;
        match std::str::from_utf8(blob.content()) {
            Ok(text) if is_text(blob.content()) => ops.push(FileOp::Write {
                path,
                content: text.to_string(),
            }),
            _ => {
                return Err(StoreError::Invalid(format!(
                    "the revert would write `{path}`, a binary file, and the Relace API's update takes                      text only; nothing changed: revert it on the local backend, or write it through the REST file route"
                )));
            }
        }
    }
    Ok(ops)
}

/// How a failure of the Relace API reads to the tools: the backend-neutral kinds.
impl From<RelaceError> for BackendError {
    fn from(e: RelaceError) -> Self {
        let message = e.to_string();
        match &e {
            RelaceError::Status { status, .. } => match status {
                404 => BackendError::NotFound(message),
                409 | 412 => BackendError::Conflict(message),
                408 | 423 | 429 | 500..=599 => BackendError::Unavailable(message),
                _ => BackendError::Refused(message),
            },
            RelaceError::Transport { .. }
            | RelaceError::WriteUncertain { .. }
            | RelaceError::Malformed { .. } => BackendError::Unavailable(message),
            RelaceError::Unsupported(_) | RelaceError::Refused(_) => BackendError::Refused(message),
        }
    }
}

/// The Relace API as the front door's authority: a token's status is asked of the API.
impl Authority for RelaceBackend {
    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus> {
        Backend::token_status(self, token)
    }

    /// The Relace API cannot tell a key's holder what the key reaches; an operator's
    /// key is taken as given (each repo named is checked at start-up, and the API
    /// refuses a bad key on first use).
    fn account_key<'a>(&'a self, _key: &'a str) -> BackendFuture<'a, Option<(String, String)>> {
        Box::pin(async { Ok(Some((String::new(), String::new()))) })
    }

    fn all_repos(&self) -> BackendFuture<'_, Vec<RepoId>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RepoPath {
        RepoPath::parse(s).unwrap()
    }

    #[test]
    fn phase_order_is_kept_or_refused() {
        let ok = vec![
            FileOp::Write {
                path: p("a"),
                content: "x".into(),
            },
            FileOp::Delete { path: p("b") },
            FileOp::Rename {
                path: p("c"),
                new_path: p("d"),
            },
        ];
        assert!(check_phase_order(&ok).is_ok());
        let bad = vec![
            FileOp::Write {
                path: p("dir/a"),
                content: "x".into(),
            },
            FileOp::Delete { path: p("dir") },
        ];
        assert!(check_phase_order(&bad).is_err());
        let rename_then_write = vec![
            FileOp::Rename {
                path: p("a"),
                new_path: p("b"),
            },
            FileOp::Write {
                path: p("a"),
                content: "new".into(),
            },
        ];
        assert!(check_phase_order(&rename_then_write).is_err());
    }
}

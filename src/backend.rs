//! The seam between the MCP layer and where repositories live: a small object-safe
//! trait, with the embedded store behind [`LocalBackend`].

pub(crate) mod blame;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::model::{
    AgenticReport, BlameQuery, BlameResult, CommitInfo, CommitPage, CommitQuery, DiffQuery,
    DiffResult, FileList, FileText, LineQuery, LineResults, MintSpec, MintedToken, RankedQuery,
    RankedResults, RepoId, RepoSummary, RevSpec, RevertSpec, TokenInfo, UpdateOutcome, UpdateSpec,
};
use crate::paths::RepoPath;
use crate::ranked::RankedProgress;
use crate::store::{Store, StoreError, TokenState};

/// A boxed future answering a backend call.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// What a backend call can fail with, in the domain's terms: the store's and the
/// Relace client's own error types stop at this seam, so every backend fails the same
/// way for the same reason.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No such repo, file or commit.
    #[error("{0}")]
    NotFound(String),
    /// The repo moved on (`expected_head`), or a writer held it.
    #[error("{0}")]
    Conflict(String),
    /// The input is refused: malformed, over a limit, or not offered by this backend.
    #[error("{0}")]
    Refused(String),
    /// The backend could not be reached or answered with its own failure; the message
    /// says whether retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// The server's own failure: logged in full, reported vaguely.
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    /// Whether this is the server's own failure (logged in full, reported vaguely) rather
    /// than something the caller can act on.
    pub fn is_internal(&self) -> bool {
        matches!(self, BackendError::Internal(_))
    }
}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::RepoNotFound(_) | StoreError::FileNotFound(_) => {
                BackendError::NotFound(message)
            }
            StoreError::Conflict { .. } | StoreError::MergeConflict(_) => {
                BackendError::Conflict(message)
            }
            StoreError::Invalid(_)
            | StoreError::TooLarge(_)
            | StoreError::Search(_)
            | StoreError::Cancelled => BackendError::Refused(message),
            StoreError::NoSpace(_) => BackendError::Unavailable(message),
            StoreError::Database(_) | StoreError::Git(_) | StoreError::Io(_) => {
                BackendError::Internal(message)
            }
        }
    }
}

/// Whether a credential may be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    /// Usable, granting this.
    Live(TokenInfo),
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Not a token this backend knows.
    Unknown,
}

/// Where a long call sends progress messages as it goes.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<String>;

/// The answer to a line search.
#[derive(Debug)]
pub enum SearchOutcome {
    /// Matching lines.
    Lines(LineResults),
    /// The hosted service answered with an agentic search instead; its final report.
    Agentic(AgenticReport),
}

/// Where repositories live. Every method is called only after the scope guard has
/// admitted the call; a backend enforces no scope of its own.
pub trait Backend: Send + Sync + 'static {
    /// The repos among `ids` that exist, in the order given.
    fn list_repos<'a>(&'a self, ids: &'a [RepoId]) -> BackendFuture<'a, Vec<RepoSummary>>;
    /// A text file at the head. The head is empty when the backend cannot say which
    /// commit it read (the hosted Relace file GET returns bare bytes).
    fn read_file<'a>(&'a self, id: &'a RepoId, path: &'a RepoPath) -> BackendFuture<'a, FileText>;
    /// Every tracked path at the head.
    fn list_files<'a>(&'a self, id: &'a RepoId) -> BackendFuture<'a, FileList>;
    /// Literal or regex line search at the head.
    fn search_lines<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a LineQuery,
    ) -> BackendFuture<'a, LineResults>;
    /// Ranked natural-language retrieval at the head: the files that best answer a
    /// question, each with the line range that matches best. A backend that has to
    /// build its index first tells `progress` how the build goes.
    fn search_ranked<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a RankedQuery,
        progress: Option<ProgressSender>,
    ) -> BackendFuture<'a, RankedResults>;
    /// A line search that may, on the hosted service, turn into an agentic search whose
    /// events go to `progress` as they arrive.
    fn search<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a LineQuery,
        progress: Option<ProgressSender>,
    ) -> BackendFuture<'a, SearchOutcome> {
        let _ = progress;
        Box::pin(async move { Ok(SearchOutcome::Lines(self.search_lines(id, query).await?)) })
    }
    /// Apply an update as one commit.
    fn update<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a UpdateSpec,
        author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome>;
    /// Mint a repo token.
    fn create_token<'a>(&'a self, spec: &'a MintSpec) -> BackendFuture<'a, MintedToken>;
    /// What a token grants, and whether it is usable.
    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus>;
    /// Revoke a token; `None` when it was unknown or already revoked.
    fn revoke_token<'a>(&'a self, token: &'a str) -> BackendFuture<'a, Option<TokenInfo>>;

    // The history. A backend without one answers each of these with
    // [`BackendError::Refused`] saying so ([`no_history`]).

    /// A text file at revision `rev` of the repo's history.
    fn read_file_at<'a>(
        &'a self,
        id: &'a RepoId,
        path: &'a RepoPath,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileText> {
        let _ = (id, path, rev);
        no_history()
    }
    /// Every tracked path at revision `rev`.
    fn list_files_at<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileList> {
        let _ = (id, rev);
        no_history()
    }
    /// A page of commits, newest first.
    fn list_commits<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a CommitQuery,
    ) -> BackendFuture<'a, CommitPage> {
        let _ = (id, query);
        no_history()
    }
    /// One commit and its diff against its first parent.
    fn get_commit<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, (CommitInfo, DiffResult)> {
        let _ = (id, rev, query);
        no_history()
    }
    /// The diff between two commits.
    fn compare<'a>(
        &'a self,
        id: &'a RepoId,
        from: &'a RevSpec,
        to: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, DiffResult> {
        let _ = (id, from, to, query);
        no_history()
    }
    /// Who last changed each line of a file.
    fn blame<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a BlameQuery,
    ) -> BackendFuture<'a, BlameResult> {
        let _ = (id, query);
        no_history()
    }
    /// One new commit on the head undoing a commit, attributed to `author`.
    fn revert<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a RevertSpec,
        author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome> {
        let _ = (id, spec, author);
        no_history()
    }
}

/// Blame in the embedded store (the local backend's, and the REST API's): the target
/// checked by the store, the blame run by the `git` program.
pub fn blame_in_store(
    store: &Store,
    id: &RepoId,
    query: &BlameQuery,
) -> Result<BlameResult, StoreError> {
    let (at, total) = store.blame_target(id, query)?;
    blame::run(&store.git_dir(id), &at, query, total)
}

/// The answer of a backend that has no history to offer.
pub fn no_history<'a, T: 'a>() -> BackendFuture<'a, T> {
    Box::pin(async {
        Err(BackendError::Refused(
            "history (commits, diffs, blame, revisions) is not available on this backend yet: \
             run the server with --backend local on the store to use it"
                .into(),
        ))
    })
}

/// The embedded store as a backend.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    store: Arc<Store>,
}

impl LocalBackend {
    /// Serve from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Run a store call on the blocking pool: the one way the local backend (and the
    /// front door over it) reaches the store from async code.
    pub(crate) fn blocking<T, F>(&self, f: F) -> BackendFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(|e| BackendError::Internal(format!("a background task failed: {e}")))?
                .map_err(BackendError::from)
        })
    }
}

impl Backend for LocalBackend {
    fn list_repos<'a>(&'a self, ids: &'a [RepoId]) -> BackendFuture<'a, Vec<RepoSummary>> {
        let ids = ids.to_vec();
        self.blocking(move |s| {
            let mut out = Vec::new();
            for id in &ids {
                match s.repo(id) {
                    Ok(r) => out.push(r),
                    Err(StoreError::RepoNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn read_file<'a>(&'a self, id: &'a RepoId, path: &'a RepoPath) -> BackendFuture<'a, FileText> {
        let (id, path) = (*id, path.clone());
        self.blocking(move |s| s.read_file(&id, &path, None))
    }

    fn list_files<'a>(&'a self, id: &'a RepoId) -> BackendFuture<'a, FileList> {
        let id = *id;
        self.blocking(move |s| s.list_files(&id))
    }

    fn search_lines<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a LineQuery,
    ) -> BackendFuture<'a, LineResults> {
        let (id, query) = (*id, query.clone());
        self.blocking(move |s| s.search_lines(&id, &query))
    }

    fn search_ranked<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a RankedQuery,
        progress: Option<ProgressSender>,
    ) -> BackendFuture<'a, RankedResults> {
        let (id, query) = (*id, query.clone());
        self.blocking(move |s| {
            s.search_ranked_with(&id, &query, &|p| {
                if let Some(tx) = &progress {
                    let _ = tx.send(match p {
                        RankedProgress::Files { done, total } => {
                            format!("building the ranked index: {done} of {total} files read")
                        }
                        RankedProgress::Commits { done, total } => format!(
                            "building the ranked index: {done} of {total} commits of history read"
                        ),
                        RankedProgress::Resumed { from, total } => format!(
                            "building the ranked index: resumed from a checkpoint at file {from} of {total}"
                        ),
                    });
                }
            })
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a UpdateSpec,
        author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome> {
        let (id, spec, author) = (*id, spec.clone(), author.to_string());
        self.blocking(move |s| s.update(&id, &spec, &author))
    }

    fn create_token<'a>(&'a self, spec: &'a MintSpec) -> BackendFuture<'a, MintedToken> {
        let spec = spec.clone();
        self.blocking(move |s| s.mint(&spec))
    }

    fn token_status<'a>(&'a self, token: &'a str) -> BackendFuture<'a, TokenStatus> {
        let token = token.to_string();
        self.blocking(move |s| {
            let (state, info) = s.token(&token)?;
            Ok(match (state, info) {
                (TokenState::Live, Some(info)) => TokenStatus::Live(info),
                (TokenState::Revoked, _) => TokenStatus::Revoked,
                (TokenState::Expired, _) => TokenStatus::Expired,
                _ => TokenStatus::Unknown,
            })
        })
    }

    fn revoke_token<'a>(&'a self, token: &'a str) -> BackendFuture<'a, Option<TokenInfo>> {
        let token = token.to_string();
        self.blocking(move |s| s.revoke_token(&token))
    }

    fn read_file_at<'a>(
        &'a self,
        id: &'a RepoId,
        path: &'a RepoPath,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileText> {
        let (id, path, rev) = (*id, path.clone(), rev.clone());
        self.blocking(move |s| {
            let at = s.resolve_rev(&id, &rev)?;
            s.read_file(&id, &path, Some(&at))
        })
    }

    fn list_files_at<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
    ) -> BackendFuture<'a, FileList> {
        let (id, rev) = (*id, rev.clone());
        self.blocking(move |s| s.list_files_at(&id, Some(&rev)))
    }

    fn list_commits<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a CommitQuery,
    ) -> BackendFuture<'a, CommitPage> {
        let (id, query) = (*id, query.clone());
        self.blocking(move |s| s.list_commits(&id, &query))
    }

    fn get_commit<'a>(
        &'a self,
        id: &'a RepoId,
        rev: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, (CommitInfo, DiffResult)> {
        let (id, rev, query) = (*id, rev.clone(), query.clone());
        self.blocking(move |s| s.commit_diff(&id, &rev, &query))
    }

    fn compare<'a>(
        &'a self,
        id: &'a RepoId,
        from: &'a RevSpec,
        to: &'a RevSpec,
        query: &'a DiffQuery,
    ) -> BackendFuture<'a, DiffResult> {
        let (id, from, to, query) = (*id, from.clone(), to.clone(), query.clone());
        self.blocking(move |s| s.compare(&id, &from, &to, &query))
    }

    fn blame<'a>(
        &'a self,
        id: &'a RepoId,
        query: &'a BlameQuery,
    ) -> BackendFuture<'a, BlameResult> {
        let (id, query) = (*id, query.clone());
        self.blocking(move |s| blame_in_store(s, &id, &query))
    }

    fn revert<'a>(
        &'a self,
        id: &'a RepoId,
        spec: &'a RevertSpec,
        author: &'a str,
    ) -> BackendFuture<'a, UpdateOutcome> {
        let (id, spec, author) = (*id, spec.clone(), author.to_string());
        self.blocking(move |s| s.revert(&id, &spec, &author))
    }
}

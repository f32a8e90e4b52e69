//! The Relace API as a backend: each tool call becomes calls of the Relace Repos API,
//! made only after the scope guard admitted it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::RelaceError;
use super::client::RelaceClient;
use crate::backend::{
    Backend, BackendError, BackendFuture, ProgressSender, SearchOutcome, TokenStatus,
};
use crate::credentials::Authority;
use crate::model::{
    Change, FileList, FileOp, FileText, LineQuery, LineResults, MintSpec, MintedToken, RankedHit,
    RankedQuery, RankedResults, RepoId, RepoSummary, TokenInfo, UpdateOutcome, UpdateSpec,
};
use crate::paths::RepoPath;
use crate::store::StoreError;
use crate::text::is_text;

/// Routes the tools through a [`RelaceClient`].
#[derive(Debug)]
pub struct RelaceBackend {
    client: RelaceClient,
    /// `list_files` answers by repo, keyed by the repo's version (its head, or its
    /// `updated_at` where the API reports no head), so an unchanged repo is not
    /// downloaded again.
    files: Mutex<HashMap<RepoId, (String, Arc<FileList>)>>,
}

impl RelaceBackend {
    /// A backend over `client`.
    pub fn new(client: RelaceClient) -> Self {
        Self {
            client,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The client.
    pub fn client(&self) -> &RelaceClient {
        &self.client
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

//! Start-up of `serve`: open the backend, learn the scope, build the server, run it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use crate::audit::{Recorder, Surface as AuditSurface, Trail};
use crate::backend::{Backend, LocalBackend};
use crate::cli::BackendKind;
use crate::config::{ConfigError, ServeConfig};
use crate::credentials::{self, Authority, OperatorBound, Refusal, Surface, secrets};
use crate::git_source::{FetchLimits, GitProgram, GitSource, SourceError};
use crate::http::Resolver;
use crate::model::RepoId;
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::scope::Scope;
use crate::server::{RepoServer, ServerSettings};
use crate::store::{Limits, MergeSpec, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Open the embedded store in `config.data_dir`.
pub fn open_store(config: &ServeConfig) -> Result<Arc<Store>, ConfigError> {
    Store::open(&config.data_dir, Limits::default())
        .map(|s| {
            s.set_index_memory(config.index_memory);
            Arc::new(s)
        })
        .map_err(|e| {
            ConfigError(format!(
                "cannot open the store in {}: {e}; check the path and its permissions, or pass another --data-dir",
                config.data_dir.display()
            ))
        })
}

/// The metadata key that versions before the `imports` table used to record which
/// directory a repo was imported from. Any repo token could write it, so it no longer
/// decides anything; a repo that still carries it for a directory with no link stops
/// `--import` with a sentence saying how to adopt it.
pub const LEGACY_IMPORTED_FROM: &str = "imported_from";

/// The repo `--import DIR` serves: the one linked to DIR in the store's `imports`
/// table (written only by the operator's own commands), or a new import linked there.
pub fn import_or_reuse(store: &Store, dir: &Path, no_ignore: bool) -> Result<RepoId, ConfigError> {
    let abs = dir.canonicalize().map_err(|e| {
        ConfigError(format!(
            "--import {}: {e}; give an existing directory",
            dir.display()
        ))
    })?;
    let key = abs.display().to_string();
    let linked = store
        .imports_of(&key)
        .map_err(|e| ConfigError(e.to_string()))?;
    match linked.as_slice() {
        [one] => {
            tracing::info!(repo = %one, dir = %key, "serving the repo imported from this directory before");
            if let Some(dir_head) = work_tree_head(&abs) {
                merge_work_tree(store, one, &abs, dir_head);
            }
            return Ok(*one);
        }
        [] => {}
        many => {
            let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
            return Err(ConfigError(format!(
                "--import {key}: {} repos are linked to this directory ({}); keep one with                  `scoped-repo-mcp repo unlink ID` on the others, or serve one with --repo ID",
                ids.len(),
                ids.join(", ")
            )));
        }
    }
    let rows = store.repo_rows().map_err(|e| ConfigError(e.to_string()))?;
    let legacy: Vec<String> = rows
        .iter()
        .filter(|r| r.metadata.get(LEGACY_IMPORTED_FROM) == Some(&key))
        .map(|r| r.id.to_string())
        .collect();
    if !legacy.is_empty() {
        return Err(ConfigError(format!(
            "--import {key}: repo {} claims this directory through its `{LEGACY_IMPORTED_FROM}` metadata,              which any token on that repo could have written, so it is not trusted. If it is the repo              you imported, link it with `scoped-repo-mcp repo link ID {key}`; to import afresh,              `scoped-repo-mcp repo create --from-dir {key} --link`",
            legacy.join(", ")
        )));
    }
    let mut metadata = BTreeMap::new();
    if let Some(name) = abs.file_name().and_then(|n| n.to_str()) {
        metadata.insert("name".to_string(), name.to_string());
    }
    if work_tree_head(&abs).is_some() {
        match import_history(store, &abs, metadata.clone()) {
            Ok((id, files)) => {
                store.link_import(&id, &key).map_err(|e| {
                    ConfigError(format!("--import {key}: imported, but not linked: {e}"))
                })?;
                tracing::info!(repo = %id, files, dir = %key, "imported the directory's git history");
                return Ok(id);
            }
            Err(e) => {
                tracing::warn!(
                    dir = %key,
                    cause = %e,
                    "the directory's git history cannot be imported; importing its files as a snapshot instead (without history; later start-ups will not merge its new commits)"
                );
            }
        }
    }
    let report = store
        .import_dir_with(&abs, metadata, &|_| {}, !no_ignore)
        .map_err(|e| ConfigError(format!("--import {key}: {e}")))?;
    store
        .link_import(&report.repo_id, &key)
        .map_err(|e| ConfigError(format!("--import {key}: imported, but not linked: {e}")))?;
    tracing::info!(repo = %report.repo_id, files = report.files, dir = %key, "imported directory");
    Ok(report.repo_id)
}

/// The commit checked out in `dir` when `dir` is the top of a git work tree whose HEAD
/// names a commit; `None` for any other directory (which is imported as a snapshot).
fn work_tree_head(dir: &Path) -> Option<git2::Oid> {
    let repo = git2::Repository::open(dir).ok()?;
    let top = repo.workdir()?.canonicalize().ok()?;
    if top != dir {
        return None;
    }
    repo.head().ok()?.peel_to_commit().ok().map(|c| c.id())
}

/// Make a repo from the history of the branch checked out in the work tree `dir`:
/// its ID and how many files its head holds.
fn import_history(
    store: &Store,
    dir: &Path,
    metadata: BTreeMap<String, String>,
) -> Result<(RepoId, usize), SourceError> {
    let git = GitProgram::find((2, 32)).map_err(SourceError::Fetch)?;
    let source = GitSource::local(dir, None)?;
    let (row, outcome) = store.create_from_history(metadata, |q| {
        source.fetch_into(&git, q, &FetchLimits::default())
    })?;
    Ok((row.id, outcome.changed_files.len()))
}

/// How a repo's history stands to the work tree it was imported from.
enum Relation {
    /// `main` holds the work tree's commit already.
    Holds,
    /// They share history, and the work tree has commits `main` lacks.
    Related,
}

/// On a later start-up, merge the commits of the branch checked out in `dir` (at
/// `dir_head`) into the repo's `main`: a fast-forward or a merge commit. Nothing is
/// done when `main` holds them already, or when the repo was imported as a snapshot
/// (its history shares no commit with the directory's). A conflict, or any failure,
/// leaves the store as it was and is logged as a warning; the server starts either
/// way.
fn merge_work_tree(store: &Store, id: &RepoId, dir: &Path, dir_head: git2::Oid) {
    let key = dir.display().to_string();
    let related = (|| {
        let store_head = git2::Oid::from_str(&store.head(id).ok()?).ok()?;
        let local = git2::Repository::open(dir).ok()?;
        // The store's objects seen beside the directory's, in memory only.
        local
            .odb()
            .ok()?
            .add_disk_alternate(&store.git_dir(id).join("objects").to_string_lossy())
            .ok()?;
        if store_head == dir_head || local.graph_descendant_of(store_head, dir_head).ok()? {
            return Some(Relation::Holds);
        }
        match local.merge_base(store_head, dir_head) {
            Ok(_) => Some(Relation::Related),
            Err(_) => None,
        }
    })();
    match related {
        Some(Relation::Related) => {}
        Some(Relation::Holds) => {
            tracing::info!(repo = %id, dir = %key, "the store holds the directory's commits already");
            return;
        }
        None => {
            tracing::info!(repo = %id, dir = %key, "the repo was not imported from this directory's git history (it was imported as a snapshot); its commits are not merged");
            return;
        }
    }
    let merged = (|| {
        let git = GitProgram::find((2, 32)).map_err(SourceError::Fetch)?;
        let source = GitSource::local(dir, None)?;
        let spec = MergeSpec {
            message: format!("Merge {} into main", source.describe()),
            author: "scoped-repo-mcp".into(),
            expected_head: None,
        };
        store.merge_history(id, &spec, |q| {
            source.fetch_into(&git, q, &FetchLimits::default())
        })
    })();
    match merged {
        Ok((outcome, joined)) => {
            tracing::info!(repo = %id, dir = %key, joined = ?joined, head = %outcome.head, files = outcome.changed_files.len(), "merged the directory's new commits into the store's main");
        }
        Err(SourceError::Store(StoreError::MergeConflict(paths))) => {
            let paths: Vec<String> = paths
                .iter()
                .map(|p| crate::text::one_line(p).into_owned())
                .collect();
            tracing::warn!(
                repo = %id,
                dir = %key,
                paths = %paths.join(", "),
                "the directory's new commits conflict with the store's main in {} path(s): {}; the store is unchanged. Pull the store's main into the directory (`git pull {} main`), resolve, commit, and start again",
                paths.len(),
                paths.join(", "),
                store.git_dir(id).display()
            );
        }
        Err(e) => {
            tracing::warn!(repo = %id, dir = %key, cause = %e, "the directory's new commits were not merged; the store is unchanged");
        }
    }
}

/// The operator's repo set: `--repo` plus the `--import` directory, each checked to
/// exist in the store.
pub fn operator_repos(config: &ServeConfig, store: &Store) -> Result<Vec<RepoId>, ConfigError> {
    let mut repos = config.repos.clone();
    if let Some(dir) = &config.import {
        let id = import_or_reuse(store, dir, config.no_ignore)?;
        if !repos.contains(&id) {
            repos.push(id);
        }
    }
    for id in &repos {
        match store.repo_row(id) {
            Ok(_) => {}
            Err(StoreError::RepoNotFound(_)) => {
                return Err(ConfigError(format!(
                    "repo {id} is not in the store at {}; `scoped-repo-mcp repo list --data-dir {}` shows the repos there",
                    config.data_dir.display(),
                    config.data_dir.display()
                )));
            }
            // Locked, corrupt or unreadable is not "absent": saying so would send the
            // user looking for a repo that is there.
            Err(e) => {
                return Err(ConfigError(format!(
                    "the store's database at {} could not be read to look up repo {id} ({e}); check that the file is readable and not held by a stuck process, and try again",
                    config.data_dir.join("store.db").display()
                )));
            }
        }
    }
    Ok(repos)
}

/// The start-up refusal of the credential in `RELACE_API_KEY`, with where it was
/// checked and what to do.
fn credential_refused(refusal: Refusal, place: &str, remedy: &str) -> ConfigError {
    ConfigError(match refusal {
        Refusal::NoRepos => {
            "the repo token in RELACE_API_KEY reaches none of the repos given with --repo / SCOPED_REPO_IDS".into()
        }
        Refusal::Unrecognized => {
            "RELACE_API_KEY is neither a repo token (rlcr-…) nor an account key (rlc-…); unset it or fix it".into()
        }
        other => format!("RELACE_API_KEY: {other} ({place}); {remedy}"),
    })
}

/// The scope a stdio session starts with, by the front door's one rule.
async fn stdio_scope(
    authority: &dyn Authority,
    config: &ServeConfig,
    repos: Vec<RepoId>,
    place: &str,
    remedy: &str,
) -> Result<Scope, ConfigError> {
    let bound = OperatorBound {
        repos,
        read_only: config.read_only,
        allow_anonymous: false,
    };
    let scope = credentials::admit(authority, &bound, Surface::Stdio, config.api_key.as_deref())
        .await
        .map_err(|r| credential_refused(r, place, remedy))?;
    if scope.is_empty() {
        return Err(ConfigError(
            "no repos in scope: pass --repo ID (repeatable) or SCOPED_REPO_IDS=ID,ID, --import DIR, or set RELACE_API_KEY to a repo token; \
             `scoped-repo-mcp repo list` shows the IDs"
                .into(),
        ));
    }
    Ok(scope)
}

/// Work out the session's scope from the operator's flags and the credential.
pub async fn local_scope(
    config: &ServeConfig,
    backend: &LocalBackend,
) -> Result<Scope, ConfigError> {
    let repos = operator_repos(config, backend.store())?;
    let place = format!("in the store at {}", config.data_dir.display());
    stdio_scope(
        backend,
        config,
        repos,
        &place,
        "mint a new one with `scoped-repo-mcp token create`",
    )
    .await
}

/// Build the line-search indexes of the repos in scope in the background, one repo at a
/// time, so the first search does not pay for the build; a search arriving earlier
/// waits for the build under way rather than starting its own.
fn warm_line_indexes(store: Arc<Store>, repos: Vec<RepoId>) {
    let spawned = std::thread::Builder::new()
        .name("index-warm-up".into())
        .spawn(move || {
            for id in repos {
                if let Err(e) = store.line_index(&id) {
                    tracing::warn!(repo = %id, cause = %e, "the line index could not be built ahead of the first search");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(cause = %e, "no thread to build line indexes ahead; the first search builds them");
    }
}

/// Build the server `serve` runs, on the local backend.
pub async fn build_local_server(config: &ServeConfig) -> Result<RepoServer, ConfigError> {
    let backend = LocalBackend::new(open_store(config)?);
    let scope = local_scope(config, &backend).await?;
    warm_line_indexes(backend.store().clone(), scope.repos().copied().collect());
    Ok(RepoServer::new(
        Arc::new(backend) as Arc<dyn Backend>,
        scope,
        settings(config),
    )
    .with_audit(recorder(config, AuditSurface::Stdio))
    .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit)))
}

/// The audit trail of `config`'s data directory, for calls arriving on `surface`.
fn recorder(config: &ServeConfig, surface: AuditSurface) -> Recorder {
    Recorder::new(
        Trail::open(&config.data_dir, config.audit_retention, surface),
        surface,
    )
}

/// Work out the scope of a session on the Relace API: a repo token's own repos (asked
/// of the API), narrowed by `--repo`; or, for an account key, the `--repo` set, each
/// checked to exist.
pub async fn relace_scope(
    config: &ServeConfig,
    backend: &RelaceBackend,
) -> Result<Scope, ConfigError> {
    let base = backend.client().base().to_string();
    if config.api_key.is_none() {
        return Err(ConfigError("--backend relace needs RELACE_API_KEY".into()));
    }
    if !config
        .api_key
        .as_deref()
        .is_some_and(secrets::looks_like_repo_token)
    {
        for id in &config.repos {
            match backend.client().get_repo(id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ConfigError(format!(
                        "repo {id} is not known to the Relace API at {base}; check the ID given with --repo"
                    )));
                }
                Err(e) => {
                    return Err(ConfigError(format!(
                        "cannot start on the Relace API at {base}: {e}"
                    )));
                }
            }
        }
    }
    let place = format!("by the Relace API at {base}");
    stdio_scope(
        backend,
        config,
        config.repos.clone(),
        &place,
        "ask for a new one",
    )
    .await
}

/// Build the server `serve` runs, on the Relace API.
pub async fn build_relace_server(config: &ServeConfig) -> Result<RepoServer, ConfigError> {
    let policy = RetryPolicy {
        timeout: config.request_timeout,
        ..RetryPolicy::default()
    };
    let credential = config.api_key.as_deref().unwrap_or_default();
    let client = RelaceClient::new(&config.base_url, credential, policy)
        .map_err(|e| ConfigError(e.to_string()))?;
    let backend = RelaceBackend::new(client);
    let scope = relace_scope(config, &backend).await?;
    tracing::info!(base = %config.base_url, "routing tools through the Relace API");
    let settings = ServerSettings {
        max_token_ttl: config.max_token_ttl.as_secs(),
        ..ServerSettings::default()
    };
    Ok(
        RepoServer::new(Arc::new(backend) as Arc<dyn Backend>, scope, settings)
            .with_audit(recorder(config, AuditSurface::Stdio))
            .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit)),
    )
}

/// Build the server `serve` runs, on the configured backend.
pub async fn build_server(config: &ServeConfig) -> Result<RepoServer, ConfigError> {
    match config.backend {
        BackendKind::Local => build_local_server(config).await,
        BackendKind::Relace => build_relace_server(config).await,
    }
}

/// Serve MCP over stdin/stdout until the client closes the stream, then write the
/// audit records still pending.
pub async fn run_stdio(server: RepoServer) -> Result<(), std::io::Error> {
    tracing::info!(scope = %server.scope().describe(), "serving MCP over stdio");
    let trail = server.audit().trail().clone();
    let (reader, writer) = rmcp::transport::stdio_pipes();
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(reader, writer)
        .with_max_line_length(crate::rules::MAX_STDIO_MESSAGE_BYTES);
    let served = match server.serve(transport).await {
        Ok(service) => service.waiting().await.map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    trail.flush();
    served.map_err(std::io::Error::other)
}

/// Serve MCP over HTTP (streamable HTTP at `/mcp`, legacy SSE at `/sse`) on
/// `config`'s address until SIGTERM or Ctrl-C, then let calls in flight finish.
pub async fn run_http(config: &ServeConfig) -> Result<(), ConfigError> {
    let http = config
        .http
        .as_ref()
        .ok_or_else(|| ConfigError("internal: HTTP settings missing".into()))?;
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .map_err(|e| {
            ConfigError(format!(
                "cannot listen on {}: {e}; pick another --listen address",
                http.listen
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| ConfigError(format!("cannot read the bound address: {e}")))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing calls in flight");
        stop.cancel();
    });
    // A plain line on stderr, whatever the log filter, so that scripts (and tests
    // listening on port 0) learn the address.
    eprintln!("scoped-repo-mcp: listening on http://{local}/mcp (legacy SSE: http://{local}/sse)");
    let lifecycle = Arc::new(crate::http::Lifecycle::default());
    serve_http(config, listener, lifecycle, shutdown).await
}

/// Serve MCP over HTTP on `listener` with `config`'s backend, scope bound and limits,
/// keeping its books in `lifecycle`, until `shutdown` is cancelled; then let calls in
/// flight finish (for up to 30 s) and end the sessions.
pub async fn serve_http(
    config: &ServeConfig,
    listener: tokio::net::TcpListener,
    lifecycle: Arc<crate::http::Lifecycle>,
    shutdown: CancellationToken,
) -> Result<(), ConfigError> {
    let http = config
        .http
        .clone()
        .ok_or_else(|| ConfigError("internal: HTTP settings missing".into()))?;
    let (server, resolver): (RepoServer, Arc<dyn crate::http::ScopeResolver>) = match config.backend
    {
        BackendKind::Local => {
            let backend = LocalBackend::new(open_store(config)?);
            let bound = OperatorBound {
                repos: operator_repos(config, backend.store())?,
                read_only: config.read_only,
                allow_anonymous: http.allow_anonymous,
            };
            let resolver = Arc::new(Resolver::local(backend.clone(), bound));
            let backend = Arc::new(backend) as Arc<dyn Backend>;
            (
                RepoServer::per_request(backend, settings(config))
                    .with_audit(recorder(config, AuditSurface::Http))
                    .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit)),
                resolver,
            )
        }
        BackendKind::Relace => {
            let policy = RetryPolicy {
                timeout: config.request_timeout,
                ..RetryPolicy::default()
            };
            let credential = config.api_key.as_deref().unwrap_or_default();
            let client = RelaceClient::new(&config.base_url, credential, policy)
                .map_err(|e| ConfigError(e.to_string()))?;
            let operator = Arc::new(RelaceBackend::new(client)) as Arc<dyn Backend>;
            let bound = OperatorBound {
                repos: config.repos.clone(),
                read_only: config.read_only,
                allow_anonymous: http.allow_anonymous,
            };
            let resolver = Arc::new(Resolver::relace(
                &config.base_url,
                policy,
                bound,
                operator.clone(),
            ));
            (
                RepoServer::per_request(operator, settings(config))
                    .with_audit(recorder(config, AuditSurface::Http))
                    .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit)),
                resolver,
            )
        }
    };
    let trail = server.audit().trail().clone();
    let app = crate::http::router(server, resolver, http.options.clone(), lifecycle.clone());
    let served = crate::http::serve(
        listener,
        app,
        http.connections.clone(),
        lifecycle,
        shutdown,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| ConfigError(format!("the HTTP server failed: {e}")));
    trail.flush();
    served
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn settings(config: &ServeConfig) -> ServerSettings {
    ServerSettings {
        max_token_ttl: config.max_token_ttl.as_secs(),
        ..ServerSettings::default()
    }
}

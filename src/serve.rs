//! Start-up of `serve`: open the backend, learn the scope, build the server, run it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use crate::backend::{Backend, LocalBackend, TokenStatus};
use crate::cli::BackendKind;
use crate::config::{ConfigError, ServeConfig};
use crate::http::{LocalResolver, OperatorBound, RelaceResolver};
use crate::model::RepoId;
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::scope::Scope;
use crate::server::{RepoServer, ServerSettings};
use crate::store::{Limits, Store, secrets};
use tokio_util::sync::CancellationToken;

/// Open the embedded store in `config.data_dir`.
pub fn open_store(config: &ServeConfig) -> Result<Arc<Store>, ConfigError> {
    Store::open(&config.data_dir, Limits::default())
        .map(Arc::new)
        .map_err(|e| {
            ConfigError(format!(
                "cannot open the store in {}: {e}; check the path and its permissions, or pass another --data-dir",
                config.data_dir.display()
            ))
        })
}

/// The metadata key that records which directory a repo was imported from by `--import`.
pub const IMPORTED_FROM: &str = "imported_from";

/// The repo `--import DIR` serves: the one imported from `dir` before, or a new import.
pub fn import_or_reuse(store: &Store, dir: &Path) -> Result<RepoId, ConfigError> {
    let abs = dir.canonicalize().map_err(|e| {
        ConfigError(format!(
            "--import {}: {e}; give an existing directory",
            dir.display()
        ))
    })?;
    let key = abs.display().to_string();
    let rows = store.repo_rows().map_err(|e| ConfigError(e.to_string()))?;
    if let Some(row) = rows
        .iter()
        .find(|r| r.metadata.get(IMPORTED_FROM) == Some(&key))
    {
        tracing::info!(repo = %row.id, dir = %key, "serving the repo imported from this directory before");
        return Ok(row.id);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(IMPORTED_FROM.to_string(), key.clone());
    if let Some(name) = abs.file_name().and_then(|n| n.to_str()) {
        metadata.insert("name".to_string(), name.to_string());
    }
    let report = store
        .import_dir(&abs, metadata, &|_| {})
        .map_err(|e| ConfigError(format!("--import {key}: {e}")))?;
    tracing::info!(repo = %report.repo_id, files = report.files, dir = %key, "imported directory");
    Ok(report.repo_id)
}

/// The operator's repo set: `--repo` plus the `--import` directory, each checked to
/// exist in the store.
pub fn operator_repos(config: &ServeConfig, store: &Store) -> Result<Vec<RepoId>, ConfigError> {
    let mut repos = config.repos.clone();
    if let Some(dir) = &config.import {
        let id = import_or_reuse(store, dir)?;
        if !repos.contains(&id) {
            repos.push(id);
        }
    }
    for id in &repos {
        if store.repo_row(id).is_err() {
            return Err(ConfigError(format!(
                "repo {id} is not in the store at {}; `scoped-repo-mcp repo list --data-dir {}` shows the repos there",
                config.data_dir.display(),
                config.data_dir.display()
            )));
        }
    }
    Ok(repos)
}

/// The scope of a repo token given in `RELACE_API_KEY`, narrowed by the operator's
/// repos; a token that is not live, or reaches none of them, stops start-up.
fn token_scope(
    token: &str,
    status: TokenStatus,
    operator_repos: &[RepoId],
    place: &str,
    remedy: &str,
) -> Result<Scope, ConfigError> {
    let why = match status {
        TokenStatus::Live(info) => {
            let scope = Scope::from_token(
                token.to_string(),
                &info.name,
                &info.repo_ids,
                info.expires_at,
                operator_repos,
            );
            if scope.is_empty() {
                return Err(ConfigError(
                    "the repo token in RELACE_API_KEY reaches none of the repos given with --repo / SCOPED_REPO_IDS".into(),
                ));
            }
            return Ok(scope);
        }
        TokenStatus::Revoked => "has been revoked",
        TokenStatus::Expired => "has expired",
        TokenStatus::Unknown => "is not known",
    };
    Err(ConfigError(format!(
        "the repo token in RELACE_API_KEY {why} {place}; {remedy}"
    )))
}

/// Work out the session's scope from the operator's flags and the credential.
pub async fn local_scope(
    config: &ServeConfig,
    backend: &LocalBackend,
) -> Result<Scope, ConfigError> {
    let store = backend.store();
    let mut config = config.clone();
    config.repos = operator_repos(&config, store)?;
    let config = &config;
    let scope = match config.api_key.as_deref() {
        Some(token) if secrets::looks_like_repo_token(token) => {
            let status = backend
                .token_status(token)
                .await
                .map_err(|e| ConfigError(e.to_string()))?;
            let place = format!("in the store at {}", config.data_dir.display());
            token_scope(
                token,
                status,
                &config.repos,
                &place,
                "mint a new one with `scoped-repo-mcp token create`",
            )?
        }
        Some(key) if key.starts_with(secrets::ACCOUNT_KEY_PREFIX) => {
            if !store
                .account_key_live(key)
                .map_err(|e| ConfigError(e.to_string()))?
            {
                return Err(ConfigError(format!(
                    "the account key in RELACE_API_KEY is not known to the store at {}",
                    config.data_dir.display()
                )));
            }
            Scope::operator(config.repos.iter().copied())
        }
        Some(_) => {
            return Err(ConfigError(
                "RELACE_API_KEY is neither a repo token (rlcr-…) nor an account key (rlc-…); unset it or fix it".into(),
            ));
        }
        None => Scope::operator(config.repos.iter().copied()),
    };
    if scope.is_empty() {
        return Err(ConfigError(
            "no repos in scope: pass --repo ID (repeatable) or SCOPED_REPO_IDS=ID,ID, --import DIR, or set RELACE_API_KEY to a repo token; \
             `scoped-repo-mcp repo list` shows the IDs"
                .into(),
        ));
    }
    Ok(if config.read_only {
        scope.read_only()
    } else {
        scope
    })
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
    ))
}

/// Work out the scope of a session on the Relace API: a repo token's own repos (asked
/// of the API), narrowed by `--repo`; or, for an account key, the `--repo` set, each
/// checked to exist.
pub async fn relace_scope(
    config: &ServeConfig,
    backend: &RelaceBackend,
) -> Result<Scope, ConfigError> {
    let base = backend.client().base().to_string();
    let unreachable = |e: crate::relace::RelaceError| {
        ConfigError(format!("cannot start on the Relace API at {base}: {e}"))
    };
    let scope = match config.api_key.as_deref() {
        Some(token) if secrets::looks_like_repo_token(token) => {
            match backend.token_status(token).await {
                Ok(status) => {
                    let place = format!("by the Relace API at {base}");
                    token_scope(token, status, &config.repos, &place, "ask for a new one")?
                }
                Err(crate::backend::BackendError::Relace(e)) => return Err(unreachable(e)),
                Err(e) => return Err(ConfigError(e.to_string())),
            }
        }
        Some(_) => {
            for id in &config.repos {
                match backend.client().get_repo(id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(ConfigError(format!(
                            "repo {id} is not known to the Relace API at {base}; check the ID given with --repo"
                        )));
                    }
                    Err(e) => return Err(unreachable(e)),
                }
            }
            Scope::operator(config.repos.iter().copied())
        }
        None => {
            return Err(ConfigError("--backend relace needs RELACE_API_KEY".into()));
        }
    };
    if scope.is_empty() {
        return Err(ConfigError(
            "no repos in scope: pass --repo ID (repeatable) or SCOPED_REPO_IDS=ID,ID, or set RELACE_API_KEY to a repo token".into(),
        ));
    }
    Ok(if config.read_only {
        scope.read_only()
    } else {
        scope
    })
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
        default_token_ttl: ServerSettings::default().default_token_ttl,
    };
    Ok(RepoServer::new(
        Arc::new(backend) as Arc<dyn Backend>,
        scope,
        settings,
    ))
}

/// Build the server `serve` runs, on the configured backend.
pub async fn build_server(config: &ServeConfig) -> Result<RepoServer, ConfigError> {
    match config.backend {
        BackendKind::Local => build_local_server(config).await,
        BackendKind::Relace => build_relace_server(config).await,
    }
}

/// The largest JSON-RPC message accepted over stdio. It leaves room for an update at
/// the 50 MiB limit with JSON escaping; a longer line is dropped by the transport.
pub const MAX_STDIO_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// Serve MCP over stdin/stdout until the client closes the stream.
pub async fn run_stdio(server: RepoServer) -> Result<(), std::io::Error> {
    tracing::info!(scope = %server.scope().describe(), "serving MCP over stdio");
    let (reader, writer) = rmcp::transport::stdio_pipes();
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(reader, writer)
        .with_max_line_length(MAX_STDIO_MESSAGE_BYTES);
    let service = server
        .serve(transport)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
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
            let resolver = Arc::new(LocalResolver::new(backend.clone(), bound));
            let backend = Arc::new(backend) as Arc<dyn Backend>;
            (RepoServer::per_request(backend, settings(config)), resolver)
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
            let resolver = Arc::new(RelaceResolver::new(
                &config.base_url,
                policy,
                bound,
                operator.clone(),
            ));
            (
                RepoServer::per_request(operator, settings(config)),
                resolver,
            )
        }
    };
    let app = crate::http::router(server, resolver, http.options.clone(), lifecycle.clone());
    crate::http::serve(
        listener,
        app,
        http.connections.clone(),
        lifecycle,
        shutdown,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| ConfigError(format!("the HTTP server failed: {e}")))
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
        default_token_ttl: ServerSettings::default().default_token_ttl,
    }
}

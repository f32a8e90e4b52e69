//! Start-up of `serve`: open the backend, learn the scope, build the server, run it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rmcp::ServiceExt;

use crate::backend::{Backend, LocalBackend, TokenStatus};
use crate::cli::BackendKind;
use crate::config::{ConfigError, ServeConfig};
use crate::model::RepoId;
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::scope::Scope;
use crate::server::{RepoServer, ServerSettings};
use crate::store::{Limits, Store, secrets};

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

/// Work out the session's scope from the operator's flags and the credential.
pub async fn local_scope(
    config: &ServeConfig,
    backend: &LocalBackend,
) -> Result<Scope, ConfigError> {
    let store = backend.store();
    let mut config = config.clone();
    if let Some(dir) = &config.import {
        let id = import_or_reuse(store, dir)?;
        if !config.repos.contains(&id) {
            config.repos.push(id);
        }
    }
    let config = &config;
    for id in &config.repos {
        if store.repo_row(id).is_err() {
            return Err(ConfigError(format!(
                "repo {id} is not in the store at {}; `scoped-repo-mcp repo list --data-dir {}` shows the repos there",
                config.data_dir.display(),
                config.data_dir.display()
            )));
        }
    }
    let scope = match config.api_key.as_deref() {
        Some(token) if secrets::looks_like_repo_token(token) => {
            match backend
                .token_status(token)
                .await
                .map_err(|e| ConfigError(e.to_string()))?
            {
                TokenStatus::Live(info) => {
                    let scope = Scope::from_token(
                        token.to_string(),
                        &info.name,
                        &info.repo_ids,
                        info.expires_at,
                        &config.repos,
                    );
                    if scope.is_empty() {
                        return Err(ConfigError(
                            "the repo token in RELACE_API_KEY reaches none of the repos given with --repo / SCOPED_REPO_IDS".into(),
                        ));
                    }
                    scope
                }
                status => {
                    let why = match status {
                        TokenStatus::Revoked => "has been revoked",
                        TokenStatus::Expired => "has expired",
                        _ => "is not known",
                    };
                    return Err(ConfigError(format!(
                        "the repo token in RELACE_API_KEY {why} in the store at {}; mint a new one with `scoped-repo-mcp token create`",
                        config.data_dir.display()
                    )));
                }
            }
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

/// Build the server `serve` runs, on the local backend.
pub async fn build_local_server(config: &ServeConfig) -> Result<RepoServer, ConfigError> {
    let backend = LocalBackend::new(open_store(config)?);
    let scope = local_scope(config, &backend).await?;
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
                Ok(TokenStatus::Live(info)) => {
                    let scope = Scope::from_token(
                        token.to_string(),
                        &info.name,
                        &info.repo_ids,
                        info.expires_at,
                        &config.repos,
                    );
                    if scope.is_empty() {
                        return Err(ConfigError(
                            "the repo token in RELACE_API_KEY reaches none of the repos given with --repo / SCOPED_REPO_IDS".into(),
                        ));
                    }
                    scope
                }
                Ok(status) => {
                    let why = match status {
                        TokenStatus::Revoked => "has been revoked",
                        TokenStatus::Expired => "has expired",
                        _ => "is not accepted",
                    };
                    return Err(ConfigError(format!(
                        "the repo token in RELACE_API_KEY {why} by the Relace API at {base}; ask for a new one"
                    )));
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

//! Start-up of `serve`: open the backend, learn the scope, build the server, run it.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use crate::audit::{Recorder, Surface as AuditSurface, Trail};
use crate::backend::{Backend, LocalBackend};
use crate::credentials::{self, Authority, OperatorBound, Refusal, Surface, secrets};
use crate::http::Resolver;
use crate::model::RepoId;
use crate::relace::RelaceBackend;
use crate::run::config::{ConfigError, ServeBackend, ServeConfig};
use crate::run::import::{FreshImport, Planned};
use crate::run::{StartError, runtime};
use crate::scope::Scope;
use crate::server::importing::Imports;
use crate::server::{RepoServer, ServerSettings};
use crate::store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The operator's repo set: `--repo` plus the `--import` directory's repo, each checked
/// to exist in the store; and the first import of that directory, when it is one, yet
/// to run (its repo is in the set under the ID it will have).
pub fn operator_repos(
    config: &ServeConfig,
    store: &Store,
) -> Result<(Vec<RepoId>, Option<FreshImport>), ConfigError> {
    let mut repos = config.repos.clone();
    let mut fresh = None;
    if let Some(dir) = &config.import {
        let id = match super::import::plan(store, dir, config.no_ignore)? {
            Planned::Linked(id) => id,
            Planned::Fresh(f) => {
                let id = f.id;
                fresh = Some(f);
                id
            }
        };
        if !repos.contains(&id) {
            repos.push(id);
        }
    }
    for id in &repos {
        if fresh.as_ref().is_some_and(|f| f.id == *id) {
            continue;
        }
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
    Ok((repos, fresh))
}

/// A first import running on its own thread while the server answers.
pub struct BackgroundImport {
    thread: std::thread::JoinHandle<()>,
    dir: String,
}

impl BackgroundImport {
    /// Start `fresh` on its own thread, known to the server through `imports`.
    fn start(
        fresh: FreshImport,
        store: Arc<Store>,
        imports: &Imports,
    ) -> Result<Self, ConfigError> {
        let dir = fresh.dir.display().to_string();
        let name = fresh
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.clone());
        let handle = imports.begin(fresh.id, name);
        eprintln!(
            "scoped-repo-mcp: importing {dir} into repo {} in the background; tool calls on it wait for it (up to {} each), list_repos shows it as importing",
            fresh.id,
            humantime::format_duration(imports.wait())
        );
        let thread = std::thread::Builder::new()
            .name("import".into())
            .spawn(move || fresh.run(&store, &handle))
            .map_err(|e| ConfigError(format!("cannot start the import of {dir}: {e}")))?;
        Ok(Self { thread, dir })
    }

    fn running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Let the import finish (the client left, but the work is worth keeping).
    async fn finish(self) {
        if self.running() {
            eprintln!(
                "scoped-repo-mcp: the client left; finishing the import of {} so the next start serves it (Ctrl-C abandons it)",
                self.dir
            );
        }
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// The start-up refusal of the credential in `RELACE_API_KEY`, with where it was
/// checked and what to do.
fn credential_refused(refusal: Refusal, place: &str, remedy: &dyn Fn() -> String) -> ConfigError {
    ConfigError(match refusal {
        Refusal::NoRepos => {
            "the repo token in RELACE_API_KEY reaches none of the repos given with --repo / SCOPED_REPO_IDS".into()
        }
        Refusal::Unrecognized => {
            "RELACE_API_KEY is neither a repo token (rlcr-…) nor an account key (rlc-…); unset it or fix it".into()
        }
        other => format!("RELACE_API_KEY: {other} ({place}); {}", remedy()),
    })
}

/// The scope a stdio session starts with, by the front door's one rule.
async fn stdio_scope(
    authority: &dyn Authority,
    config: &ServeConfig,
    repos: Vec<RepoId>,
    place: &str,
    remedy: &dyn Fn() -> String,
) -> Result<Scope, ConfigError> {
    let bound = OperatorBound {
        repos,
        read_only: config.read_only,
        allow_anonymous: false,
        resource: None,
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

/// Work out the session's scope from the operator's repos and the credential.
async fn local_scope(
    config: &ServeConfig,
    backend: &LocalBackend,
    repos: Vec<RepoId>,
) -> Result<Scope, ConfigError> {
    let place = format!("in the store at {}", config.data_dir.display());
    stdio_scope(backend, config, repos, &place, &|| {
        "mint a new one with `scoped-repo-mcp token create`".to_string()
    })
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
async fn relace_scope(config: &ServeConfig, backend: &RelaceBackend) -> Result<Scope, ConfigError> {
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
    let remedy = || {
        // The usual slip: a token minted by this machine's own store, sent to the
        // hosted service because RELACE_API_KEY picks the relace backend by default.
        if local_store_knows(config) {
            format!(
                "it is a token of the embedded store at {}: add --backend local to serve from there",
                config.data_dir.display()
            )
        } else {
            "ask for a new one".to_string()
        }
    };
    stdio_scope(backend, config, config.repos.clone(), &place, &remedy).await
}

/// Whether the embedded store in the data directory (when there is one; none is made)
/// knows the repo token in `RELACE_API_KEY`, live or not.
fn local_store_knows(config: &ServeConfig) -> bool {
    let Some(token) = config
        .api_key
        .as_deref()
        .filter(|k| secrets::looks_like_repo_token(k))
    else {
        return false;
    };
    if !config.data_dir.join("store.db").exists() {
        return false;
    }
    Store::open(&config.data_dir, crate::store::Limits::default())
        .and_then(|store| store.token(token))
        .is_ok_and(|(state, _)| state != crate::store::TokenState::Unknown)
}

/// Build the server `serve` runs over stdio, on the configured backend, with the first
/// import of `--import`'s directory started in the background when it is one.
pub async fn build_server(
    config: &ServeConfig,
) -> Result<(RepoServer, Option<BackgroundImport>), ConfigError> {
    let imports = Imports::new(config.import_wait);
    let (backend, scope, background): (Arc<dyn Backend>, Scope, _) = match config.open_backend()? {
        ServeBackend::Local(backend) => {
            let (repos, fresh) = operator_repos(config, backend.store())?;
            let scope = local_scope(config, &backend, repos).await?;
            let fresh_id = fresh.as_ref().map(|f| f.id);
            warm_line_indexes(
                backend.store().clone(),
                scope
                    .repos()
                    .copied()
                    .filter(|id| Some(*id) != fresh_id)
                    .collect(),
            );
            let background = match fresh {
                Some(f) => Some(BackgroundImport::start(
                    f,
                    backend.store().clone(),
                    &imports,
                )?),
                None => None,
            };
            (Arc::new(backend), scope, background)
        }
        ServeBackend::Relace { backend, .. } => {
            let scope = relace_scope(config, &backend).await?;
            tracing::info!(base = %config.base_url, "routing tools through the Relace API");
            (Arc::new(backend), scope, None)
        }
    };
    let server = RepoServer::new(backend, scope, settings(config))
        .with_audit(recorder(config, AuditSurface::Stdio))
        .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit))
        .with_imports(imports);
    Ok((server, background))
}

/// Run `serve` with `config`: over HTTP when it names an address, else over stdio.
/// Either stops when its client leaves (stdio) or on Ctrl-C or SIGTERM, then stores
/// the indexes being written, for at most `--stop-timeout`.
pub fn run(config: &ServeConfig) -> Result<(), StartError> {
    let stop = CancellationToken::new();
    super::stop_on_signals(stop.clone());
    let rt = runtime()?;
    let served = rt.block_on(serve_until(config, stop.clone()));
    if stop.is_cancelled() {
        // A read of stdin may be pending on a blocking thread (stdin that is not a pipe),
        // which would hold a plain drop of the runtime until the next line comes; the
        // blocking work of calls in flight gets this long to land.
        rt.shutdown_timeout(Duration::from_secs(2));
    } else {
        drop(rt);
    }
    super::finish_index_writes(config.stop_timeout);
    served
}

async fn serve_until(config: &ServeConfig, stop: CancellationToken) -> Result<(), StartError> {
    if config.http.is_some() {
        run_http(config, stop).await?;
        return Ok(());
    }
    let (server, background) = build_server(config).await?;
    let served = run_stdio(server, stop.clone()).await;
    if let Some(background) = background {
        if stop.is_cancelled() && background.running() {
            // Stopped by Ctrl-C or SIGTERM mid-import: leave nothing of it behind.
            super::abandon_and_exit(&config.data_dir);
        }
        background.finish().await;
    }
    served?;
    Ok(())
}

/// Serve MCP over stdin/stdout until the client closes the stream or `stop` is
/// cancelled, then write the audit records still pending.
pub async fn run_stdio(server: RepoServer, stop: CancellationToken) -> Result<(), std::io::Error> {
    tracing::info!(scope = %server.scope().describe(), "serving MCP over stdio");
    let trail = server.audit().trail().clone();
    let (reader, writer) = rmcp::transport::stdio_pipes();
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(reader, writer)
        .with_max_line_length(crate::rules::MAX_STDIO_MESSAGE_BYTES);
    let session = async {
        match server.serve(transport).await {
            Ok(service) => service.waiting().await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let served = tokio::select! {
        served = session => served,
        () = stop.cancelled() => Ok(()),
    };
    trail.flush();
    served.map_err(std::io::Error::other)
}

/// Serve MCP over HTTP (streamable HTTP at `/mcp`, legacy SSE at `/sse`) on
/// `config`'s address until `stop` is cancelled (Ctrl-C or SIGTERM), then let calls in
/// flight finish.
pub async fn run_http(config: &ServeConfig, stop: CancellationToken) -> Result<(), ConfigError> {
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
    // A plain line on stderr, whatever the log filter, so that scripts (and tests
    // listening on port 0) learn the address.
    eprintln!("scoped-repo-mcp: listening on http://{local}/mcp (legacy SSE: http://{local}/sse)");
    let lifecycle = Arc::new(crate::http::Lifecycle::default());
    serve_http(config, listener, lifecycle, stop).await
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
    let mut options = http.options.clone();
    options.resource = match &http.public_url {
        Some(url) => crate::http::resource::ProtectedResource::new(url),
        None => {
            let local = listener
                .local_addr()
                .map_err(|e| ConfigError(format!("the HTTP listener has no address: {e}")))?;
            crate::http::resource::ProtectedResource::from_listener(local, &options.allow.hosts)
        }
    };
    let issuer = options.resource.base().to_string();
    if http.oauth {
        options.resource.authorization_servers.push(issuer.clone());
    }
    let mut local_store: Option<(Arc<crate::store::Store>, Vec<RepoId>)> = None;
    let imports = Imports::new(config.import_wait);
    let mut background = None;
    let (backend, resolver): (Arc<dyn Backend>, Arc<dyn crate::http::ScopeResolver>) =
        match config.open_backend()? {
            ServeBackend::Local(backend) => {
                let (repos, fresh) = operator_repos(config, backend.store())?;
                let bound = OperatorBound {
                    repos,
                    read_only: config.read_only,
                    allow_anonymous: http.allow_anonymous,
                    resource: Some(options.resource.resource()),
                };
                local_store = Some((backend.store().clone(), bound.repos.clone()));
                if let Some(f) = fresh {
                    background = Some(BackgroundImport::start(
                        f,
                        backend.store().clone(),
                        &imports,
                    )?);
                }
                let resolver = Arc::new(Resolver::local(backend.clone(), bound));
                (Arc::new(backend), resolver)
            }
            ServeBackend::Relace { backend, policy } => {
                let operator = Arc::new(backend) as Arc<dyn Backend>;
                let bound = OperatorBound {
                    repos: config.repos.clone(),
                    read_only: config.read_only,
                    allow_anonymous: http.allow_anonymous,
                    resource: None,
                };
                let resolver = Arc::new(Resolver::relace(
                    &config.base_url,
                    policy,
                    bound,
                    operator.clone(),
                    &config.data_dir,
                ));
                (operator, resolver)
            }
        };
    let server = RepoServer::per_request(backend, settings(config))
        .with_audit(recorder(config, AuditSurface::Http))
        .with_rate_limit(crate::rate::RateLimiter::new(config.rate_limit))
        .with_imports(imports);
    let trail = server.audit().trail().clone();
    let allow = options.allow.clone();
    let mut app = crate::http::router(server, resolver, options.clone(), lifecycle.clone());
    if http.oauth
        && let Some((store, repos)) = local_store
    {
        let oauth = crate::oauth::OAuthServer::new(
            crate::oauth::OAuthConfig {
                issuer: issuer.clone(),
                resource: options.resource.resource(),
                repos,
                read_only: config.read_only,
                max_ttl: config.max_token_ttl,
                allow_private_client_metadata: http.oauth_allow_private_client_metadata,
            },
            store.clone(),
            trail.clone(),
        );
        let link = crate::oauth::OAuthServer::login_link(&store, &issuer)
            .map_err(|e| ConfigError(format!("cannot make a sign-in link: {e}")))?;
        // On stderr, whatever the log filter: the person at this terminal opens it.
        eprintln!("scoped-repo-mcp: OAuth sign-in for the consent page (once, 15 minutes): {link}");
        app = app.merge(crate::oauth::router(oauth, allow));
    }
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
    if background.as_ref().is_some_and(BackgroundImport::running) {
        // Stopped by Ctrl-C or SIGTERM mid-import: leave nothing of it behind.
        super::abandon_and_exit(&config.data_dir);
    }
    served
}

fn settings(config: &ServeConfig) -> ServerSettings {
    ServerSettings {
        max_token_ttl: config.max_token_ttl.as_secs(),
        ..ServerSettings::default()
    }
}

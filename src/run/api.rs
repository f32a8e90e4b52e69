//! Start-up of `api`: open the store, set up git's smart HTTP and the audit trail,
//! listen, and serve the REST API until Ctrl-C or SIGTERM.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiSettings};
use crate::audit::{Surface, Trail};
use crate::run::config::ApiConfig;
use crate::run::{StartError, open_store, runtime};

/// Run `api` with `config` until Ctrl-C or SIGTERM, then write the audit records
/// still pending.
pub fn run(config: &ApiConfig) -> Result<(), StartError> {
    let dir = &config.data_dir;
    let store = open_store(dir, config.limits)?;
    super::say_if_new(&store);
    store.set_index_memory(config.index_memory);
    store.set_ranked_wait(config.ranked_wait);
    let exe = std::env::current_exe().map_err(|e| {
        StartError::context(
            "cannot find this program's own path, which git's push hook runs",
            e,
        )
    })?;
    let git = api::git::GitSupport::find(dir, exe)?;
    let trail = Trail::open(dir, config.audit_retention, Surface::Api);
    let settings = ApiSettings {
        max_token_ttl: config.max_token_ttl,
        audit: trail.clone(),
        git: Some(Arc::new(git)),
        allowed_git_hosts: config.allowed_git_hosts.clone(),
        allow: config.allow.clone(),
        max_concurrent_per_token: config.max_concurrent_per_token,
        rate_limit: config.rate_limit,
    };
    let shutdown = CancellationToken::new();
    super::stop_on_signals(shutdown.clone());
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| {
                StartError::context(
                    format!(
                        "cannot listen on {}; pass another --listen ADDR:PORT (port 0 picks a free one)",
                        config.listen
                    ),
                    e,
                )
            })?;
        let addr = listener.local_addr()?;
        // The bound address on stdout, so scripts and tests can use port 0.
        println!("listening on http://{addr}/v1");
        tracing::info!(%addr, data_dir = %dir.display(), "serving the Relace-compatible API");
        let served = api::serve_until(
            listener,
            Arc::new(store),
            settings,
            config.connections.clone(),
            shutdown,
        )
        .await;
        // The records of the last requests outlive the process.
        trail.flush();
        served?;
        tracing::info!("API server stopped");
        Ok::<(), StartError>(())
    })?;
    super::finish_index_writes(config.stop_timeout);
    Ok(())
}

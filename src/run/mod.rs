//! Start-up: the command line as typed, its validation into settings that build the
//! backend, and the start of each command (`serve`, `api`, the administration
//! commands).

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod git_env;
pub mod import;
pub mod serve;

use crate::api::git::GitSetupError;
use crate::store::StoreError;
use admin::AdminError;
use config::ConfigError;

/// Why a command could not start, or stopped: said for the operator, with the cause
/// beneath it as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An administration command failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// git's smart HTTP cannot be served.
    #[error(transparent)]
    GitSetup(#[from] GitSetupError),
    /// Reading, writing or serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What could not be done, and why.
    #[error("{what}")]
    Context {
        /// What could not be done.
        what: String,
        /// Why.
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StartError {
    /// `what` could not be done because of `cause`.
    pub fn context(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Context {
            what: what.into(),
            cause: cause.into(),
        }
    }
}

/// The embedded store in `dir` under `limits`, for `api` and the administration
/// commands.
fn open_store(
    dir: &std::path::Path,
    limits: crate::store::Limits,
) -> Result<crate::store::Store, StartError> {
    crate::store::Store::open(dir, limits).map_err(|e: StoreError| {
        StartError::context(format!("cannot open the store in {}", dir.display()), e)
    })
}

/// A server that made a new, empty store says so, with the path: an MCP client does
/// not pass the shell's environment, so a server it starts may look in another data
/// directory than the one meant, and would otherwise serve an empty store in silence.
pub(crate) fn say_if_new(store: &crate::store::Store) {
    if store.is_new() {
        tracing::warn!(
            dir = %store.root().display(),
            "made a new, empty store at {}; if you meant an existing one, pass its --data-dir (or SCOPED_REPO_DATA_DIR in the client's configuration)",
            store.root().display()
        );
    }
}

/// The multi-threaded runtime the servers run on.
fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::context("cannot start the async runtime", e))
}

/// Resolves on Ctrl-C or SIGTERM: when both servers begin their graceful stop.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// From now on, Ctrl-C or SIGTERM ends the process after removing what it was making in
/// the store at `data_dir` (an import's scratch directory, a fetch's quarantine), so an
/// interrupted import leaves nothing behind; status 130. For commands that do not stop
/// gracefully on their own.
pub fn abandon_on_signal(data_dir: std::path::PathBuf) {
    on_signals("interrupt", async move {
        shutdown_signal().await;
        abandon_and_exit(&data_dir);
    });
}

/// From now on, the first Ctrl-C or SIGTERM cancels `stop`, a server's graceful stop
/// (calls in flight finish, an index being stored is let become whole within
/// `--stop-timeout`); a second ends the process at once with status 130, removing the
/// partial index files it was writing. The watch runs on a thread of its own, so that it
/// still hears the second signal after the server's runtime is gone.
pub fn stop_on_signals(stop: tokio_util::sync::CancellationToken) {
    on_signals("stop", async move {
        shutdown_signal().await;
        tracing::info!(
            "stopping: letting calls in flight and an index being stored finish (Ctrl-C again stops at once)"
        );
        stop.cancel();
        shutdown_signal().await;
        crate::store::finish_index_writes(std::time::Duration::ZERO);
        eprintln!(
            "scoped-repo-mcp: interrupted again; stopped at once, the index being stored removed"
        );
        std::process::exit(130)
    });
}

/// Run `watch` on a thread of its own with a small runtime for its signals.
fn on_signals(name: &str, watch: impl std::future::Future<Output = ()> + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(watch);
        });
    if let Err(e) = spawned {
        tracing::warn!(cause = %e, "no thread to watch for Ctrl-C and SIGTERM; they end the process at once");
    }
}

/// Remove what this process was making in the store at `data_dir`, say so, and exit
/// with status 130 (interrupted).
pub fn abandon_and_exit(data_dir: &std::path::Path) -> ! {
    let _held = crate::store::abandon_own_work(data_dir);
    eprintln!(
        "scoped-repo-mcp: interrupted; the import under way was abandoned and its partial files removed"
    );
    std::process::exit(130)
}

/// git's pre-receive hook inside a push through `api`: the ref updates on stdin, a
/// refusal to stderr (git relays it to the pusher). `false`: the push is refused.
pub fn git_pre_receive() -> Result<bool, StartError> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
        .map_err(|e| StartError::context("cannot read the pushed ref updates", e))?;
    Ok(crate::api::git::pre_receive(&input, &mut std::io::stderr()))
}

/// As a server stops: let the search indexes being stored become whole, for the next
/// process to load rather than build, for at most `within` (`--stop-timeout`); past it
/// their partial files are removed.
pub(crate) fn finish_index_writes(within: std::time::Duration) {
    if !crate::store::finish_index_writes(within) {
        tracing::warn!(
            "a search index was still being stored at --stop-timeout; its partial file was removed, and the next process builds it again"
        );
    }
}

//! The `scoped-repo-mcp` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scoped_repo_mcp::api;
use scoped_repo_mcp::audit::{Surface, Trail};
use scoped_repo_mcp::run::cli::{Cli, Command};
use scoped_repo_mcp::run::config::{
    ServeConfig, allow_lists, api_max_token_ttl, audit_retention, connection_limits, data_dir,
    index_memory, max_concurrent_per_token, rate_limit,
};
use scoped_repo_mcp::run::{admin, serve};
use scoped_repo_mcp::store::{Limits, Store};

/// Two settings of glibc's allocator, for a server that runs for weeks (an operator's
/// own `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` wins over each):
/// - Arenas: glibc gives each thread that allocates an arena of its own, up to eight per
///   core, and memory freed in one arena is reused only from it: a server whose blocking
///   threads come and go spreads its heap over all of them and keeps the free parts of
///   each (a 30-minute soak grew a stdio server by 29% that way). As many arenas as
///   cores keep threads from contending, and what one frees the others reuse.
/// - Large blocks: glibc serves blocks of 128 KiB or more with `mmap` and gives them
///   back on free, but once such a block is freed it raises that threshold (up to
///   32 MiB), after which large transient buffers (file texts, answers) are carved from
///   the heap between long-lived blocks and leave holes there. In a soak the live heap
///   stayed flat while the free space inside the heap grew by megabytes. A fixed
///   threshold keeps large transient blocks out of the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY (both calls): first thing in `main`, before any other thread exists.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_malloc();
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_) | Command::Api(_)) {
        "scoped_repo_mcp=info,warn"
    } else {
        "warn"
    };
    // Logs go to stderr: under the stdio transport stdout is the protocol channel.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
                // rmcp logs whole messages at debug, and a minted token travels in one:
                // held at info whatever RUST_LOG asks, so no secret reaches the log.
                .add_directive("rmcp=info".parse().expect("a valid directive")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ctrl-C or SIGTERM.
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::from_args(args, cli.data_dir.as_deref())?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                if config.http.is_some() {
                    serve::run_http(&config).await?;
                } else {
                    let server = serve::build_server(&config).await?;
                    serve::run_stdio(server).await?;
                }
                anyhow::Ok(())
            })
        }
        Command::GitPreReceive => {
            // Run by git inside a push: the ref updates on stdin, the refusal to stderr
            // (git relays it to the pusher).
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
                .context("cannot read the pushed ref updates")?;
            if api::git::pre_receive(&input, &mut std::io::stderr()) {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Api(args) => {
            let dir = data_dir(cli.data_dir.as_deref())?;
            let retention = audit_retention(&args.audit_retention)?;
            let limits = connection_limits(&args.connections)?;
            let index_bytes = index_memory(args.index_memory.as_deref())?;
            let store = Store::open(&dir, Limits::default())
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            store.set_index_memory(index_bytes);
            let exe = std::env::current_exe()
                .context("cannot find this program's own path, which git's push hook runs")?;
            let git = api::git::GitSupport::find(&dir, exe)?;
            let trail = Trail::open(&dir, retention, Surface::Api);
            let settings = api::ApiSettings {
                max_token_ttl: api_max_token_ttl(args.max_token_ttl.as_deref())?,
                audit: trail.clone(),
                git: Some(std::sync::Arc::new(git)),
                allowed_git_hosts: scoped_repo_mcp::git_source::AllowedHosts::parse(
                    &args.allowed_git_hosts,
                )
                .map_err(anyhow::Error::msg)?,
                allow: allow_lists(&args.origins, &args.listen)?,
                max_concurrent_per_token: max_concurrent_per_token(&args.connections)?,
                rate_limit: rate_limit(args.rate_limit.as_deref())?,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&args.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen on {}; pass another --listen ADDR:PORT (port 0 picks a free one)",
                            args.listen
                        )
                    })?;
                let addr = listener.local_addr()?;
                // The bound address on stdout, so scripts and tests can use port 0.
                println!("listening on http://{addr}/v1");
                tracing::info!(%addr, data_dir = %dir.display(), "serving the Relace-compatible API");
                let shutdown = tokio_util::sync::CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    stop.cancel();
                });
                let served = api::serve_until(
                    listener,
                    std::sync::Arc::new(store),
                    settings,
                    limits,
                    shutdown,
                )
                .await;
                // The records of the last requests outlive the process.
                trail.flush();
                served?;
                tracing::info!("API server stopped");
                anyhow::Ok(())
            })
        }
        command => {
            let dir = data_dir(cli.data_dir.as_deref())?;
            let store = Store::open(&dir, Limits::default())
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
            match command {
                Command::Repo { command } => admin::repo(&store, command, &mut out, &mut err)?,
                Command::Token { command } => admin::token(&store, command, &mut out, &mut err)?,
                Command::Key { command } => admin::key(&store, command, &mut out, &mut err)?,
                Command::Audit(args) => admin::audit(&store, args, &mut out)?,
                Command::Serve(_) | Command::Api(_) | Command::GitPreReceive => {
                    unreachable!("handled above")
                }
            }
            Ok(())
        }
    }
}

//! The `scoped-repo-mcp` binary: parse the command line, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use scoped_repo_mcp::run::cli::{Cli, Command};
use scoped_repo_mcp::run::config::{self, ApiConfig, ServeConfig};
use scoped_repo_mcp::run::{self, admin};

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
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir.as_deref();
    let limits = config::store_limits(&cli.limits)?;
    match &cli.command {
        Command::Serve(args) => run::serve::run(&ServeConfig {
            limits,
            ..ServeConfig::from_args(args, data_dir)?
        })?,
        Command::Api(args) => run::api::run(&ApiConfig {
            limits,
            ..ApiConfig::from_args(args, data_dir)?
        })?,
        // Needs no store: the settings are made from the flags alone.
        Command::GitEnv(args) => run::git_env::run(args)?,
        Command::GitPreReceive => {
            // Run by git inside a push; a refused push exits with 1.
            if !run::git_pre_receive()? {
                std::process::exit(1)
            }
        }
        command => admin::run(data_dir, limits, command)?,
    }
    Ok(())
}

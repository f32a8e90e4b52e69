//! The command line as typed: clap definitions only. [`crate::run::config`] validates
//! these into settings the rest of the program trusts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// An MCP server that gives coding agents scoped tools over code repositories.
#[derive(Debug, Parser)]
#[command(name = "scoped-repo-mcp", version, about, long_about = None)]
pub struct Cli {
    /// Where the embedded store keeps its repos and database
    /// [default: $XDG_DATA_HOME/scoped-repo-mcp or ~/.local/share/scoped-repo-mcp].
    #[arg(long, env = "SCOPED_REPO_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The embedded store's size limits.
    #[command(flatten)]
    pub limits: StoreLimitArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of one value does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the MCP server.
    Serve(ServeArgs),
    /// Run the Relace-compatible REST API (`/v1/...`) over the embedded store.
    Api(ApiArgs),
    /// Administer the embedded store's repos.
    Repo {
        /// The repo command.
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Administer the embedded store's repo tokens.
    Token {
        /// The token command.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Administer the embedded store's account keys.
    Key {
        /// The key command.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Read the audit trail: who called what, on which repo, with what outcome.
    Audit(AuditArgs),
    /// Print a one-time link that signs a browser in to the consent page of
    /// `serve --transport http --oauth` on this data directory (good once, 15 minutes).
    Login(LoginArgs),
    /// Print git settings (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n) that
    /// send git's requests for https://api.relace.run, credential in the URL as the
    /// official SDKs' git helpers make them, to an `api` server instead.
    #[command(name = "git-env")]
    GitEnv(GitEnvArgs),
    /// git's pre-receive hook for pushes through `api` (run by git, not by people).
    #[command(name = "git-pre-receive", hide = true)]
    GitPreReceive,
}

/// The embedded store's size limits, for every command that writes to it (`serve`,
/// `api`, `repo create`).
#[derive(Debug, Args)]
pub struct StoreLimitArgs {
    /// Largest file a repo takes, text or binary, however it arrives (an update, a
    /// push, a git source, an import), e.g. 10MiB, 64MiB [default: 10MiB].
    #[arg(
        long,
        env = "SCOPED_REPO_MAX_FILE_SIZE",
        value_name = "SIZE",
        global = true
    )]
    pub max_file_size: Option<String>,
    /// The per-repo quota: most disk a repo's git objects (its whole history) may
    /// take, e.g. 4GiB, 500MiB; what would pass it is refused [default: 4GiB].
    #[arg(
        long,
        env = "SCOPED_REPO_MAX_REPO_SIZE",
        value_name = "SIZE",
        global = true
    )]
    pub max_repo_size: Option<String>,
}

/// Flags of `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's public base URL (its --public-url, or http://LISTEN).
    #[arg(
        long,
        env = "SCOPED_REPO_PUBLIC_URL",
        default_value = "http://127.0.0.1:8765"
    )]
    pub url: String,
}

/// Transports `serve` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// JSON-RPC over standard input and output.
    Stdio,
    /// Streamable HTTP at /mcp.
    Http,
}

/// Backends `serve` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The embedded store in --data-dir.
    Local,
    /// The Relace Repos API at RELACE_BASE_URL.
    Relace,
}

/// Limits on an HTTP server's connections (`serve --transport http` and `api`).
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// HTTP: how long a client may take to send a request's headers (e.g. 10s); the clock
    /// also runs while a keep-alive connection waits for its next request.
    #[arg(long, env = "SCOPED_REPO_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// HTTP: close a connection when no byte has moved either way for this long while the
    /// server is not working on one of its requests (e.g. a stalled upload).
    #[arg(long, env = "SCOPED_REPO_IDLE_TIMEOUT", default_value = "60s")]
    pub idle_timeout: String,
    /// HTTP: connections open at once; more get a quick 503 with Retry-After and are closed.
    #[arg(long, env = "SCOPED_REPO_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// HTTP: requests in flight at once per credential (MCP calls, REST requests, git
    /// fetches and pushes); more are answered 429 with Retry-After.
    #[arg(
        long,
        env = "SCOPED_REPO_MAX_CONCURRENT_PER_TOKEN",
        default_value_t = 16
    )]
    pub max_concurrent_per_token: usize,
    /// HTTP: the longest a request's body may take to arrive, from its headers on (e.g.
    /// 2m); past it the request is answered 408 and its connection closed.
    #[arg(long, env = "SCOPED_REPO_BODY_TIMEOUT", default_value = "2m")]
    pub body_timeout: String,
}

/// The Host and Origin allow lists of an HTTP server (`serve --transport http` and
/// `api`, git routes included).
#[derive(Debug, Args)]
pub struct OriginArgs {
    /// HTTP: a Host name clients use (repeatable); default: localhost, 127.0.0.1, ::1.
    /// Required when listening on an address that is not loopback.
    #[arg(
        long = "allowed-host",
        env = "SCOPED_REPO_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,
    /// HTTP: a browser Origin allowed to call (repeatable, `scheme://host:port`, `:*` for any
    /// port); default: http://localhost:*, http://127.0.0.1:*, http://[::1]:*. Requests
    /// without an Origin (git, SDKs, MCP clients) pass.
    #[arg(
        long = "allowed-origin",
        env = "SCOPED_REPO_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The MCP transport.
    #[arg(long, env = "SCOPED_REPO_TRANSPORT", value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// Address for --transport http (loopback by default; port 0 picks a free port).
    #[arg(long, env = "SCOPED_REPO_LISTEN", default_value = "127.0.0.1:8765")]
    pub listen: String,
    /// HTTP: let requests without a bearer token use exactly the --repo set (loopback only).
    #[arg(long, env = "SCOPED_REPO_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// HTTP: the Host and Origin allow lists.
    #[command(flatten)]
    pub origins: OriginArgs,
    /// HTTP: the URL clients reach this server at, when it differs from --listen (behind
    /// a proxy, or listening on 0.0.0.0), e.g. https://mcp.example.com. It names the MCP
    /// endpoint (`<URL>/mcp`) in the OAuth resource metadata and in every 401's
    /// challenge, and its host is accepted in `Host` headers.
    #[arg(long, env = "SCOPED_REPO_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// HTTP: run an OAuth 2.1 authorization server beside /mcp, so that MCP clients can
    /// sign in: a person consents in a browser page and chooses repos, paths, read-only
    /// and lifetime; the client gets one of the store's repo tokens. Local backend only.
    #[arg(long, env = "SCOPED_REPO_OAUTH")]
    pub oauth: bool,
    /// With --oauth: client metadata documents (client ids that are URLs) may be fetched
    /// from private and loopback addresses, and over plain http there.
    #[arg(long, requires = "oauth")]
    pub oauth_allow_private_client_metadata: bool,
    /// HTTP: MCP sessions open at once per token (streamable HTTP and legacy SSE
    /// together; anonymous sessions share one count); more are answered 429.
    #[arg(long, env = "SCOPED_REPO_MAX_SESSIONS_PER_TOKEN", default_value_t = 64)]
    pub max_sessions_per_token: usize,
    /// HTTP: end a streamable HTTP session after this long without a request (e.g. 5m).
    #[arg(long, env = "SCOPED_REPO_SESSION_IDLE_TIMEOUT", default_value = "5m")]
    pub session_idle_timeout: String,
    /// HTTP connection limits.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Where repos live [default: relace when RELACE_API_KEY is set, else local].
    #[arg(long, env = "SCOPED_REPO_BACKEND", value_enum)]
    pub backend: Option<BackendKind>,
    /// A repo the session may use (repeatable, or comma separated).
    #[arg(
        long = "repo",
        env = "SCOPED_REPO_IDS",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub repos: Vec<String>,
    /// Serve this directory: import it into the store on first use and link the repo to
    /// the directory's absolute path (in the store's own table, which no token can
    /// write), reuse that repo afterwards, and add it to the scope. A git work tree is
    /// imported with the history of its checked-out branch (committed files only), and
    /// its new commits are merged into the repo's main at later start-ups.
    #[arg(long = "import", env = "SCOPED_REPO_IMPORT", value_name = "DIR")]
    pub import: Option<PathBuf>,
    /// With --import, on the first import: take every file, without reading
    /// `.gitignore`, `.ignore` or git's exclude files.
    #[arg(long, requires = "import")]
    pub no_ignore: bool,
    /// With --import, on the first import (which runs in the background): how long a
    /// tool call on the repo waits for the import before it answers how far it has got
    /// (e.g. 30s, 2m; at most 10m).
    #[arg(
        long,
        env = "SCOPED_REPO_IMPORT_WAIT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub import_wait: String,
    /// On stop (stdin closed, SIGTERM, Ctrl-C): how long to wait for a search index
    /// being stored to be whole (e.g. 60s, 0s); past it, the partial file is removed.
    #[arg(
        long,
        env = "SCOPED_REPO_STOP_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub stop_timeout: String,
    /// How long a ranked question waits for its index being built (in any process) before
    /// it is answered partially from line search (e.g. 5s, 0s).
    #[arg(
        long,
        env = "SCOPED_REPO_RANKED_WAIT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub ranked_wait: String,
    /// Offer only the read tools (no update, no token minting or revoking).
    #[arg(long, env = "SCOPED_REPO_READ_ONLY")]
    pub read_only: bool,
    /// The longest lifetime of a token minted through create_scoped_token (e.g. 30m, 1h, 7d).
    #[arg(long, env = "SCOPED_REPO_MAX_TOKEN_TTL", default_value = "24h")]
    pub max_token_ttl: String,
    /// The credential: an account key (rlc-…) or a repo token (rlcr-…). Prefer the
    /// RELACE_API_KEY environment variable: a value given on the command line is visible
    /// to every user of the machine in `ps`.
    #[arg(long, env = "RELACE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The Relace API's base URL.
    #[arg(
        long,
        env = "RELACE_BASE_URL",
        default_value = "https://api.relace.run/v1"
    )]
    pub base_url: String,
    /// With --backend relace: how long one request to the API may take (e.g. 30s, 2m).
    #[arg(long, env = "SCOPED_REPO_REQUEST_TIMEOUT", default_value = "60s")]
    pub request_timeout: String,
    /// How long audit records are kept in the store's database (e.g. 7d, 90d); older
    /// ones are deleted at start-up and about hourly. `0`: keep no audit trail.
    #[arg(long, env = "SCOPED_REPO_AUDIT_RETENTION", default_value = "30d")]
    pub audit_retention: String,
    /// Heap the search indexes of all repos may hold, e.g. 2GiB, 512MiB [default: a
    /// quarter of the machine's memory]; past it the least recently used repo's indexes
    /// are dropped from memory (their files on disk stay).
    #[arg(long, env = "SCOPED_REPO_INDEX_MEMORY", value_name = "SIZE")]
    pub index_memory: Option<String>,
    /// Calls each credential may make, e.g. `120/m` (also `/s`, `/h`), optionally with
    /// a burst: `120/m,burst=20` (default burst: one unit's worth). Counts MCP tool
    /// calls, REST requests and git fetches and pushes; a token minted with its own
    /// rate gets the stricter of the two. Per process. Unset: no limit but the tokens'
    /// own.
    #[arg(long, env = "SCOPED_REPO_RATE_LIMIT", value_name = "RATE")]
    pub rate_limit: Option<String>,
}

/// Flags of `api`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on
    /// stdout as `listening on http://ADDR/v1`.
    #[arg(long, env = "SCOPED_REPO_API_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: String,
    /// On stop (SIGTERM, Ctrl-C): how long to wait for a search index being stored to
    /// be whole (e.g. 60s, 0s); past it, the partial file is removed.
    #[arg(
        long,
        env = "SCOPED_REPO_STOP_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub stop_timeout: String,
    /// How long a ranked question waits for its index being built (in any process) before
    /// it is answered partially from line search (e.g. 5s, 0s).
    #[arg(
        long,
        env = "SCOPED_REPO_RANKED_WAIT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub ranked_wait: String,
    /// The longest lifetime of a token minted through POST /v1/repo_token (e.g. 2h, 7d).
    /// Unset: no cap, and a token asked for without ttl_seconds never expires, as on the
    /// hosted service. Set: every token must ask for a ttl_seconds within it.
    #[arg(long, env = "SCOPED_REPO_API_MAX_TOKEN_TTL", value_name = "DURATION")]
    pub max_token_ttl: Option<String>,
    /// How long audit records are kept in the store's database (e.g. 7d, 90d); older
    /// ones are deleted at start-up and about hourly. `0`: keep no audit trail.
    #[arg(long, env = "SCOPED_REPO_AUDIT_RETENTION", default_value = "30d")]
    pub audit_retention: String,
    /// A host and port that git sources (`source: {type: "git", url}`) may fetch from
    /// (repeatable, or comma separated): `HOST` or `HOST:PORT`, the host a name or IP
    /// address matched exactly; without a port only ports 443 and 80. None by default:
    /// every git source is then refused.
    #[arg(
        long = "allowed-git-host",
        env = "SCOPED_REPO_ALLOWED_GIT_HOSTS",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub allowed_git_hosts: Vec<String>,
    /// Heap the search indexes of all repos may hold, e.g. 2GiB, 512MiB [default: a
    /// quarter of the machine's memory]; past it the least recently used repo's indexes
    /// are dropped from memory (their files on disk stay).
    #[arg(long, env = "SCOPED_REPO_INDEX_MEMORY", value_name = "SIZE")]
    pub index_memory: Option<String>,
    /// Calls each credential may make, e.g. `120/m` (also `/s`, `/h`), optionally with
    /// a burst: `120/m,burst=20` (default burst: one unit's worth). Counts MCP tool
    /// calls, REST requests and git fetches and pushes; a token minted with its own
    /// rate gets the stricter of the two. Per process. Unset: no limit but the tokens'
    /// own.
    #[arg(long, env = "SCOPED_REPO_RATE_LIMIT", value_name = "RATE")]
    pub rate_limit: Option<String>,
    /// Connection limits.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The Host and Origin allow lists.
    #[command(flatten)]
    pub origins: OriginArgs,
}

/// Flags of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only calls by, and mints and revocations of, the token with this name or id.
    #[arg(long, value_name = "NAME")]
    pub token: Option<String>,
    /// Only calls on this repo.
    #[arg(long, value_name = "ID")]
    pub repo: Option<String>,
    /// Only records this recent (e.g. 30m, 1h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// One JSON object a line instead of text.
    #[arg(long)]
    pub json: bool,
    /// At most this many records, the most recent ones.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Flags of `git-env`.
#[derive(Debug, Args)]
pub struct GitEnvArgs {
    /// A credential git will present: a repo token (rlcr-…) or an account key (rlc-…);
    /// repeatable, one rule each. Visible in `ps` to every user of the machine while
    /// the command runs.
    #[arg(long = "token", value_name = "TOKEN", required = true)]
    pub tokens: Vec<String>,
    /// The `api` server's base, as it printed it: `http(s)://HOST[:PORT]`, with no path
    /// or `/v1`.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// `export NAME='VALUE'` lines for `eval` in sh, instead of `NAME=VALUE` lines for
    /// `env`.
    #[arg(long)]
    pub shell: bool,
}

/// `repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repo, empty, imported from a directory, or made from a git history;
    /// prints its ID.
    Create {
        /// Import this directory (honours .gitignore; keeps binary files, skips files
        /// over --max-file-size).
        #[arg(long, value_name = "DIR", conflicts_with = "from_git")]
        from_dir: Option<PathBuf>,
        /// Make the repo from this git repository's history (its commits, not a
        /// snapshot): an http:// or https:// URL, or the path of a repository on this
        /// machine. Every commit must obey the store's rules (files within
        /// --max-file-size, valid paths, no symlinks or submodules).
        #[arg(long, value_name = "URL_OR_PATH")]
        from_git: Option<String>,
        /// With --from-git: the branch to take (default: the source's HEAD).
        #[arg(long, requires = "from_git")]
        branch: Option<String>,
        /// Metadata as key=value (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// With --from-dir: make this the repo `serve --import DIR` serves from now on
        /// (refused while another repo is linked to DIR).
        #[arg(long, requires = "from_dir")]
        link: bool,
        /// With --from-dir: take every file, without reading `.gitignore`, `.ignore` or
        /// git's exclude files.
        #[arg(long, requires = "from_dir")]
        no_ignore: bool,
    },
    /// List the repos in the store.
    List,
    /// Check every repo (or one) with `git fsck --strict` and the store's own rules
    /// (files within the size limit, valid paths, no symlinks or submodules in `main`'s
    /// history, no objects outside it), and say what to repair; exits non-zero when any
    /// repo fails.
    Check {
        /// Only this repo.
        id: Option<String>,
    },
    /// Delete a repo and its history.
    Delete {
        /// The repo's ID.
        id: String,
    },
    /// Make a repo the one `serve --import DIR` serves (for a repo imported by an
    /// earlier version, or made with `repo create --from-dir`).
    Link {
        /// The repo's ID.
        id: String,
        /// The directory.
        dir: PathBuf,
    },
    /// List the files the import of a repo left out (over the size limit, an unusable
    /// path), one `PATH<TAB>WHY` a line.
    Skipped {
        /// The repo's ID.
        id: String,
    },
    /// Stop serving a repo for `serve --import DIR`; the repo itself is kept.
    Unlink {
        /// The repo's ID.
        id: String,
    },
}

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a repo token; prints it once.
    Create {
        /// A repo the token reaches (repeatable, or comma separated).
        #[arg(
            long = "repo",
            value_delimiter = ',',
            required = true,
            value_name = "ID"
        )]
        repos: Vec<String>,
        /// Lifetime, e.g. 30m, 1h, 7d; `never` for a token that does not expire.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A name for the token.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Read tools and routes only: no updates, no pushes.
        #[arg(long)]
        read_only: bool,
        /// Limit the token to files matching this glob (ripgrep syntax, from the repo
        /// root, e.g. `web/**`; repeatable). Other files behave as if they did not exist.
        #[arg(long = "path", value_name = "GLOB")]
        paths: Vec<String>,
        /// Let the token mint narrower tokens of its own, and revoke them.
        #[arg(long)]
        delegate: bool,
        /// The token's own rate limit, e.g. `60/m` or `10/s,burst=5`, on every surface;
        /// a server's --rate-limit applies too, and the stricter wins.
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token, given the token itself or the id `token list` shows.
    Revoke {
        /// The token (rlcr-…) or its id.
        token: String,
    },
}

/// `key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make an account API key (rlc-…) for the API server; prints it once.
    Create {
        /// A name for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List account keys (never their secrets).
    List,
    /// Revoke an account key, given the key itself or the id `key list` shows.
    Revoke {
        /// The key (rlc-…) or its id.
        key: String,
    },
}

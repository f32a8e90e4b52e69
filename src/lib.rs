//! scoped-repo-mcp: an MCP server that gives coding agents tools over code
//! repositories and holds every call to the repositories its session may touch.
//!
//! # Layout
//! In layers, lowest first; a module uses only its own layer or lower ones, with no
//! circle (`scripts/check-layers.py` holds the table and CI checks it).
//!
//! Leaves, which know nothing of the store, scopes or MCP:
//! - [`text`]: whether bytes are text, and escaping untrusted text for one-line
//!   renderings.
//! - [`mapped`]: stored index files read in place, and letting go of the pages read.
//! - [`credentials::secrets`]: what a repo token and an account key look like, minting
//!   them from the OS's random source, and the hash under which they are kept.
//! - [`paths`]: repository paths, and the refusal of unsafe ones.
//! - [`rules`]: the refusal rules that need no backend (update size limits, token names,
//!   lifetimes and path globs, reserved metadata, query and message sizes).
//! - [`model`]: domain types shared by the MCP layer and the backends (repos, files,
//!   searches, updates and their check against the limits, tokens).
//! - [`search`]: line search (literal and regex) with ripgrep's matcher, and the per-head
//!   trigram index that narrows it.
//! - [`ranked`]: ranked natural-language retrieval: BM25 fields, definitions, history.
//!
//! The store:
//! - [`store`]: the embedded store: bare git repos plus SQLite for metadata, hashed
//!   secrets and the audit table; each repo's search indexes kept at its head; the
//!   checks every pushed or fetched history passes, and `repo check`; reading the
//!   history (commits, diffs, revisions reachable from `main`) and reverting a commit.
//! - [`git_source`]: repos made from git: a source's URL or path, the rules of an
//!   outbound fetch (allowed hosts and ports, pinned address, credentials), the fetch.
//!
//! Credentials and calls:
//! - [`scope`]: a session's repos and rights, and the guard every call passes.
//! - [`credentials`]: credentials in one room: their secrets (a leaf, listed above) and
//!   the front door ([`credentials::front_door`]), where every credential, on every
//!   surface, becomes a scope or a refusal.
//! - [`backend`]: the backend trait and the local backend over the store, whose blame
//!   runs the `git` program.
//! - [`audit`]: the audit trail of calls, requests, mints and revocations: the trail and
//!   its writer thread, and the record of each kind of call, a file each.
//! - [`in_flight`]: the per-credential cap on requests in flight of both HTTP servers.
//! - [`rate`]: per-credential rate limits (a token bucket per credential) of every
//!   door: MCP tool calls, REST requests, git.
//! - [`origin`]: the `Host` and `Origin` allow lists of both HTTP servers.
//!
//! Surfaces:
//! - [`server`]: the MCP server and its tools, one file per tool group, and
//!   [`server::importing`]: repos whose first import still runs in the background, which
//!   calls naming them wait for (bounded) and `list_repos` shows as importing.
//! - [`relace`]: the Relace API client, and the backend and authority that route tools
//!   and credentials through it.
//! - [`oauth`]: the embedded OAuth 2.1 authorization server of `serve --oauth`: its
//!   metadata, client registration, the consent page, tokens and revocation.
//! - [`http`]: the MCP HTTP transports (streamable HTTP and legacy SSE), their guard,
//!   and the server as an OAuth protected resource (metadata, challenges).
//! - [`connections`]: serving both HTTP servers' connections within their limits (cap,
//!   header-read, idle and body timeouts, graceful stop).
//! - [`panics`]: the middleware that answers a panicking handler with a `500`.
//! - [`api`]: `api`: the Relace-compatible REST API over the embedded store, and git's
//!   smart HTTP with the gate a push passes before `main` moves.
//!
//! Start-up:
//! - [`run`]: the start-up wing, and the one Ctrl-C/SIGTERM handler of both servers.
//!   [`run::cli`]: the command line as typed (clap); [`run::config`]: settings
//!   validated from it (every bad setting fails there with a fix-it sentence), and the
//!   factory of `serve`'s backend; [`run::serve`]: start-up of `serve` (the scope from
//!   flags and credential, then the transport), with [`run::import`], the work-tree
//!   import of `--import` (a first one run on its own thread, reporting on stderr);
//!   [`run::api`]: start-up of `api`; [`run::admin`]: the `repo`, `token`, `key` and
//!   `audit` commands; [`run::git_env`]: `git-env`, the git settings that send the
//!   hosted service's git URLs to `api`.
#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod backend;
pub mod connections;
pub mod credentials;
pub mod git_source;
pub mod http;
pub mod in_flight;
pub mod mapped;
pub mod model;
pub mod oauth;
pub mod origin;
pub mod panics;
pub mod paths;
pub mod ranked;
pub mod rate;
pub mod relace;
pub mod rules;
pub mod run;
pub mod scope;
pub mod search;
pub mod server;
pub mod store;
pub mod text;

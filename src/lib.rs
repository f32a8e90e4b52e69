//! scoped-repo-mcp: an MCP server that gives coding agents tools over code
//! repositories and holds every call to the repositories its session may touch.
//!
//! # Layout
//! - [`cli`]: the command line as typed (clap).
//! - [`config`]: validated settings; every bad setting fails here with a fix-it sentence.
//! - [`paths`]: repository paths, and the refusal of unsafe ones.
//! - [`escape`]: escaping untrusted text in line-oriented renderings.
//! - [`model`]: domain types shared by the MCP layer and the backends.
//! - [`rules`]: the refusal rules that need no backend (update limits, token names and
//!   lifetimes, reserved metadata, query and glob sizes), applied before any backend.
//! - [`scope`]: a session's repos and rights, and the guard every call passes.
//! - [`backend`]: the backend trait and the local backend over the store.
//! - [`store`]: the embedded store — bare git repos plus SQLite for metadata and hashed
//!   secrets — and each repo's search index kept at its head.
//! - [`search`]: line search (literal and regex) with ripgrep's matcher, and the per-head
//!   trigram index that narrows it.
//! - [`git_source`]: repos made from git: a source's URL or path, the rules of an
//!   outbound fetch (allowed hosts, pinned address, credentials), and the fetch itself.
//! - [`mapped`]: stored index files read in place, and letting go of the pages read.
//! - [`ranked`]: ranked natural-language retrieval: BM25 fields, definitions, history.
//! - [`server`]: the MCP server and its tools, one file per tool group.
//! - [`connections`]: serving the HTTP servers' connections within their limits (cap,
//!   header-read and idle timeouts, graceful stop).
//! - [`origin`]: the `Host` and `Origin` allow lists of both HTTP servers.
//! - [`in_flight`]: the per-credential cap on requests in flight of both HTTP servers.
//! - [`rate`]: per-credential rate limits (a token bucket per credential) of every
//!   door: MCP tool calls, REST requests, git.
//! - [`http`]: the HTTP transports (streamable HTTP and legacy SSE) and their guard.
//! - [`serve`]: start-up of `serve`: scope from flags and credential, then the transport.
//! - [`api`]: `api`, the Relace-compatible REST API over the embedded store.
//! - [`relace`]: the Relace API client and the backend that routes tools through it.
//! - [`access`]: the front door: every credential, on every surface, becomes a scope or
//!   a refusal there.
//! - [`audit`]: the audit trail of calls, requests, mints and revocations, written off
//!   the calls' path.
//! - [`admin`]: the `repo`, `token`, `key` and `audit` commands.
#![deny(missing_docs)]

pub mod access;
pub mod admin;
pub mod api;
pub mod audit;
pub mod backend;
pub mod cli;
pub mod config;
pub mod connections;
pub mod escape;
pub mod git_source;
pub mod http;
pub mod in_flight;
pub mod mapped;
pub mod model;
pub mod origin;
pub mod paths;
pub mod ranked;
pub mod rate;
pub mod relace;
pub mod rules;
pub mod scope;
pub mod search;
pub mod serve;
pub mod server;
pub mod store;

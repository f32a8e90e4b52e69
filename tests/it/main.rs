//! The one integration test binary: every test drives the built `scoped-repo-mcp`
//! through a real MCP client (rmcp's, over stdio), its command line, or the REST API
//! of `scoped-repo-mcp api` over HTTP.

mod api;
mod common;
mod concurrency;
mod faults;
mod fine_tokens;
mod git_http;
mod http;
mod progress;
mod ranked;
mod refusals;
mod regression;
mod rg_agreement;
mod schema;
mod search_index;
mod startup;
mod tokens;
mod tools;

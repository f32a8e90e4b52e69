//! The one integration test binary: every test drives the built `scoped-repo-mcp`
//! through a real MCP client (rmcp's, over stdio) or its command line.

mod common;
mod concurrency;
mod http;
mod progress;
mod ranked;
mod refusals;
mod rg_agreement;
mod schema;
mod search_index;
mod startup;
mod tokens;
mod tools;

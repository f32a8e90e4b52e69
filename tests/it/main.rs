//! The one integration test binary: every test drives the built `scoped-repo-mcp`
//! through a real MCP client (rmcp's, over stdio), its command line, or the REST API
//! of `scoped-repo-mcp api` over HTTP; the HTTP limits' regression tests run both
//! servers inside the test.

mod api;
mod audit;
mod checker;
mod common;
mod concurrency;
mod disk_full;
mod faults;
mod fine_tokens;
mod git_http;
mod git_source;
mod http;
mod in_process;
mod limits;
mod progress;
mod push_path;
mod ranked;
mod ranked_disk;
mod ranked_quality;
mod rate;
mod refusals;
mod regression;
mod rg_agreement;
mod schema;
mod search_index;
mod segments;
mod shared_store;
mod startup;
mod tokens;
mod tools;

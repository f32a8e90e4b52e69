//! The one integration test binary: every test drives the built `scoped-repo-mcp`
//! through a real MCP client (rmcp's, over stdio), its command line, or the REST API
//! of `scoped-repo-mcp api` over HTTP; the HTTP limits' regression tests run both
//! servers inside the test.

mod api;
mod audit;
mod binary;
mod checker;
mod common;
mod concurrency;
mod disk_full;
mod faults;
mod fine_tokens;
mod git_env;
mod git_http;
mod git_source;
mod history;
mod http;
mod imports;
mod in_process;
mod limits;
mod oauth;
mod progress;
mod protected_resource;
mod push_path;
mod push_record;
mod ranked;
mod ranked_disk;
mod ranked_import;
mod ranked_quality;
mod rate;
mod refusals;
mod regression;
mod relace_history;
mod rg_agreement;
mod schema;
mod search_index;
mod segments;
mod shared_store;
mod startup;
mod tokens;
mod tools;

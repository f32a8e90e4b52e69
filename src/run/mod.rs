//! Start-up: the command line as typed, its validation into settings that build the
//! backend, and the start of each command (`serve`, `api`, the administration
//! commands).

pub mod admin;
pub mod cli;
pub mod config;
pub mod import;
pub mod serve;

//! A model-based checker of one data directory shared by every kind of process: `api`
//! (REST and git), stdio `serve`s on repo tokens, on a delegating token and on the
//! operator's credential, `serve --transport http`, and short-lived CLI commands.
//!
//! A seeded random sequence of writes goes through randomly chosen processes; after
//! every answered write the next call of every other process must agree with it. At
//! random points a process is killed with SIGKILL, during writes too, and started
//! again. At the end the database's integrity check, `git fsck --strict` on every
//! repo, the model against the store, repo rows against repo directories, and the
//! audit trail against the answered writes are checked.
//!
//! `CHECKER_SECONDS` (default 20; `.ci/run` gives 120, `scripts/checker.sh` longer)
//! sets how long it runs, `CHECKER_SEED` replays one sequence. On failure the seed is
//! printed and the history of operations is saved (the path is printed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use scoped_repo_mcp::model::RepoId;

use crate::api::{ApiChild, send};
use crate::common::{Client, HttpServer, call, text};
use crate::git_http::GitUser;
use crate::shared_store::SharedDir;

mod ask;
mod end;
mod ops;

/// The lifetime of every token the checker mints: longer than any run (a token that
/// expired mid-run would be refused rightly, and read as a lost mint). The delegating
/// token lives 24 hours, the most `serve` lets a tool mint.
const TOKEN_TTL_SECONDS: u64 = 12 * 3600;

/// splitmix64: a small, seedable, good-enough generator (no dependency for it).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Life {
    Live,
    Revoked,
    /// A write killed before it was answered: either outcome is right.
    Unsure,
}

struct TokenModel {
    secret: String,
    repos: Vec<RepoId>,
    life: Life,
    /// The delegating token it was minted from.
    child_of_delegate: bool,
}

struct RepoModel {
    id: RepoId,
    /// Files known to be at the head, with their content.
    files: BTreeMap<String, String>,
    gone: bool,
    /// Served by the operator's stdio server and the token servers: never deleted.
    base: bool,
    linked: Option<PathBuf>,
}

/// A stdio `serve` and the pid to kill it by.
struct StdioServe {
    client: Client,
    pid: u32,
}

/// Every long-lived process of the run.
struct Processes {
    api: ApiChild,
    http: HttpServer,
    operator: StdioServe,
    /// Servers on plain repo tokens: the token's index in the model, and the server.
    on_token: Vec<(usize, StdioServe)>,
    /// The server on the delegating token; its index in the model.
    delegate: (usize, StdioServe),
    /// MCP sessions over HTTP opened while their token was live, by token index.
    live_http: Vec<(usize, Client)>,
}

/// How many of those sessions are kept open at once (the oldest is closed).
const LIVE_HTTP_SESSIONS: usize = 8;

struct Checker {
    dir: SharedDir,
    rng: Rng,
    seed: u64,
    history: Vec<String>,
    tokens: Vec<TokenModel>,
    repos: Vec<RepoModel>,
    keys: Vec<(String, Life)>,
    /// Answered writes, by the audit action they must leave behind.
    answered: BTreeMap<&'static str, usize>,
    git: GitUser,
    upstream: (SharedDir, ApiChild, RepoId),
    counter: u64,
    kills: usize,
    ops: usize,
    /// Live HTTP sessions seen cut at their next call after their token's revocation.
    sessions_cut: usize,
}

fn seconds() -> u64 {
    std::env::var("CHECKER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

async fn start_stdio(dir: &SharedDir, args: &[&str], credential: Option<&str>) -> StdioServe {
    let env: Vec<(&str, &str)> = credential
        .map(|c| ("RELACE_API_KEY", c))
        .into_iter()
        .collect();
    let (client, pid) = dir.serve(args, &env).await;
    StdioServe { client, pid }
}

async fn start_api(dir: &SharedDir, key: &str, upstream_port: u16) -> ApiChild {
    let allowed = format!("127.0.0.1:{upstream_port}");
    crate::api::ApiBuilder::on(dir.path(), key)
        .flags(&["--allowed-git-host", &allowed])
        .env("RUST_LOG", "info")
        .start()
        .await
}

fn kill9(pid: u32) {
    // SAFETY: signalling a child process this test started and still owns.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

impl Checker {
    fn note(&mut self, line: String) {
        self.history.push(line);
    }

    fn fail(&self, what: String) -> ! {
        let path = std::env::temp_dir().join(format!("checker-history-{}.txt", self.seed));
        let mut all = String::new();
        for (i, h) in self.history.iter().enumerate() {
            let _ = writeln!(all, "{i:5} {h}");
        }
        let _ = std::fs::write(&path, &all);
        let tail: Vec<&String> = self.history.iter().rev().take(15).collect();
        panic!(
            "checker failed (seed {}; replay with CHECKER_SEED={}; history in {}): {what}\nlast operations, newest first: {tail:#?}",
            self.seed,
            self.seed,
            path.display()
        );
    }

    fn agree(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    fn fresh_marker(&mut self) -> String {
        self.counter += 1;
        format!("mark{}x{}", self.seed, self.counter)
    }

    fn live_tokens(&self) -> Vec<usize> {
        (0..self.tokens.len())
            .filter(|i| self.tokens[*i].life == Life::Live)
            .filter(|i| self.tokens[*i].repos.iter().all(|r| !self.repo(r).gone))
            .collect()
    }

    fn repo(&self, id: &RepoId) -> &RepoModel {
        self.repos.iter().find(|r| r.id == *id).unwrap()
    }

    fn repo_mut(&mut self, id: &RepoId) -> &mut RepoModel {
        self.repos.iter_mut().find(|r| r.id == *id).unwrap()
    }

    fn live_repos(&self) -> Vec<RepoId> {
        self.repos
            .iter()
            .filter(|r| !r.gone)
            .map(|r| r.id)
            .collect()
    }

    fn base_repos(&self) -> Vec<RepoId> {
        self.repos.iter().filter(|r| r.base).map(|r| r.id).collect()
    }

    fn answered(&mut self, action: &'static str) {
        *self.answered.entry(action).or_default() += 1;
    }
}

fn is_ok(r: &rmcp::model::CallToolResult) -> bool {
    r.is_error != Some(true)
}

fn git_url(api: &ApiChild, id: &RepoId, credential: &str) -> String {
    let base = api
        .base
        .replacen("http://", &format!("http://token:{credential}@"), 1);
    format!("{base}/repo/{id}.git")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_process_agrees_on_every_answered_write_through_kills() {
    let seed = std::env::var("CHECKER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("checker: seed {seed} (replay with CHECKER_SEED={seed})");
    let deadline = Instant::now() + Duration::from_secs(seconds());

    // A second store, whose repo is the git source of repos made from git.
    let up = SharedDir::new();
    let up_repo = up.repo(&[("upstream.txt", "from upstream\n")]).await;
    let up_api = up.api().await;

    let dir = SharedDir::new();
    let a = dir.repo(&[("a.txt", "alpha\n")]).await;
    let b = dir.repo(&[("b.txt", "beta\n")]).await;
    let key = dir.cli(&["key", "create", "--name", "checker"]).await;
    let mut c = Checker {
        dir,
        rng: Rng(seed),
        seed,
        history: Vec::new(),
        tokens: Vec::new(),
        repos: vec![
            RepoModel {
                id: a,
                files: BTreeMap::from([("a.txt".to_string(), "alpha\n".to_string())]),
                gone: false,
                base: true,
                linked: None,
            },
            RepoModel {
                id: b,
                files: BTreeMap::from([("b.txt".to_string(), "beta\n".to_string())]),
                gone: false,
                base: true,
                linked: None,
            },
        ],
        keys: Vec::new(),
        answered: BTreeMap::new(),
        git: GitUser::new(),
        upstream: (up, up_api, up_repo),
        counter: 0,
        kills: 0,
        ops: 0,
        sessions_cut: 0,
    };
    let mut serves = Vec::new();
    for r in [a, b] {
        let t = c.dir.token(&r).await;
        c.tokens.push(TokenModel {
            secret: t.clone(),
            repos: vec![r],
            life: Life::Live,
            child_of_delegate: false,
        });
        serves.push((
            c.tokens.len() - 1,
            start_stdio(&c.dir, &["--backend", "local"], Some(&t)).await,
        ));
    }
    let delegating = c
        .dir
        .cli(&[
            "token",
            "create",
            "--repo",
            &a.to_string(),
            "--repo",
            &b.to_string(),
            "--ttl",
            "24h",
            "--delegate",
        ])
        .await;
    c.tokens.push(TokenModel {
        secret: delegating.clone(),
        repos: vec![a, b],
        life: Life::Live,
        child_of_delegate: false,
    });
    let delegate = (
        c.tokens.len() - 1,
        start_stdio(&c.dir, &["--backend", "local"], Some(&delegating)).await,
    );
    let args = c.operator_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = start_stdio(&c.dir, &args, None).await;
    let api = start_api(&c.dir, &key, c.upstream_port()).await;
    let http = c.dir.http();
    let mut p = Processes {
        api,
        http,
        operator,
        on_token: serves,
        delegate,
        live_http: Vec::new(),
    };

    while Instant::now() < deadline {
        c.ops += 1;
        match c.rng.below(100) {
            0..=19 => c.mint(&mut p).await,
            20..=34 => c.revoke(&mut p).await,
            35..=39 => c.key(&mut p).await,
            40..=49 => c.create_repo(&mut p).await,
            50..=79 => c.update(&mut p).await,
            80..=86 => c.delete_repo(&mut p).await,
            87..=91 => c.link().await,
            _ => c.kill(&mut p).await,
        }
        // Now and then, every live token again, each through every door.
        if c.ops.is_multiple_of(50) {
            for i in c.live_tokens() {
                c.check_token(&mut p, i, false).await;
            }
        }
    }
    c.finish(p).await;
}

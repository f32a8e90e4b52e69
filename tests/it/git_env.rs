//! `git-env`: its settings, applied to the real `git` CLI, send the hosted service's git
//! URLs (credential in the URL, as the official SDKs' git helpers make them) to a
//! running `api`; several tokens' rules coexist; bad input is refused without echoing
//! a token.

use std::process::Output;

use scoped_repo_mcp::model::RepoId;

use crate::common::{BIN, Harness};
use crate::git_http::{GitUser, api_on};

/// `scoped-repo-mcp ARGS` with no data directory at all: `git-env` needs none.
fn git_env(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("git-env")
        .args(args)
        .env_remove("SCOPED_REPO_DATA_DIR")
        .output()
        .unwrap()
}

/// A repo token for `id`, minted by `token create` in a process of its own.
fn cli_token(h: &Harness, id: &RepoId) -> String {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args([
            "token",
            "create",
            "--repo",
            &id.to_string(),
            "--name",
            "git-env",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The hosted URL an SDK's git helper would use.
fn hosted(token: &str, id: &RepoId) -> String {
    format!("https://token:{token}@api.relace.run/v1/repo/{id}.git")
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_send_the_hosted_git_url_to_api_for_each_token() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "from a\n")]);
    let b = h.repo(&[("b.txt", "from b\n")]);
    let api = api_on(&h).await;
    let (ta, tb) = (cli_token(&h, &a), cli_token(&h, &b));
    let out = git_env(&["--url", &api.base, "--token", &ta, "--token", &tb]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("GIT_CONFIG_COUNT=2\n"), "{text}");
    let vars: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();

    let git = GitUser::new();
    for (id, token, file, content) in [(a, &ta, "a.txt", "from a\n"), (b, &tb, "b.txt", "from b\n")]
    {
        let name = format!("clone-{file}");
        let mut clone = git.command(
            git.home.path(),
            &["clone", "--quiet", &hosted(token, &id), &name],
        );
        let out = clone
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(git.dir(&name).join(file)).unwrap(),
            content
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_lines_evaluated_by_sh_route_a_clone_and_a_push() {
    let h = Harness::new();
    let id = h.repo(&[("src/lib.rs", "pub fn f() {}\n")]);
    let api = api_on(&h).await;
    let token = cli_token(&h, &id);
    let git = GitUser::new();
    // The settings reach git through the shell that evaluated them, token in the URL as
    // an SDK would pass it.
    let script = format!(
        "set -e; eval \"$('{BIN}' git-env --shell --url '{}' --token '{token}')\"; \
         git clone --quiet '{}' wc; cd wc; echo pushed > pushed.txt; git add -A; \
         git commit --quiet -m 'Add pushed.txt'; git push --quiet origin main",
        api.base,
        hosted(&token, &id)
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(git.home.path())
        .env("HOME", git.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The push landed in `api`'s store, read here from the test's own process.
    let path = scoped_repo_mcp::paths::RepoPath::parse("pushed.txt").unwrap();
    assert_eq!(
        h.store.read_file(&id, &path, None).unwrap().content,
        "pushed\n"
    );
}

#[test]
fn bad_urls_and_tokens_are_refused_with_a_fix_and_no_token_echoed() {
    let token = "rlcr-0123456789abcdef0123456789abcdef01234567";
    for (args, says) in [
        (
            vec!["--url", "ftp://127.0.0.1:1/v1", "--token", token],
            "http",
        ),
        (
            vec!["--url", "http://127.0.0.1:1/v2/repo", "--token", token],
            "/v1",
        ),
        (
            vec!["--url", "http://127.0.0.1:1/v1", "--token", "rlcr-short"],
            "40 hex",
        ),
    ] {
        let out = git_env(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains(token) && !err.contains("rlcr-short"), "{err}");
    }
}

//! Per-credential rate limits through real processes: `api`'s REST routes and git
//! answer `429` with `Retry-After` and a message saying when to retry, a stdio tool call
//! gets a tool error saying the same, other credentials keep their budgets, refused
//! requests cost nothing, `token create --rate` is honoured, and the trail shows the
//! refusals.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use scoped_repo_mcp::model::{MintSpec, RepoId};
use scoped_repo_mcp::store::{AuditQuery, AuditRow};
use serde_json::{Value, json};

use crate::api::{send, start_api_with};
use crate::common::{BIN, Harness, call, ok, refused};
use crate::git_http::{GitUser, url};

/// A REST request's status, `Retry-After` and `detail`.
async fn get(url: String, credential: &str) -> (StatusCode, Option<u64>, String) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let detail = body["detail"].as_str().unwrap_or_default().to_string();
    (status, retry, detail)
}

fn mint(h: &Harness, id: RepoId, rate: Option<&str>) -> String {
    h.store
        .mint(&MintSpec {
            name: "agent".into(),
            repo_ids: vec![id],
            ttl_seconds: Some(3600),
            rate: rate.map(|r| r.parse().unwrap()),
            ..MintSpec::default()
        })
        .unwrap()
        .token
}

/// Wait until the trail holds a row matching `want` (the writer batches for ~100 ms).
async fn wait_for(h: &Harness, what: &str, want: impl Fn(&AuditRow) -> bool) -> AuditRow {
    for _ in 0..100 {
        let rows = h
            .store
            .audit(&AuditQuery {
                limit: 10_000,
                ..Default::default()
            })
            .unwrap();
        if let Some(r) = rows.into_iter().find(|r| want(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no audit record for {what}");
}

fn assert_says_when(detail: &str, retry_after: u64) {
    assert!(detail.starts_with("rate limited:"), "{detail}");
    assert!(
        detail.contains(&format!("retry in {retry_after} s")),
        "{detail} (Retry-After: {retry_after})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_past_the_rate_is_429_with_retry_after_and_other_tokens_keep_their_budget() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let other = h.repo(&[("b.txt", "b\n")]);
    let api = start_api_with(&h, Stdio::null(), &["--rate-limit", "3/h"]).await;
    let (a, b) = (mint(&h, id, None), mint(&h, id, None));
    let route = format!("{}/repo/{id}", api.base);

    // Refused requests cost no one anything: a bad credential, and A outside its repos.
    let fake = format!("rlcr-{}", "0".repeat(40));
    for _ in 0..5 {
        assert_eq!(get(route.clone(), &fake).await.0, StatusCode::UNAUTHORIZED);
        let outside = get(format!("{}/repo/{other}", api.base), &a).await;
        assert_eq!(outside.0, StatusCode::FORBIDDEN);
    }
    for _ in 0..3 {
        assert_eq!(get(route.clone(), &a).await.0, StatusCode::OK);
    }
    let (status, retry, detail) = get(route.clone(), &a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{detail}");
    let retry = retry.expect("a Retry-After header");
    // One call in 3/h comes back after 20 minutes at most.
    assert!((1..=1200).contains(&retry), "{retry}");
    assert_says_when(&detail, retry);
    assert!(detail.contains("3 calls per hour"), "{detail}");

    // Another token behind the same address has its own bucket.
    assert_eq!(get(route.clone(), &b).await.0, StatusCode::OK);

    let row = wait_for(&h, "the REST refusal", |r| {
        r.outcome == "refused"
            && r.reason
                .as_deref()
                .is_some_and(|w| w.contains("rate limited"))
    })
    .await;
    assert_eq!(row.surface, "api");
    assert_eq!(row.action, "GET /v1/repo/{id}");
    assert_eq!(
        row.credential_id.as_deref(),
        Some(scoped_repo_mcp::audit::short_id(&a).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn git_fetch_past_the_rate_is_refused_and_rest_and_git_share_the_bucket() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let t = mint(&h, id, Some("1/h"));
    // The one call of the hour, spent on REST.
    assert_eq!(
        get(format!("{}/repo/{id}", api.base), &t).await.0,
        StatusCode::OK
    );

    let git = GitUser::new();
    let home = git.home.path().to_path_buf();
    let err = git.fails(&home, &["clone", "--quiet", &url(&api, &id, &t), "c"]);
    assert!(err.contains("429"), "{err}");
    assert!(err.contains("rate limited"), "{err}");

    // What git was answered, as HTTP.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/repo/{id}.git/info/refs?service=git-upload-pack",
            api.base
        ))
        .basic_auth("token", Some(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body = r.text().await.unwrap();
    assert_says_when(body.trim(), retry);

    let row = wait_for(&h, "the git refusal", |r| {
        r.surface == "git"
            && r.outcome == "refused"
            && r.reason
                .as_deref()
                .is_some_and(|w| w.contains("rate limited"))
    })
    .await;
    // Charged to the token, by its id, never to an address.
    assert_eq!(
        row.credential_id.as_deref(),
        Some(scoped_repo_mcp::audit::short_id(&t).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_tool_call_past_the_rate_is_a_tool_error_saying_when_to_retry() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let outside = h.repo(&[("b.txt", "b\n")]);
    // The environment variable means what the flag does.
    let client = h
        .client_env(
            &["--repo", &id.to_string()],
            &[("SCOPED_REPO_RATE_LIMIT", "2/h")],
        )
        .await;
    // A call the guard refuses costs nothing.
    let out = refused(
        &call(
            &client,
            "read_file",
            json!({"repo_id": outside.to_string(), "path": "b.txt"}),
        )
        .await,
    );
    assert!(!out.contains("rate limited"), "{out}");
    for _ in 0..2 {
        ok(&call(&client, "list_repos", json!({})).await);
    }
    let limited = refused(
        &call(
            &client,
            "read_file",
            json!({"repo_id": id.to_string(), "path": "a.txt"}),
        )
        .await,
    );
    assert!(limited.starts_with("rate limited:"), "{limited}");
    assert!(limited.contains("2 calls per hour"), "{limited}");
    let secs: u64 = limited
        .split("retry in ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" s"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no retry time in {limited}"));
    assert!((1..=1800).contains(&secs), "{secs}");
    client.cancel().await.unwrap();

    let row = wait_for(&h, "the stdio refusal", |r| {
        r.surface == "stdio"
            && r.outcome == "refused"
            && r.action == "read_file"
            && r.reason
                .as_deref()
                .is_some_and(|w| w.contains("rate limited"))
    })
    .await;
    assert_eq!(row.repo.as_deref(), Some(id.to_string().as_str()));
}

fn cli(h: &Harness, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(args)
        .env_remove("RELACE_API_KEY")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_create_rate_is_honoured_on_every_surface_and_children_cannot_loosen_it() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let out = cli(
        &h,
        &[
            "token",
            "create",
            "--repo",
            &id.to_string(),
            "--rate",
            "2/h",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let list = String::from_utf8(cli(&h, &["token", "list"]).stdout).unwrap();
    assert!(list.contains("rate 2/h"), "{list}");
    let bad = cli(
        &h,
        &[
            "token",
            "create",
            "--repo",
            &id.to_string(),
            "--rate",
            "lots",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--rate"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // `api` has no --rate-limit: the token's own rate applies.
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    let route = format!("{}/repo/{id}", api.base);
    for _ in 0..2 {
        assert_eq!(get(route.clone(), &token).await.0, StatusCode::OK);
    }
    let (status, retry, detail) = get(route.clone(), &token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_says_when(&detail, retry.unwrap());

    // The token on stdio, in a process of its own (buckets are per process), and a
    // looser --rate-limit there: the stricter, the token's, wins.
    let client = h
        .client_env(
            &["--backend", "local", "--rate-limit", "100/s"],
            &[("RELACE_API_KEY", &token)],
        )
        .await;
    for _ in 0..2 {
        ok(&call(&client, "list_repos", json!({})).await);
    }
    let limited = refused(&call(&client, "list_repos", json!({})).await);
    assert!(limited.contains("2 calls per hour"), "{limited}");
    client.cancel().await.unwrap();

    // A delegating token mints children no looser than itself, and they inherit it.
    let out = cli(
        &h,
        &[
            "token",
            "create",
            "--repo",
            &id.to_string(),
            "--delegate",
            "--rate",
            "100/h",
        ],
    );
    let lead = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mint_url = format!("{}/repo_token", api.base);
    let ask = |rate: Value| json!({"name": "child", "repo_ids": [id.to_string()], "ttl_seconds": 600, "rate": rate});
    let (status, body) = send(
        Method::POST,
        mint_url.clone(),
        Some(&lead),
        Some(ask(json!("2/s"))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("looser"),
        "{body}"
    );
    let (status, body) = send(
        Method::POST,
        mint_url.clone(),
        Some(&lead),
        Some(ask(Value::Null)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rate"], "100/h");
    let (status, body) = send(
        Method::POST,
        mint_url,
        Some(&lead),
        Some(ask(json!("10/h"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rate"], "10/h");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_rate_limit_stops_start_up_saying_how_to_write_one() {
    let h = Harness::new();
    let out = cli(
        &h,
        &["api", "--listen", "127.0.0.1:0", "--rate-limit", "5/day"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rate-limit") && err.contains("120/m"),
        "{err}"
    );
}

// Each token had a bucket of its own, so a delegating token spent its rate once more
// for every child it minted.
#[tokio::test(flavor = "multi_thread")]
async fn children_multiplied_their_delegating_tokens_rate() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let parent = h
        .store
        .mint(&MintSpec {
            name: "lead".into(),
            repo_ids: vec![id],
            ttl_seconds: Some(3600),
            can_delegate: true,
            rate: Some("5/h".parse().unwrap()),
            ..MintSpec::default()
        })
        .unwrap()
        .token;
    let api = start_api_with(&h, Stdio::null(), &[]).await;
    // Two children minted by the lead through the API (two of its five calls); they
    // inherit its rate.
    let mut children = Vec::new();
    for name in ["one", "two"] {
        let (s, body) = send(
            Method::POST,
            format!("{}/repo_token", api.base),
            Some(&parent),
            Some(json!({"name": name, "repo_ids": [id.to_string()], "ttl_seconds": 600})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        children.push(body["token"].as_str().unwrap().to_string());
    }
    let repo = format!("{}/repo/{id}", api.base);
    let lineage = [&parent, &children[0], &children[1]];
    for credential in lineage {
        let (s, _, detail) = get(repo.clone(), credential).await;
        assert_eq!(s, StatusCode::OK, "{detail}");
    }
    // The lineage's five calls are spent, whichever of its tokens asks next.
    for credential in lineage {
        let (s, retry, detail) = get(repo.clone(), credential).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{detail}");
        assert_says_when(&detail, retry.unwrap());
    }
    // Another lineage keeps its own budget.
    let other = mint(&h, id, Some("3/h"));
    assert_eq!(get(repo, &other).await.0, StatusCode::OK);
}

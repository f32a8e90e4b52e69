//! Ranked natural-language retrieval through `search_repo`: the right file first, the
//! head it reflects, `token_limit`, `auto`'s choice, and an index that follows commits.

use serde_json::{Value, json};

use crate::common::{Harness, call, ok, refused, text};

/// A small repo with one file for each of a few questions (also used by `ranked_disk`).
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "src/retry/backoff.rs",
        "//! Retry policy.\n\n/// Delay before the next attempt, doubling each time.\npub fn compute_backoff(attempt: u32) -> u64 {\n    100 * 2u64.pow(attempt)\n}\n",
    ),
    (
        "src/auth/token.rs",
        "//! Tokens.\n\n/// Check an API token against the stored hash.\npub fn verify_token(token: &str, hash: &str) -> bool {\n    sha(token) == hash\n}\n",
    ),
    (
        "src/main.rs",
        "fn main() {\n    let server = Server::new();\n    server.run();\n}\n",
    ),
    ("README.md", "# Demo\n\nA small server.\n"),
];

fn ranked(out: &Value) -> Vec<String> {
    out["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_in_words_finds_the_file_that_answers_it() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let c = h.client_for(&[r]).await;
    let out = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "where is the retry backoff computed?"}),
    )
    .await);
    assert_eq!(out["mode"], "ranked", "auto picks ranked for a question");
    assert_eq!(out["head"], h.store.head(&r).unwrap());
    assert_eq!(out["hits"], json!([]));
    let paths = ranked(&out);
    assert_eq!(paths[0], "src/retry/backoff.rs", "{paths:?}");
    let top = &out["ranked"][0];
    assert!(top["score"].as_f64().unwrap() > 0.0);
    let (s, e) = (
        top["start_line"].as_u64().unwrap(),
        top["end_line"].as_u64().unwrap(),
    );
    assert!(s >= 1 && e >= s, "{top}");
    assert!(top["snippet"].as_str().unwrap().contains("compute_backoff"));

    let auth = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "verify api tokens", "mode": "ranked"}),
    )
    .await);
    assert_eq!(ranked(&auth)[0], "src/auth/token.rs");

    // Identifiers keep the line search they always had.
    let lit = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "compute_backoff"}),
    )
    .await);
    assert_eq!(lit["mode"], "literal");
    assert_eq!(lit["ranked"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn ranked_results_say_each_files_role() {
    let h = Harness::new();
    let mut files = FILES.to_vec();
    files.push((
        "tests/backoff.rs",
        "//! The retry backoff doubles.\n#[test]\nfn backoff_doubles() { assert_eq!(compute_backoff(2), 400); }\n",
    ));
    let r = h.repo(&files);
    let c = h.client_for(&[r]).await;
    let result = call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "retry backoff doubling", "mode": "ranked"}),
    )
    .await;
    let out = ok(&result);
    let role_of = |path: &str| {
        out["ranked"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {out}"))["role"]
            .clone()
    };
    assert_eq!(role_of("src/retry/backoff.rs"), "source");
    assert_eq!(role_of("tests/backoff.rs"), "test");
    // The text rendering names a role other than source beside the score.
    let text = text(&result);
    let head_of = |path: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{path}:")))
            .unwrap_or_else(|| panic!("{path} not in {text}"))
    };
    assert!(head_of("tests/backoff.rs").ends_with(", test)"), "{text}");
    assert!(head_of("src/retry/backoff.rs").ends_with(')'), "{text}");
    assert!(!text.contains(", source)"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_limit_bounds_the_snippets_returned() {
    let h = Harness::new();
    let body: String = (0..200)
        .map(|i| format!("def handler_{i}(request):\n    return dispatch(request, {i})\n\n"))
        .collect();
    let r = h.repo(&[("app/handlers.py", &body), ("app/routes.py", &body)]);
    let c = h.client_for(&[r]).await;
    let out = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "dispatch request handler", "mode": "ranked", "token_limit": 10}),
    )
    .await);
    let text: usize = out["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["snippet"].as_str().unwrap().len())
        .sum();
    assert!(
        text > 0 && text <= 40,
        "{text} bytes of snippet for 10 tokens"
    );
    assert_eq!(out["truncated"], true);
    let bad = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": r.to_string(), "query": "dispatch request handler", "mode": "ranked", "token_limit": 0}),
        )
        .await,
    );
    assert!(bad.contains("token_limit"), "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ranked_index_follows_commits_and_their_messages() {
    let h = Harness::new();
    let r = h.repo(FILES);
    let id = r.to_string();
    let c = h.client_for(&[r]).await;
    let q = json!({"repo_id": id, "query": "where are invoices rendered as pdf", "mode": "ranked"});
    let before = ok(&call(&c, "search_repo", q.clone()).await);
    assert!(!ranked(&before).contains(&"src/billing/pdf.rs".to_string()));

    let up = ok(&call(&c, "update_repo_files", json!({
        "repo_id": id,
        "operations": [{"type": "write", "path": "src/billing/pdf.rs", "content": "pub fn render_invoice_pdf() {}\n"}]
    })).await);
    let after = ok(&call(&c, "search_repo", q).await);
    assert_eq!(after["head"], up["head"]);
    assert_eq!(ranked(&after)[0], "src/billing/pdf.rs");

    // A commit's message becomes part of what the files it changed are found by.
    let up2 = ok(&call(&c, "update_repo_files", json!({
        "repo_id": id,
        "operations": [{"type": "write", "path": "src/main.rs", "content": "fn main() {\n    start();\n}\n"}],
        "message": "Start the telemetry exporter before serving"
    })).await);
    let out = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "when does the telemetry exporter start", "mode": "ranked"}),
    )
    .await);
    assert_eq!(out["head"], up2["head"]);
    assert_eq!(ranked(&out)[0], "src/main.rs");
}

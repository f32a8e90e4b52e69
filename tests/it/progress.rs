//! Long updates, reverts and history walks report progress to a client that asks for
//! it, and honour cancellation until their commit is published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, NumberOrString,
    ProgressNotificationParam, ProgressToken, RequestMetaObject,
};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};

use crate::common::Harness;

/// A client handler that keeps every progress notification it receives.
#[derive(Clone, Default)]
pub struct ProgressSink(pub Arc<Mutex<Vec<ProgressNotificationParam>>>);

impl ClientHandler for ProgressSink {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.0.lock().unwrap().push(params);
    }
}

fn big_update(repo: &str, files: usize) -> CallToolRequestParams {
    let ops: Vec<Value> = (0..files)
        .map(|i| json!({"type": "write", "path": format!("gen/f{i}.txt"), "content": format!("file {i}\n")}))
        .collect();
    let Value::Object(map) = json!({"repo_id": repo, "operations": ops}) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("update_repo_files").with_arguments(map);
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("upd".into()),
    )));
    params
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_update_reports_progress_when_asked() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let sink = ProgressSink::default();
    let client = h
        .client_with(sink.clone(), &["--repo", &r.to_string()])
        .await;
    let result = client
        .call_tool(big_update(&r.to_string(), 1000))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    // Notifications may trail the answer by a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = sink.0.lock().unwrap().clone();
    assert!(
        seen.len() >= 3,
        "expected progress notifications, got {seen:?}"
    );
    assert!(seen.iter().all(|p| p.total == Some(1000.0)));
    assert!(
        seen.windows(2).all(|w| w[0].progress <= w[1].progress),
        "progress never goes back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_update_changes_nothing() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let before = h.store.head(&r).unwrap();
    let client = h
        .client_with(ProgressSink::default(), &["--repo", &r.to_string()])
        .await;
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(big_update(
        &r.to_string(),
        20_000 / 2,
    )));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let lock_file = h.store.git_dir(&r).join("scoped-repo-mcp.lock");
    for _ in 0..1000 {
        if lock_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(lock_file.exists(), "the update never started");
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    // A second update waits for the repo's writer lock, so once it is answered the
    // cancelled one has finished whatever it was going to do.
    let Value::Object(map) = json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "after.txt", "content": "x\n"}]})
    else {
        unreachable!()
    };
    let after = client
        .call_tool(CallToolRequestParams::new("update_repo_files").with_arguments(map))
        .await
        .unwrap();
    assert_eq!(after.is_error, Some(false));
    assert_eq!(
        h.store.list_files(&r).unwrap().paths,
        vec!["a.txt", "after.txt"],
        "the cancelled update published nothing"
    );
    let repo = git2::Repository::open_bare(h.store.git_dir(&r)).unwrap();
    let head = repo
        .find_commit(git2::Oid::from_str(&h.store.head(&r).unwrap()).unwrap())
        .unwrap();
    assert_eq!(head.parent_id(0).unwrap().to_string(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_walk_reports_progress_when_asked() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    for i in 0..300 {
        let spec = scoped_repo_mcp::model::UpdateSpec {
            change: scoped_repo_mcp::model::Change::Operations(vec![
                scoped_repo_mcp::model::FileOp::Write {
                    path: scoped_repo_mcp::paths::RepoPath::parse("n.txt").unwrap(),
                    content: format!("{i}\n"),
                },
            ]),
            expected_head: None,
            message: Some(format!("step {i}")),
            control: Default::default(),
            visible: None,
        };
        h.store.update(&r, &spec, "tests").unwrap();
    }
    let sink = ProgressSink::default();
    let client = h
        .client_with(sink.clone(), &["--repo", &r.to_string()])
        .await;
    let Value::Object(map) = json!({"repo_id": r.to_string(), "path": "nothing/here"}) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("list_commits").with_arguments(map);
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("walk".into()),
    )));
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(false));
    let answer = result.structured_content.unwrap();
    assert_eq!(answer["commits"], json!([]));
    assert_eq!(answer["time_budget_spent"], json!(false));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The server sends the notifications in order from one task; the client may hand
    // them to its handler in another (seen: 301 before 256).
    let mut seen = sink.0.lock().unwrap().clone();
    seen.sort_by(|a, b| a.progress.total_cmp(&b.progress));
    let walked: Vec<f64> = seen.iter().map(|p| p.progress).collect();
    assert_eq!(walked, vec![256.0, 301.0], "{seen:?}");
    assert!(
        seen[0]
            .message
            .as_deref()
            .unwrap()
            .contains("walked 256 commits")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revert_reports_its_steps_when_asked() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let first = h.store.head(&r).unwrap();
    let spec = scoped_repo_mcp::model::UpdateSpec {
        change: scoped_repo_mcp::model::Change::Operations(vec![
            scoped_repo_mcp::model::FileOp::Write {
                path: scoped_repo_mcp::paths::RepoPath::parse("a.txt").unwrap(),
                content: "b\n".into(),
            },
        ]),
        expected_head: None,
        message: Some("change a".into()),
        control: Default::default(),
        visible: None,
    };
    let changed = h.store.update(&r, &spec, "tests").unwrap().head;
    let sink = ProgressSink::default();
    let client = h
        .client_with(sink.clone(), &["--repo", &r.to_string()])
        .await;
    let Value::Object(map) = json!({"repo_id": r.to_string(), "commit": changed}) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("revert_commit").with_arguments(map);
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("rev".into()),
    )));
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = sink.0.lock().unwrap().clone();
    seen.sort_by(|a, b| a.progress.total_cmp(&b.progress));
    let steps: Vec<(f64, Option<f64>)> = seen.iter().map(|p| (p.progress, p.total)).collect();
    assert_eq!(
        steps,
        vec![(0.0, Some(2.0)), (1.0, Some(2.0)), (2.0, Some(2.0))],
        "{seen:?}"
    );
    assert!(seen[2].message.as_deref().unwrap().starts_with("reverted"));
    // The revert landed: the file is as it was at the first commit.
    let text = h
        .store
        .read_file(
            &r,
            &scoped_repo_mcp::paths::RepoPath::parse("a.txt").unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(text.content, "a\n");
    assert_ne!(h.store.head(&r).unwrap(), first);
}

/// Write `n` commits onto repo `r`'s `main` with `git fast-import`, each changing
/// `n.txt`: a long history in a moment, where the store's own updates would take
/// minutes.
fn long_history(h: &Harness, r: &scoped_repo_mcp::model::RepoId, n: usize) {
    let git_dir = h.store.git_dir(r);
    let base = h.store.head(r).unwrap();
    let mut script = String::new();
    for i in 0..n {
        let message = format!("step {i}");
        let content = format!("line {i}\n");
        script.push_str(&format!(
            "commit refs/heads/main\ncommitter t <t@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + i,
            message.len() + 1
        ));
        if i == 0 {
            script.push_str(&format!("from {base}\n"));
        }
        script.push_str(&format!(
            "M 100644 inline n.txt\ndata {}\n{content}\n",
            content.len()
        ));
    }
    crate::common::git_fed(&git_dir, &["fast-import", "--quiet"], script.as_bytes());
}

/// Cancelling a history walk through MCP stops the walk itself, not only its answer:
/// its progress stops where it was, and the server goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_history_walk_stops_walking() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    long_history(&h, &r, 20_000);
    let sink = ProgressSink::default();
    let client = h
        .client_with(sink.clone(), &["--repo", &r.to_string()])
        .await;
    // Text no commit adds: the walk reads every commit's change to the end.
    let Value::Object(map) =
        json!({"repo_id": r.to_string(), "query": "never written", "mode": "added"})
    else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("search_history").with_arguments(map);
    params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("walk".into()),
    )));
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    for _ in 0..2000 {
        if !sink.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!sink.0.lock().unwrap().is_empty(), "the walk never started");
    let walked_then = max_progress(&sink);
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    // Notifications already sent may still arrive; then none, as the walk has stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = sink.0.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = sink.0.lock().unwrap().len();
    assert_eq!(
        seen,
        settled,
        "the walk went on, to {} commits",
        max_progress(&sink)
    );
    // A few reports may have been under way when the cancellation came; not the rest
    // of the history.
    let walked = max_progress(&sink);
    assert!(
        walked <= walked_then + 4096.0,
        "walked {walked} commits, {walked_then} when cancelled"
    );
    // The server answers the next call.
    let listed = client
        .call_tool(
            CallToolRequestParams::new("list_commits").with_arguments(
                json!({"repo_id": r.to_string(), "max_results": 1})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(listed.is_error, Some(false));
}

/// The most commits a walk reported having walked.
fn max_progress(sink: &ProgressSink) -> f64 {
    sink.0
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.progress)
        .fold(0.0, f64::max)
}

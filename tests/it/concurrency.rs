//! Concurrent writers never lose a write; a writer killed mid-update leaves the repo
//! at its old head or its new one.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

use crate::common::{Harness, call, ok};
use crate::on_both_backends;

on_both_backends!(concurrent_updates_from_several_clients_lose_no_write);

async fn concurrent_updates_from_several_clients_lose_no_write(h: Harness) {
    let r = h.repo(&[("seed.txt", "seed\n")]);
    const CLIENTS: usize = 4;
    const UPDATES: usize = 8;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(h.client_for(&[r]).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (ci, client) in clients.iter().enumerate() {
        for u in 0..UPDATES {
            let peer = client.peer().clone();
            let id = r.to_string();
            tasks.spawn(async move {
                let args = json!({"repo_id": id, "operations": [
                    {"type": "write", "path": format!("c{ci}/u{u}.txt"), "content": format!("{ci}-{u}\n")},
                    {"type": "write", "path": "shared.txt", "content": format!("last writer {ci}-{u}\n")}
                ]});
                let Value::Object(map) = args else { unreachable!() };
                peer.call_tool(rmcp::model::CallToolRequestParams::new("update_repo_files").with_arguments(map))
                    .await
                    .unwrap()
            });
        }
    }
    let mut heads = BTreeSet::new();
    while let Some(res) = tasks.join_next().await {
        let out = ok(&res.unwrap());
        assert_eq!(out["committed"], true);
        heads.insert(out["head"].as_str().unwrap().to_string());
    }
    assert_eq!(
        heads.len(),
        CLIENTS * UPDATES,
        "every update made its own commit"
    );
    let files = h.store.list_files(&r).unwrap().paths;
    for ci in 0..CLIENTS {
        for u in 0..UPDATES {
            assert!(
                files.contains(&format!("c{ci}/u{u}.txt")),
                "lost c{ci}/u{u}.txt"
            );
        }
    }
    // History is linear: each commit has one parent, and every reported head is on it.
    let repo = git2::Repository::open_bare(h.store.git_dir(&r)).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    let history: BTreeSet<String> = walk.map(|o| o.unwrap().to_string()).collect();
    assert_eq!(history.len(), CLIENTS * UPDATES + 1);
    assert!(heads.is_subset(&history));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_killed_at_any_point_leaves_the_old_head_or_the_new_one() {
    let h = Harness::new();
    let r = h.repo(&[("keep.txt", "keep\n")]);
    let body = "line of text for a file that is being written\n".repeat(40);
    let mut outcomes = BTreeSet::new();
    // The first kill comes before a 3,000-file update can commit, and the last only
    // after its answer: both outcomes must be seen, whatever the machine's speed; the
    // delays between land wherever they land.
    const AFTER_THE_ANSWER: u64 = u64::MAX;
    for (attempt, delay_ms) in [0u64, 5, 20, 60, 120, 250, 500, 900, AFTER_THE_ANSWER]
        .into_iter()
        .enumerate()
    {
        let old_head = h.store.head(&r).unwrap();
        let old_files = h.store.list_files(&r).unwrap().paths;
        let cmd = h.command(&["serve", "--repo", &r.to_string()]);
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = transport.id().unwrap();
        let client = ().serve(transport).await.unwrap();
        let ops: Vec<Value> = (0..3000)
            .map(|i| json!({"type": "write", "path": format!("batch{attempt}/f{i}.txt"), "content": body}))
            .collect();
        let peer = client.peer().clone();
        let id = r.to_string();
        let pending = tokio::spawn(async move {
            let Value::Object(map) = json!({"repo_id": id, "operations": ops}) else {
                unreachable!()
            };
            peer.call_tool(
                rmcp::model::CallToolRequestParams::new("update_repo_files").with_arguments(map),
            )
            .await
        });
        if delay_ms == AFTER_THE_ANSWER {
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !pending.is_finished() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the 3,000-file update got no answer in 300 s"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success() || pending.is_finished());
        // The call's own outcome does not matter (the repo's state is checked below),
        // and a request sent just as the killed server's pipe closes may never be
        // answered, not even with an error: it is given up after a while.
        let abort = pending.abort_handle();
        if tokio::time::timeout(Duration::from_secs(20), pending)
            .await
            .is_err()
        {
            abort.abort();
        }
        drop(client);

        let head = h.store.head(&r).unwrap();
        let files = h.store.list_files(&r).unwrap().paths;
        if head == old_head {
            assert_eq!(files, old_files, "old head, old tree");
            outcomes.insert("old");
        } else {
            assert_eq!(
                files.len(),
                old_files.len() + 3000,
                "new head, the whole update"
            );
            outcomes.insert("new");
        }
        let fsck = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(h.store.git_dir(&r))
            .args(["fsck", "--no-dangling", "--connectivity-only"])
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "git fsck: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
    // Whatever the kills interrupted, the repo still takes updates.
    let c = h.client_for(&[r]).await;
    ok(&call(&c, "update_repo_files", json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "after.txt", "content": "ok\n"}]})).await);
    assert_eq!(
        outcomes,
        BTreeSet::from(["new", "old"]),
        "a kill before the commit must leave the old head and one after it the new"
    );
}

//! A git push's audit record, read back by `audit` in a process of its own right after
//! `git push` returns: the outcome known once receive-pack has ended (landed with its
//! old and new head, or refused and why), the ref, and the changed paths (the first
//! few by name, all of them counted); never file content.

use serde_json::Value;

use crate::common::{BIN, Harness};
use crate::git_http::{GitUser, api_on, token, working_copy};

/// `audit --json --repo ID` as another process, its push records (receive-pack).
fn push_records(h: &Harness, repo: &str) -> Vec<Value> {
    records(h, repo)
        .into_iter()
        .filter(|r| r["action"].as_str().unwrap().ends_with("/git-receive-pack"))
        .collect()
}

/// `audit --json --repo ID` as another process.
fn records(h: &Harness, repo: &str) -> Vec<Value> {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["audit", "--json", "--repo", repo])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

fn audit_text(h: &Harness) -> String {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .arg("audit")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

// A push's record was made when git's answer began, before `main` moved: it said `ok`
// for a push then refused, and named neither heads nor paths.
#[tokio::test(flavor = "multi_thread")]
async fn push_records_said_ok_before_the_outcome_and_without_heads() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let before = h.store.head(&id).unwrap();
    for i in 0..25 {
        std::fs::write(
            wc.join(format!("f{i:02}.txt")),
            "SECRET-CONTENT-never-recorded\n",
        )
        .unwrap();
    }
    std::fs::write(wc.join("a.txt"), "changed\n").unwrap();
    git.ok(&wc, &["add", "-A"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "Add 25 files"]);
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    let after = h.store.head(&id).unwrap();

    // Written before `git push` returned: no waiting here.
    let records = push_records(&h, &id.to_string());
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["outcome"], "ok", "{r:#}");
    assert_eq!(r["refs"], "refs/heads/main");
    assert_eq!(r["head_before"], before.as_str());
    assert_eq!(r["head_after"], after.as_str());
    assert_eq!(r["paths"], 26);
    let shown: Vec<&str> = r["changed_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), 20, "{shown:?}");
    assert_eq!(shown[0], "a.txt");
    assert!(shown.contains(&"f00.txt"));
    let text = audit_text(&h);
    assert!(
        text.contains("ref refs/heads/main  paths 26: a.txt, f00.txt"),
        "{text}"
    );
    assert!(text.contains("(+6 more)"), "{text}");
    assert!(!text.contains("SECRET-CONTENT"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_pushes_are_recorded_refused_with_why_and_no_heads() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");

    // Refused by the store's rules, in the hook: a symbolic link.
    std::os::unix::fs::symlink("a.txt", wc.join("link")).unwrap();
    git.ok(&wc, &["add", "-A"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "a link"]);
    git.fails(&wc, &["push", "origin", "main"]);
    // Refused before git starts: another branch.
    git.fails(&wc, &["push", "origin", "HEAD:refs/heads/other"]);

    let records = push_records(&h, &id.to_string());
    assert_eq!(records.len(), 2, "{records:#?}");
    let (hook, branch) = (&records[0], &records[1]);
    assert_eq!(hook["outcome"], "refused", "{hook:#}");
    assert!(
        hook["reason"].as_str().unwrap().contains("symbolic link"),
        "{hook:#}"
    );
    assert_eq!(hook["refs"], "refs/heads/main");
    assert!(
        hook["head_after"].is_null() && hook["paths"].is_null(),
        "{hook:#}"
    );
    assert_eq!(branch["outcome"], "refused", "{branch:#}");
    assert_eq!(branch["refs"], "refs/heads/other");
    assert!(
        branch["reason"].as_str().unwrap().contains("main"),
        "{branch:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_with_a_revoked_or_expired_token_is_recorded_as_such() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let url = crate::git_http::url(&api, &id, &t);
    git.ok(git.home.path(), &["clone", "--quiet", &url, "wc"]);
    let wc = git.dir("wc");
    std::fs::write(wc.join("b.txt"), "b\n").unwrap();
    git.ok(&wc, &["add", "-A"]);
    git.ok(&wc, &["commit", "--quiet", "-m", "b"]);
    h.store.revoke_token(&t).unwrap();
    git.fails(&wc, &["push", "origin", "main"]);
    // The refusal at the door is a read of the refs: recorded with the next batch.
    let short = scoped_repo_mcp::audit::short_id(&t);
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = records(&h, &id.to_string());
        if rows.iter().any(|r| r["outcome"] == "refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused: Vec<&Value> = rows.iter().filter(|r| r["outcome"] == "refused").collect();
    assert!(!refused.is_empty(), "{rows:#?}");
    for r in refused {
        assert_eq!(r["credential"], "revoked token", "{r:#}");
        assert_eq!(r["credential_id"], short.as_str(), "{r:#}");
    }

    // An expired token likewise.
    let lapsing = h
        .store
        .create_token("lapsing", &[id], Some(1))
        .unwrap()
        .token;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = crate::git_http::url(&api, &id, &lapsing);
    git.ok(&wc, &["remote", "set-url", "origin", &url]);
    git.fails(&wc, &["push", "origin", "main"]);
    let short = scoped_repo_mcp::audit::short_id(&lapsing);
    let mut expired = Vec::new();
    for _ in 0..50 {
        expired = records(&h, &id.to_string())
            .into_iter()
            .filter(|r| r["credential_id"] == short.as_str())
            .collect();
        if !expired.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!expired.is_empty(), "no record of the expired token's push");
    for r in &expired {
        assert_eq!(r["credential"], "expired token", "{r:#}");
        assert_eq!(r["outcome"], "refused", "{r:#}");
    }
}

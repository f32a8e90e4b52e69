//! Inputs the server refuses: out-of-scope repos, malformed IDs, unsafe paths, content
//! over the limits, costly or broken patterns. Each refusal is a tool error that names
//! the problem, and nothing changes.

use serde_json::{Value, json};

use crate::common::{Harness, call, ok, refused};
use crate::on_both_backends;

on_both_backends!(
    every_repo_tool_refuses_a_repo_outside_the_scope,
    repo_ids_that_are_not_uuids_are_refused,
    each_class_of_unsafe_path_is_refused_everywhere,
    content_over_the_limits_or_not_text_is_refused,
    queries_too_long_broken_or_too_costly_are_refused,
    malformed_arguments_are_errors_not_crashes,
);

async fn every_repo_tool_refuses_a_repo_outside_the_scope(h: Harness) {
    let mine = h.repo(&[("a.txt", "a\n")]);
    let other = h.repo(&[("a.txt", "secret\n")]);
    let c = h.client_for(&[mine]).await;
    let before = h.store.head(&other).unwrap();
    let o = other.to_string();
    let calls: Vec<(&str, Value)> = vec![
        ("search_repo", json!({"repo_id": o, "query": "secret"})),
        ("read_file", json!({"repo_id": o, "path": "a.txt"})),
        ("list_files", json!({"repo_id": o})),
        (
            "update_repo_files",
            json!({"repo_id": o, "operations": [{"type": "write", "path": "x", "content": "x"}]}),
        ),
        ("create_scoped_token", json!({"name": "x", "repo_ids": [o]})),
    ];
    for (tool, args) in calls {
        let msg = refused(&call(&c, tool, args).await);
        assert!(msg.contains(&o), "{tool}: {msg}");
        assert!(
            msg.contains(&mine.to_string()),
            "{tool} lists what the session may use: {msg}"
        );
        assert!(!msg.contains("secret"), "{tool} leaked content");
    }
    assert_eq!(h.store.head(&other).unwrap(), before);
    assert!(h.store.tokens().unwrap().is_empty());
}

async fn repo_ids_that_are_not_uuids_are_refused(h: Harness) {
    let mine = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[mine]).await;
    for bad in [
        "",
        "../etc",
        "not-a-uuid",
        "3f2a6c1e8b0d4c5e9a7f1d2e3c4b5a69",
    ] {
        let msg = refused(&call(&c, "read_file", json!({"repo_id": bad, "path": "a.txt"})).await);
        assert!(msg.contains("not a UUID"), "{bad}: {msg}");
    }
}

async fn each_class_of_unsafe_path_is_refused_everywhere(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let before = h.store.head(&r).unwrap();
    let long = "a/".repeat(2100) + "b";
    let cases = [
        ("/etc/passwd", "absolute"),
        ("../outside", "`..`"),
        ("a/../../b", "`..`"),
        ("./a.txt", "`.`"),
        ("a//b", "empty"),
        ("dir/", "empty"),
        (".git/config", ".git"),
        ("sub/.git/HEAD", ".git"),
        ("a\u{0}b", "NUL"),
        ("a\\b", "backslash"),
        (long.as_str(), "4096"),
    ];
    for (path, needle) in cases {
        let msg = refused(&call(&c, "read_file", json!({"repo_id": id, "path": path})).await);
        assert!(msg.contains(needle), "read_file {path:?}: {msg}");
        let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "write", "path": path, "content": "x"}]})).await);
        assert!(
            msg.contains(needle) && msg.contains("operations[0].path"),
            "write {path:?}: {msg}"
        );
        let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "rename", "path": "a.txt", "new_path": path}]})).await);
        assert!(msg.contains(needle), "rename {path:?}: {msg}");
        let msg = refused(
            &call(
                &c,
                "update_repo_files",
                json!({"repo_id": id, "replace_all": [{"path": path, "content": "x"}]}),
            )
            .await,
        );
        assert!(msg.contains(needle), "replace_all {path:?}: {msg}");
    }
    let msg = refused(&call(&c, "list_files", json!({"repo_id": id, "prefix": "../x"})).await);
    assert!(msg.contains("`..`"), "{msg}");
    assert_eq!(h.store.head(&r).unwrap(), before, "nothing changed");
}

async fn content_over_the_limits_or_not_text_is_refused(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let before = h.store.head(&r).unwrap();

    let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "write", "path": "bin", "content": "a\u{0}b"}]})).await);
    assert!(msg.contains("NUL"), "{msg}");

    let big = "x".repeat(10 * 1024 * 1024 + 1);
    let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "write", "path": "big", "content": big}]})).await);
    assert!(msg.contains("10485760"), "{msg}");

    let nine = "y".repeat(9 * 1024 * 1024);
    let ops: Vec<Value> = (0..6)
        .map(|i| json!({"type": "write", "path": format!("f{i}"), "content": nine}))
        .collect();
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({"repo_id": id, "operations": ops}),
        )
        .await,
    );
    assert!(msg.contains("52428800"), "{msg}");

    let ops: Vec<Value> = (0..10_001)
        .map(|i| json!({"type": "write", "path": format!("f{i}"), "content": "z"}))
        .collect();
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({"repo_id": id, "operations": ops}),
        )
        .await,
    );
    assert!(msg.contains("10000"), "{msg}");

    let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id})).await);
    assert!(msg.contains("nothing to do"), "{msg}");
    let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "delete", "path": "a.txt"}], "replace_all": []})).await);
    assert!(msg.contains("not both"), "{msg}");
    assert_eq!(h.store.head(&r).unwrap(), before, "nothing changed");
}

async fn queries_too_long_broken_or_too_costly_are_refused(h: Harness) {
    let r = h.repo(&[("a.txt", "aaa\n")]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let msg = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": id, "query": "q".repeat(4097)}),
        )
        .await,
    );
    assert!(msg.contains("4096"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": id, "query": "(a", "mode": "regex"}),
        )
        .await,
    );
    assert!(msg.contains("does not compile"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": id, "query": r"(\w{50}){50}", "mode": "regex"}),
        )
        .await,
    );
    assert!(msg.contains("too costly"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": id, "query": "a", "path_glob": "a[b"}),
        )
        .await,
    );
    assert!(msg.contains("not a valid glob"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "search_repo",
            json!({"repo_id": id, "query": "a", "max_results": 0}),
        )
        .await,
    );
    assert!(msg.contains("max_results"), "{msg}");
    // A pattern that would backtrack for ages elsewhere runs in linear time here.
    let evil = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "(a+)+$", "mode": "regex"}),
    )
    .await);
    assert_eq!(evil["hits"].as_array().unwrap().len(), 1);
}

async fn malformed_arguments_are_errors_not_crashes(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let result = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("read_file").with_arguments(
                json!({"repo_id": r.to_string()})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    match result {
        Ok(r) => assert_eq!(r.is_error, Some(true), "a missing field is an error"),
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("path") || e.to_string().contains("-32602"),
            "{e}"
        ),
    }
    // The session survives.
    ok(&call(&c, "list_repos", json!({})).await);
}

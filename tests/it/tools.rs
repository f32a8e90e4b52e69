//! Every tool's success path, through a real MCP client over stdio.

use serde_json::json;

use crate::common::{Harness, call, ok, refused};
use crate::on_both_backends;

on_both_backends!(
    list_repos_shows_only_the_scope_with_heads_and_metadata,
    read_file_whole_and_by_range,
    list_files_with_prefix_glob_and_limit,
    search_literal_regex_auto_glob_context_and_truncation,
    update_writes_deletes_renames_in_one_commit,
    replace_all_replaces_the_whole_tree,
    a_failing_operation_applies_nothing,
    expected_head_refuses_an_update_on_a_moved_repo,
    ranked_search_answers_files_by_relevance_where_the_backend_offers_it,
    files_are_resources_held_to_the_scope,
);

const MAIN_RS: &str =
    "fn main() {\n    let retries = 3;\n    println!(\"{}\", backoff(retries));\n}\n";
const LIB_RS: &str =
    "/// Exponential backoff.\npub fn backoff(n: u32) -> u64 {\n    2u64.pow(n)\n}\n";

async fn list_repos_shows_only_the_scope_with_heads_and_metadata(h: Harness) {
    let a = h.repo(&[("a.txt", "a\n")]);
    let _b = h.repo(&[("b.txt", "b\n")]);
    let c = h.client_for(&[a]).await;
    let out = ok(&call(&c, "list_repos", json!({})).await);
    let repos = out["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["repo_id"], a.to_string());
    assert_eq!(repos[0]["head"], h.store.head(&a).unwrap());
    assert_eq!(repos[0]["metadata"]["name"], "test");
    assert!(repos[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(repos[0]["updated_at"].as_str().unwrap().ends_with('Z'));
}

async fn read_file_whole_and_by_range(h: Harness) {
    let r = h.repo(&[("src/main.rs", MAIN_RS)]);
    let c = h.client_for(&[r]).await;
    let whole = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "src/main.rs"}),
    )
    .await);
    assert_eq!(whole["content"], MAIN_RS);
    assert_eq!(whole["total_lines"], 4);
    assert_eq!(whole["start_line"], 1);
    assert_eq!(whole["end_line"], 4);
    assert_eq!(whole["head"], h.store.head(&r).unwrap());
    let part = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "src/main.rs", "start_line": 2, "end_line": 3}),
    )
    .await);
    assert_eq!(
        part["content"],
        "    let retries = 3;\n    println!(\"{}\", backoff(retries));\n"
    );
    assert_eq!(part["start_line"], 2);
    assert_eq!(part["end_line"], 3);
    // An end past the last line is clamped rather than refused.
    let tail = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": r.to_string(), "path": "src/main.rs", "start_line": 4, "end_line": 99}),
    )
    .await);
    assert_eq!(tail["content"], "}\n");
    let missing = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": r.to_string(), "path": "src/nope.rs"}),
        )
        .await,
    );
    assert!(missing.contains("src/nope.rs"), "{missing}");
    let past = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": r.to_string(), "path": "src/main.rs", "start_line": 9}),
        )
        .await,
    );
    assert!(past.contains("4 line"), "{past}");
    let dir = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": r.to_string(), "path": "src"}),
        )
        .await,
    );
    assert!(dir.contains("directory"), "{dir}");
}

async fn list_files_with_prefix_glob_and_limit(h: Harness) {
    let r = h.repo(&[
        ("src/main.rs", MAIN_RS),
        ("src/lib.rs", LIB_RS),
        ("srcx/other.rs", "x\n"),
        ("README.md", "# r\n"),
    ]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let all = ok(&call(&c, "list_files", json!({"repo_id": id})).await);
    assert_eq!(
        all["paths"],
        json!(["README.md", "src/lib.rs", "src/main.rs", "srcx/other.rs"])
    );
    assert_eq!(all["truncated"], false);
    let under = ok(&call(&c, "list_files", json!({"repo_id": id, "prefix": "src/"})).await);
    assert_eq!(under["paths"], json!(["src/lib.rs", "src/main.rs"]));
    let globbed = ok(&call(&c, "list_files", json!({"repo_id": id, "glob": "*.rs"})).await);
    assert_eq!(globbed["total_matching"], 3);
    let limited = ok(&call(&c, "list_files", json!({"repo_id": id, "limit": 1})).await);
    assert_eq!(limited["paths"], json!(["README.md"]));
    assert_eq!(limited["truncated"], true);
    assert_eq!(limited["total_matching"], 4);
}

async fn search_literal_regex_auto_glob_context_and_truncation(h: Harness) {
    let r = h.repo(&[
        ("src/main.rs", MAIN_RS),
        ("src/lib.rs", LIB_RS),
        ("notes.md", "Backoff notes\n"),
    ]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();

    let lit = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "backoff(", "mode": "literal"}),
    )
    .await);
    assert_eq!(lit["mode"], "literal");
    let hits: Vec<(String, u64)> = lit["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_string(),
                h["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        vec![
            ("src/lib.rs".to_string(), 2),
            ("src/main.rs".to_string(), 3)
        ]
    );
    assert_eq!(lit["hits"][0]["matches"], json!([{"start": 7, "end": 15}]));
    assert_eq!(lit["head"], h.store.head(&r).unwrap());

    let re = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": r"fn \w+\(", "mode": "regex"}),
    )
    .await);
    assert_eq!(re["hits"].as_array().unwrap().len(), 2);

    let auto = ok(&call(&c, "search_repo", json!({"repo_id": id, "query": r"u\d+"})).await);
    assert_eq!(auto["mode"], "regex");
    let auto_lit = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "retries"}),
    )
    .await);
    assert_eq!(auto_lit["mode"], "literal");

    let insensitive = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "backoff", "case_sensitive": false, "path_glob": "*.md"}),
    )
    .await);
    assert_eq!(insensitive["hits"].as_array().unwrap().len(), 1);
    assert_eq!(insensitive["hits"][0]["path"], "notes.md");

    let ctx = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "let retries", "context_lines": 1}),
    )
    .await);
    assert_eq!(ctx["hits"][0]["before"], json!(["fn main() {"]));
    assert_eq!(
        ctx["hits"][0]["after"],
        json!(["    println!(\"{}\", backoff(retries));"])
    );

    let cut = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "backoff", "max_results": 1}),
    )
    .await);
    assert_eq!(cut["hits"].as_array().unwrap().len(), 1);
    assert_eq!(cut["truncated"], true);
}

async fn update_writes_deletes_renames_in_one_commit(h: Harness) {
    let r = h.repo(&[
        ("src/main.rs", MAIN_RS),
        ("src/lib.rs", LIB_RS),
        ("old/a.txt", "a\n"),
        ("old/b.txt", "b\n"),
    ]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let before = h.store.head(&r).unwrap();
    let out = ok(&call(
        &c,
        "update_repo_files",
        json!({
            "repo_id": id,
            "expected_head": before,
            "message": "Agent edit",
            "operations": [
                {"type": "write", "path": "src/new.rs", "content": "pub const X: u8 = 1;\n"},
                {"type": "write", "path": "src/lib.rs", "content": "// changed\n"},
                {"type": "delete", "path": "src/main.rs"},
                {"type": "rename", "path": "old", "new_path": "new"}
            ]
        }),
    )
    .await);
    assert_eq!(out["committed"], true);
    assert_eq!(
        out["changed_files"],
        json!([
            "new/a.txt",
            "new/b.txt",
            "old/a.txt",
            "old/b.txt",
            "src/lib.rs",
            "src/main.rs",
            "src/new.rs"
        ])
    );
    let head = out["head"].as_str().unwrap().to_string();
    assert_ne!(head, before);
    assert_eq!(h.store.head(&r).unwrap(), head);
    let files = h.store.list_files(&r).unwrap().paths;
    assert_eq!(
        files,
        vec!["new/a.txt", "new/b.txt", "src/lib.rs", "src/new.rs"]
    );

    // The commit is real git history: one commit, its parent the old head, the message kept.
    let repo = git2::Repository::open_bare(h.store.git_dir(&r)).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(&head).unwrap())
        .unwrap();
    assert_eq!(commit.parent_id(0).unwrap().to_string(), before);
    assert_eq!(commit.message(), Some("Agent edit"));

    // Writing the same content again changes nothing and makes no commit.
    let same = ok(&call(&c, "update_repo_files", json!({"repo_id": id, "operations": [{"type": "write", "path": "src/lib.rs", "content": "// changed\n"}]})).await);
    assert_eq!(same["committed"], false);
    assert_eq!(same["head"], head);
}

async fn replace_all_replaces_the_whole_tree(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n"), ("dir/b.txt", "b\n")]);
    let c = h.client_for(&[r]).await;
    let out = ok(&call(&c, "update_repo_files", json!({
        "repo_id": r.to_string(),
        "replace_all": [{"path": "c.txt", "content": "c\n"}, {"path": "a.txt", "content": "a\n"}]
    })).await);
    assert_eq!(out["changed_files"], json!(["c.txt", "dir/b.txt"]));
    assert_eq!(
        h.store.list_files(&r).unwrap().paths,
        vec!["a.txt", "c.txt"]
    );
}

async fn a_failing_operation_applies_nothing(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let before = h.store.head(&r).unwrap();
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({
                "repo_id": r.to_string(),
                "operations": [
                    {"type": "write", "path": "b.txt", "content": "b\n"},
                    {"type": "delete", "path": "missing.txt"}
                ]
            }),
        )
        .await,
    );
    assert!(msg.contains("missing.txt"), "{msg}");
    assert_eq!(h.store.head(&r).unwrap(), before);
    assert_eq!(h.store.list_files(&r).unwrap().paths, vec!["a.txt"]);
    for (ops, needle) in [
        (
            json!([{"type": "rename", "path": "nope", "new_path": "x"}]),
            "nope",
        ),
        (
            json!([{"type": "write", "path": "a.txt/inner", "content": "x"}]),
            "is a file",
        ),
        (
            json!([{"type": "write", "path": "d/x", "content": "x"}, {"type": "write", "path": "d", "content": "x"}]),
            "directory",
        ),
        (
            json!([{"type": "write", "path": "b", "content": "x"}, {"type": "rename", "path": "b", "new_path": "a.txt"}]),
            "destination exists",
        ),
    ] {
        let msg = refused(
            &call(
                &c,
                "update_repo_files",
                json!({"repo_id": r.to_string(), "operations": ops}),
            )
            .await,
        );
        assert!(msg.contains(needle), "{msg}");
        assert_eq!(h.store.head(&r).unwrap(), before);
    }
}

async fn expected_head_refuses_an_update_on_a_moved_repo(h: Harness) {
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let stale = h.store.head(&r).unwrap();
    let first = ok(&call(&c, "update_repo_files", json!({"repo_id": r.to_string(), "expected_head": stale, "operations": [{"type": "write", "path": "a.txt", "content": "one\n"}]})).await);
    let msg = refused(&call(&c, "update_repo_files", json!({"repo_id": r.to_string(), "expected_head": stale, "operations": [{"type": "write", "path": "a.txt", "content": "two\n"}]})).await);
    assert!(
        msg.contains(first["head"].as_str().unwrap()),
        "the refusal names the current head: {msg}"
    );
    assert_eq!(
        h.store
            .read_file(&r, &"a.txt".parse_path(), None)
            .unwrap()
            .content,
        "one\n"
    );
}

async fn ranked_search_answers_files_by_relevance_where_the_backend_offers_it(h: Harness) {
    let r = h.repo(&[
        ("src/main.rs", MAIN_RS),
        ("src/lib.rs", LIB_RS),
        ("notes.md", "Shopping list\n"),
    ]);
    let c = h.client_for(&[r]).await;
    let result = call(
        &c,
        "search_repo",
        json!({"repo_id": r.to_string(), "query": "exponential backoff", "mode": "ranked"}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["mode"], "ranked");
    assert_eq!(out["ranked"][0]["path"], "src/lib.rs");
    if h.is_relace() {
        // The API scales scores so the best file scores 1.
        assert!(out["ranked"][0]["score"].as_f64().unwrap() > 0.5);
    }
    let paths: Vec<&str> = out["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(!paths.contains(&"notes.md"), "{paths:?}");
    assert_eq!(out["head"], h.store.head(&r).unwrap());
}

trait ParsePath {
    fn parse_path(&self) -> scoped_repo_mcp::paths::RepoPath;
}
impl ParsePath for &str {
    fn parse_path(&self) -> scoped_repo_mcp::paths::RepoPath {
        scoped_repo_mcp::paths::RepoPath::parse(self).unwrap()
    }
}

async fn files_are_resources_held_to_the_scope(h: Harness) {
    use rmcp::model::{ReadResourceRequestParams, ResourceContents};
    let r = h.repo(&[("src/lib.rs", LIB_RS), ("README.md", "# r\n")]);
    let other = h.repo(&[("secret.txt", "s\n")]);
    let c = h.client_for(&[r]).await;
    let templates = c.list_all_resource_templates().await.unwrap();
    assert_eq!(templates[0].uri_template, "repo://{repo_id}/{path}");
    let listed: Vec<String> = c
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(
        listed,
        vec![
            format!("repo://{r}/README.md"),
            format!("repo://{r}/src/lib.rs")
        ]
    );
    let read = c
        .read_resource(ReadResourceRequestParams::new(format!(
            "repo://{r}/src/lib.rs"
        )))
        .await
        .unwrap();
    match &read.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => assert_eq!(text, LIB_RS),
        other => panic!("expected text, got {other:?}"),
    }
    let err = c
        .read_resource(ReadResourceRequestParams::new(format!(
            "repo://{other}/secret.txt"
        )))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    let err = c
        .read_resource(ReadResourceRequestParams::new(format!("repo://{r}/../x")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");
    // A missing file is the same error on every backend.
    let err = c
        .read_resource(ReadResourceRequestParams::new(format!(
            "repo://{r}/nope.txt"
        )))
        .await
        .unwrap_err();
    match err {
        rmcp::ServiceError::McpError(data) => {
            assert_eq!(
                data.code,
                rmcp::model::ErrorCode::RESOURCE_NOT_FOUND,
                "{data:?}"
            )
        }
        other => panic!("expected an MCP error, got {other}"),
    }
}

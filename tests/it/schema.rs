//! The tools' published schemas: a committed snapshot, explicit annotations, and the
//! tools a read-only session is shown.

use serde_json::Value;

use crate::common::Harness;

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/tools_list.json"
);

#[tokio::test(flavor = "multi_thread")]
async fn tools_list_matches_the_committed_snapshot() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    let mut tools = c.list_all_tools().await.unwrap();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let actual = serde_json::to_string_pretty(&tools).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(SNAPSHOT).expect(
        "tests/snapshots/tools_list.json is missing; run with UPDATE_SNAPSHOTS=1 to write it",
    );
    assert_eq!(
        actual, expected,
        "tools/list changed; if on purpose, run the tests with UPDATE_SNAPSHOTS=1 and commit the diff"
    );
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "blame_file",
            "compare",
            "create_scoped_token",
            "get_commit",
            "list_commits",
            "list_files",
            "list_repos",
            "read_file",
            "revert_commit",
            "revoke_token",
            "search_history",
            "search_repo",
            "update_repo_files"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tool_sets_every_annotation_and_has_schemas_with_described_fields() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client_for(&[r]).await;
    for tool in c.list_all_tools().await.unwrap() {
        let a = tool
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no annotations", tool.name));
        assert!(a.read_only_hint.is_some(), "{}: read_only_hint", tool.name);
        assert!(
            a.destructive_hint.is_some(),
            "{}: destructive_hint",
            tool.name
        );
        assert!(
            a.idempotent_hint.is_some(),
            "{}: idempotent_hint",
            tool.name
        );
        assert!(
            a.open_world_hint.is_some(),
            "{}: open_world_hint",
            tool.name
        );
        let read_only = [
            "list_repos",
            "search_repo",
            "read_file",
            "list_files",
            "list_commits",
            "get_commit",
            "compare",
            "blame_file",
            "search_history",
        ]
        .contains(&tool.name.as_ref());
        assert_eq!(a.read_only_hint, Some(read_only), "{}", tool.name);
        assert!(
            tool.output_schema.is_some(),
            "{} has an output schema",
            tool.name
        );
        assert!(
            tool.description.as_deref().is_some_and(|d| d.len() > 20),
            "{} is described",
            tool.name
        );
        let props = tool
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (field, schema) in props {
            assert!(
                schema.get("description").is_some(),
                "{}.{field} has no description",
                tool.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_sessions_list_no_write_or_mint_tool() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let c = h.client(&["--repo", &r.to_string(), "--read-only"]).await;
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blame_file",
            "compare",
            "get_commit",
            "list_commits",
            "list_files",
            "list_repos",
            "read_file",
            "search_history",
            "search_repo"
        ]
    );
    // A valid update, so that only read-only can be why it is refused.
    let head = h.store.head(&r).unwrap();
    let err = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("update_repo_files").with_arguments(
                serde_json::json!({"repo_id": r.to_string(), "operations": [{"type": "write", "path": "new.txt", "content": "x\n"}]})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    match err {
        Err(e) => assert!(e.to_string().contains("tool not found"), "{e}"),
        Ok(res) => panic!("an unlisted tool answered: {res:?}"),
    }
    assert_eq!(h.store.head(&r).unwrap(), head, "the update landed");
    let info = c.peer_info().unwrap();
    assert!(
        !info
            .instructions
            .clone()
            .unwrap_or_default()
            .contains("update_repo_files")
    );
}

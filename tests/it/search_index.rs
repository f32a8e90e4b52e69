//! The line-search index follows commits: a search after an update sees the new
//! content and not the removed, and names the head it reflects, whether the commit came
//! through the server or from another process sharing the data directory.

use scoped_repo_mcp::model::{Change, FileOp, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use serde_json::{Value, json};

use crate::common::{Client, Harness, call, ok};

async fn search(c: &Client, id: &str, query: &str) -> Value {
    ok(&call(
        c,
        "search_repo",
        json!({"repo_id": id, "query": query, "mode": "literal", "max_results": 1000}),
    )
    .await)
}

fn paths(answer: &Value) -> Vec<String> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_after_an_update_sees_new_content_and_not_deleted_content() {
    let h = Harness::new();
    let mut files: Vec<(String, String)> = (0..300)
        .map(|i| (format!("src/f{i:03}.rs"), format!("fn filler_{i}() {{}}\n")))
        .collect();
    files.push(("src/old.rs".into(), "const OLD_MARKER: u8 = 1;\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let r = h.repo(&refs);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();

    let first = search(&c, &id, "OLD_MARKER").await;
    assert_eq!(paths(&first), ["src/old.rs"]);
    assert_eq!(first["head"], h.store.head(&r).unwrap());

    let out = ok(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [
            {"type": "delete", "path": "src/old.rs"},
            {"type": "write", "path": "src/new.rs", "content": "const NEW_MARKER: u8 = 2;\n"},
            {"type": "write", "path": "src/f007.rs", "content": "fn changed() { NEW_MARKER }\n"},
        ]}),
    )
    .await);
    let head = out["head"].as_str().unwrap();

    let gone = search(&c, &id, "OLD_MARKER").await;
    assert!(
        paths(&gone).is_empty(),
        "deleted content still found: {gone}"
    );
    assert_eq!(gone["head"], head);
    let new = search(&c, &id, "NEW_MARKER").await;
    assert_eq!(paths(&new), ["src/f007.rs", "src/new.rs"]);
    assert_eq!(new["head"], head);
    let old_line = search(&c, &id, "fn filler_7()").await;
    assert!(
        paths(&old_line).is_empty(),
        "a changed file's old line still found"
    );
    let kept = search(&c, &id, "fn filler_8()").await;
    assert_eq!(paths(&kept), ["src/f008.rs"]);

    // A rename carries the content to its new path.
    ok(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [
            {"type": "rename", "path": "src/new.rs", "new_path": "lib/moved.rs"},
        ]}),
    )
    .await);
    let moved = search(&c, &id, "const NEW_MARKER").await;
    assert_eq!(paths(&moved), ["lib/moved.rs"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_sees_a_commit_made_by_another_process() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "alpha\n"), ("b.txt", "beta\n")]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let first = search(&c, &id, "alpha").await;
    assert_eq!(paths(&first), ["a.txt"]);

    // The harness's own store is a second process's view of the same data directory.
    let spec = UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse("c.txt").unwrap(),
            content: "alpha again\n".into(),
        }]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    };
    let outcome = h.store.update(&r, &spec, "someone else").unwrap();
    let after = search(&c, &id, "alpha").await;
    assert_eq!(paths(&after), ["a.txt", "c.txt"]);
    assert_eq!(after["head"], outcome.head);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_small_commits_stay_consistent_through_overlay_rebuilds() {
    let h = Harness::new();
    let r = h.repo(&[("seed.txt", "seed\n")]);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    search(&c, &id, "seed").await;
    // Enough files that the index folds its overlay into a rebuilt base on the way.
    for batch in 0..3 {
        let ops: Vec<Value> = (0..200)
            .map(|i| json!({"type": "write", "path": format!("d{batch}/f{i}.txt"), "content": format!("token_{batch}_{i}\n")}))
            .collect();
        ok(&call(
            &c,
            "update_repo_files",
            json!({"repo_id": id, "operations": ops}),
        )
        .await);
    }
    let all = search(&c, &id, "token_").await;
    assert_eq!(all["hits"].as_array().unwrap().len(), 600);
    let one = search(&c, &id, "token_2_199").await;
    assert_eq!(paths(&one), ["d2/f199.txt"]);
    assert_eq!(one["head"], h.store.head(&r).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_repo_stores_its_index_and_a_server_loads_it() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(
            src.path().join(format!("f{i}.txt")),
            format!("line {i}\nneedle_{i}\n"),
        )
        .unwrap();
    }
    let report = h
        .store
        .import_dir(src.path(), Default::default(), &|_| {})
        .unwrap();
    let stored = h
        .data_dir()
        .join("index")
        .join(report.repo_id.to_string())
        .join("manifest");
    assert!(stored.is_file(), "the import stored no index");
    // A commit after the stored build: the loading server must carry the index forward.
    let spec = UpdateSpec {
        change: Change::Operations(vec![
            FileOp::Delete {
                path: RepoPath::parse("f7.txt").unwrap(),
            },
            FileOp::Write {
                path: RepoPath::parse("g.txt").unwrap(),
                content: "needle_7 moved\n".into(),
            },
        ]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: None,
    };
    let outcome = h.store.update(&report.repo_id, &spec, "test").unwrap();
    let c = h.client_for(&[report.repo_id]).await;
    let id = report.repo_id.to_string();
    let found = search(&c, &id, "needle_7").await;
    assert_eq!(paths(&found), ["g.txt"]);
    assert_eq!(found["head"], outcome.head);
    assert_eq!(
        search(&c, &id, "needle_").await["hits"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    c.cancel().await.ok();

    // A damaged stored index is rebuilt, never trusted.
    std::fs::write(
        &stored,
        b"scoped-repo-mcp line index 1\nnot really a manifest",
    )
    .unwrap();
    let c = h.client_for(&[report.repo_id]).await;
    let found = search(&c, &id, "needle_42").await;
    assert_eq!(paths(&found), ["f42.txt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_during_commits_from_another_process_never_mix_two_heads() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "gen_0\n"), ("b.txt", "gen_0\n")]);
    let id = r.to_string();
    let first_head = h.store.head(&r).unwrap();
    // Two servers on one data directory: one writes, the other searches.
    let writer = h.client_for(&[r]).await;
    let reader = h.client_for(&[r]).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let updates = {
        let (id, done) = (id.clone(), done.clone());
        async move {
            let mut heads = vec![(first_head, 0)];
            for g in 1..=20 {
                let text = format!("gen_{g}\n");
                let out = ok(&call(
                    &writer,
                    "update_repo_files",
                    json!({"repo_id": id, "operations": [
                        {"type": "write", "path": "a.txt", "content": text},
                        {"type": "write", "path": "b.txt", "content": text},
                    ]}),
                )
                .await);
                heads.push((out["head"].as_str().unwrap().to_string(), g));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            heads
        }
    };
    let searches = async {
        let mut seen = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let a = search(&reader, &id, "gen_").await;
            let texts: Vec<String> = a["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["text"].as_str().unwrap().to_string())
                .collect();
            seen.push((a["head"].as_str().unwrap().to_string(), texts));
        }
        seen
    };
    let (heads, seen) = tokio::join!(updates, searches);
    let gen_of: std::collections::HashMap<String, u32> = heads.into_iter().collect();
    assert!(!seen.is_empty());
    for (head, texts) in seen {
        let g = gen_of
            .get(&head)
            .unwrap_or_else(|| panic!("an answer named an unknown head {head}"));
        assert_eq!(
            texts,
            vec![format!("gen_{g}"), format!("gen_{g}")],
            "the answer at {head} mixed heads"
        );
    }
}

/// The `(path, line)` of each hit, in answer order.
fn locations(answer: &Value) -> Vec<(String, u64)> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_string(),
                h["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regex_without_literals_stops_at_the_first_hits_in_path_order() {
    // Several MiB, so the search is cut into blocks on more than one thread; hits are
    // sparse, one file holds many of them, and the filler has no trigram to narrow by.
    let filler = "lower case prose with Some_Mixed_Case_Words and ABCD_EFGH only\n".repeat(140);
    let mut files = Vec::new();
    for i in 0..400 {
        let mut text = filler.clone();
        if i % 5 == 2 {
            text.push_str(&format!(
                "let x = FOOB_{i:04}_BARQ_ZZZZ;\nconst WXYZ_ABCD_EFGH_IJKL: u8 = {i};\n"
            ));
        }
        if i == 37 {
            text.push_str(&"MANY_HITS_HERE_OKAY\n".repeat(30));
        }
        files.push((format!("d{:02}/f{i:03}.txt", i % 17), text));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let h = Harness::new();
    let r = h.repo(&refs);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let pattern = "[A-Z]{4}_[A-Z]{4}_[A-Z]{4}_[A-Z]{4}";
    let ask = |max: usize| {
        let c = &c;
        let id = &id;
        async move {
            ok(&call(
                c,
                "search_repo",
                json!({"repo_id": id, "query": pattern, "mode": "regex", "max_results": max}),
            )
            .await)
        }
    };

    let full = ask(1000).await;
    assert_eq!(full["truncated"], false);
    let all = locations(&full);
    // What the files hold, computed here: every matching line, in path then line order.
    let re = regex::Regex::new(pattern).unwrap();
    let mut expected: Vec<(String, u64)> = files
        .iter()
        .flat_map(|(p, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| re.is_match(l))
                .map(|(n, _)| (p.clone(), n as u64 + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    assert!(all.len() > 100, "{} hits", all.len());

    for n in [1, 7, 29, 30, 31, 50, all.len() - 1] {
        let first = ask(n).await;
        assert_eq!(locations(&first), all[..n], "first {n}");
        assert_eq!(first["truncated"], true, "first {n}");
        assert_eq!(first["head"], full["head"]);
    }
    let exact = ask(all.len()).await;
    assert_eq!(locations(&exact), all);
    assert_eq!(exact["truncated"], false);
}

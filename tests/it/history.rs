//! The history tools through a real MCP client: commits, diffs, blame and reads at a
//! ref, checked against the `git` program run on a clone of the store's repo, and held
//! to a path-limited token's view.

use std::path::Path;
use std::process::Command;

use scoped_repo_mcp::model::{Change, FileOp, MintSpec, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use serde_json::{Value, json};

use crate::common::{Client, Harness, call, ok, refused, tool_names};

pub(crate) fn write(
    h: &Harness,
    r: &RepoId,
    author: &str,
    message: &str,
    files: &[(&str, &str)],
) -> String {
    let ops = files
        .iter()
        .map(|(p, c)| FileOp::Write {
            path: RepoPath::parse(p).unwrap(),
            content: c.to_string(),
        })
        .collect();
    update(h, r, author, message, ops)
}

pub(crate) fn update(
    h: &Harness,
    r: &RepoId,
    author: &str,
    message: &str,
    ops: Vec<FileOp>,
) -> String {
    let spec = UpdateSpec {
        change: Change::Operations(ops),
        expected_head: None,
        message: Some(message.to_string()),
        control: Default::default(),
        visible: None,
    };
    h.store.update(r, &spec, author).unwrap().head
}

pub(crate) fn mint(h: &Harness, repos: &[RepoId], paths: &[&str]) -> String {
    h.store
        .mint(&MintSpec {
            name: "web-agent".into(),
            repo_ids: repos.to_vec(),
            ttl_seconds: Some(3600),
            read_only: true,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            can_delegate: false,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token
}

async fn on_token(h: &Harness, token: &str) -> Client {
    h.client_env(&["--backend", "local"], &[("RELACE_API_KEY", token)])
        .await
}

/// A repo with front-end and back-end work interleaved, by two authors, with a rename
/// and a deletion on each side.
pub(crate) fn monorepo(h: &Harness) -> RepoId {
    let r = h.repo(&[
        ("web/a.ts", "export const a = 1;\n"),
        ("api/secret.rs", "const KEY: &str = \"one\";\n"),
        ("README.md", "# mono\n"),
    ]);
    write(
        h,
        &r,
        "front",
        "web: add b\n\nThe second module.",
        &[("web/b.ts", "export const b = 2;\n")],
    );
    write(
        h,
        &r,
        "back",
        "api: rotate the secret KEY\n\nbody of a hidden commit",
        &[("api/secret.rs", "const KEY: &str = \"two\";\n")],
    );
    write(
        h,
        &r,
        "front",
        "web and api together",
        &[
            (
                "web/a.ts",
                "export const a = 10;\nexport const needle = 1;\n",
            ),
            ("api/secret.rs", "const KEY: &str = \"three\";\n"),
        ],
    );
    update(
        h,
        &r,
        "front",
        "web: move b",
        vec![FileOp::Rename {
            path: RepoPath::parse("web/b.ts").unwrap(),
            new_path: RepoPath::parse("web/c.ts").unwrap(),
        }],
    );
    update(
        h,
        &r,
        "back",
        "api: drop the secret",
        vec![FileOp::Delete {
            path: RepoPath::parse("api/secret.rs").unwrap(),
        }],
    );
    write(
        h,
        &r,
        "front",
        "web: drop the needle",
        &[("web/a.ts", "export const a = 10;\n")],
    );
    r
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn clone(h: &Harness, r: &RepoId) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(h.store.git_dir(r))
        .arg(dir.path().join("c"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

fn ids(v: &Value) -> Vec<String> {
    v["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_path_limited_token_sees_the_history_git_shows_for_its_paths() {
    let h = Harness::new();
    let r = monorepo(&h);
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    let id = r.to_string();

    // The whole history, for an unlimited session, is git's.
    let full = h.client_for(&[r]).await;
    let all = ok(&call(&full, "list_commits", json!({"repo_id": id})).await);
    assert_eq!(ids(&all), lines(&git(&work, &["log", "--format=%H"])));
    assert_eq!(all["head"], h.store.head(&r).unwrap());
    let rename = &all["commits"][2];
    assert_eq!(rename["subject"], "web: move b");
    assert_eq!(
        rename["changes"],
        json!([{"path": "web/c.ts", "status": "renamed", "old_path": "web/b.ts"}])
    );
    assert_eq!(all["commits"][1]["author"], "back");

    // The web token's view: exactly `git log -- web`, only web paths in change lists.
    let c = on_token(&h, &mint(&h, &[r], &["web/**"])).await;
    let mine = ok(&call(&c, "list_commits", json!({"repo_id": id})).await);
    let expected = lines(&git(&work, &["log", "--format=%H", "--", "web"]));
    assert_eq!(ids(&mine), expected);
    for commit in mine["commits"].as_array().unwrap() {
        for change in commit["changes"].as_array().unwrap() {
            assert!(
                change["path"].as_str().unwrap().starts_with("web/"),
                "{change}"
            );
            assert!(change.get("old_path").is_none(), "{change}");
        }
    }
    let text = serde_json::to_string(&mine).unwrap();
    assert!(
        !text.contains("secret") && !text.contains("hidden"),
        "{text}"
    );

    // Filtering by a path outside the view picks out nothing, even commits that also
    // changed visible paths.
    let probe = ok(&call(
        &c,
        "list_commits",
        json!({"repo_id": id, "path": "api/secret.rs"}),
    )
    .await);
    assert_eq!(probe["commits"], json!([]));

    // Paging walks the same list.
    let first = ok(&call(&c, "list_commits", json!({"repo_id": id, "max_results": 2})).await);
    assert_eq!(ids(&first), expected[..2]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = ok(&call(
        &c,
        "list_commits",
        json!({"repo_id": id, "max_results": 50, "cursor": cursor}),
    )
    .await);
    assert_eq!(ids(&rest), expected[2..]);
    assert!(rest.get("next_cursor").is_none());

    // A commit changing both sides: its diff is `git show -- web`, patch for patch.
    let both = &expected[2];
    let shown = ok(&call(
        &c,
        "get_commit",
        json!({"repo_id": id, "commit": both, "detail": "patch"}),
    )
    .await);
    assert_eq!(shown["commit"]["subject"], "web and api together");
    let patch: String = shown["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["patch"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(patch, git(&work, &["show", "--format=", both, "--", "web"]));
    assert_eq!(shown["files"][0]["additions"], 2);
    assert_eq!(shown["files"][0]["deletions"], 1);
    assert_eq!(shown["total_files"], 1);

    // A commit that touched only the api side does not exist for this token: not its
    // message, not its id.
    let hidden = lines(&git(&work, &["log", "--format=%H", "--", "api"]))
        .into_iter()
        .find(|c| !expected.contains(c))
        .unwrap();
    for rev in [hidden.clone(), hidden[..10].to_string()] {
        let e = refused(&call(&c, "get_commit", json!({"repo_id": id, "commit": rev})).await);
        assert!(e.contains("no commit"), "{e}");
        assert!(!e.contains("rotate") && !e.contains("drop"), "{e}");
    }
    // Blame of a path outside the view is a missing file; inside it, git's answer.
    let e = refused(
        &call(
            &c,
            "blame_file",
            json!({"repo_id": id, "path": "api/secret.rs", "commit": "main~1"}),
        )
        .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    // Reading at a ref is held to the same paths.
    let e = refused(
        &call(
            &c,
            "read_file",
            json!({"repo_id": id, "path": "api/secret.rs", "ref": "main~2"}),
        )
        .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    let listed = ok(&call(&c, "list_files", json!({"repo_id": id, "ref": "main~3"})).await);
    assert_eq!(listed["paths"], json!(["web/a.ts", "web/b.ts"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_of_another_repo_in_the_same_store_are_not_found() {
    let h = Harness::new();
    let r = monorepo(&h);
    let other = h.repo(&[("x.txt", "x\n")]);
    write(&h, &other, "someone", "other work", &[("x.txt", "y\n")]);
    let foreign = h.store.head(&other).unwrap();
    // The other repo's commits are even copied into this repo's object database (as
    // shared or fetched objects would be): present there, yet not in its history.
    let fetched = Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(&r))
        .args(["fetch", "-q", "--no-write-fetch-head"])
        .arg(h.store.git_dir(&other))
        .arg("main")
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    let present = Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(&r))
        .args(["cat-file", "-e", &foreign])
        .status()
        .unwrap();
    assert!(present.success());
    let c = h.client_for(&[r, other]).await;
    let id = r.to_string();
    for rev in [foreign.clone(), foreign[..8].to_string()] {
        for (tool, args) in [
            ("get_commit", json!({"repo_id": id, "commit": rev})),
            (
                "read_file",
                json!({"repo_id": id, "path": "x.txt", "ref": rev}),
            ),
            ("list_files", json!({"repo_id": id, "ref": rev})),
            ("compare", json!({"repo_id": id, "from": rev, "to": "main"})),
            (
                "blame_file",
                json!({"repo_id": id, "path": "README.md", "commit": rev}),
            ),
        ] {
            let e = refused(&call(&c, tool, args).await);
            assert!(e.contains("no commit"), "{tool} {rev}: {e}");
        }
    }
    // The same id answers in its own repo.
    let own = ok(&call(
        &c,
        "get_commit",
        json!({"repo_id": other.to_string(), "commit": foreign}),
    )
    .await);
    assert_eq!(own["commit"]["subject"], "other work");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_in_an_undocumented_form_is_refused_clearly() {
    let h = Harness::new();
    let r = monorepo(&h);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    for bad in [
        "main@{1}",
        "@{-1}",
        ":/secret",
        "--all",
        "-n1",
        "main^",
        "HEAD~1..main",
        "abc",
    ] {
        for (tool, args) in [
            (
                "read_file",
                json!({"repo_id": id, "path": "README.md", "ref": bad}),
            ),
            ("list_files", json!({"repo_id": id, "ref": bad})),
            ("get_commit", json!({"repo_id": id, "commit": bad})),
        ] {
            let e = refused(&call(&c, tool, args).await);
            assert!(
                e.contains("not a revision") && e.contains("main~N"),
                "{tool} {bad}: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_at_a_ref_compare_blame_and_history_search() {
    let h = Harness::new();
    let r = monorepo(&h);
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    let c = h.client_for(&[r]).await;
    let id = r.to_string();

    let old = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": id, "path": "web/a.ts", "ref": "HEAD~1"}),
    )
    .await);
    assert_eq!(
        old["content"],
        "export const a = 10;\nexport const needle = 1;\n"
    );
    assert_eq!(old["head"], git(&work, &["rev-parse", "HEAD~1"]).trim());
    let first = git(&work, &["rev-list", "--max-parents=0", "HEAD"]);
    let first = first.trim();
    let at_first = ok(&call(
        &c,
        "read_file",
        json!({"repo_id": id, "path": "web/a.ts", "ref": &first[..7]}),
    )
    .await);
    assert_eq!(at_first["content"], "export const a = 1;\n");

    let diff = ok(&call(
        &c,
        "compare",
        json!({"repo_id": id, "from": first, "to": "main", "detail": "stats"}),
    )
    .await);
    let name_status = git(&work, &["diff", "--name-status", "-M", first, "HEAD"]);
    let ours: Vec<String> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let letter = git_letter(f);
            format!("{letter}\t{}", f["path"].as_str().unwrap())
        })
        .collect();
    assert_eq!(ours, lines(&name_status));

    let blame = ok(&call(
        &c,
        "blame_file",
        json!({"repo_id": id, "path": "web/a.ts", "commit": "main~1"}),
    )
    .await);
    let porcelain = git(
        &work,
        &["blame", "--line-porcelain", "HEAD~1", "--", "web/a.ts"],
    );
    let shas: Vec<&str> = porcelain
        .lines()
        .filter(|l| {
            l.len() > 40
                && l.as_bytes()[40] == b' '
                && l[..40].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|l| &l[..40])
        .collect();
    let ranges = blame["ranges"].as_array().unwrap();
    assert_eq!(blame["total_lines"], 2);
    let mut from_ranges = Vec::new();
    for range in ranges {
        for _ in range["start_line"].as_u64().unwrap()..=range["end_line"].as_u64().unwrap() {
            from_ranges.push(range["commit"].as_str().unwrap());
        }
    }
    assert_eq!(from_ranges, shas);
    assert_eq!(ranges[0]["subject"], "web and api together");
    assert_eq!(ranges[0]["author"], "front");

    let grep = ok(&call(
        &c,
        "search_history",
        json!({"repo_id": id, "query": "SECRET", "mode": "message"}),
    )
    .await);
    assert_eq!(
        ids(&grep),
        lines(&git(&work, &["log", "-i", "--grep=secret", "--format=%H"]))
    );
    let pickaxe = lines(&git(&work, &["log", "-Sneedle", "--format=%H"]));
    let added = ok(&call(
        &c,
        "search_history",
        json!({"repo_id": id, "query": "needle", "mode": "added"}),
    )
    .await);
    let removed = ok(&call(
        &c,
        "search_history",
        json!({"repo_id": id, "query": "needle", "mode": "removed"}),
    )
    .await);
    assert_eq!(ids(&added).len() + ids(&removed).len(), pickaxe.len());
    assert_eq!(ids(&added), pickaxe[1..]);
    assert_eq!(ids(&removed), pickaxe[..1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_patch_is_cut_at_the_cap_and_read_on_by_file() {
    let h = Harness::new();
    let r = h.repo(&[("seed.txt", "s\n")]);
    let big: String = (0..3000)
        .map(|i| format!("line {i} of a long file\n"))
        .collect();
    let files: Vec<(String, String)> = (0..6).map(|i| (format!("f{i}.txt"), big.clone())).collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let head = write(&h, &r, "bulk", "six large files", &refs);
    let c = h.client_for(&[r]).await;
    let id = r.to_string();
    let mut seen = Vec::new();
    let mut cursor = 0u64;
    loop {
        let page = ok(&call(
            &c,
            "get_commit",
            json!({"repo_id": id, "commit": head, "detail": "patch", "file_cursor": cursor}),
        )
        .await);
        assert_eq!(page["total_files"], 6);
        let bytes: usize = page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["patch"].as_str().unwrap().len())
            .sum();
        assert!(bytes <= 256 * 1024, "{bytes}");
        for f in page["files"].as_array().unwrap() {
            seen.push(f["path"].as_str().unwrap().to_string());
            assert_eq!(f["additions"], 3000);
        }
        match page.get("next_file_cursor").and_then(Value::as_u64) {
            Some(n) => {
                assert_eq!(page["truncated"], true);
                cursor = n;
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..6).map(|i| format!("f{i}.txt")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_tools_are_read_only_and_listed_for_read_only_tokens() {
    let h = Harness::new();
    let r = monorepo(&h);
    let c = on_token(&h, &mint(&h, &[r], &[])).await;
    let names = tool_names(&c).await;
    for t in [
        "list_commits",
        "get_commit",
        "compare",
        "blame_file",
        "search_history",
    ] {
        assert!(names.contains(&t.to_string()), "{t} missing from {names:?}");
    }
    let tools = c.list_all_tools().await.unwrap();
    for t in tools
        .iter()
        .filter(|t| t.name.contains("commit") || t.name == "compare")
    {
        let a = t.annotations.as_ref().unwrap();
        assert_eq!(a.read_only_hint, Some(true), "{}", t.name);
    }
}

fn cli(h: &Harness, args: &[&str]) -> String {
    let out = Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(args)
        .env_remove("RELACE_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn revert_commit_undoes_one_commit_on_top_and_a_conflict_changes_nothing() {
    let h = Harness::new();
    let r = monorepo(&h);
    let id = r.to_string();
    let c = h.client_for(&[r]).await;
    let before = h.store.head(&r).unwrap();
    let moved = ok(&call(
        &c,
        "list_commits",
        json!({"repo_id": id, "path": "web/c.ts"}),
    )
    .await);
    let move_commit = moved["commits"][0]["id"].as_str().unwrap().to_string();

    // A stale expected_head is refused before anything is done.
    let stale = refused(
        &call(
            &c,
            "revert_commit",
            json!({"repo_id": id, "commit": move_commit, "expected_head": move_commit}),
        )
        .await,
    );
    assert!(stale.contains("expected"), "{stale}");

    let done = ok(&call(
        &c,
        "revert_commit",
        json!({"repo_id": id, "commit": &move_commit[..9], "expected_head": before}),
    )
    .await);
    assert_eq!(done["committed"], true);
    assert_eq!(done["changed_files"], json!(["web/b.ts", "web/c.ts"]));
    // Seen from other processes: git on a fresh clone, and another server.
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    assert_eq!(git(&work, &["rev-parse", "HEAD"]).trim(), done["head"]);
    assert_eq!(git(&work, &["rev-parse", "HEAD~1"]).trim(), before);
    assert_eq!(
        git(&work, &["log", "-1", "--format=%an|%s%n%b"]).trim(),
        format!("scoped-repo-mcp|Revert \"web: move b\"\nThis reverts commit {move_commit}.")
    );
    assert_eq!(git(&work, &["ls-files"]), "README.md\nweb/a.ts\nweb/b.ts\n");
    let other = h.client_for(&[r]).await;
    let b = ok(&call(
        &other,
        "read_file",
        json!({"repo_id": id, "path": "web/b.ts"}),
    )
    .await);
    assert_eq!(b["content"], "export const b = 2;\n");
    let audit = cli(&h, &["audit", "--json", "--repo", &id]);
    let row = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["action"] == "revert_commit" && r["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no revert_commit record in {audit}"));
    assert_eq!(row["head_after"], done["head"]);

    // Reverting the secret's second value conflicts with the third: refused, nothing
    // changed.
    let rotate = lines(&git(&work, &["log", "--format=%H", "--grep=rotate"]));
    let head = h.store.head(&r).unwrap();
    let e = refused(
        &call(
            &c,
            "revert_commit",
            json!({"repo_id": id, "commit": rotate[0]}),
        )
        .await,
    );
    assert!(
        e.contains("conflicts") && e.contains("nothing changed"),
        "{e}"
    );
    let main = Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(&r))
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(main.stdout).unwrap().trim(), head);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_and_path_limited_tokens_revert_only_what_they_may() {
    let h = Harness::new();
    let r = monorepo(&h);
    let id = r.to_string();
    let reader = on_token(&h, &mint(&h, &[r], &["web/**"])).await;
    assert!(
        !tool_names(&reader)
            .await
            .contains(&"revert_commit".to_string())
    );
    // Not listed, and not routed: the call is refused as an unknown tool.
    let unlisted = reader
        .call_tool(
            rmcp::model::CallToolRequestParams::new("revert_commit").with_arguments(
                json!({"repo_id": id, "commit": "main"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    assert!(unlisted.is_err(), "{unlisted:?}");

    let writer = h
        .store
        .mint(&MintSpec {
            name: "web-writer".into(),
            repo_ids: vec![r],
            ttl_seconds: Some(3600),
            read_only: false,
            paths: vec!["web/**".into()],
            can_delegate: false,
            rate: None,
            parent: None,
        })
        .unwrap()
        .token;
    let w = on_token(&h, &writer).await;
    let head = h.store.head(&r).unwrap();
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    // A commit that touched both sides is refused whole; one that touched only the
    // hidden side does not exist.
    let both = lines(&git(&work, &["log", "--format=%H", "--grep=together"]));
    let e = refused(
        &call(
            &w,
            "revert_commit",
            json!({"repo_id": id, "commit": both[0]}),
        )
        .await,
    );
    assert!(e.contains("outside this token's paths"), "{e}");
    let hidden = lines(&git(
        &work,
        &["log", "--format=%H", "--grep=drop the secret"],
    ));
    let e = refused(
        &call(
            &w,
            "revert_commit",
            json!({"repo_id": id, "commit": hidden[0]}),
        )
        .await,
    );
    assert!(e.contains("no commit") && !e.contains("secret"), "{e}");
    assert_eq!(h.store.head(&r).unwrap(), head);
    // The last web commit reverts.
    let done = ok(&call(
        &w,
        "revert_commit",
        json!({"repo_id": id, "commit": "main"}),
    )
    .await);
    assert_eq!(done["changed_files"], json!(["web/a.ts"]));
    let fresh = clone(&h, &r);
    assert_eq!(
        git(&fresh.path().join("c"), &["log", "-1", "--format=%an"]).trim(),
        "web-writer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rest_history_routes_are_held_to_the_same_paths() {
    use reqwest::{Method, StatusCode};
    let h = Harness::new();
    let r = monorepo(&h);
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    let web = mint(&h, &[r], &["web/**"]);
    let api = crate::api::start_api_with(&h, std::process::Stdio::null(), &[]).await;
    let b = &api.base;
    let t = Some(web.as_str());
    let send = crate::api::send;

    let (s, listed) = send(Method::GET, format!("{b}/repo/{r}/commits"), t, None).await;
    assert_eq!(s, StatusCode::OK, "{listed}");
    let expected = lines(&git(&work, &["log", "--format=%H", "--", "web"]));
    assert_eq!(ids(&listed), expected);
    assert!(!listed.to_string().contains("secret"), "{listed}");
    let (s, found) = send(
        Method::GET,
        format!("{b}/repo/{r}/commits?query=needle&mode=added"),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["commits"].as_array().unwrap().len(), 1);

    let both = &expected[2];
    let (s, shown) = send(
        Method::GET,
        format!("{b}/repo/{r}/commit/{both}?detail=patch"),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(
        shown["files"][0]["patch"].as_str().unwrap(),
        git(&work, &["show", "--format=", both, "--", "web"])
    );
    let hidden = lines(&git(&work, &["log", "--format=%H", "-1", "--", "api"]));
    let (s, body) = send(
        Method::GET,
        format!("{b}/repo/{r}/commit/{}", hidden[0]),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = send(
        Method::GET,
        format!("{b}/repo/{r}/commit/main@%7B1%7D"),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = send(
        Method::GET,
        format!("{b}/repo/{r}/blame/api/secret.rs?commit=main~2"),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, blame) = send(Method::GET, format!("{b}/repo/{r}/blame/web/a.ts"), t, None).await;
    assert_eq!(s, StatusCode::OK, "{blame}");
    assert_eq!(blame["ranges"][0]["author"], "front");
    let (s, diff) = send(
        Method::GET,
        format!("{b}/repo/{r}/compare?from=main~6&to=main"),
        t,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{diff}");
    let paths: Vec<&str> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["web/a.ts", "web/c.ts"]);

    // A read-only token may not revert; the account key may, seen by git after.
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/revert"),
        t,
        Some(json!({"commit": "main"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = send(
        Method::POST,
        format!("{b}/repo/{r}/revert"),
        Some(&api.key),
        Some(json!({"commit": "main"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["changed_files"], json!(["web/a.ts"]));
    let after = clone(&h, &r);
    assert_eq!(
        git(&after.path().join("c"), &["show", "HEAD:web/a.ts"]),
        "export const a = 10;\nexport const needle = 1;\n"
    );
}

/// The letter `git diff --name-status` gives a changed file's status.
fn git_letter(change: &Value) -> &'static str {
    match change["status"].as_str().unwrap() {
        "added" => "A",
        "deleted" => "D",
        "renamed" => "R",
        _ => "M",
    }
}

/// Write onto repo `r`'s `main` the commits `(parents by index, commit time)`, each
/// on top of the repo's first commit, writing `web/w.txt` (even ones) or `api/a.txt`
/// (odd ones); a commit with no parents has the repo's head as its parent.
fn dated_history(h: &Harness, r: &RepoId, commits: &[(&[usize], i64)]) {
    // The store's own writes are dated when they land: a skewed clock needs commits
    // written with chosen dates, straight into the repo's git directory.
    let repo = git2::Repository::open_bare(h.store.git_dir(r)).unwrap();
    let base = repo.refname_to_id("refs/heads/main").unwrap();
    let base_tree = repo.find_commit(base).unwrap().tree().unwrap();
    let mut ids: Vec<git2::Oid> = Vec::new();
    for (i, (parents, time)) in commits.iter().enumerate() {
        let mut index = git2::Index::new().unwrap();
        index.read_tree(&base_tree).unwrap();
        let path = if i % 2 == 0 { "web/w.txt" } else { "api/a.txt" };
        let blob = repo.blob(format!("{i}\n").as_bytes()).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: 0,
                id: blob,
                flags: path.len() as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            })
            .unwrap();
        let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(*time, 0)).unwrap();
        let mut parent_ids: Vec<git2::Oid> = parents.iter().map(|p| ids[*p]).collect();
        if parent_ids.is_empty() {
            parent_ids.push(base);
        }
        let parents: Vec<_> = parent_ids
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let refs: Vec<_> = parents.iter().collect();
        ids.push(
            repo.commit(None, &sig, &sig, &format!("c{i}"), &tree, &refs)
                .unwrap(),
        );
    }
    repo.reference(
        "refs/heads/main",
        *ids.last().unwrap(),
        true,
        "dated history",
    )
    .unwrap();
}

/// Every commit id of a listing read page by page with `max_results`.
async fn paged(c: &Client, args: Value, max_results: u64) -> Vec<String> {
    let mut args = args;
    args["max_results"] = json!(max_results);
    let mut out = Vec::new();
    loop {
        let page = ok(&call(c, "list_commits", args.clone()).await);
        out.extend(ids(&page));
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(cursor) => args["cursor"] = json!(cursor),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_history_with_a_skewed_clock_lists_every_commit_once_in_git_logs_order() {
    // Listing pages once walked from the head in an order of their own; each page now
    // goes on from the walk's state: merges, equal dates and commits dated before
    // their parents must neither repeat nor lose a commit across pages.
    let h = Harness::new();
    let r = h.repo(&[("web/w.txt", "w\n"), ("api/a.txt", "a\n")]);
    let now = 1_800_000_000;
    dated_history(
        &h,
        &r,
        &[
            (&[], now + 100),
            (&[0], now + 200),
            (&[1], now + 300),
            (&[1], now + 250),
            (&[3], now + 90),
            (&[2], now + 300),
            (&[5, 4], now + 80),
            (&[6], now + 400),
            (&[7, 2], now + 300),
            (&[8], now + 300),
            (&[9, 3], now + 500),
        ],
    );
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    let expected = lines(&git(&work, &["log", "--format=%H"]));
    let id = r.to_string();
    let full = h.client_for(&[r]).await;
    for size in [1, 2, 3, 5, 200] {
        assert_eq!(
            paged(&full, json!({"repo_id": id}), size).await,
            expected,
            "pages of {size}"
        );
    }
    // A path filter and a path-limited view: the same commits page by page as in one
    // answer, each once.
    let web = paged(&full, json!({"repo_id": id, "path": "web"}), 200).await;
    assert!(!web.is_empty() && web.len() < expected.len());
    assert_eq!(
        paged(&full, json!({"repo_id": id, "path": "web"}), 2).await,
        web
    );
    let c = on_token(&h, &mint(&h, &[r], &["api/**"])).await;
    let whole = paged(&c, json!({"repo_id": id}), 200).await;
    assert!(!whole.is_empty() && whole.len() < expected.len());
    assert_eq!(paged(&c, json!({"repo_id": id}), 1).await, whole);
    let mut once = whole.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), whole.len());
}

/// Each commit of `git log --name-status -- PATH` with its change letters and paths.
fn git_name_status(work: &Path, path: &str) -> Vec<(String, Vec<String>)> {
    let out = git(
        work,
        &["log", "--name-status", "--format=commit %H", "--", path],
    );
    let mut commits: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        match line.strip_prefix("commit ") {
            Some(id) => commits.push((id.to_string(), Vec::new())),
            None => {
                // `R100\told\tnew`: the similarity is git's own measure, not compared.
                let mut parts = line.split('\t');
                let letter = &parts.next().unwrap()[..1];
                let paths: Vec<&str> = parts.collect();
                commits
                    .last_mut()
                    .unwrap()
                    .1
                    .push(format!("{letter} {}", paths.join(" ")));
            }
        }
    }
    commits
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_by_path_shows_the_changes_under_it_as_git_log_name_status_does() {
    // With a path, each commit's change list is what `git log --name-status -- PATH`
    // shows: files moved in or out of it added or deleted, renames within it found.
    let h = Harness::new();
    let r = monorepo(&h);
    let rename = |from: &str, to: &str| FileOp::Rename {
        path: RepoPath::parse(from).unwrap(),
        new_path: RepoPath::parse(to).unwrap(),
    };
    write(&h, &r, "back", "api: add x", &[("api/x.rs", "fn x() {}\n")]);
    update(
        &h,
        &r,
        "back",
        "move x into web",
        vec![rename("api/x.rs", "web/x.rs")],
    );
    update(
        &h,
        &r,
        "front",
        "move a out of web",
        vec![rename("web/a.ts", "api/a.ts")],
    );
    update(
        &h,
        &r,
        "front",
        "rename within web",
        vec![rename("web/c.ts", "web/d/c.ts")],
    );
    write(
        &h,
        &r,
        "front",
        "both sides",
        &[
            ("web/x.rs", "fn x() { 1 }\n"),
            ("api/secret.rs", "const KEY: u8 = 4;\n"),
        ],
    );
    let tmp = clone(&h, &r);
    let work = tmp.path().join("c");
    let id = r.to_string();
    let full = h.client_for(&[r]).await;
    for path in ["web", "web/x.rs", "api"] {
        let listed = ok(&call(&full, "list_commits", json!({"repo_id": id, "path": path})).await);
        let ours: Vec<(String, Vec<String>)> = listed["commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let changes = c["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        let letter = git_letter(f);
                        match f["old_path"].as_str() {
                            Some(old) => format!("{letter} {old} {}", f["path"].as_str().unwrap()),
                            None => format!("{letter} {}", f["path"].as_str().unwrap()),
                        }
                    })
                    .collect();
                (c["id"].as_str().unwrap().to_string(), changes)
            })
            .collect();
        assert_eq!(ours, git_name_status(&work, path), "path {path}");
    }
}

//! Start-up refusals: a bad setting stops the server with one line saying how to fix it.

use std::process::Stdio;

use crate::common::Harness;

async fn start_fails(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut cmd = h.command(&all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected start-up to fail: {out:?}"
    );
    assert!(out.stdout.is_empty(), "nothing on the protocol channel");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_scope_refuses_to_start_and_says_how_to_give_one() {
    let h = Harness::new();
    h.repo(&[("a.txt", "a\n")]);
    let msg = start_fails(&h, &[], &[]).await;
    assert!(
        msg.contains("--repo") && msg.contains("SCOPED_REPO_IDS"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_settings_are_named() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let msg = start_fails(&h, &["--repo", "nope"], &[]).await;
    assert!(msg.contains("not a UUID"), "{msg}");
    let msg = start_fails(&h, &["--repo", "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69"], &[]).await;
    assert!(msg.contains("not in the store"), "{msg}");
    let msg = start_fails(
        &h,
        &["--repo", &r.to_string(), "--max-token-ttl", "soon"],
        &[],
    )
    .await;
    assert!(msg.contains("--max-token-ttl"), "{msg}");
    let msg = start_fails(
        &h,
        &[
            "--repo",
            &r.to_string(),
            "--transport",
            "http",
            "--public-url",
            "mcp.example.com",
        ],
        &[],
    )
    .await;
    assert!(
        msg.contains("--public-url") && msg.contains("https://"),
        "{msg}"
    );
    let minted = h.store.create_token("t", &[r], None).unwrap();
    h.store.revoke_token(&minted.token).unwrap();
    let msg = start_fails(
        &h,
        &["--backend", "local"],
        &[("RELACE_API_KEY", &minted.token)],
    )
    .await;
    assert!(msg.contains("revoked"), "{msg}");
    assert!(!msg.contains(&minted.token), "the secret is not echoed");
}

#[tokio::test(flavor = "multi_thread")]
async fn relace_backend_settings_and_an_unreachable_api_are_named() {
    let h = Harness::relace();
    let r = h.repo(&[("a.txt", "a\n")]);
    let key = h.api.as_ref().unwrap().key.clone();
    let id = r.to_string();
    let msg = start_fails(&h, &["--backend", "relace", "--repo", &id], &[]).await;
    assert!(msg.contains("RELACE_API_KEY"), "{msg}");
    let msg = start_fails(
        &h,
        &[
            "--backend",
            "relace",
            "--repo",
            &id,
            "--base-url",
            "ftp:/nowhere",
        ],
        &[("RELACE_API_KEY", &key)],
    )
    .await;
    assert!(msg.contains("not an http(s) URL"), "{msg}");
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let msg = start_fails(
        &h,
        &[
            "--backend",
            "relace",
            "--repo",
            &id,
            "--base-url",
            "http://127.0.0.1:1/v1",
        ],
        &[("RELACE_API_KEY", &key)],
    )
    .await;
    assert!(
        msg.contains("could not get an answer") && msg.contains("RELACE_BASE_URL"),
        "{msg}"
    );
    assert!(!msg.contains(&key), "the secret is not echoed");
    let base = h.api.as_ref().unwrap().base.clone();
    let msg = start_fails(
        &h,
        &[
            "--backend",
            "relace",
            "--repo",
            "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69",
            "--base-url",
            &base,
        ],
        &[("RELACE_API_KEY", &key)],
    )
    .await;
    assert!(msg.contains("not known to the Relace API"), "{msg}");
    let msg = start_fails(
        &h,
        &["--backend", "relace", "--repo", &id, "--base-url", &base],
        &[(
            "RELACE_API_KEY",
            "rlc-0000000000000000000000000000000000000000",
        )],
    )
    .await;
    assert!(msg.contains("401"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scoped_repo_ids_env_gives_the_scope() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let b = h.repo(&[("b.txt", "b\n")]);
    let joined = format!("{a},{b}");
    let c = h.client_env(&[], &[("SCOPED_REPO_IDS", &joined)]).await;
    let out =
        crate::common::ok(&crate::common::call(&c, "list_repos", serde_json::json!({})).await);
    assert_eq!(out["repos"].as_array().unwrap().len(), 2);
}

#[test]
fn admin_cli_imports_a_directory_honouring_gitignore_and_keeping_binaries() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("src")).unwrap();
    std::fs::create_dir_all(src.path().join("target")).unwrap();
    std::fs::write(src.path().join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    std::fs::write(src.path().join(".gitignore"), "target/\n").unwrap();
    std::fs::write(src.path().join("target/out.txt"), "build output\n").unwrap();
    std::fs::write(src.path().join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    let out = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["repo", "create", "--metadata", "name=demo", "--from-dir"])
        .arg(src.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id: scoped_repo_mcp::model::RepoId = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        h.store.list_files(&id).unwrap().paths,
        vec![".gitignore", "logo.png", "src/lib.rs"]
    );
    assert_eq!(h.store.list_files(&id).unwrap().binary, vec!["logo.png"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("imported 3 file(s) (1 binary)"), "{stderr}");
    assert!(
        stderr.contains("\"mcpServers\""),
        "prints a client config: {stderr}"
    );
    assert_eq!(h.store.repo(&id).unwrap().metadata["name"], "demo");

    let tok = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args([
            "token",
            "create",
            "--repo",
            &id.to_string(),
            "--ttl",
            "1h",
            "--name",
            "ci",
        ])
        .output()
        .unwrap();
    assert!(tok.status.success());
    let token = String::from_utf8(tok.stdout).unwrap().trim().to_string();
    let list = std::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(["token", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains("ci") && listing.contains("live"),
        "{listing}"
    );
    assert!(
        !listing.contains(&token),
        "token list never shows the secret"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_flag_imports_once_and_reuses_the_repo_afterwards() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("main.py"), "print('hi')\n").unwrap();
    let dir = src.path().to_str().unwrap().to_string();
    let first = h.client(&["--import", &dir]).await;
    let out = crate::common::list_repos_imported(&first).await;
    let id = out["repos"][0]["repo_id"].as_str().unwrap().to_string();
    crate::common::ok(
        &crate::common::call(
            &first,
            "update_repo_files",
            serde_json::json!({"repo_id": id, "operations": [{"type": "write", "path": "agent.txt", "content": "kept\n"}]}),
        )
        .await,
    );
    let second = h.client(&["--import", &dir]).await;
    let out =
        crate::common::ok(&crate::common::call(&second, "list_repos", serde_json::json!({})).await);
    assert_eq!(out["repos"].as_array().unwrap().len(), 1);
    assert_eq!(
        out["repos"][0]["repo_id"], id,
        "the same repo, with the agent's change kept"
    );
    assert_eq!(h.store.repo_rows().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_http_limits_are_named() {
    let h = Harness::new();
    let r = h.repo(&[("a.txt", "a\n")]);
    let r = r.to_string();
    for (flag, value) in [
        ("--header-read-timeout", "0s"),
        ("--idle-timeout", "soon"),
        ("--max-connections", "0"),
        ("--max-sessions-per-token", "0"),
        ("--session-idle-timeout", "0s"),
    ] {
        let args = [
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--repo",
            &r,
        ];
        let msg = start_fails(&h, &[&args[..], &[flag, value]].concat(), &[]).await;
        assert!(msg.contains(flag), "{flag}: {msg}");
    }
    let out = h
        .command(&["api", "--listen", "127.0.0.1:0", "--max-connections", "0"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-connections"));
}

// A mistyped --data-dir was made silently, parents and all, and served as a second,
// empty store.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_whose_parent_is_missing_was_made_silently() {
    let h = Harness::new();
    let typo = h.data_dir().join("no-such-parent").join("store");
    let out = tokio::process::Command::new(crate::common::BIN)
        .arg("--data-dir")
        .arg(&typo)
        .args(["serve", "--import", "."])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&typo.display().to_string()) && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(!typo.parent().unwrap().exists(), "nothing was made");
}

// A server that made a new, empty store said nothing, so a client started without the
// shell's environment served an empty second store in silence.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_empty_store_was_made_in_silence() {
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("store");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.txt"), "alpha\n").unwrap();
    let serve = |dir: std::path::PathBuf| {
        let work = work.path().to_path_buf();
        async move {
            let out = tokio::process::Command::new(crate::common::BIN)
                .arg("--data-dir")
                .arg(&dir)
                .arg("serve")
                .arg("--import")
                .arg(&work)
                .env_remove("RUST_LOG")
                .env_remove("RELACE_API_KEY")
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
    };
    let first = serve(fresh.clone()).await;
    assert!(
        first.contains("made a new, empty store at")
            && first.contains(&fresh.display().to_string()),
        "{first}"
    );
    // The second start finds the store the first made, and says nothing of the kind.
    let second = serve(fresh).await;
    assert!(!second.contains("new, empty store"), "{second}");
}

// A token of the local store, given without --backend local, went to the Relace API
// (RELACE_API_KEY picks it by default), and the refusal advised asking for a new token.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_token_sent_to_the_relace_api_was_told_to_ask_for_a_new_one() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let token = h.store.create_token("local", &[id], None).unwrap().token;
    // Another store's API stands in for the hosted service: it knows no such token.
    let elsewhere = Harness::new();
    let api = crate::api::start_api_with(&elsewhere, Stdio::null(), &[]).await;
    let msg = start_fails(
        &h,
        &[],
        &[("RELACE_API_KEY", &token), ("RELACE_BASE_URL", &api.base)],
    )
    .await;
    assert!(
        msg.contains("add --backend local")
            && msg.contains(&h.data_dir().display().to_string())
            && !msg.contains("ask for a new one"),
        "{msg}"
    );
    // A token neither knows keeps the old advice.
    let msg = start_fails(
        &h,
        &[],
        &[
            (
                "RELACE_API_KEY",
                "rlcr-0000000000000000000000000000000000000000",
            ),
            ("RELACE_BASE_URL", &api.base),
        ],
    )
    .await;
    assert!(msg.contains("ask for a new one"), "{msg}");
}

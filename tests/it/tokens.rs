//! Minting and revoking tokens, and sessions that run on a token.

use serde_json::json;

use crate::common::{Harness, call, ok, refused};
use crate::on_both_backends;

on_both_backends!(
    minted_token_opens_a_narrow_session_and_revocation_ends_it_at_once,
    an_expired_token_is_refused_on_its_next_use,
    minting_is_held_to_the_scope_and_the_ttl_cap,
    revoking_a_token_outside_the_scope_is_refused,
);

async fn minted_token_opens_a_narrow_session_and_revocation_ends_it_at_once(h: Harness) {
    let a = h.repo(&[("a.txt", "a\n")]);
    let b = h.repo(&[("b.txt", "b\n")]);
    let operator = h.client_for(&[a, b]).await;
    let minted = ok(&call(
        &operator,
        "create_scoped_token",
        json!({"name": "sub-agent", "repo_ids": [a.to_string()], "ttl_seconds": 600}),
    )
    .await);
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("rlcr-") && token.len() == 45, "{token}");
    assert_eq!(minted["repo_ids"], json!([a.to_string()]));
    assert!(minted["expires_at"].as_str().unwrap().ends_with('Z'));

    let agent = h
        .client_env(&["--backend", "local"], &[("RELACE_API_KEY", &token)])
        .await;
    let tools: Vec<String> = agent
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        !tools.contains(&"create_scoped_token".to_string()),
        "a token session cannot mint: {tools:?}"
    );
    assert!(tools.contains(&"update_repo_files".to_string()));
    let listed = ok(&call(&agent, "list_repos", json!({})).await);
    assert_eq!(listed["repos"].as_array().unwrap().len(), 1);
    let out = refused(
        &call(
            &agent,
            "read_file",
            json!({"repo_id": b.to_string(), "path": "b.txt"}),
        )
        .await,
    );
    assert!(
        out.contains(&b.to_string()) && out.contains(&a.to_string()),
        "{out}"
    );
    ok(&call(&agent, "update_repo_files", json!({"repo_id": a.to_string(), "operations": [{"type": "write", "path": "by-agent.txt", "content": "x\n"}]})).await);

    let revoked = ok(&call(&operator, "revoke_token", json!({"token": token})).await);
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["name"], "sub-agent");
    assert!(
        !revoked.to_string().contains("rlcr-"),
        "the answer never carries the secret"
    );

    let after = refused(
        &call(
            &agent,
            "read_file",
            json!({"repo_id": a.to_string(), "path": "a.txt"}),
        )
        .await,
    );
    assert!(after.contains("revoked"), "{after}");
    let again = refused(&call(&operator, "revoke_token", json!({"token": token})).await);
    assert!(again.contains("nothing to revoke"), "{again}");
}

async fn an_expired_token_is_refused_on_its_next_use(h: Harness) {
    let a = h.repo(&[("a.txt", "a\n")]);
    let minted = h.store.create_token("short", &[a], Some(2)).unwrap();
    let agent = h
        .client_env(
            &["--backend", "local"],
            &[("RELACE_API_KEY", &minted.token)],
        )
        .await;
    ok(&call(
        &agent,
        "read_file",
        json!({"repo_id": a.to_string(), "path": "a.txt"}),
    )
    .await);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let msg = refused(
        &call(
            &agent,
            "read_file",
            json!({"repo_id": a.to_string(), "path": "a.txt"}),
        )
        .await,
    );
    assert!(msg.contains("expired"), "{msg}");
}

async fn minting_is_held_to_the_scope_and_the_ttl_cap(h: Harness) {
    let a = h.repo(&[("a.txt", "a\n")]);
    let outside = h.repo(&[("o.txt", "o\n")]);
    let c = h
        .client(&["--repo", &a.to_string(), "--max-token-ttl", "10m"])
        .await;
    let msg = refused(
        &call(
            &c,
            "create_scoped_token",
            json!({"name": "x", "repo_ids": [a.to_string(), outside.to_string()]}),
        )
        .await,
    );
    assert!(msg.contains(&outside.to_string()), "{msg}");
    let msg = refused(
        &call(
            &c,
            "create_scoped_token",
            json!({"name": "x", "repo_ids": [a.to_string()], "ttl_seconds": 601}),
        )
        .await,
    );
    assert!(msg.contains("600"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "create_scoped_token",
            json!({"name": "x", "repo_ids": []}),
        )
        .await,
    );
    assert!(msg.contains("repo_ids"), "{msg}");
    let msg = refused(
        &call(
            &c,
            "create_scoped_token",
            json!({"name": "", "repo_ids": [a.to_string()]}),
        )
        .await,
    );
    assert!(msg.contains("name"), "{msg}");
    // The default TTL is an hour, cut to the operator's cap.
    let minted = ok(&call(
        &c,
        "create_scoped_token",
        json!({"name": "x", "repo_ids": [a.to_string()]}),
    )
    .await);
    let (_, info) = h.store.token(minted["token"].as_str().unwrap()).unwrap();
    let ttl = info.unwrap().expires_at.unwrap() - scoped_repo_mcp::model::unix_now();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        h.store.tokens().unwrap().len(),
        1,
        "refused mints stored nothing"
    );
}

async fn revoking_a_token_outside_the_scope_is_refused(h: Harness) {
    let a = h.repo(&[("a.txt", "a\n")]);
    let other = h.repo(&[("o.txt", "o\n")]);
    let foreign = h
        .store
        .create_token("foreign", &[a, other], Some(600))
        .unwrap();
    let c = h.client_for(&[a]).await;
    let msg = refused(&call(&c, "revoke_token", json!({"token": foreign.token})).await);
    assert!(msg.contains(&other.to_string()), "{msg}");
    assert!(
        !msg.contains(&foreign.token),
        "the refusal never echoes the secret"
    );
    let (state, _) = h.store.token(&foreign.token).unwrap();
    assert_eq!(state, scoped_repo_mcp::store::TokenState::Live);
    let unknown = refused(
        &call(
            &c,
            "revoke_token",
            json!({"token": "rlcr-0000000000000000000000000000000000000000"}),
        )
        .await,
    );
    assert!(unknown.contains("nothing to revoke"), "{unknown}");
}

#[test]
fn tokens_are_stored_only_as_hashes() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let minted = h.store.create_token("t", &[a], None).unwrap();
    let db = crate::common::read_db_file(&h.data_dir().join("store.db")).unwrap();
    let wal = crate::common::read_db_file(&h.data_dir().join("store.db-wal")).unwrap_or_default();
    let secret = minted.token.as_bytes();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the token's secret is on disk"
        );
    }
    let hash = scoped_repo_mcp::credentials::secrets::hash(&minted.token);
    assert!(
        db.windows(hash.len()).any(|w| w == hash.as_bytes())
            || wal.windows(hash.len()).any(|w| w == hash.as_bytes()),
        "its hash is"
    );
}

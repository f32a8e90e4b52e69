//! `serve --transport http --oauth`: a client discovers the authorization server,
//! registers (or names itself by a metadata URL), a person signs in and consents, the
//! client exchanges its code and calls within the grant; and the attacks the flow must
//! refuse. The browser is played by plain HTTP requests here (cookies and forms by
//! hand); sign-in links come from `login`, another process on the same data directory.

use base64::Engine as _;
use scoped_repo_mcp::model::{MintSpec, RepoId};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::common::{Harness, HttpServer, call, ok, refused};

const REDIRECT: &str = "http://127.0.0.1/callback";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn base(server: &HttpServer) -> String {
    format!("http://{}", server.addr)
}

fn pkce() -> (String, String) {
    let verifier = format!("v{}", "x".repeat(50));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

async fn register(server: &HttpServer, name: &str) -> String {
    let resp = http()
        .post(format!("{}/oauth/register", base(server)))
        .json(&json!({"client_name": name, "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A browser signed in through a one-time link made by `login`: its session cookie.
async fn sign_in(h: &Harness, server: &HttpServer) -> String {
    let out = h
        .command(&["login", "--url", &base(server)])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let resp = http().get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = session_cookie(&resp).expect("a session cookie");
    // The link works once.
    assert_eq!(http().get(&link).send().await.unwrap().status(), 401);
    cookie
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("srm_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
}

fn authorize_query(client_id: &str, challenge: &str, state: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", "http://127.0.0.1:45678/callback".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
        ("state", state.into()),
    ]
}

/// The consent page's CSRF token.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=csrf value=\"").expect("a CSRF field") + 17;
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// Consent as a person would: open the page, tick `repos`, choose access and
/// lifetime, allow. Answers the redirect's query.
async fn consent(
    server: &HttpServer,
    cookie: &str,
    query: &[(&'static str, String)],
    repos: &[RepoId],
    access: &str,
) -> Vec<(String, String)> {
    let page = http()
        .get(format!("{}/oauth/authorize", base(server)))
        .query(query)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("Nothing here verifies"), "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let mut form: Vec<(&str, String)> = query.to_vec();
    form.push(("csrf", csrf_of(&html)));
    for r in repos {
        form.push(("repo", r.to_string()));
    }
    form.push(("access", access.into()));
    form.push(("paths", String::new()));
    form.push(("ttl", "3600".into()));
    form.push(("decision", "allow".into()));
    // As a browser posts the page's form: with the page's own Origin.
    let resp = http()
        .post(format!("{}/oauth/authorize", base(server)))
        .header("cookie", cookie)
        .header("origin", base(server))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("http://127.0.0.1:45678/callback?"),
        "{location}"
    );
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

async fn token(server: &HttpServer, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
    let resp = http()
        .post(format!("{}/oauth/token", base(server)))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn exchange(
    server: &HttpServer,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> (reqwest::StatusCode, Value) {
    let resource = format!("{}/mcp", base(server));
    token(
        server,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:45678/callback"),
            ("client_id", client_id),
            ("code_verifier", verifier),
            ("resource", &resource),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_signs_in_calls_within_its_grant_refreshes_and_is_revoked() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let b = h.repo(&[("b.txt", "b\n")]);
    let server = h.http(&["--oauth"]);
    // Discovery: the resource names its authorization server, which names endpoints.
    let prm: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        base(&server)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(issuer, base(&server));
    let meta: Value = reqwest::get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));

    let client_id = register(&server, "Test Client").await;
    let cookie = sign_in(&h, &server).await;
    let (verifier, challenge) = pkce();
    let answer = consent(
        &server,
        &cookie,
        &authorize_query(&client_id, &challenge, "st-1"),
        &[a],
        "write",
    )
    .await;
    assert_eq!(param(&answer, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&answer, "iss").as_deref(), Some(issuer.as_str()));
    let code = param(&answer, "code").unwrap();
    let (status, tokens) = exchange(&server, &client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // Calls inside the grant work; outside it, they are refused.
    let client = server.client(Some(&access)).await.unwrap();
    let listed = ok(&call(&client, "list_repos", json!({})).await);
    assert_eq!(listed["repos"].as_array().unwrap().len(), 1);
    ok(&call(
        &client,
        "update_repo_files",
        json!({"repo_id": a.to_string(), "operations": [
            {"type": "write", "path": "new.txt", "content": "by oauth\n"}]}),
    )
    .await);
    refused(
        &call(
            &client,
            "read_file",
            json!({"repo_id": b.to_string(), "path": "b.txt"}),
        )
        .await,
    );
    // `token list`, another process, names the grant by its client.
    let out = h.command(&["token", "list"]).output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("oauth: Test Client"),
        "{out:?}"
    );
    // The code works once: a replay is refused and ends what it gave.
    let (status, body) = exchange(&server, &client_id, &code, &verifier).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        server.client(Some(&access)).await.is_err(),
        "the replay revoked it"
    );

    // A second grant, refreshed, then revoked.
    let answer = consent(
        &server,
        &cookie,
        &authorize_query(&client_id, &challenge, "st-2"),
        &[a, b],
        "read",
    )
    .await;
    let code = param(&answer, "code").unwrap();
    let (_, tokens) = exchange(&server, &client_id, &code, &verifier).await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, rotated) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    assert_eq!(rotated["scope"], "read");
    let client = server.client(Some(&access2)).await.unwrap();
    let listed = ok(&call(&client, "list_repos", json!({})).await);
    assert_eq!(listed["repos"].as_array().unwrap().len(), 2);
    // RFC 7009 revocation of the refresh token ends the grant's access tokens too.
    let resp = http()
        .post(format!("{}/oauth/revoke", base(&server)))
        .form(&[("token", rotated["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let after = client
        .call_tool(rmcp::model::CallToolRequestParams::new("list_repos"))
        .await;
    assert!(
        after.is_err() || after.unwrap().is_error == Some(true),
        "a revoked grant must not list"
    );
    // The first grant's refresh token is dead with its access token.
    let (status, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_token_reuse_revokes_its_family_and_token_revoke_ends_a_grant() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&["--oauth"]);
    let client_id = register(&server, "Reuser").await;
    let cookie = sign_in(&h, &server).await;
    let (verifier, challenge) = pkce();
    let grant = |state: &'static str| authorize_query(&client_id, &challenge, state);
    let code = param(
        &consent(&server, &cookie, &grant("s"), &[a], "read").await,
        "code",
    )
    .unwrap();
    let (_, t) = exchange(&server, &client_id, &code, &verifier).await;
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let refresh = |r: String| {
        let client_id = client_id.clone();
        let server = &server;
        async move {
            token(
                server,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &r),
                    ("client_id", &client_id),
                ],
            )
            .await
        }
    };
    let (status, t2) = refresh(r1.clone()).await;
    assert_eq!(status, 200);
    let access2 = t2["access_token"].as_str().unwrap().to_string();
    // r1 again: someone else holds it. The family ends, the newest access token too.
    let (status, body) = refresh(r1).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    assert!(server.client(Some(&access2)).await.is_err());
    let (status, _) = refresh(t2["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(status, 400);

    // `token revoke` (the CLI, another process) of a grant's access token: its refresh
    // token stops working too.
    let code = param(
        &consent(&server, &cookie, &grant("t"), &[a], "read").await,
        "code",
    )
    .unwrap();
    let (_, t) = exchange(&server, &client_id, &code, &verifier).await;
    let out = h
        .command(&["token", "revoke", t["access_token"].as_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (status, _) = refresh(t["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_flow_refuses_a_wrong_redirect_pkce_csrf_and_resource() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&["--oauth"]);
    let client_id = register(&server, "Careful").await;
    let cookie = sign_in(&h, &server).await;
    let (verifier, challenge) = pkce();
    let authorize = format!("{}/oauth/authorize", base(&server));

    // A redirect URI the client did not register: a page, and nothing sent there.
    let mut q = authorize_query(&client_id, &challenge, "s");
    q[2].1 = "http://evil.example/callback".into();
    let resp = http()
        .get(&authorize)
        .query(&q)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());

    // No PKCE: back to the client with an error, and its state.
    let q: Vec<_> = authorize_query(&client_id, &challenge, "s2")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let resp = http()
        .get(&authorize)
        .query(&q)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to = resp.headers()["location"].to_str().unwrap();
    assert!(
        to.contains("error=invalid_request") && to.contains("state=s2"),
        "{to}"
    );

    // Another resource: invalid_target.
    let mut q = authorize_query(&client_id, &challenge, "s3");
    q.push(("resource", "https://other.example/mcp".into()));
    let resp = http()
        .get(&authorize)
        .query(&q)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_target")
    );

    // CSRF: a decision without the page's token grants nothing.
    let mut form = authorize_query(&client_id, &challenge, "s4");
    form.push(("repo", a.to_string()));
    form.push(("decision", "allow".into()));
    for csrf in [None, Some("forged")] {
        let mut f = form.clone();
        if let Some(c) = csrf {
            f.push(("csrf", c.into()));
        }
        let resp = http()
            .post(&authorize)
            .header("cookie", &cookie)
            .form(&f)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get("location").is_none());
    }
    // Without a sign-in, the consent page asks for one and grants nothing.
    let resp = http()
        .get(&authorize)
        .query(&authorize_query(&client_id, &challenge, "s5"))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("Account key"));

    // A wrong verifier, then the code's owner elsewhere, then the right one.
    let code = param(
        &consent(
            &server,
            &cookie,
            &authorize_query(&client_id, &challenge, "s6"),
            &[a],
            "read",
        )
        .await,
        "code",
    )
    .unwrap();
    let (status, body) =
        exchange(&server, &client_id, &code, &format!("w{}", "y".repeat(50))).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let other = register(&server, "Other").await;
    let (status, _) = exchange(&server, &other, &code, &verifier).await;
    assert_eq!(status, 400);
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:45678/callback"),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let (status, _) = exchange(&server, &client_id, &code, &verifier).await;
    assert_eq!(status, 200);
}

// A token the store issued for another server's MCP endpoint must not open this one,
// nor the REST API or git.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_meant_for_another_resource_is_refused() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    let server = h.http(&["--oauth"]);
    let spec = MintSpec {
        name: "elsewhere".into(),
        repo_ids: vec![a],
        ttl_seconds: Some(600),
        ..MintSpec::default()
    };
    let other = h
        .store
        .mint_for(&spec, Some("https://other.example/mcp"))
        .unwrap()
        .token;
    let resp = http()
        .post(format!("{}/mcp", base(&server)))
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("another resource"), "{challenge}");
    // Its own resource's token works there, and nowhere else: not on stdio.
    let mine = h
        .store
        .mint_for(&spec, Some(&format!("{}/mcp", base(&server))))
        .unwrap()
        .token;
    assert!(server.client(Some(&mine)).await.is_ok());
    let out = h
        .command(&["serve", "--backend", "local"])
        .env("RELACE_API_KEY", &mine)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another resource"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_metadata_url_is_fetched_only_from_public_addresses_unless_allowed() {
    let h = Harness::new();
    let a = h.repo(&[("a.txt", "a\n")]);
    // A client metadata document served on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doc_url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let doc = json!({"client_id": doc_url, "client_name": "Metadata Client",
        "redirect_uris": [REDIRECT]});
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || std::future::ready(axum::Json(doc.clone()))),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_, challenge) = pkce();

    // By default: refused, and the page says why.
    let strict = h.http(&["--oauth"]);
    let cookie = sign_in(&h, &strict).await;
    for client_id in [doc_url.clone(), "https://127.0.0.1:9/client.json".into()] {
        let resp = http()
            .get(format!("{}/oauth/authorize", base(&strict)))
            .query(&authorize_query(&client_id, &challenge, "s"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let html = resp.text().await.unwrap();
        assert!(
            html.contains("https") || html.contains("not a public address"),
            "{html}"
        );
    }
    // Allowed by the operator: the page names the client from its document.
    let open = h.http(&["--oauth", "--oauth-allow-private-client-metadata"]);
    let cookie = sign_in(&h, &open).await;
    let answer = consent(
        &open,
        &cookie,
        &authorize_query(&doc_url, &challenge, "s"),
        &[a],
        "read",
    )
    .await;
    assert!(param(&answer, "code").is_some());
}

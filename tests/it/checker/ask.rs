//! How the checker asks every process what it sees of a token or a repo.

use reqwest::{Method, StatusCode};
use scoped_repo_mcp::model::RepoId;
use serde_json::{Value, json};

use super::*;

/// An MCP session over HTTP bearing `token`, or the server's refusal text.
async fn http_session(url: &str, token: &str) -> Result<Client, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string());
    match ().serve(StreamableHttpClientTransport::from_config(config)).await {
        Ok(c) => Ok(c),
        Err(_) => {
            // rmcp reports a 401 without its body; read the server's own words.
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Err(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ))
        }
    }
}

fn repos_listed(answer: &Value) -> Vec<String> {
    answer["repos"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["repo_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Checker {
    /// Every process agrees on token `i`'s life.
    pub(super) async fn check_token(&mut self, p: &mut Processes, i: usize, fresh_stdio: bool) {
        let (secret, repos, life) = {
            let t = &self.tokens[i];
            (t.secret.clone(), t.repos.clone(), t.life)
        };
        if life == Life::Unsure || repos.iter().any(|r| self.repo(r).gone) {
            return;
        }
        let repo = repos[0];
        let (status, body) = send(
            Method::GET,
            format!("{}/repo/{repo}", p.api.base),
            Some(&secret),
            None,
        )
        .await;
        let http = http_session(&p.http.url(), &secret).await;
        match life {
            Life::Live => {
                self.agree(status == StatusCode::OK, || {
                    format!("api refused live token #{i}: {status} {body}")
                });
                match http {
                    Ok(c) => {
                        let listed = call(&c, "list_repos", json!({})).await;
                        let ids = repos_listed(
                            listed.structured_content.as_ref().unwrap_or(&Value::Null),
                        );
                        self.agree(ids.contains(&repo.to_string()), || {
                            format!("http session of live token #{i} lists {ids:?}, not {repo}")
                        });
                        // Kept open: a revocation must cut it at its next call.
                        if !p.live_http.iter().any(|(t, _)| *t == i) {
                            p.live_http.push((i, c));
                        }
                        if p.live_http.len() > LIVE_HTTP_SESSIONS {
                            let (_, old) = p.live_http.remove(0);
                            let _ = old.cancel().await;
                        }
                    }
                    Err(e) => self.fail(format!("http refused live token #{i}: {e}")),
                }
            }
            Life::Revoked => {
                self.agree(
                    status == StatusCode::UNAUTHORIZED && body.to_string().contains("revoked"),
                    || format!("api answered revoked token #{i} with {status} {body}"),
                );
                match http {
                    Ok(_) => self.fail(format!("http opened a session on revoked token #{i}")),
                    Err(e) => self.agree(e.starts_with("401") && e.contains("revoked"), || {
                        format!("http refused revoked token #{i} with: {e}")
                    }),
                }
                // A session opened while it was live is cut at its next call (rmcp's
                // client reports the 401 as "Auth required"; the words are checked
                // on a new request just above).
                if let Some(k) = p.live_http.iter().position(|(t, _)| *t == i) {
                    let (_, live) = p.live_http.remove(k);
                    let r = live
                        .call_tool(
                            rmcp::model::CallToolRequestParams::new("list_repos")
                                .with_arguments(serde_json::Map::new()),
                        )
                        .await;
                    let cut = match &r {
                        Err(e) => e.to_string().contains("Auth required"),
                        Ok(r) => !is_ok(r) && text(r).contains("revoked"),
                    };
                    self.agree(cut, || {
                        format!("a live http session on revoked token #{i} answered: {r:?}")
                    });
                    self.sessions_cut += 1;
                }
            }
            Life::Unsure => unreachable!(),
        }
        // The long-lived stdio servers on this token.
        let mut serves: Vec<&StdioServe> = p
            .on_token
            .iter()
            .filter(|(t, _)| *t == i)
            .map(|(_, s)| s)
            .collect();
        if p.delegate.0 == i {
            serves.push(&p.delegate.1);
        }
        for s in serves {
            let r = call(&s.client, "list_repos", json!({})).await;
            match life {
                Life::Live => self.agree(is_ok(&r), || {
                    format!("stdio serve on live token #{i} refused: {}", text(&r))
                }),
                _ => self.agree(!is_ok(&r) && text(&r).contains("revoked"), || {
                    format!("stdio serve on revoked token #{i} answered: {}", text(&r))
                }),
            }
        }
        // A fresh stdio server lists exactly the token's one repo (the delegating
        // token, on two, is checked by its own long-lived server above).
        if fresh_stdio && repos.len() == 1 {
            let started = self.dir.fresh_serve_sees(&secret, &repo).await;
            match life {
                Life::Live => self.agree(started.is_ok(), || {
                    format!("a fresh serve refused live token #{i}: {started:?}")
                }),
                _ => self.agree(
                    started.as_ref().is_err_and(|e| e.contains("revoked")),
                    || format!("a fresh serve on revoked token #{i}: {started:?}"),
                ),
            }
            if life == Life::Revoked {
                let out = self.git.run(
                    self.git.home.path(),
                    &["ls-remote", &git_url(&p.api, &repo, &secret)],
                );
                let err = String::from_utf8_lossy(&out.stderr).to_string();
                self.agree(!out.status.success() && err.contains("revoked"), || {
                    format!("git with revoked token #{i}: {err}")
                });
            }
        }
    }

    /// Every process agrees on repo `id`: its files while it lives, its absence after.
    pub(super) async fn check_repo(&mut self, p: &mut Processes, id: RepoId, fresh_stdio: bool) {
        let (gone, base, files) = {
            let r = self.repo(&id);
            (r.gone, r.base, r.files.clone())
        };
        let (status, body) = send(
            Method::GET,
            format!("{}/repo/{id}", p.api.base),
            Some(&p.api.key),
            None,
        )
        .await;
        if gone {
            self.agree(status == StatusCode::NOT_FOUND, || {
                format!("api answered deleted repo {id}: {status} {body}")
            });
            let listed = self.dir.cli(&["repo", "list"]).await;
            self.agree(!listed.contains(&id.to_string()), || {
                format!("`repo list` still shows deleted repo {id}")
            });
            return;
        }
        self.agree(status == StatusCode::OK, || {
            format!("api does not know repo {id}: {status} {body}")
        });
        let Some((path, content)) = files.iter().last() else {
            return;
        };
        let r = reqwest::Client::new()
            .get(format!("{}/repo/{id}/file/{path}", p.api.base))
            .bearer_auth(&p.api.key)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let got = r.text().await.unwrap();
        self.agree(status == StatusCode::OK && got == *content, || {
            format!("api reads {id}/{path} as {status} {got:?}, not {content:?}")
        });
        if base {
            let mut serves = vec![&p.operator];
            serves.extend(
                p.on_token
                    .iter()
                    .filter(|(t, _)| self.tokens[*t].repos.contains(&id))
                    .map(|(_, s)| s),
            );
            for s in serves {
                let r = call(
                    &s.client,
                    "read_file",
                    json!({"repo_id": id.to_string(), "path": path}),
                )
                .await;
                let got = r.structured_content.as_ref().map(|v| v["content"].clone());
                self.agree(got == Some(json!(content)), || {
                    format!("a stdio serve reads {id}/{path} as {}", text(&r))
                });
            }
            let marker = content.trim().to_string();
            let r = call(
                &p.operator.client,
                "search_repo",
                json!({"repo_id": id.to_string(), "query": marker, "mode": "literal"}),
            )
            .await;
            let hits = r
                .structured_content
                .as_ref()
                .and_then(|v| v["hits"].as_array().map(|a| a.len()))
                .unwrap_or(0);
            self.agree(hits == 1, || {
                format!("the operator's search for {marker} in {id}: {}", text(&r))
            });
        }
        if fresh_stdio {
            let c = start_stdio(&self.dir, &["--repo", &id.to_string()], None).await;
            let r = call(
                &c.client,
                "read_file",
                json!({"repo_id": id.to_string(), "path": path}),
            )
            .await;
            let got = r.structured_content.as_ref().map(|v| v["content"].clone());
            self.agree(got == Some(json!(content)), || {
                format!("a fresh serve reads {id}/{path} as {}", text(&r))
            });
        }
    }
}

//! The checker's operations: each write through a randomly chosen door, then the
//! check that every other process agrees; and the kills.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use scoped_repo_mcp::model::RepoId;
use serde_json::json;

use super::*;

impl Checker {
    pub(super) async fn mint(&mut self, p: &mut Processes) {
        let base = self.base_repos();
        let live = self.live_repos();
        let door = self.rng.below(4);
        let (secret, repos, child, via) = match door {
            0 => {
                let r = *self.rng.pick(&live).unwrap();
                let (s, body) = send(
                    Method::POST,
                    format!("{}/repo_token", p.api.base),
                    Some(&p.api.key),
                    Some(json!({"name": "checker", "repo_ids": [r.to_string()], "ttl_seconds": TOKEN_TTL_SECONDS})),
                )
                .await;
                self.agree(s == StatusCode::OK, || format!("REST mint: {s} {body}"));
                self.answered("POST /v1/repo_token");
                (
                    body["token"].as_str().unwrap().to_string(),
                    vec![r],
                    false,
                    "rest",
                )
            }
            1 => {
                let r = *self.rng.pick(&base).unwrap();
                let out = call(
                    &p.operator.client,
                    "create_scoped_token",
                    json!({"name": "checker", "repo_ids": [r.to_string()], "ttl_seconds": TOKEN_TTL_SECONDS}),
                )
                .await;
                self.agree(is_ok(&out), || format!("tool mint: {}", text(&out)));
                self.answered("create_scoped_token");
                let t = out.structured_content.unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (t, vec![r], false, "tool")
            }
            2 => {
                let r = *self.rng.pick(&live).unwrap();
                let t = self.dir.token(&r).await;
                self.answered("token create");
                (t, vec![r], false, "cli")
            }
            _ => {
                let parent = self.tokens[p.delegate.0].repos.clone();
                let r = *self.rng.pick(&parent).unwrap();
                let out = call(
                    &p.delegate.1.client,
                    "create_scoped_token",
                    json!({"name": "child", "repo_ids": [r.to_string()], "ttl_seconds": TOKEN_TTL_SECONDS}),
                )
                .await;
                self.agree(is_ok(&out), || format!("delegated mint: {}", text(&out)));
                self.answered("create_scoped_token");
                let t = out.structured_content.unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (t, vec![r], true, "delegate")
            }
        };
        self.note(format!(
            "mint via {via} for {repos:?} -> #{}",
            self.tokens.len()
        ));
        self.tokens.push(TokenModel {
            secret,
            repos,
            life: Life::Live,
            child_of_delegate: child,
        });
        let i = self.tokens.len() - 1;
        let fresh = self.rng.chance(30);
        self.check_token(p, i, fresh).await;
    }

    pub(super) async fn revoke(&mut self, p: &mut Processes) {
        let serving: Vec<usize> = p.on_token.iter().map(|(t, _)| *t).collect();
        let candidates: Vec<usize> = self
            .live_tokens()
            .into_iter()
            .filter(|i| *i != p.delegate.0)
            .collect();
        let Some(&i) = self.rng.pick(&candidates) else {
            return;
        };
        let secret = self.tokens[i].secret.clone();
        let in_base = self.tokens[i].repos.iter().all(|r| self.repo(r).base);
        let door = self.rng.below(3);
        let via = match door {
            0 if in_base => {
                let out = call(&p.operator.client, "revoke_token", json!({"token": secret})).await;
                self.agree(is_ok(&out), || {
                    format!("tool revoke of #{i}: {}", text(&out))
                });
                self.answered("revoke_token");
                "tool"
            }
            0 | 1 => {
                let (s, body) = send(
                    Method::DELETE,
                    format!("{}/repo_token/{secret}", p.api.base),
                    Some(&p.api.key),
                    None,
                )
                .await;
                self.agree(s.is_success(), || {
                    format!("REST revoke of #{i}: {s} {body}")
                });
                self.answered("DELETE /v1/repo_token");
                "rest"
            }
            _ => {
                self.dir.cli(&["token", "revoke", &secret]).await;
                self.answered("token revoke");
                "cli"
            }
        };
        self.note(format!("revoke #{i} via {via}"));
        self.tokens[i].life = Life::Revoked;
        let fresh = self.rng.chance(30);
        self.check_token(p, i, fresh).await;
        // A server on a revoked token is replaced by one on a new token.
        if serving.contains(&i) {
            let repo = self.tokens[i].repos[0];
            let t = self.dir.token(&repo).await;
            self.tokens.push(TokenModel {
                secret: t.clone(),
                repos: vec![repo],
                life: Life::Live,
                child_of_delegate: false,
            });
            let j = self.tokens.len() - 1;
            let slot = p.on_token.iter_mut().find(|(t, _)| *t == i).unwrap();
            *slot = (
                j,
                start_stdio(&self.dir, &["--backend", "local"], Some(&t)).await,
            );
            self.note(format!("serve on #{i} replaced by one on #{j}"));
        }
    }

    pub(super) async fn key(&mut self, p: &mut Processes) {
        let live: Vec<usize> = (0..self.keys.len())
            .filter(|k| self.keys[*k].1 == Life::Live)
            .collect();
        if live.is_empty() || self.rng.chance(50) {
            let key = self.dir.cli(&["key", "create", "--name", "extra"]).await;
            self.note(format!("key create -> k{}", self.keys.len()));
            self.keys.push((key, Life::Live));
        } else {
            let k = *self.rng.pick(&live).unwrap();
            let key = self.keys[k].0.clone();
            self.dir.cli(&["key", "revoke", &key]).await;
            self.note(format!("key revoke k{k}"));
            self.keys[k].1 = Life::Revoked;
        }
        for k in 0..self.keys.len() {
            let (key, life) = self.keys[k].clone();
            let (s, body) = send(
                Method::GET,
                format!("{}/repo", p.api.base),
                Some(&key),
                None,
            )
            .await;
            let want = if life == Life::Live {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            self.agree(s == want, || {
                format!("api answered key k{k} ({life:?}): {s} {body}")
            });
        }
    }

    pub(super) async fn create_repo(&mut self, p: &mut Processes) {
        let marker = self.fresh_marker();
        let content = format!("{marker}\n");
        let (id, files, via) = match self.rng.below(3) {
            0 => {
                let id: RepoId = self.dir.cli(&["repo", "create"]).await.parse().unwrap();
                (id, BTreeMap::new(), "cli (empty)")
            }
            1 => {
                let (s, body) = send(
                    Method::POST,
                    format!("{}/repo", p.api.base),
                    Some(&p.api.key),
                    Some(json!({"source": {"type": "files", "files": [{"filename": "first.txt", "content": content}]}})),
                )
                .await;
                self.agree(s == StatusCode::OK, || {
                    format!("REST repo create: {s} {body}")
                });
                self.answered("POST /v1/repo");
                let id = body["repo_id"].as_str().unwrap().parse().unwrap();
                (
                    id,
                    BTreeMap::from([("first.txt".to_string(), content)]),
                    "rest (files)",
                )
            }
            _ => {
                let (_, up_api, up_repo) = &self.upstream;
                let url = git_url(up_api, up_repo, &up_api.key);
                let (s, body) = send(
                    Method::POST,
                    format!("{}/repo", p.api.base),
                    Some(&p.api.key),
                    Some(json!({"source": {"type": "git", "url": url}})),
                )
                .await;
                self.agree(s == StatusCode::OK, || {
                    format!("REST repo create from git: {s} {body}")
                });
                self.answered("POST /v1/repo");
                let id = body["repo_id"].as_str().unwrap().parse().unwrap();
                (
                    id,
                    BTreeMap::from([("upstream.txt".to_string(), "from upstream\n".to_string())]),
                    "rest (git)",
                )
            }
        };
        self.note(format!("repo create via {via} -> {id}"));
        self.repos.push(RepoModel {
            id,
            files,
            gone: false,
            base: false,
            linked: None,
        });
        self.check_repo(p, id, true).await;
    }

    pub(super) async fn update(&mut self, p: &mut Processes) {
        let marker = self.fresh_marker();
        let path = format!("f{}.txt", self.counter);
        let content = format!("{marker}\n");
        let base = self.base_repos();
        let live = self.live_repos();
        let via = match self.rng.below(4) {
            0 => {
                let id = *self.rng.pick(&base).unwrap();
                let out = call(
                    &p.operator.client,
                    "update_repo_files",
                    json!({"repo_id": id.to_string(), "operations": [{"type": "write", "path": path, "content": content}]}),
                )
                .await;
                self.agree(is_ok(&out), || {
                    format!("tool update of {id}: {}", text(&out))
                });
                self.answered("update_repo_files");
                self.repo_mut(&id).files.insert(path.clone(), content);
                id
            }
            1 => {
                let (t, s) = self.rng.pick(&p.on_token).map(|(t, s)| (*t, s)).unwrap();
                let id = self.tokens[t].repos[0];
                let out = call(
                    &s.client,
                    "update_repo_files",
                    json!({"repo_id": id.to_string(), "operations": [{"type": "write", "path": path, "content": content}]}),
                )
                .await;
                self.agree(is_ok(&out), || {
                    format!("token serve's update of {id}: {}", text(&out))
                });
                self.answered("update_repo_files");
                self.repo_mut(&id).files.insert(path.clone(), content);
                id
            }
            2 => {
                let id = *self.rng.pick(&live).unwrap();
                let (s, body) = send(
                    Method::POST,
                    format!("{}/repo/{id}/update", p.api.base),
                    Some(&p.api.key),
                    Some(json!({"source": {"type": "diff", "operations": [{"type": "write", "filename": path, "content": content}]}})),
                )
                .await;
                self.agree(s == StatusCode::OK, || {
                    format!("REST update of {id}: {s} {body}")
                });
                self.answered("POST /v1/repo/update");
                self.repo_mut(&id).files.insert(path.clone(), content);
                id
            }
            _ => {
                let id = *self.rng.pick(&live).unwrap();
                self.push(p, id, &path, &content).await;
                self.answered("git-receive-pack");
                self.repo_mut(&id).files.insert(path.clone(), content);
                id
            }
        };
        self.note(format!("update {via}: {path}"));
        let fresh = self.rng.chance(20);
        self.check_repo(p, via, fresh).await;
    }

    /// Clone `id` over git with a fresh token, commit one file, push.
    pub(super) async fn push(&mut self, p: &mut Processes, id: RepoId, path: &str, content: &str) {
        let t = self.dir.token(&id).await;
        let url = git_url(&p.api, &id, &t);
        let wc = tempfile::tempdir_in(self.git.home.path()).unwrap();
        let g = &self.git;
        let clone = g.run(wc.path(), &["clone", "--quiet", &url, "wc"]);
        self.agree(clone.status.success(), || {
            format!(
                "git clone of {id}: {}",
                String::from_utf8_lossy(&clone.stderr)
            )
        });
        let wc = wc.path().join("wc");
        std::fs::write(wc.join(path), content).unwrap();
        g.ok(&wc, &["add", path]);
        g.ok(&wc, &["commit", "--quiet", "-m", "checker push"]);
        let out = g.run(&wc, &["push", "--quiet", "origin", "HEAD:main"]);
        self.agree(out.status.success(), || {
            format!("git push to {id}: {}", String::from_utf8_lossy(&out.stderr))
        });
    }

    pub(super) async fn delete_repo(&mut self, p: &mut Processes) {
        let candidates: Vec<RepoId> = self
            .repos
            .iter()
            .filter(|r| !r.gone && !r.base)
            .map(|r| r.id)
            .collect();
        let Some(&id) = self.rng.pick(&candidates) else {
            return;
        };
        let via = if self.rng.chance(50) {
            let (s, body) = send(
                Method::DELETE,
                format!("{}/repo/{id}", p.api.base),
                Some(&p.api.key),
                None,
            )
            .await;
            self.agree(s.is_success(), || {
                format!("REST delete of {id}: {s} {body}")
            });
            self.answered("DELETE /v1/repo");
            "rest"
        } else {
            self.dir.cli(&["repo", "delete", &id.to_string()]).await;
            "cli"
        };
        self.note(format!("delete {id} via {via}"));
        self.repo_mut(&id).gone = true;
        self.check_repo(p, id, false).await;
    }

    pub(super) async fn link(&mut self) {
        let candidates: Vec<RepoId> = self.live_repos();
        let id = *self.rng.pick(&candidates).unwrap();
        let linked = self.repo(&id).linked.clone();
        match linked {
            Some(dir) => {
                self.dir.cli(&["repo", "unlink", &id.to_string()]).await;
                self.note(format!("unlink {id} from {}", dir.display()));
                self.repo_mut(&id).linked = None;
            }
            None => {
                let dir = self.git.home.path().join(format!("work{}", self.counter));
                self.counter += 1;
                std::fs::create_dir_all(&dir).unwrap();
                let d = dir.to_str().unwrap().to_string();
                self.dir.cli(&["repo", "link", &id.to_string(), &d]).await;
                self.note(format!("link {id} to {d}"));
                self.repo_mut(&id).linked = Some(dir);
            }
        }
    }

    /// Kill a random long-lived process with SIGKILL, sometimes while it answers a
    /// write, and start it again.
    pub(super) async fn kill(&mut self, p: &mut Processes) {
        self.kills += 1;
        match self.rng.below(5) {
            0 => {
                // During a write: a REST update the kill may or may not let land.
                let live = self.live_repos();
                let id = *self.rng.pick(&live).unwrap();
                let marker = self.fresh_marker();
                let path = format!("f{}.txt", self.counter);
                let content = format!("{marker}\n");
                let url = format!("{}/repo/{id}/update", p.api.base);
                let key = p.api.key.clone();
                let body = json!({"source": {"type": "diff", "operations": [{"type": "write", "filename": path, "content": content}]}});
                let write = tokio::spawn(async move {
                    reqwest::Client::new()
                        .post(url)
                        .bearer_auth(key)
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status())
                });
                tokio::time::sleep(Duration::from_millis(self.rng.below(40) as u64)).await;
                kill9(p.api.pid());
                let answered = write.await.unwrap();
                p.api.child.wait().await.unwrap();
                p.api = start_api(&self.dir, &p.api.key, self.upstream_port()).await;
                let landed = match answered {
                    Ok(s) if s == StatusCode::OK => {
                        self.answered("POST /v1/repo/update");
                        true
                    }
                    _ => {
                        let r = reqwest::Client::new()
                            .get(format!("{}/repo/{id}/file/{path}", p.api.base))
                            .bearer_auth(&p.api.key)
                            .send()
                            .await
                            .unwrap();
                        r.status() == StatusCode::OK
                    }
                };
                self.note(format!(
                    "kill -9 api during an update of {id} ({path}): answered {:?}, landed {landed}",
                    answered.as_ref().map_err(|e| e.to_string())
                ));
                if landed {
                    self.repo_mut(&id).files.insert(path, content);
                }
                self.check_repo(p, id, false).await;
            }
            1 => {
                kill9(p.api.pid());
                p.api.child.wait().await.unwrap();
                p.api = start_api(&self.dir, &p.api.key, self.upstream_port()).await;
                self.note("kill -9 api".into());
            }
            2 => {
                kill9(p.http.child.id());
                let _ = p.http.child.wait();
                p.http = self.dir.http();
                // Its sessions died with it.
                p.live_http.clear();
                self.note("kill -9 http serve".into());
            }
            3 => {
                kill9(p.operator.pid);
                let args = self.operator_args();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                p.operator = start_stdio(&self.dir, &args, None).await;
                self.note("kill -9 the operator's stdio serve".into());
            }
            _ => {
                let k = self.rng.below(p.on_token.len());
                let t = p.on_token[k].0;
                kill9(p.on_token[k].1.pid);
                let secret = self.tokens[t].secret.clone();
                p.on_token[k].1 =
                    start_stdio(&self.dir, &["--backend", "local"], Some(&secret)).await;
                self.note(format!("kill -9 the stdio serve on #{t}"));
            }
        }
    }

    pub(super) fn upstream_port(&self) -> u16 {
        let base = &self.upstream.1.base;
        base.rsplit(':')
            .next()
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap()
    }

    pub(super) fn operator_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for id in self.base_repos() {
            args.push("--repo".to_string());
            args.push(id.to_string());
        }
        args
    }
}

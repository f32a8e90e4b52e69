//! The checker's end: every process stopped, then the store checked as a whole.

use std::time::Duration;

use super::*;

impl Checker {
    /// Stop every process, then check the store as a whole.
    pub(super) async fn finish(self, p: Processes) {
        // Orderly stops for some, SIGKILL for others: both must leave a whole store.
        for pid in [p.api.pid(), p.http.child.id()] {
            // SAFETY: signalling child processes this test started and still owns.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        kill9(p.operator.pid);
        let Processes {
            mut api,
            mut http,
            operator,
            on_token,
            delegate,
            live_http,
        } = p;
        for (_, c) in live_http {
            let _ = c.cancel().await;
        }
        api.child.wait().await.unwrap();
        let _ = http.child.wait();
        for s in on_token.into_iter().map(|(_, s)| s).chain([delegate.1]) {
            let _ = s.client.cancel().await;
        }
        drop(operator);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let store =
            scoped_repo_mcp::store::Store::open(self.dir.path(), Default::default()).unwrap();
        let conn = rusqlite::Connection::open(self.dir.path().join("store.db")).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        self.agree(integrity == "ok", || {
            format!("integrity_check: {integrity}")
        });

        // Every answered write is present, every answered revocation holds.
        for (i, t) in self.tokens.iter().enumerate() {
            let (state, _) = store.token(&t.secret).unwrap();
            let live = state == scoped_repo_mcp::store::TokenState::Live;
            match t.life {
                Life::Live => self.agree(live, || format!("token #{i} is {state:?}, not live")),
                Life::Revoked => self.agree(!live, || format!("revoked token #{i} is live again")),
                Life::Unsure => {}
            }
            let _ = t.child_of_delegate;
        }
        for r in &self.repos {
            let row = store.repo_row(&r.id);
            self.agree(row.is_ok() != r.gone, || {
                format!("repo {} (gone: {}) row: {row:?}", r.id, r.gone)
            });
            if !r.gone {
                for (path, content) in &r.files {
                    let p = scoped_repo_mcp::paths::RepoPath::parse(path).unwrap();
                    let got = store.read_file(&r.id, &p, None);
                    self.agree(got.as_ref().is_ok_and(|f| f.content == *content), || {
                        format!("{}/{path} reads {got:?}", r.id)
                    });
                }
                let imports = store.import_dir_of(&r.id).unwrap();
                self.agree(imports.is_some() == r.linked.is_some(), || {
                    format!("repo {} link: {imports:?} vs {:?}", r.id, r.linked)
                });
            }
        }
        // No repo directory without its row, and no row without its directory.
        let rows: Vec<String> = store
            .repo_rows()
            .unwrap()
            .iter()
            .map(|r| format!("{}.git", r.id))
            .collect();
        let mut dirs: Vec<String> = std::fs::read_dir(self.dir.path().join("repos"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".git"))
            .collect();
        dirs.sort();
        let mut sorted = rows.clone();
        sorted.sort();
        self.agree(dirs == sorted, || {
            format!("repo directories {dirs:?} against rows {sorted:?}")
        });
        for d in &dirs {
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(self.dir.path().join("repos").join(d))
                .args(["fsck", "--strict", "--no-dangling"])
                .output()
                .unwrap();
            self.agree(out.status.success(), || {
                format!(
                    "git fsck --strict on {d}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        }
        // The audit trail holds a record of every answered write.
        let rows = store
            .audit(&scoped_repo_mcp::store::AuditQuery {
                limit: 1_000_000,
                ..Default::default()
            })
            .unwrap();
        for (action, answered) in &self.answered {
            let recorded = rows
                .iter()
                .filter(|r| r.outcome == "ok" && audit_action_is(&r.action, action))
                .count();
            self.agree(recorded >= *answered, || {
                format!(
                    "the audit trail holds {recorded} records of {action}, {answered} were answered"
                )
            });
        }
        eprintln!(
            "checker: seed {}, {} operations, {} kills, {} tokens, {} repos, {} keys, {} live HTTP sessions cut by revocation: nothing lost",
            self.seed,
            self.ops,
            self.kills,
            self.tokens.len(),
            self.repos.len(),
            self.keys.len(),
            self.sessions_cut
        );
    }
}

/// Whether an audit record's action is `wanted` (REST actions are recorded with the
/// route's template, e.g. `POST /v1/repo/{repo_id}/update`).
fn audit_action_is(action: &str, wanted: &str) -> bool {
    match wanted {
        "POST /v1/repo/update" => {
            action.starts_with("POST /v1/repo/") && action.ends_with("/update")
        }
        "DELETE /v1/repo_token" => action.starts_with("DELETE /v1/repo_token/"),
        "DELETE /v1/repo" => action.starts_with("DELETE /v1/repo/"),
        "git-receive-pack" => action.ends_with("git-receive-pack"),
        other => action == other,
    }
}

//! `git-env`: the git settings, as environment variables, that send git's requests for
//! the hosted service (`https://api.relace.run/...`, the URL the official SDKs' git
//! helpers hard-code) to an `api` server instead.
//!
//! The SDKs put the credential in the URL (`https://token:<credential>@api.relace.run/
//! v1/repo/{id}.git`), and git's `url.<base>.insteadOf` matches a URL's leading text,
//! credential included: one rule a credential, each rewriting only URLs that carry it,
//! so the rules of several credentials coexist in one environment.

use std::io::Write;

use crate::credentials::secrets;
use crate::run::cli::GitEnvArgs;
use crate::run::config::ConfigError;

/// The hosted service's origin, as the SDKs' git helpers spell it.
const HOSTED: &str = "api.relace.run";

/// One `insteadOf` rule: git reads `url.<local>.insteadOf = <hosted>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// The key, `url.<local base>.insteadOf`.
    pub key: String,
    /// The hosted prefix it replaces.
    pub value: String,
}

/// The rules for `url` (an `api` server's base, `http(s)://HOST[:PORT]` with an empty
/// path or `/v1`) and each of `tokens`, or why they cannot be made. An error never
/// holds a token.
pub fn rules(url: &str, tokens: &[String]) -> Result<Vec<Rule>, ConfigError> {
    let origin = local_origin(url)?;
    if tokens.is_empty() {
        return Err(ConfigError(
            "git-env: give at least one --token (a repo token rlcr-… or an account key rlc-…)"
                .into(),
        ));
    }
    let mut out: Vec<Rule> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !looks_like_credential(token) {
            return Err(ConfigError(format!(
                "git-env: --token number {} is not a repo token (rlcr- and 40 hex digits) or an account key (rlc- and 40 hex digits); pass the token `token create` or POST /v1/repo_token printed, whole",
                i + 1
            )));
        }
        let rule = Rule {
            key: format!(
                "url.{}://token:{token}@{}/.insteadOf",
                origin.scheme, origin.authority
            ),
            value: format!("https://token:{token}@{HOSTED}/"),
        };
        // A token given twice would make two equal rules; git takes the last anyway.
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

/// An `api` server's scheme and `host[:port]`.
struct Origin {
    scheme: String,
    authority: String,
}

fn local_origin(raw: &str) -> Result<Origin, ConfigError> {
    let refuse = |why: &str| {
        ConfigError(format!(
            "git-env: --url {}: {why}; pass the base `api` printed at start-up, e.g. http://127.0.0.1:8787/v1",
            // The URL is the operator's own, but may carry a credential: shown without it.
            redacted(raw)
        ))
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| refuse(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(
            "only http:// and https:// URLs can be served by `api`",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "the URL must not carry a credential (give it with --token)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("the URL must not have a query or a fragment"));
    }
    if !matches!(url.path(), "" | "/" | "/v1" | "/v1/") {
        return Err(refuse(
            "its path must be empty or /v1 (git's routes are /v1/repo/{id}.git)",
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| refuse("the URL has no host"))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok(Origin {
        scheme: url.scheme().to_string(),
        authority,
    })
}

/// `raw` with anything between `://` and an `@` replaced, for an error message.
fn redacted(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<credential>@{}", &raw[..s], &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

/// A repo token or an account key, by shape: the prefix and 40 hex digits.
fn looks_like_credential(s: &str) -> bool {
    secrets::looks_like_repo_token(s)
        || s.strip_prefix(secrets::ACCOUNT_KEY_PREFIX)
            .is_some_and(|rest| rest.len() == 40 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The settings as `NAME=VALUE` lines (for `env`), or with `shell` as `export` lines
/// quoted for sh.
pub fn render(rules: &[Rule], shell: bool) -> String {
    let mut vars = vec![("GIT_CONFIG_COUNT".to_string(), rules.len().to_string())];
    for (i, r) in rules.iter().enumerate() {
        vars.push((format!("GIT_CONFIG_KEY_{i}"), r.key.clone()));
        vars.push((format!("GIT_CONFIG_VALUE_{i}"), r.value.clone()));
    }
    vars.iter()
        .map(|(name, value)| {
            if shell {
                format!("export {name}={}\n", sh_quote(value))
            } else {
                format!("{name}={value}\n")
            }
        })
        .collect()
}

/// `s` as one sh word: in single quotes, each `'` closed, escaped and reopened.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `git-env`: print the settings on stdout.
pub fn run(args: &GitEnvArgs) -> Result<(), ConfigError> {
    let rules = rules(&args.url, &args.tokens)?;
    std::io::stdout()
        .write_all(render(&rules, args.shell).as_bytes())
        .map_err(|e| ConfigError(format!("git-env: cannot write the settings: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "rlcr-0123456789abcdef0123456789abcdef01234567";
    const T2: &str = "rlcr-89abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn one_rule_a_token_with_the_credential_on_both_sides() {
        let rules = rules("http://127.0.0.1:8787/v1", &[T1.into(), T2.into()]).unwrap();
        assert_eq!(
            rules[0],
            Rule {
                key: format!("url.http://token:{T1}@127.0.0.1:8787/.insteadOf"),
                value: format!("https://token:{T1}@api.relace.run/"),
            }
        );
        assert_eq!(rules.len(), 2);
        assert!(rules[1].key.contains(T2) && rules[1].value.contains(T2));
    }

    #[test]
    fn urls_that_cannot_be_an_api_base_are_refused_without_the_token() {
        for bad in [
            "ftp://127.0.0.1/v1",
            "http://127.0.0.1/v2",
            "http://127.0.0.1/v1/repo",
            "127.0.0.1:8787",
            "http://127.0.0.1/v1?x=1",
            "http://u:secret@127.0.0.1/v1",
        ] {
            let e = rules(bad, &[T1.into()]).unwrap_err().to_string();
            assert!(e.contains("--url"), "{bad}: {e}");
            assert!(!e.contains(T1) && !e.contains("secret"), "{bad}: {e}");
        }
        for good in [
            "http://[::1]:9/",
            "https://repos.example.com",
            "http://h:1/v1/",
        ] {
            assert!(rules(good, &[T1.into()]).is_ok(), "{good}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused_without_being_echoed() {
        for bad in [
            "rlcr-xyz",
            "hunter2",
            "rlcr-0123456789abcdef0123456789abcdef0123456",
            "",
        ] {
            let e = rules("http://127.0.0.1:1", &[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--token"), "{e}");
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        let key = "rlc-0123456789abcdef0123456789abcdef01234567";
        assert!(rules("http://127.0.0.1:1", &[key.into()]).is_ok());
    }

    #[test]
    fn shell_lines_quote_every_value() {
        let rules = [Rule {
            key: "a b".into(),
            value: "it's".into(),
        }];
        assert_eq!(
            render(&rules, true),
            "export GIT_CONFIG_COUNT='1'\nexport GIT_CONFIG_KEY_0='a b'\nexport GIT_CONFIG_VALUE_0='it'\\''s'\n"
        );
        assert_eq!(
            render(&rules, false),
            "GIT_CONFIG_COUNT=1\nGIT_CONFIG_KEY_0=a b\nGIT_CONFIG_VALUE_0=it's\n"
        );
    }
}

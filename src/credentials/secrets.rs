//! Secret credentials (repo tokens, account keys): their prefixes, minting from the OS
//! CSPRNG, and hashing. Only SHA-256 hashes are ever written down.

use sha2::{Digest, Sha256};

/// Prefix of a repo token, as the hosted service spells it.
pub const REPO_TOKEN_PREFIX: &str = "rlcr-";
/// Prefix of an account API key.
pub const ACCOUNT_KEY_PREFIX: &str = "rlc-";

/// A new secret: `prefix` followed by 40 lowercase hex digits (160 random bits).
pub fn mint(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{prefix}{}", hex::encode(bytes))
}

/// The hash under which a secret is stored.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `s` has the shape of a repo token (`rlcr-` + 40 hex digits).
pub fn looks_like_repo_token(s: &str) -> bool {
    s.strip_prefix(REPO_TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 40 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_hosted_shape_and_differ() {
        let a = mint(REPO_TOKEN_PREFIX);
        let b = mint(REPO_TOKEN_PREFIX);
        assert!(looks_like_repo_token(&a));
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(!looks_like_repo_token("rlcr-xyz"));
    }
}

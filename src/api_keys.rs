//! API key tokens: `ak_live:<key id>:<secret>` (api.md section 1).
//!
//! The secret is 32 random bytes, URL-safe base64. Only its SHA-256 is recorded (in the
//! `ApiKeyIssued` event and the `api_keys` read model); a plain hash suffices because the
//! secret is long and random, unlike a password. Comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "ak_live";

/// A freshly generated key: the token is shown once, the hash is what is kept.
pub struct NewApiKey {
    pub key_id: Uuid,
    pub token: String,
    pub secret_hash_hex: String,
}

pub fn generate() -> NewApiKey {
    let key_id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    NewApiKey {
        key_id,
        token: format!("{PREFIX}:{key_id}:{secret}"),
        secret_hash_hex: hex::encode(hash_secret(&secret)),
    }
}

/// Splits a presented token into key id and secret; `None` if it is not shaped like one.
pub fn parse_token(token: &str) -> Option<(Uuid, &str)> {
    let mut parts = token.splitn(3, ':');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != PREFIX || secret.is_empty() || secret.len() > 256 {
        return None;
    }
    Some((Uuid::parse_str(id).ok()?, secret))
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` hashes to `stored_hash`, in constant time.
pub fn secret_matches(secret: &str, stored_hash: &[u8]) -> bool {
    bool::from(hash_secret(secret).as_slice().ct_eq(stored_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_and_matches_only_its_hash() {
        let key = generate();
        let (id, secret) = parse_token(&key.token).unwrap();
        assert_eq!(id, key.key_id);
        let stored = hex::decode(&key.secret_hash_hex).unwrap();
        assert!(secret_matches(secret, &stored));
        assert!(!secret_matches("guess", &stored));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for token in [
            "",
            "ak_live",
            "ak_test:00000000-0000-0000-0000-000000000000:x",
            "ak_live:nope:x",
            "ak_live:00000000-0000-0000-0000-000000000000:",
        ] {
            assert!(parse_token(token).is_none(), "{token}");
        }
    }
}

//! Crypto-shredding (api.md section 7): personal fields of events are encrypted under a data
//! key per data subject (the aggregate, a user); data keys are stored wrapped by the master
//! key. Destroying a data key makes the person's fields unreadable forever while the events
//! keep their shape and hashes.
//!
//! This lives in `projections` because both sides need it: the write side seals fields before
//! appending, and the read side (projectors, aggregate loading, audit) opens them. Opening a
//! field whose key is gone yields [`aggregates::values::ERASED`].
//!
//! Format of a sealed field: `kairos:enc:v1:` + base64(nonce ‖ ciphertext ‖ tag), AES-256-GCM,
//! with the subject id and field name as associated data so a ciphertext cannot be moved to
//! another person or field.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use aggregates::values::ERASED;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

const SEALED_PREFIX: &str = "kairos:enc:v1:";
const NONCE_LEN: usize = 12;
const WRAP_CONTEXT: &[u8] = b"kairos data key v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("the master key must be 32 bytes, base64-encoded (got {0} bytes)")]
    BadMasterKey(usize),
    #[error("the master key is not valid base64")]
    MasterKeyNotBase64,
    #[error("a data key could not be unwrapped: wrong master key or corrupted row")]
    Unwrap,
    #[error("a sealed field could not be opened: wrong key or tampered ciphertext")]
    Open,
}

/// The master key, from `KAIROS_MASTER_KEY`. It only wraps and unwraps data keys.
#[derive(Clone)]
pub struct Keyring {
    master: Aes256Gcm,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(<master key>)")
    }
}

/// One subject's data key, unwrapped, in memory only.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl Keyring {
    /// Parses a base64 (standard or URL-safe) 32-byte master key.
    pub fn from_base64(encoded: &str) -> Result<Self, KeyringError> {
        let encoded = encoded.trim();
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')))
            .map_err(|_| KeyringError::MasterKeyNotBase64)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        if bytes.len() != 32 {
            return Err(KeyringError::BadMasterKey(bytes.len()));
        }
        Ok(Self {
            master: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        })
    }

    /// A fresh random master key, base64 — what `make run` writes to `.data/master.key`.
    pub fn generate_base64() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// A new data key for `subject`, and its wrapped form to store.
    pub fn new_data_key(&self, subject: &str) -> (DataKey, Vec<u8>) {
        let raw = Aes256Gcm::generate_key(OsRng);
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let aad = [WRAP_CONTEXT, subject.as_bytes()].concat();
        let sealed = self
            .master
            .encrypt(
                &nonce,
                Payload {
                    msg: raw.as_slice(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        let wrapped = [nonce.as_slice(), &sealed].concat();
        (
            DataKey {
                cipher: Aes256Gcm::new(&raw),
            },
            wrapped,
        )
    }

    /// Unwraps a stored data key of `subject`.
    pub fn unwrap_data_key(&self, subject: &str, wrapped: &[u8]) -> Result<DataKey, KeyringError> {
        if wrapped.len() <= NONCE_LEN {
            return Err(KeyringError::Unwrap);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let aad = [WRAP_CONTEXT, subject.as_bytes()].concat();
        let raw = self
            .master
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Unwrap)?;
        if raw.len() != 32 {
            return Err(KeyringError::Unwrap);
        }
        Ok(DataKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&raw)),
        })
    }
}

impl DataKey {
    fn seal(&self, subject: &str, field: &str, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let aad = associated_data(subject, field);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes))
    }

    fn open(&self, subject: &str, field: &str, sealed: &str) -> Result<String, KeyringError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(KeyringError::Open)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| KeyringError::Open)?;
        if bytes.len() <= NONCE_LEN {
            return Err(KeyringError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = associated_data(subject, field);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Open)?;
        String::from_utf8(plain).map_err(|_| KeyringError::Open)
    }
}

fn associated_data(subject: &str, field: &str) -> Vec<u8> {
    [subject.as_bytes(), b"\0", field.as_bytes()].concat()
}

/// Encrypts the named top-level string fields of `payload` in place.
pub fn seal_fields(payload: &mut Value, fields: &[&str], key: &DataKey, subject: &str) {
    let Value::Object(map) = payload else { return };
    for field in fields {
        if let Some(Value::String(plain)) = map.get_mut(*field) {
            *plain = key.seal(subject, field, plain);
        }
    }
}

/// Decrypts the declared personal `fields` of `payload` in place (the declaration of its
/// event type, [`aggregates::effects::personal_fields`]); with no key (erased), they read
/// `[erased]`. Nothing else is touched: an undeclared field is client text however it looks.
///
/// The store seals every declared string field unconditionally, so a declared string is
/// always sealed and the prefix never has to tell sealed from clear: the declaration does.
/// One that does not open with a key present is an error (tampering or a wrong master key),
/// never something to paper over. A declared field that is absent or not a string was not
/// sealed (the sealing only seals strings) and stays as it is.
pub fn open_fields(
    payload: &mut Value,
    fields: &[&str],
    key: Option<&DataKey>,
    subject: &str,
) -> Result<(), KeyringError> {
    if fields.is_empty() {
        return Ok(());
    }
    let Value::Object(map) = payload else {
        return Ok(());
    };
    for field in fields {
        let Some(Value::String(text)) = map.get_mut(*field) else {
            continue;
        };
        *text = match key {
            Some(key) => key.open(subject, field, text)?,
            None => ERASED.to_string(),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keyring() -> Keyring {
        Keyring::from_base64(&Keyring::generate_base64()).unwrap()
    }

    #[test]
    fn sealed_fields_open_with_the_subjects_key_only() {
        let keyring = keyring();
        let (key, wrapped) = keyring.new_data_key("user-1");
        let mut payload = json!({"email": "a@example.com", "timezone": "Europe/Berlin"});
        seal_fields(&mut payload, &["email"], &key, "user-1");
        assert!(
            payload["email"]
                .as_str()
                .unwrap()
                .starts_with(SEALED_PREFIX)
        );
        assert!(!payload.to_string().contains("a@example.com"));
        assert_eq!(payload["timezone"], "Europe/Berlin");

        let key = keyring.unwrap_data_key("user-1", &wrapped).unwrap();
        let mut opened = payload.clone();
        open_fields(&mut opened, &["email"], Some(&key), "user-1").unwrap();
        assert_eq!(opened["email"], "a@example.com");

        // The same ciphertext presented as another subject's fails: it cannot be moved.
        assert!(open_fields(&mut payload.clone(), &["email"], Some(&key), "user-2").is_err());
        assert!(keyring.unwrap_data_key("user-2", &wrapped).is_err());
    }

    #[test]
    fn without_the_key_sealed_fields_read_erased() {
        let keyring = keyring();
        let (key, _) = keyring.new_data_key("user-1");
        let mut payload = json!({"givenName": "Zoë"});
        seal_fields(&mut payload, &["givenName"], &key, "user-1");
        open_fields(&mut payload, &["givenName"], None, "user-1").unwrap();
        assert_eq!(payload["givenName"], ERASED);
    }

    /// What a client may send as an availability or meeting type name: text that looks
    /// sealed, even a well-formed sealed value. It is not declared, so it is never opened.
    fn lookalikes() -> Vec<String> {
        vec![
            "kairos:enc:v1:x".into(),
            "kairos:enc:v1:".into(),
            format!("{SEALED_PREFIX}{}", STANDARD.encode([7u8; 40])),
        ]
    }

    #[test]
    fn undeclared_fields_that_look_sealed_are_left_as_the_text_they_are() {
        let keyring = keyring();
        let (key, _) = keyring.new_data_key("user-1");
        for text in lookalikes() {
            let mut payload = json!({"name": text, "givenName": "Ada"});
            seal_fields(&mut payload, &["givenName"], &key, "user-1");
            open_fields(&mut payload, &["givenName"], Some(&key), "user-1").unwrap();
            assert_eq!(payload["name"], text.as_str());
            assert_eq!(payload["givenName"], "Ada");
            // Nor does an erased subject turn them into `[erased]`.
            let mut payload = json!({"name": text});
            open_fields(&mut payload, &[], None, "user-1").unwrap();
            open_fields(&mut payload, &["givenName"], None, "user-1").unwrap();
            assert_eq!(payload["name"], text.as_str());
        }
    }

    #[test]
    fn declared_fields_whose_text_looks_sealed_are_sealed_and_open_to_that_text() {
        let keyring = keyring();
        let (key, _) = keyring.new_data_key("user-1");
        for text in lookalikes() {
            let mut payload = json!({"givenName": text});
            seal_fields(&mut payload, &["givenName"], &key, "user-1");
            assert_ne!(payload["givenName"], text.as_str());
            open_fields(&mut payload, &["givenName"], Some(&key), "user-1").unwrap();
            assert_eq!(payload["givenName"], text.as_str());
        }
    }

    #[test]
    fn a_declared_field_that_does_not_open_is_an_error() {
        let keyring = keyring();
        let (key, _) = keyring.new_data_key("user-1");
        for text in lookalikes().into_iter().chain(["Ada".to_string()]) {
            let mut payload = json!({"givenName": text});
            assert!(
                open_fields(&mut payload, &["givenName"], Some(&key), "user-1").is_err(),
                "{text} opened"
            );
        }
    }

    #[test]
    fn a_wrong_master_key_cannot_unwrap() {
        let (_, wrapped) = keyring().new_data_key("user-1");
        assert!(keyring().unwrap_data_key("user-1", &wrapped).is_err());
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert!(Keyring::from_base64("not base64!").is_err());
        assert!(Keyring::from_base64(&STANDARD.encode([0u8; 16])).is_err());
        assert!(Keyring::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
    }
}

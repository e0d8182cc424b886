//! The Company aggregate: the tenant, its owner and its API keys (api.md section 1).
//!
//! Only a hash of an API key's secret is ever recorded; the secret itself is shown once, by
//! whoever issued the key, and then exists nowhere in Kairos.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::effects::StoredEvent;
use crate::input::{FieldErrors, Raw};
use crate::values::Label;

/// API keys expire after 1 to 90 days (section 1).
pub const KEY_DAYS: std::ops::RangeInclusive<i64> = 1..=90;

#[derive(Debug, Clone, PartialEq)]
pub enum CompanyCommand {
    CreateCompany {
        company_id: Uuid,
        name: Raw<String>,
        owner_user_id: Uuid,
        at: DateTime<Utc>,
    },
    IssueApiKey {
        key_id: Uuid,
        /// Hex SHA-256 of the secret; the secret never reaches the aggregate.
        secret_hash: String,
        days: i64,
        at: DateTime<Utc>,
    },
    RevokeApiKey {
        key_id: Uuid,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum CompanyEvent {
    CompanyCreated {
        company_id: Uuid,
        name: Label,
        owner_user_id: Uuid,
        created_at: DateTime<Utc>,
    },
    ApiKeyIssued {
        key_id: Uuid,
        secret_hash: String,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    ApiKeyRevoked {
        key_id: Uuid,
        revoked_at: DateTime<Utc>,
    },
}

impl DomainEvent for CompanyEvent {
    fn event_type(&self) -> String {
        match self {
            CompanyEvent::CompanyCreated { .. } => "CompanyCreated",
            CompanyEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            CompanyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl StoredEvent for CompanyEvent {}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompanyError {
    #[error("Validation failed: {0}")]
    Invalid(FieldErrors),
    #[error("Company already exists")]
    AlreadyExists,
    #[error("Company not found")]
    NotFound,
    #[error("An API key with this id already exists")]
    KeyAlreadyExists,
    #[error("API key not found")]
    KeyNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyState {
    revoked: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    created: bool,
    owner_user_id: Option<Uuid>,
    keys: BTreeMap<Uuid, KeyState>,
}

impl Company {
    pub fn owner_user_id(&self) -> Option<Uuid> {
        self.owner_user_id
    }
}

impl Aggregate for Company {
    const TYPE: &'static str = "Company";
    type Command = CompanyCommand;
    type Event = CompanyEvent;
    type Error = CompanyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CompanyCommand::CreateCompany {
                company_id,
                name,
                owner_user_id,
                at,
            } => {
                if self.created {
                    return Err(CompanyError::AlreadyExists);
                }
                let mut errors = FieldErrors::new();
                let name = name.required("name", &mut errors).and_then(|raw| {
                    Label::parse("name", &raw)
                        .map_err(|m| errors.push("name", m))
                        .ok()
                });
                let name = match (errors.is_empty(), name) {
                    (true, Some(name)) => name,
                    _ => return Err(CompanyError::Invalid(errors)),
                };
                let event = CompanyEvent::CompanyCreated {
                    company_id,
                    name,
                    owner_user_id,
                    created_at: at,
                };
                sink.write(event, self).await;
            }
            CompanyCommand::IssueApiKey {
                key_id,
                secret_hash,
                days,
                at,
            } => {
                if !self.created {
                    return Err(CompanyError::NotFound);
                }
                if !KEY_DAYS.contains(&days) {
                    let mut errors = FieldErrors::new();
                    errors.push("days", "API keys expire after 1 to 90 days");
                    return Err(CompanyError::Invalid(errors));
                }
                if self.keys.contains_key(&key_id) {
                    return Err(CompanyError::KeyAlreadyExists);
                }
                let event = CompanyEvent::ApiKeyIssued {
                    key_id,
                    secret_hash,
                    issued_at: at,
                    expires_at: at + Duration::days(days),
                };
                sink.write(event, self).await;
            }
            CompanyCommand::RevokeApiKey { key_id, at } => {
                if !self.created {
                    return Err(CompanyError::NotFound);
                }
                match self.keys.get(&key_id) {
                    None => return Err(CompanyError::KeyNotFound),
                    // Revoking twice changes nothing and records nothing.
                    Some(KeyState { revoked: true }) => {}
                    Some(KeyState { revoked: false }) => {
                        let event = CompanyEvent::ApiKeyRevoked {
                            key_id,
                            revoked_at: at,
                        };
                        sink.write(event, self).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CompanyEvent::CompanyCreated { owner_user_id, .. } => {
                self.created = true;
                self.owner_user_id = Some(owner_user_id);
            }
            CompanyEvent::ApiKeyIssued { key_id, .. } => {
                self.keys.insert(key_id, KeyState { revoked: false });
            }
            CompanyEvent::ApiKeyRevoked { key_id, .. } => {
                if let Some(key) = self.keys.get_mut(&key_id) {
                    key.revoked = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type CompanyTest = TestFramework<Company>;

    fn at() -> DateTime<Utc> {
        "2026-01-15T10:00:00Z".parse().unwrap()
    }

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3))
    }

    fn created() -> CompanyEvent {
        let (company_id, owner_user_id, _) = ids();
        CompanyEvent::CompanyCreated {
            company_id,
            name: Label::parse("name", "Acme").unwrap(),
            owner_user_id,
            created_at: at(),
        }
    }

    fn issued() -> CompanyEvent {
        CompanyEvent::ApiKeyIssued {
            key_id: ids().2,
            secret_hash: "ab".repeat(32),
            issued_at: at(),
            expires_at: at() + Duration::days(30),
        }
    }

    fn create(name: &str) -> CompanyCommand {
        let (company_id, owner_user_id, _) = ids();
        CompanyCommand::CreateCompany {
            company_id,
            name: Raw::Given(name.to_string()),
            owner_user_id,
            at: at(),
        }
    }

    fn issue(days: i64) -> CompanyCommand {
        CompanyCommand::IssueApiKey {
            key_id: ids().2,
            secret_hash: "ab".repeat(32),
            days,
            at: at(),
        }
    }

    #[tokio::test]
    async fn creating_a_company_records_its_name_and_owner() {
        CompanyTest::with(())
            .given_no_previous_events()
            .when_async(create("  Acme "))
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn a_company_is_created_only_once() {
        CompanyTest::with(())
            .given(vec![created()])
            .when_async(create("Acme"))
            .await
            .then_expect_error(CompanyError::AlreadyExists);
    }

    #[tokio::test]
    async fn a_company_needs_a_name_without_control_characters() {
        let mut errors = FieldErrors::new();
        errors.push(
            "name",
            "name must not contain control characters (such as line breaks)",
        );
        CompanyTest::with(())
            .given_no_previous_events()
            .when_async(create("Ac\nme"))
            .await
            .then_expect_error(CompanyError::Invalid(errors));
    }

    #[tokio::test]
    async fn issuing_a_key_records_only_its_hash_and_expiry() {
        CompanyTest::with(())
            .given(vec![created()])
            .when_async(issue(30))
            .await
            .then_expect_events(vec![issued()]);
    }

    #[tokio::test]
    async fn a_key_must_expire_within_1_to_90_days() {
        for days in [0, 91, -1] {
            let mut errors = FieldErrors::new();
            errors.push("days", "API keys expire after 1 to 90 days");
            CompanyTest::with(())
                .given(vec![created()])
                .when_async(issue(days))
                .await
                .then_expect_error(CompanyError::Invalid(errors));
        }
        for days in [1, 90] {
            let events = CompanyTest::with(())
                .given(vec![created()])
                .when_async(issue(days))
                .await
                .inspect_result()
                .unwrap();
            assert_eq!(events.len(), 1);
        }
    }

    #[tokio::test]
    async fn a_key_cannot_be_issued_for_a_company_that_does_not_exist() {
        CompanyTest::with(())
            .given_no_previous_events()
            .when_async(issue(30))
            .await
            .then_expect_error(CompanyError::NotFound);
    }

    #[tokio::test]
    async fn a_key_id_is_issued_only_once() {
        CompanyTest::with(())
            .given(vec![created(), issued()])
            .when_async(issue(30))
            .await
            .then_expect_error(CompanyError::KeyAlreadyExists);
    }

    #[tokio::test]
    async fn revoking_a_key_records_when() {
        CompanyTest::with(())
            .given(vec![created(), issued()])
            .when_async(CompanyCommand::RevokeApiKey {
                key_id: ids().2,
                at: at(),
            })
            .await
            .then_expect_events(vec![CompanyEvent::ApiKeyRevoked {
                key_id: ids().2,
                revoked_at: at(),
            }]);
    }

    #[tokio::test]
    async fn revoking_a_revoked_key_records_nothing() {
        let revoked = CompanyEvent::ApiKeyRevoked {
            key_id: ids().2,
            revoked_at: at(),
        };
        CompanyTest::with(())
            .given(vec![created(), issued(), revoked])
            .when_async(CompanyCommand::RevokeApiKey {
                key_id: ids().2,
                at: at(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn revoking_an_unknown_key_is_an_error() {
        CompanyTest::with(())
            .given(vec![created()])
            .when_async(CompanyCommand::RevokeApiKey {
                key_id: Uuid::from_u128(99),
                at: at(),
            })
            .await
            .then_expect_error(CompanyError::KeyNotFound);
    }
}

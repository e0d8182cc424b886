//! Company bootstrap and API keys, for the CLI (api.md sections 1 and 10) and tests.
//!
//! Creating a company is one append of two streams: the Company (with its first API key) and
//! its owner, a `standard` User with the default availability and meeting type. Afterwards
//! the read models authentication uses are brought up to date, so the printed key works at
//! once even when no server is running yet.

use std::time::Duration;

use aggregates::company::{Company, CompanyCommand, CompanyError};
use aggregates::effects::ClaimKind;
use aggregates::input::{FieldError, Raw};
use aggregates::slug;
use aggregates::user::{CreatePlatformUser, User, UserCommand, UserError, UserType};
use aggregates::values::Slug;
use chrono::{DateTime, Duration as Days, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use projections::log::LogPosition;
use projections::runtime;
use uuid::Uuid;

use crate::api_keys;
use crate::commands::{CommandBus, CommandContext, CommandError, decide, stream_append};
use crate::event_store::{AppendError, EventMetadata};

const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NewCompany {
    pub name: String,
    pub owner_email: String,
    pub owner_given_name: String,
    pub owner_family_name: String,
    pub timezone: String,
    pub key_days: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedCompany {
    pub company_id: Uuid,
    pub owner_user_id: Uuid,
    pub api_key_id: Uuid,
    pub api_key: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedKey {
    pub company_id: Uuid,
    pub api_key_id: Uuid,
    pub api_key: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("invalid input: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("company not found")]
    CompanyNotFound,
    #[error("API key not found")]
    KeyNotFound,
    #[error("{0}")]
    Store(#[from] AppendError),
    #[error("read models did not catch up: {0}")]
    CatchUp(#[from] projections::runtime::ProjectionError),
    #[error("{0}")]
    Other(String),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cli_context(company_id: Uuid) -> CommandContext {
    CommandContext {
        metadata: EventMetadata {
            origin: "cli",
            company_id: Some(company_id),
            ..Default::default()
        },
        company_id: Some(company_id),
        new_aggregate: false,
    }
}

pub async fn create_company(
    bus: &CommandBus,
    input: NewCompany,
) -> Result<CreatedCompany, ProvisionError> {
    let company_id = Uuid::now_v7();
    let owner_user_id = Uuid::now_v7();
    let key = api_keys::generate();
    let now = bus.clock().now();
    let base = slug::base_of(&format!(
        "{} {}",
        input.owner_given_name.trim(),
        input.owner_family_name.trim()
    ));
    for _ in 0..64 {
        let mut company = Company::default();
        let sink = EventSink::<Company>::default();
        let mut errors: Vec<FieldError> = Vec::new();
        let created = company
            .handle(
                CompanyCommand::CreateCompany {
                    company_id,
                    name: Raw::Given(input.name.clone()),
                    owner_user_id,
                    at: now,
                },
                &(),
                &sink,
            )
            .await;
        match created {
            Err(CompanyError::Invalid(invalid)) => {
                errors.extend(invalid.into_vec());
                // The key is not decided without a company; still report a bad expiry now.
                if !aggregates::company::KEY_DAYS.contains(&input.key_days) {
                    errors.push(FieldError {
                        field: "days".into(),
                        message: "API keys expire after 1 to 90 days".into(),
                    });
                }
            }
            Err(other) => return Err(ProvisionError::Other(other.to_string())),
            Ok(()) => {
                let issued = company
                    .handle(
                        CompanyCommand::IssueApiKey {
                            key_id: key.key_id,
                            secret_hash: key.secret_hash_hex.clone(),
                            days: input.key_days,
                            at: now,
                        },
                        &(),
                        &sink,
                    )
                    .await;
                if let Err(CompanyError::Invalid(invalid)) = issued {
                    errors.extend(invalid.into_vec());
                }
            }
        }
        let taken = bus
            .store()
            .taken_user_slug_candidates(&base, slug::first_suffix(&base, Slug::USER_MIN_LEN))
            .await
            .map_err(AppendError::from)?;
        let owner = decide(
            User::default(),
            UserCommand::CreatePlatformUser(Box::new(CreatePlatformUser {
                user_id: owner_user_id,
                company_id,
                user_type: UserType::Standard,
                is_owner: true,
                availability_id: Uuid::now_v7(),
                meeting_type_id: Uuid::now_v7(),
                email: Raw::Given(input.owner_email.clone()),
                given_name: Raw::Given(input.owner_given_name.clone()),
                family_name: Raw::Given(input.owner_family_name.clone()),
                timezone: Raw::Given(input.timezone.clone()),
                slug: Raw::Missing,
                availability: Raw::Missing,
                meeting_type: Raw::Missing,
                taken_user_slugs: taken,
                at: now,
            })),
        )
        .await;
        let owner_events = match owner {
            Ok(events) => events,
            Err(UserError::Invalid(invalid)) => {
                errors.extend(invalid.into_vec().into_iter().map(|e| FieldError {
                    field: format!("owner.{}", e.field),
                    message: e.message,
                }));
                Vec::new()
            }
            Err(other) => return Err(ProvisionError::Other(other.to_string())),
        };
        if !errors.is_empty() {
            return Err(ProvisionError::Invalid(errors));
        }
        let company_events = sink.collect().await;
        let streams = vec![
            stream_append::<Company>(&company_id.to_string(), 0, &company_events)
                .map_err(AppendError::from)?,
            stream_append::<User>(&owner_user_id.to_string(), 0, &owner_events)
                .map_err(AppendError::from)?,
        ];
        match bus.commit(streams, &cli_context(company_id), None).await {
            // Someone took the derived owner slug meanwhile (or, in a narrower race, held it
            // and let it go): pick again.
            Err(
                AppendError::ClaimTaken {
                    kind: ClaimKind::UserSlug,
                    ..
                }
                | AppendError::Conflict,
            ) => continue,
            Err(other) => return Err(other.into()),
            Ok(appended) => {
                catch_up(bus, appended.position).await?;
                return Ok(CreatedCompany {
                    company_id,
                    owner_user_id,
                    api_key_id: key.key_id,
                    api_key: key.token,
                    expires_at: shown_expiry(now, input.key_days),
                });
            }
        }
    }
    Err(ProvisionError::Other(
        "could not find a free slug for the owner".into(),
    ))
}

pub async fn issue_key(
    bus: &CommandBus,
    company_id: Uuid,
    days: i64,
) -> Result<IssuedKey, ProvisionError> {
    let key = api_keys::generate();
    let now = bus.clock().now();
    let command = CompanyCommand::IssueApiKey {
        key_id: key.key_id,
        secret_hash: key.secret_hash_hex.clone(),
        days,
        at: now,
    };
    let committed = bus
        .execute::<Company>(&company_id.to_string(), command, &cli_context(company_id))
        .await
        .map_err(company_error)?;
    if let Some(position) = committed.position {
        catch_up(bus, position).await?;
    }
    Ok(IssuedKey {
        company_id,
        api_key_id: key.key_id,
        api_key: key.token,
        expires_at: shown_expiry(now, days),
    })
}

pub async fn revoke_key(bus: &CommandBus, key_id: Uuid) -> Result<(), ProvisionError> {
    let key = projections::companies::find_api_key(bus.pool(), key_id)
        .await
        .map_err(AppendError::from)?
        .ok_or(ProvisionError::KeyNotFound)?;
    let command = CompanyCommand::RevokeApiKey {
        key_id,
        at: bus.clock().now(),
    };
    let committed = bus
        .execute::<Company>(
            &key.company_id.to_string(),
            command,
            &cli_context(key.company_id),
        )
        .await
        .map_err(company_error)?;
    if let Some(position) = committed.position {
        catch_up(bus, position).await?;
    }
    Ok(())
}

fn company_error(error: CommandError<CompanyError>) -> ProvisionError {
    match error {
        CommandError::Rejected(CompanyError::Invalid(errors)) => {
            ProvisionError::Invalid(errors.into_vec())
        }
        CommandError::Rejected(CompanyError::NotFound) => ProvisionError::CompanyNotFound,
        CommandError::Rejected(CompanyError::KeyNotFound) => ProvisionError::KeyNotFound,
        CommandError::Store(store) => ProvisionError::Store(store),
        other => ProvisionError::Other(other.to_string()),
    }
}

/// Brings every read model past `position` (applying here when no server leads it).
async fn catch_up(bus: &CommandBus, position: LogPosition) -> Result<(), ProvisionError> {
    // This process serves no windows, so the cache the projector would invalidate is its own.
    let projectors =
        projections::all_projectors(bus.clock().clone(), &projections::Caches::unused());
    let reached = runtime::catch_up(
        bus.pool(),
        bus.store().keyring(),
        &projectors,
        position,
        CATCH_UP_TIMEOUT,
    )
    .await?;
    if reached {
        Ok(())
    } else {
        Err(ProvisionError::Other(
            "the read models did not catch up within 30 s; the change is stored and will appear"
                .into(),
        ))
    }
}

/// The expiry to show: whole seconds (api.md section 0), rounded down so it never promises
/// more than the key holds.
fn shown_expiry(issued_at: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    use chrono::SubsecRound;
    (issued_at + Days::days(days)).trunc_subsecs(0)
}

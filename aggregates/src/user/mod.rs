//! The User aggregate: a platform user with its availabilities and meeting types, which live
//! inside it so that one commit changes them together (architecture.md).

mod events;
#[cfg(test)]
mod tests;

pub use events::{UserEvent, UserType};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::availability::{self, Availability, AvailabilityInput, ParsedAvailability};
use crate::input::{FieldErrors, Raw};
use crate::meeting_type::{
    self, MeetingType, MeetingTypeInput, MeetingTypeSettings, ParsedMeetingType,
};
use crate::schedule::WeeklySchedule;
use crate::slug;
use crate::values::{Email, Label, PersonName, Slug, TimeZoneName};

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    CreatePlatformUser(Box<CreatePlatformUser>),
    UpdateProfile(UpdateProfile),
    DeleteUser {
        /// The caller's company: a user of another company is not found.
        company_id: Uuid,
        /// The user the request acts as; nobody deletes themselves.
        acting_user_id: Uuid,
        at: DateTime<Utc>,
    },
}

/// `POST /v4/user` (and the owner of `kairos company create`), as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlatformUser {
    pub user_id: Uuid,
    pub company_id: Uuid,
    pub user_type: UserType,
    pub is_owner: bool,
    pub availability_id: Uuid,
    pub meeting_type_id: Uuid,
    pub email: Raw<String>,
    pub given_name: Raw<String>,
    pub family_name: Raw<String>,
    pub timezone: Raw<String>,
    pub slug: Raw<String>,
    pub availability: Raw<AvailabilityInput>,
    pub meeting_type: Raw<MeetingTypeInput>,
    /// Which candidates for this name's slug (`john-smith`, `john-smith-2`, …) are claimed,
    /// as far as the caller looked them up; the aggregate picks the first free one.
    pub taken_user_slugs: slug::TakenCandidates,
    pub at: DateTime<Utc>,
}

/// `PATCH /v4/user/{id}`: any of the four fields; at least one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateProfile {
    /// The caller's company: a user of another company is not found.
    pub company_id: Uuid,
    pub given_name: Raw<String>,
    pub family_name: Raw<String>,
    pub slug: Raw<String>,
    pub timezone: Raw<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("Validation failed: {0}")]
    Invalid(FieldErrors),
    #[error("User not found")]
    NotFound,
    #[error("User already exists")]
    AlreadyExists,
    #[error("The company owner cannot be deleted")]
    CannotDeleteOwner,
    #[error("You cannot delete yourself")]
    CannotDeleteYourself,
}

/// A user as its events make it. `None` before `UserCreated`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    state: Option<UserState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserState {
    pub id: Uuid,
    pub company_id: Uuid,
    pub user_type: UserType,
    pub is_owner: bool,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub slug: String,
    pub timezone: TimeZoneName,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
    pub availabilities: Vec<Availability>,
    pub meeting_types: Vec<MeetingType>,
    pub default_availability_id: Option<Uuid>,
    pub default_meeting_type_id: Option<Uuid>,
}

impl User {
    /// The user's state, deleted or not; `None` if it was never created.
    pub fn state(&self) -> Option<&UserState> {
        self.state.as_ref()
    }

    /// The live user of `company_id`, or `NotFound` if it does not exist, was deleted or
    /// belongs to another company (ids of other tenants cannot be probed).
    fn live(&self, company_id: Uuid) -> Result<&UserState, UserError> {
        match &self.state {
            Some(state) if !state.deleted && state.company_id == company_id => Ok(state),
            _ => Err(UserError::NotFound),
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            UserCommand::CreatePlatformUser(create) => self.create(*create)?,
            UserCommand::UpdateProfile(update) => self.update_profile(update)?,
            UserCommand::DeleteUser {
                company_id,
                acting_user_id,
                at,
            } => {
                let user = self.live(company_id)?;
                if user.is_owner {
                    return Err(UserError::CannotDeleteOwner);
                }
                if user.id == acting_user_id {
                    return Err(UserError::CannotDeleteYourself);
                }
                vec![UserEvent::UserDeleted { at }]
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let at = event.at();
        if let UserEvent::UserCreated {
            user_id,
            company_id,
            user_type,
            is_owner,
            email,
            given_name,
            family_name,
            slug,
            timezone,
            created_at,
        } = event
        {
            self.state = Some(UserState {
                id: user_id,
                company_id,
                user_type,
                is_owner,
                email,
                given_name,
                family_name,
                slug,
                timezone,
                created_at,
                updated_at: created_at,
                deleted: false,
                availabilities: Vec::new(),
                meeting_types: Vec::new(),
                default_availability_id: None,
                default_meeting_type_id: None,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.updated_at = at;
        match event {
            UserEvent::UserCreated { .. } => {}
            UserEvent::AvailabilityProvisioned {
                availability_id,
                name,
                timezone,
                schedule,
                is_default,
                ..
            } => {
                if is_default {
                    state.default_availability_id = Some(availability_id);
                }
                state.availabilities.push(Availability {
                    id: availability_id,
                    name,
                    timezone,
                    schedule,
                });
            }
            UserEvent::MeetingTypeProvisioned {
                meeting_type_id,
                availability_id,
                name,
                slug,
                settings,
                is_default,
                ..
            } => {
                if is_default {
                    state.default_meeting_type_id = Some(meeting_type_id);
                }
                state.meeting_types.push(MeetingType {
                    id: meeting_type_id,
                    availability_id,
                    name,
                    slug,
                    settings,
                    enabled: true,
                });
            }
            UserEvent::UserRenamed {
                given_name,
                family_name,
                ..
            } => {
                state.given_name = given_name;
                state.family_name = family_name;
            }
            UserEvent::UserSlugChanged { slug, .. } => state.slug = slug,
            UserEvent::UserTimezoneChanged { timezone, .. } => state.timezone = timezone,
            UserEvent::UserDeleted { .. } => state.deleted = true,
        }
    }
}

impl User {
    fn create(&self, create: CreatePlatformUser) -> Result<Vec<UserEvent>, UserError> {
        if self.state.is_some() {
            return Err(UserError::AlreadyExists);
        }
        let mut errors = FieldErrors::new();
        let email = create
            .email
            .required("email", &mut errors)
            .and_then(|raw| Email::parse(&raw).map_err(|m| errors.push("email", m)).ok());
        let given_name = parse_name(create.given_name, "givenName", true, &mut errors);
        let family_name = parse_name(create.family_name, "familyName", true, &mut errors);
        let timezone = parse_timezone(create.timezone, true, &mut errors);
        let explicit_slug = create.slug.optional("slug", &mut errors).and_then(|raw| {
            Slug::parse(&raw, Slug::USER_MIN_LEN)
                .map_err(|m| errors.push("slug", m))
                .ok()
        });
        let availability = parse_nested(
            create.availability,
            "availability",
            &mut errors,
            AvailabilityInput::parse,
        );
        let meeting_type = parse_nested(
            create.meeting_type,
            "meetingType",
            &mut errors,
            MeetingTypeInput::parse,
        );
        let (Some(email), Some(given_name), Some(family_name), Some(timezone)) =
            (email, given_name, family_name, timezone)
        else {
            return Err(UserError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(UserError::Invalid(errors));
        }

        let slug = explicit_slug.unwrap_or_else(|| {
            let full_name = format!("{} {}", given_name.as_str(), family_name.as_str());
            slug::next_free(
                &slug::base_of(&full_name),
                Slug::USER_MIN_LEN,
                &create.taken_user_slugs,
            )
        });
        let availability = availability.unwrap_or_else(|| ParsedAvailability {
            name: Label::fixed(availability::DEFAULT_NAME),
            timezone: None,
            schedule: WeeklySchedule::business_hours(),
        });
        let meeting_type = meeting_type.unwrap_or_else(|| ParsedMeetingType {
            name: Label::fixed(meeting_type::DEFAULT_NAME),
            slug: None,
            settings: MeetingTypeSettings::default(),
        });
        // A user's first meeting type has no sibling to collide with, so its derived slug is
        // the base itself; the claim still guards the rule.
        let meeting_type_slug = meeting_type.slug.unwrap_or_else(|| {
            slug::first_free(&slug::base_of(meeting_type.name.as_str()), 1, |_| false)
        });

        Ok(vec![
            UserEvent::UserCreated {
                user_id: create.user_id,
                company_id: create.company_id,
                user_type: create.user_type,
                is_owner: create.is_owner,
                email: email.as_str().to_string(),
                given_name: given_name.as_str().to_string(),
                family_name: family_name.as_str().to_string(),
                slug: slug.to_string(),
                timezone,
                created_at: create.at,
            },
            UserEvent::AvailabilityProvisioned {
                availability_id: create.availability_id,
                name: availability.name,
                timezone: availability.timezone,
                schedule: availability.schedule,
                is_default: true,
                at: create.at,
            },
            UserEvent::MeetingTypeProvisioned {
                meeting_type_id: create.meeting_type_id,
                availability_id: create.availability_id,
                name: meeting_type.name,
                slug: meeting_type_slug,
                settings: meeting_type.settings,
                is_default: true,
                at: create.at,
            },
        ])
    }

    fn update_profile(&self, update: UpdateProfile) -> Result<Vec<UserEvent>, UserError> {
        let user = self.live(update.company_id)?;
        let anything_sent = update.given_name.is_sent()
            || update.family_name.is_sent()
            || update.slug.is_sent()
            || update.timezone.is_sent();
        let mut errors = FieldErrors::new();
        if !anything_sent {
            errors.push(
                "body",
                "Provide at least one of givenName, familyName, slug, timezone",
            );
            return Err(UserError::Invalid(errors));
        }
        // None of them can be cleared: a `null` is refused, not read as "unchanged".
        for (field, null) in [
            ("givenName", update.given_name.is_null()),
            ("familyName", update.family_name.is_null()),
            ("slug", update.slug.is_null()),
            ("timezone", update.timezone.is_null()),
        ] {
            if null {
                errors.push(field, format!("{field} cannot be null"));
            }
        }
        let given_name = parse_name(update.given_name, "givenName", false, &mut errors);
        let family_name = parse_name(update.family_name, "familyName", false, &mut errors);
        let timezone = parse_timezone(update.timezone, false, &mut errors);
        let slug = update.slug.optional("slug", &mut errors).and_then(|raw| {
            Slug::parse(&raw, Slug::USER_MIN_LEN)
                .map_err(|m| errors.push("slug", m))
                .ok()
        });
        if !errors.is_empty() {
            return Err(UserError::Invalid(errors));
        }

        // Only real changes are recorded: a PATCH that repeats the current values is a no-op.
        let mut events = Vec::new();
        let new_given =
            given_name.map_or_else(|| user.given_name.clone(), |n| n.as_str().to_string());
        let new_family =
            family_name.map_or_else(|| user.family_name.clone(), |n| n.as_str().to_string());
        if new_given != user.given_name || new_family != user.family_name {
            events.push(UserEvent::UserRenamed {
                given_name: new_given,
                family_name: new_family,
                at: update.at,
            });
        }
        if let Some(slug) = slug.filter(|s| s.as_str() != user.slug) {
            events.push(UserEvent::UserSlugChanged {
                slug: slug.to_string(),
                at: update.at,
            });
        }
        if let Some(timezone) = timezone.filter(|tz| *tz != user.timezone) {
            events.push(UserEvent::UserTimezoneChanged {
                timezone,
                at: update.at,
            });
        }
        Ok(events)
    }
}

fn parse_name(
    raw: Raw<String>,
    field: &str,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<PersonName> {
    let raw = if required {
        raw.required(field, errors)
    } else {
        raw.optional(field, errors)
    };
    raw.and_then(|raw| {
        PersonName::parse(field, &raw)
            .map_err(|m| errors.push(field, m))
            .ok()
    })
}

fn parse_timezone(
    raw: Raw<String>,
    required: bool,
    errors: &mut FieldErrors,
) -> Option<TimeZoneName> {
    let raw = if required {
        raw.required("timezone", errors)
    } else {
        raw.optional("timezone", errors)
    };
    raw.and_then(|raw| {
        TimeZoneName::parse(&raw)
            .map_err(|m| errors.push("timezone", m))
            .ok()
    })
}

/// An optional nested object whose own errors are reported under `field`.
fn parse_nested<I, T>(
    raw: Raw<I>,
    field: &str,
    errors: &mut FieldErrors,
    parse: impl FnOnce(I) -> Result<T, FieldErrors>,
) -> Option<T> {
    let input = raw.optional(field, errors)?;
    parse(input)
        .map_err(|nested| errors.extend_nested(field, nested))
        .ok()
}

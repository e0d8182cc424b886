//! What an event asks of the event store beyond being stored: uniqueness claims it takes or
//! gives up, personal fields to encrypt, and the erasure of its stream's personal data.
//!
//! Set rules across aggregates (one email per company, one user slug per installation) cannot
//! be decided inside one aggregate. They are *claims*: rows written in the same transaction as
//! the events that need them, so a violated claim rejects the whole append. Declaring them on
//! the events keeps the rule beside the fact that causes it, and keeps it pure.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// A kind of unique key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClaimKind {
    /// A user's email, lowercased, unique within its company.
    UserEmail,
    /// A user's slug, unique across the installation.
    UserSlug,
    /// A meeting type's slug, unique within its user.
    MeetingTypeSlug,
}

impl ClaimKind {
    pub const ALL: [ClaimKind; 3] = [
        ClaimKind::UserEmail,
        ClaimKind::UserSlug,
        ClaimKind::MeetingTypeSlug,
    ];

    /// The name stored in the claims table.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::UserEmail => "user-email",
            ClaimKind::UserSlug => "user-slug",
            ClaimKind::MeetingTypeSlug => "meeting-type-slug",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// "`value` of `kind` within `scope` belongs to `owner`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: ClaimKind,
    /// The uniqueness scope: a company id, a user id, or `""` for the whole installation.
    pub scope: String,
    pub value: String,
    /// The entity holding the claim (a user id, a meeting type id), to release it later.
    pub owner: String,
}

/// One thing the store must do in the append transaction because of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEffect {
    Claim(Claim),
    /// Give up the claim of `kind` held by `owner` (before a new one is taken).
    Release {
        kind: ClaimKind,
        owner: String,
    },
    /// Give up every claim held by this aggregate.
    ReleaseAll,
    /// Destroy the data key of this aggregate: its personal fields read `[erased]` from now on.
    EraseDataSubject,
}

/// The store-facing side of an aggregate's events.
pub trait StoredEvent: DomainEvent {
    /// Claims taken or released, and erasure, caused by this event in the stream of
    /// `aggregate_id`.
    fn effects(&self, aggregate_id: &str) -> Vec<StoreEffect> {
        let _ = aggregate_id;
        Vec::new()
    }

    /// Top-level payload fields (as serialized, camelCase) of events of type `event_type`
    /// that hold personal data. The store encrypts them under the aggregate's data key
    /// (crypto-shredding, api.md section 7), and readers open exactly these and nothing else.
    ///
    /// A declaration per event *type*, not per event value: the reader must know which fields
    /// are sealed before it can decode the payload, and client text that merely looks sealed
    /// (`kairos:enc:v1:…` as an availability name) must never be taken for a sealed field.
    fn personal_fields_of(event_type: &str) -> &'static [&'static str]
    where
        Self: Sized,
    {
        let _ = event_type;
        &[]
    }

    /// Whether an event of `event_type` erases its aggregate's personal data (and ends it):
    /// the same fact as [`StoreEffect::EraseDataSubject`] among its effects, by type, so a
    /// reader that cannot decode the stream (a quarantined one) still recognizes it.
    fn erases_subject_of(event_type: &str) -> bool
    where
        Self: Sized,
    {
        let _ = event_type;
        false
    }

    /// [`Self::personal_fields_of`] this event's type.
    fn personal_fields(&self) -> &'static [&'static str]
    where
        Self: Sized,
    {
        Self::personal_fields_of(&self.event_type())
    }
}

/// [`StoredEvent::erases_subject_of`] by aggregate type.
pub fn erases_subject(aggregate_type: &str, event_type: &str) -> bool {
    use cqrs_es::Aggregate;
    match aggregate_type {
        crate::user::User::TYPE => crate::user::UserEvent::erases_subject_of(event_type),
        crate::company::Company::TYPE => {
            crate::company::CompanyEvent::erases_subject_of(event_type)
        }
        _ => false,
    }
}

/// The personal fields of an event of `event_type` in a stream of `aggregate_type`: the one
/// declaration both the sealing on append and every opening on read go by. An aggregate or
/// event type Kairos does not know has none.
pub fn personal_fields(aggregate_type: &str, event_type: &str) -> &'static [&'static str] {
    use cqrs_es::Aggregate;
    match aggregate_type {
        crate::user::User::TYPE => crate::user::UserEvent::personal_fields_of(event_type),
        crate::company::Company::TYPE => {
            crate::company::CompanyEvent::personal_fields_of(event_type)
        }
        _ => &[],
    }
}

/// The stored payload of an event: its fields without the enum's variant wrapper, since the
/// event type is stored in its own column. `{"UserRenamed": {"givenName": …}}` is stored as
/// `{"givenName": …}` with `event_type = "UserRenamed"`.
pub fn payload_of<E: Serialize>(event: &E) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::to_value(event)? {
        serde_json::Value::Object(mut wrapper) if wrapper.len() == 1 => {
            let (_, inner) = wrapper.iter_mut().next().expect("one entry");
            Ok(inner.take())
        }
        // A unit variant serializes as a bare string: it has no fields.
        serde_json::Value::String(_) => Ok(serde_json::Value::Object(Default::default())),
        other => Ok(other),
    }
}

/// The inverse of [`payload_of`].
pub fn event_from_payload<E: serde::de::DeserializeOwned>(
    event_type: &str,
    payload: serde_json::Value,
) -> Result<E, serde_json::Error> {
    let mut wrapper = serde_json::Map::with_capacity(1);
    wrapper.insert(event_type.to_string(), payload);
    serde_json::from_value(serde_json::Value::Object(wrapper))
}

/// [`event_from_payload`] reading the payload in place: projectors decode every event of a
/// batch, and copying each payload to wrap it cost more than the decoding itself.
pub fn event_from_payload_ref<E: serde::de::DeserializeOwned>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<E, serde_json::Error> {
    E::deserialize(Tagged {
        variant: event_type,
        content: payload,
    })
}

/// An externally tagged enum value, `{variant: content}`, without the map around it.
struct Tagged<'a> {
    variant: &'a str,
    content: &'a serde_json::Value,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> serde::de::EnumAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;
    type Variant = Content<'de>;

    fn variant_seed<V: serde::de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let variant = seed.deserialize(serde::de::value::BorrowedStrDeserializer::<
            serde_json::Error,
        >::new(self.variant))?;
        Ok((variant, Content(self.content)))
    }
}

/// The content of a [`Tagged`] variant.
struct Content<'a>(&'a serde_json::Value);

impl<'de> serde::de::VariantAccess<'de> for Content<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: serde::de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: serde::de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        serde::Deserializer::deserialize_seq(self.0, visitor)
    }

    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        serde::Deserializer::deserialize_map(self.0, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::company::CompanyEvent;

    #[test]
    fn a_stored_payload_is_the_event_without_its_wrapper_and_reads_back() {
        let event = CompanyEvent::ApiKeyRevoked {
            key_id: uuid::Uuid::from_u128(7),
            revoked_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        let payload = payload_of(&event).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({"keyId": "00000000-0000-0000-0000-000000000007",
                               "revokedAt": "2026-01-01T00:00:00Z"})
        );
        let by_ref: CompanyEvent = event_from_payload_ref("ApiKeyRevoked", &payload).unwrap();
        assert_eq!(by_ref, event);
        let back: CompanyEvent = event_from_payload("ApiKeyRevoked", payload).unwrap();
        assert_eq!(back, event);
        let unknown: Result<CompanyEvent, _> =
            event_from_payload_ref("NoSuchEvent", &serde_json::json!({}));
        assert!(unknown.is_err());
    }
}

//! Domain values that cannot hold an invalid value: each is built only by `parse`.
//!
//! They serialize as plain strings. Deserializing does not re-validate, on purpose: a stored
//! event is a fact that was valid when it was decided, and an erased one reads `[erased]`.

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The value personal fields read after their owner's data key was destroyed (section 7).
pub const ERASED: &str = "[erased]";

/// An email address: trimmed, at most 254 characters, RFC 5322 syntax with a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("email must not be empty".into());
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "email must be at most {} characters",
                Self::MAX_LEN
            ));
        }
        let options = email_address::Options {
            minimum_sub_domains: 2,
            allow_domain_literal: false,
            allow_display_text: false,
            allow_long_local_parts: false,
        };
        email_address::EmailAddress::parse_with_options(trimmed, options)
            .map_err(|_| "email must be a valid email address".to_string())?;
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is decided on: emails are compared case-insensitively.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A given or family name: trimmed, 1–100 characters, any Unicode but control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, String> {
        parse_label(field, raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a company, an availability or a meeting type: the same rule as person names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(field: &str, raw: &str) -> Result<Self, String> {
        parse_label(field, raw, Self::MAX_CHARS).map(Self)
    }

    /// For names the domain itself chooses (`Business Hours`, `30min Meeting`).
    pub fn fixed(name: &'static str) -> Self {
        Self(name.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_label(field: &str, raw: &str, max_chars: usize) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("{field} must be at most {max_chars} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(format!(
            "{field} must not contain control characters (such as line breaks)"
        ));
    }
    Ok(trimmed.to_string())
}

/// An IANA time zone name (`Europe/Berlin`), known to the bundled tz database.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZoneName(Tz);

impl TimeZoneName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Tz::from_str(raw.trim())
            .map(Self)
            .map_err(|_| "Invalid timezone".to_string())
    }

    pub fn tz(&self) -> Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl From<Tz> for TimeZoneName {
    fn from(tz: Tz) -> Self {
        Self(tz)
    }
}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.name())
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Serialize for TimeZoneName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for TimeZoneName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Tz::from_str(&name)
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {name:?}")))
    }
}

/// A URL slug: lowercase ASCII letters and digits in runs joined by single hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Slugs are cut to this length when derived and refused beyond it when given.
    pub const MAX_LEN: usize = 64;
    /// User slugs are at least this long (section 2).
    pub const USER_MIN_LEN: usize = 5;

    /// Parses a slug a client gave explicitly.
    pub fn parse(raw: &str, min_len: usize) -> Result<Self, String> {
        let valid_shape = !raw.is_empty()
            && raw.split('-').all(|run| {
                !run.is_empty()
                    && run
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !valid_shape {
            return Err(
                "slug may contain only lowercase letters a-z, digits and single hyphens between them"
                    .to_string(),
            );
        }
        if raw.len() < min_len {
            return Err(format!("slug must be at least {min_len} characters"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("slug must be at most {} characters", Self::MAX_LEN));
        }
        Ok(Self(raw.to_string()))
    }

    /// For slugs built by [`crate::slug`] from already-slugified parts.
    pub(crate) fn from_derived(slug: String) -> Self {
        debug_assert!(
            Self::parse(&slug, 1).is_ok(),
            "derived slug {slug:?} is malformed"
        );
        Self(slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_compared_case_insensitively() {
        let email = Email::parse("  John.Smith@Example.com ").unwrap();
        assert_eq!(email.as_str(), "John.Smith@Example.com");
        assert_eq!(email.normalized(), "john.smith@example.com");
    }

    #[test]
    fn malformed_or_overlong_emails_are_refused() {
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@localhost",
            "a b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn names_are_trimmed_and_refuse_control_characters() {
        assert_eq!(
            PersonName::parse("givenName", "  Zoë ").unwrap().as_str(),
            "Zoë"
        );
        assert!(PersonName::parse("givenName", "   ").is_err());
        assert!(PersonName::parse("givenName", "a\nb").is_err());
        assert!(PersonName::parse("givenName", "a\u{0}b").is_err());
        assert!(PersonName::parse("givenName", &"x".repeat(101)).is_err());
        assert!(PersonName::parse("givenName", &"é".repeat(100)).is_ok());
    }

    #[test]
    fn only_iana_zone_names_are_time_zones() {
        assert_eq!(
            TimeZoneName::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
        assert!(TimeZoneName::parse("+01:00").is_err());
    }

    #[test]
    fn slugs_have_one_shape() {
        assert!(Slug::parse("john-smith", 5).is_ok());
        for bad in ["John", "john--smith", "-john", "john-", "jöhn", "jo hn", ""] {
            assert!(Slug::parse(bad, 1).is_err(), "{bad:?} should be refused");
        }
        assert!(Slug::parse("abcd", 5).is_err());
        assert!(Slug::parse(&"a".repeat(65), 1).is_err());
    }
}

//! Deriving slugs from names (api.md section 2, "User slug").
//!
//! `Jörg Müller` → `jorg-muller`: transliterated to ASCII, lowercased, every run of anything
//! but `[a-z0-9]` turned into one `-` (emoji and symbols are separators, not words), trimmed of `-`. A name without a single ASCII letter
//! (`李 王`) falls back to `user`. The first free candidate wins: the base itself, then `-2`,
//! `-3`, …; a base shorter than the minimum length starts at `-1` and takes the first
//! candidate that is long enough (`a-b` → `a-b-1`, `user` → `user-1`).

use crate::values::Slug;

/// The base used when a name has no ASCII letter at all.
pub const FALLBACK_BASE: &str = "user";

/// Room kept for a suffix when a long name is cut, so `-2` … `-99999` still fit.
const SUFFIX_ROOM: usize = 6;

/// The slug base of a name, before suffixes.
pub fn base_of(name: &str) -> String {
    if !name.chars().any(|c| c.is_ascii_alphabetic()) {
        return FALLBACK_BASE.to_string();
    }
    // Only letters and digits are transliterated; symbols and emoji separate words, so
    // `Anna 🎉 Berg` is `anna-berg`, not `anna-tada-berg`.
    let ascii: String = name
        .chars()
        .map(|c| match c.is_alphanumeric() {
            true => deunicode::deunicode_char(c).unwrap_or("-").to_string(),
            false => "-".to_string(),
        })
        .collect::<String>()
        .to_lowercase();
    let mut base = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            base.push(c);
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
    }
    let max = Slug::MAX_LEN - SUFFIX_ROOM;
    if base.len() > max {
        base.truncate(max);
    }
    let base = base.trim_matches('-').to_string();
    if base.is_empty() {
        FALLBACK_BASE.to_string()
    } else {
        base
    }
}

/// Candidates in the order they are tried: `base`, `base-2`, `base-3`, … or, for a base
/// shorter than `min_len`, `base-1`, `base-2`, … skipping those still too short.
pub fn candidates(base: &str, min_len: usize) -> impl Iterator<Item = Slug> + '_ {
    let plain = (base.len() >= min_len).then(|| Slug::from_derived(base.to_string()));
    let first_suffix = if plain.is_some() { 2 } else { 1 };
    plain.into_iter().chain(
        (first_suffix..)
            .map(move |n: u64| format!("{base}-{n}"))
            .filter(move |candidate| candidate.len() >= min_len)
            .map(Slug::from_derived),
    )
}

/// The first candidate for which `is_taken` says no.
pub fn first_free(base: &str, min_len: usize, mut is_taken: impl FnMut(&Slug) -> bool) -> Slug {
    candidates(base, min_len)
        .find(|candidate| !is_taken(candidate))
        .expect("the candidate sequence is infinite")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(name: &str, taken: &[&str]) -> String {
        first_free(&base_of(name), Slug::USER_MIN_LEN, |slug| {
            taken.contains(&slug.as_str())
        })
        .to_string()
    }

    #[test]
    fn the_slug_table_of_the_spec() {
        assert_eq!(derive("John Smith", &[]), "john-smith");
        assert_eq!(derive("Jörg Müller", &[]), "jorg-muller");
        assert_eq!(derive("Zoë Ångström", &[]), "zoe-angstrom");
        assert_eq!(derive("李 王", &[]), "user-1");
        assert_eq!(derive("李 王", &["user-1"]), "user-2");
        assert_eq!(derive("A B", &[]), "a-b-1");
        assert_eq!(derive("John Smith", &["john-smith"]), "john-smith-2");
        assert_eq!(
            derive("John Smith", &["john-smith", "john-smith-2"]),
            "john-smith-3"
        );
    }

    #[test]
    fn emoji_and_punctuation_collapse_into_single_hyphens() {
        assert_eq!(derive("Anna 🎉 Berg!!", &[]), "anna-berg");
        assert_eq!(derive("  --Anna--  ", &[]), "anna-1");
        assert_eq!(derive("🎉🎉", &[]), "user-1");
    }

    #[test]
    fn a_very_long_name_is_cut_and_still_leaves_room_for_a_suffix() {
        let name = "Bartholomew ".repeat(17); // 204 characters
        let slug = derive(&name, &[]);
        assert!(slug.len() <= Slug::MAX_LEN - 6, "{slug}");
        assert!(!slug.ends_with('-'));
        let taken = [slug.as_str()];
        let next = derive(&name, &taken);
        assert_eq!(next, format!("{slug}-2"));
        assert!(Slug::parse(&next, 5).is_ok());
    }

    #[test]
    fn meeting_type_slugs_have_no_minimum_length() {
        let slug = first_free(&base_of("30min Meeting"), 1, |_| false);
        assert_eq!(slug.as_str(), "30min-meeting");
        assert_eq!(first_free(&base_of("AB"), 1, |_| false).as_str(), "ab");
    }
}

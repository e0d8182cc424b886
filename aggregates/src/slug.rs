//! Deriving slugs from names (api.md section 2, "User slug").
//!
//! `Jörg Müller` → `jorg-muller`, `李 王` → `li-wang`, `Иван Петров` → `ivan-petrov`: the
//! letters and digits of every script transliterated to ASCII (by `deunicode`'s tables),
//! lowercased, every run of anything but `[a-z0-9]` turned into one `-` (emoji and symbols are
//! separators, not words), trimmed of `-`. Only a name that leaves nothing (`🎉🎉`) falls back
//! to `user`. The first free candidate wins: the base itself, then `-2`, `-3`, …; a base
//! shorter than the minimum length starts at `-1` and takes the first candidate that is long
//! enough (`a-b` → `a-b-1`, `user` → `user-1`).

use crate::values::Slug;

/// The base used when a name leaves no letter or digit after transliteration.
pub const FALLBACK_BASE: &str = "user";

/// Room kept for a suffix when a long name is cut, so `-2` … `-99999` still fit.
const SUFFIX_ROOM: usize = 6;

/// The slug base of a name, before suffixes.
pub fn base_of(name: &str) -> String {
    // Only letters and digits are transliterated; symbols and emoji separate words, so
    // `Anna 🎉 Berg` is `anna-berg`, not `anna-tada-berg`. Within a transliteration a space
    // separates (ideographs come out as `Li `, one word each) and other punctuation is
    // dropped: it marks a sound, as `'` does for the soft sign (`Ольга` → `olga`).
    let mut base = String::with_capacity(name.len());
    let separate = |base: &mut String| {
        if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
    };
    for c in name.chars() {
        let ascii = match c.is_alphanumeric() {
            true => deunicode::deunicode_char(c),
            false => None,
        };
        let Some(ascii) = ascii else {
            separate(&mut base);
            continue;
        };
        for b in ascii.bytes() {
            if b.is_ascii_alphanumeric() {
                base.push(char::from(b.to_ascii_lowercase()));
            } else if b.is_ascii_whitespace() {
                separate(&mut base);
            }
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

/// The suffix of the first suffixed candidate of `base`: 2 after a base long enough to be a
/// slug itself, else the first from 1 on that makes `base-N` at least `min_len` long.
pub fn first_suffix(base: &str, min_len: usize) -> u64 {
    if base.len() >= min_len {
        return 2;
    }
    (1..)
        .find(|n: &u64| base.len() + 1 + n.to_string().len() >= min_len)
        .expect("some suffix is long enough")
}

/// How many of the lowest claimed suffixes the store reports (see [`TakenCandidates`]).
pub const LOWEST_TAKEN: usize = 64;

/// What the store knows of the claimed candidates of one base, read in one bounded query so
/// that a common base (`user`, `john-smith`) costs the same however many users share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakenCandidates {
    /// The base these facts are about; for any other base they say nothing.
    pub base: String,
    /// The base itself is claimed.
    pub plain: bool,
    /// The lowest claimed suffixes from [`first_suffix`] on, ascending, at most
    /// [`LOWEST_TAKEN`] of them.
    pub lowest: Vec<u64>,
    /// The highest claimed suffix.
    pub highest: Option<u64>,
}

impl TakenCandidates {
    /// Nothing known to be taken: the first candidate is tried (and a claim that is taken after
    /// all refuses the append, after which the caller looks up and tries again).
    pub fn none() -> Self {
        Self::default()
    }
}

/// The first free candidate of `base` by what `taken` says: the base itself, else the
/// smallest suffix missing among the lowest claimed ones, else one past the highest. Exact
/// (the smallest free suffix, api.md section 2) whenever a free suffix lies below the
/// [`LOWEST_TAKEN`]-th claimed one; past that a gap left by a released slug is not reused, the
/// price of never reading an unbounded number of claims.
pub fn next_free(base: &str, min_len: usize, taken: &TakenCandidates) -> Slug {
    let known = taken.base == base;
    if base.len() >= min_len && !(known && taken.plain) {
        return Slug::from_derived(base.to_string());
    }
    let mut next = first_suffix(base, min_len);
    if known {
        for &claimed in &taken.lowest {
            if claimed > next {
                break;
            }
            next = next.max(claimed + 1);
        }
        let beyond_lowest = taken.lowest.len() >= LOWEST_TAKEN
            && taken.lowest.last().is_some_and(|&last| next > last);
        if beyond_lowest && let Some(highest) = taken.highest {
            next = next.max(highest + 1);
        }
    }
    Slug::from_derived(format!("{base}-{next}"))
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
        assert_eq!(derive("李 王", &[]), "li-wang");
        assert_eq!(derive("Иван Петров", &[]), "ivan-petrov");
        assert_eq!(derive("李 王", &["li-wang"]), "li-wang-2");
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
        assert_eq!(derive("🎉 ✨", &["user-1"]), "user-2");
    }

    #[test]
    fn every_script_transliterates_and_only_a_name_with_no_letter_or_digit_falls_back() {
        for (name, slug) in [
            ("王 小明", "wang-xiao-ming"),
            ("Мария Иванова", "mariia-ivanova"),
            ("Νίκος Παπαδόπουλος", "nikos-papadopoulos"),
            ("محمد علي", "mhmd-ly"),
            ("さくら ヤマダ", "sakura-yamada"),
            ("김 민준", "gim-minjun"),
            ("Ольга 🎉 Ким", "olga-kim"),
            ("🎉", "user-1"),
            ("★ ♥ ☂", "user-1"),
            ("-- !! --", "user-1"),
        ] {
            assert_eq!(derive(name, &[]), slug, "{name}");
        }
        // A short transliteration takes a suffix like a short Latin name (`li-1` is too short).
        assert_eq!(derive("李", &[]), "li-10");
    }

    fn taken(base: &str, plain: bool, lowest: &[u64], highest: Option<u64>) -> TakenCandidates {
        TakenCandidates {
            base: base.into(),
            plain,
            lowest: lowest.to_vec(),
            highest,
        }
    }

    #[test]
    fn the_next_free_candidate_is_the_smallest_missing_suffix_among_the_lowest_claimed() {
        let user = |taken: &TakenCandidates| next_free("user", 5, taken).to_string();
        assert_eq!(user(&TakenCandidates::none()), "user-1");
        assert_eq!(user(&taken("user", false, &[1, 2, 4], Some(4))), "user-3");
        assert_eq!(user(&taken("user", false, &[2, 3], Some(3))), "user-1");
        assert_eq!(user(&taken("user", false, &[1, 2, 3], Some(3))), "user-4");
        let smith = |taken: &TakenCandidates| next_free("john-smith", 5, taken).to_string();
        assert_eq!(
            smith(&taken("john-smith", false, &[2], Some(2))),
            "john-smith"
        );
        assert_eq!(smith(&taken("john-smith", true, &[], None)), "john-smith-2");
        assert_eq!(
            smith(&taken("john-smith", true, &[2, 3], Some(9))),
            "john-smith-4"
        );
        // Facts about another base say nothing about this one.
        assert_eq!(smith(&taken("user", true, &[2, 3], Some(3))), "john-smith");
    }

    #[test]
    fn past_the_lowest_claimed_suffixes_the_next_is_one_past_the_highest() {
        let dense: Vec<u64> = (1..=LOWEST_TAKEN as u64).collect();
        let next = next_free("user", 5, &taken("user", false, &dense, Some(100_000)));
        assert_eq!(next.as_str(), "user-100001");
        // A gap among the lowest still wins over the highest.
        let mut gapped = dense.clone();
        gapped[10] = 100;
        gapped.sort();
        let next = next_free("user", 5, &taken("user", false, &gapped, Some(100_000)));
        assert_eq!(next.as_str(), "user-11");
    }

    #[test]
    fn the_first_suffix_makes_a_short_base_long_enough() {
        assert_eq!(first_suffix("john-smith", 5), 2);
        assert_eq!(first_suffix("user", 5), 1);
        assert_eq!(first_suffix("li", 5), 10);
        assert_eq!(first_suffix("a", 5), 100);
        for base in ["user", "li", "a", "a-b", "anna"] {
            let expected = candidates(base, 5).next().unwrap();
            let first = next_free(base, 5, &TakenCandidates::none());
            assert_eq!(first, expected, "{base}");
        }
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

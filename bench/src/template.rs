//! Request-body templates: `{n}` becomes a per-request integer, unique and increasing across
//! all connections (one value per request, the same at every `{n}` of that body); each
//! `{uuid}` becomes a fresh random version-4 UUID (hyphenated lowercase hex). Everything else,
//! JSON braces included, is copied as is.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Counter,
    Uuid,
}

#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    uses_counter: bool,
}

const PLACEHOLDERS: [(&str, Part); 2] = [("{n}", Part::Counter), ("{uuid}", Part::Uuid)];

impl Template {
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        'scan: while !rest.is_empty() {
            for (token, part) in &PLACEHOLDERS {
                if let Some(after) = rest.strip_prefix(token) {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part.clone());
                    rest = after;
                    continue 'scan;
                }
            }
            let ch = rest.chars().next().map_or(1, char::len_utf8);
            literal.extend_from_slice(&rest.as_bytes()[..ch]);
            rest = &rest[ch..];
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let uses_counter = parts.contains(&Part::Counter);
        Self {
            parts,
            uses_counter,
        }
    }

    /// The body when it has no placeholder: it can be serialized once for every request.
    pub fn as_static(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Counter | Part::Uuid => return None,
            }
        }
        Some(out)
    }

    /// Appends one rendering to `out` (no allocation once `out` has grown to fit).
    pub fn render(&self, out: &mut Vec<u8>, counter: &AtomicU64, rng: &mut impl RngCore) {
        let n = if self.uses_counter {
            counter.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Counter => {
                    let _ = write!(out, "{n}");
                }
                Part::Uuid => push_uuid_v4(out, rng),
            }
        }
    }
}

fn push_uuid_v4(out: &mut Vec<u8>, rng: &mut impl RngCore) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0f)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn render(t: &Template, counter: &AtomicU64, rng: &mut StdRng) -> String {
        let mut out = Vec::new();
        t.render(&mut out, counter, rng);
        String::from_utf8(out).unwrap()
    }

    fn is_uuid_v4(s: &str) -> bool {
        s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
                }
            })
            && &s[14..15] == "4"
            && matches!(&s[19..20], "8" | "9" | "a" | "b")
    }

    #[test]
    fn counter_is_the_same_within_a_request_and_increases_across_requests() {
        let t = Template::parse(r#"{"email":"u{n}@example.com","name":"User {n}"}"#);
        let counter = AtomicU64::new(7);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            render(&t, &counter, &mut rng),
            r#"{"email":"u7@example.com","name":"User 7"}"#
        );
        assert_eq!(
            render(&t, &counter, &mut rng),
            r#"{"email":"u8@example.com","name":"User 8"}"#
        );
        assert_eq!(counter.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn each_uuid_is_fresh_and_well_formed() {
        let t = Template::parse(r#"{"a":"{uuid}","b":"{uuid}"}"#);
        let counter = AtomicU64::new(0);
        let mut rng = StdRng::seed_from_u64(2);
        let mut seen = HashSet::new();
        for _ in 0..100 {
            let body = render(&t, &counter, &mut rng);
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            for key in ["a", "b"] {
                let id = value[key].as_str().unwrap().to_string();
                assert!(is_uuid_v4(&id), "{id}");
                assert!(seen.insert(id));
            }
        }
        // No `{n}` in the template: the shared counter is left alone.
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn text_without_placeholders_is_static_and_braces_stay_literal() {
        let text = r#"{"n":"{m}","x":{"y":"{uuid"},"z":"é{n"}"#;
        let t = Template::parse(text);
        assert_eq!(t.as_static().as_deref(), Some(text.as_bytes()));
        assert_eq!(
            render(&t, &AtomicU64::new(0), &mut StdRng::seed_from_u64(3)),
            text
        );
        assert!(Template::parse("{n}").as_static().is_none());
        assert!(Template::parse("x{uuid}").as_static().is_none());
        assert_eq!(Template::parse("").as_static().as_deref(), Some(&b""[..]));
    }

    #[test]
    fn counter_values_are_unique_across_threads() {
        let t = Arc::new(Template::parse("{n}"));
        let counter = Arc::new(AtomicU64::new(1));
        let threads: Vec<_> = (0..4)
            .map(|seed| {
                let (t, counter) = (Arc::clone(&t), Arc::clone(&counter));
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    (0..1000)
                        .map(|_| render(&t, &counter, &mut rng).parse::<u64>().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for thread in threads {
            let values = thread.join().unwrap();
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "increasing within a connection"
            );
            all.extend(values);
        }
        assert_eq!(all.len(), 4000);
        assert_eq!(
            (all.iter().min(), all.iter().max()),
            (Some(&1), Some(&4000))
        );
    }
}

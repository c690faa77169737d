//! The `format`s a contract may name, each a check of what text is: an
//! email address, a calendar date, an RFC 3339 date-time, an absolute URI.
//! Written out rather than matched by regular expressions, so each is one
//! pass over the text and says plainly what it accepts.

use crate::calendar::parse_date;

/// A `format` keyword's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Email,
    Date,
    DateTime,
    Uri,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Email, Self::Date, Self::DateTime, Self::Uri];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Date => "date",
            Self::DateTime => "date-time",
            Self::Uri => "uri",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// What a value that fails is not, for its reason: "is not an email".
    pub fn noun(self) -> &'static str {
        match self {
            Self::Email => "an email address",
            Self::Date => "a date (YYYY-MM-DD)",
            Self::DateTime => "a date-time (RFC 3339)",
            Self::Uri => "an absolute URI",
        }
    }

    pub fn holds(self, s: &str) -> bool {
        match self {
            Self::Email => email(s),
            Self::Date => parse_date(s).is_some(),
            Self::DateTime => date_time(s),
            Self::Uri => uri(s),
        }
    }
}

/// `local@domain`: a local part of 1 to 64 characters without spaces, and
/// a domain of dot-separated labels (letters, digits, inner hyphens), at
/// least two of them.
fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>()[]\\,;:\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// `hh:mm:ss` with an optional fraction (a leap second's 60 allowed).
fn time(b: &[u8]) -> bool {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(h), Some(m), Some(s)) = (digits(&b[0..2]), digits(&b[3..5]), digits(&b[6..8])) else {
        return false;
    };
    let fraction = match &b[8..] {
        [] => true,
        [b'.', rest @ ..] => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    h < 24 && m < 60 && s <= 60 && fraction
}

/// RFC 3339: a date, `T` (or a space, as PostgreSQL writes it), a time and
/// an offset (`Z` or `±hh:mm`).
fn date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let date = s.get(..10).is_some_and(|d| parse_date(d).is_some());
    if b.len() < 20 || !date || !matches!(b[10], b'T' | b't' | b' ') {
        return false;
    }
    let rest = &b[11..];
    let (clock, offset_ok) = match rest.last() {
        Some(b'Z' | b'z') => (&rest[..rest.len() - 1], true),
        _ if rest.len() >= 6 => {
            let (clock, offset) = rest.split_at(rest.len() - 6);
            let ok = matches!(offset[0], b'+' | b'-')
                && offset[3] == b':'
                && digits(&offset[1..3]).is_some_and(|h| h < 24)
                && digits(&offset[4..6]).is_some_and(|m| m < 60);
            (clock, ok)
        }
        _ => return false,
    };
    offset_ok && time(clock)
}

/// `scheme:rest`: a scheme of a letter then letters, digits, `+`, `-` or
/// `.`, and a non-empty rest without spaces or control characters.
fn uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::Format::{self, *};

    fn holds(f: Format, yes: &[&str], no: &[&str]) {
        for s in yes {
            assert!(f.holds(s), "{} should hold {s:?}", f.as_str());
        }
        for s in no {
            assert!(!f.holds(s), "{} should refuse {s:?}", f.as_str());
        }
    }

    #[test]
    fn emails() {
        holds(
            Email,
            &["a@b.co", "first.last+tag@mail.example.org", "ü@bücher.de"],
            &[
                "", "a", "@b.co", "a@", "a@b", "a b@c.de", "a@b..de", ".a@b.de", "a@-b.de",
                "a@b.de ",
            ],
        );
    }

    #[test]
    fn dates() {
        holds(
            Date,
            &["2024-02-29", "2000-02-29", "1999-12-31", "0001-01-01"],
            &[
                "2023-02-29",
                "1900-02-29",
                "2024-13-01",
                "2024-04-31",
                "2024-1-01",
                "24-01-01",
                "2024-01-01T",
            ],
        );
    }

    #[test]
    fn date_times() {
        holds(
            DateTime,
            &[
                "2024-05-01T10:20:30Z",
                "2024-05-01t10:20:30.123456+05:30",
                "2024-05-01 10:20:30-08:00",
                "2016-12-31T23:59:60Z",
            ],
            &[
                "2024-05-01",
                "2024-05-01T10:20:30",
                "2024-05-01T25:00:00Z",
                "2024-05-01T10:20:30+5:30",
                "2024-05-01T10:20:30.Z",
                "2024-02-30T00:00:00Z",
            ],
        );
    }

    #[test]
    fn uris() {
        holds(
            Uri,
            &[
                "https://example.com/a?b=c",
                "mailto:a@b.co",
                "urn:isbn:123",
                "s3+https://x",
            ],
            &[
                "",
                "example.com",
                "://x",
                "1http://x",
                "http:",
                "http://a b",
            ],
        );
    }
}

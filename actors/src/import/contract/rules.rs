//! One property's rules: what a contract says of one column's values, read
//! from its JSON Schema keywords, and the check of one value against them,
//! which names the rule a bad value breaks.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value as Json};

use super::formats::Format;

/// The longest `pattern` a contract may hold, in characters.
pub const MAX_PATTERN_CHARS: usize = 1000;

/// The most memory one compiled `pattern` may take. The regex engine runs
/// in time linear in the text whatever the pattern, so a hostile one
/// (`(a+)+$`) costs no more than any other; this bounds its size.
const PATTERN_SIZE_LIMIT: usize = 256 << 10;

/// Keywords that describe and do not constrain: accepted, ignored.
const ANNOTATIONS: [&str; 9] = [
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$id",
];

/// The constraining keywords a property may use.
pub const KEYWORDS: [&str; 9] = [
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "format",
    "const",
];

/// A value as a file holds it: CSV fields are text; Parquet columns are
/// text or numbers. An empty CSV field is missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Missing,
    Text(&'a str),
    Number(f64),
}

/// What a length must be.
const LENGTH: &str = "a whole number, 0 or more";

/// A JSON Schema `type` ferry checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    fn noun(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::Boolean => "a boolean (true or false)",
        }
    }

    fn holds(self, v: Value<'_>) -> bool {
        match (self, v) {
            (Self::String, Value::Text(_)) => true,
            (Self::Integer, Value::Text(s)) => integer(s),
            (Self::Integer, Value::Number(n)) => n.fract() == 0.0,
            (Self::Number, Value::Text(s)) => number(s).is_some(),
            (Self::Number, Value::Number(_)) => true,
            (Self::Boolean, Value::Text(s)) => s == "true" || s == "false",
            _ => false,
        }
    }
}

/// Digits, with an optional sign: what JSON writes as an integer.
fn integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A finite number in JSON's notation (no `inf`, `NaN`, hex or `+`).
fn number(s: &str) -> Option<f64> {
    let first = s.bytes().next()?;
    if !(first.is_ascii_digit() || first == b'-')
        || s.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// One property's rules.
#[derive(Debug, Clone)]
pub struct Rules {
    types: Vec<Type>,
    one_of: Option<Vec<Json>>,
    pattern: Option<Regex>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    format: Option<Format>,
}

impl Rules {
    /// Reads a property's schema; `Err` names the keyword that is wrong.
    pub fn parse(schema: &Json) -> Result<Self, String> {
        let Json::Object(keys) = schema else {
            return Err("must be an object of rules".into());
        };
        for key in keys.keys() {
            if !KEYWORDS.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                return Err(format!(
                    "unknown keyword `{key}` (a contract's rules are: {})",
                    KEYWORDS.join(", ")
                ));
            }
        }
        let types = match keys.get("type") {
            None => Vec::new(),
            Some(Json::String(t)) => vec![parse_type(t)?],
            Some(Json::Array(ts)) if !ts.is_empty() => ts
                .iter()
                .map(|t| {
                    t.as_str().ok_or("`type` must name types").and_then(|t| {
                        parse_type(t)
                            .map_err(|_| "`type` must name string, integer, number or boolean")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`type` must be a type's name or a list of them".into()),
        };
        let one_of = match (keys.get("enum"), keys.get("const")) {
            (Some(_), Some(_)) => return Err("`enum` and `const` cannot both be given".into()),
            (Some(Json::Array(values)), None) if !values.is_empty() => {
                if let Some(v) = values.iter().find(|v| !scalar(v)) {
                    return Err(format!(
                        "`enum` may list strings, numbers and booleans, not {v}"
                    ));
                }
                Some(values.clone())
            }
            (Some(_), None) => return Err("`enum` must be a non-empty list".into()),
            (None, Some(v)) if scalar(v) => Some(vec![v.clone()]),
            (None, Some(v)) => {
                return Err(format!(
                    "`const` must be a string, a number or a boolean, not {v}"
                ))
            }
            (None, None) => None,
        };
        let pattern = match keys.get("pattern") {
            None => None,
            Some(Json::String(p)) => Some(compile(p)?),
            Some(_) => return Err("`pattern` must be a string".into()),
        };
        let format = match keys.get("format") {
            None => None,
            Some(Json::String(f)) => Some(Format::parse(f).ok_or_else(|| {
                format!(
                    "unknown format `{f}` (known: {})",
                    Format::ALL.map(Format::as_str).join(", ")
                )
            })?),
            Some(_) => return Err("`format` must be a string".into()),
        };
        let rules = Self {
            types,
            one_of,
            pattern,
            min_length: given(keys, "minLength", Json::as_u64, LENGTH)?,
            max_length: given(keys, "maxLength", Json::as_u64, LENGTH)?,
            minimum: given(keys, "minimum", Json::as_f64, "a number")?,
            maximum: given(keys, "maximum", Json::as_f64, "a number")?,
            format,
        };
        if let (Some(lo), Some(hi)) = (rules.min_length, rules.max_length) {
            if lo > hi {
                return Err(format!("`minLength` {lo} is over `maxLength` {hi}"));
            }
        }
        if let (Some(lo), Some(hi)) = (rules.minimum, rules.maximum) {
            if lo > hi {
                return Err(format!("`minimum` {lo} is over `maximum` {hi}"));
            }
        }
        Ok(rules)
    }

    /// Checks a value that is there; `Err` says what it is not.
    pub fn check(&self, v: Value<'_>) -> Result<(), String> {
        if !self.types.is_empty() && !self.types.iter().any(|t| t.holds(v)) {
            let nouns: Vec<&str> = self.types.iter().map(|t| t.noun()).collect();
            return Err(format!("{} is not {}", shown(v), nouns.join(" or ")));
        }
        if let Some(values) = &self.one_of {
            if !values.iter().any(|e| equals(e, v)) {
                let listed: Vec<String> = values.iter().map(Json::to_string).collect();
                return Err(format!("{} is not one of {}", shown(v), listed.join(", ")));
            }
        }
        if self.minimum.is_some() || self.maximum.is_some() {
            let n = match v {
                Value::Number(n) => n,
                Value::Text(s) => {
                    number(s).ok_or_else(|| format!("{} is not a number", shown(v)))?
                }
                Value::Missing => return Ok(()),
            };
            if let Some(min) = self.minimum.filter(|&min| n < min) {
                return Err(format!("{} is under minimum {min}", plain(v)));
            }
            if let Some(max) = self.maximum.filter(|&max| n > max) {
                return Err(format!("{} is over maximum {max}", plain(v)));
            }
        }
        let Value::Text(s) = v else {
            return Ok(());
        };
        if self.min_length.is_some() || self.max_length.is_some() {
            let chars = s.chars().count() as u64;
            if let Some(min) = self.min_length.filter(|&min| chars < min) {
                return Err(format!(
                    "{} is {chars} characters, under minLength {min}",
                    shown(v)
                ));
            }
            if let Some(max) = self.max_length.filter(|&max| chars > max) {
                return Err(format!(
                    "{} is {chars} characters, over maxLength {max}",
                    shown(v)
                ));
            }
        }
        if let Some(re) = &self.pattern {
            if !re.is_match(s) {
                return Err(format!(
                    "{} does not match pattern {}",
                    shown(v),
                    re.as_str()
                ));
            }
        }
        if let Some(f) = self.format {
            if !f.holds(s) {
                return Err(format!("{} is not {}", shown(v), f.noun()));
            }
        }
        Ok(())
    }
}

fn parse_type(t: &str) -> Result<Type, String> {
    Type::parse(t)
        .ok_or_else(|| format!("unknown type `{t}` (known: string, integer, number, boolean)"))
}

fn scalar(v: &Json) -> bool {
    matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_))
}

/// Whether a value is an `enum` entry: the same text, the same number, or
/// the boolean's name.
fn equals(entry: &Json, v: Value<'_>) -> bool {
    match (entry, v) {
        (Json::String(e), Value::Text(s)) => e == s,
        (Json::Number(e), Value::Text(s)) => number(s).zip(e.as_f64()).is_some_and(|(a, b)| a == b),
        (Json::Number(e), Value::Number(n)) => e.as_f64() == Some(n),
        (Json::Bool(b), Value::Text(s)) => s == if *b { "true" } else { "false" },
        _ => false,
    }
}

fn compile(p: &str) -> Result<Regex, String> {
    let chars = p.chars().count();
    if chars > MAX_PATTERN_CHARS {
        return Err(format!(
            "`pattern` is {chars} characters, over {MAX_PATTERN_CHARS}"
        ));
    }
    RegexBuilder::new(p)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!(
                "`pattern` compiles to more than {} KiB; make it simpler",
                PATTERN_SIZE_LIMIT >> 10
            ),
            // The parser's message spans lines, with a caret under the
            // fault; one line is enough to find it.
            e => format!(
                "`pattern` is not a regular expression ferry runs: {}",
                e.to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
            ),
        })
}

/// A keyword's value, read by `read`; `Err` says it must be `what`.
fn given<T>(
    keys: &Map<String, Json>,
    key: &str,
    read: fn(&Json) -> Option<T>,
    what: &str,
) -> Result<Option<T>, String> {
    keys.get(key)
        .map(|v| read(v).ok_or_else(|| format!("`{key}` must be {what}")))
        .transpose()
}

/// The longest piece of a value a reason quotes.
const SHOWN_CHARS: usize = 40;

/// A value as a reason quotes it: text in quotes (cut, if long), a number
/// as it is.
fn shown(v: Value<'_>) -> String {
    match v {
        Value::Text(s) => {
            let mut cut: String = s.chars().take(SHOWN_CHARS).collect();
            if cut.len() < s.len() {
                cut.push('…');
            }
            Json::String(cut).to_string()
        }
        Value::Number(n) => n.to_string(),
        Value::Missing => "nothing".into(),
    }
}

/// A value known to be a number, as the file wrote it.
fn plain(v: Value<'_>) -> String {
    match v {
        Value::Text(s) => s.to_string(),
        v => shown(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(schema: Json) -> Rules {
        Rules::parse(&schema).unwrap()
    }

    fn refused(schema: Json) -> String {
        Rules::parse(&schema).unwrap_err()
    }

    fn text(r: &Rules, s: &str) -> Result<(), String> {
        r.check(Value::Text(s))
    }

    #[test]
    fn types_hold_text_as_a_csv_writes_it() {
        let int = rules(json!({"type": "integer"}));
        assert_eq!(text(&int, "-12"), Ok(()));
        assert_eq!(text(&int, "1.5").unwrap_err(), r#""1.5" is not an integer"#);
        assert_eq!(int.check(Value::Number(3.0)), Ok(()));
        let num = rules(json!({"type": "number"}));
        for bad in ["inf", "NaN", "0x10", "+1", "1e", ""] {
            assert!(text(&num, bad).is_err(), "{bad}");
        }
        assert_eq!(text(&num, "-1.5e3"), Ok(()));
        let b = rules(json!({"type": ["boolean", "integer"]}));
        assert_eq!(text(&b, "true"), Ok(()));
        assert_eq!(text(&b, "1"), Ok(()));
        assert_eq!(
            text(&b, "yes").unwrap_err(),
            r#""yes" is not a boolean (true or false) or an integer"#
        );
    }

    #[test]
    fn bounds_lengths_enums_and_patterns_name_the_rule() {
        let age = rules(json!({"minimum": 18, "maximum": 130}));
        assert_eq!(text(&age, "212").unwrap_err(), "212 is over maximum 130");
        assert_eq!(text(&age, "17.5").unwrap_err(), "17.5 is under minimum 18");
        assert_eq!(text(&age, "old").unwrap_err(), r#""old" is not a number"#);
        let name = rules(json!({"minLength": 2, "maxLength": 3}));
        assert_eq!(
            text(&name, "é").unwrap_err(),
            r#""é" is 1 characters, under minLength 2"#
        );
        assert_eq!(text(&name, "ééé"), Ok(()));
        let plan = rules(json!({"enum": ["free", "pro", 3]}));
        assert_eq!(text(&plan, "3.0"), Ok(()));
        assert_eq!(
            text(&plan, "Pro").unwrap_err(),
            r#""Pro" is not one of "free", "pro", 3"#
        );
        let code = rules(json!({"pattern": "^[A-Z]{2}$"}));
        assert_eq!(
            text(&code, "in").unwrap_err(),
            r#""in" does not match pattern ^[A-Z]{2}$"#
        );
        let long = "x".repeat(100);
        assert!(text(&code, &long)
            .unwrap_err()
            .contains("…\" does not match"));
    }

    #[test]
    fn a_format_names_what_the_text_is_not() {
        let email = rules(json!({"format": "email"}));
        assert_eq!(
            text(&email, "a@b"),
            Err(r#""a@b" is not an email address"#.into())
        );
        assert_eq!(text(&email, "a@b.co"), Ok(()));
    }

    #[test]
    fn bad_rules_are_refused_with_the_keyword() {
        assert!(refused(json!({"minimum": "1"})).contains("`minimum` must be a number"));
        assert!(refused(json!({"minimum": 5, "maximum": 1})).contains("over `maximum`"));
        assert!(
            refused(json!({"exclusiveMinimum": 1})).contains("unknown keyword `exclusiveMinimum`")
        );
        assert!(refused(json!({"type": "date"})).contains("unknown type `date`"));
        assert!(refused(json!({"format": "ipv4"})).contains("unknown format `ipv4`"));
        assert!(refused(json!({"enum": []})).contains("non-empty"));
        assert!(refused(json!({"pattern": "(?=a)"})).contains("not a regular expression"));
        let huge = "((a{1,100}){1,100}){1,5}";
        assert!(refused(json!({"pattern": huge})).contains("more than 256 KiB"));
        assert!(refused(json!({"pattern": "a".repeat(1001)})).contains("over 1000"));
        assert!(Rules::parse(&json!({"title": "Age", "description": "years"})).is_ok());
    }

    #[test]
    fn a_hostile_pattern_runs_in_linear_time() {
        let r = rules(json!({"pattern": "^(a+)+$"}));
        // A backtracking engine would try 2^50000 ways; this one returns.
        let text_ = format!("{}!", "a".repeat(50_000));
        assert!(text(&r, &text_).is_err());
    }
}

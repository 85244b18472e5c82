//! `CDN-Cache-Control` (RFC 9213): directives aimed at CDNs only. When a
//! response carries a valid one, this cache obeys it instead of
//! `Cache-Control`, which still goes on to browsers as it is; an invalid
//! one (not a Structured Fields dictionary, RFC 8941, or a directive whose
//! value has the wrong type) is ignored as a whole.

use super::directives::{DELTA_MAX, Delta, FieldScope, ResponseDirectives};
use http::HeaderMap;
use http::header::HeaderName;
use std::time::Duration;

/// The targeted field Outpost obeys.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// The directives of `headers`' `CDN-Cache-Control`, if it is present and
/// valid.
pub(super) fn cdn_cache_control(headers: &HeaderMap) -> Option<ResponseDirectives> {
    let mut lines = headers.get_all(CDN_CACHE_CONTROL).iter().peekable();
    lines.peek()?;
    // Several lines are one dictionary (RFC 8941 §4.2).
    let mut text = String::new();
    for line in lines {
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(line.to_str().ok()?);
    }
    let mut directives = ResponseDirectives::default();
    for (key, item) in dictionary(&text)? {
        let flag = |item: &Item| match item {
            Item::Boolean(value) => Some(*value),
            _ => None,
        };
        let seconds = |item: &Item| match item {
            Item::Integer(n) if *n >= 0 => Some(Delta::Seconds(Duration::from_secs(
                (*n as u64).min(DELTA_MAX),
            ))),
            _ => None,
        };
        let scope = |item: &Item| match item {
            Item::Boolean(true) => Some(FieldScope::All),
            Item::Boolean(false) => Some(FieldScope::Absent),
            Item::String(fields) => Some(FieldScope::parse(Some(fields))),
            _ => None,
        };
        match key.as_str() {
            "no-store" => directives.no_store = flag(&item)?,
            "public" => directives.public = flag(&item)?,
            "must-revalidate" => directives.must_revalidate = flag(&item)?,
            "proxy-revalidate" => directives.proxy_revalidate = flag(&item)?,
            "must-understand" => directives.must_understand = flag(&item)?,
            "immutable" => directives.immutable = flag(&item)?,
            "no-cache" => directives.no_cache = scope(&item)?,
            "private" => directives.private = scope(&item)?,
            "max-age" => directives.max_age = Some(seconds(&item)?),
            "s-maxage" => directives.s_maxage = Some(seconds(&item)?),
            "stale-while-revalidate" => directives.stale_while_revalidate = Some(seconds(&item)?),
            "stale-if-error" => directives.stale_if_error = Some(seconds(&item)?),
            // Extensions this cache does not know are ignored.
            _ => {}
        }
    }
    Some(directives)
}

/// A Structured Fields bare item (RFC 8941 §3.3), as far as directives
/// need one told from another.
#[derive(Debug, PartialEq)]
enum Item {
    Integer(i64),
    Decimal,
    String(String),
    Token,
    ByteSequence,
    Boolean(bool),
}

/// Parses an RFC 8941 dictionary (§4.2.2) whose members are items (inner
/// lists are not accepted); parameters are checked and dropped. A later
/// member replaces an earlier one with the same key.
fn dictionary(text: &str) -> Option<Vec<(String, Item)>> {
    let mut input = Input(text.trim_matches(' ').as_bytes());
    let mut members: Vec<(String, Item)> = Vec::new();
    if input.0.is_empty() {
        return Some(members);
    }
    loop {
        let key = input.key()?;
        let item = if input.eat(b'=') {
            input.bare_item()?
        } else {
            Item::Boolean(true)
        };
        input.parameters()?;
        members.retain(|(existing, _)| *existing != key);
        members.push((key, item));
        input.skip_ows();
        if input.0.is_empty() {
            return Some(members);
        }
        if !input.eat(b',') {
            return None;
        }
        input.skip_ows();
        if input.0.is_empty() {
            return None;
        }
    }
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.0 = &self.0[1..];
            true
        } else {
            false
        }
    }

    /// Takes bytes while `keep` holds.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let end = self
            .0
            .iter()
            .position(|&b| !keep(b))
            .unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at(end);
        self.0 = rest;
        taken
    }

    fn skip_ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Option<String> {
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        let key = self.take_while(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        });
        Some(String::from_utf8_lossy(key).into_owned())
    }

    /// §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.take_while(|b| b == b' ');
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.3.1.
    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'*' | b'A'..=b'Z' | b'a'..=b'z' => {
                self.take_while(|b| b.is_ascii_alphanumeric() || b":/!#$%&'*+-.^_`|~".contains(&b));
                Some(Item::Token)
            }
            b':' => {
                self.eat(b':');
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                self.eat(b':').then_some(Item::ByteSequence)
            }
            b'?' => {
                self.eat(b'?');
                if self.eat(b'1') {
                    Some(Item::Boolean(true))
                } else if self.eat(b'0') {
                    Some(Item::Boolean(false))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// §4.2.4: an integer of at most 15 digits, or a decimal.
    fn number(&mut self) -> Option<Item> {
        let negative = self.eat(b'-');
        let whole = self.take_while(|b| b.is_ascii_digit());
        if whole.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            return (whole.len() <= 12 && (1..=3).contains(&fraction.len()))
                .then_some(Item::Decimal);
        }
        if whole.len() > 15 {
            return None;
        }
        let value: i64 = std::str::from_utf8(whole).ok()?.parse().ok()?;
        Some(Item::Integer(if negative { -value } else { value }))
    }

    /// §4.2.5: a quoted string of printable ASCII, `\"` and `\\` escaped.
    fn string(&mut self) -> Option<Item> {
        self.eat(b'"');
        let mut text = String::new();
        loop {
            let byte = self.peek()?;
            self.0 = &self.0[1..];
            match byte {
                b'"' => return Some(Item::String(text)),
                b'\\' => {
                    let escaped = self.peek().filter(|b| matches!(b, b'"' | b'\\'))?;
                    self.0 = &self.0[1..];
                    text.push(escaped as char);
                }
                0x20..=0x7e => text.push(byte as char),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_headers;

    fn targeted(value: &str) -> Option<ResponseDirectives> {
        cdn_cache_control(&test_headers(&[("cdn-cache-control", value)]))
    }

    fn secs(n: u64) -> Option<Delta> {
        Some(Delta::Seconds(Duration::from_secs(n)))
    }

    #[test]
    fn a_valid_field_gives_its_directives() {
        let directives = targeted("max-age=3600, stale-while-revalidate=30").unwrap();
        assert_eq!(directives.max_age, secs(3600));
        assert_eq!(directives.stale_while_revalidate, secs(30));
        assert_eq!(
            targeted("max-age=99999999999").unwrap().max_age,
            secs(DELTA_MAX)
        );
        assert!(targeted("no-store").unwrap().no_store);
        assert!(targeted("private").unwrap().private.is_all());
        assert_eq!(targeted("foobar, max-age=60").unwrap().max_age, secs(60));
        assert_eq!(
            targeted("max-age=60;x=1, foo=bar").unwrap().max_age,
            secs(60)
        );
        assert_eq!(
            targeted("no-cache=\"set-cookie\"").unwrap().no_cache,
            FieldScope::Fields(vec![http::header::SET_COOKIE])
        );
        assert!(cdn_cache_control(&HeaderMap::new()).is_none(), "absent");
    }

    #[test]
    fn an_invalid_field_is_ignored_whole() {
        for invalid in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age =100",
            "max-age= 100",
            "MaX-aGe=3600",
            "max-age=-1",
            "max-age=1.5",
            "no-store=5",
            "max-age=60,",
            "max-age=(1 2)",
        ] {
            assert_eq!(targeted(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn several_lines_are_one_dictionary_and_the_last_member_wins() {
        let headers = test_headers(&[
            ("cdn-cache-control", "max-age=10"),
            ("cdn-cache-control", "max-age=20, no-store"),
        ]);
        let directives = cdn_cache_control(&headers).unwrap();
        assert_eq!(directives.max_age, secs(20));
        assert!(directives.no_store);
    }
}

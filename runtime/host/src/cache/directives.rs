//! `Cache-Control` (RFC 9111 §5.2, RFC 5861), parsed once per message.
//!
//! Parsing is lenient where the RFC asks recipients to be: names are
//! case-insensitive, arguments may be quoted, unknown directives are
//! ignored, and every header line counts. Where a directive appears twice
//! the first occurrence wins (§4.2.1 allows the first or "stale"). A
//! delta-seconds argument that is not a non-negative integer makes the
//! directive [`Delta::Invalid`], which the freshness rules read as "already
//! stale": the safe reading of a value nobody can interpret.

use http::HeaderMap;
use http::header::{CACHE_CONTROL, HeaderName, PRAGMA};
use std::time::Duration;

/// RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
pub(super) const DELTA_MAX: u64 = 2_147_483_648;

/// A delta-seconds argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta {
    /// A valid value (capped at 2^31 seconds).
    Seconds(Duration),
    /// Missing or not a non-negative integer.
    Invalid,
}

impl Delta {
    /// A directive's argument, or a delta-seconds field value (`Age`).
    pub(super) fn parse(argument: Option<&str>) -> Self {
        match argument {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                // Overflow of u64 is also "too large".
                let seconds = digits.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX);
                Self::Seconds(Duration::from_secs(seconds))
            }
            _ => Self::Invalid,
        }
    }

    /// The value, or zero when invalid (stale at once).
    pub fn or_zero(self) -> Duration {
        match self {
            Self::Seconds(duration) => duration,
            Self::Invalid => Duration::ZERO,
        }
    }
}

/// A directive that may name header fields (`no-cache="Set-Cookie"`,
/// `private="X-User"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FieldScope {
    /// Absent.
    #[default]
    Absent,
    /// Present without field names: applies to the whole response.
    All,
    /// Present with field names: applies to those fields only.
    Fields(Vec<HeaderName>),
}

impl FieldScope {
    pub(super) fn parse(argument: Option<&str>) -> Self {
        let Some(list) = argument else {
            return Self::All;
        };
        let fields: Vec<HeaderName> = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        // An argument naming nothing usable is read as the unqualified
        // form: the stricter reading.
        if fields.is_empty() {
            Self::All
        } else {
            Self::Fields(fields)
        }
    }

    /// Whether the directive is present in its unqualified form.
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

/// The `Cache-Control` directives of a response that a shared cache obeys;
/// each field is the directive of the same name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub no_store: bool,
    pub no_cache: FieldScope,
    pub private: FieldScope,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    pub max_age: Option<Delta>,
    pub s_maxage: Option<Delta>,
    pub stale_while_revalidate: Option<Delta>,
    pub stale_if_error: Option<Delta>,
}

impl ResponseDirectives {
    /// The directives this cache obeys: those of a valid
    /// `CDN-Cache-Control` (RFC 9213), else those of every `Cache-Control`
    /// line of `headers`.
    pub fn of(headers: &HeaderMap) -> Self {
        if let Some(targeted) = super::targeted::cdn_cache_control(headers) {
            return targeted;
        }
        let mut directives = Self::default();
        let mut seen = Seen::default();
        for (name, argument) in each_directive(headers) {
            match name.as_str() {
                "no-store" => directives.no_store = true,
                "no-cache" if seen.first("no-cache") => {
                    directives.no_cache = FieldScope::parse(argument.as_deref());
                }
                "private" if seen.first("private") => {
                    directives.private = FieldScope::parse(argument.as_deref());
                }
                "public" => directives.public = true,
                "must-revalidate" => directives.must_revalidate = true,
                "proxy-revalidate" => directives.proxy_revalidate = true,
                "must-understand" => directives.must_understand = true,
                "immutable" => directives.immutable = true,
                "max-age" if seen.first("max-age") => {
                    directives.max_age = Some(Delta::parse(argument.as_deref()));
                }
                "s-maxage" if seen.first("s-maxage") => {
                    directives.s_maxage = Some(Delta::parse(argument.as_deref()));
                }
                "stale-while-revalidate" if seen.first("stale-while-revalidate") => {
                    directives.stale_while_revalidate = Some(Delta::parse(argument.as_deref()));
                }
                "stale-if-error" if seen.first("stale-if-error") => {
                    directives.stale_if_error = Some(Delta::parse(argument.as_deref()));
                }
                _ => {}
            }
        }
        directives
    }

    /// Whether a stale copy must never be served without revalidation
    /// (§4.2.4): `must-revalidate`, and for a shared cache
    /// `proxy-revalidate` and `s-maxage` (§5.2.2.10).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// The `Cache-Control` directives of a request (§5.2.1), with
/// `Pragma: no-cache` counted when there is no `Cache-Control` (§5.4);
/// each field is the directive of the same name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    pub max_age: Option<Delta>,
    /// `Some(None)`: any staleness is acceptable.
    pub max_stale: Option<Option<Delta>>,
    pub min_fresh: Option<Delta>,
    pub stale_if_error: Option<Delta>,
}

impl RequestDirectives {
    /// The directives of `headers`.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        let mut seen = Seen::default();
        for (name, argument) in each_directive(headers) {
            match name.as_str() {
                "no-cache" => directives.no_cache = true,
                "no-store" => directives.no_store = true,
                "only-if-cached" => directives.only_if_cached = true,
                "max-age" if seen.first("max-age") => {
                    directives.max_age = Some(Delta::parse(argument.as_deref()));
                }
                "max-stale" if seen.first("max-stale") => {
                    directives.max_stale = Some(argument.as_deref().map(|a| Delta::parse(Some(a))));
                }
                "min-fresh" if seen.first("min-fresh") => {
                    directives.min_fresh = Some(Delta::parse(argument.as_deref()));
                }
                "stale-if-error" if seen.first("stale-if-error") => {
                    directives.stale_if_error = Some(Delta::parse(argument.as_deref()));
                }
                _ => {}
            }
        }
        if !headers.contains_key(CACHE_CONTROL) {
            directives.no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case("no-cache"));
        }
        directives
    }
}

/// Which argument-bearing directives were already seen.
#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn first(&mut self, name: &'static str) -> bool {
        if self.0.contains(&name) {
            false
        } else {
            self.0.push(name);
            true
        }
    }
}

/// Every directive of every `Cache-Control` line: its lowercased name and
/// its argument, unquoted.
fn each_directive(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_directives)
}

/// Splits one field value at the commas outside quoted strings.
fn split_directives(value: &str) -> Vec<(String, Option<String>)> {
    let mut directives = Vec::new();
    let mut rest = value;
    loop {
        let rest_trimmed = rest.trim_start_matches([' ', '\t', ',']);
        if rest_trimmed.is_empty() {
            return directives;
        }
        let end = rest_trimmed.find([',', '=']).unwrap_or(rest_trimmed.len());
        let name = rest_trimmed[..end].trim().to_ascii_lowercase();
        let after = &rest_trimmed[end..];
        let (argument, remainder) = match after.strip_prefix('=') {
            Some(argument) => parse_argument(argument.trim_start()),
            None => (None, after),
        };
        if !name.is_empty() {
            directives.push((name, argument));
        }
        rest = remainder;
    }
}

/// A token or a quoted string (with `\` escapes), and what follows it.
fn parse_argument(text: &str) -> (Option<String>, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (Some(value), skip_to_comma(&quoted[i + 1..])),
                c => value.push(c),
            }
        }
        // An unterminated quote runs to the end of the line.
        return (Some(value), "");
    }
    let end = text.find(',').unwrap_or(text.len());
    (Some(text[..end].trim().to_owned()), &text[end..])
}

/// What follows a quoted argument, up to its comma: garbage after the
/// closing quote is dropped.
fn skip_to_comma(text: &str) -> &str {
    &text[text.find(',').unwrap_or(text.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_headers as headers;

    fn response(value: &str) -> ResponseDirectives {
        ResponseDirectives::of(&headers(&[("cache-control", value)]))
    }

    fn secs(n: u64) -> Option<Delta> {
        Some(Delta::Seconds(Duration::from_secs(n)))
    }

    #[test]
    fn names_are_case_insensitive_and_unknown_ones_ignored() {
        let d = response("Public, MAX-AGE=60, x-custom=\"a,b\", S-MaxAge=30");
        assert!(d.public);
        assert_eq!(d.max_age, secs(60));
        assert_eq!(d.s_maxage, secs(30));
    }

    #[test]
    fn every_line_counts_and_the_first_argument_wins() {
        let d = ResponseDirectives::of(&headers(&[
            ("cache-control", "max-age=10"),
            ("cache-control", "max-age=99, no-store"),
        ]));
        assert_eq!(d.max_age, secs(10));
        assert!(d.no_store);
    }

    #[test]
    fn quoted_arguments_are_unquoted() {
        assert_eq!(response("max-age=\"60\"").max_age, secs(60));
        let d = response("no-cache=\"Set-Cookie, X-A\", private=\"x-user\"");
        assert_eq!(
            d.no_cache,
            FieldScope::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-a")
            ])
        );
        assert_eq!(
            d.private,
            FieldScope::Fields(vec![HeaderName::from_static("x-user")])
        );
        assert!(response("no-cache").no_cache.is_all());
        assert!(response("private=\"\"").private.is_all());
    }

    #[test]
    fn bad_delta_seconds_are_invalid_and_huge_ones_capped() {
        for bad in [
            "max-age=-1",
            "max-age=1.5",
            "max-age=abc",
            "max-age",
            "max-age=",
        ] {
            assert_eq!(response(bad).max_age, Some(Delta::Invalid), "{bad}");
        }
        assert_eq!(
            response("max-age=99999999999999999999999").max_age,
            secs(DELTA_MAX)
        );
    }

    #[test]
    fn shared_caches_may_not_serve_stale_under_s_maxage_or_proxy_revalidate() {
        assert!(response("s-maxage=5").forbids_stale());
        assert!(response("proxy-revalidate").forbids_stale());
        assert!(response("must-revalidate").forbids_stale());
        assert!(!response("max-age=5, stale-while-revalidate=9").forbids_stale());
    }

    #[test]
    fn request_directives_and_pragma() {
        let r = RequestDirectives::of(&headers(&[(
            "cache-control",
            "max-stale, min-fresh=5, only-if-cached",
        )]));
        assert_eq!(r.max_stale, Some(None));
        assert_eq!(r.min_fresh, secs(5));
        assert!(r.only_if_cached);
        let r = RequestDirectives::of(&headers(&[("cache-control", "max-stale=7")]));
        assert_eq!(r.max_stale, Some(secs(7)));
        assert!(RequestDirectives::of(&headers(&[("pragma", "No-Cache")])).no_cache);
        // Cache-Control, when present, is what counts.
        let r = RequestDirectives::of(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(!r.no_cache);
    }

    #[test]
    fn stray_commas_spaces_and_unterminated_quotes_do_not_confuse_the_parser() {
        let d = response(" , ,max-age=5 ,, public,");
        assert_eq!(d.max_age, secs(5));
        assert!(d.public);
        let d = response("private=\"x-a, no-store");
        assert_eq!(
            d.private,
            FieldScope::Fields(vec![
                HeaderName::from_static("x-a"),
                HeaderName::from_static("no-store")
            ])
        );
        assert!(!d.no_store, "inside the unterminated quote");
    }
}

//! Whether a shared cache may store a response (RFC 9111 §3), how long it
//! stays fresh (§4.2.1, heuristics §4.2.2), its age (§4.2.3), and whether a
//! stored copy may answer a request (§4, §4.2.4, §5.2.1, RFC 5861).
//!
//! Everything a lookup needs is computed when the response is stored
//! ([`Timing`]), so answering from the cache is arithmetic on three numbers
//! and the request's own directives: no header of the stored response is
//! parsed again on the hit path.

use super::directives::{Delta, FieldScope, RequestDirectives, ResponseDirectives};
use http::header::{AGE, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, Method, StatusCode};
use std::time::{Duration, SystemTime};

/// The longest heuristic freshness (§4.2.2 suggests 10 % of the time since
/// `Last-Modified`; caches commonly cap it, and a day is the usual cap).
const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);

/// Why a response is not stored: the reason `Cache-Status` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStorable {
    /// Only GET responses are stored.
    Method,
    /// A status code this cache does not store (206, 304, 1xx, unknown).
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private` without field names: for one user's cache only.
    Private,
    /// The request carried `Authorization` and the response does not say
    /// it may be shared (`public`, `s-maxage`, `must-revalidate`, §3.5).
    Authorization,
    /// No explicit freshness, no `public`, and a status not cacheable by
    /// default.
    NoFreshness,
}

impl NotStorable {
    /// The reason as one token, for logs and `Cache-Status`' `detail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::NoFreshness => "no-freshness",
        }
    }
}

/// Status codes whose semantics this cache understands (for
/// `must-understand`, §5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203
            | 204
            | 300
            | 301
            | 302
            | 303
            | 307
            | 308
            | 404
            | 405
            | 410
            | 414
            | 451
            | 500
            | 501
            | 502
            | 503
            | 504
    )
}

/// Status codes "heuristically cacheable" (RFC 9110 §15.1), minus 206,
/// which this cache does not store.
fn cacheable_by_default(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// RFC 9111 §3: may a shared cache store this response to this request?
pub fn storable(
    method: &Method,
    request_headers: &HeaderMap,
    request: &RequestDirectives,
    status: StatusCode,
    response_headers: &HeaderMap,
    response: &ResponseDirectives,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    // Any final status may be stored (§3) but a 206 or 304, which answer
    // a Range or a conditional rather than represent the resource; with
    // must-understand, only one this cache understands (§5.2.2.3).
    if status.is_informational()
        || matches!(status.as_u16(), 206 | 304)
        || (response.must_understand && !understood(status))
    {
        return Err(NotStorable::Status);
    }
    // must-understand overrides no-store for a status the cache
    // understands (§5.2.2.3); the status was checked just above.
    if request.no_store || (response.no_store && !response.must_understand) {
        return Err(NotStorable::NoStore);
    }
    if response.private.is_all() {
        return Err(NotStorable::Private);
    }
    if request_headers.contains_key(AUTHORIZATION)
        && !(response.public || response.s_maxage.is_some() || response.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    let explicit = response.s_maxage.is_some()
        || response.max_age.is_some()
        || response_headers.contains_key(EXPIRES);
    if explicit || response.public || cacheable_by_default(status) {
        Ok(())
    } else {
        Err(NotStorable::NoFreshness)
    }
}

/// A stored response's clock, fixed when it was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// When the response was received (`response_time`).
    pub stored_at: SystemTime,
    /// §4.2.3's `corrected_initial_age`.
    pub initial_age: Duration,
    /// §4.2.1's freshness lifetime.
    pub lifetime: Duration,
}

impl Timing {
    /// The timing of a response requested at `request_time` and received
    /// at `response_time`.
    pub fn of(
        status: StatusCode,
        headers: &HeaderMap,
        directives: &ResponseDirectives,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        // A missing or unreadable Date is the time of receipt (RFC 9110
        // §6.6.1).
        let date = first_date(headers, DATE).unwrap_or(response_time);
        let apparent_age = response_time.duration_since(date).unwrap_or_default();
        let response_delay = response_time
            .duration_since(request_time)
            .unwrap_or_default();
        let initial_age = apparent_age.max(age_value(headers) + response_delay);
        Self {
            stored_at: response_time,
            initial_age,
            lifetime: lifetime(status, headers, directives, date),
        }
    }

    /// §4.2.3's `current_age` at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.stored_at).unwrap_or_default()
    }

    /// The `Age` header value at `now`: whole seconds.
    pub fn age_seconds(&self, now: SystemTime) -> u64 {
        self.age(now).as_secs()
    }
}

/// §4.2.1: the freshness lifetime, from the first of `s-maxage`, `max-age`,
/// `Expires` minus `Date`, and a heuristic where §4.2.2 allows one.
fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &ResponseDirectives,
    date: SystemTime,
) -> Duration {
    if let Some(delta) = directives.s_maxage.or(directives.max_age) {
        return delta.or_zero();
    }
    if headers.contains_key(EXPIRES) {
        // An invalid Expires ("0", say) is a time in the past (§5.3).
        return first_date(headers, EXPIRES)
            .and_then(|expires| expires.duration_since(date).ok())
            .unwrap_or_default();
    }
    if !(cacheable_by_default(status) || directives.public) {
        return Duration::ZERO;
    }
    // 10 % of the time since the last modification, capped.
    first_date(headers, LAST_MODIFIED)
        .and_then(|modified| date.duration_since(modified).ok())
        .map_or(Duration::ZERO, |since| (since / 10).min(HEURISTIC_MAX))
}

/// §5.1: the first member of `Age`; an invalid value is ignored.
fn age_value(headers: &HeaderMap) -> Duration {
    let first = headers
        .get(AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next());
    match first.map(|value| Delta::parse(Some(value.trim()))) {
        Some(Delta::Seconds(age)) => age,
        _ => Duration::ZERO,
    }
}

/// The first line of a date header, if it parses (IMF-fixdate, RFC 850 or
/// asctime, as RFC 9110 §5.6.7 asks recipients to accept).
fn first_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    parse_date(headers.get(name)?.to_str().ok()?)
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 or asctime), read
/// as leniently as its shape allows: names in any case, and a weekday
/// that does not match the date, are accepted; anything else malformed
/// (another zone, a two-digit year in IMF-fixdate, odd spacing) is not.
pub(super) fn parse_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(at) = httpdate::parse_http_date(value) {
        return Some(at);
    }
    let canonical = |word: &str| {
        let (name, comma) = word
            .strip_suffix(',')
            .map_or((word, ""), |name| (name, ","));
        WEEKDAYS
            .iter()
            .chain(&LONG_WEEKDAYS)
            .chain(&MONTHS)
            .chain(&["GMT"])
            .find(|known| known.eq_ignore_ascii_case(name))
            .map_or_else(|| word.to_owned(), |known| format!("{known}{comma}"))
    };
    let normalised = value
        .split(' ')
        .map(canonical)
        .collect::<Vec<_>>()
        .join(" ");
    if let Ok(at) = httpdate::parse_http_date(&normalised) {
        return Some(at);
    }
    let (first, rest) = normalised.split_once(' ')?;
    let (day, comma) = first
        .strip_suffix(',')
        .map_or((first, ""), |day| (day, ","));
    let names = if WEEKDAYS.contains(&day) {
        &WEEKDAYS[..]
    } else if LONG_WEEKDAYS.contains(&day) {
        &LONG_WEEKDAYS[..]
    } else {
        return None;
    };
    names
        .iter()
        .find_map(|name| httpdate::parse_http_date(&format!("{name}{comma} {rest}")).ok())
}

/// What a stored response may do for a request (after its method, key
/// and `Vary` matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh enough for this request: answer from the cache.
    Fresh,
    /// Stale, but the request accepts it (`max-stale`): answer from the
    /// cache.
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: answer from the cache and
    /// refresh it once in the background.
    StaleWhileRevalidate,
    /// Ask the origin (conditionally, when the stored response has
    /// validators). `if_error`: the stored copy may still answer if the
    /// origin fails or times out (`stale-if-error`).
    Revalidate { if_error: bool },
}

/// §4: may `timing`'s response, stored with `stored` directives, answer a
/// request carrying `request` directives at `now`?
pub fn reuse(
    timing: &Timing,
    stored: &ResponseDirectives,
    request: &RequestDirectives,
    now: SystemTime,
) -> Reuse {
    let age = timing.age(now);
    let staleness = age.saturating_sub(timing.lifetime);
    let if_error = !stored.forbids_stale()
        && [stored.stale_if_error, request.stale_if_error]
            .into_iter()
            .flatten()
            .any(|window| staleness <= window.or_zero());
    let revalidate = Reuse::Revalidate { if_error };
    // Unqualified no-cache in either message: never without the origin.
    if request.no_cache || stored.no_cache.is_all() {
        return revalidate;
    }
    if let Some(max_age) = request.max_age
        && age > max_age.or_zero()
    {
        return revalidate;
    }
    let fresh = age < timing.lifetime;
    if fresh {
        let left = timing.lifetime - age;
        return match request.min_fresh {
            Some(min_fresh) if left < min_fresh.or_zero() => revalidate,
            _ => Reuse::Fresh,
        };
    }
    if stored.forbids_stale() {
        return Reuse::Revalidate { if_error: false };
    }
    match request.max_stale {
        Some(None) => return Reuse::StaleAccepted,
        Some(Some(Delta::Seconds(max))) if staleness <= max => return Reuse::StaleAccepted,
        _ => {}
    }
    match stored.stale_while_revalidate {
        Some(Delta::Seconds(window)) if staleness <= window => Reuse::StaleWhileRevalidate,
        _ => revalidate,
    }
}

/// The header fields a stored response must not carry when reused
/// without revalidation: those named by qualified `no-cache` and
/// `private` (§5.2.2.4, §5.2.2.7).
pub fn fields_to_strip(stored: &ResponseDirectives) -> impl Iterator<Item = &http::HeaderName> {
    [&stored.no_cache, &stored.private]
        .into_iter()
        .flat_map(|scope| match scope {
            FieldScope::Fields(fields) => fields.as_slice(),
            _ => &[],
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_leniently_where_their_shape_is_right() {
        let at = |text: &str| parse_date(text).map(httpdate::fmt_http_date);
        let expected = Some("Thu, 18 Aug 2050 02:01:18 GMT".to_owned());
        for text in [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "Thursday, 18-Aug-50 02:01:18 GMT",
            "Mon, 18 Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
        // asctime, its weekday wrong.
        assert_eq!(
            at("Thu Aug  8 02:01:18 2050"),
            Some("Mon, 08 Aug 2050 02:01:18 GMT".to_owned())
        );
        for invalid in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "0",
        ] {
            assert_eq!(at(invalid), None, "{invalid}");
        }
    }

    const T0: u64 = 1_700_000_000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
    }

    fn headers(lines: &[(&'static str, String)]) -> HeaderMap {
        let lines: Vec<(&'static str, &str)> = lines
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        crate::cache::test_headers(&lines)
    }

    fn date(seconds: u64) -> String {
        httpdate::fmt_http_date(at(seconds))
    }

    fn cc(value: &str) -> (&'static str, String) {
        ("cache-control", value.to_owned())
    }

    /// The timing of a 200 with `lines`, requested at 0 and received at
    /// `received`.
    fn timing(lines: &[(&'static str, String)], received: u64) -> (Timing, ResponseDirectives) {
        let headers = headers(lines);
        let directives = ResponseDirectives::of(&headers);
        let timing = Timing::of(StatusCode::OK, &headers, &directives, at(0), at(received));
        (timing, directives)
    }

    fn request(lines: &[(&'static str, String)]) -> RequestDirectives {
        RequestDirectives::of(&headers(lines))
    }

    fn store(
        method: Method,
        request_lines: &[(&'static str, String)],
        status: u16,
        lines: &[(&'static str, String)],
    ) -> Result<(), NotStorable> {
        let request_headers = headers(request_lines);
        let response_headers = headers(lines);
        storable(
            &method,
            &request_headers,
            &RequestDirectives::of(&request_headers),
            StatusCode::from_u16(status).unwrap(),
            &response_headers,
            &ResponseDirectives::of(&response_headers),
        )
    }

    #[test]
    fn what_a_shared_cache_stores() {
        assert_eq!(store(Method::GET, &[], 200, &[]), Ok(()));
        assert_eq!(
            store(Method::POST, &[], 200, &[cc("max-age=60")]),
            Err(NotStorable::Method)
        );
        assert_eq!(
            store(Method::GET, &[], 206, &[cc("max-age=60")]),
            Err(NotStorable::Status)
        );
        assert_eq!(
            store(Method::GET, &[], 304, &[cc("max-age=60")]),
            Err(NotStorable::Status)
        );
        assert_eq!(
            store(Method::GET, &[], 200, &[cc("no-store")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(Method::GET, &[cc("no-store")], 200, &[cc("max-age=60")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(Method::GET, &[], 200, &[cc("private, max-age=60")]),
            Err(NotStorable::Private)
        );
        // Qualified private: stored, the named field stripped on reuse.
        assert_eq!(
            store(Method::GET, &[], 200, &[cc("private=\"x-user\"")]),
            Ok(())
        );
        // 302 is understood but not cacheable by default.
        assert_eq!(
            store(Method::GET, &[], 302, &[]),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(store(Method::GET, &[], 302, &[cc("max-age=5")]), Ok(()));
        assert_eq!(store(Method::GET, &[], 302, &[cc("public")]), Ok(()));
        // Any final status with explicit freshness, even one this cache
        // does not know, unless must-understand asks for one it knows.
        assert_eq!(store(Method::GET, &[], 599, &[cc("max-age=5")]), Ok(()));
        assert_eq!(store(Method::GET, &[], 400, &[cc("max-age=5")]), Ok(()));
        assert_eq!(
            store(Method::GET, &[], 599, &[cc("must-understand, max-age=5")]),
            Err(NotStorable::Status)
        );
        // must-understand with an understood status overrides no-store.
        assert_eq!(
            store(
                Method::GET,
                &[],
                200,
                &[cc("no-store, must-understand, max-age=5")]
            ),
            Ok(())
        );
    }

    #[test]
    fn authorized_requests_are_stored_only_when_the_response_allows_it() {
        let auth = [("authorization", "Bearer x".to_owned())];
        assert_eq!(
            store(Method::GET, &auth, 200, &[cc("max-age=60")]),
            Err(NotStorable::Authorization)
        );
        for allows in ["public", "s-maxage=60", "must-revalidate, max-age=60"] {
            assert_eq!(
                store(Method::GET, &auth, 200, &[cc(allows)]),
                Ok(()),
                "{allows}"
            );
        }
    }

    #[test]
    fn freshness_comes_from_s_maxage_then_max_age_then_expires() {
        let (t, _) = timing(&[cc("max-age=60, s-maxage=10")], 0);
        assert_eq!(t.lifetime, Duration::from_secs(10));
        let (t, _) = timing(&[cc("max-age=60"), ("expires", date(3600))], 0);
        assert_eq!(t.lifetime, Duration::from_secs(60));
        let (t, _) = timing(&[("date", date(0)), ("expires", date(100))], 0);
        assert_eq!(t.lifetime, Duration::from_secs(100));
        // Expires counts from Date, not from when the cache got it.
        let (t, _) = timing(&[("date", date(0)), ("expires", date(100))], 30);
        assert_eq!(t.lifetime, Duration::from_secs(100));
        // An invalid Expires is in the past; so is an invalid max-age.
        let (t, _) = timing(&[("expires", "0".to_owned())], 0);
        assert_eq!(t.lifetime, Duration::ZERO);
        let (t, _) = timing(&[cc("max-age=soon")], 0);
        assert_eq!(t.lifetime, Duration::ZERO);
    }

    #[test]
    fn heuristic_freshness_is_a_tenth_of_the_time_since_last_modified_capped() {
        let (t, _) = timing(&[("date", date(1000)), ("last-modified", date(0))], 1000);
        assert_eq!(t.lifetime, Duration::from_secs(100));
        let (t, _) = timing(
            &[("date", date(10_000_000)), ("last-modified", date(0))],
            10_000_000,
        );
        assert_eq!(t.lifetime, HEURISTIC_MAX);
        // Not for a status that is not cacheable by default.
        let headers = headers(&[("date", date(1000)), ("last-modified", date(0))]);
        let directives = ResponseDirectives::of(&headers);
        let t = Timing::of(StatusCode::FOUND, &headers, &directives, at(0), at(1000));
        assert_eq!(t.lifetime, Duration::ZERO);
    }

    #[test]
    fn age_counts_the_incoming_age_the_response_delay_and_the_time_in_cache() {
        // Requested at 0, received at 2, with Age: 10 and Date at 0:
        // corrected age = 10 + 2 (delay) > apparent age 2.
        let (t, _) = timing(&[("date", date(0)), ("age", "10".to_owned())], 2);
        assert_eq!(t.age(at(2)), Duration::from_secs(12));
        assert_eq!(t.age_seconds(at(7)), 17);
        // Requested at 45, received at 50 with Age: 1 and Date at 0: the
        // apparent age (50) beats the corrected Age (1 + 5).
        let headers = headers(&[("date", date(0)), ("age", "1".to_owned())]);
        let directives = ResponseDirectives::of(&headers);
        let t = Timing::of(StatusCode::OK, &headers, &directives, at(45), at(50));
        assert_eq!(t.age(at(50)), Duration::from_secs(50));
        // An invalid Age is ignored; a list keeps its first member.
        let (t, _) = timing(&[("age", "abc".to_owned())], 0);
        assert_eq!(t.age(at(0)), Duration::ZERO);
        let (t, _) = timing(&[("age", "5, 9".to_owned())], 0);
        assert_eq!(t.age(at(0)), Duration::from_secs(5));
    }

    #[test]
    fn fresh_until_the_lifetime_then_revalidated() {
        let (t, d) = timing(&[cc("max-age=10")], 0);
        assert_eq!(reuse(&t, &d, &request(&[]), at(9)), Reuse::Fresh);
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(10)),
            Reuse::Revalidate { if_error: false }
        );
    }

    #[test]
    fn request_directives_tighten_or_loosen_freshness() {
        let (t, d) = timing(&[cc("max-age=100")], 0);
        let revalidate = Reuse::Revalidate { if_error: false };
        assert_eq!(
            reuse(&t, &d, &request(&[cc("no-cache")]), at(1)),
            revalidate
        );
        assert_eq!(
            reuse(&t, &d, &request(&[("pragma", "no-cache".into())]), at(1)),
            revalidate
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-age=5")]), at(6)),
            revalidate
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-age=5")]), at(4)),
            Reuse::Fresh
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("min-fresh=50")]), at(60)),
            revalidate
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("min-fresh=50")]), at(40)),
            Reuse::Fresh
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-stale")]), at(1000)),
            Reuse::StaleAccepted
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-stale=10")]), at(105)),
            Reuse::StaleAccepted
        );
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-stale=10")]), at(111)),
            revalidate
        );
    }

    #[test]
    fn stored_directives_forbid_or_allow_stale_answers() {
        let (t, d) = timing(&[cc("max-age=10, must-revalidate")], 0);
        assert_eq!(
            reuse(&t, &d, &request(&[cc("max-stale")]), at(20)),
            Reuse::Revalidate { if_error: false }
        );
        let (t, d) = timing(&[cc("s-maxage=10, stale-if-error=60")], 0);
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(20)),
            Reuse::Revalidate { if_error: false },
            "s-maxage implies proxy-revalidate"
        );
        let (t, d) = timing(&[cc("no-cache, max-age=100")], 0);
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(1)),
            Reuse::Revalidate { if_error: false }
        );
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error_windows() {
        let (t, d) = timing(
            &[cc(
                "max-age=10, stale-while-revalidate=20, stale-if-error=60",
            )],
            0,
        );
        assert_eq!(reuse(&t, &d, &request(&[]), at(5)), Reuse::Fresh);
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(25)),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(40)),
            Reuse::Revalidate { if_error: true }
        );
        assert_eq!(
            reuse(&t, &d, &request(&[]), at(71)),
            Reuse::Revalidate { if_error: false }
        );
        // A request's own stale-if-error counts too (RFC 5861 §4).
        let (t, d) = timing(&[cc("max-age=10")], 0);
        assert_eq!(
            reuse(&t, &d, &request(&[cc("stale-if-error=100")]), at(50)),
            Reuse::Revalidate { if_error: true }
        );
    }

    #[test]
    fn qualified_no_cache_and_private_strip_their_fields() {
        let (_, d) = timing(
            &[cc(
                "max-age=10, no-cache=\"set-cookie\", private=\"x-user\"",
            )],
            0,
        );
        let fields: Vec<&str> = fields_to_strip(&d).map(|name| name.as_str()).collect();
        assert_eq!(fields, ["set-cookie", "x-user"]);
    }
}

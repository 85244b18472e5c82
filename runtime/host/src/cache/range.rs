//! `Range` requests answered from a stored complete response (RFC 9110
//! §14): one byte range gets a `206`, an unsatisfiable one a `416`;
//! several ranges, other units, or an `If-Range` that no longer holds get
//! the whole response, as §14.2 allows.

use super::validate::strong_eq;
use http::HeaderMap;
use http::header::{ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use std::ops::Range;

/// How to answer a GET for a stored body of `length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// `200` with the whole body.
    Full,
    /// `206` with these bytes and `Content-Range: bytes START-END/LENGTH`.
    Partial(Range<u64>),
    /// `416` with `Content-Range: bytes */LENGTH`.
    Unsatisfiable,
}

impl RangeAnswer {
    /// The `Content-Range` value of a 206 or 416 for a body of `length`.
    pub fn content_range(&self, length: u64) -> Option<String> {
        match self {
            Self::Full => None,
            Self::Partial(range) => {
                Some(format!("bytes {}-{}/{length}", range.start, range.end - 1))
            }
            Self::Unsatisfiable => Some(format!("bytes */{length}")),
        }
    }
}

/// The answer to `request`'s `Range` for the stored response with
/// `stored` headers and a body of `length` bytes.
pub fn answer_range(request: &HeaderMap, stored: &HeaderMap, length: u64) -> RangeAnswer {
    let Some(range) = request.get(RANGE).and_then(|value| value.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if !if_range_holds(request, stored) {
        return RangeAnswer::Full;
    }
    let Some(set) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    let mut specs = set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeAnswer::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |text: &str| {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    let range = match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            length.saturating_sub(suffix)..length
        }
        // bytes=N- and bytes=N-M.
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|end| end < start) {
                // Invalid, so the header is ignored (§14.1.1).
                return RangeAnswer::Full;
            }
            if start >= length {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.map_or(length, |end| end.saturating_add(1).min(length));
            start..end
        }
        _ => return RangeAnswer::Full,
    };
    if range.is_empty() {
        RangeAnswer::Unsatisfiable
    } else {
        RangeAnswer::Partial(range)
    }
}

/// §13.1.5: `If-Range` holds when its strong entity tag matches, or its
/// date equals a `Last-Modified` (the only strong date a cache can
/// check); without `If-Range`, the range applies.
fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = request.get(IF_RANGE).and_then(|value| value.to_str().ok()) else {
        return request.get(IF_RANGE).is_none();
    };
    let condition = condition.trim();
    let text = |name| {
        stored
            .get(name)
            .and_then(|value: &http::HeaderValue| value.to_str().ok())
    };
    if condition.starts_with('"') || condition.starts_with("W/") {
        return text(ETAG).is_some_and(|etag| strong_eq(condition, etag.trim()));
    }
    text(LAST_MODIFIED).is_some_and(|modified| modified.trim() == condition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_headers as headers;

    fn ranged(range: &str) -> RangeAnswer {
        answer_range(&headers(&[("range", range)]), &HeaderMap::new(), 100)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ranged("bytes=0-9"), RangeAnswer::Partial(0..10));
        assert_eq!(ranged("bytes=90-"), RangeAnswer::Partial(90..100));
        assert_eq!(ranged("bytes=-10"), RangeAnswer::Partial(90..100));
        assert_eq!(ranged("bytes=-500"), RangeAnswer::Partial(0..100));
        assert_eq!(ranged("bytes=95-500"), RangeAnswer::Partial(95..100));
        assert_eq!(
            RangeAnswer::Partial(0..10).content_range(100).as_deref(),
            Some("bytes 0-9/100")
        );
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert_eq!(ranged("bytes=100-"), RangeAnswer::Unsatisfiable);
        assert_eq!(ranged("bytes=-0"), RangeAnswer::Unsatisfiable);
        assert_eq!(
            RangeAnswer::Unsatisfiable.content_range(100).as_deref(),
            Some("bytes */100")
        );
        for ignored in [
            "bytes=9-0",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(ranged(ignored), RangeAnswer::Full, "{ignored}");
        }
        assert_eq!(
            answer_range(&HeaderMap::new(), &HeaderMap::new(), 100),
            RangeAnswer::Full
        );
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let stored = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", "Mon, 02 Jan 2023 10:00:00 GMT"),
        ]);
        let with = |if_range: &str| {
            answer_range(
                &headers(&[("range", "bytes=0-0"), ("if-range", if_range)]),
                &stored,
                10,
            )
        };
        assert_eq!(with("\"v1\""), RangeAnswer::Partial(0..1));
        assert_eq!(with("\"v2\""), RangeAnswer::Full);
        assert_eq!(with("W/\"v1\""), RangeAnswer::Full);
        assert_eq!(
            with("Mon, 02 Jan 2023 10:00:00 GMT"),
            RangeAnswer::Partial(0..1)
        );
        assert_eq!(with("Tue, 03 Jan 2023 10:00:00 GMT"), RangeAnswer::Full);
    }
}

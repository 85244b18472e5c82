//! Purge: an app's entries dropped (hard) or made stale (soft, so that
//! `stale-while-revalidate` and `stale-if-error` still apply), selected by
//! URL, URL prefix, tag (`Cache-Tag`, `Surrogate-Key`), or all of them.

use super::CachePolicy;
use super::key::SEP;
use super::store::Resource;
use std::collections::HashSet;
use std::sync::Arc;

/// Entries purged between two housekeeping passes of the store.
const PURGE_BATCH: u64 = 64;

/// What to purge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purge {
    /// Exact URLs: absolute (`https://example.com/a?b=1`: that host only)
    /// or a path with its query (`/a?b=1`: every host of the app). The
    /// app's key rules apply to the query, as they did when storing.
    pub urls: Vec<String>,
    /// URL prefixes, absolute or paths, matched byte for byte.
    pub prefixes: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Everything of the app.
    pub all: bool,
    /// Make stale instead of dropping.
    pub soft: bool,
}

/// A URL or prefix to match keys with: the host it names, if absolute,
/// and the path and query.
struct Selector {
    host: Option<String>,
    target: Vec<u8>,
}

impl Selector {
    fn parse(text: &str, exact: bool, policy: &CachePolicy) -> Result<Self, String> {
        let (host, rest) = match text.split_once("://") {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                let (authority, rest) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
                let host = match authority.rsplit_once(':') {
                    Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                    _ => authority,
                };
                if host.is_empty() {
                    return Err(format!("{text:?} names no host"));
                }
                (
                    Some(host.to_ascii_lowercase().trim_end_matches('.').to_owned()),
                    rest,
                )
            }
            Some(_) => {
                return Err(format!(
                    "{text:?}: give an http(s) URL or a path starting with /"
                ));
            }
            None if text.starts_with('/') => (None, text),
            None => {
                return Err(format!(
                    "{text:?}: give an http(s) URL or a path starting with /"
                ));
            }
        };
        let target = if exact {
            let uri: http::Uri = rest
                .parse()
                .map_err(|_| format!("{text:?} is not a valid URL path"))?;
            policy.rules().key.target(&uri)
        } else {
            rest.as_bytes().to_vec()
        };
        Ok(Self { host, target })
    }

    /// Whether the entry at `key` is selected: the whole target, or (for a
    /// prefix) its start.
    fn selects(&self, key: &[u8], exact: bool) -> bool {
        let Some((host, target)) = host_and_target(key) else {
            return false;
        };
        if self
            .host
            .as_ref()
            .is_some_and(|wanted| wanted.as_bytes() != host)
        {
            return false;
        }
        if exact {
            target == self.target.as_slice()
        } else {
            target.starts_with(&self.target)
        }
    }
}

/// The host and the path-and-query of a primary key (`app`, scheme, host,
/// target, then what the key rules add, separated by [`SEP`]).
fn host_and_target(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = key.splitn(5, |&byte| byte == SEP);
    let _app = parts.next()?;
    let _scheme = parts.next()?;
    Some((parts.next()?, parts.next()?))
}

impl CachePolicy {
    /// Purges what `purge` selects; returns how many entries (primary
    /// keys, with all their variants) it purged. A URL that cannot be
    /// read is refused before anything is purged.
    pub fn purge(&self, purge: &Purge) -> Result<u64, String> {
        let urls = purge
            .urls
            .iter()
            .map(|url| Selector::parse(url, true, self))
            .collect::<Result<Vec<_>, _>>()?;
        let prefixes = purge
            .prefixes
            .iter()
            .map(|prefix| Selector::parse(prefix, false, self))
            .collect::<Result<Vec<_>, _>>()?;
        let entries = &self.store.entries;
        if purge.all && !purge.soft {
            entries.run_pending_tasks();
            let count = entries.entry_count();
            // The index first: an entry stored in between is dropped by
            // `invalidate_all` but stays indexed, which only adds a
            // candidate.
            self.store
                .tags
                .lock()
                .expect("the tag index is never poisoned")
                .clear();
            entries.invalidate_all();
            return Ok(count);
        }
        // Each selected key once, purged as it is found: a key two
        // selectors match counts once.
        let mut done: HashSet<Box<[u8]>> = HashSet::new();
        let mut purged = 0;
        let mut purge_key = |key: Box<[u8]>, selected: &dyn Fn(&Resource) -> bool| {
            if done.contains(&key) {
                return;
            }
            let resource = if purge.soft {
                entries.get(&key)
            } else {
                entries.remove(&key)
            };
            let Some(resource) = resource else {
                return;
            };
            if !selected(&resource) {
                // The tag index only names candidates: not this one.
                if !purge.soft {
                    self.store.put(key, resource.variants.clone());
                }
                return;
            }
            if purge.soft {
                let variants = resource
                    .variants
                    .iter()
                    .map(|stored| Arc::new(stored.stale_now()))
                    .collect();
                self.store.put(key.clone(), variants);
            }
            purged += 1;
            done.insert(key);
            // The purge does moka's housekeeping for its own writes, in
            // small batches: otherwise a request's lookup finds the write
            // buffer full and does it (a 10 ms stall in a 100,000-entry
            // purge).
            if purged % PURGE_BATCH == 0 {
                entries.run_pending_tasks();
            }
        };
        for tag in &purge.tags {
            let candidates: Vec<Box<[u8]>> = self
                .store
                .tags
                .lock()
                .expect("the tag index is never poisoned")
                .get(tag.as_str())
                .map(|keys| keys.keys().cloned().collect())
                .unwrap_or_default();
            for key in candidates {
                purge_key(key, &|resource| resource.tagged(tag));
            }
        }
        if purge.all || !urls.is_empty() || !prefixes.is_empty() {
            let selected: Vec<Box<[u8]>> = entries
                .iter()
                .map(|(key, _)| key)
                .filter(|key| {
                    purge.all
                        || urls.iter().any(|url| url.selects(key, true))
                        || prefixes.iter().any(|prefix| prefix.selects(key, false))
                })
                .map(|key| Box::clone(&key))
                .collect();
            for key in selected {
                purge_key(key, &|_| true);
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, CacheRules, CacheService, Lookup, ResponseDirectives, Stored};
    use http::{HeaderMap, StatusCode};
    use std::time::{Instant, SystemTime};

    fn entry(tags: &str) -> Stored {
        let headers =
            crate::cache::test_headers(&[("cache-control", "max-age=600"), ("cache-tag", tags)]);
        let directives = ResponseDirectives::of(&headers);
        Stored::new(
            StatusCode::OK,
            headers,
            directives,
            &HeaderMap::new(),
            SystemTime::now(),
        )
    }

    fn key(n: usize) -> Vec<u8> {
        format!("app\0http\0example.com\0/item/{n}").into_bytes()
    }

    /// 100,000 tagged entries go in one purge while lookups of other
    /// entries go on in another thread; the time both take is printed
    /// (`cargo test -p outpost-host purge -- --nocapture`), not asserted.
    #[test]
    fn a_purge_of_100000_tagged_entries_leaves_the_others_and_lookups_running() {
        let service = Arc::new(CacheService::new(&CacheConfig { memory: 1 << 30 }));
        let rules = CacheRules {
            memory: 1 << 30,
            ..CacheRules::default()
        };
        let policy = service.policy("app", rules);
        for n in 0..100_000 {
            assert!(policy.insert(&key(n), entry("bulk, shared")));
        }
        for n in 100_000..100_100 {
            assert!(policy.insert(&key(n), entry("other, shared")));
        }
        let reader = {
            let policy = policy.clone();
            std::thread::spawn(move || {
                let mut slowest = std::time::Duration::ZERO;
                for round in 0..200_000 {
                    let started = Instant::now();
                    let found = policy.lookup(&key(100_000 + round % 100), &HeaderMap::new());
                    slowest = slowest.max(started.elapsed());
                    assert!(matches!(found, Lookup::Found(_)));
                }
                slowest
            })
        };
        let started = Instant::now();
        let purge = Purge {
            tags: vec!["bulk".into()],
            ..Purge::default()
        };
        assert_eq!(policy.purge(&purge).unwrap(), 100_000);
        let took = started.elapsed();
        let slowest = reader.join().unwrap();
        println!("purged 100,000 entries in {took:?}; slowest concurrent lookup {slowest:?}");
        assert!(matches!(
            policy.lookup(&key(7), &HeaderMap::new()),
            Lookup::UriMiss
        ));
        assert_eq!(policy.entries(), 100);
        // The tag both sets shared now selects only what is left.
        let shared = Purge {
            tags: vec!["shared".into()],
            soft: true,
            ..Purge::default()
        };
        assert_eq!(policy.purge(&shared).unwrap(), 100);
    }

    #[test]
    fn an_entry_stored_again_after_a_purge_stays_findable_by_its_tags() {
        let service = Arc::new(CacheService::new(&CacheConfig::default()));
        let policy = service.policy("app", CacheRules::default());
        let by_tag = Purge {
            tags: vec!["t".into()],
            ..Purge::default()
        };
        for round in 0..3 {
            assert!(policy.insert(&key(1), entry("t")));
            // The purged entry's removal is reported after the same key
            // was stored again: it must not unindex the new entry.
            assert_eq!(policy.purge(&by_tag).unwrap(), 1, "round {round}");
            assert!(policy.insert(&key(1), entry("t")));
            policy.store.entries.run_pending_tasks();
            assert_eq!(policy.purge(&by_tag).unwrap(), 1, "round {round}");
            policy.store.entries.run_pending_tasks();
        }
        assert!(
            policy.store.tags.lock().unwrap().is_empty(),
            "the index empties"
        );
    }

    #[test]
    fn urls_and_prefixes_select_by_host_and_target() {
        let service = Arc::new(CacheService::new(&CacheConfig::default()));
        let rules = CacheRules {
            key: crate::cache::KeyRules {
                sort_query: true,
                ..Default::default()
            },
            ..CacheRules::default()
        };
        let policy = service.policy("app", rules);
        let at = |host: &str, target: &str| format!("app\0http\0{host}\0{target}").into_bytes();
        for (host, target) in [
            ("a.com", "/x?a=1&b=2"),
            ("b.com", "/x?a=1&b=2"),
            ("a.com", "/static/1.css"),
            ("a.com", "/static/2.css"),
        ] {
            assert!(policy.insert(&at(host, target), entry("t")));
        }
        let urls = |urls: &[&str]| Purge {
            urls: urls.iter().map(|url| url.to_string()).collect(),
            ..Purge::default()
        };
        // The query is shaped by the key rules, as when storing.
        assert_eq!(
            policy
                .purge(&urls(&["https://A.com:8443/x?b=2&a=1"]))
                .unwrap(),
            1
        );
        assert_eq!(policy.purge(&urls(&["/x?a=1&b=2"])).unwrap(), 1);
        let prefixes = Purge {
            prefixes: vec!["/static/".into()],
            ..Purge::default()
        };
        assert_eq!(policy.purge(&prefixes).unwrap(), 2);
        for bad in ["x", "ftp://a.com/", "https:///x"] {
            assert!(policy.purge(&urls(&[bad])).is_err(), "{bad}");
        }
    }
}

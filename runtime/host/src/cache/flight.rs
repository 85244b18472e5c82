//! Requests in flight for an entry: collapsing (concurrent misses for one
//! key make one request to the origin; the others wait for its response,
//! for a bounded time) and the one background refresh per key that
//! `stale-while-revalidate` starts.

use super::CachePolicy;
use crate::RequestId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What is in flight for one app's keys.
#[derive(Debug, Default)]
pub(super) struct Flights {
    /// The edge's requests to origins (a handler, a fetch).
    origin: Claims,
    /// Handlers' own lookups (`outpost:edge/cache`), apart from the
    /// edge's: a handler the edge runs for a key it leads must not wait
    /// for itself, nor find the refresh it is running claimed.
    pub(super) guests: Claims,
}

/// Keys whose miss is being fetched: by which request, and how to wait
/// for it.
type Leading = Arc<Mutex<HashMap<Box<[u8]>, (Option<RequestId>, watch::Receiver<()>)>>>;

/// Misses and refreshes in flight, by key.
#[derive(Debug, Default)]
pub(super) struct Claims {
    leading: Leading,
    /// Keys being refreshed.
    refreshing: Arc<Mutex<HashSet<Box<[u8]>>>>,
}

/// A miss, as collapsing sees it.
#[derive(Debug)]
pub enum Flight {
    /// This request goes to the origin; the others wait until the guard
    /// is dropped (its response stored, or found not storable).
    Lead(Leader),
    /// Another request is on its way to the origin for this key.
    Follow(Follower),
    /// This very request is on its way to the origin for this key (a
    /// handler fetching one URL twice at once): it asks again rather than
    /// wait for itself, since its first answer may only move on once the
    /// guest reads it.
    Alone,
}

/// The request that goes to the origin for a key.
#[derive(Debug)]
pub struct Leader {
    leading: Leading,
    key: Box<[u8]>,
    _done: watch::Sender<()>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Ok(mut leading) = self.leading.lock() {
            leading.remove(&self.key);
        }
        // `_done` drops next: every follower wakes.
    }
}

/// A request waiting for a leader.
#[derive(Debug)]
pub struct Follower(watch::Receiver<()>);

impl Follower {
    /// Waits until the leader is done, or `limit` has passed.
    pub async fn wait(mut self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.0.changed()).await;
    }
}

/// A background refresh in progress; dropping it ends the claim.
#[derive(Debug)]
pub struct Refresh {
    set: Arc<Mutex<HashSet<Box<[u8]>>>>,
    key: Box<[u8]>,
}

impl Drop for Refresh {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

impl CachePolicy {
    /// Joins the request in flight for `key`, or becomes it; request
    /// `by` never waits for itself.
    pub fn collapse(&self, key: &[u8], by: RequestId) -> Flight {
        self.store.flights.origin.collapse(key, Some(by))
    }

    /// Claims the background refresh of `key` (`stale-while-revalidate`),
    /// or `None` if one is already running: until the returned guard is
    /// dropped, no other request starts one.
    pub fn start_refresh(&self, key: &[u8]) -> Option<Refresh> {
        self.store.flights.origin.start_refresh(key)
    }
}

impl Claims {
    /// Joins the flight for `key`, or starts it, on behalf of request
    /// `by` (`None`: the caller keeps its own claims apart, as handlers'
    /// lookups do).
    pub(super) fn collapse(&self, key: &[u8], by: Option<RequestId>) -> Flight {
        let mut leading = self
            .leading
            .lock()
            .expect("the flight map is never poisoned");
        if let Some((leader, waiting)) = leading.get(key) {
            if by.is_some() && *leader == by {
                return Flight::Alone;
            }
            return Flight::Follow(Follower(waiting.clone()));
        }
        let (done, waiting) = watch::channel(());
        leading.insert(key.into(), (by, waiting));
        Flight::Lead(Leader {
            leading: self.leading.clone(),
            key: key.into(),
            _done: done,
        })
    }

    pub(super) fn start_refresh(&self, key: &[u8]) -> Option<Refresh> {
        let mut refreshing = self
            .refreshing
            .lock()
            .expect("the refresh set is never poisoned");
        refreshing.insert(key.into()).then(|| Refresh {
            set: self.refreshing.clone(),
            key: key.into(),
        })
    }
}

//! Requests in flight for an entry: collapsing (concurrent misses for one
//! key make one request to the origin; the others wait for its response,
//! for a bounded time) and the one background refresh per key that
//! `stale-while-revalidate` starts.

use super::CachePolicy;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What is in flight for one app's keys.
#[derive(Debug, Default)]
pub(super) struct Flights {
    /// Keys whose miss is being fetched, and how to wait for it.
    leading: Arc<Mutex<HashMap<Box<[u8]>, watch::Receiver<()>>>>,
    /// Keys being refreshed in the background.
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
}

/// The request that goes to the origin for a key.
#[derive(Debug)]
pub struct Leader {
    leading: Arc<Mutex<HashMap<Box<[u8]>, watch::Receiver<()>>>>,
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
    /// Joins the request in flight for `key`, or becomes it.
    pub fn collapse(&self, key: &[u8]) -> Flight {
        let flights = &self.store.flights;
        let mut leading = flights
            .leading
            .lock()
            .expect("the flight map is never poisoned");
        if let Some(waiting) = leading.get(key) {
            return Flight::Follow(Follower(waiting.clone()));
        }
        let (done, waiting) = watch::channel(());
        leading.insert(key.into(), waiting);
        Flight::Lead(Leader {
            leading: flights.leading.clone(),
            key: key.into(),
            _done: done,
        })
    }

    /// Claims the background refresh of `key` (`stale-while-revalidate`),
    /// or `None` if one is already running: until the returned guard is
    /// dropped, no other request starts one.
    pub fn start_refresh(&self, key: &[u8]) -> Option<Refresh> {
        let flights = &self.store.flights;
        let mut refreshing = flights
            .refreshing
            .lock()
            .expect("the refresh set is never poisoned");
        refreshing.insert(key.into()).then(|| Refresh {
            set: flights.refreshing.clone(),
            key: key.into(),
        })
    }
}

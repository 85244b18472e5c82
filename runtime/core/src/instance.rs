//! Instances: each serves exactly one request. One may be made ahead of its
//! request (a *warm* instance) so that instantiation is off the request's
//! path, and every instance is torn down after its response is out.
//!
//! Every instance holds two permits: one of its app's (`limits.instances`,
//! so one app cannot take the whole pool) and one of the node's pool
//! (`max_instances`, the pooling allocator's size). A request waits for
//! them at most the node's `instance_wait`; past it, it is refused (503).

use crate::RequestMeta;
use crate::cpu::Metered;
use crate::deadline::within;
use crate::state::RequestState;
use outpost_host::bindings::{Handler, HandlerPre};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

/// The node's instance bound, shared by all apps.
#[derive(Clone)]
pub(crate) struct InstancePool {
    /// One permit per instance that may exist at once (`max_instances`).
    slots: Arc<Semaphore>,
    /// How many slots warm instances may hold. A quarter of the pool, so
    /// instances waiting for requests never starve requests that need one.
    warm: Arc<Semaphore>,
    /// How long a request may wait for a slot.
    wait: Duration,
}

impl InstancePool {
    pub(crate) fn new(max_instances: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_instances)),
            warm: Arc::new(Semaphore::new(max_instances / 4)),
            wait,
        }
    }
}

/// Which bound a request could not get past in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saturated {
    /// The app has `limits.instances` instances alive.
    App(u32),
    /// The node's pool (`max_instances`) is in use.
    Node,
}

/// Admission of one app's instances: its own cap, then the node's pool.
#[derive(Clone)]
pub(crate) struct Slots {
    app: Arc<Semaphore>,
    app_cap: u32,
    pool: InstancePool,
    /// Requests of this app waiting for a permit: while there are any, no
    /// instance is made ahead (it would hold the permit they wait for).
    waiting: Arc<AtomicUsize>,
}

/// The permits an instance holds while it exists.
pub(crate) struct Slot {
    _app: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

impl Slots {
    pub(crate) fn new(pool: InstancePool, app_cap: u32) -> Self {
        Self {
            app: Arc::new(Semaphore::new(app_cap as usize)),
            app_cap,
            pool,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether requests of this app are waiting for a permit.
    pub(crate) fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// A slot for a request: at once if both bounds have room (no timer
    /// is armed then), else waiting up to the pool's `wait` in all.
    pub(crate) async fn acquire(&self) -> Result<Slot, (Saturated, Duration)> {
        if let (Ok(app), Ok(pool)) = (
            self.app.clone().try_acquire_owned(),
            self.pool.slots.clone().try_acquire_owned(),
        ) {
            return Ok(Slot {
                _app: app,
                _pool: pool,
            });
        }
        let wait = self.pool.wait;
        let deadline = tokio::time::Instant::now() + wait;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let app = tokio::time::timeout_at(deadline, self.app.clone().acquire_owned())
            .await
            .map_err(|_| (Saturated::App(self.app_cap), wait))?
            .expect("an app's semaphore is never closed");
        let pool = tokio::time::timeout_at(deadline, self.pool.slots.clone().acquire_owned())
            .await
            .map_err(|_| (Saturated::Node, wait))?
            .expect("the pool's semaphore is never closed");
        Ok(Slot {
            _app: app,
            _pool: pool,
        })
    }

    /// A slot for a warm instance, if the app, the pool and the warm budget
    /// all have room now and no request of the app is waiting.
    fn try_acquire_warm(&self) -> Option<(Slot, OwnedSemaphorePermit)> {
        if self.contended() {
            return None;
        }
        let warm = self.pool.warm.clone().try_acquire_owned().ok()?;
        let app = self.app.clone().try_acquire_owned().ok()?;
        let pool = self.pool.slots.clone().try_acquire_owned().ok()?;
        Some((
            Slot {
                _app: app,
                _pool: pool,
            },
            warm,
        ))
    }
}

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A Store, the component instance in it once instantiated, and its
/// permits. Dropping it frees the instance and then the permits, so the
/// bounds on live instances stay exact.
pub(crate) struct Instance {
    pub(crate) store: Store<RequestState>,
    handler: Option<Handler>,
    _slot: Slot,
}

impl Instance {
    /// A Store not yet instantiated: the request's own path instantiates it.
    pub(crate) fn cold(store: Store<RequestState>, slot: Slot) -> Self {
        Self {
            store,
            handler: None,
            _slot: slot,
        }
    }

    /// Binds the instance to its request: log lines carry the id and share
    /// a fresh log budget, and the CPU meter (on the thread's CPU clock from
    /// the start if `precise_cpu`) and epoch deadline start from now, not
    /// from when the instance was made.
    pub(crate) fn begin(&mut self, request: RequestMeta, precise_cpu: bool) {
        let state = self.store.data_mut();
        state.output.begin(request.id);
        state.fetch.begin(request);
        state.client.begin(request);
        state.cpu.reset(precise_cpu);
        state.memory.hit = false;
        self.store.set_epoch_deadline(1);
    }

    /// The instantiated component: made now unless it was made ahead.
    pub(crate) async fn handler(
        &mut self,
        pre: &HandlerPre<RequestState>,
    ) -> wasmtime::Result<Handler> {
        match self.handler.take() {
            Some(handler) => Ok(handler),
            None => pre.instantiate_async(&mut self.store).await,
        }
    }
}

/// An instance made before its request, and its share of the warm budget.
pub(crate) struct Warm {
    instance: Instance,
    _budget: OwnedSemaphorePermit,
}

impl Warm {
    /// Instantiates ahead of a request, if there is room. `None` also
    /// when instantiation fails or outlasts `wall_time`: the next request
    /// then instantiates on its own path and reports the failure.
    pub(crate) async fn make(
        slots: &Slots,
        store: Store<RequestState>,
        pre: &HandlerPre<RequestState>,
        wall_time: Duration,
    ) -> Option<Self> {
        let (slot, budget) = slots.try_acquire_warm()?;
        let mut instance = Instance::cold(store, slot);
        // Start functions run now, under the app's CPU and wall-clock limits.
        let meter = instance.store.data().cpu.clone();
        let instantiate = Metered::new(pre.instantiate_async(&mut instance.store), meter);
        match within(wall_time, instantiate).await {
            Some(Ok(handler)) => {
                instance.handler = Some(handler);
                Some(Self {
                    instance,
                    _budget: budget,
                })
            }
            Some(Err(err)) => {
                tracing::debug!("instantiating ahead of a request failed: {err:#}");
                None
            }
            None => None,
        }
    }

    /// The instance, for one request; its budget permit goes back.
    pub(crate) fn take(self) -> Instance {
        self.instance
    }
}

//! Instances: each serves exactly one request. One may be made ahead of its
//! request (a *warm* instance) so that instantiation is off the request's
//! path, and every instance is torn down after its response is out.

use crate::RequestId;
use crate::app::within;
use crate::state::RequestState;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

/// The node's instance bound, shared by all apps.
#[derive(Clone)]
pub(crate) struct InstancePool {
    /// One permit per instance that may exist at once (`max_instances`):
    /// requests beyond it wait for a slot, they never fail.
    slots: Arc<Semaphore>,
    /// How many slots warm instances may hold. A quarter of the pool, so
    /// instances waiting for requests never starve requests that need one.
    warm: Arc<Semaphore>,
}

impl InstancePool {
    pub(crate) fn new(max_instances: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_instances)),
            warm: Arc::new(Semaphore::new(max_instances / 4)),
        }
    }

    /// A slot for a request, waiting while the pool is full.
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed")
    }

    /// A slot for a warm instance, if the pool has room for one now.
    fn warm_slot(&self) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let warm = self.warm.clone().try_acquire_owned().ok()?;
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        Some((slot, warm))
    }
}

/// A Store, the component instance in it once instantiated, and its pool
/// slot. Dropping it frees the instance and then the slot, so the bound on
/// live instances stays exact.
pub(crate) struct Instance {
    pub(crate) store: Store<RequestState>,
    proxy: Option<Proxy>,
    _slot: OwnedSemaphorePermit,
}

impl Instance {
    /// A Store not yet instantiated: the request's own path instantiates it.
    pub(crate) fn cold(store: Store<RequestState>, slot: OwnedSemaphorePermit) -> Self {
        Self {
            store,
            proxy: None,
            _slot: slot,
        }
    }

    /// Binds the instance to its request: log lines carry the id, and the
    /// CPU meter and epoch deadline start from now, not from when the
    /// instance was made.
    pub(crate) fn begin(&mut self, request_id: RequestId) {
        let state = self.store.data_mut();
        state.request.set(request_id);
        state.cpu.used_ticks = 0;
        state.memory.hit = false;
        self.store.set_epoch_deadline(1);
    }

    /// The instantiated component: made now unless it was made ahead.
    pub(crate) async fn proxy(&mut self, pre: &ProxyPre<RequestState>) -> wasmtime::Result<Proxy> {
        match self.proxy.take() {
            Some(proxy) => Ok(proxy),
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
    /// Instantiates ahead of a request, if the pool has room. `None` also
    /// when instantiation fails or outlasts `wall_time`: the next request
    /// then instantiates on its own path and reports the failure.
    pub(crate) async fn make(
        pool: &InstancePool,
        store: Store<RequestState>,
        pre: &ProxyPre<RequestState>,
        wall_time: std::time::Duration,
    ) -> Option<Self> {
        let (slot, budget) = pool.warm_slot()?;
        let mut instance = Instance::cold(store, slot);
        match within(wall_time, pre.instantiate_async(&mut instance.store)).await {
            Some(Ok(proxy)) => {
                instance.proxy = Some(proxy);
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

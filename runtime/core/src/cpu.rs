//! CPU time of a guest: the time its execution slices take on the worker
//! thread, host calls included.
//!
//! A guest executes only while its future is being polled: Wasm runs inside
//! `poll`, and so do the synchronous host calls it makes (`memory.fill`
//! over 100 MiB, 1 MiB of random bytes). [`Metered`] measures every poll
//! and adds the slice to the guest's [`CpuMeter`]; time parked on I/O is
//! outside any poll and costs nothing. The epoch deadline callback (once per
//! tick in which Wasm runs) compares the meter, including the slice in
//! progress, with the budget, so one long host call or bulk instruction is
//! charged for all the time it took, and the guest is interrupted at its
//! next check. (Counting one tick per callback, as the first version did,
//! forgave a 30 ms `memory.fill` as 1 ms.)
//!
//! Two clocks. The monotonic clock costs 25 ns a read but also counts time
//! the OS gave the thread's CPU to someone else; the thread's CPU clock is
//! exact but costs a system call (0.5 µs on this VM, and a request is
//! polled a few times). So a request is measured on the monotonic clock
//! until an epoch callback finds it has used a millisecond, and on the
//! thread's CPU clock from then on; and once a request of an app has used a
//! millisecond *on the thread's CPU clock* (so not merely been preempted),
//! the app's later requests are measured on it from their start. Apps whose
//! requests finish within a millisecond (nearly all) pay nothing extra, and
//! a busy host cannot push a long-running guest over its limit (a guest
//! echoing 1 MiB was cut at "50 ms" on a loaded machine when every slice
//! was timed on the monotonic clock). What remains inexact is the start of
//! a long request of an app not yet known to run long: until its first
//! check, and if it starts with one long bulk instruction, that
//! instruction, a loaded host's preemptions are charged to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A request that has used this much CPU time is measured on the thread's
/// CPU clock from then on, and its app's later requests from their start.
const PRECISE_AFTER: Duration = Duration::from_millis(1);

/// Nanoseconds on the monotonic clock since the first call. Never 0.
fn monotonic_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
}

/// CPU time this thread has used, in nanoseconds. Never 0.
fn thread_cpu_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let ns = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    u64::try_from(ns).unwrap_or(0) + 1
}

/// The CPU time one instance has used for its current request, shared by
/// the Store (whose epoch callback reads it) and the [`Metered`] future that
/// drives the guest. Relaxed atomics: both sides run on the same thread; the
/// atomics only make the meter `Sync` for the Store.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    /// Time of the finished slices.
    used_ns: AtomicU64,
    /// Start of the slice in progress on the monotonic clock, or 0.
    slice_monotonic: AtomicU64,
    /// Start of the slice in progress on the thread's CPU clock, or 0.
    slice_cpu: AtomicU64,
    /// 1 once the request is measured on the thread's CPU clock.
    precise: AtomicU64,
    /// Time measured on the thread's CPU clock.
    precise_ns: AtomicU64,
}

impl CpuMeter {
    /// Forgets earlier use: the instance starts serving a request,
    /// measured on the thread's CPU clock from the start if `precise`.
    pub(crate) fn reset(&self, precise: bool) {
        self.used_ns.store(0, Ordering::Relaxed);
        self.slice_monotonic.store(0, Ordering::Relaxed);
        self.slice_cpu.store(0, Ordering::Relaxed);
        self.precise.store(u64::from(precise), Ordering::Relaxed);
        self.precise_ns.store(0, Ordering::Relaxed);
    }

    /// Whether the request used a millisecond or more on the thread's CPU
    /// clock: its app is one whose requests run long. (Reaching a
    /// millisecond on the monotonic clock alone does not tell: a short
    /// request the OS preempted does too.)
    pub(crate) fn ran_long(&self) -> bool {
        self.precise_ns.load(Ordering::Relaxed) >= PRECISE_AFTER.as_nanos() as u64
    }

    /// CPU time used so far, the slice in progress included.
    pub(crate) fn used(&self) -> Duration {
        Duration::from_nanos(self.used_ns.load(Ordering::Relaxed) + self.in_slice())
    }

    /// CPU time used so far, from the epoch callback. Once the request
    /// has used a tick's worth, it is measured on the thread's CPU clock
    /// from now on. (A callback alone does not mean that much: a request
    /// that starts just before the epoch advances gets one after a few
    /// microseconds.)
    pub(crate) fn used_at_tick(&self) -> Duration {
        let used = self.used();
        if used >= PRECISE_AFTER {
            let monotonic_start = self.slice_monotonic.swap(0, Ordering::Relaxed);
            if monotonic_start != 0 {
                let elapsed = monotonic_ns().saturating_sub(monotonic_start);
                self.used_ns.fetch_add(elapsed, Ordering::Relaxed);
                self.slice_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
                self.precise.store(1, Ordering::Relaxed);
            }
        }
        used
    }

    /// Nanoseconds of the slice in progress.
    fn in_slice(&self) -> u64 {
        let cpu_start = self.slice_cpu.load(Ordering::Relaxed);
        if cpu_start != 0 {
            return thread_cpu_ns().saturating_sub(cpu_start);
        }
        let monotonic_start = self.slice_monotonic.load(Ordering::Relaxed);
        if monotonic_start != 0 {
            return monotonic_ns().saturating_sub(monotonic_start);
        }
        0
    }

    fn begin_slice(&self) {
        if self.precise.load(Ordering::Relaxed) != 0 {
            self.slice_cpu.store(thread_cpu_ns(), Ordering::Relaxed);
        } else {
            self.slice_monotonic
                .store(monotonic_ns(), Ordering::Relaxed);
        }
    }

    fn end_slice(&self) {
        let slice = self.in_slice();
        self.used_ns.fetch_add(slice, Ordering::Relaxed);
        if self.slice_cpu.load(Ordering::Relaxed) != 0 {
            self.precise_ns.fetch_add(slice, Ordering::Relaxed);
        }
        self.slice_cpu.store(0, Ordering::Relaxed);
        self.slice_monotonic.store(0, Ordering::Relaxed);
    }
}

/// Drives a guest's future and charges every poll to its meter.
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.meter.begin_slice();
        let polled = this.inner.as_mut().poll(cx);
        this.meter.end_slice();
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins for `time` of this thread's CPU time: on a busy machine the
    /// thread is descheduled now and then, so a spin timed by the wall
    /// clock used less (19 ms of 30 once, under the full suite).
    fn spin(time: Duration) {
        let started = thread_cpu_ns();
        while thread_cpu_ns() - started < time.as_nanos() as u64 {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn charges_time_inside_polls_and_not_time_parked() {
        let meter = Arc::new(CpuMeter::default());
        let tick = meter.clone();
        let busy_then_park = async move {
            spin(Duration::from_millis(10));
            // As the epoch callback would, past a tick's worth.
            tick.used_at_tick();
            spin(Duration::from_millis(10));
            // Parked: not executing, not charged.
            tokio::time::sleep(Duration::from_secs(1)).await;
            spin(Duration::from_millis(10));
        };
        Metered::new(busy_then_park, meter.clone()).await;
        let used = meter.used();
        assert!(used >= Duration::from_millis(25), "{used:?}");
        assert!(
            used < Duration::from_secs(1),
            "the parked second is not charged: {used:?}"
        );
        assert!(meter.ran_long(), "20 ms on the thread's CPU clock");
        meter.reset(false);
        assert_eq!(meter.used(), Duration::ZERO);
        assert!(!meter.ran_long());
    }

    #[test]
    fn the_thread_cpu_clock_does_not_count_sleep() {
        let meter = CpuMeter::default();
        meter.reset(true);
        meter.begin_slice();
        // Descheduled (as when the OS runs another thread): not CPU time.
        std::thread::sleep(Duration::from_millis(200));
        meter.end_slice();
        assert!(
            meter.used() < Duration::from_millis(100),
            "{:?}",
            meter.used()
        );
    }
}

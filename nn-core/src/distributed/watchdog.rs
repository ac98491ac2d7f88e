//! The collective watchdog: one thread per group that ends the process when a
//! collective has not completed within the timeout (a peer died or hangs).

use super::TIMEOUT_EXIT_CODE;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The collective being watched, and since when.
struct Armed {
    op: &'static str,
    since: Instant,
}

/// The state shared with the watchdog thread.
pub(super) struct Watchdog {
    armed: Mutex<Option<Armed>>,
    wake: Condvar,
    timeout_ms: AtomicU64,
}

impl Watchdog {
    /// A watchdog with the timeout from `NN_DIST_TIMEOUT_S`, its thread started.
    pub(super) fn spawn(rank: usize, world_size: usize) -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            armed: Mutex::new(None),
            wake: Condvar::new(),
            timeout_ms: AtomicU64::new(timeout_from_env().as_millis() as u64),
        });
        spawn_watchdog(dog.clone(), rank, world_size);
        dog
    }

    /// Starts watching collective `op`.
    pub(super) fn arm(&self, op: &'static str) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Armed {
            op,
            since: Instant::now(),
        });
        self.wake.notify_all();
    }

    /// The watched collective completed.
    pub(super) fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Sets the timeout (at least 1 ms).
    pub(super) fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms
            .store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The timeout.
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }
}

fn timeout_from_env() -> Duration {
    std::env::var("NN_DIST_TIMEOUT_S")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(300))
}

/// Leaves the process at once: MPI's state is unknown after a timed-out collective, so
/// no destructor or exit handler may run into it.
fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    {
        // SAFETY: `_exit` takes any status and never returns; skipping destructors and
        // atexit handlers is the point (they would call into a stuck MPI).
        unsafe { libc::_exit(code) }
    }
    #[cfg(not(unix))]
    {
        let _ = code;
        std::process::abort()
    }
}

fn spawn_watchdog(dog: Arc<Watchdog>, rank: usize, world_size: usize) {
    let run = move || loop {
        let armed = dog.armed.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = Duration::from_millis(dog.timeout_ms.load(Ordering::Relaxed));
        let wait = match &*armed {
            None => Duration::from_secs(1),
            Some(a) => {
                let waited = a.since.elapsed();
                if waited >= timeout {
                    eprintln!(
                        "nn::distributed: rank {rank} of {world_size}: {} did not complete within {:.1} s \
                         (a peer rank died or hangs); exiting with status {TIMEOUT_EXIT_CODE}",
                        a.op,
                        timeout.as_secs_f64()
                    );
                    exit_now(TIMEOUT_EXIT_CODE);
                }
                (timeout - waited).min(Duration::from_secs(1))
            }
        };
        drop(
            dog.wake
                .wait_timeout(armed, wait)
                .unwrap_or_else(|e| e.into_inner()),
        );
    };
    // Without a watchdog thread collectives are unwatched; that is no reason to fail.
    let _ = std::thread::Builder::new()
        .name("nn-dist-watchdog".into())
        .spawn(run);
}

//! The outputs of requests submitted without a callback, held for `vllm_poll` / `vllm_wait`:
//! one FIFO per request id under one mutex, one condition variable for every waiter. An id is
//! forgotten once its last output (every sequence finished) has been taken. Cost: O(1) per
//! push and take; a waiter wakes on every push or sink drop (any request's), then rechecks.

use crate::error::VllmStatus;
use crate::failure::Failure;
use crate::output::OwnedOutput;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// One request's outputs not yet taken.
#[derive(Default)]
struct Queue {
    items: VecDeque<Box<OwnedOutput>>,
    /// Every sequence of the request has finished (its last output may still be queued).
    done: bool,
}

/// Every queued request of one engine.
#[derive(Default)]
pub(crate) struct Queues {
    map: Mutex<HashMap<u64, Queue>>,
    ready: Condvar,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").finish_non_exhaustive()
    }
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Queue>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `id` known (right after it was submitted), keeping what it may already hold.
    pub(crate) fn open(&self, id: u64) {
        self.lock().entry(id).or_default();
    }

    /// Queues an output of `id` (on the engine thread) and wakes the waiters.
    pub(crate) fn push(&self, id: u64, out: Box<OwnedOutput>, done: bool) {
        let mut map = self.lock();
        let q = map.entry(id).or_default();
        q.items.push_back(out);
        q.done = done;
        drop(map);
        self.ready.notify_all();
    }

    /// Wakes the waiters (a sink went away: its request may have no more outputs).
    pub(crate) fn wake(&self) {
        let _map = self.lock();
        self.ready.notify_all();
    }

    /// The next output of `id`, waiting at most until `deadline` (None: forever); `Ok(None)`
    /// when none came in time. ENGINE_STOPPED (with `stopped`'s reason) once the engine has
    /// stopped and nothing is left to take.
    pub(crate) fn next(
        &self,
        id: u64,
        deadline: Option<Instant>,
        stopped: impl Fn() -> Option<String>,
    ) -> Result<Option<Box<OwnedOutput>>, Failure> {
        let mut map = self.lock();
        loop {
            let Some(q) = map.get_mut(&id) else {
                return Err(Failure::new(
                    VllmStatus::NotFound,
                    format!(
                        "request {id} is unknown, streams to a callback, or has no outputs left"
                    ),
                ));
            };
            if let Some(o) = q.items.pop_front() {
                if q.done && q.items.is_empty() {
                    map.remove(&id);
                }
                return Ok(Some(o));
            }
            if let Some(why) = stopped() {
                return Err(Failure::new(VllmStatus::EngineStopped, why));
            }
            map = match deadline {
                None => self.ready.wait(map).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    let waited = self.ready.wait_timeout(map, d - now);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

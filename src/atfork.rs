//! Pieces of the `pthread_atfork` handlers that keep the library's locks
//! consistent across `fork()` (`lwkt::fork`, `slab::fork`): where the
//! forking thread keeps the guards it took in `prepare`, and registration
//! that never waits.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Lock guards held by the forking thread from `prepare` to `parent` /
/// `child`.
pub struct Held<T>(UnsafeCell<Option<T>>);

// SAFETY: filled only by the forking thread in `prepare`, while it holds
// the locks whose guards it stores, and emptied by the same thread (or
// its copy in the child), so accesses never overlap.
unsafe impl<T> Sync for Held<T> {}

impl<T> Held<T> {
    pub const fn new() -> Self {
        Held(UnsafeCell::new(None))
    }

    /// Keep `guards` (in `prepare`).
    ///
    /// # Safety
    /// Only from a `prepare` handler.
    pub unsafe fn keep(&self, guards: T) {
        // SAFETY: see the Sync impl.
        unsafe { *self.0.get() = Some(guards) };
    }

    /// Drop the guards kept by `prepare` (in `parent` and `child`).
    ///
    /// # Safety
    /// Only from a `parent` or `child` handler.
    pub unsafe fn release(&self) {
        // SAFETY: see the Sync impl.
        drop(unsafe { (*self.0.get()).take() });
    }
}

/// `pthread_atfork(prepare, parent, child)` the first time `done` is
/// found clear: a flag, not a `Once`, so nothing ever waits (a `Once`
/// another thread was running at a fork would block the child forever).
/// True for the call that registered them.
pub fn register_once(
    done: &AtomicBool,
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> bool {
    if done.swap(true, Ordering::AcqRel) {
        return false;
    }
    // SAFETY: plain functions that live as long as the process.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    true
}

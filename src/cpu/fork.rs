//! `fork()` and the thread package.
//!
//! * The locks a fork could copy in a held state (`caps_fork_vcpu`'s, and
//!   the wait queues' lock) are taken by the forking thread before the
//!   fork and released in both processes after, as `slab::fork` does for
//!   the allocator.
//! * A child forked by a kernel thread that is not a libcaps cpu has none
//!   of the parent's cpus (their kernel threads do not exist in it), and
//!   may have been forked while another thread was setting up cpu 0: it
//!   forgets them all, and its first LWKT call sets up cpu 0 afresh on
//!   its own kernel thread. A child forked by a cpu keeps that cpu and
//!   its threads, as before.
//!
//! The handlers are registered when the library is loaded (an
//! `.init_array` entry), never on first use, which another thread could
//! be in the middle of at a fork.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

/// The locks held from `prepare` to `parent`/`child`, in this order (no
/// code path holds both).
type Held = (MutexGuard<'static, ()>, MutexGuard<'static, ()>);

struct Slot(UnsafeCell<Option<Held>>);
// SAFETY: filled by the forking thread while it holds both locks and
// emptied by the same thread (or its copy in the child).
unsafe impl Sync for Slot {}

static HELD: Slot = Slot(UnsafeCell::new(None));

#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register;

/// Also called when cpu 0 is set up, for a static link that left the
/// `.init_array` entry out; a flag, not a `Once`, so nothing ever waits.
pub extern "C" fn register() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: plain functions that live as long as the process.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

extern "C" fn prepare() {
    let held = (super::fork_lock(), crate::lwkt::wait::waitq_lock());
    // SAFETY: this thread holds both locks; see Slot.
    unsafe { *HELD.0.get() = Some(held) };
}

extern "C" fn parent() {
    // SAFETY: the thread that ran `prepare`.
    drop(unsafe { (*HELD.0.get()).take() });
}

extern "C" fn child() {
    // SAFETY: the copy of the thread that ran `prepare`.
    drop(unsafe { (*HELD.0.get()).take() });
    if super::mycpu_if_any().is_null() {
        super::forget_cpus();
    }
}

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

use core::sync::atomic::AtomicBool;
use std::sync::MutexGuard;

use crate::atfork::{Held, register_once};

/// The locks held from `prepare` to `parent`/`child`, in this order (no
/// code path holds both).
static HELD: Held<(MutexGuard<'static, ()>, MutexGuard<'static, ()>)> = Held::new();

#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register;

/// Also called when cpu 0 is set up, for a static link that left the
/// `.init_array` entry out.
pub extern "C" fn register() {
    static DONE: AtomicBool = AtomicBool::new(false);
    register_once(&DONE, prepare, parent, child);
}

extern "C" fn prepare() {
    let held = (super::fork_lock(), crate::lwkt::wait::waitq_lock());
    // SAFETY: the prepare handler.
    unsafe { HELD.keep(held) };
}

extern "C" fn parent() {
    // SAFETY: the parent handler.
    unsafe { HELD.release() };
}

extern "C" fn child() {
    // SAFETY: the child handler.
    unsafe { HELD.release() };
    if super::mycpu_if_any().is_null() {
        super::forget_cpus();
    }
}

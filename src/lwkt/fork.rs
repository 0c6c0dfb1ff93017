//! `fork()` and the thread package: the `pthread_atfork` handlers.
//!
//! * The locks a fork could copy in a held state (`caps_fork_vcpu`'s and
//!   the wait queues' lock) are taken by the forking thread before the
//!   fork and released in both processes after, as `slab::fork` does for
//!   the allocator.
//! * The child keeps at most the forking cpu (`cpu::fork` says which and
//!   how); the count of user threads that decides when `main` is resumed
//!   becomes that cpu's own (none when it keeps no cpu).
//!
//! The handlers are registered when the library is loaded (an
//! `.init_array` entry), never on first use, which another thread could
//! be in the middle of at a fork.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::MutexGuard;

use super::thread::{USER_THREADS, count_user_threads};
use super::wait::waitq_lock;
use crate::atfork::{Held, register_once};
use crate::cpu;

/// The locks held from `prepare` to `parent`/`child`, in this order (no
/// code path holds two of them).
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
    let held = (cpu::fork_lock(), waitq_lock());
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
    let gd = cpu::mycpu_if_any();
    // SAFETY: the child handler, on the child's only thread.
    unsafe { cpu::fork::after_fork_child(gd) };
    let users = if gd.is_null() {
        0
    } else {
        // SAFETY: the child's cpu, whose lists nobody else changes.
        unsafe { count_user_threads(gd) }
    };
    USER_THREADS.store(users, Ordering::SeqCst);
}

//! `fork()` while another thread holds one of the allocator's locks (the
//! type registry, the pool of thread states, the table of mappings, the
//! reclaimer's, the zone arena's): the
//! child would inherit the lock held by a thread it does not have, and its
//! next allocation that needs the lock would wait forever. As glibc does
//! for `malloc`, the forking thread takes every lock before the fork and
//! releases it in both processes after. The one-time setup (`slab::init`,
//! the first allocation of the process) takes no lock and waits for
//! nobody, so a fork while another thread is inside it is harmless too.

use core::sync::atomic::AtomicBool;
use std::sync::MutexGuard;

use super::{account, calls, gd, oversized, reclaim, registry, tls, types};
use crate::atfork::{Held, register_once};

/// The locks the forking thread holds between `prepare` and
/// `parent`/`child`, in a fixed order. The arena's (`registry::Carve`)
/// is last: a zone is carved or given back while another of them may be
/// held (the reclaimer's, during a pass), but nothing is taken while it is
/// held; no code path holds two of the others at once. So the order cannot
/// deadlock.
type Locks = (
    MutexGuard<'static, types::Registry>,
    MutexGuard<'static, gd::Pool>,
    MutexGuard<'static, oversized::Table>,
    MutexGuard<'static, ()>,
    MutexGuard<'static, registry::Carve>,
);

static HELD: Held<Locks> = Held::new();

/// The handlers are registered when the library is loaded (an
/// `.init_array` entry, run before `main` and before any thread), not on
/// first use, which another thread could be in the middle of at a fork.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register;

/// Also called by `slab::init`, for a static link that left the
/// `.init_array` entry out; a flag, not a `Once`, so nothing ever waits.
pub extern "C" fn register() {
    static DONE: AtomicBool = AtomicBool::new(false);
    register_once(&DONE, prepare, release, child);
}

extern "C" fn prepare() {
    let held = (
        types::registry_lock(),
        gd::pool_lock(),
        oversized::table(),
        reclaim::reap_lock(),
        registry::carve_lock(),
    );
    // SAFETY: the prepare handler.
    unsafe { HELD.keep(held) };
}

extern "C" fn release() {
    // SAFETY: the parent handler (and, through `child`, the child's).
    unsafe { HELD.release() };
}

/// In the child: the locks as in the parent, and no reclaimer thread
/// (the next remote free starts one). Of the allocator's threads only the
/// forking one is there, so nothing may wait for another: the types whose
/// owner word names another thread (as home, maybe inside its update
/// window, or as the one switching it) are unowned again, a state left
/// inside its window is kept from the reclaimer, and the calls counted in
/// the other threads' slots are folded into `ks_calls` now (nobody else
/// would).
extern "C" fn child() {
    let me = tls::get();
    reclaim::after_fork_child(me);
    release();
    let reg = types::registry_lock();
    // SAFETY: a registered type, in the one thread of the child.
    reg.each(|ty| unsafe { account::after_fork_child(ty, me) });
    drop(reg);
    calls::fold_all_after_fork();
}

//! `fork()` and the virtual cpus: what a child keeps of them. The
//! `pthread_atfork` handlers are in `src/lwkt/fork.rs`, whose child
//! handler calls [`after_fork_child`] first.
//!
//! * The lock a fork could copy in a held state here (`caps_fork_vcpu`'s,
//!   [`super::fork_lock`]) is taken by the forking thread before the fork
//!   and released in both processes after. The forking cpu's IPI queue is
//!   not (a sender may hold other locks meanwhile): the child replaces it
//!   if it was in use.
//! * The child has only the forking kernel thread. A cpu is its kernel
//!   thread, so the child keeps at most one cpu:
//!   - forked by a kernel thread that is not a libcaps cpu (perhaps while
//!     another thread was setting up cpu 0), it forgets every cpu, and its
//!     first LWKT call sets up cpu 0 afresh on its own kernel thread;
//!   - forked by cpu `k` (usually cpu 0, `main`), it keeps that cpu, its
//!     threads and its pending IPIs, with a new epoll instance and wakeup
//!     eventfd of its own: the inherited ones are the parent's open files,
//!     where the parent could take the child's wakeups. The other cpus and
//!     the threads on them are gone: they are no longer counted (`ncpus`
//!     becomes `k + 1`, the deadlock check and `main`'s resumption count
//!     only this cpu's threads), listed, or accepted as a target, and
//!     `caps_fork_vcpu` in the child starts new ones from `k + 1`.
//!
//!   The child's copies of the other cpus' descriptors are closed; nothing
//!   is removed from an epoll instance (an `EPOLL_CTL_DEL` would act on
//!   the parent's).

use core::ptr;
use core::sync::atomic::Ordering;

use super::{
    ASLEEP, CPU0_TAKEN, LIVE, MP_WAITERS, cpu_priv, evloop, globaldata_find, live_cpus, mp_lock,
    ncpus,
};
use crate::abi::globaldata;

/// The cpus in a `fork()` child: forget those whose kernel thread is
/// not there and keep `gd`, the child's cpu (none when NULL: the next
/// LWKT call sets up cpu 0 afresh).
///
/// # Safety
/// The child handler, on the child's only thread; `gd` is
/// `mycpu_if_any()` there.
pub unsafe fn after_fork_child(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        for cpu in live_cpus() {
            let o = globaldata_find(cpu);
            if o != gd {
                forget_cpu(o);
            }
        }
        ASLEEP.store(0, Ordering::SeqCst);
        MP_WAITERS.store(0, Ordering::SeqCst);
        if gd.is_null() {
            forget_cpus();
        } else {
            keep_only(gd);
        }
    }
}

/// A cpu of the parent whose kernel thread is not in this child: close
/// the child's copies of its descriptors, silence wakeups sent to it and
/// take it off the list of cpus (`gd_self`, as the debugger reads it).
///
/// # Safety
/// The child's only thread; `gd` a cpu started in the parent.
unsafe fn forget_cpu(gd: *mut globaldata) {
    // SAFETY: per the contract, nothing else uses the cpu here.
    unsafe {
        if let Some(w) = (*cpu_priv(gd)).waker.take() {
            evloop::close_inherited(w);
        }
        (*gd).gd_self = ptr::null_mut();
    }
}

/// Forked by a kernel thread that is not a cpu: the thread package starts
/// over on the next LWKT call. The parent's structures are left as they
/// are (set up again when used).
fn forget_cpus() {
    // The IPIs the parent's cpus had sent each other are dropped with
    // their queues (a new cpu 0 gets a new one); the rings too.
    // SAFETY: the child's only thread; no cpu runs.
    drop(unsafe { super::ipiring::after_fork_child(None) });
    CPU0_TAKEN.store(false, Ordering::SeqCst);
    ncpus.store(1, Ordering::SeqCst);
    LIVE.store(0, Ordering::SeqCst);
    mp_lock.store(-1, Ordering::SeqCst);
    evloop::forget_all_sources();
}

/// Forked by cpu `gd`: it is the child's only cpu, with wakeup objects
/// of its own.
///
/// # Safety
/// The child's only thread, which runs cpu `gd`.
unsafe fn keep_only(gd: *mut globaldata) {
    // SAFETY: per the contract, the cpu's fields are ours alone.
    unsafe {
        let me = (*gd).gd_cpuid as i32;
        super::ipi::after_fork_child(gd);
        evloop::after_fork_child();
        let p = cpu_priv(gd);
        // Dropping the inherited waker closes the child's copy of its
        // eventfd (the old loop is gone).
        drop((*p).waker.take());
        let _ = (*p).waker.set(evloop::waker());
        (*p).sleeping.store(false, Ordering::SeqCst);
        (*gd).gd_other_cpus = 0;
        LIVE.store((*gd).gd_cpumask, Ordering::SeqCst);
        ncpus.store(me + 1, Ordering::SeqCst);
        if mp_lock.load(Ordering::SeqCst) != me {
            mp_lock.store(-1, Ordering::SeqCst);
        }
    }
}

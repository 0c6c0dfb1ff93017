//! Inter-processor interrupts between virtual cpus: a function and an
//! argument queued for another cpu, run by that cpu's kernel thread at its
//! next scheduling point (`lwkt_switch`, its idle loop, `splz`,
//! `lwkt_process_ipiq`, `crit_exit` through `lwkt_yield_quick`).
//!
//! Each cpu has one queue (a short mutex-protected vector: push and take
//! are a few instructions under the lock, and the consumer takes the whole
//! batch at once). The sender sets `RQF_IPIQ` in the target's
//! `gd_reqflags` after pushing and wakes the target if it sleeps; the
//! target clears the bit before taking the batch, so an entry pushed after
//! the take sets the bit again. Nothing is lost and nothing runs twice.
//! Entries from one cpu to another run in the order they were sent.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use super::{RQF_IPIQ, RQF_WAKE, cpu_priv, notify, reqflags};
use crate::abi::globaldata;

/// The function type of an IPI (`ipifunc_t`).
pub type IpiFn = unsafe extern "C" fn(*mut c_void);

/// One queued call.
pub struct Ipi {
    func: IpiFn,
    arg: *mut c_void,
}

// SAFETY: the argument is handed to the target cpu, which alone uses it;
// what it points to is the sender's business (as with DragonFly's IPIs).
unsafe impl Send for Ipi {}

/// Queue `func(arg)` for cpu `target` and wake it.
///
/// # Safety
/// `target` must be a started cpu other than the current one; `func` must
/// be safe to call with `arg` on that cpu.
pub unsafe fn send(target: *mut globaldata, func: IpiFn, arg: *mut c_void) {
    // SAFETY: per the contract; the queue is the shared part of the
    // target's private state.
    unsafe {
        let p = &*cpu_priv(target);
        crate::san::release(p);
        p.ipiq
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Ipi { func, arg });
        notify(target, RQF_IPIQ);
    }
}

/// Lock the IPI queue of `gd`.
///
/// # Safety
/// `gd` must be a started cpu.
unsafe fn lock_queue(gd: *mut globaldata) -> std::sync::MutexGuard<'static, Vec<Ipi>> {
    // SAFETY: the private state of a started cpu lives forever.
    let p: &'static super::CpuPriv = unsafe { &*cpu_priv(gd) };
    p.ipiq.lock().unwrap_or_else(|e| e.into_inner())
}

/// In a `fork()` child, for the forking cpu `gd`: a sender on a kernel
/// thread the child lacks may have held the queue's lock at the fork
/// (not taken across `fork()`: senders may hold other locks meanwhile).
/// The queue is then replaced by an empty one (that sender's entry may be
/// half added), with one log line.
///
/// # Safety
/// The child's only thread; `gd` its cpu.
pub unsafe fn after_fork_child(gd: *mut globaldata) {
    // SAFETY: per the contract, nothing else uses the queue.
    unsafe {
        let p = cpu_priv(gd);
        let held = matches!(
            (*p).ipiq.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        );
        if held {
            crate::warn!(
                "fork",
                "the IPI queue of cpu {} was in use by another kernel thread at fork(): its entries are dropped in the child",
                (*gd).gd_cpuid
            );
            core::ptr::write(&raw mut (*p).ipiq, std::sync::Mutex::new(Vec::new()));
        }
    }
}

/// How many calls queued for `gd` are to `func`.
///
/// # Safety
/// `gd` must be a started cpu.
pub unsafe fn count_queued(gd: *mut globaldata, func: IpiFn) -> usize {
    // SAFETY: per the contract.
    let q = unsafe { lock_queue(gd) };
    q.iter()
        .filter(|i| core::ptr::fn_addr_eq(i.func, func))
        .count()
}

/// Run every call queued for the current cpu `gd` (and clear its wake
/// request). Cheap when nothing is pending: one load.
///
/// # Safety
/// `gd` must be the current cpu.
#[inline(always)]
pub unsafe fn process(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        if reqflags(gd).load(Ordering::Relaxed) != 0 {
            process_slow(gd);
        }
    }
}

/// The part of [`process`] that runs when a request bit is set.
///
/// # Safety
/// As [`process`]: `gd` must be the current cpu.
#[inline(never)]
unsafe fn process_slow(gd: *mut globaldata) {
    // SAFETY: per the contract of `process`; `ipi_work` is owned by this
    // cpu, and a nested call (an IPI function that switches) finds it
    // empty because the batch is moved out before it runs.
    unsafe {
        reqflags(gd).fetch_and(!(RQF_IPIQ | RQF_WAKE), Ordering::SeqCst);
        let p = cpu_priv(gd);
        loop {
            let mut work = core::mem::take(&mut (*p).ipi_work);
            {
                let mut q = (*p).ipiq.lock().unwrap_or_else(|e| e.into_inner());
                if q.is_empty() {
                    drop(q);
                    (*p).ipi_work = work;
                    return;
                }
                core::mem::swap(&mut *q, &mut work);
            }
            crate::san::acquire(p);
            for ipi in work.drain(..) {
                (ipi.func)(ipi.arg);
            }
            if (*p).ipi_work.capacity() < work.capacity() {
                (*p).ipi_work = work;
            }
        }
    }
}

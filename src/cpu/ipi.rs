//! Inter-processor interrupts between virtual cpus: a function and an
//! argument queued for another cpu, run by that cpu's kernel thread at its
//! next scheduling point (`lwkt_switch`, its idle loop, `splz`,
//! `lwkt_process_ipiq`, `crit_exit` through `lwkt_yield_quick`).
//!
//! A cpu sends through its ring to the target (`ipiring`: one
//! single-producer ring per pair of cpus, no lock). The target's shared
//! queue (a short mutex-protected vector, whose consumer takes the whole
//! batch at once) takes what a ring cannot: IPIs sent by a kernel thread
//! that is not a cpu, and those of a pair whose ring is full. The sender
//! sets `RQF_IPIQ` in the target's `gd_reqflags` after queueing and wakes
//! the target if it sleeps, unless the target spins idle on its rings;
//! the target clears the bit before looking at its rings and queue, so an
//! entry queued after the look sets it again. Nothing is lost and nothing
//! runs twice. Entries from one cpu to another run in the order they were
//! sent.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use super::ipiring::{self, Pushed};
use super::{RQF_IPIQ, RQF_WAKE, cpu_priv, mycpu_if_any, notify, reqflags};
use crate::abi::globaldata;

/// The function type of an IPI (`ipifunc_t`).
pub type IpiFn = unsafe extern "C" fn(*mut c_void);

/// One call in a cpu's shared queue.
pub struct Ipi {
    func: IpiFn,
    arg: *mut c_void,
    /// The sending cpu when its ring was full ([`NO_RING`] otherwise).
    src: usize,
}

/// [`Ipi::src`] of an entry that did not come from a full ring.
const NO_RING: usize = usize::MAX;

// SAFETY: the argument is handed to the target cpu, which alone uses it;
// what it points to is the sender's business (as with DragonFly's IPIs).
unsafe impl Send for Ipi {}

/// Queue `func(arg)` for cpu `target` and wake it.
///
/// # Safety
/// `target` must be a started cpu other than the current one; `func` must
/// be safe to call with `arg` on that cpu.
#[inline]
pub unsafe fn send(target: *mut globaldata, func: IpiFn, arg: *mut c_void) {
    let mut src = NO_RING;
    if let (Some(t), Some(s)) = (
        ipiring::cpu_index(target),
        ipiring::cpu_index(mycpu_if_any()),
    ) {
        // SAFETY: `s` is the calling kernel thread's cpu, `t` another.
        match unsafe { ipiring::push(t, s, func, arg) } {
            Pushed::Seen => return,
            Pushed::Notify => {
                // SAFETY: per the contract.
                unsafe { notify(target, RQF_IPIQ) };
                return;
            }
            Pushed::Full => src = s,
        }
    }
    // SAFETY: per the contract.
    unsafe { send_queue(target, Ipi { func, arg, src }) }
}

/// Queue `ipi` on the shared queue of cpu `target` and wake it.
///
/// # Safety
/// As [`send`].
#[cold]
unsafe fn send_queue(target: *mut globaldata, ipi: Ipi) {
    // SAFETY: per the contract; the queue is the shared part of the
    // target's private state.
    unsafe {
        let p = &*cpu_priv(target);
        crate::san::release(p);
        {
            let mut q = p.ipiq.lock().unwrap_or_else(|e| e.into_inner());
            if ipi.src != NO_RING
                && let Some(t) = ipiring::cpu_index(target)
            {
                ipiring::spill(t, ipi.src);
            }
            q.push(ipi);
            p.ipiq_used.store(true, Ordering::Release);
        }
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
    // SAFETY: per the contract, nothing else uses the queue or the rings.
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
        // The rings' entries go ahead of the queue's (a pair's entries
        // are in its ring before they are in the queue), and the rings
        // are emptied: the counts of spilled entries go with them.
        let mut q = (*p).ipiq.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Ipi> = ipiring::after_fork_child(ipiring::cpu_index(gd))
            .into_iter()
            .map(|(func, arg)| Ipi {
                func,
                arg,
                src: NO_RING,
            })
            .collect();
        all.extend(q.drain(..).map(|i| Ipi { src: NO_RING, ..i }));
        (*p).ipiq_used.store(!all.is_empty(), Ordering::Relaxed);
        if !all.is_empty() {
            reqflags(gd).fetch_or(RQF_IPIQ, Ordering::SeqCst);
        }
        *q = all;
    }
}

/// How many calls queued for `gd` are to `func`.
///
/// # Safety
/// `gd` must be a started cpu.
pub unsafe fn count_queued(gd: *mut globaldata, func: IpiFn) -> usize {
    // SAFETY: per the contract.
    let q = unsafe { lock_queue(gd) };
    let queued = q
        .iter()
        .filter(|i| core::ptr::fn_addr_eq(i.func, func))
        .count();
    // SAFETY: per the contract.
    let ringed = ipiring::cpu_index(gd).map_or(0, |t| unsafe { ipiring::count_queued(t, func) });
    queued + ringed
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

/// [`process`] for the idle loop, which also looks at the rings: after
/// its idle spin a sender may have queued without setting a request bit.
///
/// # Safety
/// As [`process`].
#[inline(always)]
pub unsafe fn process_idle(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        if reqflags(gd).load(Ordering::Relaxed) != 0
            || ipiring::cpu_index(gd).is_some_and(ipiring::pending)
        {
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
    // empty because the batch is moved out before it runs; ring entries
    // are taken before they run.
    unsafe {
        let p = cpu_priv(gd);
        let me = ipiring::cpu_index(gd);
        loop {
            // Cleared before the looks below, so that an entry queued
            // after them sets it again; not written when already clear
            // (the idle spin's entries come without a bit): a locked
            // instruction less on the way to the woken thread.
            if reqflags(gd).load(Ordering::Relaxed) & (RQF_IPIQ | RQF_WAKE) != 0 {
                reqflags(gd).fetch_and(!(RQF_IPIQ | RQF_WAKE), Ordering::SeqCst);
            }
            // A pair's ring entries are older than its entries in the
            // queue: the rings first.
            if let Some(t) = me {
                ipiring::drain(t);
            }
            if (*p).ipiq_used.load(Ordering::Acquire) {
                let mut work = core::mem::take(&mut (*p).ipi_work);
                // Entries a spilled pair put in its ring after the drain
                // above and before its ring filled: older than its
                // entries in the batch, so they run first.
                let mut older = Vec::new();
                {
                    let mut q = (*p).ipiq.lock().unwrap_or_else(|e| e.into_inner());
                    core::mem::swap(&mut *q, &mut work);
                    (*p).ipiq_used.store(false, Ordering::Relaxed);
                    if let Some(t) = me {
                        let mut spilled = 0u32;
                        for ipi in work.iter().filter(|i| i.src != NO_RING) {
                            spilled |= 1 << ipi.src;
                        }
                        // Taken before the unspills below let the
                        // senders use their rings again.
                        while spilled != 0 {
                            let s = spilled.trailing_zeros() as usize;
                            spilled &= spilled - 1;
                            ipiring::take_older(t, s, &mut older);
                        }
                        for ipi in work.iter().filter(|i| i.src != NO_RING) {
                            ipiring::unspill(t, ipi.src);
                        }
                    }
                }
                crate::san::acquire(p);
                for (f, a) in older {
                    f(a);
                }
                for ipi in work.drain(..) {
                    (ipi.func)(ipi.arg);
                }
                if (*p).ipi_work.capacity() < work.capacity() {
                    (*p).ipi_work = work;
                }
            }
            // An entry queued after the looks above set RQF_IPIQ again
            // (after queueing), or the cpu spins idle no more: nothing
            // missed. No second look for nothing.
            if reqflags(gd).load(Ordering::Relaxed) & RQF_IPIQ == 0 {
                return;
            }
        }
    }
}

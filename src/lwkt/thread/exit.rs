//! The end of a thread: `lwkt_exit`, the exit a thread's function
//! returns into (whose common case makes no call), the cache of exited
//! threads they fill, and the cpu's thread list and counts they leave.

use core::ptr;
use core::sync::atomic::Ordering;

use super::super::sched::{dequeue_inline, exit_switch, exit_to, pick_next};
use super::super::tdqueue::{self, Link};
use super::{MAIN_CPU, TDF_EXITED, TDF_FREEQ, idle_thread, mycpu, refs, user_threads_add};
use crate::abi::{
    TDF_ALLOCATED_THREAD, TDF_SYSTHREAD, TDF_VERBOSE, TDPRI_CRIT, globaldata, thread,
};
use crate::cpu::{self, cpu_priv};
use crate::fatal;

/// Put the exited thread `td` at the head of `gd`'s cache (see
/// [`THREAD_CACHE_MAX`](super::THREAD_CACHE_MAX)).
///
/// # Safety
/// `td` is an exited, unheld thread of ours of `gd`, on no `td_threadq`
/// list, and `gd`'s lists are the caller's (the current cpu).
#[inline(always)]
pub(super) unsafe fn cache(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        tdqueue::insert_head(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
        (*gd).gd_tdfreecount += 1;
        (*td).td_flags |= TDF_FREEQ;
    }
}

/// Take a live thread off the cpu's thread list and counters.
///
/// # Safety
/// `td` is a live (not exited) thread of `gd`.
#[inline(always)]
pub(super) unsafe fn forget(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if unlist(gd, td) {
            wake_main(gd);
        }
    }
}

/// `lwkt_exit()`: end the current thread. Its structure and stack go to the
/// cpu's cache (or are released later) and the cpu switches away for good.
pub fn exit_current() -> ! {
    let gd = mycpu();
    // SAFETY: the current cpu and thread.
    unsafe {
        let td = (*gd).gd_curthread;
        if td == idle_thread(gd) {
            fatal!(
                "lwkt_exit",
                "the idle thread of cpu {} cannot exit",
                (*gd).gd_cpuid
            );
        }
        let private = cpu_priv(gd);
        if td == (*private).main_td {
            (*private).main_exited = true;
        }
    }
    exit_inline::<true>(gd)
}

/// [`exit_current`] on the current cpu `gd`, inlined where a thread's
/// function returns, without the checks for the idle thread and `main`
/// (neither is a thread whose function returns: the idle thread's never
/// does and `main` has none); `SAN` false when no sanitizer is there
/// (the switch away does not look).
///
/// The common exit (quiet, a structure of ours that goes to the cache,
/// nobody to wake on another cpu, a next thread whose MP-lock need is
/// met) makes no call; the others leave through [`exit_full`] (before
/// anything is changed), [`exit_waking`] or the out-of-line pick of
/// [`exit_switch`], none of which returns.
#[inline(always)]
pub(super) fn exit_inline<const SAN: bool>(gd: *mut globaldata) -> ! {
    // SAFETY: current cpu and thread; the thread never runs again, so its
    // stack is only reused after the switch below has left it.
    unsafe {
        let td = (*gd).gd_curthread;
        if (*td).td_flags & (TDF_VERBOSE | TDF_ALLOCATED_THREAD) != TDF_ALLOCATED_THREAD
            || refs(td).load(Ordering::Acquire) != 0
        {
            exit_full::<SAN>(gd, td)
        }
        dequeue_inline(gd, td);
        let wake = unlist(gd, td);
        retire(td);
        cache(gd, td);
        if wake {
            exit_waking::<SAN>(gd, td)
        }
        exit_switch::<SAN>(gd, td)
    }
}

/// The exit of a thread that says so (`TDF_VERBOSE`), is still held
/// (`lwkt_rele` caches it) or is not ours to cache (its stack goes to
/// the idle thread): [`exit_inline`] in full, out of line.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread, which exits.
#[cold]
#[inline(never)]
unsafe fn exit_full<const SAN: bool>(gd: *mut globaldata, td: *mut thread) -> ! {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_flags & TDF_VERBOSE != 0 {
            libc::printf(
                c"kthread %p %s has exited\n".as_ptr(),
                td,
                (*td).td_comm.as_ptr(),
            );
        }
        dequeue_inline(gd, td);
        let wake = unlist(gd, td);
        retire(td);
        let flags = (*td).td_flags;
        if flags & TDF_ALLOCATED_THREAD != 0 && refs(td).load(Ordering::Acquire) == 0 {
            cache(gd, td);
        } else if !(*td).td_mach.mtd_map.is_null() {
            // Not cached: the idle thread unmaps the stack once we are off it.
            (*cpu_priv(gd))
                .zombie_stacks
                .push(ptr::read(&raw const (*td).td_mach));
            (*td).td_mach.mtd_map = ptr::null_mut();
        }
        if wake {
            wake_main(gd);
        }
        exit_to::<SAN>(gd, td, pick_next(gd))
    }
}

/// The end of [`exit_inline`] when the last user thread has exited on
/// another cpu than `main`'s: wake that cpu, then leave.
///
/// # Safety
/// As [`exit_full`], with `td` already off every list of `gd` but the
/// cache.
#[cold]
#[inline(never)]
unsafe fn exit_waking<const SAN: bool>(gd: *mut globaldata, td: *mut thread) -> ! {
    wake_main(gd);
    // SAFETY: per the contract.
    unsafe { exit_switch::<SAN>(gd, td) }
}

/// Take the exiting thread `td` off `gd`'s thread list and counters:
/// true when it was the last user thread and `main`'s cpu is another
/// one, which may be asleep ([`wake_main`]).
///
/// # Safety
/// `td` is the current thread of `gd`, the current cpu.
#[inline(always)]
unsafe fn unlist(gd: *mut globaldata, td: *mut thread) -> bool {
    // SAFETY: per the contract.
    unsafe {
        tdqueue::remove(&raw mut (*gd).gd_tdallq, td, Link::Allq);
        (*gd).gd_num_threads -= 1;
        if (*td).td_flags & TDF_SYSTHREAD != 0 {
            (*gd).gd_sys_threads -= 1;
            false
        } else {
            user_threads_add(-1) == 1 && cpu::globaldata_find(MAIN_CPU) != gd
        }
    }
}

/// Mark the exiting thread `td` exited: no MP-lock hold, `TDF_EXITED`,
/// and the critical section it leaves in.
///
/// # Safety
/// `td` is the current thread.
#[inline(always)]
unsafe fn retire(td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        (*td).td_mpcount = 0;
        (*td).td_flags |= TDF_EXITED;
        (*td).td_pri += TDPRI_CRIT;
    }
}

/// The last user thread has exited on `gd`, which is not `main`'s cpu:
/// that cpu may be asleep.
fn wake_main(gd: *mut globaldata) {
    let mgd = cpu::globaldata_find(MAIN_CPU);
    debug_assert!(mgd != gd);
    // SAFETY: cpu 0, where main runs, is started before any other.
    unsafe { cpu::notify(mgd, cpu::RQF_WAKE) }
}

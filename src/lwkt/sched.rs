//! The LWKT scheduler of one cpu: 32 fixed-priority run queues with a
//! bitmap, round robin within a priority, cooperative switching, critical
//! sections counted in `td_pri`, and the MP lock taken or dropped as the
//! chosen thread needs it (`cpu` owns the lock word).
//!
//! Everything here runs on the cpu's own kernel thread. Scheduling or
//! descheduling a thread of another cpu is forwarded to that cpu as an
//! IPI.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::arch;
use super::boot::mycpu;
use super::san::{self, Leave};
use super::tdqueue::{self, Link};
use super::thread::{TDF_EXITED, idle_thread, local_cpu, name};
use crate::abi::{
    TDF_RUNNING, TDF_RUNQ, TDPRI_CRIT, TDPRI_MASK, TDPRI_MAX, globaldata, thread, thread_queue,
};
use crate::cpu::{self, cpu_priv, ipi};
use crate::fatal;

/// Put `td` on its priority's run queue (no-op if already there).
///
/// # Safety
/// `td` must be a thread of `gd`, on no other `td_threadq` list.
#[inline]
pub(super) unsafe fn enqueue(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_flags & TDF_RUNQ == 0 {
            let pri = ((*td).td_pri & TDPRI_MASK) as usize;
            tdqueue::insert_tail(&raw mut (*gd).gd_tdrunq[pri], td, Link::Threadq);
            (*gd).gd_runqmask |= 1 << pri;
            (*td).td_flags |= TDF_RUNQ;
        }
    }
}

/// Take `td` off its run queue (no-op if not there).
///
/// # Safety
/// `td` must be a thread of `gd`.
#[inline]
pub(super) unsafe fn dequeue(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe { dequeue_inline(gd, td) }
}

/// [`dequeue`] inlined, for a path that would otherwise pay a call for
/// it (a thread's exit).
///
/// # Safety
/// As [`dequeue`].
#[inline(always)]
pub(super) unsafe fn dequeue_inline(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract; TDF_RUNQ says which list td is on.
    unsafe {
        if (*td).td_flags & TDF_RUNQ != 0 {
            let pri = ((*td).td_pri & TDPRI_MASK) as usize;
            let q = &raw mut (*gd).gd_tdrunq[pri];
            tdqueue::remove(q, td, Link::Threadq);
            if tdqueue::first(q).is_null() {
                (*gd).gd_runqmask &= !(1 << pri);
            }
            (*td).td_flags &= !TDF_RUNQ;
        }
    }
}

/// Put `td` at the tail of its run queue (queueing it if it is on
/// none): what a dequeue + enqueue does, with one splice when `td` heads
/// its queue (a yield of the thread that was picked last).
///
/// # Safety
/// As [`enqueue`].
#[inline(always)]
unsafe fn to_tail(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract; TDF_RUNQ says td is on its queue.
    unsafe {
        if (*td).td_flags & TDF_RUNQ != 0 {
            let q = &raw mut (*gd).gd_tdrunq[((*td).td_pri & TDPRI_MASK) as usize];
            if tdqueue::first(q) == td {
                tdqueue::rotate_first(q, td);
                return;
            }
        }
        dequeue(gd, td);
        enqueue(gd, td);
    }
}

/// Pick the next thread to run: the head of the highest non-empty run
/// queue, rotated to the tail of its queue; the idle thread when nothing
/// is runnable. Takes or drops the MP lock as the chosen thread needs.
///
/// # Safety
/// `gd`'s lists and run queues are accessed only by the caller: `gd` is
/// the current cpu.
#[inline(always)]
pub(super) unsafe fn pick_next(gd: *mut globaldata) -> *mut thread {
    // SAFETY: per the contract.
    unsafe { pick_next_on(gd, cpu::MPLOCK) }
}

/// [`pick_next`] with the MP lock `mp`: the process's, or a unit test's
/// own for its private cpus.
///
/// # Safety
/// `gd`'s lists and run queues are accessed only by the caller: `gd` is
/// the current cpu, or a private cpu of `mp` that is never published (a
/// unit test's).
#[inline(always)]
unsafe fn pick_next_on(gd: *mut globaldata, mp: cpu::MpLock<'_>) -> *mut thread {
    // SAFETY: per the contract.
    unsafe {
        let mask = (*gd).gd_runqmask;
        if mask == 0 {
            mp.release(gd);
            return idle_thread(gd);
        }
        let pri = 31 - mask.leading_zeros() as usize;
        let q = &raw mut (*gd).gd_tdrunq[pri];
        let ntd = tdqueue::first(q);
        if (*ntd).td_mpcount > 0 {
            if !mp.acquire(gd) {
                // Another cpu holds the MP lock: look for a thread that
                // does not need it.
                return pick_without_mplock(gd, ntd, mp);
            }
        } else {
            mp.release(gd);
        }
        tdqueue::rotate_first(q, ntd);
        ntd
    }
}

/// The highest-priority runnable thread that does not need the MP lock
/// (rotated to the tail of its queue), or the idle thread; `waiting`, the
/// first in line, needs the lock and waits for it (traced): `gd` says so
/// to `mp`'s holder, whose next yield hands the lock over, as it does for
/// an idle cpu (a cpu that always had another thread to run never said
/// it waited, and its thread never got the lock).
///
/// # Safety
/// As for [`pick_next_on`]; `gd` does not hold the MP lock.
#[cold]
unsafe fn pick_without_mplock(
    gd: *mut globaldata,
    waiting: *mut thread,
    mp: cpu::MpLock<'_>,
) -> *mut thread {
    // SAFETY: run queues of the current cpu.
    unsafe {
        if crate::diag::debug_on() {
            super::mplock::trace_mplock_wait("lwkt_switch", gd, waiting);
        }
        mp.wait_note(gd);
        let mut mask = (*gd).gd_runqmask;
        while mask != 0 {
            let pri = 31 - mask.leading_zeros() as usize;
            mask &= !(1 << pri);
            let q = &raw mut (*gd).gd_tdrunq[pri];
            let mut td = tdqueue::first(q);
            while !td.is_null() {
                if (*td).td_mpcount == 0 {
                    tdqueue::remove(q, td, Link::Threadq);
                    tdqueue::insert_tail(q, td, Link::Threadq);
                    return td;
                }
                td = tdqueue::next(td, Link::Threadq);
            }
        }
        idle_thread(gd)
    }
}

/// Switch from `td` (current) to `ntd`; `leave` says whether `td` will
/// be resumed.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread, `ntd` a runnable
/// thread of `gd` that is not running.
#[inline(always)]
pub(super) unsafe fn switch_to(
    gd: *mut globaldata,
    td: *mut thread,
    ntd: *mut thread,
    leave: Leave,
) {
    // SAFETY: per the contract.
    unsafe {
        (*td).td_flags &= !TDF_RUNNING;
        (*ntd).td_flags |= TDF_RUNNING;
        switch_flagged(gd, td, ntd, leave);
    }
}

/// [`switch_to`] once `TDF_RUNNING` has moved from `td` to `ntd`.
///
/// # Safety
/// As [`switch_to`].
#[inline(always)]
unsafe fn switch_flagged(gd: *mut globaldata, td: *mut thread, ntd: *mut thread, leave: Leave) {
    // SAFETY: per the contract.
    unsafe { switch_flagged_as::<true>(gd, td, ntd, leave) }
}

/// [`switch_flagged`]; without `SAN`, for a caller that knows no
/// sanitizer is there ([`SWITCH_BODY`]), without looking.
///
/// # Safety
/// As [`switch_to`]; without `SAN`, `san::active()` is false.
#[inline(always)]
unsafe fn switch_flagged_as<const SAN: bool>(
    gd: *mut globaldata,
    td: *mut thread,
    ntd: *mut thread,
    leave: Leave,
) {
    // SAFETY: per the contract; ntd's td_sp was saved by a switch or
    // prepared by set_handler.
    unsafe {
        debug_assert!(
            arch::last_switched_ok(td, ntd),
            "the record of the last switched-out thread is stale"
        );
        (*gd).gd_curthread = ntd;
        // errno belongs to the thread: nothing between here and the
        // return into `ntd` touches it. Saved and loaded without
        // comparing the two (one load of errno's offset, no branch).
        arch::errno_swap(&raw mut (*td).td_mach.mtd_errno, (*ntd).td_mach.mtd_errno);
        if SAN && san::active() {
            // A program built with a sanitizer (src/lwkt/san.rs).
            san::switch(td, ntd, leave);
        } else {
            arch::switch_threads(td, ntd);
        }
    }
}

/// [`switch_to`] from `td`, which has exited and is never resumed:
/// nothing of it is saved. Without `SAN` the caller knows that no
/// sanitizer is there (`san::active()` false), and nothing looks.
///
/// # Safety
/// As [`switch_to`]; `td` has exited; without `SAN`, `san::active()`
/// is false.
#[inline(always)]
pub(super) unsafe fn exit_to<const SAN: bool>(
    gd: *mut globaldata,
    td: *mut thread,
    ntd: *mut thread,
) -> ! {
    // SAFETY: per the contract.
    unsafe {
        if SAN && san::active() {
            switch_to(gd, td, ntd, Leave::Exit);
            crate::fatal!("lwkt_exit", "an exited thread was resumed");
        }
        (*td).td_flags &= !TDF_RUNNING;
        (*ntd).td_flags |= TDF_RUNNING;
        (*gd).gd_curthread = ntd;
        // errno: the new thread's (the exited one's is dropped).
        arch::errno_set((*ntd).td_mach.mtd_errno);
        arch::jump_thread(ntd)
    }
}

/// Leave the current thread `td`, which has exited, for the thread
/// [`pick_next`] chooses. The common case, a runnable thread whose
/// MP-lock need the cpu already meets, is taken without a call (so that
/// an exit path need keep nothing in callee-saved registers); anything
/// else picks out of line.
///
/// # Safety
/// As [`exit_to`] for `gd` and `td`, which is on no run queue.
#[inline(always)]
pub(super) unsafe fn exit_switch<const SAN: bool>(gd: *mut globaldata, td: *mut thread) -> ! {
    // SAFETY: per the contract; the queue head is a runnable thread of
    // `gd`.
    unsafe {
        let ntd = head_if_met(gd);
        if ntd.is_null() {
            exit_picked::<SAN>(gd, td)
        }
        exit_to::<SAN>(gd, td, ntd)
    }
}

/// [`exit_switch`] through [`pick_next`] (the MP lock to take or drop,
/// or nothing runnable).
///
/// # Safety
/// As [`exit_switch`].
#[cold]
#[inline(never)]
unsafe fn exit_picked<const SAN: bool>(gd: *mut globaldata, td: *mut thread) -> ! {
    // SAFETY: per the contract.
    unsafe { exit_to::<SAN>(gd, td, pick_next(gd)) }
}

/// Refuse to switch or block inside a critical section (except for the
/// idle thread, which lives in one).
///
/// # Safety
/// `td` is the current thread of `gd`.
#[inline(always)]
pub(super) unsafe fn check_not_critical(func: &str, gd: *mut globaldata, td: *mut thread) {
    // SAFETY: valid current thread.
    unsafe {
        if (*td).td_pri >= TDPRI_CRIT && td != idle_thread(gd) {
            critical_switch(func, td);
        }
    }
}

/// The fatal error of [`check_not_critical`], out of the switch's way.
///
/// # Safety
/// `td` is a valid thread.
#[cold]
#[inline(never)]
unsafe fn critical_switch(func: &str, td: *mut thread) -> ! {
    // SAFETY: per the contract.
    unsafe {
        fatal!(
            func,
            "called inside a critical section by thread {td:p} \"{}\" (td_pri {}, {} level(s))",
            name(td),
            (*td).td_pri,
            (*td).td_pri / TDPRI_CRIT
        );
    }
}

/// The body of `lwkt_switch` without the critical-section check.
///
/// # Safety
/// `gd` is the current cpu and `td` its current thread.
#[inline(always)]
pub(super) unsafe fn do_switch(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe { do_switch_as::<true>(gd, td) }
}

/// [`do_switch`]; without `SAN` as [`switch_flagged_as`].
///
/// # Safety
/// As [`do_switch`]; without `SAN`, `san::active()` is false.
#[inline(always)]
unsafe fn do_switch_as<const SAN: bool>(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(release) = (*td).td_release {
            release(td);
        }
        ipi::process(gd);
        let ntd = pick_next(gd);
        if ntd != td {
            (*td).td_flags &= !TDF_RUNNING;
            (*ntd).td_flags |= TDF_RUNNING;
            switch_flagged_as::<SAN>(gd, td, ntd, Leave::Suspend);
        }
    }
}

/// `lwkt_switch()`: run the next runnable thread (possibly the caller, if
/// it is still on a run queue and nothing of higher priority is).
///
/// The common case (no critical section, release function or IPI, a
/// runnable thread whose MP-lock needs the cpu already meets) is done
/// here without a call, so that nothing is live across one and the
/// function needs no registers saved beyond what the switch saves;
/// anything else goes to [`switch_slow`] before a thing is changed.
#[inline(always)]
pub fn switch(func: &str) {
    switch_as::<true>(func)
}

/// Whether switching to `ntd` leaves the MP lock as it is, as
/// `pick_next` would: `ntd` needs it and the cpu `gd` (the current one)
/// has it, or needs it not and the cpu has it not. (Acquire, as
/// `MpLock::acquire` reads it: a plain load on x86_64. Two branches
/// rather than a compare of two flags: one test fewer either way.)
///
/// # Safety
/// `gd` is the current cpu, `ntd` a valid thread.
#[inline(always)]
unsafe fn mp_need_met(gd: *mut globaldata, ntd: *mut thread) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if cpu::MPLOCK.owner.load(Ordering::Acquire) == (*gd).gd_cpuid as c_int {
            (*ntd).td_mpcount > 0
        } else {
            (*ntd).td_mpcount <= 0
        }
    }
}

/// The body `lwkt_switch` runs (through the gate of `lwkt::arch`, whose
/// stub loads it from here): [`switch_body`] until [`san::init`] finds
/// no sanitizer runtime (before the first switch) and installs
/// [`switch_body_nosan`], which then does not look for one at every
/// switch. A switch that leaves the fast path looks as always.
pub static SWITCH_BODY: AtomicPtr<()> = AtomicPtr::new(switch_body as *mut ());

/// The same for `lwkt_yield`: [`yield_body`] or [`yield_body_nosan`].
pub static YIELD_BODY: AtomicPtr<()> = AtomicPtr::new(yield_body as *mut ());

/// `lwkt_switch`'s body: [`switch`].
pub extern "C" fn switch_body() {
    switch("lwkt_switch")
}

/// `lwkt_switch`'s body in a program without a sanitizer runtime.
extern "C" fn switch_body_nosan() {
    switch_as::<false>("lwkt_switch")
}

/// `lwkt_yield`'s body: [`yield_self`].
pub extern "C" fn yield_body() {
    yield_self()
}

/// `lwkt_yield`'s body in a program without a sanitizer runtime.
extern "C" fn yield_body_nosan() {
    yield_as::<false>()
}

/// Install the bodies of `lwkt_switch` and `lwkt_yield` that do not look
/// for a sanitizer when `active` (whether one wants stack switches
/// announced) is false; called once by [`san::init`], before the first
/// switch.
pub(super) fn choose_bodies(active: bool) {
    let (switch, yield_): (extern "C" fn(), extern "C" fn()) = if active {
        (switch_body, yield_body)
    } else {
        (switch_body_nosan, yield_body_nosan)
    };
    SWITCH_BODY.store(switch as *mut (), Ordering::Relaxed);
    YIELD_BODY.store(yield_ as *mut (), Ordering::Relaxed);
}

/// [`switch`]; without `SAN` for a program known to have no sanitizer
/// runtime ([`SWITCH_BODY`]).
#[inline(always)]
fn switch_as<const SAN: bool>(func: &str) {
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu, its current thread valid; the
    // queue head is a runnable thread of `gd`.
    unsafe {
        let td = (*gd).gd_curthread;
        if (*td).td_pri >= TDPRI_CRIT
            || (*td).td_release.is_some()
            || cpu::reqflags(gd).load(Ordering::Relaxed) != 0
        {
            return switch_slow(func, gd, td);
        }
        let mask = (*gd).gd_runqmask;
        if mask == 0 {
            return switch_slow(func, gd, td);
        }
        let pri = 31 - mask.leading_zeros() as usize;
        let q = &raw mut (*gd).gd_tdrunq[pri];
        let ntd = tdqueue::first(q);
        if !mp_need_met(gd, ntd) {
            return switch_slow(func, gd, td);
        }
        tdqueue::rotate_first(q, ntd);
        if ntd != td {
            (*td).td_flags &= !TDF_RUNNING;
            (*ntd).td_flags |= TDF_RUNNING;
            switch_flagged_as::<SAN>(gd, td, ntd, Leave::Suspend);
        }
    }
}

/// [`switch`] in full: the critical-section check, the release function,
/// IPIs and the MP lock.
///
/// # Safety
/// `gd` is the current cpu and `td` its current thread.
#[cold]
#[inline(never)]
unsafe fn switch_slow(func: &str, gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical(func, gd, td);
        do_switch(gd, td);
    }
}

/// The run queue through which the current thread `td`, about to
/// block, can hand the cpu straight to `ntd`, a blocked thread of the
/// same cpu it is about to wake: `Some` only when scheduling `ntd`,
/// descheduling `td` and `lwkt_switch` would run `ntd` next and leave the
/// run queues as [`block_direct`] does. That is when `td` may switch (no
/// critical section, release function or pending IPI), `td` is alone on
/// its run queue and that queue is the highest non-empty one, `ntd` has
/// the same priority (so no runnable thread of higher priority is passed
/// over, and none of the same priority waits in line), is on no queue,
/// alive and waits on no wait queue, and its MP-lock need is what the cpu
/// already meets. Nothing is changed. (`ntd` is not the idle thread: that
/// one never leaves its critical section, and `ntd`'s priority is
/// `td`'s, outside one.)
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread, `ntd` a valid
/// thread.
#[inline(always)]
pub(super) unsafe fn direct_queue(
    gd: *mut globaldata,
    td: *mut thread,
    ntd: *mut thread,
) -> Option<*mut thread_queue> {
    // SAFETY: per the contract.
    unsafe {
        let pri = (*td).td_pri;
        if pri >= TDPRI_CRIT
            || (*td).td_release.is_some()
            || cpu::reqflags(gd).load(Ordering::Relaxed) != 0
            || (*ntd).td_pri != pri
            || (*ntd).td_flags & (TDF_RUNQ | TDF_EXITED) != 0
            || !(*ntd).td_wait.is_null()
            || (*ntd).td_gd != gd
        {
            return None;
        }
        debug_assert!(ntd != idle_thread(gd));
        // `td` heads the highest non-empty queue (so it is on it) and is
        // alone there.
        let p = (pri & TDPRI_MASK) as usize;
        let q = &raw mut (*gd).gd_tdrunq[p];
        if (*gd).gd_runqmask >> p != 1
            || tdqueue::first(q) != td
            || !tdqueue::next(td, Link::Threadq).is_null()
        {
            return None;
        }
        if !mp_need_met(gd, ntd) {
            return None;
        }
        Some(q)
    }
}

/// Block the current thread `td` with wait message `wmesg` and switch to
/// `ntd`, woken for it, through `q` from [`direct_queue`]: `ntd` takes
/// `td`'s place on `q` (the run-queue mask stays), as scheduling `ntd`,
/// descheduling `td` and picking the next thread would leave it.
///
/// # Safety
/// `q` came from `direct_queue(gd, td, ntd)` and nothing changed since.
#[inline(always)]
pub(super) unsafe fn block_direct(
    gd: *mut globaldata,
    td: *mut thread,
    ntd: *mut thread,
    q: *mut thread_queue,
    wmesg: *const c_char,
) {
    // SAFETY: per the contract, `td` is alone on `q` and `ntd` on no
    // queue.
    unsafe {
        (*td).td_wmesg = wmesg;
        // `ntd` takes the place of `td`, alone on `q`, in one go.
        tdqueue::replace_alone(q, td, ntd);
        // One update of each thread's flags (the queue's and the
        // switch's together).
        (*td).td_flags &= !(TDF_RUNQ | TDF_RUNNING);
        (*ntd).td_flags |= TDF_RUNQ | TDF_RUNNING;
        switch_flagged(gd, td, ntd, Leave::Suspend);
        (*td).td_wmesg = ptr::null();
        (*td).td_wchan = ptr::null_mut();
    }
}

/// Block the current thread `td` with wait message `wmesg` and switch to
/// the one other thread of its run queue, when that is what descheduling
/// `td` and `lwkt_switch` would do: `td` may switch (no critical section,
/// release function or pending IPI), its run queue is the highest
/// non-empty one and holds `td` and one thread `ntd` besides, whose
/// MP-lock need the cpu already meets; `ntd` is left alone there, as the
/// general path would leave it (a server that has just replied to its
/// client). `false`, with nothing changed, otherwise.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread; `wmesg` must be a
/// static C string.
#[inline(always)]
pub(super) unsafe fn block_next(
    gd: *mut globaldata,
    td: *mut thread,
    wmesg: *const c_char,
) -> bool {
    // SAFETY: per the contract; threads on the run queue are valid.
    unsafe {
        let pri = (*td).td_pri;
        if pri >= TDPRI_CRIT
            || (*td).td_release.is_some()
            || cpu::reqflags(gd).load(Ordering::Relaxed) != 0
        {
            return false;
        }
        let p = (pri & TDPRI_MASK) as usize;
        if (*gd).gd_runqmask >> p != 1 {
            return false;
        }
        // Exactly two threads on the queue, `td` one of them.
        let q = &raw mut (*gd).gd_tdrunq[p];
        let first = tdqueue::first(q);
        let second = tdqueue::next(first, Link::Threadq);
        if second.is_null() || !tdqueue::next(second, Link::Threadq).is_null() {
            return false;
        }
        let ntd = if first == td {
            second
        } else if second == td {
            first
        } else {
            return false;
        };
        if !mp_need_met(gd, ntd) {
            return false;
        }
        (*td).td_wmesg = wmesg;
        // `td` off the queue, `ntd` left alone on it.
        tdqueue::remove_leaving(q, td, ntd, first == td);
        (*td).td_flags &= !(TDF_RUNQ | TDF_RUNNING);
        (*ntd).td_flags |= TDF_RUNNING;
        switch_flagged(gd, td, ntd, Leave::Suspend);
        (*td).td_wmesg = ptr::null();
        (*td).td_wchan = ptr::null_mut();
        true
    }
}

/// [`schedule_local`] of `td`, a thread of the current cpu `gd`, for a
/// waker that expects `td` blocked: the common case (alive, on no run or
/// wait queue, not the idle thread) queues it without a call, anything
/// else goes through [`schedule_local`] out of line.
///
/// # Safety
/// As [`schedule_local`].
#[inline(always)]
pub(super) unsafe fn wake_local(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        let flags = (*td).td_flags;
        if flags & (TDF_RUNQ | TDF_EXITED) == 0 && (*td).td_wait.is_null() && td != idle_thread(gd)
        {
            // enqueue, its test already made.
            let pri = ((*td).td_pri & TDPRI_MASK) as usize;
            tdqueue::insert_tail(&raw mut (*gd).gd_tdrunq[pri], td, Link::Threadq);
            (*gd).gd_runqmask |= 1 << pri;
            (*td).td_flags = flags | TDF_RUNQ;
        } else {
            schedule_local_call(gd, td);
        }
    }
}

/// [`schedule_local`] as a call, for [`wake_local`]'s uncommon cases.
///
/// # Safety
/// As [`schedule_local`].
#[inline(never)]
unsafe fn schedule_local_call(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe { schedule_local(gd, td) }
}

/// Block the current thread with wait message `wmesg` until someone
/// schedules it again (it is taken off the run queue first).
///
/// # Safety
/// `wmesg` must be a static C string.
pub unsafe fn block_self(func: &str, wmesg: *const c_char) {
    let gd = mycpu();
    // SAFETY: current cpu and thread; `wmesg` per the contract.
    unsafe { block_current(func, gd, (*gd).gd_curthread, wmesg) }
}

/// [`block_self`] for a caller that has already looked up the current
/// cpu `gd` and its current thread `td`.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread; `wmesg` must be a
/// static C string.
#[inline(always)]
pub unsafe fn block_current(
    func: &str,
    gd: *mut globaldata,
    td: *mut thread,
    wmesg: *const c_char,
) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical(func, gd, td);
        (*td).td_wmesg = wmesg;
        dequeue(gd, td);
        do_switch(gd, td);
        (*td).td_wmesg = ptr::null();
        (*td).td_wchan = ptr::null_mut();
    }
}

/// `lwkt_schedule(td)`: make `td` runnable (taking it off a wait queue it
/// is blocked on).
///
/// # Safety
/// `td` must be a valid thread.
#[inline]
pub unsafe fn schedule(td: *mut thread) {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_gd == gd {
            schedule_local(gd, td);
        } else {
            forward("lwkt_schedule", td, schedule_ipi);
        }
    }
}

/// Send `func(td)` to the cpu of `td`, another cpu than the current one.
///
/// # Safety
/// `td` must be a valid thread; `func` must accept it.
#[cold]
unsafe fn forward(func_name: &str, td: *mut thread, func: ipi::IpiFn) {
    // SAFETY: per the contract.
    unsafe {
        let tgd = (*td).td_gd;
        if tgd.is_null() || (*tgd).gd_self != tgd {
            fatal!(func_name, "thread {td:p} has no cpu (not initialised?)");
        }
        ipi::send(tgd, func, td.cast());
    }
}

/// IPI: `lwkt_schedule` of a thread of this cpu sent by another cpu.
///
/// # Safety
/// Only sent by [`forward`] to the cpu of `arg`, a valid thread.
unsafe extern "C" fn schedule_ipi(arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: the sender passed a thread of this cpu.
    unsafe { schedule_local(gd, arg.cast()) }
}

/// IPI: `lwkt_deschedule` of a thread of this cpu sent by another cpu.
///
/// # Safety
/// Only sent by [`forward`] to the cpu of `arg`, a valid thread.
unsafe extern "C" fn deschedule_ipi(arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: the sender passed a thread of this cpu.
    unsafe { dequeue(gd, arg.cast()) }
}

/// `lwkt_schedule` of a thread of the current cpu `gd`.
///
/// # Safety
/// `gd` is the current cpu and `td` a valid thread of it.
#[inline]
pub unsafe fn schedule_local(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_flags & TDF_EXITED != 0 {
            fatal!("lwkt_schedule", "thread {td:p} \"{}\" has exited", name(td));
        }
        if td == idle_thread(gd) {
            return;
        }
        if !(*td).td_wait.is_null() {
            super::wait::unlink_waiter(td);
        }
        enqueue(gd, td);
    }
}

/// `lwkt_yield()`: `lwkt_schedule_self()` + `lwkt_switch()`, except that a
/// caller already on its run queue first moves to the tail, so that every
/// other runnable thread of its priority runs before it again.
#[inline(always)]
pub fn yield_self() {
    yield_as::<true>()
}

/// [`yield_self`]; without `SAN` for a program known to have no
/// sanitizer runtime ([`YIELD_BODY`]).
///
/// The common case (no critical section, release function, IPI, look at
/// the sockets or cpu waiting for the MP lock due, and a next thread
/// whose MP-lock need the cpu meets: a creator letting the thread it
/// has just made run) makes no call, as [`switch_as`]'s, so that the
/// body saves no register; anything else goes to [`yield_slow`] before
/// a thing is changed, or, once the caller is at the tail of its
/// queue, to [`switch_picked`].
#[inline(always)]
fn yield_as<const SAN: bool>() {
    let gd = mycpu();
    // SAFETY: current cpu and thread.
    unsafe {
        let td = (*gd).gd_curthread;
        // A thread that keeps yielding never lets the cpu go idle, where
        // its sockets are read and deferred writes made: do both now and
        // then (yield_slow), so that it cannot starve CAPS traffic.
        let p = cpu_priv(gd);
        let yields = (*p).yields.wrapping_add(1);
        (*p).yields = yields;
        if (*td).td_pri >= TDPRI_CRIT
            || (*td).td_release.is_some()
            || cpu::reqflags(gd).load(Ordering::Relaxed) != 0
            || yields.is_multiple_of(YIELDS_PER_POLL)
            || cpu::MPLOCK.wanted()
        {
            return yield_slow::<SAN>(gd, td, yields);
        }
        to_tail(gd, td);
        match head_if_met(gd) {
            ntd if ntd.is_null() => switch_picked::<SAN>(gd, td),
            ntd if ntd == td => {}
            ntd => {
                (*td).td_flags &= !TDF_RUNNING;
                (*ntd).td_flags |= TDF_RUNNING;
                switch_flagged_as::<SAN>(gd, td, ntd, Leave::Suspend);
            }
        }
    }
}

/// Every case of [`yield_as`] but the common one: it checks that the
/// caller is in no critical section, looks at the sockets every
/// [`YIELDS_PER_POLL`] calls (`yields` counts this one), hands the MP
/// lock to a cpu waiting for it, and switches with the release function,
/// IPIs and the MP lock seen to.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread; without `SAN`,
/// `san::active()` is false.
#[cold]
#[inline(never)]
unsafe fn yield_slow<const SAN: bool>(gd: *mut globaldata, td: *mut thread, yields: u32) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical("lwkt_yield", gd, td);
        if yields.is_multiple_of(YIELDS_PER_POLL) {
            poll_sources();
        }
        // Another cpu waits for the MP lock: hand it over (one load when
        // nobody waits), so that a thread that waits by yielding with the
        // lock held cannot starve that cpu.
        if cpu::MPLOCK.wanted() {
            cpu::MPLOCK.handoff(gd);
        }
        to_tail(gd, td);
        do_switch_as::<SAN>(gd, td);
    }
}

/// [`do_switch`] of [`yield_as`] when the thread at the head of the
/// highest queue needs the MP lock taken or dropped.
///
/// # Safety
/// As [`yield_slow`].
#[cold]
#[inline(never)]
unsafe fn switch_picked<const SAN: bool>(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe { do_switch_as::<SAN>(gd, td) }
}

/// The head of `gd`'s highest non-empty run queue, rotated to its tail
/// as [`pick_next`] leaves it, when the cpu already meets its MP-lock
/// need; NULL, with nothing changed, when that need is not met or no
/// thread is runnable.
///
/// # Safety
/// `gd` is the current cpu.
#[inline(always)]
unsafe fn head_if_met(gd: *mut globaldata) -> *mut thread {
    // SAFETY: per the contract; the queue head is a runnable thread of
    // `gd`.
    unsafe {
        let mask = (*gd).gd_runqmask;
        if mask == 0 {
            return ptr::null_mut();
        }
        let q = &raw mut (*gd).gd_tdrunq[31 - mask.leading_zeros() as usize];
        let ntd = tdqueue::first(q);
        if !mp_need_met(gd, ntd) {
            return ptr::null_mut();
        }
        tdqueue::rotate_first(q, ntd);
        ntd
    }
}

/// `lwkt_yield` calls between two looks at the cpu's sockets.
const YIELDS_PER_POLL: u32 = 32;

#[cold]
fn poll_sources() {
    if crate::cpu::evloop::has_idle_hooks() {
        crate::cpu::evloop::run_idle_hooks();
    }
    if crate::cpu::evloop::sources() > 0 {
        crate::cpu::evloop::poll(0);
    }
}

/// `lwkt_deschedule(td)`: take `td` off the run queue; a running thread
/// keeps running until it switches.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn deschedule(td: *mut thread) {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_gd == gd {
            dequeue(gd, td);
        } else {
            forward("lwkt_deschedule", td, deschedule_ipi);
        }
    }
}

/// `lwkt_setpri(td, pri)`, moving a queued thread to its new queue.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn setpri(td: *mut thread, pri: c_int) {
    if !(0..=TDPRI_MAX).contains(&pri) {
        fatal!("lwkt_setpri", "priority {pri} out of range 0..{TDPRI_MAX}");
    }
    // SAFETY: per the contract; `local_cpu` checks that `td` is ours.
    unsafe { setpri_local(local_cpu("lwkt_setpri", td), td, pri) }
}

/// [`setpri`] of a thread of `gd`, with `pri` in range.
///
/// # Safety
/// `td` is a valid thread of `gd`, and `gd` the current cpu (or a private
/// one in a test).
unsafe fn setpri_local(gd: *mut globaldata, td: *mut thread, pri: c_int) {
    // SAFETY: per the contract.
    unsafe {
        let queued = (*td).td_flags & TDF_RUNQ != 0;
        if queued {
            dequeue(gd, td);
        }
        (*td).td_pri = ((*td).td_pri & !TDPRI_MASK) | pri;
        if queued {
            enqueue(gd, td);
        }
    }
}

/// Switch if a thread of strictly higher priority than the current one is
/// runnable and we are not in a critical section (`lwkt_yield_quick`,
/// `lwkt_maybe_switch`). The current thread stays runnable.
pub fn switch_if_higher() {
    let gd = mycpu();
    // SAFETY: current cpu and thread.
    unsafe {
        let td = (*gd).gd_curthread;
        if (*td).td_pri >= TDPRI_CRIT {
            return;
        }
        ipi::process(gd);
        let mine = ((*td).td_pri & TDPRI_MASK) as u32;
        if (*gd).gd_runqmask >> mine > 1 {
            enqueue(gd, td);
            do_switch(gd, td);
        }
    }
}

#[cfg(test)]
mod tests;

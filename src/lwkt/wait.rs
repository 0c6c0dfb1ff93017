//! Generation-interlocked wait queues (`lwkt_block` / `lwkt_signal`) and
//! the December 2003 token calls.
//!
//! Tokens are soft locks owned by a cpu, not a thread. Every thread of a
//! cpu therefore "holds" a token its cpu owns. Another cpu that wants it
//! sends the owner an IPI and blocks; the owner hands the token over when
//! it processes its IPIs, i.e. at its next scheduling point (a switch,
//! block or yield of the thread that was using it). So a thread keeps the
//! token, exclusively among cpus, from `lwkt_gettoken` until it releases
//! it or next switches; after a switch it may have lost it, which
//! `lwkt_regettoken`/`lwkt_gentoken` detect through `t_gen`, bumped by
//! every acquisition. DragonFly's `lwkt_gettoken` also entered a critical
//! section; here scheduling is cooperative, so nothing can take the cpu
//! away while a thread runs and the critical section is left out (it
//! would forbid blocking with a token held).
//!
//! Wait queues may hold threads of several cpus: their lists are changed
//! under one process-wide lock (short sections, never held across a
//! switch).

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::boot::mycpu;
use super::sched;
use super::tdqueue::{self, Link};
use super::thread as lt;
use crate::abi::{TDPRI_CRIT, globaldata, lwkt_token, lwkt_wait, thread};
use crate::cpu::ipi;
use crate::fatal;

/// Guards every wait queue's list, `wa_count` and the `td_wait` of the
/// threads on it.
static WAITQ: Mutex<()> = Mutex::new(());

/// The wait queues' lock (also taken across `fork()`, `cpu::fork`).
pub(crate) fn waitq_lock() -> MutexGuard<'static, ()> {
    WAITQ.lock().unwrap_or_else(|e| e.into_inner())
}

/// `t_cpu` of a token as an atomic.
///
/// # Safety
/// `tok` must be valid.
unsafe fn owner_of<'a>(tok: *mut lwkt_token) -> &'a AtomicPtr<globaldata> {
    // SAFETY: an aligned pointer field of a live token; every Rust access
    // to it goes through this atomic view.
    unsafe { AtomicPtr::from_ptr(&raw mut (*tok).t_cpu) }
}

/// A request for a token, on the requesting thread's stack while it
/// blocks.
struct TokReq {
    tok: *mut lwkt_token,
    gd: *mut globaldata,
    td: *mut thread,
}

/// IPI on the cpu that (last we knew) owns the token: hand it over if it
/// is still ours, then let the requester look again.
///
/// # Safety
/// Only sent to the cpu that owned the token when asked; `arg` is the
/// requester's [`TokReq`], valid until its thread is scheduled.
unsafe extern "C" fn tokreq_ipi(arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: `arg` is a TokReq whose thread blocks until scheduled below;
    // its fields are copied before that.
    unsafe {
        let req = &*arg.cast::<TokReq>();
        let (tok, rgd, rtd) = (req.tok, req.gd, req.td);
        let owner = owner_of(tok);
        if owner.load(Ordering::Relaxed) == gd {
            crate::san::release(tok);
            (*tok).t_reqcpu = rgd;
            owner.store(rgd, Ordering::Release);
        }
        sched::schedule(rtd);
    }
}

/// `lwkt_inittoken`: unowned, generation 0.
///
/// # Safety
/// `tok` must be writable.
pub unsafe fn inittoken(tok: *mut lwkt_token) {
    // SAFETY: per the contract; all-zero is a valid token.
    unsafe { ptr::write_bytes(tok, 0, 1) }
}

/// Make the current cpu the owner of `tok`.
///
/// # Safety
/// `tok` must be valid.
unsafe fn own(func: &str, tok: *mut lwkt_token) {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        let owner = owner_of(tok);
        loop {
            let cur = owner.load(Ordering::Acquire);
            if cur == gd {
                return;
            }
            if cur.is_null() {
                if owner
                    .compare_exchange(cur, gd, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    (*tok).t_reqcpu = gd;
                    return;
                }
                continue;
            }
            if (*cur).gd_self != cur {
                fatal!(func, "token {tok:p} is not initialised (owner {cur:p})");
            }
            let td = (*gd).gd_curthread;
            if td == &raw mut (*gd).gd_idlethread || (*td).td_pri >= TDPRI_CRIT {
                fatal!(
                    func,
                    "token {tok:p} is owned by cpu {}: cannot wait for it inside a critical \
                     section",
                    (*cur).gd_cpuid
                );
            }
            // Ask the owner; it schedules us back once it has handed the
            // token over (or found it gone), and we look again.
            let req = TokReq { tok, gd, td };
            ipi::send(cur, tokreq_ipi, (&raw const req).cast_mut().cast());
            // What the thread waits for, for gdb (block_self clears it).
            (*td).td_wchan = tok.cast();
            crate::trace!(
                func,
                "thread {td:p} \"{}\" on cpu {} waits for token {tok:p} (owned by cpu {})",
                lt::name(td),
                (*gd).gd_cpuid,
                (*cur).gd_cpuid
            );
            sched::block_self(func, c"token".as_ptr());
            crate::san::acquire(tok);
        }
    }
}

/// `lwkt_gettoken`: acquire; returns the new generation number.
///
/// # Safety
/// `tok` must be valid.
pub unsafe fn gettoken(tok: *mut lwkt_token) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        own("lwkt_gettoken", tok);
        (*tok).t_gen = (*tok).t_gen.wrapping_add(1);
        (*tok).t_gen
    }
}

/// `lwkt_trytoken`: acquire if the cpu can have it now (always, with one
/// cpu); 1 on success, 0 otherwise.
///
/// # Safety
/// `tok` must be valid.
pub unsafe fn trytoken(tok: *mut lwkt_token) -> c_int {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        let owner = owner_of(tok);
        let cur = owner.load(Ordering::Acquire);
        if cur != gd
            && (!cur.is_null()
                || owner
                    .compare_exchange(cur, gd, Ordering::Acquire, Ordering::Relaxed)
                    .is_err())
        {
            return 0;
        }
        (*tok).t_reqcpu = gd;
        (*tok).t_gen = (*tok).t_gen.wrapping_add(1);
    }
    1
}

/// `lwkt_reltoken`: release; the cpu keeps ownership until another cpu
/// asks for it. Returns the generation number.
///
/// # Safety
/// `tok` must be valid.
pub unsafe fn reltoken(tok: *mut lwkt_token) -> c_int {
    // SAFETY: per the contract.
    unsafe { (*tok).t_gen }
}

/// `lwkt_regettoken`: re-acquire a token that may have been lost; the
/// generation is bumped only if it had to be taken back. Returns it.
///
/// # Safety
/// `tok` must be valid.
pub unsafe fn regettoken(tok: *mut lwkt_token) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        if owner_of(tok).load(Ordering::Acquire) != mycpu() {
            own("lwkt_regettoken", tok);
            (*tok).t_gen = (*tok).t_gen.wrapping_add(1);
        }
        (*tok).t_gen
    }
}

/// `lwkt_gentoken(tok, &gen)`: re-acquire; 0 if nobody acquired the token
/// since `*gen` was taken, else -1 with `*gen` updated.
///
/// # Safety
/// `tok` valid, `gen` writable.
pub unsafe fn gentoken(tok: *mut lwkt_token, generation: *mut c_int) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        let g = regettoken(tok);
        if g == *generation {
            0
        } else {
            *generation = g;
            -1
        }
    }
}

/// `lwkt_wait_init`: an empty wait queue, generation 0.
///
/// # Safety
/// `w` must be writable.
pub unsafe fn wait_init(w: *mut lwkt_wait) {
    // SAFETY: per the contract; all-zero is a valid start.
    unsafe {
        ptr::write_bytes(w, 0, 1);
        tdqueue::init(&raw mut (*w).wa_waitq);
    }
}

/// `lwkt_block(w, wmesg, &gen)`: return at once if `w` was signalled since
/// `*gen` was read (then `*gen` is updated); else sleep on `w` until
/// `lwkt_signal` (or `lwkt_schedule`) wakes the thread.
///
/// # Safety
/// `w` valid and initialised; `wmesg` NULL or a C string that outlives
/// the wait; `gen` writable.
pub unsafe fn block(w: *mut lwkt_wait, wmesg: *const c_char, generation: *mut c_int) {
    let gd = mycpu();
    // SAFETY: per the contract; the current thread is valid.
    unsafe {
        if *generation != (*w).wa_gen {
            *generation = (*w).wa_gen;
            return;
        }
        let td = (*gd).gd_curthread;
        if (*w).wa_waitq.tqh_last.is_null() {
            fatal!(
                "lwkt_block",
                "wait queue {w:p} is not initialised (lwkt_wait_init)"
            );
        }
        let wmesg = if wmesg.is_null() {
            c"lwkt_block".as_ptr()
        } else {
            wmesg
        };
        {
            let _g = waitq_lock();
            if *generation != (*w).wa_gen {
                *generation = (*w).wa_gen;
                return;
            }
            // Take td off the run queue first: td_threadq then links it
            // on w. A signal from another cpu between here and the switch
            // arrives as an IPI, which the switch runs before it picks.
            sched::deschedule(td);
            tdqueue::insert_tail(&raw mut (*w).wa_waitq, td, Link::Threadq);
            (*w).wa_count += 1;
            (*td).td_wait = w;
        }
        sched::block_self("lwkt_block", wmesg);
        let _g = waitq_lock();
        if !(*td).td_wait.is_null() {
            fatal!(
                "lwkt_block",
                "thread {td:p} resumed while still on wait queue {w:p}"
            );
        }
        *generation = (*w).wa_gen;
    }
}

/// `lwkt_signal(w, count)`: bump the generation and wake up to `count`
/// waiters in arrival order (`count < 0`: all).
///
/// # Safety
/// `w` valid and initialised.
pub unsafe fn signal(w: *mut lwkt_wait, count: c_int) {
    let gd = mycpu();
    let mut woken: Vec<*mut thread> = Vec::new();
    // SAFETY: per the contract; threads on the queue are valid.
    unsafe {
        {
            let _g = waitq_lock();
            (*w).wa_gen = (*w).wa_gen.wrapping_add(1);
            let mut n = if count < 0 { (*w).wa_count } else { count };
            while n > 0 {
                let td = tdqueue::first(&raw const (*w).wa_waitq);
                if td.is_null() {
                    break;
                }
                tdqueue::remove(&raw mut (*w).wa_waitq, td, Link::Threadq);
                (*w).wa_count -= 1;
                (*td).td_wait = ptr::null_mut();
                woken.push(td);
                n -= 1;
            }
        }
        for td in woken {
            if (*td).td_gd == gd {
                (*td).td_wmesg = ptr::null();
            }
            sched::schedule(td);
        }
    }
}

/// Take `td` off the wait queue it sleeps on (`lwkt_schedule` of a
/// blocked thread), unless a signal already did.
///
/// # Safety
/// `td` is a valid thread of the current cpu.
pub unsafe fn unlink_waiter(td: *mut thread) {
    let _g = waitq_lock();
    // SAFETY: per the contract; td_wait is only changed under WAITQ.
    unsafe {
        let w = (*td).td_wait;
        if !w.is_null() {
            tdqueue::remove(&raw mut (*w).wa_waitq, td, Link::Threadq);
            (*w).wa_count -= 1;
            (*td).td_wait = ptr::null_mut();
        }
    }
}

//! Generation-interlocked wait queues (`lwkt_block` / `lwkt_signal`) and
//! the December 2003 token calls.
//!
//! Tokens are soft locks owned by a cpu, not a thread. Every thread of a
//! cpu therefore "holds" a token its cpu owns; `t_gen` is bumped by every
//! acquisition so that a thread which may have lost the token while
//! blocked can tell (`lwkt_gentoken`). DragonFly's `lwkt_gettoken` also
//! entered a critical section; here scheduling is cooperative, so nothing
//! can take the cpu away while a thread runs and the critical section is
//! left out (it would forbid blocking with a token held).

use core::ffi::{c_char, c_int};
use core::ptr;

use super::tdqueue::{self, Link};
use super::thread as lt;
use crate::abi::{lwkt_token, lwkt_wait};
use crate::cpu::mycpu;
use crate::fatal;

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
        let owner = (*tok).t_cpu;
        if owner != gd {
            if !owner.is_null() && (*owner).gd_self != owner {
                fatal!(func, "token {tok:p} is not initialised (owner {owner:p})");
            }
            // Another cpu would have to hand it over by IPI; with one cpu
            // the owner is NULL or ourselves.
            (*tok).t_cpu = gd;
            (*tok).t_reqcpu = gd;
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
    // SAFETY: per the contract.
    unsafe { gettoken(tok) };
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
        if (*tok).t_cpu != mycpu() {
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
        // Take td off the run queue first: td_threadq then links it on w.
        lt::deschedule(td);
        tdqueue::insert_tail(&raw mut (*w).wa_waitq, td, Link::Threadq);
        (*w).wa_count += 1;
        (*td).td_wait = w;
        lt::block_self("lwkt_block", wmesg);
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
    // SAFETY: per the contract; threads on the queue are valid.
    unsafe {
        (*w).wa_gen = (*w).wa_gen.wrapping_add(1);
        let mut n = if count < 0 { (*w).wa_count } else { count };
        while n > 0 {
            let td = tdqueue::first(&raw const (*w).wa_waitq);
            if td.is_null() {
                break;
            }
            // lwkt_schedule takes it off the wait queue.
            lt::schedule(td);
            (*td).td_wmesg = ptr::null();
            n -= 1;
        }
    }
}

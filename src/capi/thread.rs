//! `<sys/thread.h>`: the LWKT thread calls (December 2003 signatures),
//! wait queues and tokens. `lwkt_create` and `lwkt_set_comm` are variadic
//! and live in the C shim (`src/capi/shim.c`), which formats the name and
//! calls `libcaps_thread_create` / `libcaps_thread_set_comm`
//! (`src/capi/shim.rs`).
//!
//! Context: every call acts on the current cpu (the calling kernel thread;
//! the first call of a program that never called `uthread_init()` makes
//! it cpu 0). `lwkt_create`, `lwkt_alloc_thread`, `lwkt_init_thread`,
//! `lwkt_schedule` and `lwkt_deschedule` reach threads of other cpus by
//! IPI; the other calls refuse a thread of another cpu with a diagnostic.

use core::ffi::{c_char, c_int, c_void};

use core::sync::atomic::Ordering;

use crate::abi::{globaldata, lwkt_token_t, lwkt_wait_t, thread, thread_t};
use crate::cpu;
use crate::fatal;
use crate::lwkt::mycpu;
use crate::lwkt::sched;
use crate::lwkt::thread as lt;
use crate::lwkt::wait;

/// The current thread (never NULL: the first call adopts `main`).
fn current() -> thread_t {
    // SAFETY: mycpu() is a set-up cpu whose gd_curthread is valid.
    unsafe { (*mycpu()).gd_curthread }
}

/// Abort with a diagnostic when `td` is NULL.
fn need(func: &str, td: thread_t) {
    if td.is_null() {
        fatal!(func, "NULL thread");
    }
}

/// Allocate a thread (from the cpu's cache of exited threads when one is
/// there, else `malloc`) with a 64 KiB stack, initialised on `cpu` (-1:
/// the current cpu) but not scheduled and without code to run. With a
/// non-NULL `template` that structure is used instead of a new one.
/// Returns NULL when no stack can be mapped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_alloc_thread(template: *mut thread, cpu: c_int) -> thread_t {
    // SAFETY: `template` is NULL or the caller's unused thread structure.
    unsafe { lt::alloc_thread(template, cpu) }
}

/// Initialise `td` on cpu `gd` with the given stack (`THREAD_STACK` bytes,
/// or NULL) and flags: priority `TDPRI_KERN_DAEMON` inside one critical
/// section, its own message port, counted on the cpu. Not scheduled.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_init_thread(
    td: thread_t,
    stack: *mut c_void,
    flags: c_int,
    gd: *mut globaldata,
) {
    need("lwkt_init_thread", td);
    let cur = mycpu();
    let gd = if gd.is_null() { cur } else { gd };
    if gd == cur {
        // SAFETY: `td` is the caller's structure, not on any list.
        return unsafe { lt::init_thread(td, stack.cast(), flags, gd, None) };
    }
    let n = cpu::ncpus.load(Ordering::Acquire);
    if !(0..n).any(|c| cpu::globaldata_find(c) == gd) {
        fatal!(
            "lwkt_init_thread",
            "{gd:p} is not the globaldata of a started cpu"
        );
    }
    // SAFETY: as above; `gd` is a started cpu other than this one.
    unsafe { lt::init_thread_remote(td, stack.cast(), flags, gd) }
}

/// Release a thread that is not running: the stack if libcaps mapped it,
/// the structure if libcaps allocated it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_free_thread(td: thread_t) {
    need("lwkt_free_thread", td);
    // SAFETY: `td` is a thread the caller no longer uses.
    unsafe { lt::free_thread(td) }
}

/// Run the next runnable thread: the first of the highest-priority
/// non-empty run queue, which is rotated (round robin). If the caller is
/// still runnable it runs again in its turn; if not (it descheduled
/// itself) it runs again when someone schedules it. Calling it inside a
/// critical section is a fatal error.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub extern "C" fn lwkt_switch() {
    crate::lwkt::arch::blocking_entry_via!(sched::SWITCH_BODY, sched::switch_body)
}

/// `lwkt_switch()` (the December 2003 name used to start a new cpu).
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_start_threading(_td: thread_t) {
    sched::switch("lwkt_start_threading")
}

/// Let every other runnable thread of the same (or higher) priority run
/// once: the caller is put at the tail of its run queue and switches.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub extern "C" fn lwkt_yield() {
    crate::lwkt::arch::blocking_entry_via!(sched::YIELD_BODY, sched::yield_body)
}

/// Switch only if a thread of higher priority is runnable and the caller
/// is not in a critical section (called by `crit_exit()`).
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_yield_quick() {
    sched::switch_if_higher()
}

/// Same as `lwkt_yield_quick()`.
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_maybe_switch() {
    sched::switch_if_higher()
}

/// Make `td` runnable (taking it off any wait queue). Cooperative: the
/// caller keeps running. `td` must belong to the current cpu.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_schedule(td: thread_t) {
    need("lwkt_schedule", td);
    // SAFETY: `td` is a valid thread.
    unsafe { sched::schedule(td) }
}

/// Make the current thread runnable.
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_schedule_self() {
    // SAFETY: the current thread is valid.
    unsafe { sched::schedule(current()) }
}

/// Take `td` off the run queue; a running thread keeps running until it
/// calls `lwkt_switch()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_deschedule(td: thread_t) {
    need("lwkt_deschedule", td);
    // SAFETY: `td` is a valid thread.
    unsafe { sched::deschedule(td) }
}

/// Take the current thread off the run queue (it blocks at its next
/// `lwkt_switch()` until scheduled again).
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_deschedule_self() {
    // SAFETY: the current thread is valid.
    unsafe { sched::deschedule(current()) }
}

/// Set the priority (0..31) of `td`, keeping its critical-section count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_setpri(td: thread_t, pri: c_int) {
    need("lwkt_setpri", td);
    // SAFETY: `td` is a valid thread.
    unsafe { sched::setpri(td, pri) }
}

/// Set the priority of the current thread.
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_setpri_self(pri: c_int) {
    // SAFETY: the current thread is valid.
    unsafe { sched::setpri(current(), pri) }
}

/// Take a reference that keeps `td`'s structure from being reused after
/// it exits.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_hold(td: thread_t) {
    need("lwkt_hold", td);
    // SAFETY: `td` is a valid thread.
    unsafe { lt::hold(td) }
}

/// Drop a reference taken with `lwkt_hold()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_rele(td: thread_t) {
    need("lwkt_rele", td);
    // SAFETY: `td` is a valid thread.
    unsafe { lt::rele(td) }
}

/// End the current thread (a thread function returning does the same).
/// Prints `kthread ADDR NAME has exited` when the thread has
/// `TDF_VERBOSE`. When `main` exits, the process exits with status 0 once
/// every other thread has. The idle thread cannot exit.
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_exit() -> ! {
    lt::exit_current()
}

/// Set up the scheduler of cpu `gd`. Done by `uthread_init()` (or the
/// first LWKT call) for cpu 0; a second call for a cpu is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_gdinit(gd: *mut globaldata) {
    if gd.is_null() {
        fatal!("lwkt_gdinit", "NULL globaldata");
    }
    let cur = mycpu();
    if gd != cur {
        fatal!(
            "lwkt_gdinit",
            "cpu {gd:p} is not the current cpu (it is set up by its own thread)"
        );
    }
    // The current cpu was set up by mycpu(): nothing to do.
}

/// Run `func(arg)` on cpu `dcpu` (December 2003 signature). For the
/// current cpu the function runs at once; for another cpu it is queued
/// and runs on that cpu's kernel thread at its next scheduling point
/// (`lwkt_switch`, its idle loop, `splz`, `lwkt_process_ipiq`), in the
/// order sent. The target cpu is woken if it sleeps. Returns 0; an
/// unknown cpu or a NULL function is a fatal error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_send_ipiq(
    dcpu: c_int,
    func: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    let Some(func) = func else {
        fatal!("lwkt_send_ipiq", "NULL function")
    };
    let gd = mycpu();
    let n = cpu::ncpus.load(Ordering::Acquire);
    if dcpu < 0 || dcpu >= n {
        fatal!("lwkt_send_ipiq", "no cpu {dcpu} (ncpus is {n})");
    }
    let tgd = cpu::globaldata_find(dcpu);
    if tgd == gd {
        // SAFETY: the caller's function and argument.
        unsafe { func(arg) };
    } else {
        // SAFETY: `tgd` is a started cpu other than this one.
        unsafe { cpu::ipi::send(tgd, func, arg) };
    }
    0
}

/// Run the IPI functions other cpus queued for this cpu.
#[unsafe(no_mangle)]
pub extern "C" fn lwkt_process_ipiq() {
    // SAFETY: mycpu() is the current cpu.
    unsafe { cpu::ipi::process(mycpu()) }
}

/// Make `td` (a thread of another cpu) belong to this one. Threads never
/// migrate here: a thread of another cpu is refused.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_acquire(td: thread_t) {
    need("lwkt_acquire", td);
    // SAFETY: `td` is a valid thread.
    if unsafe { (*td).td_gd } != mycpu() {
        fatal!("lwkt_acquire", "thread {td:p} belongs to another cpu");
    }
}

/// Called by `crit_exit()` when `td_pri` would go negative: a diagnostic
/// and `abort()`.
#[unsafe(no_mangle)]
pub extern "C" fn crit_panic() -> ! {
    let td = current();
    // SAFETY: the current thread is valid.
    let pri = unsafe { (*td).td_pri };
    fatal!(
        "crit_exit",
        "negative critical section count: td_pri {pri} in thread {td:p} (crit_exit without \
         crit_enter)"
    )
}

/// Initialise a wait queue: empty, generation 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_wait_init(w: lwkt_wait_t) {
    if w.is_null() {
        fatal!("lwkt_wait_init", "NULL wait queue");
    }
    // SAFETY: `w` is the caller's structure.
    unsafe { wait::wait_init(w) }
}

/// Same as `lwkt_wait_init()` (the name `thread.h` 1.42 declares).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_init_wait(w: lwkt_wait_t) {
    // SAFETY: forwarded.
    unsafe { lwkt_wait_init(w) }
}

/// Sleep on `w` unless it was signalled since `*gen` was read (then
/// `*gen` is updated and the call returns at once). On return `*gen` is
/// the queue's current generation. Blocking inside a critical section is
/// a fatal error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_block(w: lwkt_wait_t, wmesg: *const c_char, gen_: *mut c_int) {
    if w.is_null() || gen_.is_null() {
        fatal!("lwkt_block", "NULL wait queue or generation pointer");
    }
    // SAFETY: both are the caller's objects.
    unsafe { wait::block(w, wmesg, gen_) }
}

/// Bump `w`'s generation and wake `count` sleepers (-1: all), oldest first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_signal(w: lwkt_wait_t, count: c_int) {
    if w.is_null() {
        fatal!("lwkt_signal", "NULL wait queue");
    }
    // SAFETY: `w` is the caller's initialised wait queue.
    unsafe { wait::signal(w, count) }
}

fn need_tok(func: &str, tok: lwkt_token_t) {
    if tok.is_null() {
        fatal!(func, "NULL token");
    }
}

/// Initialise a token: no owner, generation 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_inittoken(tok: lwkt_token_t) {
    need_tok("lwkt_inittoken", tok);
    // SAFETY: the caller's token.
    unsafe { wait::inittoken(tok) }
}

/// Acquire a token for the current cpu; returns its new generation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_gettoken(tok: lwkt_token_t) -> c_int {
    need_tok("lwkt_gettoken", tok);
    // SAFETY: the caller's token.
    unsafe { wait::gettoken(tok) }
}

/// Try to acquire a token: 1 on success, 0 if another cpu owns it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_trytoken(tok: lwkt_token_t) -> c_int {
    need_tok("lwkt_trytoken", tok);
    // SAFETY: the caller's token.
    unsafe { wait::trytoken(tok) }
}

/// Release a token; returns its generation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_reltoken(tok: lwkt_token_t) -> c_int {
    need_tok("lwkt_reltoken", tok);
    // SAFETY: the caller's token.
    unsafe { wait::reltoken(tok) }
}

/// Re-acquire a token that may have been lost; returns its generation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_regettoken(tok: lwkt_token_t) -> c_int {
    need_tok("lwkt_regettoken", tok);
    // SAFETY: the caller's token.
    unsafe { wait::regettoken(tok) }
}

/// Re-acquire a token and compare generations: 0 if nobody acquired it
/// since `*gen` was taken, else -1 and `*gen` is updated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lwkt_gentoken(tok: lwkt_token_t, gen_: *mut c_int) -> c_int {
    need_tok("lwkt_gentoken", tok);
    if gen_.is_null() {
        fatal!("lwkt_gentoken", "NULL generation pointer");
    }
    // SAFETY: the caller's token and int.
    unsafe { wait::gentoken(tok, gen_) }
}

//! The idle thread of each cpu: its creation (`lwkt_gdinit`), the start
//! of a new cpu's kernel thread on it, and its loop, which runs IPIs,
//! frees what exited threads left, resumes `main` once every non-system
//! thread has exited, and otherwise waits for work in
//! `cpu::wait_for_work`, reporting the deadlock that call finds.

use core::ffi::{CStr, c_char, c_void};
use core::ptr;
use core::sync::atomic::Ordering;

use super::arch;
use super::boot::mycpu;
use super::san::{self, Leave};
use super::sched::{enqueue, pick_next, switch_to};
use super::stack;
use super::tdqueue::{self, Link};
use super::thread::{
    THREAD_CACHE_MAX, idle_thread, init_fields, name, only_system_threads_left, set_comm,
    set_handler,
};
use crate::abi::{
    TDF_RUNNING, TDF_RUNQ, TDF_SYSTHREAD, TDPRI_CRIT, TDPRI_IDLE_THREAD, THREAD_STACK, globaldata,
};
use crate::cpu::{self, Idle, cpu_priv, ipi};
use crate::fatal;

/// `lwkt_gdinit`: empty run queues, thread list and free list, and an
/// idle thread (own stack, left in a critical section, not counted in
/// `gd_num_threads`) as the current thread.
///
/// # Safety
/// `gd` is a cpu being set up (by `cpu::gdinit_cpu`) whose lists and run
/// queues are accessed only by the caller: its own kernel thread, or a
/// unit test that sets up a private cpu and never publishes it.
pub unsafe fn gdinit(gd: *mut globaldata) {
    // SAFETY: `gd` is valid and not yet in use.
    unsafe {
        for q in 0..32 {
            tdqueue::init(&raw mut (*gd).gd_tdrunq[q]);
        }
        (*gd).gd_runqmask = 0;
        tdqueue::init(&raw mut (*gd).gd_tdallq);
        tdqueue::init(&raw mut (*gd).gd_tdfreeq);
        let td = idle_thread(gd);
        ptr::write_bytes(td, 0, 1);
        let stk = stack::alloc(THREAD_STACK as usize, &raw mut (*td).td_mach);
        if stk.is_null() {
            fatal!(
                "lwkt_gdinit",
                "cannot map a stack for the idle thread of cpu {}",
                (*gd).gd_cpuid
            );
        }
        let mach = ptr::read(&raw const (*td).td_mach);
        init_fields(td, stk, TDF_RUNNING | TDF_SYSTHREAD, gd, Some(mach));
        (*td).td_pri = TDPRI_IDLE_THREAD + 2 * TDPRI_CRIT;
        set_comm(td, c"idle".as_ptr());
        set_handler(td, idle_loop, ptr::null_mut());
        (*gd).gd_curthread = td;
    }
}

/// Free cached threads beyond [`THREAD_CACHE_MAX`] and stacks of exited
/// threads that were not cached. Runs on the idle thread's stack.
///
/// # Safety
/// `gd` is the current cpu and the caller is its idle thread.
unsafe fn reap(gd: *mut globaldata) {
    // SAFETY: none of the threads on the free list or in zombie_stacks is
    // running, and the idle thread's own stack is never among them.
    unsafe {
        while (*gd).gd_tdfreecount > THREAD_CACHE_MAX {
            // The longest unused (see THREAD_CACHE_MAX).
            let td = tdqueue::last(&raw const (*gd).gd_tdfreeq, Link::Threadq);
            tdqueue::remove(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
            (*gd).gd_tdfreecount -= 1;
            stack::free(&raw mut (*td).td_mach);
            super::thread::free_struct(td);
        }
        let private = cpu_priv(gd);
        while let Some(mut m) = (*private).zombie_stacks.pop() {
            stack::free(&mut m);
        }
    }
}

/// Report that every thread of the cpu is blocked and nothing can wake
/// any of them, then abort.
///
/// # Safety
/// `gd` is the current cpu.
unsafe fn report_deadlock(gd: *mut globaldata) -> ! {
    // SAFETY: walking the cpu's own thread list.
    let lines = unsafe { thread_states(gd) };
    fatal!(
        "deadlock",
        "every thread on cpu {} is blocked and nothing can wake any of them:{lines}",
        // SAFETY: `gd` is the current cpu.
        unsafe { (*gd).gd_cpuid }
    )
}

/// One line per thread of `gd`: what it waits for.
///
/// # Safety
/// `gd` must be a started cpu whose thread list nobody changes meanwhile
/// (its own, or one asleep).
unsafe fn thread_states(gd: *mut globaldata) -> String {
    let mut lines = String::new();
    // SAFETY: per the contract.
    unsafe {
        let mut td = tdqueue::first(&raw const (*gd).gd_tdallq);
        while !td.is_null() {
            let wmesg = (*td).td_wmesg;
            let why = if wmesg.is_null() {
                "descheduled (nothing will schedule it)".to_string()
            } else {
                format!("blocked in {}", CStr::from_ptr(wmesg).to_string_lossy())
            };
            lines.push_str(&format!(
                "\n  cpu {} thread {td:p} \"{}\": {why}",
                (*gd).gd_cpuid,
                name(td)
            ));
            td = tdqueue::next(td, Link::Allq);
        }
    }
    lines
}

/// Every cpu sleeps with nothing pending and no socket that could wake
/// one: report every thread and abort, instead of hanging.
///
/// # Safety
/// Called by the last cpu to fall asleep, after checking that every other
/// cpu sleeps with no request pending (their lists are not changing).
unsafe fn report_deadlock_all(ncpus: i32) -> ! {
    let mut lines = String::new();
    for cpu in cpu::live_cpus() {
        // SAFETY: per the contract; started cpus are valid forever.
        lines += &unsafe { thread_states(cpu::globaldata_find(cpu)) };
    }
    fatal!(
        "deadlock",
        "all {ncpus} cpus sleep and nothing can wake any of their threads:{lines}"
    )
}

/// [`cpu::wait_for_work`] for the idle thread of the current cpu `gd`,
/// which reports the deadlock that call finds and aborts.
///
/// # Safety
/// `gd` is the current cpu and the caller its idle thread.
unsafe fn wait_for_work(gd: *mut globaldata) {
    // SAFETY: per the contract.
    if let Idle::Deadlock(n) = unsafe { cpu::wait_for_work(gd) } {
        // SAFETY: the verdict says this cpu was the last to fall asleep
        // and every other one sleeps with no request pending.
        unsafe { report_deadlock_all(n) }
    }
}

/// Start the idle thread of a new cpu on its kernel thread; never returns.
///
/// # Safety
/// `gd` is the current cpu, just set up by [`gdinit`].
pub unsafe fn run_idle(gd: *mut globaldata) -> ! {
    let mut boot_sp: *mut c_char = ptr::null_mut();
    // SAFETY: the idle thread's stack was prepared by gdinit; the boot
    // stack is left for good (nothing switches back to it).
    unsafe {
        san::keep_boot_stack();
        if san::active() {
            san::switch_from_boot(&raw mut boot_sp, idle_thread(gd));
        } else {
            arch::switch(&raw mut boot_sp, (*idle_thread(gd)).td_sp);
        }
    }
    fatal!("caps_fork_vcpu", "the boot stack of a cpu was resumed")
}

/// The idle thread: run IPIs, resume `main` when only system threads
/// remain, run whatever is runnable, and otherwise wait for work: a short
/// spin, then a sleep in the cpu's event loop (sockets, IPIs, the MP
/// lock's release). With a single cpu and no event source nothing could
/// ever wake anyone: that deadlock is reported.
///
/// # Safety
/// Only run as the handler of the idle thread that [`gdinit`] set up,
/// on that cpu's kernel thread.
unsafe extern "C" fn idle_loop(_arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: runs as the idle thread of `gd`, in its critical section.
    unsafe {
        let td = idle_thread(gd);
        loop {
            ipi::process_idle(gd);
            reap(gd);
            let private = cpu_priv(gd);
            let main = (*private).main_td;
            if !main.is_null()
                && !(*private).main_exited
                && (*main).td_flags & TDF_RUNQ == 0
                && (*main).td_wmesg.is_null()
                && (*main).td_wait.is_null()
                && only_system_threads_left()
            {
                enqueue(gd, main);
            }
            if let Some(release) = (*td).td_release {
                release(td);
            }
            let ntd = pick_next(gd);
            if ntd != td {
                switch_to(gd, td, ntd, Leave::Suspend);
                continue;
            }
            if (*gd).gd_runqmask != 0 {
                // Runnable threads all need the MP lock, held elsewhere.
                if cpu::MPLOCK.wait_register(gd) {
                    wait_for_work(gd);
                    cpu::MPLOCK.wait_unregister(gd);
                }
                continue;
            }
            if (*private).main_exited && (*gd).gd_num_threads == 0 && only_system_threads_left() {
                // main() called lwkt_exit() and everything it started is
                // done: the program ends as after pthread_exit in main.
                libc::exit(0);
            }
            if (*gd).gd_cpuid == 0
                && cpu::ncpus.load(Ordering::Acquire) == 1
                && crate::cpu::evloop::sources() == 0
                && cpu::reqflags(gd).load(Ordering::SeqCst) == 0
            {
                // One cpu and no sockets: nothing can make a thread
                // runnable again.
                report_deadlock(gd);
            }
            wait_for_work(gd);
        }
    }
}

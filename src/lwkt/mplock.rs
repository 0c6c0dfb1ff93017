//! The MP lock as threads hold it: `get_mplock`/`rel_mplock` count holds
//! per thread in `td_mpcount`, and a thread that needs the lock while
//! another cpu has it waits on its run queue (the scheduler runs it only
//! once the lock is this cpu's). The lock word itself, its hand-over and
//! the wakeup of waiting cpus are `cpu`'s.

use core::ffi::c_int;
use core::sync::atomic::Ordering;

use super::boot::mycpu;
use super::sched::{check_not_critical, dequeue, do_switch, enqueue};
use super::thread::name;
use crate::abi::{TDF_RUNQ, globaldata, thread};
use crate::cpu::{self, cpu_priv, mp_lock};
use crate::fatal;

/// `get_mplock()`: count one more hold of the MP lock by the current
/// thread and make sure this cpu owns it. When another cpu owns it the
/// thread yields (stays runnable; the scheduler runs it again only once
/// the lock is ours) instead of spinning.
pub fn get_mplock() {
    let gd = mycpu();
    // SAFETY: `gd` is this cpu's set-up globaldata.
    unsafe {
        let td = (*gd).gd_curthread;
        (*td).td_mpcount += 1;
        if cpu::acquire_mplock(gd) {
            return;
        }
        wait_for_mplock(gd, td);
    }
}

/// `get_mplock()` when another cpu holds the lock: stay runnable and
/// switch until the scheduler picks this thread, which it does only once
/// this cpu owns the lock.
///
/// # Safety
/// `gd` is the current cpu and `td` its current thread, which counts a
/// hold in `td_mpcount`.
pub unsafe fn wait_for_mplock(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical("get_mplock", gd, td);
        if crate::diag::debug_on() {
            trace_mplock_wait("get_mplock", gd, td);
        }
        let queued = (*td).td_flags & TDF_RUNQ != 0;
        enqueue(gd, td);
        while !cpu::acquire_mplock(gd) {
            do_switch(gd, td);
        }
        if !queued {
            dequeue(gd, td);
        }
    }
}

/// With `LIBCAPS_DEBUG`: `td`, a thread of the current cpu `gd` that needs
/// the MP lock, cannot run because another cpu holds the lock. One line
/// when the wait starts (again after the cpu got the lock); nothing when
/// the lock was let go meanwhile.
///
/// # Safety
/// `gd` is the current cpu, `td` one of its threads.
#[cold]
pub unsafe fn trace_mplock_wait(func: &str, gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        let me = (*gd).gd_cpuid as i32;
        let traced = &(*cpu_priv(gd)).mp_wait_traced;
        let holder = mp_lock.load(Ordering::Relaxed);
        if traced.load(Ordering::Relaxed) == td || holder < 0 || holder == me {
            return;
        }
        traced.store(td, Ordering::Relaxed);
        crate::trace!(
            func,
            "thread {td:p} \"{}\" on cpu {me} waits for the MP lock (held by cpu {holder})",
            name(td)
        );
    }
}

/// `rel_mplock()`: drop one hold; the lock is released at zero.
pub fn rel_mplock() {
    let gd = mycpu();
    // SAFETY: `gd` is this cpu's set-up globaldata.
    unsafe {
        let td = (*gd).gd_curthread;
        if (*td).td_mpcount <= 0 {
            fatal!("rel_mplock", "the current thread does not hold the MP lock");
        }
        (*td).td_mpcount -= 1;
        if (*td).td_mpcount == 0 {
            cpu::release_mplock(gd);
        }
    }
}

/// `try_mplock()`: 1 and one more hold if the lock could be had, else 0.
pub fn try_mplock() -> c_int {
    let gd = mycpu();
    // SAFETY: `gd` is this cpu's set-up globaldata.
    unsafe {
        if cpu::acquire_mplock(gd) {
            (*(*gd).gd_curthread).td_mpcount += 1;
            1
        } else {
            0
        }
    }
}

/// `cpu_try_mplock()`: take the lock word for this cpu, no hold counted.
pub fn cpu_try_mplock() -> c_int {
    // SAFETY: `mycpu()` is the current cpu.
    c_int::from(unsafe { cpu::acquire_mplock(mycpu()) })
}

/// `cpu_get_initial_mplock()`: take the lock word for this cpu (no hold
/// counted), waiting for it with `sched_yield` if another cpu has it.
pub fn cpu_get_initial_mplock() {
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu.
    while !unsafe { cpu::acquire_mplock(gd) } {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

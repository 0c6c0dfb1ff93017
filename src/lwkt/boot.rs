//! Starting cpus: the adoption of the calling kernel thread as cpu 0 with
//! `main` as its current thread (the first `mycpu()` or
//! `uthread_init()`), and `caps_fork_vcpu`, which starts cpus 1.. on new
//! kernel threads, each becoming its cpu's idle thread. The cpu-level
//! parts (globaldata, IPI queues, the event loop's waker, the live-cpu
//! set) are `cpu`'s; what makes a cpu run threads is here.

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{arch, fork, idle, mplock, overflow, san, stack, thread as lt};
use crate::abi::{MAXVCPU, TDF_RUNNING, TDF_SYSTHREAD, TDPRI_CRIT, globaldata};
use crate::cpu::{self, cpu_priv, globaldata_find, mycpu_if_any, ncpus};
use crate::fatal;

/// The current cpu's `globaldata`; the first call from a program that never
/// called `uthread_init()` adopts the calling kernel thread as cpu 0.
#[inline(always)]
pub fn mycpu() -> *mut globaldata {
    let gd = mycpu_if_any();
    if gd.is_null() { adopt() } else { gd }
}

/// Make the calling kernel thread cpu 0 and its running code the thread
/// `main_td` (`uthread_init()`); idempotent.
#[cold]
pub fn adopt() -> *mut globaldata {
    let gd = mycpu_if_any();
    if !gd.is_null() {
        return gd;
    }
    if !cpu::claim_cpu0() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        fatal!(
            "uthread_init",
            "kernel thread {tid} is not a libcaps cpu: cpu 0 already runs on another kernel \
             thread (LWKT calls must come from the thread that started libcaps)"
        );
    }
    fork::register();
    let gd = globaldata_find(0);
    // New threads start with the FP control state the package starts with,
    // on stacks of the size asked for then; errno is switched per thread.
    arch::capture_fp_start();
    arch::errno_init();
    stack::configure();
    overflow::arm_kernel_thread();
    // SAFETY: cpu 0 was not taken, so nobody else touches gdary[0] or
    // main_td; they are static and live forever.
    unsafe {
        san::init();
        cpu::gdinit_cpu(gd, 0);
        cpu::set_mycpu(gd);
        idle::gdinit(gd);
        let td = &raw mut cpu::main_td;
        lt::init_thread(td, ptr::null_mut(), TDF_RUNNING | TDF_SYSTHREAD, gd, None);
        (*gd).gd_idlethread.td_flags &= !TDF_RUNNING;
        (*gd).gd_curthread = td;
        (*cpu_priv(gd)).main_td = td;
        lt::set_comm(td, c"main".as_ptr());
        // Threads are born in a critical section; main leaves it at once.
        (*td).td_pri -= TDPRI_CRIT;
        mplock::get_mplock();
        // Its slab state, waker and place among the live cpus.
        cpu::go_live(gd);
    }
    gd
}

/// `caps_fork_vcpu()`: start the next virtual cpu on a new kernel thread
/// (its own globaldata, run queues, idle thread, event loop and slab
/// state) and return its id; -1 once `MAXVCPU` cpus exist or when the
/// kernel refuses a new thread.
pub fn fork_vcpu() -> c_int {
    // Cpu 0 must exist first (a program may fork before any LWKT call).
    mycpu();
    let _g = cpu::fork_lock();
    let n = ncpus.load(Ordering::Acquire);
    if n >= MAXVCPU {
        return -1;
    }
    let gd = globaldata_find(n);
    // SAFETY: gdary[n] is not in use (ncpus only grows, under FORK_LOCK;
    // in a fork() child it was reset to the forking cpu's id + 1, and the
    // parent's cpus above it do not run here).
    unsafe { cpu::gdinit_cpu(gd, n) };
    let ready = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let r2 = Arc::clone(&ready);
    let gda = gd as usize;
    let spawned = std::thread::Builder::new()
        .name(format!("libcaps-cpu{n}"))
        .stack_size(64 * 1024)
        .spawn(move || vcpu_main(gda as *mut globaldata, r2));
    if let Err(e) = spawned {
        crate::warn!("caps_fork_vcpu", "cannot start a kernel thread: {e}");
        // SAFETY: the cpu was never published; free what gdinit_cpu made.
        unsafe { cpu::gdfree_cpu(gd) };
        return -1;
    }
    let (m, cv) = &*ready;
    let mut started = m.lock().unwrap_or_else(|e| e.into_inner());
    while !*started {
        started = cv.wait(started).unwrap_or_else(|e| e.into_inner());
    }
    drop(started);
    crate::san::acquire(gd);
    // SAFETY: under the fork lock; cpu `n` is live and n == ncpus.
    unsafe { cpu::publish(gd, n) };
    crate::trace!(
        "caps_fork_vcpu",
        "cpu {n} started (kernel thread {})",
        // SAFETY: set by the new cpu before it reported readiness.
        unsafe { (*gd).gd_pid }
    );
    n
}

/// First code of a virtual cpu's kernel thread: set the cpu up, report
/// readiness and become its idle thread for good.
fn vcpu_main(gd: *mut globaldata, ready: Arc<(Mutex<bool>, std::sync::Condvar)>) {
    // SAFETY: `gd` was prepared by fork_vcpu for this thread only.
    unsafe {
        cpu::set_mycpu(gd);
        (*gd).gd_pid = libc::gettid();
        overflow::arm_kernel_thread();
        idle::gdinit(gd);
        cpu::go_live(gd);
    }
    crate::san::release(gd);
    {
        let (m, cv) = &*ready;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }
    drop(ready);
    // SAFETY: the cpu is set up on this kernel thread, its idle thread
    // current but not yet started.
    unsafe { idle::run_idle(gd) }
}

//! Virtual cpus: the `globaldata` array, `mycpu`, adoption of the calling
//! kernel thread as cpu 0, and the MP lock.
//!
//! `mycpu` is a thread-local pointer of the kernel thread that runs a cpu.
//! It lives in the C shim (`__libcaps_mycpu`, initial-exec TLS) so that the
//! `mycpu`/`curthread` macros of the C headers read it with one
//! instruction; Rust reads it through `libcaps_tls_gd()`.
//!
//! The data symbols that the C headers declare `extern` (`gdary`, `ncpus`,
//! `smp_active`, `mp_lock`) are defined here, next to the code that owns
//! them, with C names.

pub mod evloop;

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::abi::{
    MAXVCPU, TDF_RUNNING, TDF_SYSTHREAD, TDPRI_CRIT, globaldata, lwkt_ipiq, md_thread, thread,
};
use crate::fatal;
use crate::lwkt::thread as lt;

unsafe extern "C" {
    fn libcaps_tls_gd() -> *mut globaldata;
    fn libcaps_tls_set_gd(gd: *mut globaldata);
}

/// An all-zero value of a C structure.
const fn zeroed<T>() -> T {
    // SAFETY: only used for the C structures below, whose all-zero bit
    // pattern is valid (NULL pointers, None function pointers, zeros).
    unsafe { core::mem::zeroed() }
}

/// One `struct globaldata` per possible virtual cpu (`gdary[MAXVCPU]`).
#[unsafe(no_mangle)]
pub static mut gdary: [globaldata; MAXVCPU as usize] = zeroed();

/// Number of virtual cpus started (cpu 0 is the adopted kernel thread).
#[unsafe(no_mangle)]
pub static ncpus: AtomicI32 = AtomicI32::new(1);

/// Non-zero once more than one cpu may run (always 1, as in libcaps V3).
#[unsafe(no_mangle)]
pub static smp_active: AtomicI32 = AtomicI32::new(1);

/// The MP lock: -1 when free, else the id of the owning cpu.
#[unsafe(no_mangle)]
pub static mp_lock: AtomicI32 = AtomicI32::new(-1);

/// The thread standing for `main()` (libcaps' `main_td`).
static mut MAIN_TD: thread = zeroed();

static CPU0_TAKEN: AtomicBool = AtomicBool::new(false);

/// Per-cpu state that C never sees; `gd_vcpu` points to it.
pub struct CpuPriv {
    /// The thread resumed by the idle loop when only system threads remain.
    pub main_td: *mut thread,
    /// `main_td` called `lwkt_exit()`.
    pub main_exited: bool,
    /// Stacks of exited threads that are not cached, unmapped by the idle
    /// thread (their owner cannot unmap the stack it runs on).
    pub zombie_stacks: Vec<md_thread>,
}

/// The private state of `gd`.
///
/// # Safety
/// `gd` must have been set up by [`gdinit_cpu`].
#[inline]
pub unsafe fn cpu_priv(gd: *mut globaldata) -> *mut CpuPriv {
    // SAFETY: gd_vcpu was set to a leaked Box<CpuPriv> by gdinit_cpu.
    unsafe { (*gd).gd_vcpu.cast() }
}

/// The current cpu's `globaldata`; the first call from a program that never
/// called `uthread_init()` adopts the calling kernel thread as cpu 0.
#[inline]
pub fn mycpu() -> *mut globaldata {
    // SAFETY: reads a thread-local pointer in the shim.
    let gd = unsafe { libcaps_tls_gd() };
    if gd.is_null() { adopt() } else { gd }
}

/// The current cpu if one is set up on this kernel thread, else NULL
/// (never adopts).
#[inline]
pub fn mycpu_if_any() -> *mut globaldata {
    // SAFETY: reads a thread-local pointer in the shim.
    unsafe { libcaps_tls_gd() }
}

/// `&gdary[cpu]`.
pub fn globaldata_find(cpu: c_int) -> *mut globaldata {
    // SAFETY: only the address of an element is taken.
    unsafe { &raw mut gdary[cpu as usize] }
}

/// Make the calling kernel thread cpu 0 and its running code the thread
/// `main_td` (`uthread_init()`); idempotent.
#[cold]
pub fn adopt() -> *mut globaldata {
    let gd = mycpu_if_any();
    if !gd.is_null() {
        return gd;
    }
    if CPU0_TAKEN.swap(true, Ordering::AcqRel) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        fatal!(
            "uthread_init",
            "kernel thread {tid} is not a libcaps cpu: cpu 0 already runs on another kernel \
             thread (LWKT calls must come from the thread that started libcaps)"
        );
    }
    let gd = globaldata_find(0);
    // SAFETY: cpu 0 was not taken, so nobody else touches gdary[0] or
    // MAIN_TD; they are static and live forever.
    unsafe {
        gdinit_cpu(gd, 0);
        libcaps_tls_set_gd(gd);
        lt::gdinit(gd);
        let td = &raw mut MAIN_TD;
        lt::init_thread(td, ptr::null_mut(), TDF_RUNNING | TDF_SYSTHREAD, gd, None);
        (*gd).gd_idlethread.td_flags &= !TDF_RUNNING;
        (*gd).gd_curthread = td;
        (*cpu_priv(gd)).main_td = td;
        lt::set_comm(td, c"main".as_ptr());
        // Threads are born in a critical section; main leaves it at once.
        (*td).td_pri -= TDPRI_CRIT;
        get_mplock();
    }
    // SAFETY: gd_slab of the cpu just set up on this kernel thread.
    unsafe { crate::slab::gd::adopt_cpu(&raw mut (*gd).gd_slab) };
    gd
}

/// `mi_gdinit1`: zero `gd` and set its identity, free list, IPI queues and
/// private state.
///
/// # Safety
/// `gd` must be an unused element of `gdary`.
unsafe fn gdinit_cpu(gd: *mut globaldata, cpuid: c_int) {
    let ipiq_size = core::mem::size_of::<lwkt_ipiq>();
    // SAFETY: `gd` is valid for writes; an all-zero globaldata is valid.
    unsafe {
        ptr::write_bytes(gd, 0, 1);
        (*gd).gd_self = gd;
        (*gd).gd_cpuid = cpuid as u32;
        (*gd).gd_cpumask = 1u32 << cpuid;
        (*gd).gd_pid = libc::gettid();
        crate::lwkt::tdqueue::init(&raw mut (*gd).gd_tdfreeq);
        let ipiq = libc::calloc(MAXVCPU as usize, ipiq_size).cast::<lwkt_ipiq>();
        if ipiq.is_null() {
            fatal!(
                "uthread_init",
                "out of memory for the IPI queues of cpu {cpuid}"
            );
        }
        (*gd).gd_ipiq = ipiq;
        let private = Box::new(CpuPriv {
            main_td: ptr::null_mut(),
            main_exited: false,
            zombie_stacks: Vec::new(),
        });
        (*gd).gd_vcpu = Box::into_raw(private).cast();
    }
}

/// `get_mplock()`: count one more hold of the MP lock by the current
/// thread and make sure this cpu owns it.
pub fn get_mplock() {
    let gd = mycpu();
    // SAFETY: `gd` is this cpu's set-up globaldata.
    unsafe {
        let td = (*gd).gd_curthread;
        (*td).td_mpcount += 1;
        acquire_mplock(gd);
    }
}

/// Make this cpu the MP lock owner. With one cpu it is always free or ours.
///
/// # Safety
/// `gd` must be the current cpu.
pub unsafe fn acquire_mplock(gd: *mut globaldata) -> bool {
    // SAFETY: reading the id of the current cpu.
    let me = unsafe { (*gd).gd_cpuid } as i32;
    let cur = mp_lock.load(Ordering::Relaxed);
    cur == me
        || mp_lock
            .compare_exchange(-1, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
}

/// Give up the MP lock if this cpu holds it.
///
/// # Safety
/// `gd` must be the current cpu.
pub unsafe fn release_mplock(gd: *mut globaldata) {
    // SAFETY: reading the id of the current cpu.
    let me = unsafe { (*gd).gd_cpuid } as i32;
    let _ = mp_lock.compare_exchange(me, -1, Ordering::Release, Ordering::Relaxed);
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
            release_mplock(gd);
        }
    }
}

/// `try_mplock()`: 1 and one more hold if the lock could be had, else 0.
pub fn try_mplock() -> c_int {
    let gd = mycpu();
    // SAFETY: `gd` is this cpu's set-up globaldata.
    unsafe {
        if acquire_mplock(gd) {
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
    c_int::from(unsafe { acquire_mplock(mycpu()) })
}

/// True when no cpu runs anything but system threads (the idle loop then
/// resumes `main`).
pub fn only_system_threads_left() -> bool {
    let n = ncpus.load(Ordering::Relaxed);
    (0..n).all(|cpu| {
        let gd = globaldata_find(cpu);
        // SAFETY: gdary elements below ncpus are set up.
        unsafe { (*gd).gd_num_threads == (*gd).gd_sys_threads }
    })
}

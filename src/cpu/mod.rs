//! Virtual cpus: the `globaldata` array, `mycpu`, adoption of the calling
//! kernel thread as cpu 0, `caps_fork_vcpu` (cpus 1.. as kernel threads),
//! the wakeup protocol between cpus, and the MP lock.
//!
//! Every cpu is one kernel thread. Other cpus reach it only through its IPI
//! queue (`ipi`) and the request bits in `gd_reqflags`; a cpu with nothing
//! to run spins briefly (bounded, adaptive) and then sleeps in its event
//! loop, from which [`notify`] wakes it through the loop's eventfd.
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
mod fork;
pub mod ipi;

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::abi::{
    MAXVCPU, TDF_RUNNING, TDF_SYSTHREAD, TDPRI_CRIT, globaldata, lwkt_ipiq, md_thread, thread,
};
use crate::fatal;
use crate::lwkt::thread as lt;

unsafe extern "C" {
    #[cfg(not(target_arch = "x86_64"))]
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

/// The thread standing for `main()`: `extern struct thread main_td;` in
/// `<libcaps/defs.h>`, so `curthread == &main_td` in `main`.
#[unsafe(no_mangle)]
pub static mut main_td: thread = zeroed();

static CPU0_TAKEN: AtomicBool = AtomicBool::new(false);

/// Live threads without `TDF_SYSTHREAD`, on every cpu. Counted when a
/// thread is initialised (by its creator, before it reaches a remote cpu)
/// and uncounted when it exits, so that it never reads 0 while a thread is
/// on its way to another cpu.
pub static USER_THREADS: AtomicI32 = AtomicI32::new(0);

/// Cpus whose idle thread waits for the MP lock (bit per cpu).
static MP_WAITERS: AtomicU32 = AtomicU32::new(0);

/// `gd_reqflags` bit: the cpu's IPI queue has entries.
pub const RQF_IPIQ: c_int = 0x0001;
/// `gd_reqflags` bit: something the idle loop waits for may have changed
/// (the MP lock was released, the last user thread exited).
pub const RQF_WAKE: c_int = 0x0002;

/// Idle spin before sleeping, in `spin_loop` iterations: the budget
/// doubles after a spin that found work and halves after one that did not.
pub const SPIN_MAX: u32 = 1 << 14;
pub const SPIN_MIN: u32 = 32;

/// Polling the cpu's sockets before sleeping: a reply from a process on
/// another core arrives in microseconds, while a sleep and its wakeup cost
/// tens of microseconds on a virtual machine. The budget doubles after a
/// poll that found something and halves (down to the minimum) after one
/// that did not, so a cpu whose sockets are quiet soon stops polling.
pub const SOCK_SPIN_MAX_NS: u32 = 50_000;
pub const SOCK_SPIN_MIN_NS: u32 = 1_000;

/// Cpus asleep in [`wait_for_work`] with nothing pending (low 32 bits),
/// and the number of sleeps ended (high 32 bits, wrapping): a deadlock
/// check that reads the same value before and after looking at every
/// cpu's `gd_reqflags` saw no cpu wake (and clear its requests) meanwhile.
static ASLEEP: AtomicU64 = AtomicU64::new(0);
/// Added to [`ASLEEP`] when a sleep ends: one sleeper less, one ended
/// sleep more.
const ASLEEP_WOKE: u64 = (1 << 32) - 1;
/// Cpus whose kernel thread runs in this process (bit per cpu id): a new
/// cpu counts itself before it can first sleep, while `ncpus` only grows
/// once its creator resumes. After a `fork()` only the forking cpu is left
/// (`cpu::fork`), so this is not always `0..ncpus`.
static LIVE: AtomicU32 = AtomicU32::new(0);

/// Does cpu `cpu` (below `ncpus`) have its kernel thread in this process?
pub fn is_live(cpu: c_int) -> bool {
    LIVE.load(Ordering::Acquire) & (1u32 << cpu) != 0
}

/// The ids of the cpus whose kernel thread runs in this process.
pub fn live_cpus() -> impl Iterator<Item = c_int> {
    let mut m = LIVE.load(Ordering::SeqCst);
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let cpu = m.trailing_zeros() as c_int;
            m &= m - 1;
            cpu
        })
    })
}

/// Per-cpu state that C never sees; `gd_vcpu` points to it.
///
/// Fields marked "owner" are only touched by the cpu's own kernel thread;
/// the others are shared and synchronised.
pub struct CpuPriv {
    /// Owner. The thread resumed by the idle loop when only system threads
    /// remain (cpu 0 only).
    pub main_td: *mut thread,
    /// Owner. `main_td` called `lwkt_exit()`.
    pub main_exited: bool,
    /// Owner. Stacks of exited threads that are not cached, unmapped by the
    /// idle thread (their owner cannot unmap the stack it runs on).
    pub zombie_stacks: Vec<md_thread>,
    /// Shared. Functions queued for this cpu by others (`lwkt_send_ipiq`).
    pub ipiq: Mutex<Vec<ipi::Ipi>>,
    /// Owner. The batch being run (kept to reuse its allocation).
    pub ipi_work: Vec<ipi::Ipi>,
    /// Shared. The cpu sleeps (or is about to) in its event loop.
    pub sleeping: AtomicBool,
    /// Shared, set once before the cpu is published in `ncpus`.
    pub waker: OnceLock<Arc<evloop::Waker>>,
    /// Owner. Current idle spin budget (see [`SPIN_MAX`]).
    pub spin: u32,
    /// Owner. Current budget, in ns, for polling the cpu's sockets before
    /// sleeping (see [`SOCK_SPIN_MAX_NS`]).
    pub sock_spin_ns: u32,
    /// Owner. Idle waits that ended in the event loop (statistics).
    pub sleeps: u64,
    /// Owner. `lwkt_yield` calls, to look at the sockets every so often.
    pub yields: u32,
    /// Shared (written by a cpu handing the MP lock over). With
    /// `LIBCAPS_DEBUG`: the thread whose wait for the MP lock this cpu
    /// traced last, until the cpu gets the lock (one line per wait).
    pub mp_wait_traced: AtomicPtr<thread>,
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
#[inline(always)]
pub fn mycpu() -> *mut globaldata {
    let gd = mycpu_if_any();
    if gd.is_null() { adopt() } else { gd }
}

/// The current cpu if one is set up on this kernel thread, else NULL
/// (never adopts).
///
/// On x86_64 this reads the shim's initial-exec TLS variable
/// `__libcaps_mycpu` inline, exactly as C code compiled with
/// `-ftls-model=initial-exec` does (one `fs`-relative load through the
/// GOT), instead of calling into the shim: the message-port paths ask for
/// the current cpu several times per message.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn mycpu_if_any() -> *mut globaldata {
    let gd: *mut globaldata;
    // SAFETY: `__libcaps_mycpu` is an initial-exec `__thread` pointer
    // defined in shim.c and linked into the same object; the GOT entry
    // holds its offset from the thread pointer (`fs` base). The asm only
    // reads memory; the value changes only through libcaps_tls_set_gd, an
    // opaque call the compiler cannot move this read across.
    unsafe {
        core::arch::asm!(
            "mov {0}, qword ptr [rip + __libcaps_mycpu@GOTTPOFF]",
            "mov {0}, qword ptr fs:[{0}]",
            out(reg) gd,
            options(nostack, readonly, preserves_flags),
        );
    }
    gd
}

/// The current cpu if one is set up on this kernel thread, else NULL
/// (never adopts).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn mycpu_if_any() -> *mut globaldata {
    // SAFETY: reads a thread-local pointer in the shim.
    unsafe { libcaps_tls_gd() }
}

/// `gd_reqflags` of `gd` as an atomic (other cpus set bits in it).
///
/// # Safety
/// `gd` must be an element of `gdary`.
#[inline(always)]
pub unsafe fn reqflags<'a>(gd: *mut globaldata) -> &'a AtomicI32 {
    // SAFETY: gdary is static, the field is an aligned int, and every
    // access to it from Rust goes through this atomic view (C code reads
    // it with a plain load in crit_exit, as it did in DragonFly).
    unsafe { AtomicI32::from_ptr(&raw mut (*gd).gd_reqflags) }
}

/// Set request `bit` on cpu `gd` and wake it if it sleeps.
///
/// # Safety
/// `gd` must be a started cpu.
pub unsafe fn notify(gd: *mut globaldata, bit: c_int) {
    // SAFETY: per the contract; the private state of a started cpu is
    // valid forever and its shared fields are synchronised.
    unsafe {
        reqflags(gd).fetch_or(bit, Ordering::SeqCst);
        let p = &*cpu_priv(gd);
        // Pairs with the sleeper's store of `sleeping` followed by its
        // load of gd_reqflags (both SeqCst): either it sees our bit or we
        // see it sleeping.
        if p.sleeping.load(Ordering::SeqCst)
            && p.sleeping.swap(false, Ordering::SeqCst)
            && let Some(w) = p.waker.get()
        {
            w.wake();
        }
    }
}

/// Wait until a request bit is set on this cpu or an event source is
/// ready: a bounded adaptive spin, then a sleep in the event loop.
///
/// # Safety
/// `gd` is the current cpu and the caller its idle thread.
pub unsafe fn wait_for_work(gd: *mut globaldata) {
    // SAFETY: per the contract (owner fields of the current cpu).
    unsafe {
        let rf = reqflags(gd);
        let p = cpu_priv(gd);
        // Deferred work (batched CAPS writes) must not wait for the spin.
        if evloop::has_idle_hooks() {
            evloop::run_idle_hooks();
            if (*gd).gd_runqmask != 0 {
                return;
            }
        }
        if ncpus.load(Ordering::Relaxed) > 1 {
            let budget = (*p).spin;
            let mut i = 0;
            while i < budget {
                if rf.load(Ordering::Relaxed) != 0 {
                    (*p).spin = (budget * 2).min(SPIN_MAX);
                    return;
                }
                core::hint::spin_loop();
                i += 1;
            }
            (*p).spin = (budget / 2).max(SPIN_MIN);
        }
        if evloop::sources() > 0 && poll_sockets_briefly(p, rf) {
            return;
        }
        (*p).sleeping.store(true, Ordering::SeqCst);
        if rf.load(Ordering::SeqCst) == 0 {
            (*p).sleeps += 1;
            let n = LIVE.load(Ordering::SeqCst).count_ones() as i32;
            let asleep = ASLEEP.fetch_add(1, Ordering::SeqCst) + 1;
            if asleep as u32 == n as u32 && n > 1 && nothing_can_wake(n) {
                lt::report_deadlock_all(n);
            }
            let t0 = std::time::Instant::now();
            let woke = evloop::poll(-1);
            // Before this cpu can clear its requests: a deadlock check
            // running meanwhile sees the value change.
            ASLEEP.fetch_add(ASLEEP_WOKE, Ordering::SeqCst);
            // A socket that became ready soon after the cpu fell asleep
            // would have been caught by polling that long: let the
            // budget grow back to it (it cannot grow from polls alone
            // once it is below the peers' answer time).
            if woke > 0 {
                sock_spin_slept(&mut (*p).sock_spin_ns, t0);
            }
        }
        (*p).sleeping.store(false, Ordering::SeqCst);
    }
}

/// Poll this cpu's sockets for up to its adaptive budget (see
/// [`SOCK_SPIN_MAX_NS`]); true when an event or a request came.
///
/// # Safety
/// `p` is the current cpu's private state.
unsafe fn poll_sockets_briefly(p: *mut CpuPriv, rf: &AtomicI32) -> bool {
    // SAFETY: owner field of the current cpu.
    let budget = unsafe { &mut (*p).sock_spin_ns };
    sock_spin(budget, || {
        i32::from(evloop::poll(0) > 0 || rf.load(Ordering::Relaxed) != 0)
    }) > 0
}

/// The socket poll before a sleep, shared by the cpus' idle loop and the
/// CAPS v2 waits: call `poll0` (a poll with timeout 0) after a
/// `sched_yield` (a peer that shares this core runs and answers first;
/// with the peer on another core it returns at once) until it returns
/// non-zero or `*budget` ns have passed, and return its last result. The
/// budget doubles after a poll that found something (result > 0) and
/// halves (down to [`SOCK_SPIN_MIN_NS`]) after one that found nothing.
pub fn sock_spin(budget: &mut u32, mut poll0: impl FnMut() -> i32) -> i32 {
    let b = *budget;
    let t0 = std::time::Instant::now();
    loop {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
        let r = poll0();
        if r != 0 {
            if r > 0 {
                *budget = b.saturating_mul(2).min(SOCK_SPIN_MAX_NS);
            }
            return r;
        }
        if t0.elapsed().as_nanos() >= u128::from(b) {
            *budget = (b / 2).max(SOCK_SPIN_MIN_NS);
            return 0;
        }
    }
}

/// A sleep begun at `t0` ended with an event: had the poll lasted that
/// long it would have caught it, so the budget grows back to twice the
/// sleep (it cannot grow from polls alone once it is below the peers'
/// answer time).
pub fn sock_spin_slept(budget: &mut u32, t0: std::time::Instant) {
    let slept = t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
    if slept < SOCK_SPIN_MAX_NS {
        *budget = (*budget).max(slept.saturating_mul(2)).min(SOCK_SPIN_MAX_NS);
    }
}

/// Called by the last of the `n` live cpus to fall asleep: is every cpu
/// asleep with no request pending, and no socket anywhere that could wake
/// one? (A cpu woken by a request has it in its `gd_reqflags` until it
/// runs; only a running cpu sends requests, and none runs. A cpu being
/// created keeps its creator awake until it has counted itself.)
fn nothing_can_wake(n: i32) -> bool {
    let before = ASLEEP.load(Ordering::SeqCst);
    if evloop::all_sources() != 0 || before as u32 != n as u32 {
        return false;
    }
    // A cpu counted in `before` may wake (its request set), clear its
    // requests and send new ones while the flags are read one by one:
    // only a pass during which no sleep ended is conclusive (a check cut
    // short is made again when the cpus fall asleep again).
    live_cpus().all(|cpu| {
        // SAFETY: live cpus are started.
        unsafe { reqflags(globaldata_find(cpu)).load(Ordering::SeqCst) == 0 }
    }) && ASLEEP.load(Ordering::SeqCst) == before
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
    fork::register();
    let gd = globaldata_find(0);
    // New threads start with the FP control state the package starts with,
    // on stacks of the size asked for then; errno is switched per thread.
    crate::lwkt::arch::capture_fp_start();
    crate::lwkt::arch::errno_init();
    crate::lwkt::stack::configure();
    crate::lwkt::overflow::arm_kernel_thread();
    // SAFETY: cpu 0 was not taken, so nobody else touches gdary[0] or
    // main_td; they are static and live forever.
    unsafe {
        crate::lwkt::san::init();
        gdinit_cpu(gd, 0);
        libcaps_tls_set_gd(gd);
        lt::gdinit(gd);
        let td = &raw mut main_td;
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
    // SAFETY: gd is set up; only this thread sets its waker.
    let _ = unsafe { (*cpu_priv(gd)).waker.set(evloop::waker()) };
    LIVE.fetch_or(1, Ordering::SeqCst);
    gd
}

/// Serialises `caps_fork_vcpu` calls.
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `caps_fork_vcpu()`: start the next virtual cpu on a new kernel thread
/// (its own globaldata, run queues, idle thread, event loop and slab
/// state) and return its id; -1 once `MAXVCPU` cpus exist or when the
/// kernel refuses a new thread.
pub fn fork_vcpu() -> c_int {
    // Cpu 0 must exist first (a program may fork before any LWKT call).
    mycpu();
    let _g = fork_lock();
    let n = ncpus.load(Ordering::Acquire);
    if n >= MAXVCPU {
        return -1;
    }
    let gd = globaldata_find(n);
    // SAFETY: gdary[n] is not in use (ncpus only grows, under FORK_LOCK;
    // in a fork() child it was reset to the forking cpu's id + 1, and the
    // parent's cpus above it do not run here).
    unsafe { gdinit_cpu(gd, n) };
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
        unsafe { gdfree_cpu(gd) };
        return -1;
    }
    let (m, cv) = &*ready;
    let mut started = m.lock().unwrap_or_else(|e| e.into_inner());
    while !*started {
        started = cv.wait(started).unwrap_or_else(|e| e.into_inner());
    }
    drop(started);
    crate::san::acquire(gd);
    let bit = 1u32 << n;
    for cpu in live_cpus().filter(|&c| c != n) {
        let o = globaldata_find(cpu);
        // SAFETY: started cpus; the masks are only updated here, under
        // FORK_LOCK, through atomic views.
        unsafe {
            AtomicU32::from_ptr(&raw mut (*o).gd_other_cpus).fetch_or(bit, Ordering::Relaxed)
        };
    }
    // SAFETY: as above; the new cpu reads its own mask only after this.
    unsafe {
        let others = LIVE.load(Ordering::SeqCst) & !bit;
        AtomicU32::from_ptr(&raw mut (*gd).gd_other_cpus).store(others, Ordering::Relaxed);
    }
    ncpus.store(n + 1, Ordering::Release);
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
        libcaps_tls_set_gd(gd);
        (*gd).gd_pid = libc::gettid();
        crate::lwkt::overflow::arm_kernel_thread();
        lt::gdinit(gd);
        crate::slab::gd::adopt_cpu(&raw mut (*gd).gd_slab);
        let _ = (*cpu_priv(gd)).waker.set(evloop::waker());
    }
    // SAFETY: set up above by this thread.
    LIVE.fetch_or(unsafe { (*gd).gd_cpumask }, Ordering::SeqCst);
    crate::san::release(gd);
    {
        let (m, cv) = &*ready;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }
    drop(ready);
    // SAFETY: the cpu is set up on this kernel thread, its idle thread
    // current but not yet started.
    unsafe { lt::run_idle(gd) }
}

/// Undo [`gdinit_cpu`] for a cpu that never started.
///
/// # Safety
/// `gd` was set up by gdinit_cpu and never published.
unsafe fn gdfree_cpu(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        libc::free((*gd).gd_ipiq.cast());
        drop(Box::from_raw((*gd).gd_vcpu.cast::<CpuPriv>()));
        ptr::write_bytes(gd, 0, 1);
    }
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
            ipiq: Mutex::new(Vec::new()),
            ipi_work: Vec::new(),
            sleeping: AtomicBool::new(false),
            waker: OnceLock::new(),
            spin: SPIN_MAX,
            sock_spin_ns: SOCK_SPIN_MAX_NS,
            sleeps: 0,
            yields: 0,
            mp_wait_traced: AtomicPtr::new(ptr::null_mut()),
        });
        (*gd).gd_vcpu = Box::into_raw(private).cast();
    }
}

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
        if acquire_mplock(gd) {
            return;
        }
        lt::wait_for_mplock(gd, td);
    }
}

/// Make this cpu the MP lock owner if it is free or already ours.
///
/// # Safety
/// `gd` must be the current cpu.
#[inline(always)]
pub unsafe fn acquire_mplock(gd: *mut globaldata) -> bool {
    // SAFETY: reading the id of the current cpu.
    let me = unsafe { (*gd).gd_cpuid } as i32;
    // Acquire: the lock may be ours because another cpu handed it over
    // (`mplock_handoff`); what that cpu's threads did under it happens
    // before what ours do now. (A plain load on x86_64.)
    let cur = mp_lock.load(Ordering::Acquire);
    if cur == me {
        return true;
    }
    let got = cur == -1
        && mp_lock
            .compare_exchange(-1, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
    if got {
        // SAFETY: per the contract.
        unsafe { mplock_taken(gd) };
    }
    got
}

/// This cpu just took the MP lock from nobody: tell ThreadSanitizer, and
/// end the traced wait of one of its threads. Out of line: the
/// scheduler's pick stays small.
///
/// # Safety
/// `gd` must be a started cpu.
#[cold]
#[inline(never)]
unsafe fn mplock_taken(gd: *mut globaldata) {
    crate::san::acquire(&mp_lock);
    if crate::diag::debug_on() {
        // SAFETY: per the contract; the field is atomic.
        unsafe {
            (*cpu_priv(gd))
                .mp_wait_traced
                .store(ptr::null_mut(), Ordering::Relaxed)
        };
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
            lt::name(td)
        );
    }
}

/// Give up the MP lock if this cpu holds it, and wake the cpus waiting
/// for it.
///
/// # Safety
/// `gd` must be the current cpu.
#[inline(always)]
pub unsafe fn release_mplock(gd: *mut globaldata) {
    // SAFETY: reading the id of the current cpu.
    let me = unsafe { (*gd).gd_cpuid } as i32;
    if mp_lock.load(Ordering::Relaxed) == me {
        crate::san::release_out_of_line(&mp_lock);
        // SeqCst: pairs with a waiter that registers in MP_WAITERS and
        // then looks at the lock again.
        mp_lock.store(-1, Ordering::SeqCst);
        if MP_WAITERS.load(Ordering::SeqCst) != 0 {
            wake_mplock_waiters();
        }
    }
}

#[cold]
fn wake_mplock_waiters() {
    let mut w = MP_WAITERS.load(Ordering::SeqCst);
    while w != 0 {
        let cpu = w.trailing_zeros() as c_int;
        w &= w - 1;
        // SAFETY: only started cpus register as waiters.
        unsafe { notify(globaldata_find(cpu), RQF_WAKE) };
    }
}

/// The idle thread of `gd` found runnable threads that all need the MP
/// lock, which another cpu holds: register for a wakeup on release.
/// Returns false when the lock became free meanwhile (retry at once).
///
/// # Safety
/// `gd` must be the current cpu.
pub unsafe fn mplock_wait_register(gd: *mut globaldata) -> bool {
    // SAFETY: reading the id of the current cpu.
    let bit = 1u32 << unsafe { (*gd).gd_cpuid };
    MP_WAITERS.fetch_or(bit, Ordering::SeqCst);
    if mp_lock.load(Ordering::SeqCst) == -1 {
        MP_WAITERS.fetch_and(!bit, Ordering::SeqCst);
        return false;
    }
    true
}

/// Is some cpu waiting for the MP lock? One relaxed load: the whole cost
/// of `lwkt_yield`'s hand-over check when nobody waits.
#[inline(always)]
pub fn mplock_wanted() -> bool {
    MP_WAITERS.load(Ordering::Relaxed) != 0
}

/// `lwkt_yield` while another cpu waits for the MP lock: if this cpu holds
/// it, give it directly to the next waiting cpu (after this one, round
/// robin) and wake that cpu. The yielding thread stays runnable and waits
/// for the lock like any thread that needs it. (Releasing it would not
/// do: this cpu's scheduler would take it back before the waiter woke.)
///
/// # Safety
/// `gd` must be the current cpu.
#[cold]
pub unsafe fn mplock_handoff(gd: *mut globaldata) {
    // SAFETY: reading the id of the current cpu.
    let me = unsafe { (*gd).gd_cpuid };
    let waiters = MP_WAITERS.load(Ordering::SeqCst) & !(1u32 << me);
    if waiters == 0 {
        return;
    }
    let after = waiters & !(2u32 << me).wrapping_sub(1);
    let to = if after != 0 { after } else { waiters }.trailing_zeros() as c_int;
    if mp_lock
        .compare_exchange(me as i32, to, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok()
    {
        let gto = globaldata_find(to);
        if crate::diag::debug_on() {
            // SAFETY: a started cpu; the field is atomic.
            unsafe {
                (*cpu_priv(gto))
                    .mp_wait_traced
                    .store(ptr::null_mut(), Ordering::Relaxed)
            };
        }
        // SAFETY: only started cpus register as waiters.
        unsafe { notify(gto, RQF_WAKE) };
    }
}

/// Undo [`mplock_wait_register`].
///
/// # Safety
/// `gd` must be the current cpu.
pub unsafe fn mplock_wait_unregister(gd: *mut globaldata) {
    // SAFETY: reading the id of the current cpu.
    let bit = 1u32 << unsafe { (*gd).gd_cpuid };
    MP_WAITERS.fetch_and(!bit, Ordering::SeqCst);
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

/// `cpu_get_initial_mplock()`: take the lock word for this cpu (no hold
/// counted), waiting for it with `sched_yield` if another cpu has it.
pub fn cpu_get_initial_mplock() {
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu.
    while !unsafe { acquire_mplock(gd) } {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// True when no cpu runs anything but system threads (the idle loop then
/// resumes `main`).
#[inline]
pub fn only_system_threads_left() -> bool {
    USER_THREADS.load(Ordering::Acquire) == 0
}

/// The cpu whose idle loop resumes `main`.
pub const MAIN_CPU: c_int = 0;

//! Virtual cpus: the `globaldata` array, `mycpu_if_any`, the set-up of a
//! cpu's globaldata and private state, the wakeup protocol between cpus,
//! the idle wait with its deadlock check, and the MP lock word.
//!
//! This is a leaf below `lwkt`: it knows nothing of threads beyond the
//! fields of `struct thread` it stores. Starting cpus (cpu 0's adoption,
//! `caps_fork_vcpu`), per-thread MP lock holds and the idle loop are in
//! `src/lwkt/boot.rs`, `mplock.rs` and `idle.rs`, which call down into
//! this module.
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
pub mod fork;
pub mod ipi;

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::abi::{MAXVCPU, globaldata, lwkt_ipiq, md_thread, thread};
use crate::fatal;

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

/// Claim cpu 0 for the calling kernel thread: true the first time (until
/// a `fork()` child forgets every cpu), false once another thread has it.
pub fn claim_cpu0() -> bool {
    !CPU0_TAKEN.swap(true, Ordering::AcqRel)
}

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
    /// Owner. Current spin on shared-memory probes before the socket
    /// poll (see [`probe_spin`]).
    pub probe_spin_ns: u32,
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

/// What [`wait_for_work`] found.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// A request bit was set, an event source was ready or the wait was
    /// cut short: look for work again.
    Work,
    /// This cpu was the last of the `n` live cpus to fall asleep, with no
    /// request pending anywhere and no event source that could wake any
    /// of them: nothing will ever run again (the caller reports it and
    /// aborts; the cpu is left counted as asleep).
    Deadlock(i32),
}

/// Wait until a request bit is set on this cpu or an event source is
/// ready: a bounded adaptive spin, then a sleep in the event loop. Returns
/// [`Idle::Deadlock`] instead of sleeping when no cpu could ever wake.
///
/// # Safety
/// `gd` is the current cpu and the caller its idle thread.
pub unsafe fn wait_for_work(gd: *mut globaldata) -> Idle {
    // SAFETY: per the contract (owner fields of the current cpu).
    unsafe {
        let rf = reqflags(gd);
        let p = cpu_priv(gd);
        // Deferred work (batched CAPS writes) must not wait for the spin.
        if evloop::has_idle_hooks() {
            evloop::run_idle_hooks();
            if (*gd).gd_runqmask != 0 {
                return Idle::Work;
            }
        }
        if ncpus.load(Ordering::Relaxed) > 1 {
            let budget = (*p).spin;
            let mut i = 0;
            while i < budget {
                if rf.load(Ordering::Relaxed) != 0 {
                    (*p).spin = (budget * 2).min(SPIN_MAX);
                    return Idle::Work;
                }
                core::hint::spin_loop();
                i += 1;
            }
            (*p).spin = (budget / 2).max(SPIN_MIN);
        }
        if evloop::has_probes()
            && probe_spin(&mut (*p).probe_spin_ns, || {
                rf.load(Ordering::Relaxed) != 0 || evloop::poll_probes() > 0
            })
        {
            return Idle::Work;
        }
        if evloop::sources() > 0 && poll_sockets_briefly(p, rf) {
            return Idle::Work;
        }
        (*p).sleeping.store(true, Ordering::SeqCst);
        if rf.load(Ordering::SeqCst) == 0 {
            (*p).sleeps += 1;
            let n = LIVE.load(Ordering::SeqCst).count_ones() as i32;
            let asleep = ASLEEP.fetch_add(1, Ordering::SeqCst) + 1;
            if asleep as u32 == n as u32 && n > 1 && nothing_can_wake(n) {
                return Idle::Deadlock(n);
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
    Idle::Work
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

/// Spinning on shared-memory rings before the socket poll: a reply
/// written by a peer on another core is seen within tens of nanoseconds,
/// while the socket poll's `sched_yield` costs a system call per look. The
/// budget doubles after a spin that found something and halves after one
/// that did not (down to a floor): with the peer on the same core, whose
/// reply cannot come while we spin, it soon costs next to nothing.
pub const PROBE_SPIN_MAX_NS: u32 = 4_000;
pub const PROBE_SPIN_MIN_NS: u32 = 50;

/// Call `ready` (no system call) until it says yes or `*budget` ns
/// passed; the budget adapts as [`PROBE_SPIN_MAX_NS`] says.
pub fn probe_spin(budget: &mut u32, mut ready: impl FnMut() -> bool) -> bool {
    let b = *budget;
    let t0 = std::time::Instant::now();
    loop {
        for _ in 0..16 {
            if ready() {
                *budget = b.saturating_mul(2).min(PROBE_SPIN_MAX_NS);
                return true;
            }
            core::hint::spin_loop();
        }
        if t0.elapsed().as_nanos() >= u128::from(b) {
            *budget = (b / 2).max(PROBE_SPIN_MIN_NS);
            return false;
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

/// Make `gd` the current cpu of the calling kernel thread (what
/// [`mycpu_if_any`] returns from now on).
///
/// # Safety
/// `gd` is a cpu set up by [`gdinit_cpu`] for this kernel thread only.
#[inline]
pub unsafe fn set_mycpu(gd: *mut globaldata) {
    // SAFETY: per the contract; the shim stores a thread-local pointer.
    unsafe { libcaps_tls_set_gd(gd) }
}

/// The last steps of a cpu's set-up, on its own kernel thread: its slab
/// state, the waker of its event loop, and its bit in the live set (from
/// here on it may sleep and be counted by the deadlock check).
///
/// # Safety
/// `gd` is the current cpu, set up by [`gdinit_cpu`]; only this thread
/// sets its waker.
pub unsafe fn go_live(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        crate::slab::gd::adopt_cpu(&raw mut (*gd).gd_slab);
        let _ = (*cpu_priv(gd)).waker.set(evloop::waker());
        LIVE.fetch_or((*gd).gd_cpumask, Ordering::SeqCst);
    }
}

/// Publish cpu `n` (`gd`), which has gone live: the other cpus' masks
/// gain it, its own lists them, and `ncpus` counts it.
///
/// # Safety
/// Under [`fork_lock`]; `gd` is `gdary[n]` and `n == ncpus`.
pub unsafe fn publish(gd: *mut globaldata, n: c_int) {
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
}

/// Serialises `caps_fork_vcpu` calls.
static FORK_LOCK: Mutex<()> = Mutex::new(());

/// Take the lock that serialises `caps_fork_vcpu` (and is held across
/// `fork()`).
pub fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Undo [`gdinit_cpu`] for a cpu that never started.
///
/// # Safety
/// `gd` was set up by gdinit_cpu and never published.
pub unsafe fn gdfree_cpu(gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        libc::free((*gd).gd_ipiq.cast());
        drop(Box::from_raw((*gd).gd_vcpu.cast::<CpuPriv>()));
        ptr::write_bytes(gd, 0, 1);
    }
}

/// `mi_gdinit1`: zero `gd` and set its identity, IPI queues and private
/// state (its thread lists are set up by `gdinit` in `src/lwkt/idle.rs`).
///
/// # Safety
/// `gd` must be an unused element of `gdary` (or, in a unit test, a
/// private `globaldata` that is never published).
pub unsafe fn gdinit_cpu(gd: *mut globaldata, cpuid: c_int) {
    let ipiq_size = core::mem::size_of::<lwkt_ipiq>();
    // SAFETY: `gd` is valid for writes; an all-zero globaldata is valid.
    unsafe {
        ptr::write_bytes(gd, 0, 1);
        (*gd).gd_self = gd;
        (*gd).gd_cpuid = cpuid as u32;
        (*gd).gd_cpumask = 1u32 << cpuid;
        (*gd).gd_pid = libc::gettid();
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
            probe_spin_ns: PROBE_SPIN_MAX_NS,
            sleeps: 0,
            yields: 0,
            mp_wait_traced: AtomicPtr::new(ptr::null_mut()),
        });
        (*gd).gd_vcpu = Box::into_raw(private).cast();
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

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
//! rings and queue (`ipi`, `ipiring`) and the request bits in
//! `gd_reqflags`; a cpu with nothing
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

mod busy;
mod coloc;
pub mod evloop;
pub mod fork;
pub mod ipi;
pub mod ipiring;

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

/// Idle spin before sleeping, in ns: a request from another cpu that
/// comes within the budget is taken without a sleep and its wakeup (tens
/// of microseconds on a virtual machine, far more on a loaded one). The
/// budget doubles after a spin that found work and halves (down to the
/// minimum) after one that did not; a sleep that a request ended sooner
/// than the maximum lets it grow back to twice that sleep, so a cpu that
/// went to sleep once is not stuck sleeping at every wait (a wait for a
/// peer that itself slept is longer than a halved budget).
pub const SPIN_MAX_NS: u32 = 50_000;
pub const SPIN_MIN_NS: u32 = 2_000;
/// `spin_loop` turns between two looks at the clock in the idle spin
/// (about a µs). Each look also yields the core (`sched_yield`): the cpu
/// whose request the spin waits for may be a kernel thread queued behind
/// it on the same core (the machine's scheduler put both there, or the
/// machine is oversubscribed), which would otherwise only run once the
/// spin gives up; alone on its core, the spinner is back at once.
const SPIN_TURNS_PER_CLOCK: u32 = 32;

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
    /// Shared. Functions queued for this cpu by others (`lwkt_send_ipiq`)
    /// that their ring to it could not take (`ipi`).
    pub ipiq: Mutex<Vec<ipi::Ipi>>,
    /// Owner. The batch being run (kept to reuse its allocation).
    pub ipi_work: Vec<ipi::Ipi>,
    /// Shared. `ipiq` may hold entries (set under its lock by senders,
    /// cleared under it by the cpu): the cpu's look at its IPIs skips
    /// the lock when it is false.
    pub ipiq_used: AtomicBool,
    /// Shared. The cpu sleeps (or is about to) in its event loop.
    pub sleeping: AtomicBool,
    /// Shared, set once before the cpu is published in `ncpus`.
    pub waker: OnceLock<Arc<evloop::Waker>>,
    /// Owner. Current idle spin budget, in ns (see [`SPIN_MAX_NS`]).
    pub spin: u32,
    /// Shared (written by the owner). The core its kernel thread ran on
    /// when its idle spin last began (-1: not yet known); see `coloc`.
    pub core: AtomicI32,
    /// Owner. How often an idle spin beside a peer on its core ends in a
    /// move (`coloc`).
    pub coloc: coloc::Backoff,
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
/// `gd` must be an element of `gdary` (or a unit test's private cpu).
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
/// `gd` must be a started cpu (or a unit test's private cpu, set up by
/// [`gdinit_cpu`]).
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
        let mut beside = false;
        if ncpus.load(Ordering::Relaxed) > 1 {
            let core = coloc::note_core(&*p);
            let me = (*gd).gd_cpuid as c_int;
            let backoff = &mut (*p).coloc;
            // Cpu 0 (`main`'s thread) never moves: its peer does.
            match idle_spin(&mut (*p).spin, rf, ipiring::cpu_index(gd), || {
                me != 0 && backoff.move_now(coloc::peer_on_my_core(me, core))
            }) {
                Spin::Found => return Idle::Work,
                Spin::Beside if coloc::move_off(core) => return Idle::Work,
                Spin::Beside => beside = true,
                Spin::Timeout => {}
            }
        }
        // Beside a peer on this core and unable to move, every further
        // spin or yield only delays it: straight to the sleep (which polls
        // the sockets too).
        if !beside
            && evloop::has_probes()
            && probe_spin(&mut (*p).probe_spin_ns, || {
                rf.load(Ordering::Relaxed) != 0 || evloop::poll_probes() > 0
            })
        {
            return Idle::Work;
        }
        if !beside && evloop::sources() > 0 && poll_sockets_briefly(p, rf) {
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
            if rf.load(Ordering::Relaxed) != 0 {
                spin_slept(&mut (*p).spin, t0);
            }
        }
        (*p).sleeping.store(false, Ordering::SeqCst);
    }
    Idle::Work
}

/// How an idle spin ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spin {
    /// A request bit or a ring entry came.
    Found,
    /// The budget ran out.
    Timeout,
    /// Still waiting at the first look at the clock, `beside` said to
    /// stop: another cpu shares this one's core (`coloc`), and this one
    /// should move.
    Beside,
}

/// The idle spin: wait up to `*budget` ns for a request bit in `rf` or
/// an entry in the rings of cpu `me` (`ipiring`, whose senders then need
/// not set a bit). Still waiting at its first look at the clock (about a
/// µs), it asks `beside` once whether to stop and move to another core
/// (see `coloc`). Adapts the budget (see [`SPIN_MAX_NS`]); a spin stopped by
/// `beside` leaves it as it is.
fn idle_spin(
    budget: &mut u32,
    rf: &AtomicI32,
    me: Option<usize>,
    mut beside: impl FnMut() -> bool,
) -> Spin {
    let b = *budget;
    // The clock is first read after the first turns, not on entry: most
    // waits of a ping-pong between cpus end before (a clock read costs
    // some 20 ns, a tenth of a round trip's share here).
    let mut t0 = None;
    let ready = || rf.load(Ordering::Relaxed) != 0 || me.is_some_and(ipiring::pending);
    if let Some(t) = me {
        ipiring::start_polling(t);
    }
    let end = 'spin: loop {
        for _ in 0..SPIN_TURNS_PER_CLOCK {
            if ready() {
                break 'spin Spin::Found;
            }
            core::hint::spin_loop();
        }
        let t0 = match t0 {
            Some(t0) => t0,
            None => {
                if beside() {
                    break Spin::Beside;
                }
                *t0.insert(std::time::Instant::now())
            }
        };
        if t0.elapsed().as_nanos() >= u128::from(b) {
            break Spin::Timeout;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    };
    // An entry a sender left untold (it saw this cpu polling) counts as
    // found, even when the spin had ended without it.
    if me.is_some_and(ipiring::stop_polling) || end == Spin::Found {
        *budget = b.saturating_mul(2).min(SPIN_MAX_NS);
        return Spin::Found;
    }
    if end == Spin::Timeout {
        *budget = (b / 2).max(SPIN_MIN_NS);
    }
    end
}

/// A sleep begun at `t0` was ended by a request: a spin that long would
/// have caught it, so the idle spin budget grows back to twice the sleep
/// (bounded by [`SPIN_MAX_NS`]).
fn spin_slept(budget: &mut u32, t0: std::time::Instant) {
    grow_to_sleep(budget, t0, SPIN_MAX_NS);
}

/// `*budget` grows to twice the sleep begun at `t0` when that sleep was
/// shorter than `max`.
fn grow_to_sleep(budget: &mut u32, t0: std::time::Instant, max: u32) {
    let slept = t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
    if slept < max {
        *budget = (*budget).max(slept.saturating_mul(2)).min(max);
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

/// A `sched_yield` that came back later than this let a task run a time
/// slice (the scheduler's slices are 0.75-3 ms; a peer that shares the
/// core answers a batch in tens of µs): the core is shared with work
/// that is not our peer's, and every further yield gives it another
/// slice.
pub const YIELD_SLICE_NS: u32 = 250_000;

/// `sched_yield`, timed: true when it came back within
/// [`YIELD_SLICE_NS`] (nothing but, perhaps, our peer ran meanwhile).
pub fn yield_briefly() -> bool {
    let t0 = std::time::Instant::now();
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
    t0.elapsed().as_nanos() < u128::from(YIELD_SLICE_NS)
}

/// The socket poll before a sleep, shared by the cpus' idle loop and the
/// CAPS v2 waits: call `poll0` (a poll with timeout 0) after a
/// `sched_yield` (a peer that shares this core runs and answers first;
/// with the peer on another core it returns at once) until it returns
/// non-zero or `*budget` ns have passed, and return its last result. The
/// budget doubles after a poll that found something (result > 0) and
/// halves (down to [`SOCK_SPIN_MIN_NS`]) after one that found nothing.
/// On an oversubscribed machine ([`busy::oversubscribed`]) it returns 0
/// at once, without a poll: the caller sleeps (measured with 128 CAPS
/// clients on 2 cores: spinning clients left the service 5-13% of a
/// core, and p99 grew to 4-16 ms). A yield that let another task run a
/// slice ([`yield_briefly`] false: a task that is not the peer shares
/// the core) ends the spin after its poll, and the budget halves even if
/// that poll found something: a sleep costs the waiter tens of µs, each
/// further yield a slice (a v2 pipelined pair beside one busy process
/// made 500 yields of 2 ms each per 100,000 replies: issue 17).
pub fn sock_spin(budget: &mut u32, poll0: impl FnMut() -> i32) -> i32 {
    if busy::oversubscribed() {
        return 0;
    }
    sock_spin_with(budget, yield_briefly, poll0)
}

/// [`sock_spin`] with the yield given (`yield_core`: [`yield_briefly`]).
fn sock_spin_with(
    budget: &mut u32,
    mut yield_core: impl FnMut() -> bool,
    mut poll0: impl FnMut() -> i32,
) -> i32 {
    let b = *budget;
    let t0 = std::time::Instant::now();
    loop {
        let brief = yield_core();
        let r = poll0();
        if r != 0 {
            if r > 0 {
                *budget = if brief {
                    b.saturating_mul(2).min(SOCK_SPIN_MAX_NS)
                } else {
                    (b / 2).max(SOCK_SPIN_MIN_NS)
                };
            }
            return r;
        }
        if !brief || t0.elapsed().as_nanos() >= u128::from(b) {
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
/// passed; the budget adapts as [`PROBE_SPIN_MAX_NS`] says. On an
/// oversubscribed machine ([`busy::oversubscribed`]) `ready` is asked
/// once, and the budget is left as it is.
pub fn probe_spin(budget: &mut u32, mut ready: impl FnMut() -> bool) -> bool {
    if busy::oversubscribed() {
        return ready();
    }
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
    grow_to_sleep(budget, t0, SOCK_SPIN_MAX_NS);
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
            ipiq_used: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            waker: OnceLock::new(),
            spin: SPIN_MAX_NS,
            core: AtomicI32::new(-1),
            coloc: coloc::Backoff::default(),
            sock_spin_ns: SOCK_SPIN_MAX_NS,
            probe_spin_ns: PROBE_SPIN_MAX_NS,
            sleeps: 0,
            yields: 0,
            mp_wait_traced: AtomicPtr::new(ptr::null_mut()),
        });
        (*gd).gd_vcpu = Box::into_raw(private).cast();
    }
}

/// An MP lock as the scheduler moves it: the owner word (-1 when free,
/// else the id of the owning cpu), the bits of the cpus waiting for it,
/// and how the cpu with an id is found to wake it. [`MPLOCK`] is the
/// process's (the word is C's `mp_lock`); a unit test's private cpus
/// share one of their own, so that no test moves the process's. Passed by
/// value into functions inlined into the scheduler, where every field is
/// a constant: the code is that of plain globals.
#[derive(Clone, Copy)]
pub struct MpLock<'a> {
    pub owner: &'a AtomicI32,
    pub waiters: &'a AtomicU32,
    /// The cpu with an id (for the process's lock, `globaldata_find`).
    pub cpu: fn(c_int) -> *mut globaldata,
}

/// The process's MP lock: [`mp_lock`] and the cpus waiting for it.
pub static MPLOCK: MpLock<'static> = MpLock {
    owner: &mp_lock,
    waiters: &MP_WAITERS,
    cpu: globaldata_find,
};

impl MpLock<'_> {
    /// Make `gd` the owner if the lock is free or already `gd`'s.
    ///
    /// # Safety
    /// `gd` is the current cpu (or a private cpu of this lock in a unit
    /// test).
    #[inline(always)]
    pub unsafe fn acquire(self, gd: *mut globaldata) -> bool {
        // SAFETY: reading the id of the cpu.
        let me = unsafe { (*gd).gd_cpuid } as i32;
        // Acquire: the lock may be ours because another cpu handed it
        // over (`handoff`); what that cpu's threads did under it happens
        // before what ours do now. (A plain load on x86_64.)
        let cur = self.owner.load(Ordering::Acquire);
        if cur == me {
            return true;
        }
        let got = cur == -1
            && self
                .owner
                .compare_exchange(-1, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        if got {
            // SAFETY: per the contract.
            unsafe { self.taken(gd) };
        }
        got
    }

    /// `gd` just took the lock from nobody: tell ThreadSanitizer, end
    /// `gd`'s registration as a waiter ([`MpLock::wait_note`]) and the
    /// traced wait of one of its threads. Out of line: the
    /// scheduler's pick stays small.
    ///
    /// # Safety
    /// `gd` must be a cpu set up by [`gdinit_cpu`].
    #[cold]
    #[inline(never)]
    unsafe fn taken(self, gd: *mut globaldata) {
        crate::san::acquire(self.owner);
        // SAFETY: per the contract.
        unsafe { self.wait_done(gd) };
        if crate::diag::debug_on() {
            // SAFETY: per the contract; the field is atomic.
            unsafe {
                (*cpu_priv(gd))
                    .mp_wait_traced
                    .store(ptr::null_mut(), Ordering::Relaxed)
            };
        }
    }

    /// Give up the lock if `gd` holds it, and wake the cpus waiting for
    /// it.
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    #[inline(always)]
    pub unsafe fn release(self, gd: *mut globaldata) {
        // SAFETY: reading the id of the cpu.
        let me = unsafe { (*gd).gd_cpuid } as i32;
        if self.owner.load(Ordering::Relaxed) == me {
            crate::san::release_out_of_line(self.owner);
            // SeqCst: pairs with a waiter that registers and then looks
            // at the lock again.
            self.owner.store(-1, Ordering::SeqCst);
            if self.waiters.load(Ordering::SeqCst) != 0 {
                self.wake_waiters();
            }
        }
    }

    #[cold]
    fn wake_waiters(self) {
        let mut w = self.waiters.load(Ordering::SeqCst);
        while w != 0 {
            let cpu = w.trailing_zeros() as c_int;
            w &= w - 1;
            // SAFETY: only started cpus (or a test's private cpus of this
            // lock) register as waiters.
            unsafe { notify((self.cpu)(cpu), RQF_WAKE) };
        }
    }

    /// The idle thread of `gd` found runnable threads that all need the
    /// lock, which another cpu holds: register for a wakeup on release.
    /// Returns false when the lock became free meanwhile (retry at once).
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    pub unsafe fn wait_register(self, gd: *mut globaldata) -> bool {
        // SAFETY: reading the id of the cpu.
        let bit = 1u32 << unsafe { (*gd).gd_cpuid };
        self.waiters.fetch_or(bit, Ordering::SeqCst);
        if self.owner.load(Ordering::SeqCst) == -1 {
            self.waiters.fetch_and(!bit, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// A thread of `gd` (the current cpu) waits for the lock, which
    /// another cpu holds, while `gd` runs others: register as a waiter
    /// (the holder's next yield hands the lock over), until `gd` gets the
    /// lock ([`MpLock::taken`], or [`MpLock::handoff`] to it). No wakeup
    /// is due: `gd` does not sleep (an idle cpu uses
    /// [`MpLock::wait_register`]).
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    pub unsafe fn wait_note(self, gd: *mut globaldata) {
        // SAFETY: reading the id of the cpu.
        let bit = 1u32 << unsafe { (*gd).gd_cpuid };
        if self.waiters.load(Ordering::Relaxed) & bit == 0 {
            self.waiters.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// `gd` has the lock: it waits no more ([`MpLock::wait_note`]).
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    #[inline(always)]
    unsafe fn wait_done(self, gd: *mut globaldata) {
        // SAFETY: reading the id of the cpu.
        let bit = 1u32 << unsafe { (*gd).gd_cpuid };
        if self.waiters.load(Ordering::Relaxed) & bit != 0 {
            self.waiters.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// Undo [`MpLock::wait_register`].
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    pub unsafe fn wait_unregister(self, gd: *mut globaldata) {
        // SAFETY: reading the id of the cpu.
        let bit = 1u32 << unsafe { (*gd).gd_cpuid };
        self.waiters.fetch_and(!bit, Ordering::SeqCst);
    }

    /// Is some cpu waiting for the lock? One relaxed load: the whole cost
    /// of `lwkt_yield`'s hand-over check when nobody waits.
    #[inline(always)]
    pub fn wanted(self) -> bool {
        self.waiters.load(Ordering::Relaxed) != 0
    }

    /// `lwkt_yield` while another cpu waits for the lock: if `gd` holds
    /// it, give it directly to the next waiting cpu (after `gd`, round
    /// robin) and wake that cpu. The yielding thread stays runnable and
    /// waits for the lock like any thread that needs it. (Releasing it
    /// would not do: this cpu's scheduler would take it back before the
    /// waiter woke.)
    ///
    /// # Safety
    /// As for [`MpLock::acquire`].
    #[cold]
    pub unsafe fn handoff(self, gd: *mut globaldata) {
        // SAFETY: reading the id of the cpu.
        let me = unsafe { (*gd).gd_cpuid };
        let waiters = self.waiters.load(Ordering::SeqCst) & !(1u32 << me);
        if waiters == 0 {
            return;
        }
        let after = waiters & !(2u32 << me).wrapping_sub(1);
        let to = if after != 0 { after } else { waiters }.trailing_zeros() as c_int;
        if self
            .owner
            .compare_exchange(me as i32, to, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            let gto = (self.cpu)(to);
            // SAFETY: a started cpu (or a test's private cpu of this
            // lock): it has the lock now.
            unsafe { self.wait_done(gto) };
            if crate::diag::debug_on() {
                // SAFETY: a started cpu; the field is atomic.
                unsafe {
                    (*cpu_priv(gto))
                        .mp_wait_traced
                        .store(ptr::null_mut(), Ordering::Relaxed)
                };
            }
            // SAFETY: only started cpus (or a test's private cpus of this
            // lock) register as waiters.
            unsafe { notify(gto, RQF_WAKE) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sock_spin_with` from `budget`, its yields `brief` or not, its
    /// polls finding something at the `found_at`th look (0: never):
    /// (result, looks, budget after).
    fn spin(budget: u32, brief: bool, found_at: u32) -> (i32, u32, u32) {
        let mut b = budget;
        let mut looks = 0;
        let r = sock_spin_with(
            &mut b,
            || brief,
            || {
                looks += 1;
                i32::from(looks == found_at)
            },
        );
        (r, looks, b)
    }

    /// A spin still waiting at its first look at the clock, told that a
    /// peer shares its core, stops there (to move): asked once, its
    /// budget left as it is (a spin that runs out halves it). Told no, it
    /// runs its budget out without asking again; a request already there
    /// is found before any question.
    #[test]
    fn an_idle_spin_beside_a_peer_on_its_core_stops_to_move() {
        let rf = AtomicI32::new(0);
        let mut asked = 0;
        let mut b = SPIN_MAX_NS;
        let end = idle_spin(&mut b, &rf, None, || {
            asked += 1;
            true
        });
        assert_eq!((end, asked, b), (Spin::Beside, 1, SPIN_MAX_NS));
        let mut b = 2 * SPIN_MIN_NS;
        let end = idle_spin(&mut b, &rf, None, || {
            asked += 1;
            false
        });
        assert_eq!((end, asked, b), (Spin::Timeout, 2, SPIN_MIN_NS));
        rf.store(RQF_WAKE, Ordering::Relaxed);
        let end = idle_spin(&mut b, &rf, None, || {
            asked += 1;
            true
        });
        assert_eq!((end, asked, b), (Spin::Found, 2, 2 * SPIN_MIN_NS));
    }

    /// A yield that let another task run a slice ends the spin at once,
    /// with the budget halved, whatever its poll found; yields that come
    /// straight back spin on (issue 17: a v2 wait yielded 2 ms slices to
    /// a busy neighbour).
    #[test]
    fn a_slow_yield_ends_the_socket_spin() {
        // Slow yields, nothing found: one look, not a budget's worth.
        assert_eq!(spin(20_000_000, false, 0), (0, 1, 10_000_000));
        // Slow yield, found: the budget does not grow.
        assert_eq!(spin(8_000, false, 1), (1, 1, 4_000));
        // Brief yields: on until something is found, then it grows.
        assert_eq!(spin(8_000, true, 3), (1, 3, 16_000));
    }
}

//! Giving back what other cpus freed into the zones of a cpu that does not
//! come back to take it.
//!
//! A chunk freed by another cpu goes on its owner's remote-free list
//! (`zone::free_remote`); the owner takes the list back when one of its
//! size classes runs dry. An owner that sleeps, or that keeps allocating
//! from classes that never run dry, would hold that memory for ever. So a
//! background thread, the *reclaimer*, looks at every cpu state's list
//! every [`PERIOD`] while any list is non-empty: a list found non-empty
//! twice in a row with no drain by its owner in between is taken back for
//! the owner, and every zone that is then fully free (and the owner's
//! cache of free zones) is unmapped. A chunk freed into an owner that does
//! not drain it itself is therefore given back within two periods plus the
//! time of one pass (documented in docs/compat.md). The thread is started
//! by the first remote free and sleeps without a timeout while every list
//! is empty.
//!
//! The owner works on its zones with plain loads and stores. The
//! reclaimer excludes it without a lock or an atomic read-modify-write on
//! the owner's side, the asymmetric pattern `account` already uses: the
//! owner brackets every piece of work on its zones with `sl_Counting = 1
//! ... = 0` (a [`Window`]) and reads `sl_Flags` inside (its fast paths
//! test that word for `SLGD_SHARED` anyway); the reclaimer sets
//! [`SLGD_PARKED`] there, runs `membarrier()` (a full barrier on every cpu running a
//! thread of the process), and then either sees the owner's window open
//! (it waits for it to close, briefly, or gives up) or knows the owner will
//! see the flag at its next window. The reclaimer leaves the flag set
//! after its pass; the owner's next window sees it and takes its state
//! back ([`unpark`]: the reclaimer's lock, on the slow path).

use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicUsize, Ordering, compiler_fence,
    fence,
};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::abi::{SLChunk, SLGlobalData};

use super::{account, calls, zone};

/// `sl_Flags`: the state is parked; its zones are the reclaimer's until
/// the owner takes it back.
pub const SLGD_PARKED: i32 = 0x0002;

/// How often the reclaimer looks at the lists while one is non-empty.
pub const PERIOD: Duration = Duration::from_millis(100);

/// The owner's window on its zones (and on its home types' counters, see
/// `account`): `sl_Counting` is 1 while it is open.
pub struct Window {
    /// The cpu state (not `&sl_Counting`: the fast paths address the word
    /// from the state pointer they keep anyway, one register less).
    gd: *mut SLGlobalData,
}

/// `sl_Counting` of the cpu state `gd`.
///
/// # Safety
/// `gd` is a cpu state (never freed: thread states are pooled, cpu
/// states live until exit).
#[inline(always)]
unsafe fn busy<'a>(gd: *mut SLGlobalData) -> &'a AtomicI32 {
    // SAFETY: caller contract.
    unsafe { AtomicI32::from_ptr(addr_of_mut!((*gd).sl_Counting)) }
}

/// Open the window. The caller then checks [`flags`] (or [`parked`])
/// before it touches its zones.
///
/// # Safety
/// `gd` is the calling thread's cpu state; no window of it is open.
#[inline(always)]
pub unsafe fn open(gd: *mut SLGlobalData) -> Window {
    // SAFETY: caller contract.
    unsafe { busy(gd) }.store(1, Ordering::Relaxed);
    // Only the compiler may not move the loads that follow above the
    // store; the other side's membarrier() orders the cpu.
    compiler_fence(Ordering::SeqCst);
    Window { gd }
}

impl Window {
    /// The cpu state whose window this is.
    #[inline(always)]
    pub fn gd(&self) -> *mut SLGlobalData {
        self.gd
    }

    /// Close the window: everything done inside is visible to a reclaimer
    /// (or a cpu taking a home type over) that sees it closed.
    #[inline(always)]
    pub fn close(self) {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `open` was given a cpu state, which is never freed.
        unsafe { busy(self.gd) }.store(0, Ordering::Release);
    }
}

/// `sl_Flags`, written by the state's setup and (`SLGD_PARKED`) by the
/// reclaimer and the owner taking its state back.
///
/// # Safety
/// `gd` is a cpu state.
#[inline(always)]
unsafe fn flag_word<'a>(gd: *mut SLGlobalData) -> &'a AtomicI32 {
    // SAFETY: caller contract.
    unsafe { AtomicI32::from_ptr(addr_of_mut!((*gd).sl_Flags)) }
}

/// The state's `SLGD_*` flags. Read inside a window: without
/// `SLGD_PARKED`, the zones are the owner's until the window closes.
///
/// # Safety
/// `gd` is a cpu state.
#[inline(always)]
pub unsafe fn flags(gd: *mut SLGlobalData) -> i32 {
    // SAFETY: caller contract.
    unsafe { flag_word(gd) }.load(Ordering::Relaxed)
}

/// The state's *key* (`sl_Pad0[2]`, a word of the allocator): its own
/// address while no flag is set in `sl_Flags`, else [`KEY_FLAGGED`].
/// The fast paths compare it, read inside the window like the flags,
/// with a zone's owner or a type's owner word: one compare says "this
/// cpu's, and no flag set" (two instructions less than the flag word's
/// load and test beside a compare with the state's address). Written
/// by [`set_key`] after every change of the flags.
pub const KEY_FLAGGED: usize = 1;

/// The key's word.
///
/// # Safety
/// `gd` is a cpu state.
#[inline(always)]
unsafe fn key_word<'a>(gd: *mut SLGlobalData) -> &'a AtomicUsize {
    // SAFETY: caller contract; a `c_long` has a word's size and alignment.
    unsafe { AtomicUsize::from_ptr(addr_of_mut!((*gd).sl_Pad0[2]).cast()) }
}

/// The state's key (see [`KEY_FLAGGED`]). Read inside a window, as
/// [`flags`].
///
/// # Safety
/// `gd` is a cpu state.
#[inline(always)]
pub unsafe fn key(gd: *mut SLGlobalData) -> usize {
    // SAFETY: caller contract.
    unsafe { key_word(gd) }.load(Ordering::Relaxed)
}

/// Set the key from the flags, after they changed (by the writer of the
/// flags, before anything that publishes the change: `park`'s
/// `membarrier()`, the owner's next window): by the state's setup, and
/// by [`mark_parked`] for every later change.
///
/// # Safety
/// `gd` is a cpu state.
#[inline]
pub unsafe fn set_key(gd: *mut SLGlobalData) {
    // SAFETY: caller contract.
    unsafe {
        let k = if flags(gd) == 0 {
            gd as usize
        } else {
            KEY_FLAGGED
        };
        key_word(gd).store(k, Ordering::Relaxed);
    }
}

/// Set (`on`) or clear `SLGD_PARKED`, and the key with it (see
/// [`set_key`]).
///
/// # Safety
/// `gd` is a cpu state; the caller holds `REAP`.
#[inline]
unsafe fn mark_parked(gd: *mut SLGlobalData, on: bool) {
    // SAFETY: caller contract.
    unsafe {
        let flag = flag_word(gd);
        if on {
            flag.fetch_or(SLGD_PARKED, Ordering::Relaxed);
        } else {
            flag.fetch_and(!SLGD_PARKED, Ordering::Relaxed);
        }
        set_key(gd);
    }
}

/// Is the state parked? (See [`flags`].)
///
/// # Safety
/// `gd` is a cpu state.
#[inline(always)]
pub unsafe fn parked(gd: *mut SLGlobalData) -> bool {
    // SAFETY: caller contract.
    let f = unsafe { flags(gd) };
    f & SLGD_PARKED != 0
}

/// Open a window in which the state is the caller's, taking it back from
/// the reclaimer first if it is parked.
///
/// # Safety
/// As [`open`].
#[inline]
pub unsafe fn own(gd: *mut SLGlobalData) -> Window {
    loop {
        // SAFETY: caller contract.
        let w = unsafe { open(gd) };
        // SAFETY: caller contract.
        if !unsafe { parked(gd) } {
            return w;
        }
        w.close();
        // SAFETY: caller contract.
        unsafe { unpark(gd) };
    }
}

/// Take the state back from the reclaimer (after its pass, or while it
/// waits for this thread's window and then gives up). The lock orders
/// everything the reclaimer did before what the owner does next.
///
/// # Safety
/// `gd` is the calling thread's cpu state, no window of it open.
#[cold]
#[inline(never)]
pub unsafe fn unpark(gd: *mut SLGlobalData) {
    let _e = KeepErrno::new();
    let _g = reap_lock();
    // SAFETY: caller contract; `REAP` held.
    unsafe { mark_parked(gd, false) };
}

/// Restores the caller's `errno` when dropped: the slow paths here wait
/// on a lock or start a thread, which may set it, and `slab_malloc` and
/// `slab_free` set it only for a NULL they return.
struct KeepErrno(i32);

impl KeepErrno {
    fn new() -> Self {
        // SAFETY: `__errno_location` returns this thread's errno.
        KeepErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Held by the reclaimer during a pass and by an owner taking its state
/// back; taken around `fork()` (see `slab::fork`), so no pass is half done
/// in the child.
static REAP: Mutex<()> = Mutex::new(());

pub(super) fn reap_lock() -> MutexGuard<'static, ()> {
    REAP.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every cpu state ever set up, linked through `sl_NextState` (states are
/// never freed).
static ALL: AtomicPtr<SLGlobalData> = AtomicPtr::new(ptr::null_mut());

/// Put a new cpu state on the list the reclaimer walks.
///
/// # Safety
/// `gd` is a cpu state being set up, never freed, not yet on the list.
pub unsafe fn track(gd: *mut SLGlobalData) {
    // SAFETY: caller contract: nobody else uses `gd` yet.
    unsafe {
        seen(gd).store(-1, Ordering::Relaxed);
        let mut head = ALL.load(Ordering::Relaxed);
        loop {
            (*gd).sl_NextState = head;
            match ALL.compare_exchange_weak(head, gd, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// # Safety
/// `gd` is a cpu state.
unsafe fn remote<'a>(gd: *mut SLGlobalData) -> &'a AtomicPtr<SLChunk> {
    // SAFETY: caller contract.
    unsafe { AtomicPtr::from_ptr(addr_of_mut!((*gd).sl_Remote)) }
}

/// How many times the state's remote-free list was drained.
///
/// # Safety
/// `gd` is a cpu state.
pub unsafe fn drains<'a>(gd: *mut SLGlobalData) -> &'a AtomicI64 {
    // SAFETY: caller contract; `long` is 64 bits on Linux.
    unsafe { AtomicI64::from_ptr(addr_of_mut!((*gd).sl_Drains).cast()) }
}

/// # Safety
/// `gd` is a cpu state.
unsafe fn seen<'a>(gd: *mut SLGlobalData) -> &'a AtomicI64 {
    // SAFETY: caller contract; `long` is 64 bits on Linux.
    unsafe { AtomicI64::from_ptr(addr_of_mut!((*gd).sl_Seen).cast()) }
}

/// The reclaimer sleeps until woken.
const IDLE: u32 = 0;
/// The reclaimer looks at the lists every period.
const ARMED: u32 = 1;
static STATE: AtomicU32 = AtomicU32::new(IDLE);
/// The reclaimer thread exists (or is being started).
static STARTED: AtomicBool = AtomicBool::new(false);

/// A remote free found the owner's list empty: make sure the reclaimer
/// looks at it. A load unless the reclaimer sleeps. The caller's push was
/// a sequentially consistent compare-and-swap, so either this load sees
/// the reclaimer idle or the reclaimer's last look sees the push.
#[inline(always)]
pub fn pushed_first() {
    if STATE.load(Ordering::SeqCst) == IDLE {
        kick();
    }
}

/// Some cpu has `ks_calls` counts to fold (`calls`): make sure the
/// reclaimer comes. The caller's flag store was sequentially consistent,
/// like the push of [`pushed_first`].
pub fn wake() {
    if STATE.load(Ordering::SeqCst) == IDLE {
        kick();
    }
}

#[cold]
#[inline(never)]
fn kick() {
    if STATE.swap(ARMED, Ordering::SeqCst) != IDLE {
        return;
    }
    let _e = KeepErrno::new();
    if !STARTED.swap(true, Ordering::AcqRel) {
        start();
    }
    futex(libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
}

/// `futex(&STATE, op, val)`.
fn futex(op: i32, val: u32) {
    // SAFETY: STATE is a live, aligned 32-bit word; no timeout pointer.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            STATE.as_ptr(),
            op,
            val,
            ptr::null::<libc::timespec>(),
        );
    }
}

/// Start the reclaimer with every signal blocked (it must not take a
/// signal meant for the program's threads).
#[cold]
fn start() {
    // SAFETY: plain signal-mask calls on local sets.
    let old = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let r = std::thread::Builder::new()
        .name("slab-reclaim".into())
        .spawn(run);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    if let Err(e) = r {
        crate::warn!(
            "slab_free",
            "cannot start the thread that gives back memory freed into idle threads' zones ({e}); tried again at the next such free"
        );
        STARTED.store(false, Ordering::Release);
        STATE.store(IDLE, Ordering::SeqCst);
    }
}

/// The reclaimer.
fn run() {
    loop {
        std::thread::sleep(PERIOD);
        // Both: `ks_calls` counts are folded even while lists wait.
        if pass() | calls::pass() {
            continue;
        }
        // Nothing left to look at: sleep until a remote free finds an
        // empty list or a cpu has calls to fold. Look once more after
        // saying so, for a free or a count that saw the reclaimer armed
        // just before.
        STATE.store(IDLE, Ordering::SeqCst);
        if any_pending() || calls::any_dirty() {
            STATE.store(ARMED, Ordering::SeqCst);
            continue;
        }
        while STATE.load(Ordering::SeqCst) == IDLE {
            futex(libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, IDLE);
        }
    }
}

/// Does any state have a non-empty remote-free list?
fn any_pending() -> bool {
    let mut gd = ALL.load(Ordering::Acquire);
    while !gd.is_null() {
        // SAFETY: states on the list are never freed; the link is written
        // once before the state is published.
        unsafe {
            if !remote(gd).load(Ordering::SeqCst).is_null() {
                return true;
            }
            gd = (*gd).sl_NextState;
        }
    }
    false
}

/// `sl_Seen` of a state the last pass parked: if it is still parked at
/// the next pass (its owner did not come back), its cache of free zones
/// goes too.
const CACHE_NEXT: i64 = -2;

/// One look at every state; true if a later pass has work to do.
pub fn pass() -> bool {
    let _g = reap_lock();
    let mut waiting = false;
    let mut gd = ALL.load(Ordering::Acquire);
    while !gd.is_null() {
        // SAFETY: as in `any_pending`; `REAP` held.
        unsafe {
            let next = (*gd).sl_NextState;
            let idle = parked(gd);
            let s = seen(gd).load(Ordering::Relaxed);
            let all = idle && s == CACHE_NEXT;
            let now = if remote(gd).load(Ordering::SeqCst).is_null() {
                if all {
                    zone::give_back(gd);
                }
                -1
            } else {
                let d = drains(gd).load(Ordering::Relaxed);
                if !idle && s != d {
                    // First seen, or drained since: the owner is active.
                    d
                } else if !reclaim(gd, all) {
                    // The owner was busy: try again at the next pass.
                    d
                } else if all {
                    -1
                } else {
                    CACHE_NEXT
                }
            };
            seen(gd).store(now, Ordering::Relaxed);
            waiting |= now != -1 || !remote(gd).load(Ordering::Relaxed).is_null();
            gd = next;
        }
    }
    waiting
}

/// Park `gd` (if it is not already) and take back its remote frees:
/// zones that become fully free are cached or unmapped as a free by the
/// owner would do; with `all`, every fully free zone is unmapped, the
/// cache included. False if its owner stayed inside a window (it is busy
/// in the allocator; the next pass tries again).
///
/// # Safety
/// `gd` is a cpu state; the caller holds `REAP`.
unsafe fn reclaim(gd: *mut SLGlobalData, all: bool) -> bool {
    // SAFETY: caller contract.
    unsafe {
        if !park(gd) {
            return false;
        }
        if all {
            zone::give_back(gd);
        } else {
            zone::drain_remote(gd);
        }
    }
    true
}

/// Park `gd` unless it is parked already: false if its owner stayed
/// inside a window, or if `membarrier()` failed. Once true, the zones of `gd` are the caller's until
/// it lets go of `REAP`.
///
/// # Safety
/// `gd` is a cpu state; the caller holds `REAP`.
unsafe fn park(gd: *mut SLGlobalData) -> bool {
    // SAFETY: caller contract.
    if !unsafe { parked(gd) } {
        // SAFETY: caller contract.
        unsafe { mark_parked(gd, true) };
        // Without the barrier the owner may miss the flag while this side
        // misses its open window: give up (its memory stays with it).
        // SAFETY: caller contract.
        if !account::barrier_all() || !unsafe { window_closes(gd) } {
            // SAFETY: caller contract.
            unsafe { mark_parked(gd, false) };
            return false;
        }
        #[cfg(test)]
        PARKS.fetch_add(1, Ordering::Relaxed);
    }
    fence(Ordering::Acquire);
    true
}

/// Park `gd` and keep it parked (as a pass does while it works) until
/// the guard is dropped. For tests.
///
/// # Safety
/// `gd` is a cpu state.
#[cfg(test)]
pub unsafe fn hold_parked(gd: *mut SLGlobalData) -> Option<MutexGuard<'static, ()>> {
    let g = reap_lock();
    // SAFETY: caller contract; `REAP` held.
    unsafe { park(gd) }.then_some(g)
}

/// Park `gd` and take back its remote frees now, as a pass does for a
/// state it chose. For tests.
///
/// # Safety
/// `gd` is a cpu state.
#[cfg(test)]
pub unsafe fn reclaim_now(gd: *mut SLGlobalData) -> bool {
    let _g = reap_lock();
    // SAFETY: caller contract; `REAP` held.
    unsafe { reclaim(gd, false) }
}

/// States parked so far (tests check that a race was exercised).
#[cfg(test)]
pub static PARKS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
std::thread_local! {
    /// Set by a unit test on a thread that runs passes: each chunk such a
    /// pass puts back on a free list takes a few microseconds (between
    /// reading the list head and writing it), so an owner that touched its
    /// zones without taking its state back would race with the pass.
    pub static STRETCH: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// A test hook of `zone::free_local` (see [`STRETCH`]).
#[cfg(test)]
pub fn stretch() {
    if STRETCH.with(|s| s.get()) {
        for _ in 0..500 {
            core::hint::spin_loop();
        }
    }
}

/// Wait a little for the owner's window to close.
///
/// # Safety
/// `gd` is a cpu state.
unsafe fn window_closes(gd: *mut SLGlobalData) -> bool {
    // SAFETY: caller contract.
    let busy = unsafe { AtomicI32::from_ptr(addr_of_mut!((*gd).sl_Counting)) };
    for i in 0..1000 {
        if busy.load(Ordering::Acquire) == 0 {
            return true;
        }
        if i < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    false
}

/// In a `fork()` child: no reclaimer runs there; the next remote free
/// starts one. The states of the parent's other threads (every state but
/// `me`, the forking thread's) are then given back like those of sleeping
/// owners, except one whose window was open at the fork: its thread was
/// in the middle of work on its zones, which may be half done in the
/// child. That state leaves the list, so the child's reclaimer neither
/// waits for a window that never closes nor touches those zones; what is
/// freed into them stays on its remote-free list (a leak bounded by the
/// zones that thread held). Called by the one thread of the child, so
/// nothing else walks or extends the list.
pub fn after_fork_child(me: *mut SLGlobalData) {
    calls::after_fork_child();
    STARTED.store(false, Ordering::Relaxed);
    STATE.store(IDLE, Ordering::Relaxed);
    let mut link = ALL.as_ptr();
    // SAFETY: states on the list are never freed; the child has one
    // thread, which is here, so the plain walk and unlink race with
    // nothing.
    unsafe {
        while !(*link).is_null() {
            let gd = *link;
            let busy = AtomicI32::from_ptr(addr_of_mut!((*gd).sl_Counting));
            if gd != me && busy.load(Ordering::Relaxed) != 0 {
                *link = (*gd).sl_NextState;
            } else {
                link = addr_of_mut!((*gd).sl_NextState);
            }
        }
    }
}

/// Is the reclaimer asleep (no list left to look at)? For tests.
#[cfg(test)]
pub fn idle() -> bool {
    STATE.load(Ordering::SeqCst) == IDLE
}

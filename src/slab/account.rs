//! `ks_calls` and the `ks_limit` check (`ks_loosememuse`): two fields of a
//! `malloc_type` that every cpu allocating the type updates, kept exact
//! without an atomic read-modify-write on the local path.
//!
//! `ks_loosememuse` is the loose sum the limit check starts from (as in
//! DragonFly: it grows by every charge and is set from the exact
//! `ks_memuse` sums when it reaches the limit, or while it is 0, so a
//! limit set on a type already in use counts what it holds). A type without a limit
//! (`ks_limit` left 0, so `UNLIMITED`) never needs the check, and its loose
//! sum is not kept: one store less per allocation, and no contended
//! cache line when several cpus allocate the type.
//!
//! `ks_reserved[1]` says who writes them:
//!
//! * `OWNER_NONE`: nobody yet. The first cpu that allocates the type
//!   claims it (one compare-and-swap, once per type).
//! * a cpu's `SLGlobalData` address, its *home*: only that cpu allocates
//!   the type, and it updates both fields with plain loads and stores.
//! * `OWNER_SWITCHING`: another cpu allocated the type and is taking it
//!   over. The type then moves to that cpu (its new home), at most
//!   `MAX_MOVES` times (`ks_reserved[2]` counts), so a type one thread
//!   sets up and another then uses keeps plain counting; after that it
//!   becomes
//! * `OWNER_SHARED`: several cpus allocate the type. From then on each
//!   cpu counts its calls in counters of its own, folded into `ks_calls`
//!   later (`calls`; an atomic add on `ks_calls` for a cpu whose
//!   statistics slot is shared), and charges the loose sum of a type with
//!   a limit with an atomic add. A type registered with `TAG_UNCHECKED`
//!   (the tags ran out) has no per-cpu counters: it becomes
//!   `OWNER_SHARED_ATOMIC` instead and counts with an atomic add.
//!
//! Leaving a home must not race with an update the home is doing with
//! plain stores. The home brackets each update with `sl_Counting = 1 ...
//! = 0` and re-reads the owner word in between; the cpu that takes the type
//! over writes `OWNER_SWITCHING` and then calls
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which runs a full memory
//! barrier on every cpu running a thread of this process. After it, either
//! the home's `sl_Counting = 1` is visible (so it waits until it is 0
//! again, and the home's last plain store is visible with it), or the home
//! reads the new owner word and takes the shared path itself. This is the
//! asymmetric Dekker pattern: the home pays a compiler barrier, the rare
//! move pays a system call (about 0.4 µs on a 2-cpu machine). If the
//! kernel refuses the membarrier registration, types go straight to
//! shared mode.

use core::ffi::c_long;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicIsize, AtomicUsize, Ordering};

use crate::abi::{SLGlobalData, malloc_type};

use super::gd::SLGD_SHARED;
use super::types::{TAG_UNCHECKED, totals};
use super::{calls, reclaim};

/// `types::UNLIMITED` as the atomics here read it.
const UNLIMITED: isize = super::types::UNLIMITED as isize;

const OWNER_NONE: usize = 0;
/// Not a small number that a C program might leave in `ks_reserved[1]`,
/// and odd (never a cpu state's address): `slab::malloc` trusts an owner
/// word that is this or its own state as a registered type's (the slow
/// path sets both only after registration; registration and
/// `slab_malloc_uninit` reset the word).
pub(super) const OWNER_SHARED: usize = 0x5ab7_ae01;
/// Shared, for a type whose calls cannot go to per-cpu counters (one
/// registered with `TAG_UNCHECKED`, which has no row of its own there):
/// counted with an atomic add on `ks_calls`. A word of its own rather
/// than a test of the tag on `slab::malloc`'s fast path, which takes
/// only `OWNER_SHARED` for the per-cpu count.
pub(super) const OWNER_SHARED_ATOMIC: usize = 0x5ab7_ae03;
const OWNER_SWITCHING: usize = 2;

/// The word of a shared type `ty`: [`OWNER_SHARED`], or
/// [`OWNER_SHARED_ATOMIC`] for a type with `TAG_UNCHECKED`.
///
/// # Safety
/// `ty` is a valid registered type.
unsafe fn shared_word(ty: *mut malloc_type) -> usize {
    // SAFETY: caller contract.
    match unsafe { super::types::registered_tag(ty) } {
        Some(TAG_UNCHECKED) => OWNER_SHARED_ATOMIC,
        _ => OWNER_SHARED,
    }
}

/// Is `o` an owner word of shared mode?
pub(super) fn is_shared(o: usize) -> bool {
    o == OWNER_SHARED || o == OWNER_SHARED_ATOMIC
}

/// A type moves to the cpu allocating it at most this many times; the
/// next time another cpu allocates it, it becomes shared.
const MAX_MOVES: usize = 4;

/// Home mode is allowed: the membarrier registration succeeded.
static HOME_OK: AtomicBool = AtomicBool::new(false);

/// Register for private expedited membarriers (once, from `slab::init`).
pub fn init() {
    // SAFETY: membarrier takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    HOME_OK.store(r == 0, Ordering::Relaxed);
}

/// A full memory barrier on every cpu running a thread of this process;
/// false if there was none. The private expedited command was registered
/// by [`init`] (home mode exists only when that succeeded; the
/// registration survives `fork`); should it fail anyway, the global
/// command does the same, slower; if both fail (no `membarrier()` at
/// all: a seccomp filter, an old kernel), say so once and return false:
/// the caller must not rely on the barrier (`reclaim::park` gives up).
#[cold]
pub(super) fn barrier_all() -> bool {
    #[cfg(test)]
    let cmds = if FAIL_BARRIER.with(|f| f.get()) {
        &[][..]
    } else {
        &[
            libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
            libc::MEMBARRIER_CMD_GLOBAL,
        ][..]
    };
    #[cfg(not(test))]
    let cmds = &[
        libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED,
        libc::MEMBARRIER_CMD_GLOBAL,
    ];
    for &cmd in cmds {
        // SAFETY: membarrier takes no pointers.
        if unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) } == 0 {
            return true;
        }
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        crate::warn!(
            "slab_malloc",
            "membarrier failed: a call racing with a malloc type's switch to shared counting may go uncounted in ks_calls, and memory freed into idle threads' zones is not given back"
        );
    }
    false
}

#[cfg(test)]
std::thread_local! {
    /// Set by a unit test: this thread's [`barrier_all`] fails, as where
    /// `membarrier()` is missing (a seccomp filter, an old kernel).
    pub static FAIL_BARRIER: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Forget who wrote the type's counters (registration: the word may hold
/// anything a C program left in `ks_reserved[1]`).
///
/// # Safety
/// `ty` is a valid `malloc_type` no cpu allocates from yet.
pub unsafe fn reset(ty: *mut malloc_type) {
    // SAFETY: caller contract.
    unsafe {
        owner(ty).store(OWNER_NONE, Ordering::Relaxed);
        moves(ty).store(0, Ordering::Relaxed);
    }
}

/// How many times the type moved from one home to another
/// (`ks_reserved[2]`).
///
/// # Safety
/// `ty` is a valid `malloc_type`.
unsafe fn moves<'a>(ty: *mut malloc_type) -> &'a AtomicUsize {
    // SAFETY: caller contract; `long` and `usize` have the same size and
    // alignment on Linux.
    unsafe { AtomicUsize::from_ptr(addr_of_mut!((*ty).ks_reserved[2]).cast()) }
}

/// # Safety
/// `ty` is a valid `malloc_type`.
#[inline(always)]
unsafe fn owner<'a>(ty: *mut malloc_type) -> &'a AtomicUsize {
    // SAFETY: caller contract; `long` and `usize` have the same size and
    // alignment on Linux.
    unsafe { AtomicUsize::from_ptr(addr_of_mut!((*ty).ks_reserved[1]).cast()) }
}

/// # Safety
/// `p` points to a live `long` field.
#[inline(always)]
unsafe fn long<'a>(p: *mut c_long) -> &'a AtomicIsize {
    // SAFETY: caller contract; same size and alignment.
    unsafe { AtomicIsize::from_ptr(p.cast()) }
}

/// Unit tests set this to a type whose home's updates (between the load
/// and the store of `ks_calls`) they stretch to a few microseconds, so a
/// move or switch that did not wait for the update would lose counts.
#[cfg(test)]
pub static WIDEN: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
fn widen_window(ty: *mut malloc_type) {
    if WIDEN.load(Ordering::Relaxed) == ty as usize {
        for _ in 0..2000 {
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
std::thread_local! {
    /// Set by a unit test: this thread never becomes a type's home, as a
    /// cpu with a shared statistics slot, or any cpu when `membarrier()`
    /// is missing (its first allocation of a type makes it shared).
    pub static NO_HOME: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    /// Set by a unit test: spin this many times in `slab::malloc`'s fast
    /// path between its loads of the type's registration word and owner
    /// word, so that another thread's first use can fall in between.
    pub static GAP: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

#[cfg(test)]
#[inline(never)]
fn widen_gap() {
    for _ in 0..GAP.with(|g| g.get()) {
        core::hint::spin_loop();
    }
}

/// The home's update window: `sl_Counting` set around the update (the
/// cpu's [`reclaim::Window`]), the owner word read again inside it (see
/// the module comment). Returns a value for `update` to run under `then`
/// when `gd` is still the home; a cpu taking the type over waits for the
/// window to close.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type;
/// no window of `gd` is open.
#[inline(always)]
unsafe fn as_home(gd: *mut SLGlobalData, ty: *mut malloc_type) -> HomeWindow {
    // SAFETY: caller contract.
    let w = unsafe { reclaim::open(gd) };
    HomeWindow {
        // SAFETY: caller contract.
        home: unsafe { owner(ty) }.load(Ordering::Relaxed) == gd as usize,
        w,
    }
}

/// An open home window (see [`as_home`]); closed by `then`.
struct HomeWindow {
    w: reclaim::Window,
    home: bool,
}

impl HomeWindow {
    /// Run `update` if the caller is the home, then close the window.
    #[inline(always)]
    fn then<R>(self, update: impl FnOnce() -> R) -> Option<R> {
        let r = if self.home { Some(update()) } else { None };
        self.w.close();
        r
    }
}

/// The local fast path of [`account`]: when the calling cpu is the
/// type's home and the loose sum leaves room, count the call and charge
/// `bytes` with plain stores and return true. Otherwise change nothing and
/// return false: the caller goes to [`account`].
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type;
/// no window of `gd` is open.
#[inline(always)]
pub unsafe fn home_charge(gd: *mut SLGlobalData, ty: *mut malloc_type, bytes: usize) -> bool {
    // SAFETY: caller contract.
    let charged = unsafe { as_home(gd, ty) }.then(|| unsafe {
        charge(
            ty,
            long(addr_of_mut!((*ty).ks_limit)).load(Ordering::Relaxed),
            bytes,
        )
    });
    charged == Some(true)
}

/// What [`count_open`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Nothing: the caller takes the full path (`account`).
    No,
    /// The call is counted (and charged, for a home).
    Yes,
    /// The call is counted; `calls::count_noted` must follow.
    Note,
}

/// The fast paths of the accounting, for a caller that has opened `gd`'s
/// window itself (`slab::malloc`, which also takes the chunk inside it;
/// no call, so its fast path stays a leaf), with `flags` its `sl_Flags`:
///
/// * this cpu is the type's home (no flag set: a home's slot is its
///   own): [`home_charge`];
/// * the type is *shared* (several cpus allocate it; `OWNER_SHARED`, so
///   not `TAG_UNCHECKED`), without a limit, and this cpu's statistics
///   slot is its own (no flag set): count the
///   call in this cpu's counters (`calls::count_quiet`).
///
/// Otherwise nothing changes and the answer is [`Counted::No`]. The
/// owner word and the limit are loaded once for both. With the answer
/// comes the tag of the type (the low byte of its registration word),
/// which is its tag when the answer is not [`Counted::No`].
///
/// The owner word is read first (acquire), the registration word after
/// it: a cpu sets the owner word to itself or to `OWNER_SHARED` only
/// after it saw the type registered, so a cpu that sees either sees the
/// registration too. Read the other way round, a cpu could read the word
/// of an unregistered type (0), then another cpu register the type and
/// make it shared (its first allocation, when it may not be a home), and
/// the first cpu count its call under tag 0 (lost from `ks_calls`) and tag
/// its chunk 0 (`slab_free` would report a chunk never allocated).
///
/// # Safety
/// `gd` is the calling thread's cpu state with its window open, `ty` a
/// valid type, registered or not.
#[inline(always)]
pub unsafe fn count_open(
    gd: *mut SLGlobalData,
    ty: *mut malloc_type,
    bytes: usize,
    flags: i32,
) -> (Counted, u8) {
    // SAFETY: caller contract: live fields of `ty` and `gd`.
    unsafe {
        // The flags first: then neither they nor a combination of them
        // stays in a register (the fast path saves none).
        if flags != 0 {
            return (Counted::No, 0);
        }
        let own = owner(ty).load(Ordering::Acquire);
        #[cfg(test)]
        widen_gap();
        let tag = super::types::reg_word(ty) as u8;
        let lim = long(addr_of_mut!((*ty).ks_limit)).load(Ordering::Relaxed);
        if own == gd as usize {
            let c = if charge(ty, lim, bytes) {
                Counted::Yes
            } else {
                Counted::No
            };
            return (c, tag);
        }
        // A type with `TAG_UNCHECKED` is `OWNER_SHARED_ATOMIC` instead.
        if own != OWNER_SHARED || lim != UNLIMITED {
            return (Counted::No, tag);
        }
        let c = if calls::count_quiet_gd(gd, tag) {
            Counted::Yes
        } else {
            Counted::Note
        };
        (c, tag)
    }
}

/// Inside the home's window: check the loose sum against the limit
/// `lim` (`ks_limit`, loaded by the caller), charge `bytes` and count the
/// call with plain stores; false (nothing changed) if the slow path must
/// decide.
///
/// # Safety
/// `ty` is a valid registered type whose home has its window open.
#[inline(always)]
unsafe fn charge(ty: *mut malloc_type, lim: isize, bytes: usize) -> bool {
    // SAFETY: caller contract: live fields of `ty`.
    let (calls, loose) = unsafe {
        (
            AtomicI64::from_ptr(addr_of_mut!((*ty).ks_calls)),
            long(addr_of_mut!((*ty).ks_loosememuse)),
        )
    };
    let ok = lim == UNLIMITED || {
        // 0: not set yet (or the limit was set after the type was
        // used without one): the slow path starts it from the exact
        // sums. No overflow: the loose sum only grows by what this
        // process allocated since it was last set from them.
        let cur = loose.load(Ordering::Relaxed);
        let l = cur + bytes as isize;
        let fits = cur != 0 && l <= lim;
        if fits {
            loose.store(l, Ordering::Relaxed);
        }
        fits
    };
    if ok {
        let c = calls.load(Ordering::Relaxed);
        #[cfg(test)]
        widen_window(ty);
        calls.store(c + 1, Ordering::Relaxed);
    }
    ok
}

/// `ks_calls++` and charge `bytes` against `ks_limit`. False (the call is
/// still counted, nothing charged) if the type would go over its limit.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type;
/// no window of `gd` is open.
#[inline]
pub unsafe fn account(gd: *mut SLGlobalData, ty: *mut malloc_type, bytes: usize) -> bool {
    // SAFETY: caller contract.
    unsafe { home_charge(gd, ty, bytes) || account_slow(gd, ty, bytes) }
}

/// [`account`] when [`home_charge`] could not: the type is not this cpu's
/// alone, or its loose sum says the limit is near.
///
/// # Safety
/// As [`account`]: `gd` is the calling thread's cpu state, `ty` a valid
/// registered type; no window of `gd` is open.
#[inline(never)]
unsafe fn account_slow(gd: *mut SLGlobalData, ty: *mut malloc_type, bytes: usize) -> bool {
    // SAFETY: caller contract: live fields of `gd` and `ty`.
    let (own, calls, loose, lim) = unsafe {
        (
            owner(ty),
            AtomicI64::from_ptr(addr_of_mut!((*ty).ks_calls)),
            long(addr_of_mut!((*ty).ks_loosememuse)),
            long(addr_of_mut!((*ty).ks_limit)).load(Ordering::Relaxed),
        )
    };
    loop {
        let o = own.load(Ordering::Acquire);
        if o == gd as usize {
            // The home, near the limit: count, and charge from the exact
            // sums.
            // SAFETY: caller contract.
            let done = unsafe { as_home(gd, ty) }.then(|| {
                calls.store(calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                // SAFETY: caller contract.
                lim == UNLIMITED || unsafe { charge_exact(ty, bytes as isize) }
            });
            match done {
                Some(ok) => return ok,
                // No longer the home: look again.
                None => continue,
            }
        }
        if !is_shared(o) {
            // SAFETY: caller contract.
            unsafe { settle(gd, ty, own, o) };
            continue;
        }
        // SAFETY: caller contract.
        unsafe { count_shared(gd, ty, calls) };
        if lim == UNLIMITED {
            return true;
        }
        let b = bytes as isize;
        let old = loose.fetch_add(b, Ordering::Relaxed);
        if old != 0 && old.saturating_add(b) <= lim {
            return true;
        }
        loose.fetch_sub(b, Ordering::Relaxed);
        // SAFETY: caller contract.
        return unsafe { charge_exact(ty, b) };
    }
}

/// `ks_calls++` of a shared type: in this cpu's own counters, folded into
/// `ks_calls` later (`calls`), when the cpu may count plainly; else an
/// atomic add.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type.
#[inline(always)]
unsafe fn count_shared(gd: *mut SLGlobalData, ty: *mut malloc_type, kc: &AtomicI64) {
    // SAFETY: caller contract.
    match unsafe { super::types::registered_tag(ty) } {
        // SAFETY: caller contract.
        Some(t) if t != TAG_UNCHECKED && unsafe { reclaim::flags(gd) } & SLGD_SHARED == 0 => {
            // SAFETY: caller contract; `gd`'s slot is its own.
            unsafe { calls::count((*gd).sl_Slot as usize, t, ty) }
        }
        _ => {
            kc.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One step of moving the owner word on from `o` (neither a shared word,
/// [`is_shared`], nor `gd`): claim an unowned type as `gd`'s home, wait for a switch in
/// progress, or switch another cpu's home type to shared mode. The caller
/// reads the word again.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type
/// and `own` its owner word (`owner(ty)`); no window of `gd` is open.
#[cold]
#[inline(never)]
unsafe fn settle(gd: *mut SLGlobalData, ty: *mut malloc_type, own: &AtomicUsize, o: usize) {
    match o {
        OWNER_NONE => {
            let want = if may_be_home(gd) {
                gd as usize
            } else {
                // SAFETY: caller contract.
                unsafe { shared_word(ty) }
            };
            // Lost the race: the caller sees who won.
            let _ = own.compare_exchange(o, want, Ordering::AcqRel, Ordering::Acquire);
        }
        // Another cpu is taking the type shared: let it finish.
        OWNER_SWITCHING => std::thread::yield_now(),
        home => {
            if own
                .compare_exchange(home, OWNER_SWITCHING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return;
            }
            // Without a barrier (never seen once registered) a racing
            // call may go uncounted, as the warning says.
            let _ = barrier_all();
            // SAFETY: a home is an `SLGlobalData` that is never freed
            // (thread states are pooled, cpu states live until exit).
            let busy = unsafe {
                AtomicI32::from_ptr(addr_of_mut!((*(home as *mut SLGlobalData)).sl_Counting))
            };
            let mut spins = 0u32;
            while busy.load(Ordering::Acquire) != 0 {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    // The home was preempted inside its update.
                    std::thread::yield_now();
                }
            }
            // The type moves to this cpu (a type set up by one thread and
            // then used by another stays uncontended) unless it moved
            // often already: then several cpus allocate it, for good.
            // SAFETY: caller contract; only the switching cpu writes it.
            let moved = unsafe { moves(ty) };
            let n = moved.load(Ordering::Relaxed) + 1;
            moved.store(n, Ordering::Relaxed);
            let next = if n <= MAX_MOVES && may_be_home(gd) {
                gd as usize
            } else {
                // SAFETY: caller contract.
                unsafe { shared_word(ty) }
            };
            own.store(next, Ordering::Release);
        }
    }
}

/// Can `gd` count a type with plain stores? Not when membarrier is
/// unavailable, nor when its statistics slot is shared with other cpus
/// (the home's fast path updates its slot plainly).
fn may_be_home(gd: *mut SLGlobalData) -> bool {
    #[cfg(test)]
    if NO_HOME.with(|f| f.get()) {
        return false;
    }
    // SAFETY: `gd` is the calling thread's cpu state.
    HOME_OK.load(Ordering::Relaxed) && unsafe { reclaim::flags(gd) } & SLGD_SHARED == 0
}

/// The loose sum says the limit is near: recompute it from the per-cpu
/// counters and charge `b` if the exact sum allows it.
///
/// # Safety
/// `ty` is a valid registered type (its per-cpu counters are read while
/// other cpus may update them: the sum is a snapshot).
#[cold]
#[inline(never)]
unsafe fn charge_exact(ty: *mut malloc_type, b: isize) -> bool {
    // SAFETY: caller contract of `account`.
    unsafe {
        let loose = long(addr_of_mut!((*ty).ks_loosememuse));
        let limit = long(addr_of_mut!((*ty).ks_limit)).load(Ordering::Relaxed);
        let (mem, _) = totals(ty);
        if mem.saturating_add(b) > limit {
            loose.store(mem, Ordering::Relaxed);
            return false;
        }
        loose.store(mem + b, Ordering::Relaxed);
        true
    }
}

/// Give back `bytes` charged by [`account`] whose allocation failed.
///
/// # Safety
/// `ty` is a valid `malloc_type`.
pub unsafe fn uncharge(ty: *mut malloc_type, bytes: usize) {
    // SAFETY: caller contract.
    let loose = unsafe { long(addr_of_mut!((*ty).ks_loosememuse)) };
    loose.fetch_sub(bytes as isize, Ordering::Relaxed);
}

/// In a `fork()` child: the type's owner word may name a thread the child
/// does not have, as its home (maybe inside its update window, which then
/// never closes) or as the cpu switching it (`OWNER_SWITCHING`, which
/// would never be stored over). Forget it: the next cpu allocating the
/// type claims it as at first use. Nothing is lost: each cpu's charges
/// stay in its statistics slot, which every mode adds up, and the home's
/// counts are in `ks_calls` already. A type homed on `me`, the forking
/// thread's state, stays its.
///
/// # Safety
/// `ty` is a valid registered type; the caller is the one thread of a
/// `fork()` child, `me` its state (or NULL).
pub unsafe fn after_fork_child(ty: *mut malloc_type, me: *mut SLGlobalData) {
    // SAFETY: caller contract.
    let own = unsafe { owner(ty) };
    let o = own.load(Ordering::Relaxed);
    if o != OWNER_NONE && !is_shared(o) && o != me as usize {
        own.store(OWNER_NONE, Ordering::Relaxed);
    }
}

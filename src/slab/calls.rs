//! `ks_calls` of a *shared* type (one that several cpus allocate, see
//! `account`): counted per cpu and folded into the type's `ks_calls`, so
//! that no cpu writes a cache line another cpu writes on every call.
//!
//! Each statistics slot (each cpu with a slot of its own) has a row of
//! counters, one per type tag, that only its cpu writes (plain load and
//! store), and a row of how much of each counter is already in the
//! type's `ks_calls`. Folding adds the difference to `ks_calls` with an
//! atomic add and raises the folded mark (`fetch_max`: two folders at once
//! add each call once). It happens
//!
//! * on the cpu itself every [`FOLD`] calls of a type;
//! * for all of a cpu's types when its thread exits (its state is
//!   pooled), so counts are exact once the threads that allocated have
//!   been joined;
//! * for all cpus when a type is unregistered (`slab_malloc_uninit`);
//! * in the background, by the reclaimer thread, every `reclaim::PERIOD`
//!   while some slot is [dirty](DIRTY): so `ks_calls` is exact within
//!   that period (100 ms) after the last call.
//!
//! A slot's dirty flag is set by its cpu on its first count after the flag
//! was cleared (a load of its own flag on each call, a store and maybe a
//! wake-up of the reclaimer once per period). The background fold clears
//! the flag, then runs `membarrier()` (a full barrier on every cpu of the
//! process) before it reads the counters: a count stored before the
//! barrier is read, and a cpu whose load of the flag comes after it sees
//! the flag clear and sets it again, so the next pass comes. Without
//! `membarrier()` the flag stays set: the slot is folded every period for
//! as long as the program runs.
//!
//! A cpu whose statistics slot is shared (more than `SMP_MAXCPU` cpus),
//! and a type with `TAG_UNCHECKED`, count with an atomic add on
//! `ks_calls` instead.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use core::ffi::c_long;

use crate::abi::{SLGlobalData, SMP_MAXCPU, malloc_type};

use super::account;
use super::types;

/// A cpu folds a type's calls into `ks_calls` itself every this many.
pub const FOLD: u64 = 256;

const TAGS: usize = 256;

/// One slot's counters, on cache lines of their own.
#[repr(C, align(64))]
struct Row([AtomicU64; TAGS]);

/// Calls per slot and tag; written only by the slot's cpu.
static COUNT: [Row; SMP_MAXCPU] = [const { Row([const { AtomicU64::new(0) }; TAGS]) }; SMP_MAXCPU];
/// How much of each counter is in `ks_calls` already.
static FOLDED: [Row; SMP_MAXCPU] = [const { Row([const { AtomicU64::new(0) }; TAGS]) }; SMP_MAXCPU];

/// A slot's dirty flag is the word of its row that no type counts in
/// (tag 0, `TAG_NEVER`, is never a type's): set ([`SET`]), the slot may
/// have calls not yet folded, and the reclaimer will fold them. Beside
/// the counters, so the count tests it through the row's address it
/// already holds (two instructions less than a flag of its own; the
/// reclaimer writes that line once a period when it clears the flag).
const DIRTY: usize = 0;
const _: () = assert!(types::FIRST_TAG as usize > DIRTY);

/// The value of a set dirty flag: `FOLD - 1`, so that for a count `n`,
/// `n & flag` is 0 exactly when the flag is clear or `n` a multiple of
/// [`FOLD`] (a power of 2): the two tests of a count in one `and`.
const SET: u64 = FOLD - 1;
const _: () = assert!(FOLD.is_power_of_two());

/// Slot `s`'s dirty flag.
fn dirty(s: usize) -> &'static AtomicU64 {
    &COUNT[s].0[DIRTY]
}

/// # Safety
/// `ty` is a valid `malloc_type`.
unsafe fn ks_calls<'a>(ty: *mut malloc_type) -> &'a AtomicI64 {
    // SAFETY: caller contract.
    unsafe { AtomicI64::from_ptr(addr_of_mut!((*ty).ks_calls)) }
}

/// Count one call of the type `ty` (tag `tag`, not `TAG_UNCHECKED`) on
/// the cpu of statistics slot `slot` (its own, not shared).
///
/// # Safety
/// The caller is the cpu of `slot`; `ty` is a valid registered type of
/// tag `tag`.
#[inline(always)]
pub unsafe fn count(slot: usize, tag: u8, ty: *mut malloc_type) {
    if !count_quiet(slot, tag) {
        // SAFETY: caller contract.
        unsafe { count_noted(slot, tag, ty) };
    }
}

/// The first half of [`count`]: count the call; false if
/// [`count_noted`] must follow (the caller's fast path then makes no
/// call of its own).
///
/// The caller is the cpu of `slot` (its own, not shared); `tag` is not
/// `TAG_UNCHECKED`.
#[inline(always)]
pub fn count_quiet(slot: usize, tag: u8) -> bool {
    let s = slot % SMP_MAXCPU;
    quiet(&COUNT[s], tag)
}

#[inline(always)]
fn quiet(row: &Row, tag: u8) -> bool {
    let c = &row.0[tag as usize];
    let n = c.load(Ordering::Relaxed) + 1;
    c.store(n, Ordering::Relaxed);
    n & row.0[DIRTY].load(Ordering::Relaxed) != 0
}

/// Where a cpu state keeps the address of its slot's counters (and dirty
/// flag), so that [`count_quiet_gd`] needs no slot arithmetic:
/// `sl_Pad0[1]` (a word of the allocator, unused by C).
///
/// # Safety
/// `gd` is a cpu state being set up, with its own statistics slot `slot`.
pub unsafe fn setup(gd: *mut SLGlobalData, slot: usize) {
    let s = slot % SMP_MAXCPU;
    // SAFETY: caller contract.
    unsafe {
        (*gd).sl_Pad0[1] = &COUNT[s] as *const Row as c_long;
    }
}

/// [`count_quiet`] for the cpu state `gd`, through the address [`setup`]
/// left in it.
///
/// # Safety
/// `gd` is the calling thread's cpu state, set up with a statistics slot
/// of its own (not `SLGD_SHARED`); `tag` is not `TAG_UNCHECKED`.
#[inline(always)]
pub unsafe fn count_quiet_gd(gd: *mut SLGlobalData, tag: u8) -> bool {
    // SAFETY: caller contract: `setup` stored the addresses of static
    // rows.
    unsafe {
        let row = &*((*gd).sl_Pad0[1] as *const Row);
        let c = &row.0[tag as usize];
        let n = c.load(Ordering::Relaxed) + 1;
        c.store(n, Ordering::Relaxed);
        n & row.0[DIRTY].load(Ordering::Relaxed) != 0
    }
}

/// The second half of [`count`] after [`count_quiet`] returned false.
///
/// # Safety
/// As [`count`], right after `count_quiet(slot, tag)`.
#[cold]
#[inline(never)]
pub unsafe fn count_noted(slot: usize, tag: u8, ty: *mut malloc_type) {
    let s = slot % SMP_MAXCPU;
    let fold_now = COUNT[s].0[tag as usize]
        .load(Ordering::Relaxed)
        .is_multiple_of(FOLD);
    // SAFETY: caller contract.
    unsafe { note(s, tag, ty, fold_now) };
}

/// Every `FOLD` calls: fold; first call since the last background fold:
/// mark the slot dirty and make sure the reclaimer comes.
///
/// # Safety
/// As [`count`], with `s` the slot (below `SMP_MAXCPU`).
#[inline(always)]
unsafe fn note(s: usize, tag: u8, ty: *mut malloc_type, fold_now: bool) {
    if fold_now {
        // SAFETY: caller contract.
        unsafe { fold(s, tag, ty) };
    }
    if dirty(s).load(Ordering::Relaxed) == 0 {
        // Sequentially consistent: either the reclaimer's last look after
        // going idle sees the flag, or this sees it idle and wakes it.
        dirty(s).store(SET, Ordering::SeqCst);
        super::reclaim::wake();
    }
}

/// Add what slot `s` counted for `tag` and is not yet in `ks_calls`.
///
/// # Safety
/// `ty` is the valid registered type of tag `tag`.
unsafe fn fold(s: usize, tag: u8, ty: *mut malloc_type) {
    let now = COUNT[s].0[tag as usize].load(Ordering::Relaxed);
    let before = FOLDED[s].0[tag as usize].fetch_max(now, Ordering::Relaxed);
    if now > before {
        // SAFETY: caller contract.
        unsafe { ks_calls(ty) }.fetch_add((now - before) as i64, Ordering::Relaxed);
    }
}

/// Fold everything slot `s` counted, for every registered type.
fn fold_slot(s: usize) {
    let _reg = types::registry_lock();
    for tag in types::FIRST_TAG as usize..TAGS {
        let now = COUNT[s].0[tag].load(Ordering::Relaxed);
        if now <= FOLDED[s].0[tag].load(Ordering::Relaxed) {
            continue;
        }
        let ty = types::type_of_tag(tag as u8);
        if !ty.is_null() {
            // SAFETY: a type registered under the registry lock stays
            // valid until it is unregistered, which takes the lock.
            unsafe { fold(s, tag as u8, ty) };
        }
    }
}

/// The calling cpu's thread is leaving its state (thread exit): fold all
/// it counted, so `ks_calls` is exact once the thread is joined.
pub fn fold_own(slot: usize) {
    fold_slot(slot % SMP_MAXCPU);
}

/// `slab_malloc_uninit`: fold every cpu's counts of the type.
///
/// # Safety
/// `ty` is the valid registered type of tag `tag`; the caller holds the
/// registry lock.
pub unsafe fn fold_type(tag: u8, ty: *mut malloc_type) {
    for s in 0..SMP_MAXCPU {
        // SAFETY: caller contract.
        unsafe { fold(s, tag, ty) };
    }
}

/// The reclaimer's fold: every dirty slot's counts. True if a slot was
/// dirty (its cpu may count more: look again at the next period).
pub fn pass() -> bool {
    let mut any = false;
    for s in 0..SMP_MAXCPU {
        let d = dirty(s);
        if d.load(Ordering::Relaxed) == 0 {
            continue;
        }
        any = true;
        d.store(0, Ordering::SeqCst);
        // After the barrier a count stored before it is visible here; a
        // cpu that counts later sees the flag clear and sets it again.
        if !account::barrier_all() {
            // Cannot know: keep the slot dirty (folded every period).
            d.store(SET, Ordering::Relaxed);
        }
        fold_slot(s);
    }
    any
}

/// Is any slot dirty? (The reclaimer's last look before it sleeps.)
pub fn any_dirty() -> bool {
    (0..SMP_MAXCPU).any(|s| dirty(s).load(Ordering::SeqCst) != 0)
}

/// In a `fork()` child: no reclaimer runs; clear the flags so the next
/// count of each slot starts one.
pub fn after_fork_child() {
    for s in 0..SMP_MAXCPU {
        dirty(s).store(0, Ordering::Relaxed);
    }
}

/// In a `fork()` child, once the locks are released: fold every slot's
/// counts. The slots of the parent's other threads are never counted in
/// again in the child (their threads are not there, and their dirty flags
/// were cleared), so this is the one time their calls reach `ks_calls`.
pub fn fold_all_after_fork() {
    for s in 0..SMP_MAXCPU {
        fold_slot(s);
    }
}

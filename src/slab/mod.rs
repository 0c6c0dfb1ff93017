//! The slab allocator (spec §6): per-cpu zones of 72 size classes up to
//! 16 KiB, page mappings above, `struct malloc_type` statistics.
//!
//! * A "cpu" is an `SLGlobalData` found by [`gd::current_gd`] (one
//!   thread-local load, `tls`); the owner allocates and frees in its
//!   zones with plain loads and stores. `ks_calls` and the limit check are
//!   plain too while one cpu allocates a type (`account`); when several
//!   do, each counts the type's calls in counters of its own, folded
//!   into `ks_calls` later (`calls`).
//! * `malloc`/`free` are inline fast paths for the common case that
//!   tail-call `malloc_slow`/`free_slow` for everything else (first use,
//!   size 0 or large, an unregistered type, a bad pointer to report).
//! * A cpu's own frees go to its magazine (`mag`: per size class, up to
//!   15 chunks), from which its next allocations of the class come
//!   first; the zones serve what the magazines do not hold.
//! * A free from another cpu checks the chunk, marks it free and pushes it
//!   on the owner's remote-free list (one compare-and-swap); the owner
//!   takes the whole list back when a size class runs dry, or the
//!   reclaimer does it for an owner that does not (`reclaim`).
//! * Zones are `ZoneSize`-aligned, carved from one reserved arena
//!   (`registry`; outside it, mapped twice as large and trimmed), so
//!   `ptr & ~ZoneMask` is the zone header, and power-of-2 chunks are
//!   aligned to their size.
//! * Every chunk has a one-byte tag after the zone header: never allocated,
//!   freed, or the id of the `malloc_type` that owns it. `slab_free` of a
//!   foreign pointer, a double free or a free with the wrong type aborts
//!   with a message naming the problem.

mod account;
mod calls;
mod fork;
pub mod gd;
mod mag;
mod oversized;
pub mod reclaim;
mod registry;
mod tls;
pub mod types;
mod zone;

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{
    M_NOWAIT, M_NULLOK, M_PASSIVE_ZERO, M_ZERO, PAGE_SIZE, ZALLOC_MAX_ZONE_SIZE,
    ZALLOC_MIN_ZONE_SIZE, ZALLOC_ZONE_LIMIT, malloc_type,
};
use crate::fatal;

pub use gd::current_gd;

use crate::abi::SLGlobalData;

/// What `slab_malloc(0, ...)` returns: non-NULL, never dereferenceable.
pub const ZERO_LENGTH_PTR: *mut c_void = -8isize as *mut c_void;

/// Fully free zones a cpu keeps mapped for reuse, at least; more are
/// unmapped at once. (DragonFly's `ZONE_RELS_THRESH` is 2; see
/// docs/compat.md.)
pub const ZONE_CACHE_MAX: i32 = 16;

/// Bound of the adaptive zone cache: a cpu that unmaps zones and then has
/// to map new ones doubles its cache up to this many zones; one that
/// unmaps more than its cache holds without mapping any halves it again.
pub const ZONE_CACHE_HIGH: i32 = 64;

/// Allocator geometry, fixed by `slab_init()`.
#[derive(Clone, Copy)]
pub struct Params {
    pub zone_size: usize,
    pub zone_mask: usize,
    pub zone_limit: usize,
    pub zone_pages: usize,
    /// The system page size (oversized rounding and the page-multiple rule).
    pub os_page: usize,
}

static ZONE_SIZE: AtomicUsize = AtomicUsize::new(0);
// `!(ZONE_SIZE - 1)` is `registry::FAST.zone_base`, next to the arena's
// bounds that `slab_free` reads with it.
static ZONE_LIMIT: AtomicUsize = AtomicUsize::new(0);
static OS_PAGE: AtomicUsize = AtomicUsize::new(0);

/// Choose the zone size (spec §6.3: about 1/1024 of RAM, 32–128 KiB).
///
/// Nothing ever waits here: every step gives the same result when done
/// twice, so threads that call this at once each do it, and `ZONE_SIZE`
/// (stored last) says it is done. A `Once` would leave a child forked
/// while another thread ran it waiting forever for a thread it does not
/// have.
pub fn init() {
    if ZONE_SIZE.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, psize) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let psize = if psize <= 0 {
        PAGE_SIZE
    } else {
        psize as usize
    };
    let phys_kb = if pages <= 0 {
        0
    } else {
        pages as usize * (psize / 1024)
    };
    let mut zs = ZALLOC_MIN_ZONE_SIZE as usize;
    while zs < ZALLOC_MAX_ZONE_SIZE as usize && zs * 2 < phys_kb {
        zs *= 2;
    }
    account::init();
    fork::register();
    OS_PAGE.store(psize, Ordering::Relaxed);
    ZONE_LIMIT.store((zs / 4).min(ZALLOC_ZONE_LIMIT as usize), Ordering::Relaxed);
    registry::FAST.zone_base.store(!(zs - 1), Ordering::Relaxed);
    ZONE_SIZE.store(zs, Ordering::Release);
}

/// The geometry. Valid once any cpu state exists (creating one runs
/// [`init`]).
#[inline]
pub fn params() -> Params {
    let zs = ZONE_SIZE.load(Ordering::Relaxed);
    Params {
        zone_size: zs,
        zone_mask: zs.wrapping_sub(1),
        zone_limit: ZONE_LIMIT.load(Ordering::Relaxed),
        zone_pages: zs / PAGE_SIZE,
        os_page: OS_PAGE.load(Ordering::Relaxed),
    }
}

/// Size class of a request of `n` bytes (1..=16383): (zone index, chunk
/// size), per the table of spec §6.3.
#[inline]
pub const fn zoneindex(n: usize) -> (usize, usize) {
    if n < 128 {
        let c = (n + 7) & !7;
        (c / 8 - 1, c)
    } else {
        let shift = (usize::BITS - 1 - n.leading_zeros()) as usize;
        let g = 1usize << (shift - 3);
        let c = (n + g - 1) & !(g - 1);
        (c / g + 7 + 8 * (shift - 7), c)
    }
}

/// Requests of 1..=`SMALL_MAX` bytes always go to a zone: below the
/// smallest page size Linux uses, so never a page multiple, and below
/// the smallest `ZoneLimit` (`ZALLOC_MIN_ZONE_SIZE / 4`).
const SMALL_MAX: usize = 4095;
const _: () = assert!(SMALL_MAX < ZALLOC_MIN_ZONE_SIZE as usize / 4);

/// A size class as the zone paths take it: the chunk size and where the
/// class's magazine is among a cpu's (`idx * size_of::<Mag>()`), each a
/// load of its own from [`SMALL_CLASS`] (no shift or mask on the fast
/// path), passed on in one register.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Class {
    cs: u32,
    moff: u32,
}

impl Class {
    const fn new(idx: usize, cs: usize) -> Class {
        Class {
            cs: cs as u32,
            moff: (idx * size_of::<mag::Mag>()) as u32,
        }
    }

    /// The zone index.
    #[inline(always)]
    fn idx(self) -> usize {
        self.moff as usize / size_of::<mag::Mag>()
    }
}

/// Size class of a request of 1..=`SMALL_MAX` bytes by `(n - 1) / 8`
/// (the fast path's range test has computed `n - 1`). A class boundary
/// is a multiple of 8 there, so all of `8k + 1 ..= 8k + 8` are in one
/// class. A `const`, so it is addressed directly, not through the GOT.
const SMALL_CLASS: [Class; SMALL_MAX.div_ceil(8)] = {
    let mut t = [Class { cs: 0, moff: 0 }; SMALL_MAX.div_ceil(8)];
    let mut k = 0;
    while k < t.len() {
        let (i, c) = zoneindex((k + 1) * 8);
        t[k] = Class::new(i, c);
        k += 1;
    }
    t
};

/// Does a request of `n` (> 0) bytes go to a page mapping?
#[inline]
fn is_oversized(n: usize, p: &Params) -> bool {
    n >= p.zone_limit || n & (p.os_page - 1) == 0
}

/// Out of memory or over the type's limit: NULL with `errno` set to
/// `ENOMEM` if the caller allows it, else abort with `why`. Every NULL
/// that `slab_malloc`/`slab_realloc` return for a failure comes from here.
#[cold]
fn fail(func: &str, ty: *mut malloc_type, flags: c_int, why: &str) -> *mut c_void {
    if flags & (M_NOWAIT | M_NULLOK) != 0 {
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOMEM };
        return core::ptr::null_mut();
    }
    // SAFETY: `ty` was validated by `types::check` before any failure.
    let name = unsafe { types::name(ty) };
    fatal!(func, "{name}: {why}")
}

/// `slab_malloc`.
///
/// The fast path: a thread with allocator state, a registered type of
/// which this cpu is the home, and a request below a page. Everything
/// else is `malloc_slow` or `malloc_away`.
///
/// # Safety
/// `ty` is non-NULL and points to a `struct malloc_type` that stays valid.
#[inline(always)]
pub unsafe fn malloc(size: usize, ty: *mut malloc_type, flags: c_int) -> *mut c_void {
    // `small` is `SMALL_MAX` when the thread has a state, else 0: one
    // test for both.
    let (gd, small) = tls::get_small();
    let n1 = size.wrapping_sub(1);
    if n1 >= small {
        // SAFETY: forwarded caller contract.
        return unsafe { malloc_slow(size, ty, flags) };
    }
    // SAFETY: `small` is `SMALL_MAX` or 0 (`gd::set_current` alone sets
    // it), so `n1 < SMALL_MAX` and `n1 / 8 < SMALL_MAX.div_ceil(8)`; and
    // `gd` is then the thread's state, not NULL.
    let class = unsafe {
        core::hint::assert_unchecked(small <= SMALL_MAX && !gd.is_null());
        *SMALL_CLASS.get_unchecked(n1 / 8)
    };
    let cs = class.cs as usize;
    // SAFETY: `ty` is a valid type, registered with tag `tag` if
    // `count_open` counts the call; `gd` is this thread's cpu state;
    // `class` is a small size class. Inside the window the zones are ours
    // unless the state is parked, and the type's counters are ours if
    // this cpu is its home (`reclaim`, `account`).
    unsafe {
        let w = reclaim::open(gd);
        let f = reclaim::flags(gd);
        // With no flag set (`count_open` counts only then) the statistics
        // slot and the zones are ours inside the window. The tag comes
        // from `count_open`, read after the owner word (see there); no
        // test of the registration word's signature here.
        let (counted, tag) = account::count_open(gd, ty, cs, f);
        match counted {
            account::Counted::Yes => take(w, class, ty, tag, flags, true),
            account::Counted::Note => malloc_noted(class, ty, flags, w, tag),
            account::Counted::No => {
                w.close();
                malloc_away(class, ty, flags, gd)
            }
        }
    }
}

/// A chunk of `class` for a call already counted and charged, in the
/// window `w` of the calling thread's cpu state (not parked), which it
/// closes: the last chunk the magazine got, else `zone_malloc_in`
/// (out of line: the zone's free list, then the zone's other ways).
/// `home`: this cpu is the type's home (its statistics slot is its own).
///
/// # Safety
/// As [`zone_malloc_in`].
#[inline(always)]
unsafe fn take(
    w: reclaim::Window,
    class: Class,
    ty: *mut malloc_type,
    tag: u8,
    flags: c_int,
    home: bool,
) -> *mut c_void {
    let cs = class.cs as usize;
    let gd = w.gd();
    // SAFETY: caller contract.
    unsafe {
        let c = zone::pop_mag(gd, class.moff as usize, tag);
        if c.is_null() {
            return zone_malloc_in(class, ty, flags, w, tag);
        }
        w.close();
        if home {
            types::stat_home(gd, ty, cs as isize, 1);
        } else {
            types::stat(gd, ty, cs as isize, 1);
        }
        if flags & (M_ZERO | M_PASSIVE_ZERO) != 0 {
            // A tail call of memset, which returns `c`.
            ptr::write_bytes(c, 0, cs);
        }
        c.cast()
    }
}

/// [`malloc`] of a shared type after a count that needs its slow half
/// (`calls::count_noted`, once every `calls::FOLD` calls or a period):
/// out of line, so `malloc` makes tail calls only and saves no
/// registers.
///
/// # Safety
/// As [`zone_malloc_in`], the call already counted by
/// `calls::count_quiet`.
#[cold]
#[inline(never)]
unsafe fn malloc_noted(
    class: Class,
    ty: *mut malloc_type,
    flags: c_int,
    w: reclaim::Window,
    tag: u8,
) -> *mut c_void {
    // SAFETY: caller contract.
    unsafe {
        calls::count_noted((*w.gd()).sl_Slot as usize, tag, ty);
        take(w, class, ty, tag, flags, true)
    }
}

/// [`malloc`] of a zone chunk of `class` when the type is not this
/// cpu's alone (or its limit is near, or the state is parked), or not
/// registered yet (registered here, as `malloc_slow` would): count and
/// charge in full, then take the first free-listed chunk, else
/// `zone_malloc`.
///
/// # Safety
/// `gd` is the calling thread's cpu state, no window of it open; `ty` is
/// non-NULL and points to a `struct malloc_type` that stays valid.
#[inline(never)]
unsafe fn malloc_away(
    class: Class,
    ty: *mut malloc_type,
    flags: c_int,
    gd: *mut SLGlobalData,
) -> *mut c_void {
    // SAFETY: caller contract.
    let tag = match unsafe { types::registered_tag(ty) } {
        Some(t) => t,
        // SAFETY: caller contract (checks the magic, registers).
        None => unsafe { types::check(ty, "slab_malloc") },
    };
    // SAFETY: caller contract; `ty` is registered with tag `tag`.
    unsafe {
        if !account::account(gd, ty, class.cs as usize) {
            return over_limit(ty, flags);
        }
        take(reclaim::own(gd), class, ty, tag, flags, false)
    }
}

/// The type's limit refused the request.
#[cold]
#[inline(never)]
fn over_limit(ty: *mut malloc_type, flags: c_int) -> *mut c_void {
    fail("slab_malloc", ty, flags, "malloc limit exceeded")
}

/// A chunk of `class` for `ty` tagged
/// `tag`; the call is already counted and charged.
///
/// # Safety
/// `gd` is this thread's cpu state, no window of it open; `ty` a
/// registered type with tag `tag`.
unsafe fn zone_malloc(
    gd: *mut SLGlobalData,
    class: Class,
    ty: *mut malloc_type,
    tag: u8,
    flags: c_int,
) -> *mut c_void {
    // SAFETY: caller contract.
    unsafe { zone_malloc_in(class, ty, flags, reclaim::own(gd), tag) }
}

/// [`zone_malloc`] inside the window `w` of the calling thread's cpu
/// state (not parked), which it closes: the fast paths go on in the
/// window they opened. The arguments in the order `slab_malloc` has
/// `ty` and `flags` in (the second and third), so that its tail calls
/// move fewer registers.
///
/// # Safety
/// As [`zone_malloc`], but with `w` the open window of the cpu state.
#[inline(never)]
unsafe fn zone_malloc_in(
    class: Class,
    ty: *mut malloc_type,
    flags: c_int,
    w: reclaim::Window,
    tag: u8,
) -> *mut c_void {
    let gd = w.gd();
    let (idx, cs) = (class.idx(), class.cs as usize);
    // SAFETY: `gd` is this thread's cpu state, its window open and not
    // parked; `idx < NZONES`.
    let c = unsafe { zone::alloc(gd, idx, cs, tag, flags & (M_ZERO | M_PASSIVE_ZERO) != 0) };
    w.close();
    if c.is_null() {
        // SAFETY: valid type.
        return unsafe { no_zone(ty, cs, flags) };
    }
    // SAFETY: valid type, this thread's cpu state.
    unsafe { types::stat(gd, ty, cs as isize, 1) };
    c.cast()
}

/// No zone could be mapped: give the charge back and fail.
///
/// # Safety
/// `ty` is a valid registered type that the caller charged `cs` bytes
/// against (`account::account`), and nothing else gives that charge back.
#[cold]
unsafe fn no_zone(ty: *mut malloc_type, cs: usize, flags: c_int) -> *mut c_void {
    // SAFETY: valid type; undo the charge taken by the caller.
    unsafe { account::uncharge(ty, cs) };
    fail(
        "slab_malloc",
        ty,
        flags,
        "out of memory (cannot map a zone)",
    )
}

/// `slab_malloc` in full: first use of the thread or the type, size 0,
/// larger requests.
///
/// # Safety
/// As [`malloc`]: `ty` is non-NULL and points to a `struct malloc_type`
/// that stays valid; no allocator window of the calling thread is open.
#[cold]
#[inline(never)]
unsafe fn malloc_slow(size: usize, ty: *mut malloc_type, flags: c_int) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    let tag = unsafe { types::check(ty, "slab_malloc") };
    let gd = current_gd();
    let p = params();
    if size == 0 {
        // SAFETY: `ty` is a registered, valid type; this thread's state.
        unsafe { account::account(gd, ty, 0) };
        return ZERO_LENGTH_PTR;
    }
    if is_oversized(size, &p) {
        // SAFETY: valid type and this thread's cpu state.
        return unsafe { oversized::alloc(gd, size, ty, flags, &p) };
    }
    let (idx, cs) = zoneindex(size);
    // SAFETY: as in `malloc`.
    unsafe {
        if !account::account(gd, ty, cs) {
            return over_limit(ty, flags);
        }
        zone_malloc(gd, Class::new(idx, cs), ty, tag, flags)
    }
}

/// `slab_free`.
///
/// The fast path: a thread with allocator state, a chunk of a zone in
/// the arena, a registered type. Everything else is `free_off_arena`,
/// NULL too (its base, 0, is below the arena).
///
/// # Safety
/// `ty` is non-NULL and points to a valid `struct malloc_type`.
#[inline(always)]
pub unsafe fn free(ptr: *mut c_void, ty: *mut malloc_type) {
    // The thread's copy of the arena's bounds: all zero while it has no
    // state, so that no pointer is in it then (one test for both).
    let (gd, a) = tls::get_arena();
    let base = ptr as usize & a.mask;
    if a.neg_lo.wrapping_add(base) < a.top {
        // SAFETY: `base` can be read as a zone header (the arena's carved
        // part); `gd` is this thread's cpu state; `ty` is a valid type
        // (registered or not: `free_fast` compares its word with the
        // chunk's tag and sends anything else to `free_slow`, which makes
        // every check again and reports).
        return unsafe { zone::free_fast(gd, base, ptr.cast(), ty, types::reg_word(ty)) };
    }
    // SAFETY: forwarded caller contract.
    unsafe { free_off_arena(ptr, ty) }
}

/// [`free`] of anything outside the thread's copy of the arena's carved
/// part: a live zone outside it (carved since the copy was taken, or
/// outside the arena: full, not reserved, or `RLIMIT_AS` set) takes the
/// same fast path once the registry's bitmap says it is one, and the
/// copy is taken again; the rest (NULL, no state yet, a page mapping, a
/// bad pointer) `free_slow`. Out of line, so that `free` makes tail calls
/// only.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_off_arena(ptr: *mut c_void, ty: *mut malloc_type) {
    let gd = tls::get();
    let base = ptr as usize & registry::FAST.zone_base.load(Ordering::Relaxed);
    if !gd.is_null() && registry::is_zone(base) {
        gd::set_current(gd);
        // SAFETY: as in `free`, `base` being a live zone.
        return unsafe { zone::free_fast(gd, base, ptr.cast(), ty, types::reg_word(ty)) };
    }
    // SAFETY: forwarded caller contract.
    unsafe { free_slow(ptr, ty) }
}

/// `slab_free` in full.
///
/// # Safety
/// As [`free`]: `ty` is non-NULL and points to a valid `struct
/// malloc_type`; no allocator window of the calling thread is open.
/// `ptr` itself may be anything: a pointer that is not a live chunk or
/// mapping of `ty` is reported and aborts.
#[cold]
#[inline(never)]
pub(crate) unsafe fn free_slow(ptr: *mut c_void, ty: *mut malloc_type) {
    // NULL, like `free(3)`: nothing, whatever the type (the fast path
    // sends it here, its zone base 0 being no zone).
    if ptr.is_null() || ptr == ZERO_LENGTH_PTR {
        return;
    }
    // SAFETY: forwarded caller contract.
    let tag = unsafe { types::check(ty, "slab_free") };
    let gd = current_gd();
    let p = params();
    let base = ptr as usize & !p.zone_mask;
    if registry::is_zone(base) {
        // SAFETY: `base` is a live zone; `gd` is this thread's cpu state.
        let cs = unsafe { zone::free(gd, base, ptr.cast(), ty, tag) };
        // SAFETY: valid type, this thread's cpu state.
        unsafe { types::stat(gd, ty, -(cs as isize), -1) };
    } else {
        // SAFETY: valid type, this thread's cpu state.
        unsafe { oversized::free(gd, ptr, ty, &p) };
    }
}

/// `slab_realloc`.
///
/// # Safety
/// `ty` is non-NULL and points to a valid `struct malloc_type`.
pub unsafe fn realloc(
    ptr: *mut c_void,
    size: usize,
    ty: *mut malloc_type,
    flags: c_int,
) -> *mut c_void {
    if ptr.is_null() || ptr == ZERO_LENGTH_PTR {
        // SAFETY: forwarded caller contract.
        return unsafe { malloc(size, ty, flags) };
    }
    if size == 0 {
        // SAFETY: forwarded caller contract.
        unsafe { free(ptr, ty) };
        return core::ptr::null_mut();
    }
    // SAFETY: forwarded caller contract.
    let tag = unsafe { types::check(ty, "slab_realloc") };
    let _ = current_gd();
    let p = params();
    let base = ptr as usize & !p.zone_mask;
    let old = if registry::is_zone(base) {
        // SAFETY: `base` is a live zone.
        let cs = unsafe { zone::usable("slab_realloc", base, ptr.cast(), ty, tag) };
        if !is_oversized(size, &p) && zoneindex(size).1 == cs {
            return ptr;
        }
        cs
    } else {
        // SAFETY: valid type.
        let bytes = unsafe { oversized::usable(ptr, ty) };
        if size.div_ceil(p.os_page) * p.os_page == bytes {
            return ptr;
        }
        bytes
    };
    // SAFETY: forwarded caller contract.
    let new = unsafe { malloc(size, ty, flags) };
    if new.is_null() {
        return new;
    }
    // SAFETY: `ptr` holds `old` usable bytes and `new` at least `size`;
    // they are distinct live allocations.
    unsafe {
        core::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast::<u8>(), old.min(size));
        free(ptr, ty);
    }
    new
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_arena;
#[cfg(test)]
mod tests_fast;
#[cfg(test)]
mod tests_fork;
#[cfg(test)]
mod tests_mag;
#[cfg(test)]
mod tests_shared;

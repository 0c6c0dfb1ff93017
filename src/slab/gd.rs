//! Which cpu state (`SLGlobalData`) the calling thread allocates from.
//!
//! [`current_gd`] is the only place that knows. Until virtual cpus exist,
//! every OS thread gets its own state on first use (lazily, so a pthread
//! that never called into libcaps works too). At thread exit the state
//! gives its free zones back and goes to a pool; the next new thread adopts
//! it, with the zones that still hold live chunks and its remote-free list.

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use std::alloc::{Layout, alloc_zeroed};
use std::sync::Mutex;

use crate::abi::{M_MAGIC, SLGlobalData, SMP_MAXCPU};
use crate::fatal;

use super::{calls, mag, reclaim, tls, types, zone};

/// `sl_Flags`: the statistics slot is shared with other cpus, so its
/// counters are updated with atomic adds.
pub const SLGD_SHARED: i32 = 0x0001;

/// Slot order. `ks_memuse[s]` is on the type's cache line 0 for slots
/// 0-6, line 1 for 7-14, line 2 for 15; `ks_inuse[s]` on line 2 for 0-3,
/// line 3 for 4-11, line 4 for 12-15. Line 2 also holds `ks_limit` and
/// `ks_loosememuse`, which every allocation reads; line 4 `ks_calls`,
/// which only a home cpu writes on each call (cpus allocating a shared
/// type count in their own counters, `calls`). The first cpu gets slot 12
/// (lines 1 and 4: it writes the `ks_calls` line anyway when it is the
/// home of a type), the second slot 4 (lines 0 and 3), the third slot 13
/// (lines 1 and 4 again, with the first cpu's: a program's first cpu is
/// usually its main thread, which often waits while two workers run),
/// the fourth slot 5 (with the second's): the first two cpus share no
/// line of a type, nor do the second and third. Then spread out; the
/// slots writing line 2 come last.
const SLOT_ORDER: [i32; SMP_MAXCPU] = [12, 4, 13, 5, 14, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 15];
static SLOTS: AtomicU32 = AtomicU32::new(0);
static SHARED_NEXT: AtomicU32 = AtomicU32::new(0);
/// Slots of the states some thread uses now (not pooled); only bits of
/// slots of their own (a shared slot's bit stays clear).
static ACTIVE: AtomicU32 = AtomicU32::new(0);

/// The cache lines of a 64-byte aligned `malloc_type` (as `MALLOC_DEFINE`
/// makes it) that slot `s` writes: those of `ks_memuse[s]` and
/// `ks_inuse[s]`.
const fn lines(s: usize) -> (usize, usize) {
    use core::mem::offset_of;
    let m = offset_of!(crate::abi::malloc_type, ks_memuse) + 8 * s;
    let u = offset_of!(crate::abi::malloc_type, ks_inuse) + 8 * s;
    (m / 64, u / 64)
}

/// For each slot, the slots that write a line of a type that it writes
/// too (itself included).
const CLASH: [u32; SMP_MAXCPU] = {
    let mut t = [0u32; SMP_MAXCPU];
    let mut a = 0;
    while a < SMP_MAXCPU {
        let mut b = 0;
        while b < SMP_MAXCPU {
            let (la, lb) = (lines(a), lines(b));
            if la.0 == lb.0 || la.1 == lb.1 {
                t[a] |= 1 << b;
            }
            b += 1;
        }
        a += 1;
    }
    t
};

/// The state's slot bit in [`ACTIVE`], or 0 for a shared slot.
///
/// # Safety
/// `gd` is a set-up cpu state.
unsafe fn active_bit(gd: *mut SLGlobalData) -> u32 {
    // SAFETY: caller contract.
    unsafe {
        if reclaim::flags(gd) & SLGD_SHARED != 0 {
            0
        } else {
            1 << ((*gd).sl_Slot as u32 % SMP_MAXCPU as u32)
        }
    }
}

/// Of the pooled states, the one whose slot writes the fewest lines of a
/// type that the slots in use write (the last pooled of those): two
/// threads allocating one type at once then write no common line of it
/// when they can (measured, two threads doing pairs of one type: 9.4-10.7
/// ns a pair with slots 12 and 13, 5.3-5.5 with slots 12 and 4).
fn pop_pooled(pool: &mut Pool) -> Option<*mut SLGlobalData> {
    let active = ACTIVE.load(Ordering::Relaxed);
    let mut best: Option<(usize, u32)> = None;
    for (i, &gd) in pool.0.iter().enumerate() {
        // SAFETY: pooled states are set up and belong to no thread.
        let b = unsafe { active_bit(gd) };
        let n = if b == 0 {
            SMP_MAXCPU as u32
        } else {
            (CLASH[b.trailing_zeros() as usize] & active).count_ones()
        };
        if best.is_none_or(|(_, m)| n <= m) {
            best = Some((i, n));
        }
    }
    best.map(|(i, _)| pool.0.remove(i))
}

pub(super) struct Pool(Vec<*mut SLGlobalData>);
// SAFETY: pooled states belong to no thread; the mutex hands them over.
unsafe impl Send for Pool {}
static POOL: Mutex<Pool> = Mutex::new(Pool(Vec::new()));

/// The pool's lock, for the `fork()` handlers (see `slab::fork`).
pub(super) fn pool_lock() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// Registered on a thread's first use only: its destructor pools the
    /// state. The fast paths read the thread's `tls::Slot` alone.
    static GUARD: Guard = const { Guard };
}

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        let gd = tls::get();
        if gd.is_null() {
            return;
        }
        // SAFETY: `gd` is this thread's state; after this no code of this
        // thread uses it (the slot is cleared below).
        unsafe { zone::release_free(gd) };
        // SAFETY: as above.
        if unsafe { reclaim::flags(gd) } & SLGD_SHARED == 0 {
            // SAFETY: as above.
            calls::fold_own(unsafe { (*gd).sl_Slot } as usize);
        }
        set_current(ptr::null_mut());
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as above.
        ACTIVE.fetch_and(!unsafe { active_bit(gd) }, Ordering::Relaxed);
        pool.0.push(gd);
    }
}

/// The calling cpu's allocator state.
#[inline]
pub fn current_gd() -> *mut SLGlobalData {
    let gd = tls::get();
    if gd.is_null() { attach() } else { gd }
}

/// How a thread's state is allocated: on a 128-byte boundary, so that
/// its lines are the same for every state: the line of `sl_Counting`,
/// `sl_Flags` and the magazine and counter addresses, which the owner
/// writes or reads on every call, is not the line of `sl_Remote`, which
/// other cpus' frees write (at 8-byte alignment, as `Layout::new` gives,
/// they met on one line for some heap addresses), nor a line of another
/// state or of other heap data. (A `gd_slab` inside a cpu's globaldata is
/// where its owner put it.)
const STATE_LAYOUT: Layout = match Layout::from_size_align(size_of::<SLGlobalData>(), 128) {
    Ok(l) => l,
    Err(_) => panic!("state layout"),
};
const _: () = assert!(
    core::mem::offset_of!(SLGlobalData, sl_Counting) / 64
        != core::mem::offset_of!(SLGlobalData, sl_Remote) / 64
);

#[cold]
fn attach() -> *mut SLGlobalData {
    super::init();
    // Registering the guard fails only while the thread's TLS is being
    // torn down; such a late state is never pooled (it leaks).
    let pooled = if GUARD.try_with(|_| ()).is_ok() {
        pop_pooled(&mut POOL.lock().unwrap_or_else(|e| e.into_inner()))
    } else {
        None
    };
    let gd = pooled.unwrap_or_else(|| {
        // SAFETY: non-zero-sized layout.
        let gd = unsafe { alloc_zeroed(STATE_LAYOUT) }.cast::<SLGlobalData>();
        if gd.is_null() {
            fatal!(
                "slab_malloc",
                "out of memory for per-thread allocator state"
            );
        }
        // SAFETY: fresh zeroed state.
        unsafe { gd_setup(gd) };
        gd
    });
    // SAFETY: a set-up state, now this thread's.
    ACTIVE.fetch_or(unsafe { active_bit(gd) }, Ordering::Relaxed);
    set_current(gd);
    gd
}

/// Make `gd` the calling thread's state (NULL: none), with the words the
/// fast paths test beside it (`tls::Slot`): all zero without a state.
/// Called again by a free that found its zone outside the thread's copy of
/// the arena's bounds (`slab::free_off_arena`), to copy them afresh.
pub(super) fn set_current(gd: *mut SLGlobalData) {
    tls::set(if gd.is_null() {
        tls::Slot {
            gd,
            small: 0,
            arena: tls::Arena::NONE,
        }
    } else {
        tls::Slot {
            gd,
            small: super::SMALL_MAX,
            arena: super::registry::view(),
        }
    });
}

/// A new cpu was set up on the calling kernel thread: allocate from its
/// `gd_slab` from now on, unless this thread already has allocator state
/// (it keeps that; chunks always go back to the zone they came from).
///
/// # Safety
/// `gd` is the calling thread's new cpu's zeroed `gd_slab`.
pub unsafe fn adopt_cpu(gd: *mut SLGlobalData) {
    if tls::get().is_null() {
        // SAFETY: caller contract.
        unsafe {
            gd_setup(gd);
            ACTIVE.fetch_or(active_bit(gd), Ordering::Relaxed);
        }
        set_current(gd);
    }
}

/// Prepare a zeroed `SLGlobalData` (the `gd_slab` of a new cpu): claim a
/// statistics slot (shared, with atomic counters, once all
/// `SMP_MAXCPU` are taken) and set up `ZoneInfo`.
///
/// # Safety
/// `gd` points to a zeroed `SLGlobalData` that no one else uses yet.
pub unsafe fn gd_setup(gd: *mut SLGlobalData) {
    super::init();
    let mut slot = -1;
    for s in SLOT_ORDER {
        if SLOTS.fetch_or(1 << s, Ordering::Relaxed) & (1 << s) == 0 {
            slot = s;
            break;
        }
    }
    // SAFETY: caller contract.
    unsafe {
        if slot < 0 {
            (*gd).sl_Slot =
                (SHARED_NEXT.fetch_add(1, Ordering::Relaxed) % SMP_MAXCPU as u32) as i32;
            (*gd).sl_Flags |= SLGD_SHARED;
        } else {
            (*gd).sl_Slot = slot;
            calls::setup(gd, slot as usize);
        }
        (*gd).sl_CacheMax = super::ZONE_CACHE_MAX;
        (*gd).ZoneInfo.ks_magic = M_MAGIC;
        (*gd).ZoneInfo.ks_shortdesc = c"slab zones".as_ptr();
        (*gd).ZoneInfo.ks_limit = types::UNLIMITED;
        reclaim::set_key(gd);
        mag::setup(gd);
        reclaim::track(gd);
    }
}

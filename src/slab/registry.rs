//! Which `ZoneSize`-aligned blocks are live zones of this allocator, and
//! where zones are mapped.
//!
//! `slab_free()` finds a chunk's zone with `ptr & ~ZoneMask`; before it
//! reads that header it asks here, so a pointer the allocator never handed
//! out is reported instead of dereferenced. Two levels: the top table is
//! indexed by address bits 47..32, each leaf is a bitmap of the zones in
//! one 4 GiB stretch, one bit per 32 KiB (the smallest zone size; a
//! larger zone is recorded at the bit of its first 32 KiB). Lookups are
//! two loads and shifts by constants, with no test between them: a top
//! entry with no leaf yet points at [`EMPTY`], a leaf of zeros. Only zone
//! creation and release write.
//!
//! **The arena.** Zones are carved from one reserved stretch of address
//! space ([`ARENA_BYTES`] or less, reserved `PROT_NONE` at the first zone), so the
//! free fast path asks [`in_arena`]'s question instead, of its thread's
//! copy of the bounds ([`view`], in its TLS slot): one addition and one
//! compare against the part carved so far, which is always readable (a
//! copy older than the last carving says no for the newer zones; such a
//! free asks the bitmap, which says yes, and copies the bounds again). A
//! zone given back there is not unmapped: its pages go back to the kernel
//! (`MADV_DONTNEED`), so it reads as zeros (no zone magic: the free path's
//! checks send a pointer into it to the slow path, which asks the bitmap
//! and reports it), and its place goes on a free list for the next zone.
//! Zones go outside the arena, one mapping each as before, when it is
//! full, could not be reserved, or `RLIMIT_AS` is not unlimited (the
//! arena would let zones grow past the limit the caller set). The bitmap
//! records every live zone, in the arena or not.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Zones are only mapped below `1 << ADDR_BITS`.
pub const ADDR_BITS: u32 = 47;
const TOP_SHIFT: u32 = 32;
const TOP_ENTRIES: usize = 1 << (ADDR_BITS - TOP_SHIFT);
/// log2 of the smallest zone size (`ZALLOC_MIN_ZONE_SIZE`).
const GRAIN_SHIFT: u32 = 15;
const _: () = assert!(1 << GRAIN_SHIFT == crate::abi::ZALLOC_MIN_ZONE_SIZE as usize);
/// Words of one leaf: one bit per smallest zone (32 KiB) in 4 GiB.
const LEAF_WORDS: usize = (1 << (TOP_SHIFT - GRAIN_SHIFT)) / 64;

/// The leaf of every 4 GiB stretch without a zone yet: all bits clear,
/// never written (`set` replaces it before it sets a bit).
static EMPTY: [AtomicU64; LEAF_WORDS] = [const { AtomicU64::new(0) }; LEAF_WORDS];

/// [`EMPTY`]'s address, what a top entry without a leaf holds.
fn empty() -> *mut AtomicU64 {
    EMPTY.as_ptr().cast_mut()
}

static TOP: [AtomicPtr<AtomicU64>; TOP_ENTRIES] =
    [const { AtomicPtr::new(EMPTY.as_ptr().cast_mut()) }; TOP_ENTRIES];

/// Bit position of the zone starting at `base`: (leaf index, word, bit).
#[inline(always)]
fn locate(base: usize) -> Option<(usize, usize, u64)> {
    let top = base >> TOP_SHIFT;
    if top >= TOP_ENTRIES {
        return None;
    }
    let g = (base & ((1usize << TOP_SHIFT) - 1)) >> GRAIN_SHIFT;
    Some((top, g / 64, 1u64 << (g % 64)))
}

/// Is `base` (already masked with `~ZoneMask`) the start of a live zone?
#[inline(always)]
pub fn is_zone(base: usize) -> bool {
    base >> ADDR_BITS == 0 && is_zone_in_range(base)
}

/// [`is_zone`] for a `base` below `1 << ADDR_BITS` (false for any other).
#[inline(always)]
pub fn is_zone_in_range(base: usize) -> bool {
    let Some((top, word, bit)) = locate(base) else {
        return false;
    };
    let leaf = TOP[top].load(Ordering::Acquire);
    // SAFETY: a top entry is `EMPTY` or a published leaf, a live mapping
    // of LEAF_WORDS words that is never unmapped; `word < LEAF_WORDS` by
    // construction of `locate`.
    let w = unsafe { &*leaf.add(word) };
    w.load(Ordering::Acquire) & bit != 0
}

/// Record (`live`) or forget the zone at `base`. Returns false if the leaf
/// table could not be allocated.
pub fn set(base: usize, live: bool) -> bool {
    let Some((top, word, bit)) = locate(base) else {
        return false;
    };
    let mut leaf = TOP[top].load(Ordering::Acquire);
    if leaf == empty() {
        if !live {
            return true;
        }
        let bytes = LEAF_WORDS * 8;
        // SAFETY: anonymous private mapping, no existing memory involved.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        let fresh = p.cast::<AtomicU64>();
        match TOP[top].compare_exchange(empty(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => leaf = fresh,
            Err(other) => {
                // SAFETY: `p` is our own unpublished mapping of `bytes`.
                unsafe { libc::munmap(p, bytes) };
                leaf = other;
            }
        }
    }
    // SAFETY: as in `is_zone`: `leaf` is a published leaf (not `EMPTY`),
    // which lives forever, and `word` is in range.
    let w = unsafe { &*leaf.add(word) };
    if live {
        w.fetch_or(bit, Ordering::Release);
    } else {
        w.fetch_and(!bit, Ordering::Release);
    }
    true
}

/// Address space reserved for zones: 4 GiB (at most 2^17 zones of 32 KiB,
/// 2^15 of 128 KiB; more slab memory than that goes to zones outside the
/// arena); if the kernel refuses, half as much, down to [`ARENA_MIN`].
/// Not more: the reservation counts in the process's address-space size
/// (VmSize), so a program that lowers `RLIMIT_AS` after its first
/// allocation (a sandbox, `prlimit` from outside) must still find room
/// under a limit of a few GiB.
pub const ARENA_BYTES: usize = 4 << 30;
/// The smallest arena tried.
const ARENA_MIN: usize = 1 << 30;

/// The arena's bounds, on one line (one address to load). Each thread's
/// free fast path reads a copy of them in its TLS slot (`tls::Arena`,
/// taken by [`view`]), and a free outside that copy takes the path that
/// asks the bitmap and copies them again:
#[repr(C, align(64))]
pub struct Fast {
    /// `!(ZoneSize - 1)` once the zone size is set (before: 0, so no
    /// pointer has a zone): a zone's base is a pointer `&` this.
    pub zone_base: AtomicUsize,
    /// Minus the start of the arena (0: none yet, or none could be
    /// reserved): [`in_arena`] adds it to a copy of the base it tests
    /// (`base - lo` as a load and an add into a register, not a load, a
    /// copy and a subtraction).
    neg_lo: AtomicUsize,
    /// Bytes from the arena's start carved into zones so far (readable and writable);
    /// only grows.
    top: AtomicUsize,
}

pub static FAST: Fast = Fast {
    zone_base: AtomicUsize::new(0),
    neg_lo: AtomicUsize::new(0),
    top: AtomicUsize::new(0),
};

/// The arena's state for carving, under its lock.
pub struct Carve {
    /// Tried to reserve (successful or not): never tried again.
    tried: bool,
    /// Bytes reserved at the arena's start (`-FAST.neg_lo`).
    len: usize,
    /// Places of zones given back, to be carved again first.
    free: Vec<usize>,
}

static CARVE: Mutex<Carve> = Mutex::new(Carve {
    tried: false,
    len: 0,
    free: Vec::new(),
});

/// The carving lock (also held by the forking thread across `fork()`).
pub fn carve_lock() -> MutexGuard<'static, Carve> {
    CARVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Is `base` (a pointer masked with `~ZoneMask`) in the carved part of
/// the arena? Then its header can be read (a live zone's, a zone's given
/// back (zeros), or one being set up by its owner, which only the owner's
/// own chunks can point into).
#[inline(always)]
pub fn in_arena(base: usize) -> bool {
    // The bound first: a bound that is not 0 was stored after `neg_lo`, which
    // the acquire load then sees too (never a bound with `neg_lo` still 0).
    let top = FAST.top.load(Ordering::Acquire);
    FAST.neg_lo.load(Ordering::Relaxed).wrapping_add(base) < top
}

/// A copy of the arena's bounds for a thread's slot (`tls::Arena`), read
/// in the order of [`in_arena`]. Only valid once the zone size is set
/// (`slab::init`), as it is before any cpu state exists.
pub fn view() -> super::tls::Arena {
    let top = FAST.top.load(Ordering::Acquire);
    super::tls::Arena {
        mask: FAST.zone_base.load(Ordering::Relaxed),
        neg_lo: FAST.neg_lo.load(Ordering::Relaxed),
        top,
    }
}

/// Is `RLIMIT_AS` unlimited (so zones may go to the arena)?
fn as_unlimited() -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid out-parameter.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) };
    r == 0 && rl.rlim_cur == libc::RLIM_INFINITY
}

/// A place for a zone of `zs` bytes (a power of 2, a page multiple) in
/// the arena, readable and writable and all zeros; NULL if the arena
/// cannot give one (the caller maps the zone itself).
pub fn carve(zs: usize) -> *mut c_void {
    if !as_unlimited() {
        return ptr::null_mut();
    }
    let mut c = carve_lock();
    if let Some(a) = c.free.pop() {
        return a as *mut c_void;
    }
    if !c.tried {
        c.tried = true;
        let mut len = ARENA_BYTES;
        while len >= ARENA_MIN {
            // Aligned to the largest zone size (the zone size is a power
            // of 2 no larger).
            // SAFETY: a fresh reservation, nothing else involved.
            let a = unsafe {
                super::oversized::reserve_aligned(len, crate::abi::ZALLOC_MAX_ZONE_SIZE as usize)
            };
            if a != libc::MAP_FAILED {
                c.len = len;
                FAST.neg_lo
                    .store((a as usize).wrapping_neg(), Ordering::Relaxed);
                break;
            }
            len /= 2;
        }
    }
    let lo = FAST.neg_lo.load(Ordering::Relaxed).wrapping_neg();
    let top = FAST.top.load(Ordering::Relaxed);
    if lo == 0 || c.len - top < zs {
        return ptr::null_mut();
    }
    let a = (lo + top) as *mut c_void;
    // SAFETY: `[a, a + zs)` is in our reservation and not carved yet.
    if unsafe { libc::mprotect(a, zs, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
        return ptr::null_mut();
    }
    // Published after the pages are readable: a free that sees the new
    // bound can read the header.
    FAST.top.store(top + zs, Ordering::Release);
    a
}

/// Give back the zone of `zs` bytes at `z` (not recorded live any more):
/// in the arena its pages go back to the kernel and its place to the
/// free list, else it is unmapped.
///
/// # Safety
/// `z` is a zone of `zs` bytes from [`carve`] or its own mapping, which
/// nothing uses any more.
pub unsafe fn give_back(z: *mut c_void, zs: usize) {
    if in_arena(z as usize) {
        // SAFETY: caller contract: the pages are ours and unused.
        unsafe { libc::madvise(z, zs, libc::MADV_DONTNEED) };
        carve_lock().free.push(z as usize);
    } else {
        // SAFETY: caller contract: the zone's own mapping.
        unsafe { libc::munmap(z, zs) };
    }
}

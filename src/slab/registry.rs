//! Which `ZoneSize`-aligned blocks are live zones of this allocator.
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

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

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

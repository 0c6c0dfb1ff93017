//! The magazine: per cpu state and size class, a small stack of chunks
//! of the cpu's own zones that it freed, which its next allocations of
//! the class take back first.
//!
//! An alloc+free pair then touches the magazine (hot cache lines of the
//! cpu's own) and the chunk's tag byte, not the zone header (whose lines
//! every zone has at the same offset of a `ZoneSize`-aligned mapping, so
//! with the zones of many size classes in use they compete for the same
//! few cache sets) and not the chunk itself: the stack is an array of
//! entries, so a free does not write a link into the chunk (a cold line
//! when the block was allocated long ago) and an allocation does not
//! read one, and a pair has no chain of loads that wait for the stores
//! of the call before.
//!
//! * A chunk in a magazine is free for every check: its tag says so (a
//!   second free of it, or `slab_realloc` of it, is reported as for any
//!   freed chunk). Its zone counts it as allocated (`z_NFree` leaves it
//!   out), so the zone is never unmapped under it.
//! * An entry is two words in two parallel arrays: the chunk's address
//!   and its tag key (`zone::tag_key`: the zone's address plus the
//!   chunk's index, its tag byte at a constant distance from that, which
//!   the store of the tag adds in its address), so taking it sets its tag without
//!   reading the zone header or the zone size, and neither a push nor a
//!   pop packs or unpacks anything (6 instructions a pair less than one
//!   word with the tag's distance in its top bits; a magazine is then
//!   256 bytes instead of 128).
//! * A magazine holds at most [`MAX`] chunks of a class (fewer for large
//!   chunks, at most about 16 KiB); a free finding it full goes to the
//!   zone, an allocation finding it empty takes from the zone.
//! * Like the zones, the magazines are touched only by their cpu inside
//!   its window with no flag set, or by the reclaimer while the state is
//!   parked; [`flush`] gives all chunks back to their zones when the cpu
//!   gives its free memory back (thread exit, a parked idle state: see
//!   `zone::give_back`), so the bound on memory kept by an idle cpu is
//!   unchanged.
//!
//! The statistics are kept per call as before: a chunk in a magazine is
//! not in use for `ks_memuse`/`ks_inuse`.

use core::ptr;
use std::alloc::{Layout, alloc_zeroed};

use crate::abi::{NZONES, SLGlobalData};
use crate::fatal;

use super::zoneindex;

/// Most chunks a magazine holds for one class: 15, so that a [`Mag`] is
/// 256 bytes (four cache lines) and its address a shift of the class.
pub const MAX: u32 = 15;

/// Bytes a magazine holds for one class, about: a class of large chunks
/// gets fewer than [`MAX`] (at least 2).
const BYTES: usize = 16384;

/// One class's magazine.
#[repr(C)]
pub struct Mag {
    /// Chunks held: `chunk[..n]`.
    n: u32,
    /// Most chunks held.
    max: u32,
    /// The chunks, the last pushed at `n - 1`.
    chunk: [*mut u8; MAX as usize],
    /// `tag[i]` is `chunk[i]`'s tag key (`zone::tag_key`).
    tag: [usize; MAX as usize],
    _pad: usize,
}

const _: () = assert!(size_of::<Mag>() == 256);

/// A cpu's magazines, one per size class, on cache lines of their own
/// (no other cpu's data on a line this cpu writes on every call).
#[repr(C, align(64))]
pub struct Mags([Mag; NZONES]);

/// Most chunks of each class a magazine holds: [`MAX`], fewer for large
/// chunks (about [`BYTES`]), at least 2.
const LIMIT: [u32; NZONES] = {
    let mut t = [0u32; NZONES];
    let mut n = 8;
    while n < 16384 {
        let (i, c) = zoneindex(n);
        let m = BYTES / c;
        t[i] = if m > MAX as usize {
            MAX
        } else if m < 2 {
            2
        } else {
            m as u32
        };
        n += 8;
    }
    t
};

/// Where the state's magazines are: `sl_Pad0[0]` (the word is the
/// allocator's, unused by C).
///
/// # Safety
/// `gd` is a cpu state set up by `gd::gd_setup`.
#[inline(always)]
unsafe fn mags(gd: *mut SLGlobalData) -> *mut Mags {
    // SAFETY: caller contract.
    unsafe { (*gd).sl_Pad0[0] as *mut Mags }
}

/// Give a new cpu state its magazines.
///
/// # Safety
/// `gd` is a cpu state being set up that no one else uses yet.
pub unsafe fn setup(gd: *mut SLGlobalData) {
    // SAFETY: non-zero-sized layout.
    let m = unsafe { alloc_zeroed(Layout::new::<Mags>()) }.cast::<Mags>();
    if m.is_null() {
        fatal!(
            "slab_malloc",
            "out of memory for per-thread allocator state"
        );
    }
    // SAFETY: `m` is a fresh zeroed array of `NZONES` magazines.
    unsafe {
        for (mag, max) in (*m).0.iter_mut().zip(LIMIT) {
            mag.max = max;
        }
        (*gd).sl_Pad0[0] = m as core::ffi::c_long;
    }
}

/// Take the last chunk pushed on the magazine of class `idx`, at `moff`
/// = `idx * size_of::<Mag>()` from the first: (chunk, its tag key), or
/// NULL if the magazine is empty.
///
/// # Safety
/// `gd` is the calling thread's cpu state, its window open and no flag
/// set (or parked and the caller the reclaimer); `moff` is `idx *
/// size_of::<Mag>()` with `idx < NZONES`.
#[inline(always)]
pub unsafe fn pop(gd: *mut SLGlobalData, moff: usize) -> (*mut u8, usize) {
    // SAFETY: caller contract: the magazine and its chunks are ours;
    // `n - 1 < n <= max <= MAX` indexes a pushed entry.
    unsafe {
        let m = &mut *mags(gd).byte_add(moff).cast::<Mag>();
        let n = m.n;
        if n == 0 {
            return (ptr::null_mut(), 0);
        }
        let i = (n - 1) as usize;
        m.n = n - 1;
        let c = *m.chunk.get_unchecked(i);
        // A pushed chunk is in a zone, so never NULL: the caller's test
        // of the pointer then needs no second test here.
        core::hint::assert_unchecked(!c.is_null());
        (c, *m.tag.get_unchecked(i))
    }
}

/// The magazine of class `idx` of the cpu state `gd` (what a zone of
/// `gd` keeps in its header for [`push`]).
///
/// # Safety
/// `gd` is a cpu state set up by `gd::gd_setup`; `idx < NZONES`.
#[inline(always)]
pub unsafe fn of(gd: *mut SLGlobalData, idx: usize) -> *mut Mag {
    // SAFETY: caller contract.
    unsafe { (*mags(gd)).0.as_mut_ptr().add(idx) }
}

/// Push chunk `c` (already tagged free, its tag key `key`) on the
/// magazine `m` of its class; false (nothing done) if it is full.
///
/// # Safety
/// As [`pop`], with `m` = [`of`]`(gd, idx)`; `c` is a chunk of a zone of
/// `gd`, of class `idx`, that nothing uses and that is on no list.
#[inline(always)]
pub unsafe fn push(m: *mut Mag, c: *mut u8, key: usize) -> bool {
    // SAFETY: caller contract; `n < max <= MAX` indexes a free entry.
    unsafe {
        let m = &mut *m;
        let n = m.n;
        if n >= m.max {
            return false;
        }
        *m.chunk.get_unchecked_mut(n as usize) = c;
        *m.tag.get_unchecked_mut(n as usize) = key;
        m.n = n + 1;
        true
    }
}

/// Empty every magazine of `gd`, calling `back(chunk)` for each chunk.
///
/// # Safety
/// As [`pop`].
pub unsafe fn flush(gd: *mut SLGlobalData, mut back: impl FnMut(*mut u8)) {
    // SAFETY: caller contract.
    unsafe {
        let all = mags(gd);
        if all.is_null() {
            return;
        }
        for m in (*all).0.iter_mut() {
            let n = m.n as usize;
            m.n = 0;
            for &c in &m.chunk[..n] {
                back(c);
            }
        }
    }
}

/// Chunks in `gd`'s magazines (unit tests).
///
/// # Safety
/// As [`pop`].
#[cfg(test)]
pub unsafe fn held(gd: *mut SLGlobalData) -> usize {
    // SAFETY: caller contract.
    unsafe { (*mags(gd)).0.iter().map(|m| m.n as usize).sum() }
}

//! Zones: one `ZoneSize`-aligned mapping serving one size class for one
//! cpu. Layout: `Zone` header (the C `SLZone` first, then [`Fixed`]), one
//! tag byte per chunk, then the chunk array (aligned to the chunk size when that is a
//! power of 2, else to 8).
//!
//! Only the owning cpu changes a zone's header and free list, inside its
//! window (`reclaim::Window`), or the reclaimer while the owner's state
//! is parked. Other cpus
//! read only [`Fixed`], which stays unchanged while the zone has live
//! chunks and sits on its own cache line (so a remote free does not pull
//! the line the owner writes on every allocation), and change the tag of
//! the chunk they free.
//!
//! Free chunks are on one LIFO list per zone, linked through their first
//! word, rather than the original's per-page lists (`z_PageAry` and
//! `z_FirstFreePg` stay in the header, unused): the batch path is then a
//! load and a store each way. In front of the zones, a cpu keeps a few
//! chunks it freed per size class in its magazine (`mag`), which the
//! pair path uses without touching the zone header.

use core::ffi::c_long;
use core::mem::size_of;
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::abi::{
    SLChunk, SLGlobalData, SLZF_UNOTZEROD, SLZONE_NPAGES, SLZone, ZALLOC_MAX_ZONE_SIZE,
    ZALLOC_SLAB_MAGIC, ZALLOC_SLAB_SLIDE, malloc_type,
};
use crate::fatal;

use super::types::{self, TAG_UNCHECKED};
use super::{ZONE_CACHE_HIGH, ZONE_CACHE_MAX, mag, oversized, params, reclaim, registry};

/// Tag of a chunk never handed out since the zone took its size class.
const TAG_NEVER: u8 = 0;
/// Tag of a freed chunk.
const TAG_FREE: u8 = 1;
/// `z_FirstFreePg`: no per-page list is used.
const NO_PAGE: i32 = SLZONE_NPAGES as i32;

/// What other cpus read of a zone: set when the zone takes its size class,
/// unchanged while it has live chunks.
#[repr(C, align(64))]
pub struct Fixed {
    /// `ZALLOC_SLAB_MAGIC` while the zone is live.
    pub magic: i32,
    /// Chunk size.
    pub cs: u32,
    /// `z_NMax * cs`: offsets from `base` below this are in the array.
    /// A word, so the free path compares an offset with it in memory.
    pub span: usize,
    /// `ceil(2^32 / cs)`: chunk index by multiplication ([`index`]). A
    /// word, so the free path multiplies by it in memory.
    pub recip: u64,
    /// Start of the chunk array (`z_BasePtr`).
    pub base: usize,
    /// The owning cpu state.
    pub owner: *mut SLGlobalData,
    /// The size class (`z_ZoneIndex`).
    pub idx: u32,
    /// The low half of `recip`, a field of its own so that the free path
    /// compares with it in memory as it multiplies by `recip` in memory
    /// (no load of its own; [`index_in`]).
    pub recip_lo: u32,
    /// The owner's magazine of the class (`mag::of(owner, idx)`): the free
    /// path pushes there without the class arithmetic.
    pub mag: *mut mag::Mag,
}

/// A zone header: the C-visible `SLZone` plus what this implementation
/// needs.
#[repr(C)]
pub struct Zone {
    pub h: SLZone,
    /// The owner's free list.
    pub free: *mut SLChunk,
    pub f: Fixed,
}

/// The tag byte of chunk `i` of `z`.
///
/// # Safety
/// `z` is a mapped zone and `i < z_NMax` of it; the reference is not used
/// after the zone is unmapped.
#[inline(always)]
pub(super) unsafe fn tag<'a>(z: *mut Zone, i: usize) -> &'a AtomicU8 {
    // SAFETY: caller contract.
    unsafe { tag_at(tag_key(z, i)) }
}

/// The tag key of chunk `i` of `z`: the zone's address plus `i`, its tag
/// byte being at `size_of::<Zone>()` from there (a magazine keeps the
/// key, and the stores of a tag through it add the constant in their
/// address: one addition less on the free path).
#[inline(always)]
pub(super) fn tag_key(z: *mut Zone, i: usize) -> usize {
    z as usize + i
}

/// The tag byte of the tag key `key`.
///
/// # Safety
/// `key` is [`tag_key`]`(z, i)` of a mapped zone `z` and `i < z_NMax` of
/// it; the reference is not used after the zone is unmapped.
#[inline(always)]
pub(super) unsafe fn tag_at<'a>(key: usize) -> &'a AtomicU8 {
    // SAFETY: caller contract: the tag array of `z_NMax` bytes follows
    // the header inside the zone's mapping.
    unsafe { AtomicU8::from_ptr((key + size_of::<Zone>()) as *mut u8) }
}

/// Index of the chunk at byte offset `off` (< `span`) of the array, and
/// whether `off` is the start of that chunk.
///
/// With `recip = ceil(2^32 / cs)` = `(2^32 + e) / cs` (`0 <= e < cs`) and
/// `off = i * cs + r`, `off * recip = i * 2^32 + i * e + r * recip`.
/// Since `off < 2^17` (a zone is at most 128 KiB) and `cs <= 2^14`,
/// `i * e < 2^17 <= 2^18 <= recip`: the high half is `i`, and the low half
/// is below `recip` exactly when `r == 0`.
#[inline(always)]
pub(super) fn index(off: usize, recip: u64) -> (usize, bool) {
    let p = (off as u64).wrapping_mul(recip);
    ((p >> 32) as usize, (p as u32) < recip as u32)
}

/// [`index`] with the reciprocal of a zone's [`Fixed`]: the product
/// and the exactness test each take their operand from memory.
#[inline(always)]
fn index_in(off: usize, f: &Fixed) -> (usize, bool) {
    let p = (off as u64).wrapping_mul(f.recip);
    ((p >> 32) as usize, (p as u32) < f.recip_lo)
}

/// `ceil(2^32 / cs)`.
pub(super) fn recip(cs: usize) -> u64 {
    (1u64 << 32).div_ceil(cs as u64)
}

/// The first step of [`alloc`]: take the first free-listed chunk of class
/// `idx` for the cpu `gd`, tagged `t`; NULL if the class has no zone or
/// its first zone has an empty free list.
///
/// # Safety
/// `gd` is the calling thread's cpu state; `idx < NZONES`.
#[inline(always)]
unsafe fn pop(gd: *mut SLGlobalData, idx: usize, t: u8) -> *mut u8 {
    // SAFETY: `gd` is ours; zones on `ZoneAry` are live and ours.
    unsafe {
        let z = (*gd).ZoneAry[idx].cast::<Zone>();
        if z.is_null() {
            return ptr::null_mut();
        }
        let c = (*z).free;
        if c.is_null() {
            return ptr::null_mut();
        }
        (*z).free = (*c).c_Next;
        let nf = (*z).h.z_NFree - 1;
        (*z).h.z_NFree = nf;
        if nf == 0 {
            (*gd).ZoneAry[idx] = (*z).h.z_Next;
            (*z).h.z_Next = ptr::null_mut();
        }
        let c = c.cast::<u8>();
        tag(z, index(c as usize - (*z).f.base, (*z).f.recip).0).store(t, Ordering::Relaxed);
        c
    }
}

/// Take the first chunk of class `idx`'s magazine (`mag`, at `moff` =
/// `idx * size_of::<Mag>()` among the cpu's) for the cpu `gd`, tagged
/// `t`; NULL if the magazine is empty (then call [`pop`]).
///
/// # Safety
/// `gd` is the calling thread's cpu state, its window open and no flag
/// set; `moff` is `idx * size_of::<Mag>()` with `idx < NZONES`.
#[inline(always)]
pub unsafe fn pop_mag(gd: *mut SLGlobalData, moff: usize, t: u8) -> *mut u8 {
    // SAFETY: caller contract; a chunk in the magazine is a chunk of a
    // live zone of `gd` (the zone counts it allocated) and `tg` its tag.
    unsafe {
        let (c, key) = mag::pop(gd, moff);
        if !c.is_null() {
            tag_at(key).store(t, Ordering::Relaxed);
        }
        c
    }
}

/// Take a chunk of class `idx` (size `cs`) for the cpu `gd`, tagged `t`.
/// NULL if no zone could be mapped.
///
/// # Safety
/// `gd` is the calling thread's cpu state, its window open and the state
/// not parked; `idx < NZONES`, `cs` its size.
#[inline(always)]
pub unsafe fn alloc(gd: *mut SLGlobalData, idx: usize, cs: usize, t: u8, zero: bool) -> *mut u8 {
    // SAFETY: `gd` is ours; zones on `ZoneAry` are live and ours.
    unsafe {
        let mut c = pop(gd, idx, t);
        if c.is_null() {
            let mut z = (*gd).ZoneAry[idx].cast::<Zone>();
            if z.is_null() {
                z = refill(gd, idx, cs);
                if z.is_null() {
                    return ptr::null_mut();
                }
                // Remote frees taken back may have filled its free list.
                c = pop(gd, idx, t);
            }
            if c.is_null() {
                return alloc_fresh(gd, z, idx, t, zero);
            }
        }
        if zero {
            ptr::write_bytes(c, 0, cs);
        }
        c
    }
}

/// Take a never-used chunk of `z` (its free list is empty).
///
/// # Safety
/// As [`alloc`] (`gd` the calling thread's cpu state, its window open and the
/// state not parked), and `z` is the live zone at the head of
/// `gd.ZoneAry[idx]`, with an empty free list and `z_NFree > 0`.
#[inline(never)]
unsafe fn alloc_fresh(
    gd: *mut SLGlobalData,
    z: *mut Zone,
    idx: usize,
    t: u8,
    zero: bool,
) -> *mut u8 {
    // SAFETY: `gd` owns the live zone `z`, which has a free chunk.
    unsafe {
        let h = addr_of_mut!((*z).h);
        let ui = (*h).z_UIndex;
        let cs = (*z).f.cs as usize;
        let c = ((*z).f.base as *mut u8).add(ui as usize * cs);
        let mut n = ui + 1;
        if n == (*h).z_NMax {
            n = 0;
        }
        if n == (*h).z_UEndIndex && (*h).z_NFree != 1 {
            fatal!(
                "slab_malloc",
                "corrupted zone {z:p}: never-used area exhausted with {} chunks free",
                (*h).z_NFree
            );
        }
        (*h).z_UIndex = n;
        (*h).z_NFree -= 1;
        if (*h).z_NFree == 0 {
            full(gd, z, idx);
        }
        tag(z, ui as usize).store(t, Ordering::Relaxed);
        if zero && (*h).z_Flags & SLZF_UNOTZEROD != 0 {
            ptr::write_bytes(c, 0, cs);
        }
        c
    }
}

/// `z` has no free chunk left: take it off its class list (it is first).
///
/// # Safety
/// The zones of `gd` are the caller's (its window open, not parked); `z` is
/// the head of `gd.ZoneAry[idx]`.
#[cold]
unsafe fn full(gd: *mut SLGlobalData, z: *mut Zone, idx: usize) {
    // SAFETY: `gd` owns `z`, the head of `ZoneAry[idx]`.
    unsafe {
        (*gd).ZoneAry[idx] = (*z).h.z_Next;
        (*z).h.z_Next = ptr::null_mut();
    }
}

/// Slow path of `alloc`: take back remote frees, else start a zone.
///
/// # Safety
/// As [`alloc`]: `gd` is the calling thread's cpu state, its window open and
/// the state not parked; `idx < NZONES`, `cs` its chunk size.
#[cold]
#[inline(never)]
unsafe fn refill(gd: *mut SLGlobalData, idx: usize, cs: usize) -> *mut Zone {
    // SAFETY: `gd` is the calling thread's cpu state.
    unsafe {
        drain_remote(gd);
        let z = (*gd).ZoneAry[idx].cast::<Zone>();
        if !z.is_null() {
            return z;
        }
        let p = params();
        let cached = pop_cached(gd);
        let (z, reused) = if !cached.is_null() {
            (cached, true)
        } else {
            // The cache is empty: if it threw zones away since the last
            // mapping, it was too small for this cpu's working set.
            if (*gd).sl_Unmapped > 0 {
                (*gd).sl_CacheMax = ((*gd).sl_CacheMax * 2).clamp(ZONE_CACHE_MAX, ZONE_CACHE_HIGH);
            }
            (*gd).sl_Unmapped = 0;
            let z = map_zone(gd, p.zone_size);
            if z.is_null() {
                return z;
            }
            (z, false)
        };
        let hdr = size_of::<Zone>();
        let bound = (p.zone_size - hdr) / cs;
        let align = if cs.is_power_of_two() { cs } else { 8 };
        let off = (hdr + bound).next_multiple_of(align);
        let nmax = (p.zone_size - off) / cs;
        if reused {
            ptr::write_bytes(z.cast::<u8>().add(hdr), TAG_NEVER, nmax);
        }
        let start = (*gd).JunkIndex as usize % nmax;
        (*gd).JunkIndex = ((*gd).JunkIndex + ZALLOC_SLAB_SLIDE) & (ZALLOC_MAX_ZONE_SIZE - 1);
        let base = z.cast::<u8>().add(off);
        z.write(Zone {
            h: SLZone {
                z_Magic: ZALLOC_SLAB_MAGIC,
                z_Cpu: (*gd).sl_Slot,
                z_CpuGd: ptr::null_mut(),
                z_NFree: nmax as i32,
                z_Next: ptr::null_mut(),
                z_NMax: nmax as i32,
                z_BasePtr: base.cast(),
                z_UIndex: start as i32,
                z_UEndIndex: start as i32,
                z_ChunkSize: cs as i32,
                z_FirstFreePg: NO_PAGE,
                z_ZoneIndex: idx as i32,
                z_Flags: if reused { SLZF_UNOTZEROD } else { 0 },
                z_PageAry: [ptr::null_mut(); SLZONE_NPAGES],
            },
            free: ptr::null_mut(),
            f: Fixed {
                magic: ZALLOC_SLAB_MAGIC,
                cs: cs as u32,
                span: nmax * cs,
                recip: recip(cs),
                base: base as usize,
                owner: gd,
                idx: idx as u32,
                recip_lo: recip(cs) as u32,
                mag: mag::of(gd, idx),
            },
        });
        (*gd).ZoneAry[idx] = z.cast();
        z
    }
}

/// Map a `zs`-aligned zone of `zs` bytes (`oversized::map_aligned`) and
/// register it.
///
/// # Safety
/// `gd` is the calling thread's cpu state, its window open and the state not
/// parked (its `ZoneInfo` is counted); `zs` is the zone size, a power of 2
/// and a page multiple.
unsafe fn map_zone(gd: *mut SLGlobalData, zs: usize) -> *mut Zone {
    let mut a = registry::carve(zs);
    if a.is_null() {
        // SAFETY: `zs` is a power of 2 and a page multiple.
        a = unsafe { oversized::map_aligned(zs, zs) };
        if a == libc::MAP_FAILED {
            return ptr::null_mut();
        }
    }
    if !registry::set(a as usize, true) {
        // SAFETY: the fresh zone is ours and nothing refers to it.
        unsafe { registry::give_back(a, zs) };
        return ptr::null_mut();
    }
    // SAFETY: caller contract.
    unsafe { zone_stat(gd, zs as isize) };
    a.cast()
}

/// Count `bytes` of zone mapping (negative: unmapped) in `gd.ZoneInfo`.
///
/// # Safety
/// The zones of `gd` are the caller's: its owner's window is open and the
/// state not parked, or it is parked and the caller is the reclaimer (the
/// only writers of `ZoneInfo`).
unsafe fn zone_stat(gd: *mut SLGlobalData, bytes: isize) {
    // SAFETY: `gd` is the calling thread's cpu state; `ZoneInfo` is only
    // written by its owner.
    unsafe {
        let zi = addr_of_mut!((*gd).ZoneInfo);
        (*zi).ks_memuse[0] += bytes as c_long;
        (*zi).ks_inuse[0] += bytes.signum() as c_long;
        if bytes > 0 {
            (*zi).ks_calls += 1;
        }
    }
}

/// Give back (unmap, or return to the arena) a zone that has no live
/// chunk.
///
/// # Safety
/// The zones of `gd` are the caller's (as for [`zone_stat`]); `z` is one of
/// them with no live chunk, on no list (class list or cache), and nothing
/// uses it afterwards.
unsafe fn release(gd: *mut SLGlobalData, z: *mut Zone) {
    let zs = params().zone_size;
    // SAFETY: the zone is ours, unlinked and empty.
    unsafe {
        (*z).h.z_Magic = 0;
        (*z).f.magic = 0;
        registry::set(z as usize, false);
        registry::give_back(z.cast(), zs);
        zone_stat(gd, -(zs as isize));
    }
}

/// Validate `c` as a chunk of the live zone at `base`; return (zone, chunk
/// index).
///
/// # Safety
/// `base` is a registered zone (`registry::is_zone`) that stays mapped for
/// the call. `c` may be any address: one that is not the start of a chunk
/// of that zone is reported and aborts.
#[inline(always)]
unsafe fn locate(func: &str, base: usize, c: *mut u8) -> (*mut Zone, usize) {
    let z = base as *mut Zone;
    // SAFETY: `base` is a registered, mapped zone; `Fixed` is read-only
    // while the zone has live chunks.
    unsafe {
        let f = &(*z).f;
        if f.magic != ZALLOC_SLAB_MAGIC {
            bad_magic(func, c, z);
        }
        let off = (c as usize).wrapping_sub(f.base);
        if off >= f.span {
            bad_ptr(func, c, "points into a slab zone header, not at a chunk");
        }
        let (i, exact) = index(off, f.recip);
        if !exact {
            bad_ptr(func, c, "points inside a chunk, not at its start");
        }
        (z, i)
    }
}

#[cold]
fn bad_magic(func: &str, c: *mut u8, z: *mut Zone) -> ! {
    fatal!(func, "{c:p}: zone header at {z:p} is corrupted (bad magic)")
}

#[cold]
fn bad_ptr(func: &str, c: *mut u8, why: &str) -> ! {
    fatal!(func, "pointer {c:p} was not returned by slab_malloc: {why}")
}

/// Check the chunk's tag against the type's tag `t`.
///
/// # Safety
/// `z` is a mapped zone and `i < z_NMax` of it (as [`locate`] returns them);
/// `ty` is a valid `malloc_type` (its name goes into the message).
#[inline(always)]
unsafe fn check_tag(func: &str, ty: *mut malloc_type, z: *mut Zone, i: usize, c: *mut u8, t: u8) {
    // SAFETY: `i` was validated by `locate`.
    let have = unsafe { tag(z, i) }.load(Ordering::Relaxed);
    if have != t {
        tag_mismatch(func, ty, c, have, t);
    }
}

#[cold]
#[inline(never)]
fn tag_mismatch(func: &str, ty: *mut malloc_type, c: *mut u8, have: u8, t: u8) {
    match have {
        TAG_NEVER => bad_ptr(func, c, "that chunk was never allocated"),
        TAG_FREE => fatal!(func, "double free of {c:p}: the chunk is already free"),
        _ if have == TAG_UNCHECKED || t == TAG_UNCHECKED => {}
        _ => {
            // SAFETY: `ty` was validated by the caller.
            let freed_as = unsafe { types::name(ty) };
            fatal!(
                func,
                "wrong malloc_type for {c:p}: freed as {freed_as} but allocated as {}",
                types::name_of_tag(have)
            )
        }
    }
}

/// The chunk size behind `c`, after checking it is a live chunk of `ty`.
///
/// # Safety
/// `base` is `c & ~ZoneMask` and a registered zone; `ty` is valid.
pub unsafe fn usable(func: &str, base: usize, c: *mut u8, ty: *mut malloc_type, t: u8) -> usize {
    // SAFETY: caller contract.
    unsafe {
        let (z, i) = locate(func, base, c);
        check_tag(func, ty, z, i, c, t);
        (*z).f.cs as usize
    }
}

/// Free chunk `c` of the zone at `base`; returns its size.
///
/// # Safety
/// `base` is `c & ~ZoneMask` and a registered zone; `gd` is the calling
/// thread's cpu state; `ty` is valid.
#[inline(always)]
pub unsafe fn free(
    gd: *mut SLGlobalData,
    base: usize,
    c: *mut u8,
    ty: *mut malloc_type,
    t: u8,
) -> usize {
    // SAFETY: caller contract.
    unsafe {
        let (z, i) = locate("slab_free", base, c);
        check_tag("slab_free", ty, z, i, c, t);
        tag(z, i).store(TAG_FREE, Ordering::Relaxed);
        let cs = (*z).f.cs as usize;
        let owner = (*z).f.owner;
        if owner == gd {
            let w = reclaim::own(gd);
            free_local(gd, z, c);
            w.close();
        } else {
            free_remote(c, owner);
        }
        cs
    }
}

/// The fast path of `slab_free` for a chunk of the live zone at `base`:
/// checks, statistics, and back to the free list. Anything unusual (a
/// tag that does not match) goes to `free_slow`, which reports it.
///
/// # Safety
/// `base` is `c & ~ZoneMask` and a registered zone; `gd` is the calling
/// thread's cpu state; `ty` is a valid `malloc_type` and `r` its
/// `types::reg_word` (the chunk is freed here only if `ty` is registered
/// and the chunk's tag is its own).
#[inline(always)]
pub unsafe fn free_fast(
    gd: *mut SLGlobalData,
    base: usize,
    c: *mut u8,
    ty: *mut malloc_type,
    r: isize,
) {
    // SAFETY: caller contract; `Fixed` is read-only while the zone has
    // live chunks, the rest of the zone is ours when `owner == gd`.
    unsafe {
        // The window opens first: its store then overlaps the loads of
        // the checks (measured: free of its cost in `pair` and `batch`).
        let w = reclaim::open(gd);
        // The checks of `locate` and `check_tag`; anything wrong goes to
        // `free_slow`, which makes them again and reports.
        let z = base as *mut Zone;
        let f = &(*z).f;
        // The magic, `span`, `recip` and `recip_lo` are used from memory
        // (a compare with an immediate, a compare, a multiplication, a
        // compare): no loads of their own.
        let off = (c as usize).wrapping_sub(f.base);
        if f.magic != ZALLOC_SLAB_MAGIC || off >= f.span {
            w.close();
            return super::free_slow(c.cast(), ty);
        }
        let (i, exact) = index_in(off, f);
        let key = tag_key(z, i);
        let tg = tag_at(key);
        // The type is registered and its tag is the chunk's: one compare.
        // A plain read of the tag (an atomic one of a byte is zero-extended
        // twice): only the chunk's holder writes it (allocation, this
        // free), so no other thread writes it now unless the program
        // frees the chunk twice at once, which the checks cannot catch
        // either way.
        if !exact || !types::reg_word_is(r, tg.as_ptr().read()) {
            w.close();
            return super::free_slow(c.cast(), ty);
        }
        tg.store(TAG_FREE, Ordering::Relaxed);
        let cs = -(f.cs as isize);
        // One compare for another cpu's chunk, a shared statistics slot
        // and a parked state: the state's key is its address only while
        // no flag is set (the owner read again below the test, so the
        // test needs no copy of it).
        if (*z).f.owner as usize != reclaim::key(gd) {
            w.close();
            let owner = (*z).f.owner;
            types::stat(gd, ty, cs, -1);
            if owner != gd {
                return free_remote(c, owner);
            }
            return free_flagged(c, gd, z);
        }
        types::stat_home(gd, ty, cs, -1);
        if mag::push((*z).f.mag, c, key) {
            w.close();
            return;
        }
        free_list_in(c, w, z);
    }
}

/// The rest of [`free_fast`] when the class's magazine is full: `c` goes
/// on its zone's free list, in the window `w`, which it closes. Out of
/// line, so the fast path keeps to the registers it need not save; the
/// chunk first, as `slab_free` has it, so its tail calls move fewer
/// registers (and so for the other tail calls of [`free_fast`]).
///
/// # Safety
/// `w` is the open window of `gd` (`w.gd()`), the calling thread's cpu
/// state with no flag set; `z` is a live zone of `gd` and `c` a chunk of
/// `z` that is no longer in use (tagged free) and on no list.
#[inline(never)]
unsafe fn free_list_in(c: *mut u8, w: reclaim::Window, z: *mut Zone) {
    let gd = w.gd();
    // SAFETY: caller contract.
    unsafe {
        let ch = c.cast::<SLChunk>();
        (*ch).c_Next = (*z).free;
        (*z).free = ch;
        let nf = (*z).h.z_NFree + 1;
        (*z).h.z_NFree = nf;
        if nf == 1
            || (nf == (*z).h.z_NMax
                && ((*gd).ZoneAry[(*z).f.idx as usize] != z.cast() || !(*z).h.z_Next.is_null()))
        {
            relist(gd, z);
        }
        w.close();
    }
}

/// The local part of [`free_fast`] for a state with a flag set: a shared
/// statistics slot, or parked.
///
/// # Safety
/// `gd` is the calling thread's cpu state, no window of it open; `z` is
/// a live zone of `gd` and `c` a chunk of `z` being freed (its tag
/// already set free).
#[cold]
#[inline(never)]
unsafe fn free_flagged(c: *mut u8, gd: *mut SLGlobalData, z: *mut Zone) {
    // SAFETY: `gd` is the calling thread's state, owner of the live zone
    // `z`; the window makes its zones ours.
    unsafe {
        let w = reclaim::own(gd);
        free_local(gd, z, c);
        w.close();
    }
}

/// Push `c` on `owner`'s remote-free list: one compare-and-swap unless
/// another cpu pushes at the same time. The first chunk on an empty list
/// makes sure the reclaimer will look at it.
///
/// # Safety
/// `owner` is the cpu state owning the zone of `c` (states are never freed);
/// `c` is a chunk of that zone which the caller has just tagged free and
/// which nothing else uses: its first word becomes the list link.
#[inline(never)]
unsafe fn free_remote(c: *mut u8, owner: *mut SLGlobalData) {
    // SAFETY: `owner` is the live state owning the zone of `c` (states
    // are pooled, never freed); `c` is a chunk we just marked free.
    unsafe {
        let head = AtomicPtr::from_ptr(addr_of_mut!((*owner).sl_Remote));
        let ch = c.cast::<SLChunk>();
        let mut cur = head.load(Ordering::Relaxed);
        loop {
            (*ch).c_Next = cur;
            // Sequentially consistent for `pushed_first` (the same
            // instruction on x86).
            match head.compare_exchange_weak(cur, ch, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur.is_null() {
            reclaim::pushed_first();
        }
    }
}

/// Put `c` back on the free list of zone `z` owned by `gd`.
///
/// # Safety
/// The zones of `gd` are the caller's (as for [`zone_stat`]); `z` is a live
/// zone of `gd` and `c` a chunk of `z` that is no longer in use and on no
/// free list.
#[inline(always)]
unsafe fn free_local(gd: *mut SLGlobalData, z: *mut Zone, c: *mut u8) {
    // SAFETY: `gd` owns `z`, which is live; `c` is a chunk of `z`.
    unsafe {
        let ch = c.cast::<SLChunk>();
        (*ch).c_Next = (*z).free;
        #[cfg(test)]
        reclaim::stretch();
        (*z).free = ch;
        let nf = (*z).h.z_NFree + 1;
        (*z).h.z_NFree = nf;
        if nf == 1 || nf == (*z).h.z_NMax {
            relist(gd, z);
        }
    }
}

/// `z` just got its first free chunk (put it back on its class list) or
/// became fully free (cache or unmap it unless it is its class's only
/// zone).
///
/// # Safety
/// The zones of `gd` are the caller's (as for [`zone_stat`]); `z` is a live
/// zone of `gd` whose free count just rose to 1 (it is then on no list) or
/// to `z_NMax`.
#[cold]
#[inline(never)]
unsafe fn relist(gd: *mut SLGlobalData, z: *mut Zone) {
    // SAFETY: `gd` owns the live zone `z`.
    unsafe {
        let h = addr_of_mut!((*z).h);
        let idx = (*h).z_ZoneIndex as usize;
        if (*h).z_NFree == 1 {
            (*h).z_Next = (*gd).ZoneAry[idx];
            (*gd).ZoneAry[idx] = h;
        }
        if (*h).z_NFree == (*h).z_NMax && ((*gd).ZoneAry[idx] != h || !(*h).z_Next.is_null()) {
            unlink(gd, z);
            retire(gd, z);
        }
    }
}

/// Remove `z` from its class list.
///
/// # Safety
/// The zones of `gd` are the caller's (as for [`zone_stat`]), and `z` and
/// every zone on its class list are live.
unsafe fn unlink(gd: *mut SLGlobalData, z: *mut Zone) {
    // SAFETY: `gd` owns `z`, which is on `ZoneAry[z_ZoneIndex]`.
    unsafe {
        let mut pp = addr_of_mut!((*gd).ZoneAry[(*z).h.z_ZoneIndex as usize]);
        while !(*pp).is_null() {
            if *pp == z.cast() {
                *pp = (*z).h.z_Next;
                (*z).h.z_Next = ptr::null_mut();
                return;
            }
            pp = addr_of_mut!((**pp).z_Next);
        }
    }
}

/// Cache a fully free, unlinked zone, or unmap it if the cache is full.
/// A cpu that unmaps more zones than its cache holds without needing a
/// new one halves an enlarged cache (down to `ZONE_CACHE_MAX`) and unmaps
/// what no longer fits.
///
/// # Safety
/// The zones of `gd` are the caller's (as for [`zone_stat`]); `z` is a live
/// zone of `gd`, fully free and on no list.
unsafe fn retire(gd: *mut SLGlobalData, z: *mut Zone) {
    // SAFETY: `gd` owns `z` and its cached zones.
    unsafe {
        let cap = (*gd).sl_CacheMax.max(ZONE_CACHE_MAX);
        if (*gd).NFreeZones < cap {
            (*z).h.z_Next = (*gd).FreeZones;
            (*gd).FreeZones = z.cast();
            (*gd).NFreeZones += 1;
            return;
        }
        release(gd, z);
        (*gd).sl_Unmapped += 1;
        if (*gd).sl_Unmapped > cap && cap > ZONE_CACHE_MAX {
            let cap = (cap / 2).max(ZONE_CACHE_MAX);
            (*gd).sl_CacheMax = cap;
            (*gd).sl_Unmapped = 0;
            for _ in cap..(*gd).NFreeZones {
                release(gd, pop_cached(gd));
            }
        }
    }
}

/// Take a zone off the cache of fully free zones; NULL if it is empty.
///
/// # Safety
/// The zones of `gd`, and so its cache of free zones, are the caller's (as
/// for [`zone_stat`]).
unsafe fn pop_cached(gd: *mut SLGlobalData) -> *mut Zone {
    // SAFETY: `gd` is ours, and so are the zones on its cache.
    unsafe {
        let z = (*gd).FreeZones.cast::<Zone>();
        if !z.is_null() {
            (*gd).FreeZones = (*z).h.z_Next;
            (*gd).NFreeZones -= 1;
        }
        z
    }
}

/// Take back the chunks other cpus freed.
///
/// # Safety
/// The zones of `gd` are the caller's: its owner's window is open, or it
/// is parked and the caller is the reclaimer.
pub unsafe fn drain_remote(gd: *mut SLGlobalData) {
    // SAFETY: `gd` is ours; every chunk on the list belongs to one of our
    // zones, which stay live while they have chunks not yet drained.
    unsafe {
        let head = AtomicPtr::from_ptr(addr_of_mut!((*gd).sl_Remote));
        if head.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mask = params().zone_mask;
        let mut c = head.swap(ptr::null_mut(), Ordering::Acquire);
        let d = reclaim::drains(gd);
        d.store(d.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        while !c.is_null() {
            let next = (*c).c_Next;
            free_local(gd, (c as usize & !mask) as *mut Zone, c.cast());
            c = next;
        }
    }
}

/// Give every fully free zone of `gd` back to the system (thread exit).
///
/// # Safety
/// `gd` is the calling thread's cpu state, no window of it open.
pub unsafe fn release_free(gd: *mut SLGlobalData) {
    // SAFETY: caller contract; the window makes the zones ours.
    unsafe {
        let w = reclaim::own(gd);
        give_back(gd);
        w.close();
    }
}

/// Take back the remote frees of `gd` and the chunks in its magazines,
/// and unmap every zone of it that is then fully free, its cache of free
/// zones included.
///
/// # Safety
/// As [`drain_remote`].
pub unsafe fn give_back(gd: *mut SLGlobalData) {
    // SAFETY: caller contract: all zones reachable from `gd` are ours.
    unsafe {
        let mask = params().zone_mask;
        mag::flush(gd, |c| free_local(gd, (c as usize & !mask) as *mut Zone, c));
        drain_remote(gd);
        loop {
            let z = pop_cached(gd);
            if z.is_null() {
                break;
            }
            release(gd, z);
        }
        (*gd).sl_CacheMax = ZONE_CACHE_MAX;
        (*gd).sl_Unmapped = 0;
        for idx in 0..(*gd).ZoneAry.len() {
            let mut z = (*gd).ZoneAry[idx].cast::<Zone>();
            while !z.is_null() {
                let next = (*z).h.z_Next.cast::<Zone>();
                if (*z).h.z_NFree == (*z).h.z_NMax {
                    unlink(gd, z);
                    release(gd, z);
                }
                z = next;
            }
        }
    }
}

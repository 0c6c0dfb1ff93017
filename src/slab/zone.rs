//! Zones: one `ZoneSize`-aligned mapping serving one size class for one
//! cpu. Layout: `Zone` header (the C `SLZone` first), one tag byte per
//! chunk, then the chunk array (aligned to the chunk size when that is a
//! power of 2, else to 8).
//!
//! Only the owning cpu changes a zone's header and free lists. Other cpus
//! read the fields that stay fixed while the zone has live chunks (magic,
//! base, chunk size, owner) and change the tag of the chunk they free.

use core::ffi::c_long;
use core::mem::size_of;
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::abi::{
    PAGE_SIZE, SLChunk, SLGlobalData, SLZF_UNOTZEROD, SLZONE_NPAGES, SLZone, ZALLOC_MAX_ZONE_SIZE,
    ZALLOC_SLAB_MAGIC, ZALLOC_SLAB_SLIDE, malloc_type,
};
use crate::fatal;

use super::types::{self, TAG_UNCHECKED};
use super::{ZONE_CACHE_MAX, params, registry};

/// Tag of a chunk never handed out since the zone took its size class.
const TAG_NEVER: u8 = 0;
/// Tag of a freed chunk.
const TAG_FREE: u8 = 1;
/// `z_FirstFreePg` when no page has a free-list chunk.
const NO_PAGE: i32 = SLZONE_NPAGES as i32;
const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();

/// A zone header: the C-visible `SLZone` plus what this implementation
/// needs.
#[repr(C)]
pub struct Zone {
    pub h: SLZone,
    /// The owning cpu state.
    pub owner: *mut SLGlobalData,
    /// `ceil(2^32 / chunk size)`: chunk index by multiplication.
    pub recip: u64,
    /// Chunks on the per-page free lists (`z_FirstFreePg` is then a lower
    /// bound of the first page that has one).
    pub listed: usize,
}

#[inline]
unsafe fn tag<'a>(z: *mut Zone, i: usize) -> &'a AtomicU8 {
    // SAFETY: the caller passes `i < z_NMax`; the tag array of `z_NMax`
    // bytes follows the header inside the zone's mapping.
    unsafe { AtomicU8::from_ptr(z.cast::<u8>().add(size_of::<Zone>() + i)) }
}

/// Take a chunk of class `idx` (size `cs`) for the cpu `gd`, tagged `t`.
/// NULL if no zone could be mapped.
///
/// # Safety
/// `gd` is the calling thread's cpu state; `idx < NZONES`, `cs` its size.
#[inline]
pub unsafe fn alloc(gd: *mut SLGlobalData, idx: usize, cs: usize, t: u8, zero: bool) -> *mut u8 {
    // SAFETY: `gd` is ours; zones on `ZoneAry` are live and ours.
    unsafe {
        let mut z = (*gd).ZoneAry[idx].cast::<Zone>();
        if z.is_null() {
            z = refill(gd, idx, cs);
            if z.is_null() {
                return ptr::null_mut();
            }
        }
        let h = addr_of_mut!((*z).h);
        let c: *mut u8;
        let fresh;
        if (*z).listed != 0 {
            // Lowest page with a free chunk first.
            let pa = addr_of_mut!((*h).z_PageAry) as *mut *mut SLChunk;
            let mut pg = (*h).z_FirstFreePg as usize;
            while (*pa.add(pg)).is_null() {
                pg += 1;
            }
            (*h).z_FirstFreePg = pg as i32;
            let head = *pa.add(pg);
            *pa.add(pg) = (*head).c_Next;
            (*z).listed -= 1;
            c = head.cast();
            fresh = false;
        } else {
            let ui = (*h).z_UIndex;
            c = (*h).z_BasePtr.cast::<u8>().add(ui as usize * cs);
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
            fresh = (*h).z_Flags & SLZF_UNOTZEROD == 0;
        }
        (*h).z_NFree -= 1;
        if (*h).z_NFree == 0 {
            (*gd).ZoneAry[idx] = (*h).z_Next;
            (*h).z_Next = ptr::null_mut();
        }
        let i = ((c as usize - (*h).z_BasePtr as usize) * (*z).recip as usize) >> 32;
        tag(z, i).store(t, Ordering::Relaxed);
        if zero && !fresh {
            ptr::write_bytes(c, 0, cs);
        }
        c
    }
}

/// Slow path of `alloc`: take back remote frees, else start a zone.
#[cold]
unsafe fn refill(gd: *mut SLGlobalData, idx: usize, cs: usize) -> *mut Zone {
    // SAFETY: `gd` is the calling thread's cpu state.
    unsafe {
        drain_remote(gd);
        let z = (*gd).ZoneAry[idx].cast::<Zone>();
        if !z.is_null() {
            return z;
        }
        let p = params();
        let (z, reused) = if !(*gd).FreeZones.is_null() {
            let z = (*gd).FreeZones.cast::<Zone>();
            (*gd).FreeZones = (*z).h.z_Next;
            (*gd).NFreeZones -= 1;
            (z, true)
        } else {
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
        z.write(Zone {
            h: SLZone {
                z_Magic: ZALLOC_SLAB_MAGIC,
                z_Cpu: (*gd).sl_Slot,
                z_CpuGd: ptr::null_mut(),
                z_NFree: nmax as i32,
                z_Next: ptr::null_mut(),
                z_NMax: nmax as i32,
                z_BasePtr: z.cast::<u8>().add(off).cast(),
                z_UIndex: start as i32,
                z_UEndIndex: start as i32,
                z_ChunkSize: cs as i32,
                z_FirstFreePg: NO_PAGE,
                z_ZoneIndex: idx as i32,
                z_Flags: if reused { SLZF_UNOTZEROD } else { 0 },
                z_PageAry: [ptr::null_mut(); SLZONE_NPAGES],
            },
            owner: gd,
            recip: (1u64 << 32).div_ceil(cs as u64),
            listed: 0,
        });
        (*gd).ZoneAry[idx] = z.cast();
        z
    }
}

/// Map a `zs`-aligned zone of `zs` bytes (map twice the size, trim).
unsafe fn map_zone(gd: *mut SLGlobalData, zs: usize) -> *mut Zone {
    // SAFETY: anonymous mapping; the trims unmap only parts of it.
    unsafe {
        let p = libc::mmap(
            ptr::null_mut(),
            2 * zs,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let a = (p as usize).next_multiple_of(zs);
        let lead = a - p as usize;
        if lead != 0 {
            libc::munmap(p, lead);
        }
        if zs - lead != 0 {
            libc::munmap((a + zs) as *mut libc::c_void, zs - lead);
        }
        if !registry::set(a, true) {
            libc::munmap(a as *mut libc::c_void, zs);
            return ptr::null_mut();
        }
        zone_stat(gd, zs as isize);
        a as *mut Zone
    }
}

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

/// Unmap a zone that has no live chunk.
unsafe fn release(gd: *mut SLGlobalData, z: *mut Zone) {
    let zs = params().zone_size;
    // SAFETY: the zone is ours, unlinked and empty.
    unsafe {
        (*z).h.z_Magic = 0;
        registry::set(z as usize, false);
        libc::munmap(z.cast(), zs);
        zone_stat(gd, -(zs as isize));
    }
}

/// Validate `c` as a chunk of the live zone at `base`; return (zone, chunk
/// index).
#[inline]
unsafe fn locate(func: &str, base: usize, c: *mut u8) -> (*mut Zone, usize) {
    let z = base as *mut Zone;
    // SAFETY: `base` is a registered, mapped zone.
    unsafe {
        if (*z).h.z_Magic != ZALLOC_SLAB_MAGIC {
            fatal!(func, "{c:p}: zone header at {z:p} is corrupted (bad magic)");
        }
        let cs = (*z).h.z_ChunkSize as usize;
        let off = (c as usize).wrapping_sub((*z).h.z_BasePtr as usize);
        if off >= (*z).h.z_NMax as usize * cs {
            bad_ptr(func, c, "points into a slab zone header, not at a chunk");
        }
        let i = (off * (*z).recip as usize) >> 32;
        if i * cs != off {
            bad_ptr(func, c, "points inside a chunk, not at its start");
        }
        (z, i)
    }
}

#[cold]
fn bad_ptr(func: &str, c: *mut u8, why: &str) -> ! {
    fatal!(func, "pointer {c:p} was not returned by slab_malloc: {why}")
}

/// Check the chunk's tag against the type's tag `t`.
#[inline]
unsafe fn check_tag(func: &str, ty: *mut malloc_type, z: *mut Zone, i: usize, c: *mut u8, t: u8) {
    // SAFETY: `i` was validated by `locate`.
    let have = unsafe { tag(z, i) }.load(Ordering::Relaxed);
    if have != t {
        tag_mismatch(func, ty, c, have, t);
    }
}

#[cold]
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
        (*z).h.z_ChunkSize as usize
    }
}

/// Free chunk `c` of the zone at `base`; returns its size.
///
/// # Safety
/// `base` is `c & ~ZoneMask` and a registered zone; `gd` is the calling
/// thread's cpu state; `ty` is valid.
#[inline]
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
        let cs = (*z).h.z_ChunkSize as usize;
        let owner = (*z).owner;
        if owner == gd {
            free_local(gd, z, c);
        } else {
            let head = AtomicPtr::from_ptr(addr_of_mut!((*owner).sl_Remote));
            let ch = c.cast::<SLChunk>();
            let mut cur = head.load(Ordering::Relaxed);
            loop {
                (*ch).c_Next = cur;
                match head.compare_exchange_weak(cur, ch, Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
        cs
    }
}

/// Put `c` back on its page's free list in zone `z` owned by `gd`.
#[inline]
unsafe fn free_local(gd: *mut SLGlobalData, z: *mut Zone, c: *mut u8) {
    // SAFETY: `gd` owns `z`, which is live; `c` is a chunk of `z`.
    unsafe {
        let h = addr_of_mut!((*z).h);
        let pg = ((c as usize - z as usize) >> PAGE_SHIFT) as i32;
        let pa = addr_of_mut!((*h).z_PageAry) as *mut *mut SLChunk;
        let ch = c.cast::<SLChunk>();
        (*ch).c_Next = *pa.add(pg as usize);
        *pa.add(pg as usize) = ch;
        (*z).listed += 1;
        if pg < (*h).z_FirstFreePg {
            (*h).z_FirstFreePg = pg;
        }
        (*h).z_NFree += 1;
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
unsafe fn retire(gd: *mut SLGlobalData, z: *mut Zone) {
    // SAFETY: `gd` owns `z`.
    unsafe {
        if (*gd).NFreeZones < ZONE_CACHE_MAX {
            (*z).h.z_Next = (*gd).FreeZones;
            (*gd).FreeZones = z.cast();
            (*gd).NFreeZones += 1;
        } else {
            release(gd, z);
        }
    }
}

/// Take back the chunks other cpus freed.
///
/// # Safety
/// `gd` is the calling thread's cpu state.
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
/// `gd` is the calling thread's cpu state.
pub unsafe fn release_free(gd: *mut SLGlobalData) {
    // SAFETY: `gd` is ours and so are all zones reachable from it.
    unsafe {
        drain_remote(gd);
        while !(*gd).FreeZones.is_null() {
            let z = (*gd).FreeZones.cast::<Zone>();
            (*gd).FreeZones = (*z).h.z_Next;
            (*gd).NFreeZones -= 1;
            release(gd, z);
        }
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

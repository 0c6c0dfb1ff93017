//! Oversized allocations (`>= ZoneLimit` or a multiple of the page size):
//! a fresh page-aligned mapping each, recorded in a hash of `SLOversized`
//! descriptors (key as in the original). Frees unmap at once.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::{self, addr_of_mut};
use std::sync::Mutex;

use crate::abi::{M_MAGIC, SLGlobalData, SLOversized, ZALLOC_OVSZ_MAGIC, malloc_type};
use crate::fatal;

use super::{Params, account, types};

const HSIZE: usize = 8192;

/// A descriptor: the C-visible `SLOversized` plus the owning type.
#[repr(C)]
struct OvDesc {
    ov: SLOversized,
    ty: *mut malloc_type,
    magic: c_int,
}

pub(super) struct Table([*mut OvDesc; HSIZE]);
// SAFETY: the descriptors are only reached under the mutex.
unsafe impl Send for Table {}

static TABLE: Mutex<Table> = Mutex::new(Table([ptr::null_mut(); HSIZE]));

/// The private malloc type of the descriptors ("overszinfo").
pub struct SyncType(UnsafeCell<malloc_type>);
// SAFETY: the allocator only touches the type through atomics and the
// registration mutex, like any C-defined type.
unsafe impl Sync for SyncType {}

pub static M_OVERSIZED: SyncType = SyncType(UnsafeCell::new(malloc_type {
    ks_next: ptr::null_mut(),
    ks_memuse: [0; 16],
    ks_loosememuse: 0,
    ks_limit: 0,
    ks_size: 0,
    ks_inuse: [0; 16],
    ks_calls: 0,
    ks_maxused: 0,
    ks_magic: M_MAGIC,
    ks_shortdesc: c"overszinfo".as_ptr(),
    ks_limblocks: 0,
    ks_mapblocks: 0,
    ks_reserved: [0; 4],
}));

fn ov_type() -> *mut malloc_type {
    M_OVERSIZED.0.get()
}

#[inline]
fn hash(p: usize) -> usize {
    ((p >> 12) ^ (p >> 24)) & (HSIZE - 1)
}

pub(super) fn table() -> std::sync::MutexGuard<'static, Table> {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(test)]
    if HOLD_TABLE.load(core::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    t
}

/// Unit tests set this to hold the table's lock longer, so a `fork()`
/// lands while another thread holds it.
#[cfg(test)]
pub static HOLD_TABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Map `size` bytes for `ty`.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type.
pub unsafe fn alloc(
    gd: *mut SLGlobalData,
    size: usize,
    ty: *mut malloc_type,
    flags: c_int,
    p: &Params,
) -> *mut c_void {
    let Some(bytes) = size
        .checked_next_multiple_of(p.os_page)
        .filter(|b| *b <= isize::MAX as usize)
    else {
        // SAFETY: caller contract.
        unsafe { account::account(gd, ty, 0) };
        return super::fail("slab_malloc", ty, flags, "request too large");
    };
    // SAFETY: caller contract.
    if !unsafe { account::account(gd, ty, bytes) } {
        return super::fail("slab_malloc", ty, flags, "malloc limit exceeded");
    }
    // SAFETY: descriptor from the slab itself (a zone chunk, never oversized).
    let d = unsafe { super::malloc(size_of::<OvDesc>(), ov_type(), flags) }.cast::<OvDesc>();
    // Power-of-2 sizes are aligned to their size.
    let align = if size.is_power_of_two() {
        size.max(p.os_page)
    } else {
        p.os_page
    };
    // SAFETY: fresh mapping.
    let m = unsafe { map_aligned(bytes, align) };
    if d.is_null() || m == libc::MAP_FAILED {
        // SAFETY: undo what succeeded.
        unsafe {
            account::uncharge(ty, bytes);
            if !d.is_null() {
                super::free(d.cast(), ov_type());
            }
            if m != libc::MAP_FAILED {
                libc::munmap(m, bytes);
            }
        }
        return super::fail("slab_malloc", ty, flags, "out of memory (mmap failed)");
    }
    let mut t = table();
    let b = &mut t.0[hash(m as usize)];
    // SAFETY: `d` is a fresh chunk large enough for an `OvDesc`.
    unsafe {
        d.write(OvDesc {
            ov: SLOversized {
                ov_Next: (*b).cast(),
                ov_Ptr: m,
                ov_Bytes: bytes,
            },
            ty,
            magic: ZALLOC_OVSZ_MAGIC,
        });
    }
    *b = d;
    drop(t);
    // SAFETY: caller contract.
    unsafe { types::stat(gd, ty, bytes as isize, 1) };
    m
}

/// Map `bytes` (a page multiple) aligned to `align` (a power of 2 and a
/// page multiple): map `align` more than needed and trim. `MAP_FAILED`
/// if `mmap` fails. Zones are mapped here too (`zone::map_zone`).
///
/// # Safety
/// `bytes` is a multiple of the system page size, and `align` a power of 2
/// that is either at most 4096 or a multiple of the page size: otherwise a
/// trim can unmap part of the returned range.
pub(super) unsafe fn map_aligned(bytes: usize, align: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { map_prot(bytes, align, libc::PROT_READ | libc::PROT_WRITE, 0) }
}

/// [`map_aligned`] as a reservation: inaccessible, no memory committed
/// (`registry::carve` makes parts of it readable and writable).
///
/// # Safety
/// As [`map_aligned`].
pub(super) unsafe fn reserve_aligned(bytes: usize, align: usize) -> *mut c_void {
    // SAFETY: forwarded caller contract.
    unsafe { map_prot(bytes, align, libc::PROT_NONE, libc::MAP_NORESERVE) }
}

/// [`map_aligned`] with protection `prot` and more mapping flags `more`.
///
/// # Safety
/// As [`map_aligned`].
unsafe fn map_prot(
    bytes: usize,
    align: usize,
    prot: libc::c_int,
    more: libc::c_int,
) -> *mut c_void {
    let extra = if align > 4096 { align } else { 0 };
    let Some(len) = bytes.checked_add(extra) else {
        return libc::MAP_FAILED;
    };
    // SAFETY: anonymous mapping; the trims unmap only parts of it.
    unsafe {
        let m = libc::mmap(
            ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | more,
            -1,
            0,
        );
        if m == libc::MAP_FAILED || extra == 0 {
            return m;
        }
        let a = (m as usize).next_multiple_of(align);
        let lead = a - m as usize;
        if lead != 0 {
            libc::munmap(m, lead);
        }
        if extra - lead != 0 {
            libc::munmap((a + bytes) as *mut c_void, extra - lead);
        }
        a as *mut c_void
    }
}

/// Find the descriptor of `ptr` under the lock; abort if there is none or
/// it belongs to another type. Returns the link that points to it.
///
/// # Safety
/// `t` is the table [`table`] returns, its lock held (its descriptors are
/// then live slab chunks); `ty` is a valid `malloc_type` (its name goes into
/// the message on a mismatch).
unsafe fn find(
    func: &str,
    t: &mut Table,
    ptr: *mut c_void,
    ty: *mut malloc_type,
) -> *mut *mut OvDesc {
    let mut pp: *mut *mut OvDesc = &mut t.0[hash(ptr as usize)];
    // SAFETY: descriptors in the table are live slab chunks.
    unsafe {
        while !(*pp).is_null() {
            let d = *pp;
            if (*d).ov.ov_Ptr == ptr {
                if (*d).magic != ZALLOC_OVSZ_MAGIC {
                    fatal!(func, "{ptr:p}: oversized descriptor corrupted");
                }
                if (*d).ty != ty {
                    fatal!(
                        func,
                        "wrong malloc_type for {ptr:p}: freed as {} but allocated as {}",
                        types::name(ty),
                        types::name((*d).ty)
                    );
                }
                return pp;
            }
            pp = addr_of_mut!((*d).ov.ov_Next).cast();
        }
    }
    fatal!(
        func,
        "pointer {ptr:p} was not returned by slab_malloc, or was already freed (double free)"
    )
}

/// Unmap the oversized allocation `ptr`.
///
/// # Safety
/// `gd` is the calling thread's cpu state, `ty` a valid registered type.
pub unsafe fn free(gd: *mut SLGlobalData, ptr: *mut c_void, ty: *mut malloc_type, _p: &Params) {
    let mut t = table();
    // SAFETY: under the lock; the found descriptor is live.
    let (d, bytes) = unsafe {
        let pp = find("slab_free", &mut t, ptr, ty);
        let d = *pp;
        *pp = (*d).ov.ov_Next.cast();
        (*d).magic = 0;
        (d, (*d).ov.ov_Bytes)
    };
    drop(t);
    // SAFETY: the mapping was ours and is now unreachable; `d` is a chunk
    // of M_OVERSIZED.
    unsafe {
        libc::munmap(ptr, bytes);
        types::stat(gd, ty, -(bytes as isize), -1);
        super::free(d.cast(), ov_type());
    }
}

/// Bytes mapped for `ptr`, after checking it is a live allocation of `ty`.
///
/// # Safety
/// `ty` is a valid registered type.
pub unsafe fn usable(ptr: *mut c_void, ty: *mut malloc_type) -> usize {
    let mut t = table();
    // SAFETY: under the lock.
    unsafe { (**find("slab_realloc", &mut t, ptr, ty)).ov.ov_Bytes }
}

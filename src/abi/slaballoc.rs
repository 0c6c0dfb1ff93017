//! `<libcaps/slaballoc.h>`: the slab allocator's structures and constants
//! (`slaballoc.h` 1.1/1.3) and `struct malloc_type` with its flags (the
//! 2003-2004 DragonFly `<sys/malloc.h>` layout).
//!
//! This file is parsed by cbindgen and by the `abi-test` crate, so it keeps
//! to plain syntax: types, consts and type aliases only.

use core::ffi::{c_char, c_int, c_long, c_void};

use super::globaldata;

/// Number of per-cpu statistics slots in `struct malloc_type`.
pub const SMP_MAXCPU: usize = 16;

/// Page size the zone layout (`z_PageAry`) is built on.
pub const PAGE_SIZE: usize = 4096;

/// `ks_magic` of every valid `struct malloc_type`.
pub const M_MAGIC: u32 = 877983977;

/// Do not wait; return NULL rather than abort when the type's limit is hit.
pub const M_NOWAIT: c_int = 0x0001;
/// May wait (the default; accepted and ignored).
pub const M_WAITOK: c_int = 0x0002;
/// Zero the returned memory.
pub const M_ZERO: c_int = 0x0100;
/// Accepted and ignored (kernel reserve pages).
pub const M_USE_RESERVE: c_int = 0x0200;
/// Return NULL rather than abort when the type's limit is hit.
pub const M_NULLOK: c_int = 0x0400;
/// Internal in DragonFly; accepted and treated like `M_ZERO`.
pub const M_PASSIVE_ZERO: c_int = 0x0800;

/// Largest request served from a zone.
pub const ZALLOC_ZONE_LIMIT: c_int = 16 * 1024;
/// Smallest zone.
pub const ZALLOC_MIN_ZONE_SIZE: c_int = 32 * 1024;
/// Largest zone.
pub const ZALLOC_MAX_ZONE_SIZE: c_int = 128 * 1024;
/// `z_Magic` of a live zone ("slab").
pub const ZALLOC_SLAB_MAGIC: c_int = 0x736c6162;
/// Magic of oversized allocations ("slac").
pub const ZALLOC_OVSZ_MAGIC: c_int = 0x736c6163;
/// Cache-colouring step of a new zone's first allocation index.
pub const ZALLOC_SLAB_SLIDE: c_int = 20;
/// Number of size classes for `ZALLOC_ZONE_LIMIT` 16384.
pub const NZONES: usize = 72;
/// Entries of `z_PageAry`.
pub const SLZONE_NPAGES: usize = 32;

/// `z_Flags`: the zone's memory is not known to be zero.
pub const SLZF_UNOTZEROD: c_int = 0x0001;

/// Statistics and identity of one kind of allocation (`MALLOC_DEFINE`).
#[repr(C)]
pub struct malloc_type {
    /// next in list
    pub ks_next: *mut malloc_type,
    /// total memory held in bytes (per cpu)
    pub ks_memuse: [c_long; SMP_MAXCPU],
    /// (inaccurate) aggregate memuse
    pub ks_loosememuse: c_long,
    /// most that are allowed to exist
    pub ks_limit: c_long,
    /// sizes of this thing that are allocated
    pub ks_size: c_long,
    /// # of allocs currently in use (per cpu)
    pub ks_inuse: [c_long; SMP_MAXCPU],
    /// total packets of this type ever allocated
    pub ks_calls: i64,
    /// maximum number ever used
    pub ks_maxused: c_long,
    /// if it's not magic, don't touch it
    pub ks_magic: u32,
    /// short description
    pub ks_shortdesc: *const c_char,
    pub ks_limblocks: u16,
    pub ks_mapblocks: u16,
    /// Owned by the allocator: `ks_reserved[0]` holds its registration.
    pub ks_reserved: [c_long; 4],
}

/// A free chunk: the link of a per-page free list.
#[repr(C)]
pub struct SLChunk {
    pub c_Next: *mut SLChunk,
}

/// Header at the start of every zone (a `ZoneSize`-aligned block serving
/// one size class for one cpu).
#[repr(C)]
pub struct SLZone {
    /// magic number for sanity check
    pub z_Magic: i32,
    /// which cpu owns this zone?
    pub z_Cpu: c_int,
    /// owning cpu's globaldata (NULL for a plain pthread)
    pub z_CpuGd: *mut globaldata,
    /// total free chunks / ualloc space in zone
    pub z_NFree: c_int,
    /// ZoneAry[] link if z_NFree non-zero
    pub z_Next: *mut SLZone,
    /// maximum free chunks
    pub z_NMax: c_int,
    /// pointer to start of chunk array
    pub z_BasePtr: *mut c_char,
    /// current initial allocation index
    pub z_UIndex: c_int,
    /// last (first) allocation index
    pub z_UEndIndex: c_int,
    /// chunk size for validation
    pub z_ChunkSize: c_int,
    /// chunk list on a page-by-page basis
    pub z_FirstFreePg: c_int,
    pub z_ZoneIndex: c_int,
    pub z_Flags: c_int,
    pub z_PageAry: [*mut SLChunk; SLZONE_NPAGES],
}

/// Per-cpu allocator state, embedded in `struct globaldata` as `gd_slab`.
///
/// The fields after `ZoneInfo` are libcaps for Linux additions (the
/// remote-free list, the statistics slot, the zone cache bound); C code
/// must not touch them.
#[repr(C)]
pub struct SLGlobalData {
    /// linked list of zones NFree > 0
    pub ZoneAry: [*mut SLZone; NZONES],
    /// whole zones that have become free
    pub FreeZones: *mut SLZone,
    /// oversized zones (unused: oversized frees unmap at once)
    pub FreeOvZones: *mut SLZone,
    /// free zone count
    pub NFreeZones: c_int,
    pub JunkIndex: c_int,
    /// stats on zones mapped by this cpu (memuse: bytes, inuse: zones)
    pub ZoneInfo: malloc_type,
    /// statistics slot in `ks_memuse[]`/`ks_inuse[]`
    pub sl_Slot: c_int,
    /// `SLGD_*` flags
    pub sl_Flags: c_int,
    /// most fully free zones kept mapped (grows when zones are unmapped and
    /// then needed again, shrinks back when they are not)
    pub sl_CacheMax: c_int,
    /// zones unmapped for a full cache since a zone was last mapped
    pub sl_Unmapped: c_int,
    /// non-zero while this cpu updates a type's `ks_calls` and
    /// `ks_loosememuse` with plain stores (see `src/slab/account.rs`) or
    /// works on its zones (see `src/slab/reclaim.rs`)
    pub sl_Counting: c_int,
    pub sl_Spare: c_int,
    /// next state on the list of all states (never unlinked)
    pub sl_NextState: *mut SLGlobalData,
    pub sl_Pad0: [c_long; 5],
    /// chunks freed by other cpus, pushed lock-free, drained by the owner
    /// (or by the reclaimer while the state is parked)
    pub sl_Remote: *mut SLChunk,
    /// times the remote-free list was drained
    pub sl_Drains: c_long,
    /// `sl_Drains` when the reclaimer last saw a non-empty list, or -1
    pub sl_Seen: c_long,
    pub sl_Pad1: [c_long; 5],
}

/// Descriptor of an oversized (page-mapped) allocation.
#[repr(C)]
pub struct SLOversized {
    pub ov_Next: *mut SLOversized,
    pub ov_Ptr: *mut c_void,
    pub ov_Bytes: usize,
}

//! `<libcaps/slaballoc.h>`: the slab allocator.
//!
//! Every function may be called from any thread: an LWKT thread, a virtual
//! cpu, or a plain pthread that never called `uthread_init()`.

use core::ffi::{c_int, c_ulong, c_void};

use crate::abi::malloc_type;
use crate::fatal;
use crate::slab;

fn need_type(func: &str, ty: *mut malloc_type) {
    if ty.is_null() {
        fatal!(func, "NULL malloc_type");
    }
}

/// Set up the allocator (zone size from the amount of RAM). Called by
/// `uthread_init()`; optional, as every other function does it on first
/// use. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn slab_init() {
    slab::init();
}

/// Register a `struct malloc_type` (done automatically on its first
/// `slab_malloc`): link it on the statistics list and, if `ks_limit` is 0,
/// make it unlimited. Aborts if `data` is NULL or lacks `M_MAGIC`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slab_malloc_init(data: *mut c_void) {
    let ty = data.cast::<malloc_type>();
    need_type("slab_malloc_init", ty);
    // SAFETY: non-NULL; the caller passes a `struct malloc_type`.
    unsafe { slab::types::register(ty, "slab_malloc_init") };
}

/// Unregister a malloc type (for a type about to go away, e.g. in an
/// unloaded module). Warns if it still has allocations; a later
/// `slab_malloc` registers it again. NULL or unregistered: no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slab_malloc_uninit(data: *mut c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: non-NULL; the caller passes a `struct malloc_type`.
    unsafe { slab::types::unregister(data.cast()) };
}

/// Allocate `size` bytes accounted to `mtype`. Power-of-2 sizes are aligned
/// to their size, others to 8 bytes; sizes of 16 KiB and more (less on
/// machines with little RAM) and page multiples are page-aligned mappings.
/// `slab_malloc(0, ...)` returns a non-NULL pointer that must not be
/// dereferenced and that `slab_free` accepts.
///
/// Flags: `M_ZERO` zeroes the memory; `M_NOWAIT` or `M_NULLOK` make it
/// return NULL with `errno` set to `ENOMEM` when the type's `ks_limit`
/// would be exceeded or memory cannot be mapped (otherwise the process
/// aborts with a message).
/// Aborts if `mtype` is NULL or lacks `M_MAGIC`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slab_malloc(
    size: c_ulong,
    mtype: *mut malloc_type,
    flags: c_int,
) -> *mut c_void {
    need_type("slab_malloc", mtype);
    // SAFETY: non-NULL type supplied by the caller.
    unsafe { slab::malloc(size as usize, mtype, flags) }
}

/// Resize an allocation of `mtype`: NULL (or the zero-length pointer)
/// allocates, `size` 0 frees and returns NULL; the same pointer is
/// returned when the size class (or page count) does not change; else the
/// contents move to a new allocation. NULL with `errno` set to `ENOMEM` on
/// failure under `M_NOWAIT`/`M_NULLOK` (the old block is then untouched).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slab_realloc(
    ptr: *mut c_void,
    size: c_ulong,
    mtype: *mut malloc_type,
    flags: c_int,
) -> *mut c_void {
    need_type("slab_realloc", mtype);
    // SAFETY: non-NULL type supplied by the caller.
    unsafe { slab::realloc(ptr, size as usize, mtype, flags) }
}

/// Free memory obtained from `slab_malloc`/`slab_realloc` with the same
/// `mtype`, from any thread. Aborts with a message on a pointer the
/// allocator did not return, a double free, or the wrong type.
/// `slab_free(NULL, type)` does nothing, like `free(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn slab_free(ptr: *mut c_void, mtype: *mut malloc_type) {
    if mtype.is_null() {
        return free_null(mtype);
    }
    // SAFETY: non-NULL type supplied by the caller; a NULL `ptr` takes
    // `slab::free`'s slow path, which returns.
    unsafe { slab::free(ptr, mtype) }
}

/// `slab_free` with a NULL type (out of line, so the common path needs
/// no stack frame).
#[cold]
#[inline(never)]
fn free_null(mtype: *mut malloc_type) {
    need_type("slab_free", mtype);
}

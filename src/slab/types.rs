//! `struct malloc_type`: registration (`slab_malloc_init`), the statistics
//! counters and the `ks_limit` check.
//!
//! `ks_reserved[0]` holds `REG_SIG << 8 | tag` once the type is
//! registered; `tag` (2..=254, or 255 when more than 253 types exist and
//! the type check is skipped) is what each chunk of the type carries.

use core::ffi::{CStr, c_long};
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};
use std::sync::Mutex;

use crate::abi::{M_MAGIC, SLGlobalData, SMP_MAXCPU, malloc_type};
use crate::{fatal, warn};

use super::gd::SLGD_SHARED;

/// Below 2^23, so that a registered word (`REG_SIG << 8 | tag`) is below
/// 2^31 and the fast paths compare it with an immediate operand.
pub(super) const REG_SIG: isize = 0x5ab7ae;
const _: () = assert!(REG_SIG < 1 << 23);
/// Tag of a type registered after the table filled up: not checked.
pub const TAG_UNCHECKED: u8 = 255;
pub(super) const FIRST_TAG: u8 = 2;

/// `ks_limit` of a type that did not set one: `(vm_poff_t)-1 / 10` taken
/// as unsigned (the original's defect 17 would have made it 0).
pub const UNLIMITED: c_long = (u64::MAX / 10) as c_long;

pub(super) struct Registry {
    head: *mut malloc_type,
    next_tag: u8,
}
// SAFETY: the raw list head is only touched under the mutex.
unsafe impl Send for Registry {}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    head: ptr::null_mut(),
    next_tag: FIRST_TAG,
});

/// The registry's lock, for the `fork()` handlers (see `slab::fork`).
pub(super) fn registry_lock() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Call `f` with every registered type (its guard held, so none is
    /// unregistered meanwhile).
    pub(super) fn each(&self, mut f: impl FnMut(*mut malloc_type)) {
        let mut ty = self.head;
        while !ty.is_null() {
            f(ty);
            // SAFETY: listed types are live until `unregister` unlinks
            // them, which takes the lock the caller holds.
            ty = unsafe { (*ty).ks_next };
        }
    }
}

/// Type of each tag, for messages.
static BY_TAG: [AtomicPtr<malloc_type>; 256] = [const { AtomicPtr::new(ptr::null_mut()) }; 256];

/// View a `long` field of a live `malloc_type` as an atomic.
///
/// # Safety
/// `p` points to a `c_long` that stays valid while the result is used.
#[inline]
unsafe fn slot<'a>(p: *mut c_long) -> &'a AtomicIsize {
    // SAFETY: `c_long` and `isize` have the same size and alignment on
    // Linux; validity is the caller's contract.
    unsafe { AtomicIsize::from_ptr(p.cast::<isize>()) }
}

/// The type's short description, for messages.
///
/// # Safety
/// `ty` is a valid `malloc_type`.
pub unsafe fn name(ty: *mut malloc_type) -> String {
    // SAFETY: caller contract.
    let d = unsafe { (*ty).ks_shortdesc };
    if d.is_null() {
        return format!("malloc type {ty:p}");
    }
    // SAFETY: C code gives a NUL-terminated string as description.
    let s = unsafe { CStr::from_ptr(d) };
    format!("malloc type '{}'", s.to_string_lossy())
}

/// Name of the type that owns chunks tagged `tag`.
pub fn name_of_tag(tag: u8) -> String {
    let t = BY_TAG[tag as usize].load(Ordering::Acquire);
    if t.is_null() {
        return format!("an unregistered malloc type (tag {tag})");
    }
    // SAFETY: registered types stay valid until `slab_malloc_uninit`.
    unsafe { name(t) }
}

/// The registered type of chunks tagged `tag`, or NULL. Valid while the
/// caller holds the registry lock.
pub fn type_of_tag(tag: u8) -> *mut malloc_type {
    BY_TAG[tag as usize].load(Ordering::Acquire)
}

/// Check `ks_magic` and register the type if needed; returns the tag its
/// chunks carry.
///
/// # Safety
/// `ty` is non-NULL and points to a `malloc_type`.
#[inline]
pub unsafe fn check(ty: *mut malloc_type, func: &str) -> u8 {
    // SAFETY: caller contract.
    if unsafe { (*ty).ks_magic } != M_MAGIC {
        no_magic(ty, func);
    }
    // SAFETY: caller contract: the field is part of a live `malloc_type`.
    let r = unsafe { slot(addr_of_mut!((*ty).ks_reserved[0])) }.load(Ordering::Acquire);
    if r >> 8 == REG_SIG {
        return r as u8;
    }
    // SAFETY: caller contract.
    unsafe { register(ty, func) }
}

/// The tag of `ty` if it is registered, without reading `ks_magic`
/// (registration checked it; the fast paths skip the load and the free
/// path does not read the cache line `ks_calls` shares with `ks_magic`,
/// which the allocating cpu writes). `None` sends the caller to
/// [`check`].
///
/// # Safety
/// `ty` is non-NULL and points to a `malloc_type`.
#[inline(always)]
pub unsafe fn registered_tag(ty: *mut malloc_type) -> Option<u8> {
    // SAFETY: caller contract.
    let r = unsafe { reg_word(ty) };
    // `r >> 8 == REG_SIG` as one subtraction and one unsigned compare.
    if (r.wrapping_sub(REG_SIG << 8) as usize) < 256 {
        Some(r as u8)
    } else {
        None
    }
}

/// `ks_reserved[0]` of `ty`: `REG_SIG << 8 | tag` once it is registered.
///
/// # Safety
/// `ty` is non-NULL and points to a `malloc_type`.
#[inline(always)]
pub unsafe fn reg_word(ty: *mut malloc_type) -> isize {
    // SAFETY: caller contract.
    unsafe { slot(addr_of_mut!((*ty).ks_reserved[0])) }.load(Ordering::Acquire)
}

/// Is `r` (a type's [`reg_word`]) the word of a registered type whose
/// chunks carry tag `t`? (The free fast path's type check and tag check
/// in one compare with an immediate.)
#[inline(always)]
pub fn reg_word_is(r: isize, t: u8) -> bool {
    (r ^ t as isize) == REG_SIG << 8
}

#[cold]
fn no_magic(ty: *mut malloc_type, func: &str) -> ! {
    fatal!(
        func,
        "malloc type {ty:p} lacks magic (ks_magic is not M_MAGIC): not a malloc_type, or not declared with MALLOC_DEFINE"
    )
}

/// `slab_malloc_init`: link the type on the statistics list, give it a tag
/// and an unlimited `ks_limit` if it has none.
///
/// # Safety
/// `ty` is non-NULL and points to a `malloc_type` that stays valid until
/// `slab_malloc_uninit`.
#[cold]
pub unsafe fn register(ty: *mut malloc_type, func: &str) -> u8 {
    // SAFETY: caller contract.
    if unsafe { (*ty).ks_magic } != M_MAGIC {
        no_magic(ty, func);
    }
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: caller contract.
    let r0 = unsafe { slot(addr_of_mut!((*ty).ks_reserved[0])) };
    let r = r0.load(Ordering::Acquire);
    if r >> 8 == REG_SIG {
        return r as u8;
    }
    let tag = if reg.next_tag < TAG_UNCHECKED {
        reg.next_tag += 1;
        reg.next_tag - 1
    } else {
        TAG_UNCHECKED
    };
    if tag != TAG_UNCHECKED {
        BY_TAG[tag as usize].store(ty, Ordering::Release);
    }
    // SAFETY: caller contract; the list is protected by the mutex.
    unsafe {
        let lim = slot(addr_of_mut!((*ty).ks_limit));
        if lim.load(Ordering::Relaxed) == 0 {
            lim.store(UNLIMITED as isize, Ordering::Relaxed);
        }
        (*ty).ks_next = reg.head;
    }
    reg.head = ty;
    // SAFETY: caller contract; not registered, so no cpu allocates from it.
    unsafe { super::account::reset(ty) };
    r0.store(REG_SIG << 8 | tag as isize, Ordering::Release);
    tag
}

/// `slab_malloc_uninit`: unlink the type; warn if it still has memory.
///
/// # Safety
/// `ty` is non-NULL and points to a `malloc_type`.
pub unsafe fn unregister(ty: *mut malloc_type) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: caller contract.
    let r0 = unsafe { slot(addr_of_mut!((*ty).ks_reserved[0])) };
    let r = r0.load(Ordering::Acquire);
    if r >> 8 != REG_SIG {
        return;
    }
    // SAFETY: caller contract; list protected by the mutex; all listed
    // types are live (they are unlinked here before they go away).
    unsafe {
        let mut pp: *mut *mut malloc_type = &mut reg.head;
        while !(*pp).is_null() {
            if *pp == ty {
                *pp = (*ty).ks_next;
                break;
            }
            pp = addr_of_mut!((**pp).ks_next);
        }
        (*ty).ks_next = ptr::null_mut();
        let (mem, n) = totals(ty);
        if n != 0 {
            warn!(
                "slab_malloc_uninit",
                "{}: {mem} bytes in {n} allocations still allocated",
                name(ty)
            );
        }
        slot(addr_of_mut!((*ty).ks_limit)).store(0, Ordering::Relaxed);
        // No home and not shared any more: `slab::malloc` trusts those
        // (before the registration word goes).
        super::account::reset(ty);
    }
    let tag = r as u8;
    if tag != TAG_UNCHECKED {
        // SAFETY: caller contract; the registry lock is held.
        unsafe { super::calls::fold_type(tag, ty) };
        BY_TAG[tag as usize].store(ptr::null_mut(), Ordering::Release);
    }
    r0.store(0, Ordering::Release);
}

/// Sums of `ks_memuse` and `ks_inuse` over all cpus.
///
/// # Safety
/// `ty` is a valid `malloc_type`.
pub unsafe fn totals(ty: *mut malloc_type) -> (isize, isize) {
    let mut mem = 0isize;
    let mut n = 0isize;
    for i in 0..SMP_MAXCPU {
        // SAFETY: caller contract.
        unsafe {
            mem += slot(addr_of_mut!((*ty).ks_memuse[i])).load(Ordering::Relaxed);
            n += slot(addr_of_mut!((*ty).ks_inuse[i])).load(Ordering::Relaxed);
        }
    }
    (mem, n)
}

/// The statistics slot of the cpu state `gd`.
///
/// # Safety
/// `gd` is a cpu state set up by `gd::gd_setup`, which stores a slot
/// below `SMP_MAXCPU` (and nothing else writes `sl_Slot`: C code must not
/// touch the fields after `ZoneInfo`).
#[inline(always)]
unsafe fn slot_of(gd: *mut SLGlobalData) -> usize {
    // SAFETY: caller contract.
    unsafe {
        let s = (*gd).sl_Slot as u32 as usize;
        // No `% SMP_MAXCPU` on every call (one instruction each way).
        core::hint::assert_unchecked(s < SMP_MAXCPU);
        s
    }
}

/// [`stat`] for a cpu whose statistics slot is its own (not
/// `SLGD_SHARED`; a cpu with a shared slot never becomes a type's home,
/// see `account`): plain loads and stores, and no flag test.
///
/// # Safety
/// As [`stat`], and `gd`'s slot is not shared.
#[inline(always)]
pub unsafe fn stat_home(gd: *mut SLGlobalData, ty: *mut malloc_type, mem: isize, n: isize) {
    // SAFETY: caller contract; the slot is < SMP_MAXCPU (`slot_of`).
    unsafe {
        let s = slot_of(gd);
        let m = slot(addr_of_mut!((*ty).ks_memuse[s]));
        let u = slot(addr_of_mut!((*ty).ks_inuse[s]));
        m.store(m.load(Ordering::Relaxed) + mem, Ordering::Relaxed);
        u.store(u.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Add `mem` bytes and `n` allocations to this cpu's slot of the type.
/// Plain load and store when the cpu owns its slot.
///
/// # Safety
/// `gd` is the calling thread's cpu state; `ty` is a valid `malloc_type`.
#[inline(always)]
pub unsafe fn stat(gd: *mut SLGlobalData, ty: *mut malloc_type, mem: isize, n: isize) {
    // SAFETY: caller contract; the slot is < SMP_MAXCPU (`slot_of`).
    unsafe {
        let s = slot_of(gd);
        let m = slot(addr_of_mut!((*ty).ks_memuse[s]));
        let u = slot(addr_of_mut!((*ty).ks_inuse[s]));
        if super::reclaim::flags(gd) & SLGD_SHARED == 0 {
            m.store(m.load(Ordering::Relaxed) + mem, Ordering::Relaxed);
            u.store(u.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            m.fetch_add(mem, Ordering::Relaxed);
            u.fetch_add(n, Ordering::Relaxed);
        }
    }
}

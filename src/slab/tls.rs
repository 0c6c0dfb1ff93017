//! The calling thread's allocator state pointer, in one thread-local slot,
//! with what the fast paths test beside it ([`Slot`]).
//!
//! `libcaps.so` is a shared library, so a Rust `thread_local!` compiles to
//! the general-dynamic TLS model: a call to `__tls_get_addr` on every
//! access. On x86_64 the slot is instead an initial-exec TLS variable
//! defined and read with inline assembly (the same model the C shim uses
//! for `mycpu`): one load of its offset from the GOT and one `%fs`-relative
//! load per word. Elsewhere a `thread_local!` cell is used.
//!
//! The words beside the state pointer are zero while it is NULL (as the
//! slot starts), so each test a fast path makes with them also says "this
//! thread has a state" (no test of the pointer of its own): `small` bounds
//! `slab_malloc`'s size test, and the copy of the arena's bounds makes
//! `slab_free`'s range test (read here, not from the shared static: no
//! address of its own to compute, and the zone mask in a word of its own).

use crate::abi::SLGlobalData;

/// What the thread-local slot holds.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slot {
    /// The state (NULL until [`set`]).
    pub gd: *mut SLGlobalData,
    /// `size - 1` below this is a small request (`slab::SMALL_MAX`; 0 while
    /// `gd` is NULL).
    pub small: usize,
    /// The arena view (0 while `gd` is NULL): see [`Arena`].
    pub arena: Arena,
}

/// The arena's bounds as `slab_free`'s range test reads them: a copy of
/// `registry::FAST` taken at some moment (the arena only grows, so an old
/// copy says "not in the arena" for a zone carved since, and the free
/// takes the path that asks the registry and copies again).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Arena {
    /// `!(ZoneSize - 1)`.
    pub mask: usize,
    /// Minus the arena's start.
    pub neg_lo: usize,
    /// Bytes carved from its start.
    pub top: usize,
}

impl Arena {
    /// The view of a thread without state: no pointer is in it.
    pub const NONE: Arena = Arena {
        mask: 0,
        neg_lo: 0,
        top: 0,
    };
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{Arena, SLGlobalData, Slot};

    // A 40-byte zero-initialised `.tbss` variable (a `Slot`), hidden (not
    // exported from libcaps.so, shared by this crate's object files).
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl __libcaps_slab_cur",
        ".hidden __libcaps_slab_cur",
        ".type __libcaps_slab_cur,@object",
        ".size __libcaps_slab_cur,40",
        "__libcaps_slab_cur:",
        ".zero 40",
        ".popsection",
    );
    const _: () = assert!(size_of::<Slot>() == 40);

    /// Where the words are in the slot.
    const SMALL: usize = core::mem::offset_of!(Slot, small);
    const MASK: usize = core::mem::offset_of!(Slot, arena) + core::mem::offset_of!(Arena, mask);
    const NEG_LO: usize = core::mem::offset_of!(Slot, arena) + core::mem::offset_of!(Arena, neg_lo);
    const TOP: usize = core::mem::offset_of!(Slot, arena) + core::mem::offset_of!(Arena, top);

    /// The slot's offset from the thread pointer, from the GOT (the
    /// initial-exec model's first load; the same for every thread, so the
    /// compiler may load it once for several reads).
    #[inline(always)]
    fn offset() -> usize {
        let t: usize;
        // SAFETY: reads the GOT entry the dynamic linker filled in for the
        // slot defined above. No other memory is touched.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __libcaps_slab_cur@GOTTPOFF]",
                t = out(reg) t,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        t
    }

    /// The state pointer (NULL until [`set`]).
    ///
    /// In `rcx`, the fourth argument register: `slab_malloc` and
    /// `slab_free` keep their own arguments (`rdi`, `rsi`, `rdx`) where
    /// they came, and their out-of-line paths take the state fourth, so
    /// their tail calls move fewer registers (left to the compiler, the
    /// value went to `rdi` or `rsi` and an argument moved out of its way:
    /// one to three instructions a call).
    #[inline(always)]
    pub fn get() -> *mut SLGlobalData {
        let v: *mut SLGlobalData;
        // SAFETY: reads this thread's own TLS slot defined above (an
        // %fs-relative load at its offset). No other memory is touched.
        unsafe {
            core::arch::asm!(
                "mov rcx, qword ptr fs:[{t}]",
                t = in(reg) offset(),
                out("rcx") v,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        v
    }

    /// The state pointer (in `rcx`, as [`get`]) and `small`.
    #[inline(always)]
    pub fn get_small() -> (*mut SLGlobalData, usize) {
        let small: usize;
        // SAFETY: as in `get`: a word of this thread's own slot.
        unsafe {
            core::arch::asm!(
                "mov {s}, qword ptr fs:[{t} + {small}]",
                t = in(reg) offset(),
                s = lateout(reg) small,
                small = const SMALL,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        (get(), small)
    }

    /// The state pointer (in `rcx`, as [`get`]) and the arena view.
    #[inline(always)]
    pub fn get_arena() -> (*mut SLGlobalData, Arena) {
        let (mask, neg_lo, top): (usize, usize, usize);
        // SAFETY: as in `get`: three words of this thread's own slot.
        unsafe {
            core::arch::asm!(
                "mov {m}, qword ptr fs:[{t} + {mask}]",
                "mov {n}, qword ptr fs:[{t} + {neg_lo}]",
                "mov {p}, qword ptr fs:[{t} + {top}]",
                t = in(reg) offset(),
                m = out(reg) mask,
                n = out(reg) neg_lo,
                p = lateout(reg) top,
                mask = const MASK,
                neg_lo = const NEG_LO,
                top = const TOP,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        (get(), Arena { mask, neg_lo, top })
    }

    /// Store `s` in the slot.
    #[inline]
    pub fn set(s: Slot) {
        // SAFETY: writes this thread's own TLS slot defined above.
        unsafe {
            core::arch::asm!(
                "mov qword ptr fs:[{t}], {g}",
                "mov qword ptr fs:[{t} + {small}], {s}",
                "mov qword ptr fs:[{t} + {mask}], {m}",
                "mov qword ptr fs:[{t} + {neg_lo}], {n}",
                "mov qword ptr fs:[{t} + {top}], {p}",
                t = in(reg) offset(),
                g = in(reg) s.gd,
                s = in(reg) s.small,
                m = in(reg) s.arena.mask,
                n = in(reg) s.arena.neg_lo,
                p = in(reg) s.arena.top,
                small = const SMALL,
                mask = const MASK,
                neg_lo = const NEG_LO,
                top = const TOP,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use core::cell::Cell;
    use core::ptr;

    use super::{Arena, SLGlobalData, Slot};

    thread_local! {
        static CUR: Cell<Slot> = const {
            Cell::new(Slot { gd: ptr::null_mut(), small: 0, arena: Arena::NONE })
        };
    }

    /// The state pointer (NULL until [`set`]).
    #[inline(always)]
    pub fn get() -> *mut SLGlobalData {
        CUR.get().gd
    }

    /// The state pointer and `small`.
    #[inline(always)]
    pub fn get_small() -> (*mut SLGlobalData, usize) {
        let s = CUR.get();
        (s.gd, s.small)
    }

    /// The state pointer and the arena view.
    #[inline(always)]
    pub fn get_arena() -> (*mut SLGlobalData, Arena) {
        let s = CUR.get();
        (s.gd, s.arena)
    }

    /// Store `s` in the slot.
    #[inline]
    pub fn set(s: Slot) {
        CUR.set(s)
    }
}

pub use imp::{get, get_arena, get_small, set};

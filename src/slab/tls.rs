//! The calling thread's allocator state pointer, in one thread-local slot.
//!
//! `libcaps.so` is a shared library, so a Rust `thread_local!` compiles to
//! the general-dynamic TLS model: a call to `__tls_get_addr` on every
//! access. On x86_64 the slot is instead an initial-exec TLS variable
//! defined and read with inline assembly (the same model the C shim uses
//! for `mycpu`): one load of its offset from the GOT and one `%fs`-relative
//! load. Elsewhere a `thread_local!` cell is used.

#[cfg(target_arch = "x86_64")]
mod imp {
    use crate::abi::SLGlobalData;

    // An 8-byte zero-initialised `.tbss` variable, hidden (not exported
    // from libcaps.so, shared by this crate's object files).
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl __libcaps_slab_cur",
        ".hidden __libcaps_slab_cur",
        ".type __libcaps_slab_cur,@object",
        ".size __libcaps_slab_cur,8",
        "__libcaps_slab_cur:",
        ".zero 8",
        ".popsection",
    );

    /// The slot's value (NULL until [`set`]).
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
        // SAFETY: reads this thread's own 8-byte TLS slot defined above
        // (the initial-exec sequence: thread-pointer offset from the GOT,
        // then an %fs-relative load). No other memory is touched.
        unsafe {
            core::arch::asm!(
                "mov rcx, qword ptr [rip + __libcaps_slab_cur@GOTTPOFF]",
                "mov rcx, qword ptr fs:[rcx]",
                out("rcx") v,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        v
    }

    /// Store `gd` in the slot.
    #[inline]
    pub fn set(gd: *mut SLGlobalData) {
        // SAFETY: writes this thread's own 8-byte TLS slot defined above.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __libcaps_slab_cur@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) gd,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use core::cell::Cell;
    use core::ptr;

    use crate::abi::SLGlobalData;

    thread_local! {
        static CUR: Cell<*mut SLGlobalData> = const { Cell::new(ptr::null_mut()) };
    }

    /// The slot's value (NULL until [`set`]).
    #[inline(always)]
    pub fn get() -> *mut SLGlobalData {
        CUR.get()
    }

    /// Store `gd` in the slot.
    #[inline]
    pub fn set(gd: *mut SLGlobalData) {
        CUR.set(gd)
    }
}

pub use imp::{get, set};

//! Stack arenas: large anonymous mappings cut into slots of one size, a
//! guard region at the bottom of each slot and the usable stack above it.
//! The guards are installed with `madvise(MADV_GUARD_INSTALL)` (Linux
//! 6.13 and later), which marks the pages inaccessible without splitting
//! the mapping, so a million stacks cost a few hundred mappings instead
//! of two million. Where a guard cannot be installed that way (a locked
//! mapping, `mlockall`) it is made with `mprotect`, which splits the
//! mapping but still guards.
//!
//! Slots are carved from the top of the newest arena downwards, so a
//! stack made later lies below one made earlier, as separate mappings
//! would. Each arena of a size has twice the slots of the one before, up
//! to [`MAX_ARENA`] bytes of address space (or one slot, if bigger); when
//! the kernel refuses an arena (address space, `RLIMIT_AS`) a smaller one
//! is tried, down to one slot.
//!
//! A slot given back keeps its guard; its usable pages go back to the
//! kernel (`MADV_DONTNEED`) and the slot goes to a free list for the next
//! stack of its size. Arenas are never unmapped: what stays is address
//! space, not memory.
//!
//! One lock serialises the pool; it is taken only when a stack is made or
//! released, never on a switch or on a create served by the thread cache,
//! and the forking thread holds it across `fork()` so that the child does
//! not inherit it held by a thread it does not have.

use core::ffi::c_void;
use core::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use crate::atfork::{Held, register_once};

/// `MADV_GUARD_INSTALL` (Linux 6.13; not in every libc yet).
pub const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Slots in the first arena of a size.
const FIRST_SLOTS: usize = 16;
/// Largest arena: 8192 slots of 64 KiB stacks with their guards.
const MAX_ARENA: usize = 1 << 30;

/// Most slots of `slot` bytes in one arena.
fn max_slots(slot: usize) -> usize {
    (MAX_ARENA / slot).max(1)
}

/// The slots of one size (guard plus usable stack).
struct Class {
    /// Bytes per slot.
    slot: usize,
    /// Bases of the slots given back, guard in place, pages returned.
    free: Vec<usize>,
    /// Lowest address of the newest arena.
    low: usize,
    /// Base of the slot carved last from it (`low`: the arena is used up).
    next: usize,
    /// Slots the next arena is to have.
    grow: usize,
}

impl Class {
    /// A slot never used before, from the newest arena or a new one.
    fn carve(&mut self) -> Option<usize> {
        if self.next < self.low + self.slot {
            let (low, slots) = map_arena(self.slot, self.grow)?;
            self.low = low;
            self.next = low + slots * self.slot;
            self.grow = (slots * 2).min(max_slots(self.slot));
        }
        self.next -= self.slot;
        Some(self.next)
    }
}

/// Every size of slot handed out so far.
pub struct Pool {
    classes: Vec<Class>,
}

impl Pool {
    fn class(&mut self, slot: usize) -> &mut Class {
        let i = match self.classes.iter().position(|c| c.slot == slot) {
            Some(i) => i,
            None => {
                self.classes.push(Class {
                    slot,
                    free: Vec::new(),
                    low: 0,
                    next: 0,
                    grow: FIRST_SLOTS.min(max_slots(slot)),
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[i]
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    classes: Vec::new(),
});

fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Map an arena of `slots` slots of `slot` bytes, or of fewer when the
/// kernel refuses: its base and slot count, None when not even one slot
/// can be mapped.
fn map_arena(slot: usize, mut slots: usize) -> Option<(usize, usize)> {
    loop {
        let len = slot * slots;
        if let Some(map) = super::map_stacks(len) {
            // A huge page would make one touched stack page cost 2 MiB
            // (MAP_STACK implies this on 6.7 and later); best effort.
            // SAFETY: advice on the mapping just made.
            unsafe { libc::madvise(map, len, libc::MADV_NOHUGEPAGE) };
            return Some((map as usize, slots));
        }
        if slots == 1 {
            return None;
        }
        slots /= 2;
    }
}

/// Make the `guard` bytes at `base` inaccessible: guard pages inside the
/// mapping, else a `PROT_NONE` split of it.
fn install_guard(base: usize, guard: usize) -> bool {
    let p = base as *mut c_void;
    // SAFETY: `base .. base + guard` is the bottom of a slot of ours that
    // no stack uses.
    unsafe {
        libc::madvise(p, guard, MADV_GUARD_INSTALL) == 0
            || libc::mprotect(p, guard, libc::PROT_NONE) == 0
    }
}

/// A slot of `guard + usable` bytes (both whole pages) whose lowest
/// `guard` bytes are a guard and the rest zero-filled read/write memory
/// nobody uses: its base. None when no memory or address space is left.
pub fn take(guard: usize, usable: usize) -> Option<usize> {
    let mut pool = pool();
    let class = pool.class(guard + usable);
    if let Some(base) = class.free.pop() {
        return Some(base);
    }
    let base = class.carve()?;
    drop(pool);
    // A slot whose guard cannot be made is not used (nor given back).
    install_guard(base, guard).then_some(base)
}

/// Give back a slot [`take`] returned for the same sizes, nobody using it
/// any more: its usable pages go back to the kernel.
pub fn give_back(base: usize, guard: usize, usable: usize) {
    // SAFETY: the usable part of a slot of ours that nobody uses; the
    // guard is left as it is.
    unsafe { libc::madvise((base + guard) as *mut c_void, usable, libc::MADV_DONTNEED) };
    pool().class(guard + usable).free.push(base);
}

/// The pool's lock held by the forking thread from `prepare` to
/// `parent`/`child`.
static HELD: Held<MutexGuard<'static, Pool>> = Held::new();

/// Register the `fork()` handlers. Called when the thread package starts,
/// before any other kernel thread can take a stack.
pub fn register_fork_handlers() {
    static DONE: AtomicBool = AtomicBool::new(false);
    register_once(&DONE, prepare, release, release);
}

extern "C" fn prepare() {
    // SAFETY: the prepare handler.
    unsafe { HELD.keep(pool()) };
}

extern "C" fn release() {
    // SAFETY: the parent or child handler.
    unsafe { HELD.release() };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> usize {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    #[test]
    fn slots_are_carved_downwards_and_reused() {
        // An odd size, so that no other test shares the class.
        let (guard, usable) = (2 * page(), 5 * page());
        let a = take(guard, usable).unwrap();
        let b = take(guard, usable).unwrap();
        assert_eq!(
            a - b,
            guard + usable,
            "the second slot lies right below the first"
        );
        // SAFETY: the usable part of slot `b` is ours, read/write.
        unsafe { *((b + guard) as *mut u8) = 7 };
        give_back(b, guard, usable);
        assert_eq!(
            take(guard, usable),
            Some(b),
            "a slot given back is reused first"
        );
        // SAFETY: as above; MADV_DONTNEED gave the page back, zero-filled.
        assert_eq!(unsafe { *((b + guard) as *const u8) }, 0);
        give_back(a, guard, usable);
        give_back(b, guard, usable);
    }

    #[test]
    fn arenas_stay_within_a_gib_of_address_space() {
        assert_eq!(max_slots(128 << 10), 8192);
        assert_eq!(max_slots((1 << 30) + (64 << 10)), 1);
        let mut pool = Pool {
            classes: Vec::new(),
        };
        assert_eq!(pool.class(256 << 20).grow, 4);
        assert_eq!(pool.class(64 << 10).grow, FIRST_SLOTS);
    }

    #[test]
    fn arenas_double_and_share_one_mapping() {
        let (guard, usable) = (page(), 3 * page());
        let slots: Vec<usize> = (0..FIRST_SLOTS * 3)
            .map(|_| take(guard, usable).unwrap())
            .collect();
        // The first arena's slots are contiguous: one mapping.
        let first = &slots[..FIRST_SLOTS];
        assert!(first.windows(2).all(|w| w[0] - w[1] == guard + usable));
        // The next arena holds twice as many: slots 16..48 in one piece.
        let second = &slots[FIRST_SLOTS..];
        assert!(second.windows(2).all(|w| w[0] - w[1] == guard + usable));
        for s in slots {
            give_back(s, guard, usable);
        }
    }
}

//! The per-pair IPI rings: one single-producer, single-consumer ring for
//! each (source cpu, target cpu) pair, the fast path of `ipi::send`.
//!
//! A cpu is one kernel thread, so the only writer of the ring from cpu
//! `s` to cpu `t` is `s`, the only reader `t`. A slot carries the
//! function, its argument and `seq`, the entry's index + 1, stored last
//! (release): the reader takes slot `r % RING_SLOTS` once its `seq` is
//! `r + 1`, and writes nothing the writer reads per entry (it publishes
//! its index, which the writer looks at only when the ring seems full).
//! A message therefore moves one cache line (the slot's) from the sender
//! to the target, instead of a lock word, a vector and the target's
//! request word as the shared queue did.
//!
//! The target learns of an entry in one of two ways. While it spins idle
//! it says so in the slot each of its rings will fill next (`polling`,
//! in the cache line the sender writes anyway: the `seq` it waits for
//! there) and looks at the rings itself: the sender, which reads that
//! word after publishing (both sides with a SeqCst fence between their
//! store and their load, so at least one sees the other's), then does
//! nothing more when it holds the `seq` just published. A spin that ends
//! with an entry in a slot leaves that slot's `polling` as it is (a value
//! of an old lap never matches a later `seq`): the target then writes the
//! line once per entry, not twice. Otherwise the sender sets `RQF_IPIQ`
//! in the target's `gd_reqflags` and wakes it if it sleeps, as before.
//!
//! A full ring (`RING_SLOTS` entries not yet taken) sends to the target's
//! shared queue instead (`CpuPriv::ipiq`, which also takes IPIs from
//! kernel threads that are not cpus); while entries of a pair wait there,
//! the pair's later entries follow them there, so that a pair's entries
//! still run in the order they were sent.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::ipi::IpiFn;
use crate::abi::{MAXVCPU, globaldata};

/// Cpus a ring table covers.
pub const NCPU: usize = MAXVCPU as usize;
/// Entries a ring holds (a power of two).
pub const RING_SLOTS: u32 = 256;
const MASK: u32 = RING_SLOTS - 1;

/// One entry; two per cache line.
#[repr(C, align(32))]
struct Slot {
    /// Index + 1 of the entry the slot holds (0: never used).
    seq: AtomicU32,
    /// `seq` of the entry the target, spinning idle, waits for in this
    /// slot (0: none): its sender need not tell it (set and cleared by
    /// the target).
    polling: AtomicU32,
    func: UnsafeCell<Option<IpiFn>>,
    arg: UnsafeCell<*mut c_void>,
}

/// The writer's side of a ring (its own cache line).
#[repr(C, align(64))]
struct Writer {
    /// Index of the next entry to write.
    windex: UnsafeCell<u32>,
    /// The reader's index when the writer last looked.
    seen_rindex: UnsafeCell<u32>,
    /// Entries of this pair waiting in the target's shared queue.
    spilled: AtomicU32,
}

/// The reader's side of a ring (its own cache line).
#[repr(C, align(64))]
struct Reader {
    /// Index of the next entry to take.
    rindex: AtomicU32,
}

/// The ring from one cpu to another.
pub struct Ring {
    w: Writer,
    r: Reader,
    slots: [Slot; RING_SLOTS as usize],
}

/// `RINGS[t][s]`: the ring from cpu `s` to cpu `t`, made by `s` at its
/// first IPI to `t` and kept for the life of the process.
static RINGS: [[AtomicPtr<Ring>; NCPU]; NCPU] =
    [const { [const { AtomicPtr::new(ptr::null_mut()) }; NCPU] }; NCPU];

/// Per target cpu: the bits of the source cpus that have a ring to it.
static SOURCES: [AtomicU32; NCPU] = [const { AtomicU32::new(0) }; NCPU];

/// The rings into cpu `t`, by source.
#[inline(always)]
fn rings_into(t: usize) -> impl Iterator<Item = &'static Ring> {
    let mut m = SOURCES[t].load(Ordering::Acquire);
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let s = m.trailing_zeros() as usize;
            m &= m - 1;
            // SAFETY: a bit in SOURCES follows the ring's publication, and
            // rings are never freed.
            unsafe { &*RINGS[t][s].load(Ordering::Acquire) }
        })
    })
}

/// The index of `gd` in `gdary`, when it is an element of it (a unit
/// test's private cpus are not). Pointer arithmetic: `gd_cpuid` shares
/// its cache line with fields the target writes at every switch.
#[inline(always)]
pub fn cpu_index(gd: *mut globaldata) -> Option<usize> {
    let base = super::globaldata_find(0) as usize;
    let off = (gd as usize).wrapping_sub(base);
    let size = core::mem::size_of::<globaldata>();
    (off < NCPU * size && off.is_multiple_of(size)).then_some(off / size)
}

/// The ring from `s` to `t`, made on first use.
///
/// # Safety
/// Called by cpu `s` only (its kernel thread).
#[inline(always)]
unsafe fn ring_to(t: usize, s: usize) -> &'static Ring {
    let r = RINGS[t][s].load(Ordering::Acquire);
    if !r.is_null() {
        // SAFETY: rings are never freed.
        return unsafe { &*r };
    }
    new_ring(t, s)
}

#[cold]
fn new_ring(t: usize, s: usize) -> &'static Ring {
    // SAFETY: an all-zero Ring is valid: zero indices and counters, empty
    // slots (seq 0, no function, NULL argument).
    let ring: &'static Ring = Box::leak(unsafe { Box::<Ring>::new_zeroed().assume_init() });
    RINGS[t][s].store(ptr::from_ref(ring).cast_mut(), Ordering::Release);
    SOURCES[t].fetch_or(1 << s, Ordering::Release);
    ring
}

/// Outcome of [`push`].
pub enum Pushed {
    /// In the ring, and the target spins on its rings: nothing more to do.
    Seen,
    /// In the ring; the target must be told (`RQF_IPIQ`, wakeup).
    Notify,
    /// Not in the ring (full, or earlier entries of the pair wait in the
    /// shared queue): the caller queues it there with [`spill`].
    Full,
}

/// Cpu `s` (the current one) queues `func(arg)` for cpu `t`.
///
/// # Safety
/// `s` is the index of the calling kernel thread's cpu; `t` another cpu.
#[inline(always)]
pub unsafe fn push(t: usize, s: usize, func: IpiFn, arg: *mut c_void) -> Pushed {
    // SAFETY: per the contract, this thread is the ring's only writer:
    // the writer's cells are its own, and slot `w` is free (the reader
    // moved past it, as seen_rindex says) until seq is published.
    unsafe {
        let ring = ring_to(t, s);
        if ring.w.spilled.load(Ordering::Acquire) != 0 {
            return Pushed::Full;
        }
        let w = *ring.w.windex.get();
        if w.wrapping_sub(*ring.w.seen_rindex.get()) >= RING_SLOTS {
            *ring.w.seen_rindex.get() = ring.r.rindex.load(Ordering::Acquire);
            if w.wrapping_sub(*ring.w.seen_rindex.get()) >= RING_SLOTS {
                return Pushed::Full;
            }
        }
        let slot = &ring.slots[(w & MASK) as usize];
        *slot.func.get() = Some(func);
        *slot.arg.get() = arg;
        crate::san::release(slot);
        slot.seq.store(w.wrapping_add(1), Ordering::Release);
        *ring.w.windex.get() = w.wrapping_add(1);
        // Pairs with the fence in `stop_polling`: either the target sees
        // this entry after it stops polling, or we see it still polling.
        core::sync::atomic::fence(Ordering::SeqCst);
        if slot.polling.load(Ordering::Relaxed) == w.wrapping_add(1) {
            Pushed::Seen
        } else {
            Pushed::Notify
        }
    }
}

/// An entry of pair `s → t` goes to `t`'s shared queue: count it (under
/// that queue's lock), so the pair's later entries follow it there.
pub fn spill(t: usize, s: usize) {
    let r = RINGS[t][s].load(Ordering::Acquire);
    if !r.is_null() {
        // SAFETY: rings are never freed.
        unsafe { (*r).w.spilled.fetch_add(1, Ordering::Release) };
    }
}

/// Cpu `t` took an entry of pair `s → t` off its shared queue (under its
/// lock).
pub fn unspill(t: usize, s: usize) {
    let r = RINGS[t][s].load(Ordering::Acquire);
    if !r.is_null() {
        // SAFETY: rings are never freed.
        unsafe { (*r).w.spilled.fetch_sub(1, Ordering::Release) };
    }
}

/// Cpu `t` takes, without running them, the entries waiting in the ring
/// from `s` into `out`. Called while pair `s → t` has entries on `t`'s
/// shared queue (its sender queues there, not in the ring, until they
/// are taken): what the ring still holds then is older than all of them.
///
/// # Safety
/// Called by cpu `t` only (the ring's reader).
pub unsafe fn take_older(t: usize, s: usize, out: &mut Vec<(IpiFn, *mut c_void)>) {
    let r = RINGS[t][s].load(Ordering::Acquire);
    if r.is_null() {
        return;
    }
    // SAFETY: rings are never freed; per the contract this cpu is the
    // ring's reader.
    while let Some(e) = unsafe { take(&*r) } {
        out.push(e);
    }
}

/// The next entry of `ring` if it is published: `(function, argument)`,
/// taken (the reader's index moves past it).
///
/// # Safety
/// Called by the ring's target cpu only.
#[inline(always)]
unsafe fn take(ring: &Ring) -> Option<(IpiFn, *mut c_void)> {
    let r = ring.r.rindex.load(Ordering::Relaxed);
    let slot = &ring.slots[(r & MASK) as usize];
    if slot.seq.load(Ordering::Acquire) != r.wrapping_add(1) {
        return None;
    }
    crate::san::acquire(slot);
    // SAFETY: published (seq, acquire) and not overwritten before the
    // reader's index moves past it (release below).
    let (func, arg) = unsafe { (*slot.func.get(), *slot.arg.get()) };
    ring.r.rindex.store(r.wrapping_add(1), Ordering::Release);
    func.map(|f| (f, arg))
}

/// Is an entry waiting in one of cpu `t`'s rings? A few loads.
#[inline(always)]
pub fn pending(t: usize) -> bool {
    rings_into(t).any(|ring| {
        let r = ring.r.rindex.load(Ordering::Relaxed);
        ring.slots[(r & MASK) as usize].seq.load(Ordering::Relaxed) == r.wrapping_add(1)
    })
}

/// Run every entry waiting in cpu `t`'s rings, each pair in order; how
/// many ran. An entry is taken before it runs, so a nested call (from a
/// function that switches threads) goes on after it.
///
/// # Safety
/// `t` is the current cpu's index; the entries' functions are safe to
/// call here (the senders' contract).
pub unsafe fn drain(t: usize) -> usize {
    let mut n = 0;
    for ring in rings_into(t) {
        // SAFETY: this cpu is the ring's reader; the functions are the
        // senders' business.
        while let Some((f, a)) = unsafe { take(ring) } {
            // SAFETY: as above.
            unsafe { f(a) };
            n += 1;
        }
    }
    n
}

/// Cpu `t` (the current one, with nothing waiting in its rings) starts
/// its idle spin: senders need not tell it of entries. It takes none
/// until [`stop_polling`], so the slots marked stay the next ones.
#[inline(always)]
pub fn start_polling(t: usize) {
    for ring in rings_into(t) {
        let r = ring.r.rindex.load(Ordering::Relaxed);
        ring.slots[(r & MASK) as usize]
            .polling
            .store(r.wrapping_add(1), Ordering::Relaxed);
    }
}

/// Cpu `t` ends its idle spin; true when an entry waits in its rings (it
/// must then run them: a sender may have left it untold). A slot that
/// already holds its entry keeps its mark: the sender has published, so
/// it needs no telling, and the mark names an entry that slot will not
/// hold again (the next lap's `seq` differs).
#[inline(always)]
pub fn stop_polling(t: usize) -> bool {
    for ring in rings_into(t) {
        let r = ring.r.rindex.load(Ordering::Relaxed);
        let slot = &ring.slots[(r & MASK) as usize];
        if slot.seq.load(Ordering::Relaxed) != r.wrapping_add(1) {
            slot.polling.store(0, Ordering::Relaxed);
        }
    }
    // Pairs with the fence in `push`.
    core::sync::atomic::fence(Ordering::SeqCst);
    pending(t)
}

/// How many entries waiting in cpu `t`'s rings call `func`.
///
/// # Safety
/// Cpu `t` is the current one, or one no thread runs (a `fork()` child).
pub unsafe fn count_queued(t: usize, func: IpiFn) -> usize {
    let mut n = 0;
    for ring in rings_into(t) {
        let mut r = ring.r.rindex.load(Ordering::Relaxed);
        loop {
            let slot = &ring.slots[(r & MASK) as usize];
            if slot.seq.load(Ordering::Acquire) != r.wrapping_add(1) {
                break;
            }
            // SAFETY: published slots are only read here.
            if unsafe { *slot.func.get() }.is_some_and(|f| core::ptr::fn_addr_eq(f, func)) {
                n += 1;
            }
            r = r.wrapping_add(1);
        }
    }
    n
}

/// In a `fork()` child that keeps cpu `t` only: the entries waiting in
/// its rings, in order per source (for its shared queue, ahead of what
/// waits there), and every ring emptied: the other cpus are gone, and a
/// cpu the child starts under an old number begins with empty rings.
///
/// # Safety
/// The child's only thread.
pub unsafe fn after_fork_child(t: Option<usize>) -> Vec<(IpiFn, *mut c_void)> {
    let mut kept = Vec::new();
    for ring in t.into_iter().flat_map(rings_into) {
        // SAFETY: per the contract nothing else reads or writes rings.
        while let Some(e) = unsafe { take(ring) } {
            kept.push(e);
        }
    }
    for row in &RINGS {
        for r in row {
            let r = r.load(Ordering::Acquire);
            if !r.is_null() {
                // SAFETY: per the contract; an all-zero ring is empty.
                unsafe { ptr::write_bytes(r, 0, 1) };
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPI that does nothing.
    ///
    /// # Safety
    /// None: it touches nothing.
    unsafe extern "C" fn nop(_arg: *mut c_void) {}

    fn send(t: usize, s: usize) -> &'static str {
        // SAFETY: only this test uses the pair (cpus no test starts).
        match unsafe { push(t, s, nop, ptr::null_mut()) } {
            Pushed::Seen => "seen",
            Pushed::Notify => "notify",
            Pushed::Full => "full",
        }
    }

    #[test]
    fn a_spin_that_found_its_entry_keeps_the_mark_and_later_laps_are_told() {
        let (t, s) = (NCPU - 1, NCPU - 2);
        assert_eq!(send(t, s), "notify");
        // SAFETY: this test is the pair's only reader.
        assert_eq!(unsafe { drain(t) }, 1);
        start_polling(t);
        assert_eq!(send(t, s), "seen");
        assert!(stop_polling(t));
        // SAFETY: rings are never freed.
        let ring = unsafe { &*RINGS[t][s].load(Ordering::Acquire) };
        // The slot of the entry found keeps its mark: the spinning cpu
        // wrote that line once, when it began to wait there.
        assert_eq!(ring.slots[1].polling.load(Ordering::Relaxed), 2);
        // SAFETY: as above.
        assert_eq!(unsafe { drain(t) }, 1);
        // After the spin senders tell the cpu again, in that slot's
        // next lap as well: an old mark names an older entry.
        for _ in 0..RING_SLOTS {
            assert_eq!(send(t, s), "notify");
            // SAFETY: as above.
            assert_eq!(unsafe { drain(t) }, 1);
        }
        assert_eq!(ring.slots[1].seq.load(Ordering::Relaxed), 2 + RING_SLOTS);
        // A spin that ends with nothing clears its mark.
        start_polling(t);
        assert!(!stop_polling(t));
        assert!(
            ring.slots
                .iter()
                .all(|x| x.polling.load(Ordering::Relaxed) != 3 + RING_SLOTS)
        );
    }
}

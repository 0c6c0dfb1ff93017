//! Where a thread structure of ours lives (its place in a cache line, its
//! allocation) and which of its bytes a reuse from the cache clears.

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr;

use crate::abi::{lwkt_msg_queue, lwkt_port, thread, thread_entry};

/// Zero the fields of a thread off the free list that `reinit_fields`
/// neither keeps (the list links, clear off every list; `td_kstack`) nor
/// stores (`set_fields`): every span below.
///
/// # Safety
/// `td` is a thread structure valid for writes.
#[inline(always)]
pub(super) unsafe fn zero_for_reuse(td: *mut thread) {
    // SAFETY: per the contract; every span lies before td_mach.
    unsafe {
        for (start, end) in [SPAN_PORT, SPAN_OWNER, SPAN_WAIT, SPAN_INFO, SPAN_TAIL] {
            // A constant count once unrolled: stored inline, no memset.
            ptr::write_bytes(td.cast::<u8>().add(start), 0, end - start);
        }
    }
}

/// The spans [`zero_for_reuse`] zeroes, `[start, end)`: what lies between
/// the list links, `td_kstack` and the fields `set_fields` stores.
const SPAN_PORT: (usize, usize) = (
    offset_of!(thread, td_msgport) + offset_of!(lwkt_port, mp_flags),
    offset_of!(thread, td_msgport) + offset_of!(lwkt_port, mp_td),
);
const SPAN_OWNER: (usize, usize) = (offset_of!(thread, td_proc), offset_of!(thread, td_gd));
const SPAN_WAIT: (usize, usize) = (offset_of!(thread, td_wmesg), offset_of!(thread, td_pri));
const SPAN_INFO: (usize, usize) = (offset_of!(thread, td_gen), offset_of!(thread, td_kstack));
const SPAN_TAIL: (usize, usize) = (offset_of!(thread, td_sp), offset_of!(thread, td_mach));

// The spans and what is not zeroed cover everything before td_mach: the
// two links, the port's queue head, then its owner and four vectors,
// td_gd, td_pri with td_flags, td_kstack.
const _: () = {
    let port = offset_of!(thread, td_msgport);
    assert!(offset_of!(thread, td_threadq) == 0);
    assert!(offset_of!(thread, td_allq) == core::mem::size_of::<thread_entry>());
    assert!(port == 2 * core::mem::size_of::<thread_entry>());
    assert!(offset_of!(lwkt_port, mp_msgq) == 0);
    assert!(SPAN_PORT.0 == port + core::mem::size_of::<lwkt_msg_queue>());
    assert!(SPAN_OWNER.0 == port + core::mem::size_of::<lwkt_port>());
    assert!(offset_of!(lwkt_port, mp_abortport) + 8 == core::mem::size_of::<lwkt_port>());
    assert!(offset_of!(lwkt_port, mp_putport) == offset_of!(lwkt_port, mp_td) + 8);
    assert!(SPAN_WAIT.0 == SPAN_OWNER.1 + 8);
    assert!(offset_of!(thread, td_flags) == SPAN_WAIT.1 + 4);
    assert!(SPAN_INFO.0 == offset_of!(thread, td_flags) + 4);
    assert!(SPAN_TAIL.0 == SPAN_INFO.1 + 8);
    let spans = [SPAN_PORT, SPAN_OWNER, SPAN_WAIT, SPAN_INFO, SPAN_TAIL];
    let mut i = 0;
    while i < spans.len() {
        assert!(spans[i].0.is_multiple_of(8) && spans[i].1.is_multiple_of(8));
        assert!(spans[i].1 > spans[i].0);
        i += 1;
    }
};

/// Where in a cache line a thread structure of ours begins: the fields
/// that a put or a reply from another cpu reads of the port's owner
/// (`td_msgport.mp_td`, the port's four vectors, `td_gd`; with `td_proc`
/// and `td_pcb` between them, 64 bytes from `mp_td` on) then share one
/// line that only the thread's set-up writes. The fields its owner
/// writes at every wait (`td_threadq`, the port's `mp_msgq` and
/// `mp_flags`, `td_wmesg`, `td_wchan`, `td_flags`) lie on the lines
/// before and after it. Otherwise a cross-cpu `lwkt_domsg` pulled the
/// target's line over at every put and the client's at every reply, each
/// just written by its owner's last wait.
pub const STRUCT_SKEW: usize =
    (64 - (offset_of!(thread, td_msgport) + offset_of!(lwkt_port, mp_td)) % 64) % 64;

const _: () = assert!(
    offset_of!(thread, td_gd) + 8 - offset_of!(thread, td_msgport) - offset_of!(lwkt_port, mp_td)
        <= 64
);

// The skew is one 64-bit word, which `alloc_struct` fills with the size
// of what follows it.
const _: () = assert!(STRUCT_SKEW == core::mem::size_of::<u64>());

/// A zeroed thread structure placed as [`STRUCT_SKEW`] says, or NULL when
/// memory is short; freed with [`free_struct`]. The word before it holds
/// its size: the layout of a length-prefixed block, which valgrind's leak
/// check (heuristic `length64`, on by default) counts as reachable
/// through a pointer to the structure (threads still running at `exit`
/// are not leaks).
pub(super) fn alloc_struct() -> *mut thread {
    let size = core::mem::size_of::<thread>();
    let mut p: *mut c_void = ptr::null_mut();
    // SAFETY: `p` is a valid out-pointer; 64 is a power of two and a
    // multiple of the pointer size.
    if unsafe { libc::posix_memalign(&mut p, 64, size + STRUCT_SKEW) } != 0 {
        return ptr::null_mut();
    }
    // SAFETY: `p` is `size + STRUCT_SKEW` writable bytes, 64-aligned.
    unsafe {
        p.cast::<u64>().write(size as u64);
        let td = p.cast::<u8>().add(STRUCT_SKEW);
        ptr::write_bytes(td, 0, size);
        td.cast()
    }
}

/// Free a thread structure of [`alloc_struct`].
///
/// # Safety
/// `td` came from [`alloc_struct`] and nobody uses it any more.
pub unsafe fn free_struct(td: *mut thread) {
    // SAFETY: per the contract, the allocation began STRUCT_SKEW bytes
    // before.
    unsafe { libc::free(td.cast::<u8>().sub(STRUCT_SKEW).cast()) }
}

#[cfg(test)]
mod tests {
    use core::ffi::c_char;

    use super::*;
    use crate::abi::{TDF_ALLOCATED_STACK, TDF_ALLOCATED_THREAD};
    use crate::lwkt::testcpu::PrivateCpu;
    use crate::lwkt::thread::{init_fields, reinit_fields};

    /// The bytes of `td` before `td_mach`, with its two pointers into
    /// itself (the port's owner, the end of its empty queue) checked and
    /// its port's vectors seen set, all replaced by 0, so that two
    /// threads compare (the same function may have two addresses in a
    /// test build).
    ///
    /// # Safety
    /// `td` is an initialised thread.
    unsafe fn head_bytes(td: *mut thread) -> Vec<u8> {
        // SAFETY: per the contract.
        unsafe {
            let port = &raw mut (*td).td_msgport;
            assert_eq!((*port).mp_td, td);
            assert_eq!((*port).mp_msgq.tqh_last, &raw mut (*port).mp_msgq.tqh_first);
            (*port).mp_td = ptr::null_mut();
            (*port).mp_msgq.tqh_last = ptr::null_mut();
            assert!((*port).mp_putport.take().is_some());
            assert!((*port).mp_waitport.take().is_some());
            assert!((*port).mp_replyport.take().is_some());
            assert!((*port).mp_abortport.take().is_some());
            let bytes = core::slice::from_raw_parts(td.cast::<u8>(), offset_of!(thread, td_mach));
            bytes.to_vec()
        }
    }

    #[test]
    fn a_reused_thread_is_set_as_a_new_one() {
        let c = PrivateCpu::new(29);
        let flags = TDF_ALLOCATED_THREAD | TDF_ALLOCATED_STACK;
        // Never touched: only stored in td_kstack.
        let stack = 0x1000 as *mut c_char;
        // SAFETY: both threads are locals, every byte pattern of them is
        // valid for a byte view, and nothing runs or lists them.
        unsafe {
            // A cached thread after some use: every byte dirty but what the
            // cache keeps (its links, clear off every list; its stack).
            let mut used: thread = core::mem::zeroed();
            ptr::write_bytes(&raw mut used, 0xa5, 1);
            used.td_threadq = core::mem::zeroed();
            used.td_allq = core::mem::zeroed();
            used.td_kstack = stack;
            let mach = ptr::read(&raw const used.td_mach);
            let mut fresh: thread = core::mem::zeroed();
            ptr::write_bytes(&raw mut fresh, 0x5a, 1);
            init_fields(&raw mut fresh, stack, flags, c.gd, Some(mach));
            reinit_fields(&raw mut used, flags, c.gd);
            assert_eq!(used.td_mach.mtd_errno, 0);
            assert_eq!(head_bytes(&raw mut used), head_bytes(&raw mut fresh));
        }
    }
}

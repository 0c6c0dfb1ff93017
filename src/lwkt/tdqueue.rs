//! BSD `TAILQ` operations on lists of threads (`struct thread_queue` heads,
//! `td_threadq` / `td_allq` links), laid out as `<sys/queue.h>` lays them
//! out so that C code walking `gd_tdallq` or `wa_waitq` with the `TAILQ_*`
//! macros sees consistent lists.

use core::ptr;

use crate::abi::{thread, thread_entry, thread_queue};

/// Which link of a thread a list uses.
#[derive(Clone, Copy)]
pub enum Link {
    /// `td_threadq`: run queue, wait queue or free list.
    Threadq,
    /// `td_allq`: the cpu's list of all threads.
    Allq,
}

/// The link field of `td` selected by `link`.
///
/// # Safety
/// `td` must be a valid thread.
unsafe fn entry(td: *mut thread, link: Link) -> *mut thread_entry {
    // SAFETY: the caller guarantees `td` is valid; only a field address is
    // computed.
    unsafe {
        match link {
            Link::Threadq => &raw mut (*td).td_threadq,
            Link::Allq => &raw mut (*td).td_allq,
        }
    }
}

/// `TAILQ_INIT(head)`.
///
/// # Safety
/// `head` must be valid for writes.
pub unsafe fn init(head: *mut thread_queue) {
    // SAFETY: the caller guarantees `head` is writable.
    unsafe {
        (*head).tqh_first = ptr::null_mut();
        (*head).tqh_last = &raw mut (*head).tqh_first;
    }
}

/// `TAILQ_FIRST(head)`.
///
/// # Safety
/// `head` must be an initialised list.
pub unsafe fn first(head: *const thread_queue) -> *mut thread {
    // SAFETY: the caller guarantees `head` is valid.
    unsafe { (*head).tqh_first }
}

/// `TAILQ_NEXT(td, link)`.
///
/// # Safety
/// `td` must be valid and on a list through `link`.
pub unsafe fn next(td: *mut thread, link: Link) -> *mut thread {
    // SAFETY: the caller guarantees `td` is valid.
    unsafe { (*entry(td, link)).tqe_next }
}

/// `TAILQ_INSERT_TAIL(head, td, link)`.
///
/// # Safety
/// `head` must be an initialised list and `td` a valid thread that is on no
/// list through `link`.
pub unsafe fn insert_tail(head: *mut thread_queue, td: *mut thread, link: Link) {
    // SAFETY: both are valid per the contract; `tqh_last` of an initialised
    // list points at the last next-pointer.
    unsafe {
        let e = entry(td, link);
        (*e).tqe_next = ptr::null_mut();
        (*e).tqe_prev = (*head).tqh_last;
        *(*head).tqh_last = td;
        (*head).tqh_last = &raw mut (*e).tqe_next;
    }
}

/// `TAILQ_REMOVE(head, td, link)`.
///
/// # Safety
/// `td` must currently be on `head` through `link`.
pub unsafe fn remove(head: *mut thread_queue, td: *mut thread, link: Link) {
    // SAFETY: `td` is linked on `head`, so its prev pointer and its
    // successor (or the head's last pointer) are valid.
    unsafe {
        let e = entry(td, link);
        let nxt = (*e).tqe_next;
        if nxt.is_null() {
            (*head).tqh_last = (*e).tqe_prev;
        } else {
            (*entry(nxt, link)).tqe_prev = (*e).tqe_prev;
        }
        *(*e).tqe_prev = nxt;
        (*e).tqe_next = ptr::null_mut();
        (*e).tqe_prev = ptr::null_mut();
    }
}

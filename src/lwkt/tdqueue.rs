//! BSD `TAILQ` operations on lists of threads (`struct thread_queue`
//! heads, `td_threadq` / `td_allq` links): the typed face of
//! [`super::tailq`] (`init` and `first` are its own), so that C code
//! walking `gd_tdallq` or `wa_waitq` with the `TAILQ_*` macros sees
//! consistent lists.

use core::mem::{offset_of, size_of};

use super::tailq::{self, CHead, Entry};
pub use super::tailq::{first, init};
use crate::abi::{thread, thread_entry, thread_queue};

const _: () = assert!(
    tailq::same_layout(
        size_of::<thread_queue>(),
        offset_of!(thread_queue, tqh_last)
    ) && tailq::same_layout(
        size_of::<thread_entry>(),
        offset_of!(thread_entry, tqe_prev)
    )
);

// SAFETY: the layout of `Head<thread>`, asserted above.
unsafe impl CHead for thread_queue {
    type Elem = thread;
}

/// Which link of a thread a list uses.
#[derive(Clone, Copy)]
pub enum Link {
    /// `td_threadq`: run queue, wait queue or free list.
    Threadq,
    /// `td_allq`: the cpu's list of all threads.
    Allq,
}

/// The link field of `td` selected by `link`.
#[inline(always)]
fn entry(td: *mut thread, link: Link) -> *mut Entry<thread> {
    // SAFETY: only a field address is computed; `thread_entry` has the
    // layout of `Entry<thread>` (checked above).
    unsafe {
        match link {
            Link::Threadq => (&raw mut (*td).td_threadq).cast(),
            Link::Allq => (&raw mut (*td).td_allq).cast(),
        }
    }
}

/// `TAILQ_NEXT(td, link)`.
///
/// # Safety
/// `td` must be valid and on a list through `link`.
#[inline]
pub unsafe fn next(td: *mut thread, link: Link) -> *mut thread {
    // SAFETY: the caller guarantees `td` is valid.
    unsafe { (*entry(td, link)).next }
}

/// `TAILQ_INSERT_TAIL(head, td, link)`.
///
/// # Safety
/// `q` must be an initialised list and `td` a valid thread that is on no
/// list through `link`.
#[inline]
pub unsafe fn insert_tail(q: *mut thread_queue, td: *mut thread, link: Link) {
    // SAFETY: per the contract.
    unsafe { tailq::insert_tail(q, td, |t| entry(t, link)) }
}

/// `TAILQ_REMOVE(head, td, link)`.
///
/// # Safety
/// `td` must currently be on `q` through `link`.
#[inline]
pub unsafe fn remove(q: *mut thread_queue, td: *mut thread, link: Link) {
    // SAFETY: per the contract.
    unsafe { tailq::remove(q, td, |t| entry(t, link)) }
}

/// Move `td`, the first thread of `q`, to the tail (round robin); a
/// thread alone on `q` stays. The same lists as a `TAILQ_REMOVE` +
/// `TAILQ_INSERT_TAIL` would leave, with fewer stores.
///
/// # Safety
/// `td` must be the first thread of `q` through `td_threadq`.
#[inline(always)]
pub unsafe fn rotate_first(q: *mut thread_queue, td: *mut thread) {
    // SAFETY: per the contract, `td` heads `q`, so its successor (if any)
    // and the head's last pointer are valid links of `q`.
    unsafe {
        let e = entry(td, Link::Threadq);
        let next = (*e).next;
        if next.is_null() {
            return;
        }
        (*q).tqh_first = next;
        (*entry(next, Link::Threadq)).prev = &raw mut (*q).tqh_first;
        (*e).next = core::ptr::null_mut();
        (*e).prev = (*q).tqh_last;
        *(*q).tqh_last = td;
        (*q).tqh_last = &raw mut (*e).next;
    }
}

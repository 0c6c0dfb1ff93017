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

/// `TAILQ_INSERT_HEAD(head, td, link)`.
///
/// # Safety
/// As [`insert_tail`].
#[inline]
pub unsafe fn insert_head(q: *mut thread_queue, td: *mut thread, link: Link) {
    // SAFETY: per the contract.
    unsafe { tailq::insert_head(q, td, |t| entry(t, link)) }
}

/// `TAILQ_LAST(head, thread_queue)` of a list linked through `link`.
///
/// # Safety
/// `q` must be an initialised list of threads linked through `link`.
#[inline]
pub unsafe fn last(q: *const thread_queue, link: Link) -> *mut thread {
    // SAFETY: per the contract.
    unsafe { tailq::last(q, |t| entry(t, link)) }
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

/// `td`, alone on `q` through `td_threadq`, gives its place to `ntd`,
/// which is on no list: `ntd` alone on `q`, `td` unlinked. What a
/// `TAILQ_REMOVE` + `TAILQ_INSERT_TAIL` would leave, with fewer stores.
///
/// # Safety
/// `td` must be the only thread of `q` through `td_threadq`, `ntd` a
/// valid thread on no list through it.
#[inline(always)]
pub unsafe fn replace_alone(q: *mut thread_queue, td: *mut thread, ntd: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        let e = entry(ntd, Link::Threadq);
        (*e).next = core::ptr::null_mut();
        (*e).prev = &raw mut (*q).tqh_first;
        (*q).tqh_first = ntd;
        (*q).tqh_last = &raw mut (*e).next;
        (*entry(td, Link::Threadq)).prev = core::ptr::null_mut();
    }
}

/// Take `td` off `q`, which holds exactly `td` and `other` through
/// `td_threadq` (`td` first when `td_first`), leaving `other` alone on
/// it. What a `TAILQ_REMOVE` would leave, without its tests.
///
/// # Safety
/// `q` must hold exactly the two threads `td` and `other`, in the order
/// `td_first` says.
#[inline(always)]
pub unsafe fn remove_leaving(
    q: *mut thread_queue,
    td: *mut thread,
    other: *mut thread,
    td_first: bool,
) {
    // SAFETY: per the contract.
    unsafe {
        let e = entry(other, Link::Threadq);
        if td_first {
            (*q).tqh_first = other;
            (*e).prev = &raw mut (*q).tqh_first;
        } else {
            (*e).next = core::ptr::null_mut();
            (*q).tqh_last = &raw mut (*e).next;
        }
        let t = entry(td, Link::Threadq);
        (*t).next = core::ptr::null_mut();
        (*t).prev = core::ptr::null_mut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threads of `q` from the head by `tqe_next`, checking every
    /// back link (`tqe_prev`) and the head's `tqh_last` on the way, as
    /// the `TAILQ_*` macros of C code walking the list rely on them.
    fn walk(q: &mut thread_queue) -> Vec<*mut thread> {
        let mut out = Vec::new();
        let mut link: *mut *mut thread = &raw mut q.tqh_first;
        // SAFETY: the test's threads, linked by insert_tail/rotate_first.
        unsafe {
            let mut td = *link;
            while !td.is_null() {
                assert_eq!((*td).td_threadq.tqe_prev, link, "back link of {td:p}");
                out.push(td);
                link = &raw mut (*td).td_threadq.tqe_next;
                td = *link;
            }
        }
        assert_eq!(q.tqh_last, link, "tqh_last");
        out
    }

    #[test]
    fn rotate_first_moves_the_head_to_the_tail_with_consistent_links() {
        // SAFETY: zeroed threads and an empty head are valid values.
        let mut tds: Vec<thread> = (0..3).map(|_| unsafe { core::mem::zeroed() }).collect();
        let t: Vec<*mut thread> = tds.iter_mut().map(|t| t as *mut thread).collect();
        // SAFETY: as above.
        let mut q: thread_queue = unsafe { core::mem::zeroed() };
        // SAFETY: the head and threads are locals of this test.
        unsafe {
            init(&raw mut q);
            insert_tail(&raw mut q, t[0], Link::Threadq);
            rotate_first(&raw mut q, t[0]);
            assert_eq!(walk(&mut q), [t[0]], "alone: stays");
            insert_tail(&raw mut q, t[1], Link::Threadq);
            rotate_first(&raw mut q, t[0]);
            assert_eq!(walk(&mut q), [t[1], t[0]]);
            insert_tail(&raw mut q, t[2], Link::Threadq);
            rotate_first(&raw mut q, t[1]);
            assert_eq!(walk(&mut q), [t[0], t[2], t[1]]);
            rotate_first(&raw mut q, t[0]);
            assert_eq!(walk(&mut q), [t[2], t[1], t[0]]);
            remove(&raw mut q, t[1], Link::Threadq);
            assert_eq!(walk(&mut q), [t[2], t[0]]);
        }
    }
}

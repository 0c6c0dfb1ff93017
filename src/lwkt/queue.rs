//! BSD `TAILQ` operations on the message queue embedded in `struct
//! lwkt_port` (`mp_msgq`, linked through `ms_node`): the typed face of
//! [`super::tailq`], so that C code using the `TAILQ_*` macros on
//! `mp_msgq` sees a consistent list.

use core::mem::{offset_of, size_of};

use super::tailq::{self, Entry, Head};
use crate::abi::{lwkt_msg, lwkt_msg_entry, lwkt_msg_queue};

const _: () = assert!(
    tailq::same_layout(
        size_of::<lwkt_msg_queue>(),
        offset_of!(lwkt_msg_queue, tqh_last)
    ) && tailq::same_layout(
        size_of::<lwkt_msg_entry>(),
        offset_of!(lwkt_msg_entry, tqe_prev)
    )
);

/// The generic view of a message queue head.
#[inline(always)]
fn head(q: *const lwkt_msg_queue) -> *mut Head<lwkt_msg> {
    q.cast_mut().cast()
}

/// The `ms_node` link of `msg`.
#[inline(always)]
fn node(msg: *mut lwkt_msg) -> *mut Entry<lwkt_msg> {
    // SAFETY: only a field address is computed; `lwkt_msg_entry` has the
    // layout of `Entry<lwkt_msg>` (checked above).
    unsafe { (&raw mut (*msg).ms_node).cast() }
}

/// `TAILQ_INIT(head)`.
///
/// # Safety
/// `q` must be valid for writes.
#[inline]
pub unsafe fn init(q: *mut lwkt_msg_queue) {
    // SAFETY: per the contract.
    unsafe { tailq::init(head(q)) }
}

/// `TAILQ_FIRST(head)`.
///
/// # Safety
/// `q` must point to an initialised queue.
#[inline]
pub unsafe fn first(q: *const lwkt_msg_queue) -> *mut lwkt_msg {
    // SAFETY: the caller guarantees `q` is a valid queue.
    unsafe { (*q).tqh_first }
}

/// `TAILQ_INSERT_TAIL(head, msg, ms_node)`.
///
/// # Safety
/// `q` must be an initialised queue and `msg` a valid message that is on
/// no queue.
#[inline]
pub unsafe fn insert_tail(q: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe { tailq::insert_tail(head(q), msg, node) }
}

/// `TAILQ_REMOVE(head, msg, ms_node)`.
///
/// # Safety
/// `msg` must currently be on the queue `q`.
#[inline]
pub unsafe fn remove(q: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe { tailq::remove(head(q), msg, node) }
}

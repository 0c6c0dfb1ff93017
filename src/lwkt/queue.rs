//! BSD `TAILQ` operations on message queues (`mp_msgq` of `struct
//! lwkt_port`, linked through `ms_node`): the typed face of
//! [`super::tailq`] (`init` and `first` are its own), so that C code using
//! the `TAILQ_*` macros on `mp_msgq` sees a consistent list.

use core::mem::{offset_of, size_of};

use super::tailq::{self, CHead, Entry};
pub use super::tailq::{first, init};
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

// SAFETY: the layout of `Head<lwkt_msg>`, asserted above.
unsafe impl CHead for lwkt_msg_queue {
    type Elem = lwkt_msg;
}

/// The `ms_node` link of `msg`.
#[inline(always)]
fn node(msg: *mut lwkt_msg) -> *mut Entry<lwkt_msg> {
    // SAFETY: only a field address is computed; `lwkt_msg_entry` has the
    // layout of `Entry<lwkt_msg>` (checked above).
    unsafe { (&raw mut (*msg).ms_node).cast() }
}

/// `TAILQ_INSERT_TAIL(head, msg, ms_node)`.
///
/// # Safety
/// `q` must be an initialised queue and `msg` a valid message that is on
/// no queue.
#[inline]
pub unsafe fn insert_tail(q: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe { tailq::insert_tail(q, msg, node) }
}

/// `TAILQ_REMOVE(head, msg, ms_node)`.
///
/// # Safety
/// `msg` must currently be on the queue `q`.
#[inline]
pub unsafe fn remove(q: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe { tailq::remove(q, msg, node) }
}

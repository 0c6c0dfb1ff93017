//! BSD `TAILQ` operations on the message queue embedded in `struct
//! lwkt_port`, laid out exactly as `<sys/queue.h>` lays them out so that C
//! code using the `TAILQ_*` macros on `mp_msgq` sees a consistent list.

use core::ptr;

use crate::abi::{lwkt_msg, lwkt_msg_queue};

/// `TAILQ_INIT(head)`.
///
/// # Safety
/// `head` must be valid for writes.
pub unsafe fn init(head: *mut lwkt_msg_queue) {
    // SAFETY: the caller guarantees `head` is writable.
    unsafe {
        (*head).tqh_first = ptr::null_mut();
        (*head).tqh_last = &raw mut (*head).tqh_first;
    }
}

/// `TAILQ_FIRST(head)`.
///
/// # Safety
/// `head` must point to an initialised queue.
pub unsafe fn first(head: *const lwkt_msg_queue) -> *mut lwkt_msg {
    // SAFETY: the caller guarantees `head` is a valid queue.
    unsafe { (*head).tqh_first }
}

/// `TAILQ_INSERT_TAIL(head, msg, ms_node)`.
///
/// # Safety
/// `head` must be an initialised queue and `msg` a valid message that is on
/// no queue.
pub unsafe fn insert_tail(head: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: both pointers are valid per the contract; the list invariants
    // (tqh_last points at the last next-pointer) hold for initialised queues.
    unsafe {
        (*msg).ms_node.tqe_next = ptr::null_mut();
        (*msg).ms_node.tqe_prev = (*head).tqh_last;
        *(*head).tqh_last = msg;
        (*head).tqh_last = &raw mut (*msg).ms_node.tqe_next;
    }
}

/// `TAILQ_REMOVE(head, msg, ms_node)`.
///
/// # Safety
/// `msg` must currently be on the queue `head`.
pub unsafe fn remove(head: *mut lwkt_msg_queue, msg: *mut lwkt_msg) {
    // SAFETY: `msg` is linked on `head`, so its prev pointer and its
    // successor (or the head's last pointer) are valid.
    unsafe {
        let next = (*msg).ms_node.tqe_next;
        if next.is_null() {
            (*head).tqh_last = (*msg).ms_node.tqe_prev;
        } else {
            (*next).ms_node.tqe_prev = (*msg).ms_node.tqe_prev;
        }
        *(*msg).ms_node.tqe_prev = next;
        (*msg).ms_node.tqe_next = ptr::null_mut();
        (*msg).ms_node.tqe_prev = ptr::null_mut();
    }
}

//! Request buffers of a v1 service: the library allocates each request
//! it delivers, with a hidden header naming its id and connection, and
//! frees it once the server replied.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::mem::size_of;

use super::{CapsPort, MSG_HDR};
use crate::abi::lwkt_msg;
use crate::caps::wire::{FrameKind, Header};

/// Hidden header in front of every request buffer the library allocates.
#[repr(C, align(16))]
pub(super) struct ReqHead {
    pub(super) magic: u64,
    pub(super) id: u64,
    pub(super) remote: *mut CapsPort,
    pub(super) size: usize,
}

pub(super) const REQ_MAGIC: u64 = u64::from_le_bytes(*b"CAPSREQ1");
const REQ_DEAD: u64 = u64::from_le_bytes(*b"caps-dea");
/// Replied from another cpu, on its way to the connection's cpu.
pub(super) const REQ_HANDED: u64 = u64::from_le_bytes(*b"CAPSREQh");
pub(super) const HIDDEN: usize = size_of::<ReqHead>();

/// A zeroed request buffer with room for `MSG_HDR + capacity` bytes.
pub(super) fn alloc_request(remote: *mut CapsPort, id: u64, capacity: usize) -> *mut lwkt_msg {
    let size = HIDDEN + MSG_HDR + capacity;
    let layout = Layout::from_size_align(size, 16).expect("request layout");
    // SAFETY: `layout` has a non-zero size. Zeroed: whatever part of the
    // buffer the server sends back without writing must not carry old
    // heap contents to another process.
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `p` is a fresh allocation, 16-aligned, big enough for the
    // header followed by the message.
    unsafe {
        p.cast::<ReqHead>().write(ReqHead {
            magic: REQ_MAGIC,
            id,
            remote,
            size,
        });
        p.add(HIDDEN).cast()
    }
}

/// The hidden header of a request buffer.
///
/// # Safety
/// `msg` must come from `alloc_request` and not be freed.
pub(super) unsafe fn req_head(msg: *mut lwkt_msg) -> *mut ReqHead {
    // SAFETY: per the contract the header sits HIDDEN bytes before.
    unsafe { msg.cast::<u8>().sub(HIDDEN).cast() }
}

/// # Safety
/// `msg` must come from `alloc_request` and not be used afterwards.
pub(super) unsafe fn free_request(msg: *mut lwkt_msg) {
    // SAFETY: per the contract.
    unsafe {
        let head = req_head(msg);
        let size = (*head).size;
        (*head).magic = REQ_DEAD;
        dealloc(head.cast(), Layout::from_size_align_unchecked(size, 16));
    }
}

/// The header of a frame of `kind` that carries message image `msg`
/// (`id`, `body_len` bytes of payload): its `ms_cmd`, `u` and `ms_pad`;
/// every other field 0 (a request adds its capacity, a reply its error).
///
/// # Safety
/// `msg` must be a live message.
pub(super) unsafe fn msg_header(
    msg: *const lwkt_msg,
    kind: FrameKind,
    id: u64,
    body_len: usize,
) -> Header {
    // SAFETY: per the contract.
    unsafe {
        Header {
            cmd: (*msg).ms_cmd,
            result: (*msg).u.ms_result64 as u64,
            pad: (*msg).ms_pad,
            ..Header::new(kind, id, body_len as u32)
        }
    }
}

/// Write the fields of frame header `h` that message images carry
/// (`ms_cmd`, `u`, `ms_pad`) and its payload `body` into `msg`.
///
/// # Safety
/// `msg` must be a live message with room for `MSG_HDR + body.len()`
/// bytes.
pub(super) unsafe fn msg_fill(msg: *mut lwkt_msg, h: &Header, body: &[u8]) {
    // SAFETY: per the contract.
    unsafe {
        (*msg).ms_cmd = h.cmd;
        (*msg).u.ms_result64 = h.result as i64;
        (*msg).ms_pad = h.pad;
        (*msg).ms_msgsize = (MSG_HDR + body.len()) as i32;
        std::ptr::copy_nonoverlapping(body.as_ptr(), msg.cast::<u8>().add(MSG_HDR), body.len());
    }
}

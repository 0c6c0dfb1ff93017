//! `<sys/thread.h>`: until the thread subsystem lands, `struct thread` is
//! opaque to the message-port code.

/// An LWKT thread.
#[repr(C)]
pub struct thread {
    _opaque: [u8; 0],
}

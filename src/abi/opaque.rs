//! Structures that the public headers only ever point to (`struct proc`,
//! `struct pcb`, `struct md_intr_info`). The headers forward-declare them;
//! cbindgen never reads this file, so no definition is generated.

/// `struct proc` (`proc` is reserved in the Rust the ABI test parses):
/// no processes in userland; always NULL.
#[repr(C)]
pub struct proc_ {
    _opaque: [u8; 0],
}

/// `struct pcb`: no process control blocks in userland; always NULL.
#[repr(C)]
pub struct pcb {
    _opaque: [u8; 0],
}

/// `struct md_intr_info`: no interrupt threads in userland; always NULL.
#[repr(C)]
pub struct md_intr_info {
    _opaque: [u8; 0],
}

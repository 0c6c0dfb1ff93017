//! `<libcaps/globaldata.h>`: until the thread/cpu subsystem lands,
//! `struct globaldata` is opaque to the slab allocator (placeholder: the
//! threads branch defines the real structure, with `gd_slab`).

/// Per-cpu data of a virtual cpu.
#[repr(C)]
pub struct globaldata {
    _opaque: [u8; 0],
}

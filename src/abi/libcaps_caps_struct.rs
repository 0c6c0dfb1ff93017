//! `<libcaps/caps_struct.h>`: the structural encoding's schema description
//! (`struct caps_label`, `struct caps_struct`), its message buffer
//! (`struct caps_msgbuf`) and the type codes.
//!
//! This file is parsed by cbindgen (struct part of the header) and by the
//! `abi-test` crate (ctest2), so it keeps to plain syntax: types, consts and
//! type aliases only.

use core::ffi::{c_char, c_int};

/// Field id: the number that identifies a field on the wire.
pub type caps_fid_t = u32;

/// One field of a structure description. A table of labels ends with an
/// entry whose `offset` is negative (`{ -1 }`).
///
/// cbindgen:field-names=[offset, type, size, fid, nary, csinfo]
#[repr(C)]
pub struct caps_label {
    /// Byte offset of the field in the C structure.
    pub offset: c_int,
    /// `CAPS_OP_*` type code (`type` in C).
    pub type_: c_int,
    /// Size of the field (integers: 1, 2, 4 or 8; strings: maximum length,
    /// 0 = unlimited for `CAPS_OP_STRPTR_T`); element size for arrays.
    pub size: c_int,
    /// Field id written on the wire.
    pub fid: caps_fid_t,
    /// Number of array elements; 0 or 1 mean a single element.
    pub nary: c_int,
    /// Description of an embedded structure, or NULL.
    pub csinfo: caps_struct_t,
}

/// A structure description: its wire name and its label table.
#[repr(C)]
pub struct caps_struct {
    pub name: *mut c_char,
    pub labels: caps_label_t,
}

/// Cursor over a caller-supplied byte buffer, used by both directions.
/// When encoding, `index` keeps counting past `bufsize` (nothing is stored
/// there), so it ends as the length the full encoding needs.
#[repr(C)]
pub struct caps_msgbuf {
    pub base: *mut u8,
    pub index: c_int,
    pub bufsize: c_int,
    pub error: c_int,
}

/// `caps_label_t`
pub type caps_label_t = *const caps_label;
/// `caps_struct_t`
pub type caps_struct_t = *const caps_struct;
/// `caps_msgbuf_t`
pub type caps_msgbuf_t = *mut caps_msgbuf;

/// Flag in a type code: the field is a pointer the decoder allocates.
pub const CAPS_OPF_PTR: c_int = 0x0100;

/// Signed integer of `size` bytes (1, 2, 4 or 8).
pub const CAPS_OP_INT_T: c_int = 1;
/// Unsigned integer of `size` bytes (1, 2, 4 or 8).
pub const CAPS_OP_UINT_T: c_int = 2;
/// `char field[size]`, NUL-terminated.
pub const CAPS_OP_STRBUF_T: c_int = 3;
/// `char *field`, allocated with `malloc` by the decoder.
pub const CAPS_OP_STRPTR_T: c_int = 3 | CAPS_OPF_PTR;
/// `size` raw bytes.
pub const CAPS_OP_OPAQUE_T: c_int = 4;

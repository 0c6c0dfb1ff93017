//! Walking a schema description (`struct caps_struct` and its label table)
//! and the one schema the library ships: `struct passwd`.

use core::ffi::{c_char, c_int};
use core::mem::{offset_of, size_of};

use crate::abi::{CAPS_OP_INT_T, CAPS_OP_STRPTR_T, caps_label, caps_struct};

/// Make an immutable schema object shareable in a `static`. Same layout as
/// `T`, so C sees a plain `const T`.
#[repr(transparent)]
pub struct Shared<T>(pub T);

// SAFETY: `Shared` is only used for immutable statics (label tables and
// structure descriptions) whose pointers lead to other immutable statics;
// nothing ever writes through them, so sharing between threads is sound.
unsafe impl<T> Sync for Shared<T> {}

/// The labels of `cs`, up to the terminating entry (`offset < 0`).
///
/// # Safety
/// `cs.labels` is NULL or points to a label table terminated by an entry
/// with a negative offset, valid for `'a`.
pub unsafe fn labels<'a>(cs: &'a caps_struct) -> impl Iterator<Item = &'a caps_label> + 'a {
    let base = cs.labels;
    let mut i = 0usize;
    core::iter::from_fn(move || {
        if base.is_null() {
            return None;
        }
        // SAFETY: the table is terminated (contract), and we stop at the
        // terminator, so entry `i` is inside it.
        let l = unsafe { &*base.add(i) };
        if l.offset < 0 {
            return None;
        }
        i += 1;
        Some(l)
    })
}

/// The wire name of `cs` (empty for a NULL name).
///
/// # Safety
/// `cs.name` is NULL or a NUL-terminated string that lives as long as `cs`.
pub unsafe fn name(cs: &caps_struct) -> &[u8] {
    if cs.name.is_null() {
        return b"";
    }
    // SAFETY: non-NULL and NUL-terminated (contract).
    unsafe { core::ffi::CStr::from_ptr(cs.name) }.to_bytes()
}

/// Bytes between consecutive elements of an array field: the element size,
/// except for `CAPS_OP_STRPTR_T`, whose `size` limits the string length and
/// whose elements are pointers.
pub fn stride(l: &caps_label) -> usize {
    if l.csinfo.is_null() && l.type_ == CAPS_OP_STRPTR_T {
        size_of::<*mut c_char>()
    } else {
        l.size.max(0) as usize
    }
}

/// Number of elements a label describes (`nary` 0 and 1 both mean one).
pub fn count(l: &caps_label) -> usize {
    l.nary.max(1) as usize
}

/// Field ids of the passwd schema. They are DragonFly's `CAPS_PW_*`
/// numbers; glibc's `struct passwd` has no `pw_change` (5), `pw_class` (6)
/// or `pw_expire` (10), so those ids are not in the table and the decoder
/// skips them when they arrive from a BSD encoder.
pub const CAPS_PW_NAME: u32 = 1;
pub const CAPS_PW_PASSWD: u32 = 2;
pub const CAPS_PW_UID: u32 = 3;
pub const CAPS_PW_GID: u32 = 4;
pub const CAPS_PW_GECOS: u32 = 7;
pub const CAPS_PW_DIR: u32 = 8;
pub const CAPS_PW_SHELL: u32 = 9;

/// A scalar label: `offset`, `CAPS_OP_*` type, size, field id.
pub const fn label(offset: usize, ty: c_int, size: usize, fid: u32) -> caps_label {
    caps_label {
        offset: offset as c_int,
        type_: ty,
        size: size as c_int,
        fid,
        nary: 0,
        csinfo: core::ptr::null(),
    }
}

/// The terminating entry of a label table.
pub const END: caps_label = caps_label {
    offset: -1,
    type_: 0,
    size: 0,
    fid: 0,
    nary: 0,
    csinfo: core::ptr::null(),
};

/// Entries in `caps_passwd_label`, terminator included.
pub const PASSWD_NLABELS: usize = 8;

/// The label table of `struct passwd` (glibc layout).
pub const PASSWD_LABELS: [caps_label; PASSWD_NLABELS] = [
    label(
        offset_of!(libc::passwd, pw_name),
        CAPS_OP_STRPTR_T,
        0,
        CAPS_PW_NAME,
    ),
    label(
        offset_of!(libc::passwd, pw_passwd),
        CAPS_OP_STRPTR_T,
        0,
        CAPS_PW_PASSWD,
    ),
    label(
        offset_of!(libc::passwd, pw_uid),
        CAPS_OP_INT_T,
        size_of::<libc::uid_t>(),
        CAPS_PW_UID,
    ),
    label(
        offset_of!(libc::passwd, pw_gid),
        CAPS_OP_INT_T,
        size_of::<libc::gid_t>(),
        CAPS_PW_GID,
    ),
    label(
        offset_of!(libc::passwd, pw_gecos),
        CAPS_OP_STRPTR_T,
        0,
        CAPS_PW_GECOS,
    ),
    label(
        offset_of!(libc::passwd, pw_dir),
        CAPS_OP_STRPTR_T,
        0,
        CAPS_PW_DIR,
    ),
    label(
        offset_of!(libc::passwd, pw_shell),
        CAPS_OP_STRPTR_T,
        0,
        CAPS_PW_SHELL,
    ),
    END,
];

/// Wire name of the passwd schema.
pub const PASSWD_NAME: &core::ffi::CStr = c"passwd";

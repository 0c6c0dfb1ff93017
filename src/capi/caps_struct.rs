//! `<libcaps/caps_struct.h>`: the structural encoding (spec §7).
//!
//! A structure is described by a `struct caps_struct` (wire name + label
//! table); `caps_encode` turns such a structure into a short ASCII string
//! and `caps_decode` fills a structure from one. `caps_passwd_struct`
//! describes glibc's `struct passwd`.

use core::ffi::{c_char, c_int, c_void};

use crate::abi::{
    caps_label, caps_label_t, caps_msgbuf, caps_msgbuf_t, caps_struct, caps_struct_t,
};
use crate::encoding::buf::{Reader, Writer};
use crate::encoding::decode::{self, Decoder};
use crate::encoding::schema::{PASSWD_LABELS, PASSWD_NAME, PASSWD_NLABELS, Shared};
use crate::encoding::{self as core_enc, encode};
use crate::fatal;

/// Label table of `struct passwd` (glibc layout): fids 1 `pw_name`,
/// 2 `pw_passwd`, 3 `pw_uid`, 4 `pw_gid`, 7 `pw_gecos`, 8 `pw_dir`,
/// 9 `pw_shell`, then the `{ -1 }` terminator. The BSD-only fields 5
/// (`pw_change`), 6 (`pw_class`) and 10 (`pw_expire`) are absent.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static caps_passwd_label: Shared<[caps_label; PASSWD_NLABELS]> = Shared(PASSWD_LABELS);

/// Description of `struct passwd`, wire name `"passwd"`.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static caps_passwd_struct: Shared<caps_struct> = Shared(caps_struct {
    name: PASSWD_NAME.as_ptr() as *mut c_char,
    labels: caps_passwd_label.0.as_ptr(),
});

fn clamp_int(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// The input bytes of a C buffer (`base` may be NULL when `len` is 0).
///
/// # Safety
/// `base` is valid for reads of `len` bytes when `len > 0`.
unsafe fn in_slice<'a>(base: *const u8, len: c_int) -> &'a [u8] {
    if base.is_null() || len <= 0 {
        &[]
    } else {
        // SAFETY: valid for `len` bytes (contract).
        unsafe { core::slice::from_raw_parts(base, len as usize) }
    }
}

/// A writer over the free part of a message buffer.
///
/// # Safety
/// `msg` is valid and its `base` is valid for `bufsize` bytes.
unsafe fn writer<'a>(msg: &caps_msgbuf) -> Writer<'a> {
    let cap = if msg.base.is_null() {
        0
    } else {
        msg.bufsize.max(0) as usize
    };
    // SAFETY: `base` valid for `bufsize` bytes (contract).
    let mut w = unsafe { Writer::from_raw(msg.base, cap, msg.index.max(0) as usize) };
    w.error = msg.error;
    w
}

fn put_writer(msg: &mut caps_msgbuf, w: Writer<'_>) {
    msg.index = clamp_int(w.index);
    msg.error = w.error;
}

/// A reader over a message buffer.
///
/// # Safety
/// As for [`writer`].
unsafe fn reader<'a>(msg: &caps_msgbuf) -> Reader<'a> {
    // SAFETY: `base` valid for `bufsize` bytes (contract).
    let mut r = Reader::new(unsafe { in_slice(msg.base, msg.bufsize) });
    r.index = msg.index.max(0) as usize;
    r.error = msg.error;
    r
}

fn put_reader(msg: &mut caps_msgbuf, r: Reader<'_>) {
    msg.index = clamp_int(r.index);
    msg.error = r.error;
}

/// The message buffer behind `msg`, or abort naming `func`.
///
/// # Safety
/// `msg` is NULL or a valid, exclusively owned `struct caps_msgbuf`.
unsafe fn msgbuf<'a>(func: &str, msg: caps_msgbuf_t) -> &'a mut caps_msgbuf {
    if msg.is_null() {
        fatal!(func, "NULL message buffer");
    }
    // SAFETY: non-NULL and valid (contract).
    unsafe { &mut *msg }
}

/// Encode the structure at `data`, described by `cs`, into `buf` (at most
/// `bytes` bytes are written; a NUL follows the encoding when there is
/// room). Returns the length the complete encoding needs, without the NUL:
/// if it is `>= bytes` the output was truncated. `buf` may be NULL when
/// `bytes` is 0 (to ask for the length). Fields of an unsupported type or
/// size are written `D?`. Aborts if `data` or `cs` is NULL.
///
/// Context: any thread; no locks, no allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_encode(
    buf: *mut c_void,
    bytes: c_int,
    data: *mut c_void,
    cs: caps_struct_t,
) -> c_int {
    if data.is_null() || cs.is_null() {
        fatal!(
            "caps_encode",
            "NULL {}",
            if cs.is_null() {
                "structure description"
            } else {
                "data"
            }
        );
    }
    if buf.is_null() && bytes > 0 {
        fatal!("caps_encode", "NULL buffer of {bytes} bytes");
    }
    let cap = if buf.is_null() {
        0
    } else {
        bytes.max(0) as usize
    };
    // SAFETY: `buf` is valid for `bytes` bytes (contract, checked for NULL).
    let mut w = unsafe { Writer::from_raw(buf.cast(), cap, 0) };
    // SAFETY: `cs` is a valid description of `data` (contract).
    unsafe { encode::structure(&mut w, data.cast(), &*cs, 0) };
    w.terminate();
    clamp_int(w.index)
}

/// Find the structure named `cs->name` in the `bytes` bytes at `buf` and
/// decode it into `data`. Returns the number of bytes consumed (up to and
/// including the structure's closing `}`), and stores in `*error`:
/// 0; `EINVAL` for malformed input (the return value is then the offset of
/// the offending byte, and every string this call allocated has been freed
/// and its field set back to NULL); `ENOENT` if no such structure is in
/// the input. `CAPS_OP_STRPTR_T` fields receive `malloc`ed strings: release
/// them with `caps_struct_free_pointers(data, cs)`. Zero `data` first; pointer
/// fields are overwritten, not freed. NULL `buf` (with `bytes > 0`), `data`
/// or `cs` give `EINVAL`; `error` may be NULL.
///
/// Context: any thread; never reads outside `buf[0..bytes)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_decode(
    buf: *const c_void,
    bytes: c_int,
    data: *mut c_void,
    cs: caps_struct_t,
    error: *mut c_int,
) -> c_int {
    let (n, e) = if data.is_null() || cs.is_null() || (buf.is_null() && bytes > 0) {
        (0, libc::EINVAL)
    } else {
        // SAFETY: `buf` is valid for `bytes` bytes (contract).
        let input = unsafe { in_slice(buf.cast(), bytes) };
        // SAFETY: `cs` describes `data` (contract).
        unsafe { core_enc::decode(input, data.cast(), &*cs) }
    };
    if !error.is_null() {
        // SAFETY: non-NULL `error` points to an int (contract).
        unsafe { *error = e };
    }
    clamp_int(n)
}

/// `free()` and NULL every `CAPS_OPF_PTR` field of the structure at `data`
/// (as filled by `caps_decode`), recursing into embedded structures and
/// arrays. NULL `data` does nothing; aborts if `cs` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_struct_free_pointers(data: *mut c_void, cs: caps_struct_t) {
    if cs.is_null() {
        fatal!("caps_struct_free_pointers", "NULL structure description");
    }
    if !data.is_null() {
        // SAFETY: `cs` describes `data`, whose pointers are malloc'ed or NULL.
        unsafe { decode::free_structure(data.cast(), &*cs, 0) }
    }
}

/// Like `caps_struct_free_pointers` for one field: `data` points to the
/// field (the first element if `label->nary > 1`). NULL `data` does
/// nothing; aborts if `label` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_array_free_pointers(data: *mut c_void, label: caps_label_t) {
    if label.is_null() {
        fatal!("caps_array_free_pointers", "NULL label");
    }
    if !data.is_null() {
        // SAFETY: `label` describes the field at `data`.
        unsafe { decode::free_array(data.cast(), &*label, 0) }
    }
}

/// Point `msg` at `size` bytes at `data`, index 0, no error. Aborts if
/// `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_init_msgbuf(msg: caps_msgbuf_t, data: *mut c_void, size: c_int) {
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_init_msgbuf", msg) };
    m.base = data.cast();
    m.index = 0;
    m.bufsize = size;
    m.error = 0;
}

/// Record error `eno` (if non-zero) and move the index back `undo` bytes
/// (not below 0). Aborts if `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msgbuf_error(msg: caps_msgbuf_t, eno: c_int, undo: c_int) {
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msgbuf_error", msg) };
    if eno != 0 {
        m.error = eno;
    }
    m.index = m.index.saturating_sub(undo.max(0)).max(0);
}

/// The byte at the index (0 past the end); the index always advances.
/// Also a `static inline` in the header. Aborts if `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msgbuf_getc(msg: caps_msgbuf_t) -> u8 {
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msgbuf_getc", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut r = unsafe { reader(m) };
    let c = r.getc();
    m.index = clamp_int(r.index);
    c
}

/// Store `c` at the index if it is inside the buffer; the index always
/// advances. Also a `static inline` in the header. Aborts if `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msgbuf_putc(msg: caps_msgbuf_t, c: u8) {
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msgbuf_putc", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut w = unsafe { writer(m) };
    w.putc(c);
    put_writer(m, w);
}

/// Next token: returns `,`, `{` or `}`, or an upper-case class letter with
/// `*pptr`/`*plen` set to its data (quotes included; may be empty); 0 at
/// the end of the buffer or on a syntax error (`msg->error = EINVAL`,
/// index at the offending byte). `pptr` and `plen` may be NULL. Aborts if
/// `msg` is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msgbuf_getclass(
    msg: caps_msgbuf_t,
    pptr: *mut *mut u8,
    plen: *mut c_int,
) -> u8 {
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msgbuf_getclass", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut r = unsafe { reader(m) };
    let (c, range) = r.getclass();
    put_reader(m, r);
    if !pptr.is_null() {
        // SAFETY: non-NULL out-pointer (contract); the range lies inside
        // the buffer, so the offset stays in it.
        unsafe {
            *pptr = if m.base.is_null() {
                m.base
            } else {
                m.base.add(range.start)
            }
        };
    }
    if !plen.is_null() {
        // SAFETY: non-NULL out-pointer (contract).
        unsafe { *plen = clamp_int(range.len()) };
    }
    c
}

/// Append `Sname{…}` for the structure at `data`. Aborts on NULL arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_encode_structure(
    msg: caps_msgbuf_t,
    data: *mut c_void,
    cs: caps_struct_t,
) {
    if data.is_null() || cs.is_null() {
        fatal!(
            "caps_msg_encode_structure",
            "NULL data or structure description"
        );
    }
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msg_encode_structure", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut w = unsafe { writer(m) };
    // SAFETY: `cs` describes `data` (contract).
    unsafe { encode::structure(&mut w, data.cast(), &*cs, 0) };
    put_writer(m, w);
}

/// Append `Acount{elem,…,}` for the `label->nary` elements starting at
/// `data`. Aborts on NULL arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_encode_array(
    msg: caps_msgbuf_t,
    data: *mut c_void,
    label: caps_label_t,
) {
    if data.is_null() || label.is_null() {
        fatal!("caps_msg_encode_array", "NULL data or label");
    }
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msg_encode_array", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut w = unsafe { writer(m) };
    // SAFETY: `label` describes the array at `data` (contract).
    unsafe { encode::array(&mut w, data.cast(), &*label, 0) };
    put_writer(m, w);
}

/// Append `D` and the scalar at `data` (`D?` and `msg->error = EINVAL` for
/// an unsupported type or size). Aborts on NULL arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_encode_data(
    msg: caps_msgbuf_t,
    data: *mut c_void,
    ty: c_int,
    size: c_int,
) {
    if data.is_null() {
        fatal!("caps_msg_encode_data", "NULL data");
    }
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msg_encode_data", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut w = unsafe { writer(m) };
    // SAFETY: `data` is a field of that type and size (contract).
    unsafe { encode::data(&mut w, data.cast(), ty, size) };
    put_writer(m, w);
}

/// Decode the `{…}` body of a structure into `data`; the caller has
/// already read the `Sname` token with `caps_msgbuf_getclass`. Errors go
/// to `msg->error` (`EINVAL`, index at the offending byte; strings this
/// call allocated are then freed again). Aborts on NULL arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_decode_structure(
    msg: caps_msgbuf_t,
    data: *mut c_void,
    cs: caps_struct_t,
) {
    if data.is_null() || cs.is_null() {
        fatal!(
            "caps_msg_decode_structure",
            "NULL data or structure description"
        );
    }
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msg_decode_structure", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut d = Decoder::new(unsafe { reader(m) });
    // SAFETY: `cs` describes `data` (contract).
    unsafe { d.structure_body(data.cast(), &*cs, 0) };
    put_reader(m, d.finish());
}

/// Decode the `{…}` body of an array into the elements starting at `data`;
/// the caller has read the `Acount` token and passes the count as `nary`.
/// At most `label->nary` elements are stored. Errors as for
/// `caps_msg_decode_structure`. Aborts on NULL arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_decode_array(
    msg: caps_msgbuf_t,
    data: *mut c_void,
    nary: c_int,
    label: caps_label_t,
) {
    if data.is_null() || label.is_null() {
        fatal!("caps_msg_decode_array", "NULL data or label");
    }
    // SAFETY: `msg` is NULL or valid (contract).
    let m = unsafe { msgbuf("caps_msg_decode_array", msg) };
    // SAFETY: `base` is valid for `bufsize` bytes (contract).
    let mut d = Decoder::new(unsafe { reader(m) });
    // SAFETY: `label` describes the array at `data` (contract).
    unsafe { d.array(data.cast(), nary.max(0) as usize, &*label, 0) };
    put_reader(m, d.finish());
}

/// Store the data of one `D` token (`ptr`/`len` as returned by
/// `caps_msgbuf_getclass`) into the field at `data`. Malformed data leaves
/// the field unchanged (this function cannot report errors; `caps_decode`
/// and `caps_msg_decode_structure` do). A `CAPS_OP_STRPTR_T` field gets a
/// `malloc`ed string; its previous value is not freed. Aborts if `data`
/// is NULL, or `ptr` is NULL with `len > 0`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caps_msg_decode_data(
    ptr: *mut c_char,
    len: c_int,
    data: *mut c_void,
    ty: c_int,
    size: c_int,
) {
    if data.is_null() || (ptr.is_null() && len > 0) {
        fatal!("caps_msg_decode_data", "NULL data or token");
    }
    // SAFETY: `ptr` is valid for `len` bytes (contract).
    let tok = unsafe { in_slice(ptr.cast(), len) };
    // SAFETY: `data` is a field of that type and size (contract).
    let _ = unsafe { decode::store(data.cast(), ty, size, tok) };
}

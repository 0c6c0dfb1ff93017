//! The encoder: C structure in memory → text (spec §7.3 grammar).

use core::ffi::{c_char, c_int};

use super::buf::{HEX, Writer};
use super::schema::{self, count, stride};
use crate::abi::{
    CAPS_OP_INT_T, CAPS_OP_OPAQUE_T, CAPS_OP_STRBUF_T, CAPS_OP_STRPTR_T, CAPS_OP_UINT_T,
    caps_label, caps_struct,
};

/// Embedded structures nest at most this deep (guards against a schema that
/// refers to itself).
pub const MAX_DEPTH: u32 = 64;

/// Characters written as themselves inside quotes; all others as `%hh`.
fn is_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'+' | b'-')
}

/// Write `bytes` as a quoted string with `%hh` escapes.
pub fn put_quoted(w: &mut Writer<'_>, bytes: &[u8]) {
    w.putc(b'"');
    for &c in bytes {
        if is_safe(c) {
            w.putc(c);
        } else {
            w.putc(b'%');
            w.putc(HEX[(c >> 4) as usize]);
            w.putc(HEX[(c & 15) as usize]);
        }
    }
    w.putc(b'"');
}

/// `Sname{F1…,F2…}` for the structure at `data`.
///
/// # Safety
/// `cs` is a valid description (terminated label tables, valid names and
/// nested descriptions) and `data` points to a structure it describes.
pub unsafe fn structure(w: &mut Writer<'_>, data: *const u8, cs: &caps_struct, depth: u32) {
    w.putc(b'S');
    // SAFETY: `cs` is valid (contract).
    w.put(unsafe { schema::name(cs) });
    w.putc(b'{');
    if depth >= MAX_DEPTH {
        w.error = libc::EINVAL;
    } else {
        // SAFETY: `cs` is valid (contract).
        for (i, l) in unsafe { schema::labels(cs) }.enumerate() {
            if i > 0 {
                w.putc(b',');
            }
            w.putc(b'F');
            w.put_hex(u64::from(l.fid));
            // SAFETY: the label belongs to `cs`, so the field lies inside
            // the structure at `data`.
            unsafe { field(w, data.add(l.offset as usize), l, depth) };
        }
    }
    w.putc(b'}');
}

/// The value of one field whose storage starts at `ptr`.
///
/// # Safety
/// `ptr` points to the field `l` describes; `l` is valid.
pub unsafe fn field(w: &mut Writer<'_>, ptr: *const u8, l: &caps_label, depth: u32) {
    if l.nary > 1 {
        // SAFETY: passed through (contract).
        unsafe { array(w, ptr, l, depth) }
    } else if !l.csinfo.is_null() {
        // SAFETY: non-NULL `csinfo` of a valid label is a valid description
        // of the structure stored at `ptr`.
        unsafe { structure(w, ptr, &*l.csinfo, depth + 1) }
    } else {
        // SAFETY: passed through (contract).
        unsafe { data(w, ptr, l.type_, l.size) }
    }
}

/// `Acount{elem,elem,…,}`: every element is followed by `,`, which is what
/// the original decoder requires (the original encoder omitted them, so its
/// arrays did not round-trip).
///
/// # Safety
/// `ptr` points to the first of `nary` elements described by `l`.
pub unsafe fn array(w: &mut Writer<'_>, ptr: *const u8, l: &caps_label, depth: u32) {
    let n = count(l);
    w.putc(b'A');
    w.put_hex(n as u64);
    w.putc(b'{');
    let step = stride(l);
    for i in 0..n {
        // SAFETY: element `i` < `nary` lies inside the array (contract).
        let elem = unsafe { ptr.add(i * step) };
        if l.csinfo.is_null() {
            // SAFETY: as above.
            unsafe { data(w, elem, l.type_, l.size) };
        } else {
            // SAFETY: `csinfo` describes each element (contract).
            unsafe { structure(w, elem, &*l.csinfo, depth + 1) };
        }
        w.putc(b',');
    }
    w.putc(b'}');
}

/// Read a `size`-byte integer at `ptr` as signed (`None` for other sizes).
///
/// # Safety
/// `ptr` is valid for reads of `size` bytes.
pub unsafe fn read_signed(ptr: *const u8, size: c_int) -> Option<i64> {
    // SAFETY: size checked per arm; unaligned reads allowed.
    unsafe {
        Some(match size {
            1 => i64::from(ptr.cast::<i8>().read_unaligned()),
            2 => i64::from(ptr.cast::<i16>().read_unaligned()),
            4 => i64::from(ptr.cast::<i32>().read_unaligned()),
            8 => ptr.cast::<i64>().read_unaligned(),
            _ => return None,
        })
    }
}

/// Read a `size`-byte integer at `ptr` as unsigned.
///
/// # Safety
/// `ptr` is valid for reads of `size` bytes.
pub unsafe fn read_unsigned(ptr: *const u8, size: c_int) -> Option<u64> {
    // SAFETY: size checked per arm; unaligned reads allowed.
    unsafe {
        Some(match size {
            1 => u64::from(ptr.read()),
            2 => u64::from(ptr.cast::<u16>().read_unaligned()),
            4 => u64::from(ptr.cast::<u32>().read_unaligned()),
            8 => ptr.cast::<u64>().read_unaligned(),
            _ => return None,
        })
    }
}

/// Length of the NUL-terminated run at `p`, looking at most `max` bytes.
///
/// # Safety
/// `p` is readable up to its NUL or `max` bytes, whichever comes first.
unsafe fn bounded_strlen(p: *const u8, max: usize) -> usize {
    let mut n = 0;
    // SAFETY: we stop at the NUL or at `max` (contract).
    while n < max && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

/// `D` followed by the scalar at `ptr`. An unsupported type or size is
/// written `D?` (as the original did) and sets `w.error = EINVAL`.
///
/// # Safety
/// `ptr` points to a field of the given type and size.
pub unsafe fn data(w: &mut Writer<'_>, ptr: *const u8, ty: c_int, size: c_int) {
    w.putc(b'D');
    let usize_size = size.max(0) as usize;
    match ty {
        // SAFETY: `ptr` is valid for `size` bytes (contract).
        CAPS_OP_INT_T => match unsafe { read_signed(ptr, size) } {
            Some(v) if v < 0 => {
                w.putc(b'-');
                w.put_hex(v.unsigned_abs());
            }
            Some(v) => w.put_hex(v as u64),
            None => unsupported(w),
        },
        // SAFETY: `ptr` is valid for `size` bytes (contract).
        CAPS_OP_UINT_T => match unsafe { read_unsigned(ptr, size) } {
            Some(v) => w.put_hex(v),
            None => unsupported(w),
        },
        CAPS_OP_STRPTR_T => {
            // SAFETY: the field holds a `char *`.
            let s = unsafe { ptr.cast::<*const c_char>().read_unaligned() };
            if !s.is_null() {
                let max = if usize_size == 0 {
                    usize::MAX
                } else {
                    usize_size
                };
                // SAFETY: a non-NULL string field is NUL-terminated.
                let n = unsafe { bounded_strlen(s.cast(), max) };
                // SAFETY: the first `n` bytes were just read.
                put_quoted(w, unsafe { core::slice::from_raw_parts(s.cast(), n) });
            }
        }
        CAPS_OP_STRBUF_T => {
            // SAFETY: the field is a `char[size]`.
            let n = unsafe { bounded_strlen(ptr, usize_size) };
            // SAFETY: the first `n` bytes are inside the field.
            put_quoted(w, unsafe { core::slice::from_raw_parts(ptr, n) });
        }
        CAPS_OP_OPAQUE_T => {
            // SAFETY: the field is `size` bytes.
            put_quoted(w, unsafe { core::slice::from_raw_parts(ptr, usize_size) });
        }
        _ => unsupported(w),
    }
}

fn unsupported(w: &mut Writer<'_>) {
    w.putc(b'?');
    w.error = libc::EINVAL;
}

//! Unit tests of the codec: the spec's example byte for byte, each fixed
//! defect of spec §10.3 (18–21), truncation and error offsets.

use core::ffi::c_char;
use core::mem::offset_of;
use core::ptr::null_mut;

use super::schema::{PASSWD_LABELS, PASSWD_NAME, Shared};
use super::*;
use crate::abi::*;

use super::schema::{END, label as lab};

/// DragonFly's i386 `struct passwd` (4-byte `time_t`).
#[repr(C)]
struct BsdPasswd {
    pw_name: *mut c_char,
    pw_passwd: *mut c_char,
    pw_uid: u32,
    pw_gid: u32,
    pw_change: i32,
    pw_class: *mut c_char,
    pw_gecos: *mut c_char,
    pw_dir: *mut c_char,
    pw_shell: *mut c_char,
    pw_expire: i32,
}

static BSD_LABELS: Shared<[caps_label; 11]> = Shared([
    lab(offset_of!(BsdPasswd, pw_name), CAPS_OP_STRPTR_T, 0, 1),
    lab(offset_of!(BsdPasswd, pw_passwd), CAPS_OP_STRPTR_T, 0, 2),
    lab(offset_of!(BsdPasswd, pw_uid), CAPS_OP_INT_T, 4, 3),
    lab(offset_of!(BsdPasswd, pw_gid), CAPS_OP_INT_T, 4, 4),
    lab(offset_of!(BsdPasswd, pw_change), CAPS_OP_UINT_T, 4, 5),
    lab(offset_of!(BsdPasswd, pw_class), CAPS_OP_STRPTR_T, 0, 6),
    lab(offset_of!(BsdPasswd, pw_gecos), CAPS_OP_STRPTR_T, 0, 7),
    lab(offset_of!(BsdPasswd, pw_dir), CAPS_OP_STRPTR_T, 0, 8),
    lab(offset_of!(BsdPasswd, pw_shell), CAPS_OP_STRPTR_T, 0, 9),
    lab(offset_of!(BsdPasswd, pw_expire), CAPS_OP_UINT_T, 4, 10),
    END,
]);
static BSD_STRUCT: Shared<caps_struct> = Shared(caps_struct {
    name: c"passwd".as_ptr() as *mut c_char,
    labels: BSD_LABELS.0.as_ptr(),
});
static PW_LABELS: Shared<[caps_label; 8]> = Shared(PASSWD_LABELS);
static PW_STRUCT: Shared<caps_struct> = Shared(caps_struct {
    name: PASSWD_NAME.as_ptr() as *mut c_char,
    labels: PW_LABELS.0.as_ptr(),
});

const SPEC_EXAMPLE: &str = r#"Spasswd{F1D"root",F2D"%2a",F3D0,F4D0,F5D0,F6D"",F7D"Charlie%20%26",F8D"/root",F9D"/bin/csh",FaD0}"#;

fn cstr(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: test strings are NUL-terminated.
        Some(
            unsafe { core::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

#[test]
fn spec_example_is_reproduced_exactly() {
    let pw = BsdPasswd {
        pw_name: c"root".as_ptr() as *mut c_char,
        pw_passwd: c"*".as_ptr() as *mut c_char,
        pw_uid: 0,
        pw_gid: 0,
        pw_change: 0,
        pw_class: c"".as_ptr() as *mut c_char,
        pw_gecos: c"Charlie &".as_ptr() as *mut c_char,
        pw_dir: c"/root".as_ptr() as *mut c_char,
        pw_shell: c"/bin/csh".as_ptr() as *mut c_char,
        pw_expire: 0,
    };
    // SAFETY: BSD_STRUCT describes BsdPasswd.
    let out = unsafe { encode_to_vec((&raw const pw).cast(), &BSD_STRUCT.0) };
    assert_eq!(String::from_utf8(out).unwrap(), SPEC_EXAMPLE);
    assert_eq!(SPEC_EXAMPLE.len(), 97);

    // SAFETY: all-zero is a valid BsdPasswd (NULL pointers, zero ints).
    let mut back: BsdPasswd = unsafe { core::mem::zeroed() };
    // SAFETY: BSD_STRUCT describes BsdPasswd.
    let (n, e) = unsafe {
        decode(
            SPEC_EXAMPLE.as_bytes(),
            (&raw mut back).cast(),
            &BSD_STRUCT.0,
        )
    };
    assert_eq!((n, e), (97, 0));
    assert_eq!(cstr(back.pw_passwd).as_deref(), Some("*"));
    assert_eq!(cstr(back.pw_class).as_deref(), Some(""));
    assert_eq!(cstr(back.pw_gecos).as_deref(), Some("Charlie &"));
    // SAFETY: strings were allocated by decode.
    unsafe { decode::free_structure((&raw mut back).cast(), &BSD_STRUCT.0, 0) };
    assert!(back.pw_name.is_null() && back.pw_shell.is_null());
}

#[test]
fn bsd_encoding_decodes_into_glibc_passwd() {
    // SAFETY: all-zero is a valid libc::passwd.
    let mut pw: libc::passwd = unsafe { core::mem::zeroed() };
    // SAFETY: PW_STRUCT describes libc::passwd.
    let (n, e) = unsafe { decode(SPEC_EXAMPLE.as_bytes(), (&raw mut pw).cast(), &PW_STRUCT.0) };
    assert_eq!((n, e), (97, 0));
    assert_eq!(cstr(pw.pw_name).as_deref(), Some("root"));
    assert_eq!(cstr(pw.pw_gecos).as_deref(), Some("Charlie &"));
    assert_eq!(cstr(pw.pw_shell).as_deref(), Some("/bin/csh"));
    // SAFETY: allocated by decode.
    unsafe { decode::free_structure((&raw mut pw).cast(), &PW_STRUCT.0, 0) };
}

/// One field of every integer kind.
#[repr(C)]
#[derive(Default, Debug, PartialEq, Clone, Copy)]
struct Ints {
    a: i8,
    b: i16,
    c: i32,
    d: i64,
    e: u8,
    f: u16,
    g: u32,
    h: u64,
}

static INT_LABELS: Shared<[caps_label; 9]> = Shared([
    lab(offset_of!(Ints, a), CAPS_OP_INT_T, 1, 1),
    lab(offset_of!(Ints, b), CAPS_OP_INT_T, 2, 2),
    lab(offset_of!(Ints, c), CAPS_OP_INT_T, 4, 3),
    lab(offset_of!(Ints, d), CAPS_OP_INT_T, 8, 4),
    lab(offset_of!(Ints, e), CAPS_OP_UINT_T, 1, 5),
    lab(offset_of!(Ints, f), CAPS_OP_UINT_T, 2, 6),
    lab(offset_of!(Ints, g), CAPS_OP_UINT_T, 4, 7),
    lab(offset_of!(Ints, h), CAPS_OP_UINT_T, 8, 8),
    END,
]);
static INT_STRUCT: Shared<caps_struct> = Shared(caps_struct {
    name: c"ints".as_ptr() as *mut c_char,
    labels: INT_LABELS.0.as_ptr(),
});

fn roundtrip_ints(v: Ints) -> (String, Ints) {
    // SAFETY: INT_STRUCT describes Ints.
    let out = unsafe { encode_to_vec((&raw const v).cast(), &INT_STRUCT.0) };
    let mut back = Ints::default();
    // SAFETY: INT_STRUCT describes Ints.
    let (n, e) = unsafe { decode(&out, (&raw mut back).cast(), &INT_STRUCT.0) };
    assert_eq!((n, e), (out.len(), 0), "{}", String::from_utf8_lossy(&out));
    (String::from_utf8(out).unwrap(), back)
}

#[test]
fn negative_integers_of_every_size_roundtrip() {
    let min = Ints {
        a: i8::MIN,
        b: i16::MIN,
        c: i32::MIN,
        d: i64::MIN,
        e: 0,
        f: 0,
        g: 0,
        h: 0,
    };
    let (s, back) = roundtrip_ints(min);
    assert_eq!(back, min);
    assert_eq!(
        s,
        "Sints{F1D-80,F2D-8000,F3D-80000000,F4D-8000000000000000,F5D0,F6D0,F7D0,F8D0}"
    );
    let max = Ints {
        a: i8::MAX,
        b: i16::MAX,
        c: i32::MAX,
        d: i64::MAX,
        e: u8::MAX,
        f: u16::MAX,
        g: u32::MAX,
        h: u64::MAX,
    };
    let (s, back) = roundtrip_ints(max);
    assert_eq!(back, max);
    assert_eq!(
        s,
        "Sints{F1D7f,F2D7fff,F3D7fffffff,F4D7fffffffffffffff,F5Dff,F6Dffff,F7Dffffffff,F8Dffffffffffffffff}"
    );
    let m1 = Ints {
        a: -1,
        b: -1,
        c: -1,
        d: -1,
        e: 1,
        f: 1,
        g: 1,
        h: 1,
    };
    assert_eq!(roundtrip_ints(m1).1, m1);
}

#[test]
fn integers_that_do_not_fit_or_bad_digits_are_errors() {
    for (input, at) in [
        ("Sints{F1D100}", 11),               // 256 in one byte
        ("Sints{F1D-81}", 11),               // -129 in one byte
        ("Sints{F3D12g4}", 11),              // 'g' is in the unquoted run, not a hex digit
        ("Sints{F4D10000000000000000}", 25), // 17th digit overflows 64 bits
        ("Sints{F1D}", 9),
        ("Sints{F1D?}", 9),
        ("Sints{F1D\"1\"}", 9),
    ] {
        let mut v = Ints::default();
        // SAFETY: INT_STRUCT describes Ints.
        let (n, e) = unsafe { decode(input.as_bytes(), (&raw mut v).cast(), &INT_STRUCT.0) };
        assert_eq!((n, e), (at, libc::EINVAL), "{input}");
        assert_eq!(v, Ints::default(), "{input}");
    }
}

#[test]
fn missing_structure_is_enoent() {
    let mut v = Ints::default();
    let input = br#"Sother{F1D1,F2S"x"{F1D2}} Sint{}"#;
    // SAFETY: INT_STRUCT describes Ints.
    let (n, e) = unsafe { decode(input, (&raw mut v).cast(), &INT_STRUCT.0) };
    assert_eq!((n, e), (input.len(), libc::ENOENT));
    // SAFETY: as above.
    let (_, e) = unsafe { decode(b"", (&raw mut v).cast(), &INT_STRUCT.0) };
    assert_eq!(e, libc::ENOENT);
}

#[test]
fn other_structures_before_ours_are_skipped() {
    let mut v = Ints::default();
    let input = b"Sother{F1D1,F2Sints{F1D2}} Sints{F1D5,F9D7,F3D-2}";
    // SAFETY: INT_STRUCT describes Ints.
    let (n, e) = unsafe { decode(input, (&raw mut v).cast(), &INT_STRUCT.0) };
    assert_eq!((n, e), (input.len(), 0));
    assert_eq!((v.a, v.c), (5, -2));
}

#[test]
fn escapes_in_either_case_and_bad_escapes() {
    // SAFETY: all-zero is a valid libc::passwd.
    let mut pw: libc::passwd = unsafe { core::mem::zeroed() };
    let input = br#"Spasswd{F1D"a%2Ab%2ac%FF"}"#;
    // SAFETY: PW_STRUCT describes libc::passwd.
    let (_, e) = unsafe { decode(input, (&raw mut pw).cast(), &PW_STRUCT.0) };
    assert_eq!(e, 0);
    // SAFETY: decoded string, NUL-terminated.
    let name = unsafe { core::ffi::CStr::from_ptr(pw.pw_name) };
    assert_eq!(name.to_bytes(), b"a*b*c\xff");
    // SAFETY: allocated by decode.
    unsafe { decode::free_structure((&raw mut pw).cast(), &PW_STRUCT.0, 0) };

    for (input, at) in [
        (&br#"Spasswd{F1D"a%zz"}"#[..], 13),
        (br#"Spasswd{F1D"a%2"}"#, 13),
        (br#"Spasswd{F1D"a b"}"#, 13),
    ] {
        // SAFETY: all-zero is a valid libc::passwd.
        let mut pw: libc::passwd = unsafe { core::mem::zeroed() };
        // SAFETY: PW_STRUCT describes libc::passwd.
        let (n, e) = unsafe { decode(input, (&raw mut pw).cast(), &PW_STRUCT.0) };
        assert_eq!(
            (n, e),
            (at, libc::EINVAL),
            "{}",
            String::from_utf8_lossy(input)
        );
        assert!(pw.pw_name.is_null());
    }
}

#[test]
fn error_frees_strings_already_decoded() {
    // SAFETY: all-zero is a valid libc::passwd.
    let mut pw: libc::passwd = unsafe { core::mem::zeroed() };
    let input = br#"Spasswd{F1D"root",F1D"again",F7D"x",F3Dq}"#;
    // SAFETY: PW_STRUCT describes libc::passwd.
    let (n, e) = unsafe { decode(input, (&raw mut pw).cast(), &PW_STRUCT.0) };
    assert_eq!((n, e), (input.len() - 2, libc::EINVAL));
    assert!(pw.pw_name.is_null() && pw.pw_gecos.is_null());
}

#[test]
fn unsupported_types_encode_as_question_mark_and_fail_to_decode() {
    #[repr(C)]
    struct Odd {
        x: [u8; 3],
    }
    static ODD_LABELS: Shared<[caps_label; 2]> = Shared([lab(0, CAPS_OP_INT_T, 3, 1), END]);
    static ODD: Shared<caps_struct> = Shared(caps_struct {
        name: c"odd".as_ptr() as *mut c_char,
        labels: ODD_LABELS.0.as_ptr(),
    });
    let mut v = Odd { x: [1, 2, 3] };
    let mut out = [0u8; 64];
    // SAFETY: ODD describes Odd.
    let (n, e) = unsafe { encode(&mut out, (&raw const v).cast(), &ODD.0) };
    assert_eq!((&out[..n], e), (&b"Sodd{F1D?}"[..], libc::EINVAL));
    // SAFETY: as above.
    let (at, e) = unsafe { decode(&out[..n], (&raw mut v).cast(), &ODD.0) };
    assert_eq!((at, e), (8, libc::EINVAL));
    assert_eq!(v.x, [1, 2, 3]);
}

/// Arrays: of integers, of strings, of structures.
#[repr(C)]
struct Arr {
    n: [i16; 4],
    s: [*mut c_char; 3],
    inner: [Ints; 2],
}

static ARR_LABELS: Shared<[caps_label; 4]> = Shared([
    caps_label {
        nary: 4,
        ..lab(offset_of!(Arr, n), CAPS_OP_INT_T, 2, 1)
    },
    caps_label {
        nary: 3,
        ..lab(offset_of!(Arr, s), CAPS_OP_STRPTR_T, 0, 2)
    },
    caps_label {
        nary: 2,
        csinfo: &INT_STRUCT.0,
        ..lab(offset_of!(Arr, inner), 0, core::mem::size_of::<Ints>(), 3)
    },
    END,
]);
static ARR: Shared<caps_struct> = Shared(caps_struct {
    name: c"arr".as_ptr() as *mut c_char,
    labels: ARR_LABELS.0.as_ptr(),
});

#[test]
fn arrays_roundtrip_and_the_original_form_decodes() {
    let i0 = Ints {
        a: -3,
        h: 9,
        ..Ints::default()
    };
    let v = Arr {
        n: [1, -2, i16::MIN, 4],
        s: [
            c"a b".as_ptr() as *mut c_char,
            null_mut(),
            c"".as_ptr() as *mut c_char,
        ],
        inner: [i0, Ints::default()],
    };
    // SAFETY: ARR describes Arr.
    let out = unsafe { encode_to_vec((&raw const v).cast(), &ARR.0) };
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.starts_with(r#"Sarr{F1A4{D1,D-2,D-8000,D4,},F2A3{D"a%20b",D,D"",},F3A2{Sints{F1D-3,"#),
        "{text}"
    );
    // SAFETY: all-zero is a valid Arr.
    let mut back: Arr = unsafe { core::mem::zeroed() };
    // SAFETY: ARR describes Arr.
    let (n, e) = unsafe { decode(&out, (&raw mut back).cast(), &ARR.0) };
    assert_eq!((n, e), (out.len(), 0));
    assert_eq!(back.n, v.n);
    assert_eq!(cstr(back.s[0]).as_deref(), Some("a b"));
    assert!(back.s[1].is_null());
    assert_eq!(cstr(back.s[2]).as_deref(), Some(""));
    assert_eq!(back.inner, v.inner);
    // SAFETY: allocated by decode.
    unsafe { decode::free_structure((&raw mut back).cast(), &ARR.0, 0) };
    assert!(back.s[0].is_null());

    // The original encoder wrote no separators; extra elements are dropped.
    // SAFETY: all-zero is a valid Arr.
    let mut old: Arr = unsafe { core::mem::zeroed() };
    let input = b"Sarr{F1A6{D5D6D7D8D9Da}}";
    // SAFETY: ARR describes Arr.
    let (n, e) = unsafe { decode(input, (&raw mut old).cast(), &ARR.0) };
    assert_eq!((n, e), (input.len(), 0));
    assert_eq!(old.n, [5, 6, 7, 8]);
}

#[test]
fn encode_never_writes_past_the_buffer_and_counts_everything() {
    let v = Ints {
        a: -1,
        d: i64::MIN,
        h: u64::MAX,
        ..Ints::default()
    };
    // SAFETY: INT_STRUCT describes Ints.
    let full = unsafe { encode_to_vec((&raw const v).cast(), &INT_STRUCT.0) };
    for cap in 0..full.len() + 3 {
        let mut buf = vec![0xa5u8; cap + 8];
        // SAFETY: INT_STRUCT describes Ints.
        let (n, _) = unsafe { encode(&mut buf[..cap], (&raw const v).cast(), &INT_STRUCT.0) };
        assert_eq!(n, full.len());
        let stored = cap.min(n);
        assert_eq!(&buf[..stored], &full[..stored]);
        if cap > n {
            assert_eq!(buf[n], 0, "NUL after a complete encoding");
        }
        assert!(buf[cap..].iter().all(|&b| b == 0xa5), "wrote past {cap}");
    }
}

#[test]
fn tokenizer_classes_and_errors() {
    let mut r = buf::Reader::new(b" Spasswd {\tF1D\"a%20\" ,}x");
    let mut seen = Vec::new();
    loop {
        let (c, range) = r.getclass();
        if c == 0 {
            break;
        }
        seen.push((
            c as char,
            String::from_utf8_lossy(&r.buf[range]).into_owned(),
        ));
    }
    let want: Vec<(char, String)> = [
        ('S', "passwd"),
        ('{', ""),
        ('F', "1"),
        ('D', "\"a%20\""),
        (',', ""),
        ('}', ""),
    ]
    .iter()
    .map(|&(c, s)| (c, s.to_string()))
    .collect();
    assert_eq!(seen, want);
    assert_eq!((r.error, r.index), (libc::EINVAL, 23));
}

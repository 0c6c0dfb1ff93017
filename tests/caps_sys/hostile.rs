//! Raw sockets that break the protocol and nodes planted by others.

use super::*;

/// The 16-byte hello (see docs/wire-protocol.md).
fn raw_hello(version: u16, flags: u32) -> Vec<u8> {
    let mut b = b"CAPS".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&131072u32.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b
}

/// A 48-byte frame header of `kind` with `body_len` and `id`.
fn raw_frame(kind: u16, body_len: u32, id: u64) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0..2].copy_from_slice(&kind.to_le_bytes());
    b[4..8].copy_from_slice(&body_len.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    b[16..20].copy_from_slice(&body_len.to_le_bytes());
    b
}

#[test]
fn protocol_violations_cost_only_that_connection() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    setup();
    let (uid, gid) = me();
    let s = Svc::start("proto", CAPF_WORLD, Some(b"fine"));
    let sock = PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap())
        .join("sys")
        .join(format!("proto,{uid},{gid}"));
    let bad: Vec<Vec<u8>> = vec![
        b"GARBAGE!GARBAGE!".to_vec(),
        raw_hello(1, 4),
        [raw_hello(2, 4), raw_frame(9, 0, 1)].concat(),
        [raw_hello(2, 4), raw_frame(3, 0, 77)].concat(),
        [raw_hello(2, 4), raw_frame(1, 200_000, 1)].concat(),
        [raw_hello(2, 4), raw_frame(2, 0, 1)].concat(),
    ];
    for bytes in &bad {
        let mut st = UnixStream::connect(&sock).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        st.write_all(bytes).unwrap();
        // The service answers the hello (or refuses it), then drops the
        // connection: reading ends, it does not hang.
        let mut sink = Vec::new();
        let _ = st.read_to_end(&mut sink);
    }
    // Too many requests in flight from one connection.
    let mut st = UnixStream::connect(&sock).unwrap();
    st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut flood = raw_hello(2, 4);
    for i in 0..200u64 {
        flood.extend_from_slice(&raw_frame(1, 0, i + 1));
    }
    st.write_all(&flood).unwrap();
    let mut sink = Vec::new();
    let _ = st.read_to_end(&mut sink);
    // Everyone else is still served.
    let c = client("proto", uid, gid, CAPF_WORLD).unwrap();
    let id = put(c, b"ok?").unwrap();
    let m = wait(c);
    assert_eq!((m.id, &m.data[..]), (id, &b"fine"[..]));
    close(c).unwrap();
    drop(s);
}

/// A node whose listener may not claim the node's keys (anyone can create
/// a socket in the world-writable `sys` directory) is skipped: a client
/// asking for root's service does not reach another user's.
#[test]
fn planted_node_with_keys_its_listener_may_not_claim_is_skipped() {
    setup();
    if me().0 != 0 {
        eprintln!("skipped: needs root to become another user");
        return;
    }
    // `BASE/sys` made by root, as `make install` does.
    let first = service("plant.root", ANY, ANY, CAPF_WORLD).unwrap();
    close(first).unwrap();
    let sys = PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("sys");
    let child = forked(|ready| {
        // SAFETY: plain calls in the single-threaded child.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 10;
            }
        }
        if service("plant", 65534, 65534, CAPF_WORLD).is_err() {
            return 11;
        }
        let from = sys.join("plant,65534,65534");
        if std::fs::rename(&from, sys.join("plant,0,0")).is_err() {
            return 12;
        }
        ready();
        0
    });
    let got = child.ready();
    let asked = [
        client("plant", 0, 0, CAPF_ANYCLIENT),
        client("plant", ANY, ANY, CAPF_ANYCLIENT),
        client("plant", 0, ANY, CAPF_ANYCLIENT),
    ];
    let code = child.finish();
    assert!(got, "child ended early: {code:?}");
    assert_eq!(asked, [Err(libc::ENOENT); 3]);
    assert_eq!(code, Ok(0));
}

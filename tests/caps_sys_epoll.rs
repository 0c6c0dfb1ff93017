//! A v2 service reads only the connections that may have something (its
//! epoll set, `src/caps/sys/watch.rs`): what it has read into a
//! connection's buffer and not yet handed on is seen by no poll, so a
//! connection whose turn stopped early must be read again without one.
//! Raw sockets play the peers.

use caps::abi::{CAPF_ANYCLIENT, CAPMS_REQUEST};
use caps::capi::caps::caps_sys_close;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::mpsc::channel;
use std::time::Duration;

mod v2calls;
use v2calls::{me, open, recv_into};

/// Frame kinds and sizes (docs/wire-protocol.md).
const REQUEST: u16 = 1;
const PING: u16 = 5;
const HEADER: usize = 48;
/// What a test waits for the service at most (a failure, not a
/// measurement).
const PATIENCE: Duration = Duration::from_secs(20);

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let d = std::env::temp_dir().join(format!("lcsysepoll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // SAFETY: called once, before any thread reads the environment
        // through the library (every test calls setup() first).
        unsafe { std::env::set_var("LIBCAPS_DIR", &d) };
    });
}

/// A frame header of `kind` with `id` and a payload of `len` bytes (a
/// request's capacity is its length).
fn header(kind: u16, id: u64, len: u32) -> [u8; HEADER] {
    let mut b = [0u8; HEADER];
    b[0..2].copy_from_slice(&kind.to_le_bytes());
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    if kind == REQUEST {
        b[16..20].copy_from_slice(&len.to_le_bytes());
    }
    b
}

/// A raw client of service `name` (any client admitted) past its hello
/// (on the socket: no shared memory offered), the server's hello and
/// generation read.
fn raw_client(name: &str) -> UnixStream {
    let (uid, gid) = me();
    let dir = PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("sys");
    let mut s = UnixStream::connect(dir.join(format!("{name},{uid},{gid}"))).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut hello = b"CAPS".to_vec();
    hello.extend_from_slice(&2u16.to_le_bytes());
    hello.extend_from_slice(&1u16.to_le_bytes());
    hello.extend_from_slice(&131072u32.to_le_bytes());
    hello.extend_from_slice(&(CAPF_ANYCLIENT as u32).to_le_bytes());
    s.write_all(&hello).unwrap();
    let mut answer = [0u8; 16 + HEADER];
    s.read_exact(&mut answer).expect("the server's hello");
    assert_eq!(&answer[12..16], &[0; 4], "admitted");
    s
}

/// More pings than one turn answers, then a request, in one write: the
/// service reads them into its buffer at once, stops after a turn's
/// worth of answers, and reads on at its next turn, though no poll tells
/// it of what waits in the buffer: the wait returns the request. (A
/// client pinging as fast as it read the answers kept the service on its
/// connection: it answered all of them first.)
#[test]
fn a_request_behind_many_pings_is_read() {
    setup();
    let sid = open("pings", true);
    // The service's wait answers the hello, then takes the request.
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let got = recv_into(sid, &mut buf, true);
        tx.send(got.map(|(n, _, state)| (state, buf[..n].to_vec())))
            .unwrap();
    });
    let mut c = raw_client("pings");
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(&header(PING, i, 0));
    }
    burst.extend_from_slice(&header(REQUEST, 1, 2));
    burst.extend_from_slice(b"hi");
    c.write_all(&burst).unwrap();
    let got = rx
        .recv_timeout(PATIENCE)
        .expect("the request behind the pings was never read");
    assert_eq!(got, Ok((CAPMS_REQUEST, b"hi".to_vec())));
    // Every ping was answered, in order.
    for i in 0..200u64 {
        let mut h = [0u8; HEADER];
        c.read_exact(&mut h).expect("a ping's answer");
        assert_eq!(u16::from_le_bytes([h[0], h[1]]), PING);
        assert_eq!(u64::from_le_bytes(h[8..16].try_into().unwrap()), i);
    }
    // SAFETY: a plain call.
    unsafe { assert_eq!(caps_sys_close(sid), 0) };
}

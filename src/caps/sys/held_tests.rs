//! A v2 service never sleeps while frames it read from a socket wait in
//! a connection's buffer: no poll or doorbell tells it about those. Here
//! a client's pings fill the service's output until the connection is
//! held back (`conn::Connection::answers_pending`) with a request read
//! into its buffer behind them; once the client reads the answers, the
//! waiting service must take the request.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::time::Duration;

use super::tests::rendezvous_dir;
use super::*;
use crate::abi::{CAPF_ANYCLIENT, CAPF_WORLD, CAPMS_REQUEST};
use crate::caps::wire::{FrameKind, HEADER_LEN, HELLO_LEN, Header, Hello, HelloKind, VERSION_SYS};

/// Service `sid`'s one connection: its unwritten output, and whether it
/// may be read.
fn link_state(sid: i32) -> (usize, bool) {
    let mut t = lock();
    match &t.get(sid).unwrap().kind {
        Kind::Service(s) => {
            let c = s.conns.values().next().expect("no connection");
            (c.link.tx.queued(), s.core.may_read(&c.link))
        }
        _ => unreachable!(),
    }
}

fn pings(n: usize) -> Vec<u8> {
    (0..n as u64)
        .flat_map(|i| Header::new(FrameKind::Ping, i + 1, 0).encode())
        .collect()
}

#[test]
fn a_wait_takes_a_request_buffered_behind_held_back_answers() {
    let dir = rendezvous_dir();
    let sid = service(b"heldbehind", u32::MAX, u32::MAX, CAPF_ANYCLIENT).unwrap();
    let node = std::fs::read_dir(dir.join("sys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("heldbehind"))
        .unwrap();
    let mut peer = UnixStream::connect(&node).unwrap();
    let hello = Hello {
        version: VERSION_SYS,
        kind: HelloKind::Client,
        max_msgsize: 4096,
        status: CAPF_WORLD as u32,
    };
    peer.write_all(&hello.encode()).unwrap();
    let mut buf = [0u8; 64];
    // Small batches of pings, their answers never read, until the
    // socket to the client is full and at least two answers wait in the
    // service's output (far below the 64 KB that hold it back).
    let mut sent = 0;
    loop {
        peer.write_all(&pings(64)).unwrap();
        sent += 64;
        assert_eq!(get(sid, &mut buf, None, false), Err(Errno::EAGAIN));
        let (queued, may_read) = link_state(sid);
        assert!(may_read, "held back early, {queued} bytes queued");
        if queued >= 2 * HEADER_LEN {
            break;
        }
        assert!(sent < 100_000, "the socket never filled");
    }
    // One read's worth (64 KB): pings whose answers reach the hold-back
    // mark, and a request behind them, all read into the buffer at once.
    let last = 1364;
    let mut batch = pings(last);
    let request = Header {
        capacity: 8,
        ..Header::new(FrameKind::Request, 1, 8)
    };
    batch.extend_from_slice(&request.encode());
    batch.extend_from_slice(&[7; 8]);
    assert!(batch.len() <= 64 * 1024);
    peer.write_all(&batch).unwrap();
    sent += last;
    assert_eq!(get(sid, &mut buf, None, false), Err(Errno::EAGAIN));
    assert!(!link_state(sid).1, "not held back");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = tx.send(get(sid, &mut buf, None, true));
    });
    // Read every answer (those of the pings still in the buffer come
    // once it is read): the connection may be read again.
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut want = HELLO_LEN + HEADER_LEN + sent * HEADER_LEN;
        let mut sink = vec![0u8; 64 * 1024];
        while want > 0 {
            match peer.read(&mut sink[..want.min(64 * 1024)]) {
                Ok(n) if n > 0 => want -= n,
                _ => break,
            }
        }
        want
    });
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the service sleeps with a request in its buffer");
    let g = got.unwrap();
    assert_eq!((g.state, g.size), (CAPMS_REQUEST, 8));
    assert_eq!(reader.join().unwrap(), 0, "answers missing");
    close(sid).unwrap();
}

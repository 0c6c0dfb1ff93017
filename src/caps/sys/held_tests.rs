//! A v2 service never sleeps while frames it read from a socket wait in
//! a connection's buffer: no poll or doorbell tells it about those. Here
//! a client's pings fill the service's output until the connection is
//! held back (`conn::Connection::answers_pending`) with a request read
//! into its buffer behind them; once the client reads the answers, the
//! waiting service must take the request. And a connection held back by
//! the budget is read again when another's output, written during a
//! pump, frees it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::time::Duration;

use super::tests::rendezvous_dir;
use super::*;
use crate::abi::{CAPF_ANYCLIENT, CAPF_WORLD, CAPMS_REQUEST};
use crate::caps::wire::{FrameKind, HEADER_LEN, HELLO_LEN, Header, Hello, HelloKind, VERSION_SYS};

fn pings(n: usize) -> Vec<u8> {
    (0..n as u64)
        .flat_map(|i| Header::new(FrameKind::Ping, i + 1, 0).encode())
        .collect()
}

/// Small batches of pings to service `sid`'s connection `k` from its
/// client `peer`, their answers never read, until `least` bytes of
/// answers wait in the service's output (far below the 64 KB that hold
/// it back). Returns the pings sent.
fn fill_output(sid: i32, k: u64, peer: &mut UnixStream, least: usize) -> usize {
    let mut buf = [0u8; 64];
    let mut sent = 0;
    loop {
        peer.write_all(&pings(64)).unwrap();
        sent += 64;
        assert_eq!(get(sid, &mut buf, None, false), Err(Errno::EAGAIN));
        let (queued, may_read) = conn_state(sid, k);
        assert!(may_read, "held back early, {queued} bytes queued");
        if queued >= least {
            return sent;
        }
        assert!(sent < 100_000, "the socket never filled");
    }
}

#[test]
fn a_wait_takes_a_request_buffered_behind_held_back_answers() {
    let _dir = rendezvous_dir();
    let sid = service(b"heldbehind", u32::MAX, u32::MAX, CAPF_ANYCLIENT).unwrap();
    let mut peer = raw_client("heldbehind");
    let mut buf = [0u8; 64];
    // Until the socket to the client is full and at least two answers
    // wait in the service's output.
    let mut sent = fill_output(sid, 1, &mut peer, 2 * HEADER_LEN);
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
    assert!(!conn_state(sid, 1).1, "not held back");
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

/// A raw v2 client of service `name` (no shared memory, no coalesced
/// disposes), its hello sent.
fn raw_client(name: &str) -> UnixStream {
    let node = std::fs::read_dir(rendezvous_dir().join("sys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(name))
        .unwrap();
    let mut s = UnixStream::connect(&node).unwrap();
    let hello = Hello {
        version: VERSION_SYS,
        kind: HelloKind::Client,
        max_msgsize: 4096,
        status: CAPF_WORLD as u32,
    };
    s.write_all(&hello.encode()).unwrap();
    s
}

/// Service `sid`'s connection `k`: its unwritten output, and whether it
/// may be read.
fn conn_state(sid: i32, k: u64) -> (usize, bool) {
    let mut t = lock();
    let Kind::Service(s) = &t.get(sid).unwrap().kind else {
        unreachable!()
    };
    let c = &s.conns[&k];
    (c.link.tx.queued(), s.core.may_read(&c.link))
}

/// Connection B's unwritten output (made as big as the service's whole
/// budget) holds connection A back. B's client reads it: a pump writes
/// it, and the budget is free again during that pump's walk, after A
/// was looked at. No poll says that A may be read (its input is not
/// watched while it is held back), so the waiting service must read it
/// before it sleeps.
#[test]
fn a_wait_reads_a_connection_whose_budget_another_freed() {
    let _dir = rendezvous_dir();
    let sid = service(b"budgetfreed", u32::MAX, u32::MAX, CAPF_ANYCLIENT).unwrap();
    // A, then B: A comes first in a pump's walk.
    let mut a = raw_client("budgetfreed");
    let mut b = raw_client("budgetfreed");
    let (ka, kb) = (1, 2);
    let mut buf = [0u8; 64];
    // Until some of B's answers wait in its output.
    let sent = fill_output(sid, kb, &mut b, 1);
    // The rest of B's output, as far as the budget knows (its next
    // accounting after a write counts what is really left).
    {
        let mut t = lock();
        let Kind::Service(s) = &mut t.get(sid).unwrap().kind else {
            unreachable!()
        };
        let s = &mut **s;
        let c = s.conns.get_mut(&kb).unwrap();
        s.core.account(&mut c.link, crate::caps::conn::BUDGET_TOTAL);
    }
    let request = Header {
        capacity: 8,
        ..Header::new(FrameKind::Request, 1, 8)
    };
    a.write_all(&[&request.encode()[..], &[7; 8]].concat())
        .unwrap();
    assert_eq!(get(sid, &mut buf, None, false), Err(Errno::EAGAIN));
    assert!(!conn_state(sid, ka).1, "A not held back");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = tx.send(get(sid, &mut buf, None, true));
    });
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut want = HELLO_LEN + HEADER_LEN + sent * HEADER_LEN;
    let mut sink = vec![0u8; 64 * 1024];
    while want > 0 {
        let n = b.read(&mut sink[..want.min(64 * 1024)]).unwrap();
        assert!(n > 0, "the service hung up");
        want -= n;
    }
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the service sleeps with a connection it may read");
    let g = got.unwrap();
    assert_eq!((g.state, g.size), (CAPMS_REQUEST, 8));
    close(sid).unwrap();
}

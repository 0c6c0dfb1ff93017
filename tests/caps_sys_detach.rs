//! CAPS v2 and the detach record (docs/wire-protocol.md, "Quiet
//! connections"): a client that only polls with `caps_sys_get` still
//! gets the replies its service sends on the socket after it detached a
//! quiet connection's region.

use caps::abi::{CAPMS_REPLY, CAPMS_REQUEST};
use caps::capi::caps::{caps_sys_close, caps_sys_put, caps_sys_reply};
use std::time::{Duration, Instant};

mod v2calls;
use v2calls::{errno, open, recv};

fn put(id: i32) -> i64 {
    // SAFETY: a readable 1-byte buffer.
    let r = unsafe { caps_sys_put(id, c"q".as_ptr() as *mut _, 1) };
    assert!(r >= 0, "put: errno {}", errno());
    r
}

/// Quiet for 3.5 s (the service's sweep, every second while it waits,
/// detaches the region after two), then a request whose reply comes on
/// the socket: a client that polls with `caps_sys_get` sees it.
#[test]
fn a_polling_client_gets_its_reply_after_a_detach() {
    let d = std::env::temp_dir().join(format!("lcsysdetach-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    // SAFETY: before any thread reads the environment through the library.
    unsafe {
        std::env::set_var("LIBCAPS_DIR", &d);
        std::env::set_var("LIBCAPS_SHM", "1");
    }
    let sid = open("detachpoll", true);
    std::thread::spawn(move || {
        while let Ok((id, state)) = recv(sid, true) {
            if state == CAPMS_REQUEST {
                // SAFETY: a readable 1-byte buffer.
                unsafe { caps_sys_reply(sid, c"r".as_ptr() as *mut _, 1, id) };
            }
        }
    });
    let c = open("detachpoll", false);
    for _ in 0..3 {
        let id = put(c);
        assert_eq!(recv(c, true), Ok((id, CAPMS_REPLY)));
    }
    std::thread::sleep(Duration::from_millis(3500));
    let id = put(c);
    let until = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match recv(c, false) {
            Err(libc::EAGAIN) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(1))
            }
            other => break other,
        }
    };
    assert_eq!(
        got,
        Ok((id, CAPMS_REPLY)),
        "caps_sys_get never saw the reply"
    );
    // SAFETY: a plain call.
    unsafe { caps_sys_close(c) };
}

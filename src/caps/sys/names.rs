//! v2 service names and their socket nodes `BASE/sys/NAME,UID,GID`,
//! and the order a lookup tries matching nodes in.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::abi::CAPS_MAXNAMELEN;
use crate::caps::errno::Errno;

/// Check a service name: at most `CAPS_MAXNAMELEN - 1` bytes
/// (`ENAMETOOLONG`), not empty, only `[0-9A-Za-z_.]` (`EINVAL`).
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() >= CAPS_MAXNAMELEN as usize {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty()
        || !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// -1 (`u32::MAX`) means "not registered for this search key".
pub(super) fn key(id: u32) -> Option<u32> {
    (id != u32::MAX).then_some(id)
}

fn key_text(id: Option<u32>) -> String {
    id.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The socket node name of service `(name, uid, gid)`.
pub(super) fn node_name(name: &[u8], uid: Option<u32>, gid: Option<u32>) -> String {
    format!(
        "{},{},{}",
        String::from_utf8_lossy(name),
        key_text(uid),
        key_text(gid)
    )
}

/// Parse a node name back: `(name, uid, gid)` (`None` for a `-` key).
pub(in crate::caps) fn parse_node(file: &[u8]) -> Option<(&[u8], Option<u32>, Option<u32>)> {
    let mut it = file.rsplitn(3, |&c| c == b',');
    let gid = it.next()?;
    let uid = it.next()?;
    let name = it.next()?;
    let num = |b: &[u8]| -> Option<Option<u32>> {
        if b == b"-" {
            return Some(None);
        }
        std::str::from_utf8(b).ok()?.parse::<u32>().ok().map(Some)
    };
    Some((name, num(uid)?, num(gid)?))
}

/// Nodes in `dir` of services matching `(name, uid, gid)`, where a -1
/// `uid`/`gid` is a wildcard, in the order a lookup tries them: those
/// registered for the caller's own uid first, then root's, then the
/// others; the most recently published first within each group.
pub(super) fn matching_nodes(dir: &Path, name: &[u8], uid: u32, gid: u32) -> Vec<Node> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, Node)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let f = e.file_name();
            let (n, u, g) = parse_node(f.as_bytes())?;
            let keys_match = n == name
                && (uid == u32::MAX || u == Some(uid))
                && (gid == u32::MAX || g == Some(gid));
            if !keys_match {
                return None;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            Some((
                t,
                Node {
                    path: e.path(),
                    uid: u,
                    gid: g,
                },
            ))
        })
        .collect();
    // SAFETY: plain id query.
    let me = unsafe { libc::geteuid() };
    let rank = |n: &Node| match n.uid {
        Some(u) if u == me => 0,
        Some(0) => 1,
        _ => 2,
    };
    found.sort_by_key(|f| (rank(&f.1), std::cmp::Reverse(f.0)));
    found.into_iter().map(|(_, n)| n).collect()
}

/// A service node found by [`matching_nodes`], with the keys it claims.
pub(super) struct Node {
    pub(super) path: PathBuf,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name(b""), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a/b"), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a,b"), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a b"), Err(Errno::EINVAL));
        assert!(check_name(b"Test_1.x").is_ok());
        assert!(check_name(b"..").is_ok());
        assert!(check_name(&[b'a'; 63]).is_ok());
        assert_eq!(check_name(&[b'a'; 64]), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn node_names_round_trip() {
        let n = node_name(b"test", Some(1000), None);
        assert_eq!(n, "test,1000,-");
        assert_eq!(
            parse_node(n.as_bytes()),
            Some((&b"test"[..], Some(1000), None))
        );
        assert_eq!(parse_node(b"a.b,-,0"), Some((&b"a.b"[..], None, Some(0))));
        assert_eq!(parse_node(b".caps.12.3"), None);
        assert_eq!(parse_node(b"x,1,y"), None);
        assert_eq!(parse_node(b"svc"), None);
        // the keys are the last two fields
        assert_eq!(
            parse_node(b"a,b,1000,-"),
            Some((&b"a,b"[..], Some(1000), None))
        );
    }
}

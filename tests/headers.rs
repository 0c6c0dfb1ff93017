//! The committed cbindgen output (`include/libcaps/gen/`) must be exactly
//! what build.rs generates from the current Rust sources. Refresh it with
//! `make headers`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".h"))
        .collect()
}

#[test]
fn generated_headers_match_committed() {
    let fresh = Path::new(env!("OUT_DIR")).join("gen");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/libcaps/gen");
    let (f, c) = (names(&fresh), names(&committed));
    assert!(!f.is_empty(), "build.rs generated no headers");
    assert_eq!(
        f, c,
        "generated and committed header sets differ: run `make headers`"
    );
    for name in &f {
        let a = fs::read_to_string(fresh.join(name)).unwrap();
        let b = fs::read_to_string(committed.join(name)).unwrap();
        if a != b {
            let line = a
                .lines()
                .zip(b.lines())
                .position(|(x, y)| x != y)
                .unwrap_or(0)
                + 1;
            panic!(
                "include/libcaps/gen/{name} is stale (first difference at line {line}): run `make headers`"
            );
        }
    }
}

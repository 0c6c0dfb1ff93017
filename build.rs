//! Build script: generates the struct and prototype part of each public C
//! header with cbindgen, and gives the shared library its SONAME.
//!
//! Generated headers go to `$OUT_DIR/gen/`. The committed copies live in
//! `include/libcaps/gen/`; `tests/headers.rs` fails when they drift, and
//! `make headers` (which sets `LIBCAPS_UPDATE_HEADERS=1`) refreshes them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// One generated header: its name under `gen/`, the Rust files it is made
/// from, the headers it includes, and the functions the hand-written part
/// provides as `static inline` (so they must not be declared twice).
struct GenHeader {
    name: &'static str,
    sources: &'static [&'static str],
    includes: &'static [&'static str],
    inline_fns: &'static [&'static str],
}

const HEADERS: &[GenHeader] = &[
    GenHeader {
        name: "msgport",
        sources: &["src/abi/msgport.rs", "src/capi/msgport.rs"],
        includes: &["sys/types.h", "stdint.h"],
        inline_fns: &[
            "lwkt_initmsg",
            "lwkt_reinitmsg",
            "lwkt_beginmsg",
            "lwkt_forwardmsg",
            "lwkt_waitmsg",
            "lwkt_abortmsg",
            "lwkt_replymsg",
        ],
    },
    GenHeader {
        name: "slaballoc",
        sources: &["src/abi/slaballoc.rs", "src/capi/slaballoc.rs"],
        includes: &["sys/types.h", "stdint.h"],
        inline_fns: &[],
    },
];

/// Types a generated header must declare although no function of it uses
/// them (cbindgen only emits what the prototypes reach), by header name.
const EXTRA_EXPORTS: &[(&str, &[&str])] = &[(
    "slaballoc",
    &["SLChunk", "SLZone", "SLGlobalData", "SLOversized"],
)];

/// C struct/union tags referenced by the Rust types but defined in another
/// header: cbindgen must spell them with their tag.
const FOREIGN_TAGS: &[(&str, &str)] = &[
    ("thread", "struct thread"),
    ("globaldata", "struct globaldata"),
];

fn main() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcaps.so.{major}");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LIBCAPS_UPDATE_HEADERS");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("gen");
    fs::create_dir_all(&out).unwrap();
    let update = env::var_os("LIBCAPS_UPDATE_HEADERS").is_some();

    for h in HEADERS {
        let text = generate(&root, h);
        fs::write(out.join(format!("{}.h", h.name)), &text).unwrap();
        if update {
            let dst = root
                .join("include/libcaps/gen")
                .join(format!("{}.h", h.name));
            fs::write(dst, &text).unwrap();
        }
    }
}

fn generate(root: &Path, h: &GenHeader) -> String {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    config.include_guard = Some(format!("_LIBCAPS_GEN_{}_H_", h.name.to_uppercase()));
    config.sys_includes = h.includes.iter().map(|s| s.to_string()).collect();
    config
        .export
        .exclude
        .extend(h.inline_fns.iter().map(|s| s.to_string()));
    for (name, items) in EXTRA_EXPORTS {
        if *name == h.name {
            config
                .export
                .include
                .extend(items.iter().map(|s| s.to_string()));
        }
    }
    for (rust, c) in FOREIGN_TAGS {
        config.export.rename.insert(rust.to_string(), c.to_string());
    }
    let mut builder = cbindgen::Builder::new().with_config(config);
    for src in h.sources {
        println!("cargo:rerun-if-changed={src}");
        builder = builder.with_src(root.join(src));
    }
    let mut buf = Vec::new();
    builder.generate().expect("cbindgen failed").write(&mut buf);
    String::from_utf8(buf).unwrap()
}

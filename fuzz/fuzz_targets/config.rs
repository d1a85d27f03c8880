//! `samlgate::config::load` on an arbitrary file: errors are fine, panics are not.
//!
//! Paths are resolved from the repository root (the complete seed names the
//! test-only fixtures there). Inputs naming a device, FIFO, directory or a large file
//! (`/dev/zero`, `/dev/stdin`, …) are skipped: reading what the configuration names
//! is the point of a configuration, and the operator chooses it.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

struct Scratch {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

static SCRATCH: LazyLock<Scratch> = LazyLock::new(|| {
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).unwrap();
    // In memory where there is a tmpfs: a disk write per input is most of the time.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let file = dir.path().join("samlgate.toml");
    Scratch { _dir: dir, file }
});

fn names_a_special_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => {
            let path = Path::new(s);
            let pseudo = std::fs::canonicalize(path).is_ok_and(|p| {
                ["/dev", "/proc", "/sys"]
                    .iter()
                    .any(|root| p.starts_with(root))
            });
            pseudo || std::fs::metadata(path).is_ok_and(|m| !m.is_file() || m.len() > 1 << 20)
        }
        toml::Value::Array(items) => items.iter().any(names_a_special_file),
        toml::Value::Table(table) => table.values().any(names_a_special_file),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = std::str::from_utf8(data)
        .map_err(drop)
        .and_then(|text| toml::from_str::<toml::Table>(text).map_err(drop))
    {
        if table.values().any(names_a_special_file) {
            return;
        }
    }
    let scratch = &*SCRATCH;
    std::fs::write(&scratch.file, data).unwrap();
    let _ = samlgate::config::load(Some(&scratch.file));
});

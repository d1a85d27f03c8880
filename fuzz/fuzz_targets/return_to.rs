//! `samlgate::return_to::sanitize` on arbitrary UTF-8: the result is "/" or starts
//! with "/" followed by neither "/" nor "\", is visible ASCII (no control character,
//! no raw space), and every percent-decoding of it starts that way too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

/// "/" or "/" followed by anything but "/" or "\" (which make it protocol-relative).
fn absolute_path(path: &str) -> bool {
    let mut chars = path.chars();
    chars.next() == Some('/') && !matches!(chars.next(), Some('/' | '\\'))
}

fuzz_target!(|raw: &str| {
    let out = samlgate::return_to::sanitize(raw);
    let ok = absolute_path;
    assert!(ok(&out), "{raw:?} -> {out:?}");
    assert!(
        out.bytes().all(|b| b.is_ascii_graphic()),
        "{raw:?} -> {out:?} is not visible ASCII"
    );
    let mut current = out.clone();
    for _ in 0..32 {
        let next = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        assert!(
            ok(&next) && !next.chars().any(|c| c.is_ascii_control()),
            "{raw:?} -> {out:?} decodes to {next:?}"
        );
        current = next;
    }
    assert!(
        absolute_path(&current),
        "{raw:?} -> {out:?} fully decodes to {current:?}"
    );
});

//! The `return_to` / RelayState sanitiser (SPEC §4): only ever a path on this origin.

use std::fmt::Write as _;

use percent_encoding::percent_decode_str;

/// Decoding rounds before a value that keeps changing is given up on.
const MAX_DECODE_ROUNDS: usize = 10;

/// `raw` if it is a local path (with raw spaces and non-ASCII percent-encoded), else `/`.
///
/// The checks run on the value decoded until it no longer changes, since browsers
/// and intermediaries may decode more than once; the still-encoded original is
/// returned so the target path reaches the panel exactly as the user had it. The
/// result is always visible ASCII, fit for a `Location` header.
pub fn sanitize(raw: &str) -> String {
    if is_local_path(raw) {
        encode(raw)
    } else {
        "/".to_owned()
    }
}

/// Why `out`, a [`sanitize`] result, could lead off this origin; `None` if it cannot.
///
/// The sanitiser's contract, written once for the fuzz target and the property tests
/// and on purpose not in terms of the code above: `out` is visible ASCII, and it and
/// each of its percent-decodings (lossy, up to 32) start with one `/` (not `//` or
/// `/\`), hold no control character, and resolve to the origin with a WHATWG URL
/// parser (which also reads `\` as `/` and drops tabs and newlines).
pub fn leaves_origin(out: &str) -> Option<String> {
    let origin = url::Url::parse("https://gate.example/saml/acs").expect("a valid URL");
    let on_origin = |path: &str| {
        let mut chars = path.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !has_control(path)
            && origin
                .join(path)
                .is_ok_and(|u| u.scheme() == "https" && u.host_str() == Some("gate.example"))
    };
    if !out.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("not visible ASCII".to_owned());
    }
    let mut current = out.to_owned();
    for _ in 0..=32 {
        if !on_origin(&current) {
            return Some(format!("{current:?} is not a path on the origin"));
        }
        let next = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            return None;
        }
        current = next;
    }
    None
}

/// Longer targets become `/`: they ride in the request-state cookie, which must
/// stay under browsers' 4 KiB cookie limit with several logins in flight.
const MAX_LEN: usize = 1024;

fn is_local_path(raw: &str) -> bool {
    if raw.len() > MAX_LEN {
        return false;
    }
    // Every decoding level must be an absolute local path: the encoded value is what
    // the browser follows ("%2Fx" would be relative), the decoded one what a panel
    // that decodes again would see.
    let mut current = raw.to_owned();
    for _ in 0..MAX_DECODE_ROUNDS {
        if !is_absolute_local(&current) {
            return false;
        }
        let Ok(next) = percent_decode_str(&current).decode_utf8() else {
            return false;
        };
        if next == current {
            return true;
        }
        current = next.into_owned();
    }
    false
}

fn is_absolute_local(path: &str) -> bool {
    let mut chars = path.chars();
    // "//host" and "/\host" are protocol-relative URLs to browsers.
    chars.next() == Some('/') && !matches!(chars.next(), Some('/' | '\\')) && !has_control(path)
}

fn has_control(value: &str) -> bool {
    value.chars().any(|c| c.is_ascii_control())
}

fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == ' ' || !c.is_ascii() {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                write!(out, "%{byte:02X}").expect("writing to a String cannot fail");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn off_origin_targets_become_root() {
        for raw in [
            "//evil.com",
            "/\\evil.com",
            "%2F%2Fevil.com",
            "/%2Fevil.com",
            "/%5Cevil.com",
            "%252F%252Fevil.com",
            "/%252F%252Fevil.com",
            "https://evil.com",
            "javascript:alert(1)",
            "evil.com",
            " /reports",
            "\\\\evil.com",
        ] {
            assert_eq!(sanitize(raw), "/", "{raw}");
        }
    }

    #[test]
    fn control_characters_raw_or_encoded_become_root() {
        for raw in [
            "/a%0d%0aSet-Cookie:x",
            "/a\r\nSet-Cookie:x",
            "/\t/evil.com",
            "/a%00",
            "/a%7F",
            "/a\u{7f}",
            "/a%250a",
        ] {
            assert_eq!(sanitize(raw), "/", "{raw:?}");
        }
    }

    #[test]
    fn invalid_utf8_or_endless_decoding_becomes_root() {
        assert_eq!(sanitize("/%FF"), "/");
        assert_eq!(sanitize("/%25C3"), "/", "decodes on to a lone 0xC3 byte");
        // Each round peels one "25": 14 rounds to reach "/", more than allowed.
        let deep = format!("/%{}2F", "25".repeat(13));
        assert_eq!(sanitize(&deep), "/");
        let shallow = format!("/x%{}41", "25".repeat(6));
        assert_eq!(sanitize(&shallow), shallow);
    }

    #[test]
    fn local_paths_are_kept_encoded() {
        assert_eq!(sanitize("/reports?x=1"), "/reports?x=1");
        assert_eq!(sanitize("/a%2Fb?next=%2F%2Fx"), "/a%2Fb?next=%2F%2Fx");
        assert_eq!(sanitize("/a b"), "/a%20b");
        assert_eq!(sanitize("/caf\u{e9}"), "/caf%C3%A9");
        assert_eq!(sanitize("/"), "/");
        assert_eq!(sanitize(""), "/");
        assert_eq!(sanitize("/#frag"), "/#frag");
        assert_eq!(sanitize("/a//b"), "/a//b");
    }
}

//! `samlgate::return_to::sanitize` on arbitrary UTF-8: the result never leads off
//! the origin, at any level of percent-decoding (`samlgate::return_to::leaves_origin`,
//! the oracle the property tests use too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let out = samlgate::return_to::sanitize(raw);
    if let Some(why) = samlgate::return_to::leaves_origin(&out) {
        panic!("{raw:?} -> {out:?}: {why}");
    }
});

//! The ACS pipeline, from the `SAMLResponse` form value (base64) to the decision,
//! for the fixed tenant of `samlgate::saml::fuzzing` (size limits → strict pre-scan
//! → samael/xmlsec verification → SPEC §8 checks).
//!
//! The input stays the form value, so the committed corpus is what a browser would
//! POST; but mutating base64 text mostly breaks the base64, so the custom mutator
//! below usually decodes the input, mutates the XML (with libFuzzer's own mutations,
//! dictionary and comparison operands) and encodes it again. One mutation in eight
//! works on the form value itself, for the base64 and size-limit layer.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target, fuzzer_mutate};
use samlgate::saml::fuzzing;

/// Every NameID the fixture key ever signed (fuzz/fixtures/make_acs_seeds.py).
/// libFuzzer cannot forge an RSA signature, so an accepted response can only carry
/// one of these, as canonical text (CDATA, character references and comments
/// removed); any other one, such as the attacks' "admin@acme.com", means samlgate
/// read a NameID the signature did not cover.
const SIGNED_NAME_IDS: [&str; 4] = [
    "alice@acme.com",
    "alice@acme.com.evil.com",
    "zo\u{eb}.\u{f1}and\u{fa}@acme.com",
    "bob@acme.com",
];

fuzz_target!(|form_value: &[u8]| {
    if let Ok(name_id) = fuzzing::acs(form_value) {
        assert!(
            SIGNED_NAME_IDS.contains(&name_id.as_str()),
            "accepted a NameID the fixture key never signed: {name_id:?}"
        );
    }
});

fn decoded(form_value: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = form_value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD.decode(compact).ok()
}

/// Writes base64 of `xml` into `out`; its length, or `None` if it does not fit.
fn encode_into(xml: &[u8], out: &mut [u8]) -> Option<usize> {
    let encoded = STANDARD.encode(xml);
    let target = out.get_mut(..encoded.len())?;
    target.copy_from_slice(encoded.as_bytes());
    Some(encoded.len())
}

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if !seed.is_multiple_of(8) {
        if let Some(mut xml) = decoded(&data[..size]) {
            // Room for the mutated XML whose base64 still fits into max_size.
            let room = (max_size / 4 * 3).max(xml.len());
            let len = xml.len();
            xml.resize(room, 0);
            let new_len = fuzzer_mutate(&mut xml, len, room);
            if let Some(written) = encode_into(&xml[..new_len], data) {
                return written;
            }
        }
    }
    fuzzer_mutate(data, size, max_size)
});

fuzz_crossover!(|one: &[u8], two: &[u8], out: &mut [u8], seed: u32| {
    // Splices the decoded XML of two inputs: a prefix of one, a suffix of the other.
    let (Some(a), Some(b)) = (decoded(one), decoded(two)) else {
        return 0;
    };
    let cut_a = seed as usize % (a.len() + 1);
    let cut_b = (seed as usize / 7) % (b.len() + 1);
    let mut xml = a[..cut_a].to_vec();
    xml.extend_from_slice(&b[cut_b..]);
    encode_into(&xml, out).unwrap_or(0)
});

//! Micro-benchmarks of samlgate's per-request hot paths (criterion, no plots).
//!
//! ```sh
//! cargo bench --bench hot_paths                  # full measurement
//! cargo bench --bench hot_paths -- --quick       # a quick look
//! cargo bench --bench hot_paths -- session_open  # one group
//! ```
//!
//! - `session_open`: opening the sealed session cookie of a request (XChaCha20-Poly1305
//!   + JSON), among other cookies, as every authenticated request does.
//! - `identity_header`: the signed identity header, signed anew (a fresh sid each
//!   iteration: a session's first request, or after half the header's lifetime) and
//!   reused from the per-session cache (the same sid: every other request).
//! - `acs_validate`: one SAMLResponse through the synchronous ACS pipeline
//!   (`samlgate::saml::fuzzing::acs`: size limits, base64, pre-scan, xmlsec signature
//!   verification, every condition) on a committed `valid-*` seed of the fuzz corpus.
//! - `request_headers`: stripping client-sent identity headers and removing hop-by-hop
//!   headers from a realistic 15-header browser request.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use samlgate::config::{IdentityConfig, SessionConfig};
use samlgate::identity::{Algorithm, IdentityKey, IdentitySigner, PLAIN_HEADERS};
use samlgate::proxy::{remove_hop_by_hop, IdentityHeaderStripper};
use samlgate::session::{Session, SessionCodec, SessionKey};

const NOW: i64 = 1_800_000_000;

fn session(sid: String) -> Session {
    Session {
        sid,
        account_id: "u-123".into(),
        email: Some("alice@acme.com".into()),
        name: Some("Alice Example".into()),
        roles: vec!["admin".into(), "restore".into()],
        name_id: "alice@acme.com".into(),
        company_id: "acme".into(),
        auth_time: NOW - 60,
        expires_at: NOW + 8 * 3600,
    }
}

fn session_config() -> SessionConfig {
    SessionConfig {
        cookie_name: "samlgate_session".into(),
        keys: vec![SessionKey::from_base64(&SessionKey::generate_base64()).unwrap()],
        ttl: Duration::from_secs(8 * 3600),
    }
}

/// A browser's `Cookie` header carrying the session cookie `sealed` among others.
fn headers_with(sealed: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        HeaderValue::try_from(format!(
            "_ga=GA1.1.123456789.1700000000; samlgate_company=acme; \
             samlgate_session={sealed}; theme=dark"
        ))
        .unwrap(),
    );
    headers
}

fn session_open(c: &mut Criterion) {
    let config = session_config();
    let codec = SessionCodec::new(&config, true);
    let headers = headers_with(&codec.seal(&session(Session::new_sid())));
    assert!(
        codec.open(&headers, NOW).is_some(),
        "the minted cookie opens"
    );
    // A browser's every request after its first: the opened session is cached.
    c.bench_function("session_open/cached", |b| {
        b.iter(|| codec.open(black_box(&headers), NOW))
    });
    // A cookie this process has not opened yet (first request, or after a restart):
    // decrypt, parse, cache. Each batch gets a fresh codec whose cache already holds
    // another session, built outside the timing.
    let other = headers_with(&codec.seal(&session(Session::new_sid())));
    c.bench_function("session_open/first", |b| {
        b.iter_batched(
            || {
                let codec = SessionCodec::new(&config, true);
                codec.open(&other, NOW).expect("the other cookie opens");
                codec
            },
            |codec| codec.open(black_box(&headers), NOW),
            BatchSize::SmallInput,
        )
    });
}

fn signer(algorithm: Algorithm) -> IdentitySigner {
    let key = IdentityKey::from_pem(&IdentityKey::generate_pem(algorithm).unwrap()).unwrap();
    IdentitySigner::new(
        &IdentityConfig {
            header: HeaderName::from_static("x-samlgate-assertion"),
            algorithm,
            key,
            previous_keys: Vec::new(),
            audience: "backup-panel".into(),
            ttl: Duration::from_secs(60),
            plain_headers: false,
        },
        "https://backup.example.com".into(),
    )
}

fn identity_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("identity_header");
    for algorithm in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
        let signer = signer(algorithm);
        // A fresh sid every iteration: never in the cache, so always signed. (The
        // cache keeps every one of them, bounded by its capacity, as in production.)
        group.bench_function(format!("build/{algorithm}"), |b| {
            b.iter_batched(
                || session(Session::new_sid()),
                |session| signer.header_for(black_box(&session), NOW),
                BatchSize::SmallInput,
            )
        });
        let same = session(Session::new_sid());
        signer.header_for(&same, NOW);
        group.bench_function(format!("reuse/{algorithm}"), |b| {
            b.iter(|| signer.header_for(black_box(&same), NOW))
        });
    }
    group.finish();
}

fn acs_validate(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/acs");
    let mut seeds: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("valid-"))
        })
        .collect();
    seeds.sort();
    let mut group = c.benchmark_group("acs_validate");
    // Okta's shape (only the Assertion signed) and both signed (two verifications).
    for name in ["valid-assertion-signed", "valid-both-signed"] {
        let Some(path) = seeds.iter().find(|p| p.ends_with(name)) else {
            eprintln!("acs_validate: no seed {name} in {dir}; skipped");
            continue;
        };
        let input = std::fs::read(path).unwrap();
        let accepted = samlgate::saml::fuzzing::acs(&input);
        assert!(accepted.is_ok(), "{name} is refused: {accepted:?}");
        group.bench_function(name, |b| {
            b.iter(|| samlgate::saml::fuzzing::acs(black_box(&input)))
        });
    }
    group.finish();
}

/// What a browser sends on an authenticated page load, plus a forged identity header
/// (`_` for `-`) and a hop-by-hop header named in `Connection`: 15 headers.
fn browser_request() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "backup.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.7,de;q=0.3"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://backup.example.com/dashboard"),
        ("cookie", "samlgate_company=acme; samlgate_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("priority", "u=0, i"),
        ("x_samlgate_assertion", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
        ("connection", "keep-alive, x-trace-hop"),
        ("x-trace-hop", "1"),
    ] {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static(value),
        );
    }
    assert_eq!(headers.len(), 15);
    headers
}

fn request_headers(c: &mut Criterion) {
    let stripper =
        IdentityHeaderStripper::new(std::iter::once("X-Samlgate-Assertion").chain(PLAIN_HEADERS));
    let request = browser_request();
    let mut check = request.clone();
    stripper.strip(&mut check);
    remove_hop_by_hop(&mut check);
    assert_eq!(
        check.len(),
        12,
        "forged identity and hop-by-hop headers are gone"
    );
    c.bench_function("request_headers/strip_and_remove_hop_by_hop", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |headers| {
                stripper.strip(headers);
                remove_hop_by_hop(headers);
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    hot_paths,
    session_open,
    identity_header,
    acs_validate,
    request_headers
);
criterion_main!(hot_paths);

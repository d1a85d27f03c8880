//! Pre-mints unique, validly signed SAML Responses for the login benchmark
//! (`bench/run.sh`): one `application/x-www-form-urlencoded` POST body
//! (`SAMLResponse=…`) per line, for wrk's `bench/acs.lua` to cycle through.
//!
//! Built and signed by the demo IdP's code (`samlgate::demo::{build_response, sign}`),
//! so shaped like Okta's: an unsigned Response around an Assertion signed with
//! RSA-SHA256 / SHA-256 / exclusive c14n, enveloped, the certificate in KeyInfo;
//! IdP-initiated (no InResponseTo), fresh Response and Assertion IDs each, so the
//! replay cache lets every one in once. Signed in-process through samael/xmlsec
//! (a few milliseconds per response with a 2048-bit key, far faster than one `xmlsec1`
//! process per response); run several processes in parallel for more.
//!
//! IssueInstant is `--issue-ahead` in the future (samlgate allows `sp.clock_skew`,
//! 90 s by default) because samlgate refuses assertions issued more than five minutes
//! plus the skew ago: minted responses stay usable for about 6.5 min + issue-ahead.
//!
//! ```sh
//! cargo run --release --example bench_mint_responses -- --key idp-key.pem \
//!     --cert idp-cert.pem --issuer http://www.okta.com/bench000 \
//!     --public-url http://gate.bench.test --count 1000 --out bodies.txt
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::Utc;
use clap::Parser;
use samlgate::demo::{build_response, sign, ResponseParams};

/// NotOnOrAfter of the minted Assertions: long enough for the whole login benchmark
/// (samlgate's own limit on the IssueInstant's age is the one that binds).
const VALID_FOR: chrono::Duration = chrono::Duration::minutes(30);

/// Writes `--count` signed SAMLResponse POST bodies to `--out`, one per line.
#[derive(Debug, Parser)]
struct Args {
    /// The IdP's RSA private key, PEM (e.g. `openssl req -x509 -newkey rsa:2048 …`).
    #[arg(long)]
    key: PathBuf,
    /// The IdP's certificate, PEM (goes into KeyInfo; samlgate ignores KeyInfo).
    #[arg(long)]
    cert: PathBuf,
    /// The tenant's `idp_issuer`.
    #[arg(long)]
    issuer: String,
    /// samlgate's `public_url`: Destination/Recipient are `{public_url}/saml/acs`,
    /// the audience `{public_url}/saml/metadata`.
    #[arg(long)]
    public_url: String,
    /// NameID (the same for all: the account lookup is then answered from cache).
    #[arg(long, default_value = "alice@bench.test")]
    name_id: String,
    /// How many responses.
    #[arg(long)]
    count: usize,
    /// Output file, one POST body per line.
    #[arg(long)]
    out: PathBuf,
    /// IssueInstant this far in the future (keep it below `sp.clock_skew`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    issue_ahead: Duration,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_mint_responses: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let key_pem = std::fs::read(&args.key).with_context(|| format!("{}", args.key.display()))?;
    let cert_pem = std::fs::read(&args.cert).with_context(|| format!("{}", args.cert.display()))?;
    let key_der = openssl::pkey::PKey::private_key_from_pem(&key_pem)
        .context("the IdP key is not a PEM private key")?
        .private_key_to_der()?;
    let cert_b64 = STANDARD.encode(
        openssl::x509::X509::from_pem(&cert_pem)
            .context("the IdP certificate is not PEM")?
            .to_der()?,
    );
    let base = args.public_url.trim_end_matches('/');
    let acs_url = format!("{base}/saml/acs");
    let audience = format!("{base}/saml/metadata");
    let now = Utc::now() + chrono::Duration::from_std(args.issue_ahead)?;

    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("{}", args.out.display()))?,
    );
    for _ in 0..args.count {
        let session_index = format!("_{}", new_id());
        let params = ResponseParams {
            issuer: &args.issuer,
            acs_url: &acs_url,
            audience: &audience,
            in_response_to: None,
            name_id: &args.name_id,
            name: "Bench User",
            authn_instant: now,
            session_index: &session_index,
            now,
            valid_for: VALID_FOR,
        };
        let unsigned = build_response(&params, &cert_b64, new_id(), new_id());
        let signed = sign(&unsigned, &key_der, &cert_b64, false)
            .map_err(|e| anyhow::anyhow!("could not sign: {e}"))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", &STANDARD.encode(signed))
            .finish();
        writeln!(out, "{body}")?;
    }
    out.flush()?;
    Ok(())
}

/// A fresh XML ID (an NCName).
fn new_id() -> String {
    format!("id{:032x}", rand::random::<u128>())
}

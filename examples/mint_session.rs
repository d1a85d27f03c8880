//! Mints a session cookie value for load tests (`bench/run.sh`), through the library
//! exactly as a successful login seals one: reads `session.secret_file` (one base64
//! key per line; the first seals, as in samlgate), builds
//! [`samlgate::session::SessionCodec`] and prints the sealed value(s), one per line.
//!
//! Sessions are minted here, outside samlgate, on purpose: samlgate itself has no
//! route or flag that mints sessions. Whoever can read the session key can already
//! forge any session, so this adds no capability.
//!
//! ```sh
//! cargo run --release --example mint_session -- --secret-file DIR/session.key
//! curl -H "Cookie: samlgate_session=$(…)" http://127.0.0.1:8080/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use samlgate::config::SessionConfig;
use samlgate::session::{Session, SessionCodec, SessionKey};

/// Prints sealed session cookie values (the cookie's value only, not `name=`).
#[derive(Debug, Parser)]
struct Args {
    /// The samlgate instance's `session.secret_file`.
    #[arg(long)]
    secret_file: PathBuf,
    /// `session.cookie_name` (only used to build the codec; not printed).
    #[arg(long, default_value = "samlgate_session")]
    cookie_name: String,
    /// Session lifetime from now.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The tenant's company ID.
    #[arg(long, default_value = "bench")]
    company_id: String,
    /// The panel's account ID (`sub` of the identity header).
    #[arg(long, default_value = "u-bench-1")]
    account_id: String,
    /// NameID and e-mail address.
    #[arg(long, default_value = "alice@bench.test")]
    name_id: String,
    /// How many sessions (each with its own sid) to print.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.secret_file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("mint_session: {}: {error}", args.secret_file.display());
            return ExitCode::FAILURE;
        }
    };
    // The same reading as samlgate's configuration: blank lines skipped, first key seals.
    let keys: Result<Vec<SessionKey>, _> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(SessionKey::from_base64)
        .collect();
    let keys = match keys {
        Ok(keys) if !keys.is_empty() => keys,
        Ok(_) => {
            eprintln!("mint_session: no key in {}", args.secret_file.display());
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("mint_session: {}: {error}", args.secret_file.display());
            return ExitCode::FAILURE;
        }
    };
    let codec = SessionCodec::new(
        &SessionConfig {
            cookie_name: args.cookie_name.clone(),
            keys,
            ttl: args.ttl,
        },
        false,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64;
    for _ in 0..args.count {
        let session = Session {
            sid: Session::new_sid(),
            account_id: args.account_id.clone(),
            email: Some(args.name_id.clone()),
            name: Some("Bench User".to_owned()),
            roles: vec!["admin".to_owned()],
            name_id: args.name_id.clone(),
            company_id: args.company_id.clone(),
            auth_time: now,
            expires_at: codec.expiry(now, None),
        };
        println!("{}", codec.seal(&session));
    }
    ExitCode::SUCCESS
}

//! Sub-commands of the `samlgate` binary (SPEC §2).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::identity::{Algorithm, IdentityKey};
use crate::session::SessionKey;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "samlgate",
    version,
    about = "Okta SAML identity-aware reverse proxy"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "SAMLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate the configuration and print a summary.
    Check,
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run samlgate with a development IdP and a demo panel on loopback.
    Demo {
        /// First of four consecutive ports.
        #[arg(long, default_value_t = 8080)]
        base_port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write DIR/identity.pem (PKCS#8) and DIR/session.key (base64), mode 0600.
    Generate {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// ES256, EdDSA or RS256; default: the configured algorithm, else ES256.
        #[arg(long)]
        algorithm: Option<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Runs the parsed command line and returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => return run(cli.config.as_deref()),
        Command::Check => return check(cli.config.as_deref()),
        Command::Keys(KeysCommand::Generate {
            out,
            algorithm,
            force,
        }) => generate_keys(cli.config.as_deref(), &out, algorithm.as_deref(), force),
        Command::Demo { base_port } => crate::demo::run(base_port),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("samlgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        for problem in &errors.0 {
            eprintln!("{problem}");
        }
        ExitCode::FAILURE
    })
}

fn check(path: Option<&Path>) -> ExitCode {
    match load(path) {
        Ok(config) => {
            print!("{}", config::summary(&config));
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(path: Option<&Path>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    crate::telemetry::init(config.log_format);
    match crate::server::run_blocking(config, path.map(Path::to_path_buf)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "samlgate stopped");
            eprintln!("samlgate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn generate_keys(
    config: Option<&Path>,
    out: &Path,
    algorithm: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let algorithm = match (algorithm, config) {
        (Some(name), _) => name.parse::<Algorithm>()?,
        (None, Some(path)) => {
            load(Some(path))
                .map_err(|_| anyhow::anyhow!("the configuration has problems (see above)"))?
                .identity
                .algorithm
        }
        (None, None) => Algorithm::Es256,
    };
    let identity = out.join("identity.pem");
    let session = out.join("session.key");
    if !force {
        for path in [&identity, &session] {
            anyhow::ensure!(
                !path.exists(),
                "{} exists; pass --force to overwrite",
                path.display()
            );
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    write_secret(&identity, IdentityKey::generate_pem(algorithm)?.as_bytes())?;
    write_secret(
        &session,
        format!("{}\n", SessionKey::generate_base64()).as_bytes(),
    )?;
    println!(
        "wrote {} ({algorithm}) and {}",
        identity.display(),
        session.display()
    );
    Ok(())
}

fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    // Remove first so an existing file's looser mode is not kept on --force.
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}

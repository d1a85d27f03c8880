//! The command line: `check`, `keys generate`, and how configuration problems are reported.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

use samlgate::identity::Algorithm;
use support::{config_toml, Keys};

fn samlgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .args(args)
        .env_remove("SAMLGATE_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn check_prints_a_summary_without_secrets() {
    let keys = Keys::new(Algorithm::Es256);
    let path = keys.path("samlgate.toml");
    std::fs::write(&path, config_toml(&keys, "http://127.0.0.1:3000", "", "")).unwrap();
    let out = samlgate(&["check", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ES256"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:3000"), "{stdout}");
    assert!(!stdout.contains(&keys.session_key));
    assert!(!stdout.contains("PRIVATE KEY"));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let keys = Keys::new(Algorithm::Es256);
    let path = keys.path("samlgate.toml");
    let toml = config_toml(&keys, "http://127.0.0.1:3000", "", "")
        .replace("[session]\n", "[session]\nttl = \"8 hours\"\n")
        .replace("[log]\n", "[log]\nformatt = \"json\"\n");
    std::fs::write(&path, toml).unwrap();
    let out = samlgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.contains(&r#"session.ttl: invalid duration "8 hours""#),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("log.formatt: ")),
        "{stderr}"
    );
    assert_eq!(lines.len(), 2, "{stderr}");

    // `run` refuses the same configuration the same way.
    let out = samlgate(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("session.ttl: invalid duration"));
}

#[test]
fn environment_overrides_the_file() {
    let keys = Keys::new(Algorithm::Es256);
    let path = keys.path("samlgate.toml");
    std::fs::write(&path, config_toml(&keys, "http://127.0.0.1:3000", "", "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .arg("check")
        .env("SAMLGATE_CONFIG", &path)
        .env("SAMLGATE_SESSION__TTL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"session.ttl: invalid duration "soon""#)
    );
}

#[test]
fn keys_generate_writes_private_files_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    let out_str = out_dir.to_str().unwrap();
    for algorithm in ["ES256", "EdDSA", "RS256"] {
        let out = samlgate(&[
            "keys",
            "generate",
            "--out",
            out_str,
            "--algorithm",
            algorithm,
            "--force",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = std::fs::read_to_string(out_dir.join("identity.pem")).unwrap();
        let key = samlgate::identity::IdentityKey::from_pem(&pem).unwrap();
        assert_eq!(key.algorithm().as_str(), algorithm);
        let session = std::fs::read_to_string(out_dir.join("session.key")).unwrap();
        samlgate::session::SessionKey::from_base64(session.trim()).unwrap();
        for name in ["identity.pem", "session.key"] {
            let mode = std::fs::metadata(out_dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    let before = std::fs::read(out_dir.join("identity.pem")).unwrap();
    let out = samlgate(&["keys", "generate", "--out", out_str]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(out_dir.join("identity.pem")).unwrap(), before);
}

#[test]
fn the_shipped_example_configurations_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = samlgate(&[
        "keys",
        "generate",
        "--out",
        dir.path().join("dev-keys").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let dev = std::fs::canonicalize("config/dev.toml").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_samlgate"))
        .args(["check", "--config", dev.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The production example points at /etc/samlgate: point it at generated files.
    let keys = dir.path().join("dev-keys");
    let okta = rcgen::generate_simple_self_signed(vec!["acme.okta.com".into()]).unwrap();
    std::fs::write(keys.join("acme-okta.pem"), okta.cert.pem()).unwrap();
    let example = std::fs::read_to_string("config/samlgate.toml")
        .unwrap()
        .replace("/etc/samlgate/", &format!("{}/", keys.display()));
    std::fs::write(dir.path().join("example.toml"), example).unwrap();
    let out = samlgate(&[
        "check",
        "--config",
        dir.path().join("example.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn limits_are_validated_with_their_keys() {
    let keys = Keys::new(Algorithm::Es256);
    let path = keys.path("samlgate.toml");
    let toml = config_toml(&keys, "http://127.0.0.1:3000", "", "")
        + "\n[limits]\nmax_connections = 0\nheader_read_timeout = \"soon\"\n";
    std::fs::write(&path, toml).unwrap();
    let out = samlgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("limits.max_connections: expected a positive whole number"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"limits.header_read_timeout: invalid duration "soon""#),
        "{stderr}"
    );
}

//! The Helm chart (`charts/samlgate`) and the Docker image, checked without helm or a
//! Docker engine: every values file (values.yaml, and each `ci/*.yaml` merged over it
//! as `helm -f` does) against values.schema.json, broken values refused by the schema,
//! every embedded `config` accepted by the real `samlgate check` with generated keys at
//! the mounted Secrets' paths, and the templates' essential wiring.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use samlgate::identity::{Algorithm, IdentityKey};
use samlgate::session::SessionKey;
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chart() -> PathBuf {
    Path::new(ROOT).join("charts/samlgate")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file as a JSON value (what the schema validates).
fn yaml(path: &Path) -> Value {
    serde_norway::from_str::<Value>(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Helm's coalescing of a `-f` file over the chart's values: maps merge key by key,
/// anything else (lists, strings, numbers) is replaced, and `null` deletes the key.
fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// values.yaml alone, then each `ci/*.yaml` merged over it, by name.
fn value_sets() -> BTreeMap<String, Value> {
    let defaults = yaml(&chart().join("values.yaml"));
    let mut sets = BTreeMap::from([("values.yaml".to_owned(), defaults.clone())]);
    for entry in fs::read_dir(chart().join("ci")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut merged = defaults.clone();
            merge(&mut merged, &yaml(&path));
            let name = format!("ci/{}", path.file_name().unwrap().to_string_lossy());
            sets.insert(name, merged);
        }
    }
    sets
}

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(&chart().join("values.schema.json")))
        .expect("values.schema.json is JSON");
    assert_eq!(
        schema["$schema"], "http://json-schema.org/draft-07/schema#",
        "helm validates values with a draft-07 schema"
    );
    assert!(
        jsonschema::draft7::meta::is_valid(&schema),
        "values.schema.json is not a valid draft-07 schema"
    );
    jsonschema::draft7::new(&schema).expect("values.schema.json compiles")
}

/// The schema's complaints about `values`, one line each.
fn schema_errors(validator: &jsonschema::Validator, values: &Value) -> Vec<String> {
    validator
        .iter_errors(values)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_chart_ships_example_values_for_the_main_topologies() {
    let sets = value_sets();
    for name in [
        "ci/redis-values.yaml",
        "ci/tenant-lookup-values.yaml",
        "ci/ingress-values.yaml",
    ] {
        assert!(
            sets.contains_key(name),
            "{name} is missing: {:?}",
            sets.keys()
        );
    }
    let redis = &sets["ci/redis-values.yaml"];
    assert_eq!(redis["replicaCount"], 3);
    assert_ne!(redis["secrets"]["redisUrl"]["secretName"], "");
    assert!(sets["ci/tenant-lookup-values.yaml"]["config"]
        .as_str()
        .unwrap()
        .contains("[tenant_lookup]"));
    assert_eq!(sets["ci/ingress-values.yaml"]["ingress"]["enabled"], true);

    let defaults = &sets["values.yaml"];
    assert_eq!(defaults["replicaCount"], 2);
    assert_eq!(defaults["podDisruptionBudget"]["enabled"], true);
    assert_eq!(defaults["podDisruptionBudget"]["minAvailable"], 1);
    assert_eq!(defaults["autoscaling"]["enabled"], false);
    assert_eq!(defaults["ingress"]["enabled"], false);
    assert_eq!(defaults["serviceMonitor"]["enabled"], false);
}

#[test]
fn every_values_file_matches_the_schema() {
    let validator = schema();
    for (name, values) in value_sets() {
        let errors = schema_errors(&validator, &values);
        assert!(
            errors.is_empty(),
            "{name} does not match values.schema.json:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn the_schema_refuses_broken_values() {
    let validator = schema();
    let defaults = yaml(&chart().join("values.yaml"));
    // (what is broken, the overlay that breaks it, where the schema must complain)
    let broken: Vec<(&str, Value, &str)> = vec![
        (
            "replicaCount as text",
            json!({"replicaCount": "two"}),
            "/replicaCount",
        ),
        (
            "unknown pull policy",
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        ("a misspelt top-level key", json!({"replicas": 3}), ""),
        (
            "config as a table",
            json!({"config": {"public_url": "https://x"}}),
            "/config",
        ),
        ("empty config", json!({"config": ""}), "/config"),
        (
            "no session Secret",
            json!({"secrets": {"session": {"secretName": ""}}}),
            "/secrets/session/secretName",
        ),
        (
            "a relative mount path",
            json!({"secrets": {"identity": {"mountPath": "keys"}}}),
            "/secrets/identity/mountPath",
        ),
        (
            "unknown service type",
            json!({"service": {"type": "Internal"}}),
            "/service/type",
        ),
        (
            "port out of range",
            json!({"containerPorts": {"admin": 70000}}),
            "/containerPorts/admin",
        ),
        (
            "unknown pathType",
            json!({"ingress": {"hosts": [
                {"host": "a.example", "paths": [{"path": "/", "pathType": "Glob"}]}
            ]}}),
            "/ingress/hosts/0/paths/0/pathType",
        ),
        (
            "probe path overridden",
            json!({"livenessProbe": {"httpGet": {"path": "/", "port": 8080}}}),
            "/livenessProbe",
        ),
        (
            "PDB as a fraction",
            json!({"podDisruptionBudget": {"minAvailable": "half"}}),
            "/podDisruptionBudget/minAvailable",
        ),
        (
            "HPA without a minimum",
            json!({"autoscaling": {"minReplicas": 0}}),
            "/autoscaling/minReplicas",
        ),
        (
            "bad scrape interval",
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (
            "grace period shorter than the drain",
            json!({"terminationGracePeriodSeconds": 10}),
            "/terminationGracePeriodSeconds",
        ),
        (
            "seccomp profile misspelt",
            json!({"securityContext": {"seccompProfile": {"type": "Default"}}}),
            "/securityContext/seccompProfile/type",
        ),
    ];
    for (what, overlay, location) in broken {
        let mut values = defaults.clone();
        merge(&mut values, &overlay);
        let errors: Vec<(String, String)> = validator
            .iter_errors(&values)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect();
        assert!(
            !errors.is_empty(),
            "the schema accepted broken values ({what}): {overlay}"
        );
        assert!(
            errors.iter().any(|(path, _)| path == location),
            "{what}: expected a complaint at {location:?}, got {errors:?}"
        );
    }
    // A key the schema requires, removed.
    let mut values = defaults.clone();
    values.as_object_mut().unwrap().remove("secrets");
    assert!(
        !validator.is_valid(&values),
        "values without secrets passed"
    );
}

#[test]
fn every_values_file_keeps_the_pods_locked_down() {
    for (name, values) in value_sets() {
        for context in ["podSecurityContext", "securityContext"] {
            let sc = &values[context];
            assert_eq!(sc["runAsNonRoot"], true, "{name}: {context}.runAsNonRoot");
            assert_eq!(sc["runAsUser"], 10001, "{name}: {context}.runAsUser");
            assert_eq!(
                sc["seccompProfile"]["type"], "RuntimeDefault",
                "{name}: {context}.seccompProfile"
            );
        }
        let sc = &values["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert!(sc["capabilities"].get("add").is_none(), "{name}");
    }
}

/// The directories the deployment mounts for `values`: each Secret with a name, and
/// each extra volume mount.
fn mount_dirs(values: &Value) -> Vec<String> {
    let mut dirs = Vec::new();
    for secret in values["secrets"].as_object().unwrap().values() {
        let name = secret["secretName"].as_str().unwrap_or_default();
        if let (false, Some(path)) = (name.is_empty(), secret["mountPath"].as_str()) {
            dirs.push(path.trim_end_matches('/').to_owned());
        }
    }
    for mount in values["extraVolumeMounts"].as_array().into_iter().flatten() {
        dirs.push(mount["mountPath"].as_str().unwrap().to_owned());
    }
    dirs
}

/// Every file path in `config` with its dotted key,
/// e.g. `("identity.previous_key_files[0]", "/etc/…")`.
fn file_paths(table: &toml::Table, prefix: &str, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::String(path) if key.ends_with("_file") => {
                out.push((dotted, path.clone()));
            }
            toml::Value::Array(items) if key.ends_with("_files") => {
                for (i, item) in items.iter().enumerate() {
                    out.push((format!("{dotted}[{i}]"), item.as_str().unwrap().to_owned()));
                }
            }
            toml::Value::Table(inner) => file_paths(inner, &dotted, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        file_paths(inner, &format!("{dotted}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn certificate_pem(host: &str) -> String {
    rcgen::generate_simple_self_signed(vec![host.to_owned()])
        .unwrap()
        .cert
        .pem()
}

/// Real key material for the file behind `key` (its dotted config key).
fn generate(key: &str, algorithm: Algorithm, rotation: bool, tls: &rcgen::CertifiedKey) -> String {
    let copies = if rotation { 2 } else { 1 };
    let last = key.rsplit('.').next().unwrap();
    match last {
        "secret_file" if key == "session.secret_file" => (0..copies)
            .map(|_| SessionKey::generate_base64() + "\n")
            .collect(),
        "key_file" if key == "identity.key_file" => IdentityKey::generate_pem(algorithm).unwrap(),
        _ if key.starts_with("identity.previous_key_files[") => {
            IdentityKey::generate_pem(algorithm).unwrap()
        }
        "idp_certificate_file" => (0..copies)
            .map(|i| certificate_pem(&format!("okta-{i}.example")))
            .collect(),
        "ca_file" => certificate_pem("panel-ca.example"),
        "cert_file" if key == "tls.cert_file" => tls.cert.pem(),
        "key_file" if key == "tls.key_file" => tls.key_pair.serialize_pem(),
        "token_file" => "lookup-token-for-tests\n".to_owned(),
        _ => panic!("tests/chart.rs does not know what to put in {key}; teach generate()"),
    }
}

/// The environment the deployment gives the container (besides SAMLGATE_CONFIG).
fn pod_env(values: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if values["secrets"]["redisUrl"]["secretName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        env.push((
            "SAMLGATE_REPLAY__REDIS_URL".to_owned(),
            "redis://redis.test:6379/0".to_owned(),
        ));
    }
    for var in values["extraEnv"].as_array().into_iter().flatten() {
        if let Some(value) = var["value"].as_str() {
            env.push((var["name"].as_str().unwrap().to_owned(), value.to_owned()));
        }
    }
    env
}

const MIB: u64 = 1024 * 1024;

/// A Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, bytes) in bytes.
fn quantity(text: &str) -> u64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("quantity {text:?}"));
    let factor = match unit {
        "" => 1,
        "Ki" => 1024,
        "Mi" => MIB,
        "Gi" => 1024 * MIB,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => panic!("unsupported memory unit in {text:?}"),
    };
    number * factor
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_embedded_config_passes_samlgate_check() {
    for (name, values) in value_sets() {
        let text = values["config"].as_str().unwrap();
        let table: toml::Table = toml::from_str(text)
            .unwrap_or_else(|e| panic!("{name}: config is not valid TOML: {e}"));

        // The listeners must match the container ports the probes and Services use.
        let listen = table.get("listen").and_then(|v| v.as_str());
        let admin = table.get("admin_listen").and_then(|v| v.as_str());
        let (Some(listen), Some(admin)) = (listen, admin) else {
            panic!("{name}: set listen and admin_listen (admin_listen defaults to loopback)");
        };
        assert_eq!(
            port_of(listen),
            values["containerPorts"]["http"].as_u64().unwrap(),
            "{name}: listen"
        );
        assert_eq!(
            port_of(admin),
            values["containerPorts"]["admin"].as_u64().unwrap(),
            "{name}: admin_listen"
        );
        assert!(
            admin.starts_with("0.0.0.0:") || admin.starts_with("[::]:"),
            "{name}: admin_listen {admin} is unreachable for the kubelet's probes"
        );
        if values["ingress"]["enabled"] == true {
            let public = url::Url::parse(table["public_url"].as_str().unwrap()).unwrap();
            let hosts: Vec<&str> = values["ingress"]["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["host"].as_str().unwrap())
                .collect();
            assert!(
                hosts.contains(&public.host_str().unwrap()),
                "{name}: public_url {public} is not among the ingress hosts {hosts:?}"
            );
            let tls = values["ingress"]["tls"]
                .as_array()
                .is_some_and(|t| !t.is_empty());
            assert_eq!(
                public.scheme() == "https",
                tls,
                "{name}: public_url scheme vs ingress TLS"
            );
        }

        // The connection cap must fit the memory limit (docs/operations.md, "Sizing":
        // about 16 MiB at rest and 70 KiB per connection with a request in flight).
        if let Some(limit) = values["resources"]["limits"]["memory"].as_str() {
            let max_connections = table
                .get("limits")
                .and_then(|l| l.get("max_connections"))
                .and_then(|m| m.as_integer())
                .unwrap_or(16384) as u64;
            let worst = 32 * MIB + max_connections * 70 * 1024;
            assert!(
                worst <= quantity(limit),
                "{name}: [limits] max_connections = {max_connections} needs about {} MiB, \
                 more than the {limit} memory limit",
                worst / MIB
            );
        }

        // Generated keys and certificates where the pod would find the Secrets.
        let dir = tempfile::tempdir().unwrap();
        let mounts = mount_dirs(&values);
        let algorithm: Algorithm = table
            .get("identity")
            .and_then(|i| i.get("algorithm"))
            .and_then(|a| a.as_str())
            .unwrap_or("ES256")
            .parse()
            .unwrap();
        let rotation = name.contains("rotation");
        let tls = rcgen::generate_simple_self_signed(vec!["backup.example.com".into()]).unwrap();
        let mut paths = Vec::new();
        file_paths(&table, "", &mut paths);
        assert!(
            paths.iter().any(|(k, _)| k == "session.secret_file")
                && paths.iter().any(|(k, _)| k == "identity.key_file"),
            "{name}: the keys must come from the mounted Secrets (*_file keys), not inline"
        );
        let mut config = text.to_owned();
        for (key, path) in &paths {
            assert!(
                mounts.iter().any(|m| path.starts_with(&format!("{m}/"))),
                "{name}: {key} = {path:?} is not inside a mounted Secret or volume {mounts:?}"
            );
            let local = dir.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(local.parent().unwrap()).unwrap();
            fs::write(&local, generate(key, algorithm, rotation, &tls)).unwrap();
            config = config.replace(&format!("\"{path}\""), &format!("\"{}\"", local.display()));
        }
        let file = dir.path().join("samlgate.toml");
        fs::write(&file, &config).unwrap();

        let mut command = Command::new(env!("CARGO_BIN_EXE_samlgate"));
        command.arg("check").arg("--config").arg(&file);
        for (var, _) in std::env::vars() {
            if var.starts_with("SAMLGATE_") {
                command.env_remove(var);
            }
        }
        let env = pod_env(&values);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{name}: samlgate check failed ({}):\n{stderr}{stdout}",
            output.status
        );
        assert!(stdout.contains("configuration OK"), "{name}: {stdout}");
        let redis = env.iter().any(|(k, _)| k == "SAMLGATE_REPLAY__REDIS_URL");
        let expected = if redis { "redis" } else { "memory" };
        assert!(
            stdout.contains(&format!("replay state:    {expected}")),
            "{name}: expected replay state {expected}:\n{stdout}"
        );
        if rotation {
            assert!(
                stdout.contains("2 key(s)"),
                "{name}: two session keys:\n{stdout}"
            );
            assert!(
                !stdout.contains("previous kids:   none"),
                "{name}: {stdout}"
            );
            assert!(stdout.contains("2 certificate(s)"), "{name}: {stdout}");
        }
    }
}

fn template(name: &str) -> String {
    read(&chart().join("templates").join(name))
}

/// The lines after the first line containing `anchor`, up to `count` of them.
fn block_after<'a>(text: &'a str, anchor: &str, count: usize) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(anchor))
        .unwrap_or_else(|| panic!("no {anchor:?} in the template"));
    lines[start + 1..(start + 1 + count).min(lines.len())].to_vec()
}

#[test]
fn the_templates_wire_probes_security_config_and_secrets() {
    for file in [
        "_helpers.tpl",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "ingress.yaml",
        "pdb.yaml",
        "hpa.yaml",
        "servicemonitor.yaml",
        "serviceaccount.yaml",
        "NOTES.txt",
    ] {
        assert!(
            chart().join("templates").join(file).is_file(),
            "templates/{file} is missing"
        );
    }
    let chart_yaml = yaml(&chart().join("Chart.yaml"));
    assert_eq!(chart_yaml["apiVersion"], "v2", "Helm 3 chart");
    assert_eq!(chart_yaml["name"], "samlgate");
    let cargo: toml::Table = toml::from_str(&read(&Path::new(ROOT).join("Cargo.toml"))).unwrap();
    assert_eq!(
        chart_yaml["appVersion"].as_str(),
        cargo["package"]["version"].as_str(),
        "Chart.yaml appVersion follows Cargo.toml's version (the default image tag)"
    );

    let configmap = template("configmap.yaml");
    assert!(configmap.contains("samlgate.toml: |"), "{configmap}");
    assert!(
        configmap.contains(".Values.config | nindent 4"),
        "{configmap}"
    );
    assert!(
        !configmap.contains("tpl "),
        "the config is embedded verbatim, not templated"
    );

    let deployment = template("deployment.yaml");
    for (probe, path) in [
        ("livenessProbe:", "/healthz"),
        ("readinessProbe:", "/readyz"),
    ] {
        let block = block_after(&deployment, probe, 3).join("\n");
        assert!(block.contains("httpGet:"), "{probe}\n{block}");
        assert!(block.contains(&format!("path: {path}")), "{probe}\n{block}");
        assert!(
            block.contains("port: admin"),
            "{probe} on the admin port\n{block}"
        );
    }
    let admin_port = block_after(&deployment, "- name: admin", 1).join("\n");
    assert!(admin_port.contains("containerPort: {{ .Values.containerPorts.admin }}"));
    for needle in [
        // pod and container security contexts from the values checked above
        "toYaml .Values.podSecurityContext",
        "toYaml .Values.securityContext",
        // config changes roll the pods
        "checksum/config: {{ include (print $.Template.BasePath \"/configmap.yaml\") . | sha256sum }}",
        // config by mount, named by SAMLGATE_CONFIG
        "mountPath: /etc/samlgate/samlgate.toml",
        "value: /etc/samlgate/samlgate.toml",
        "name: SAMLGATE_CONFIG",
        // Secrets mounted read-only where the config's *_file keys point
        "secretName: {{ $secret.secretName }}",
        "mountPath: {{ $secret.mountPath }}",
        // Redis URL from a Secret key
        "name: SAMLGATE_REPLAY__REDIS_URL",
        "secretKeyRef:",
        // writable /tmp on a read-only root filesystem
        "mountPath: /tmp",
        "emptyDir:",
    ] {
        assert!(deployment.contains(needle), "deployment.yaml lacks {needle:?}");
    }
    assert!(template("pdb.yaml").contains("kind: PodDisruptionBudget"));
    assert!(template("hpa.yaml").contains("kind: HorizontalPodAutoscaler"));
    assert!(template("hpa.yaml").starts_with("{{- if .Values.autoscaling.enabled }}"));
    assert!(template("ingress.yaml").starts_with("{{- if .Values.ingress.enabled -}}"));
    let monitor = template("servicemonitor.yaml");
    assert!(monitor.starts_with("{{- if .Values.serviceMonitor.enabled }}"));
    assert!(monitor.contains("port: admin") && monitor.contains("path: /metrics"));
    let service = template("service.yaml");
    assert!(service.contains("targetPort: http"));
}

/// Go template actions in `text`: `{{`/`}}` balanced, every if/with/range/define closed
/// by an `end` (what helm would refuse to parse).
fn check_actions(name: &str, text: &str) {
    let mut depth: i32 = 0;
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("{name}: unclosed {{{{ near {:?}", &rest[open..]));
        let action = after[..close].trim_matches('-').trim();
        assert!(!action.contains("{{"), "{name}: nested {{{{ in {action:?}");
        if !action.starts_with("/*") {
            match action.split_whitespace().next().unwrap_or_default() {
                "if" | "with" | "range" | "define" | "block" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(
                depth >= 0,
                "{name}: {{{{ end }}}} without an opening action"
            );
        }
        rest = &after[close + 2..];
    }
    assert!(!rest.contains("}}"), "{name}: stray }}}}");
    assert_eq!(depth, 0, "{name}: an if/with/range/define is not closed");
}

#[test]
fn the_templates_are_balanced_go_templates() {
    for entry in fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        check_actions(&name, &read(&path));
        if name.ends_with(".yaml") {
            assert!(
                !read(&path).contains('\t'),
                "{name}: tabs are not YAML indentation"
            );
        }
    }
}

#[test]
fn the_dockerfile_builds_with_scripts_build_release() {
    let dockerfile = read(&Path::new(ROOT).join("Dockerfile"));
    let script = read(&Path::new(ROOT).join("scripts/build-release"));
    let test_script = read(&Path::new(ROOT).join("scripts/test"));
    assert!(
        script.contains("cargo build --release --locked"),
        "{script}"
    );
    assert!(
        dockerfile.contains("RUN scripts/build-release /out")
            || dockerfile.contains("scripts/build-release /out"),
        "the image must build with scripts/build-release, as CI does"
    );
    assert!(
        !dockerfile.contains("cargo build"),
        "the Dockerfile builds only through scripts/build-release"
    );
    assert!(dockerfile.contains("FROM rust:1-bookworm AS build"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    // The build stage installs the same native build libraries as scripts/test.
    for package in [
        "libclang-dev",
        "pkg-config",
        "libxml2-dev",
        "libxmlsec1-dev",
        "libssl-dev",
    ] {
        assert!(
            dockerfile.contains(package),
            "Dockerfile build stage lacks {package}"
        );
        assert!(
            test_script.contains(package),
            "scripts/test lacks {package}"
        );
    }
    for package in [
        "libxml2",
        "libxmlsec1",
        "libxmlsec1-openssl",
        "libssl3",
        "ca-certificates",
    ] {
        assert!(
            dockerfile.contains(&format!(" {package} "))
                || dockerfile.contains(&format!(" {package}\n")),
            "runtime stage lacks {package}"
        );
    }
    for needle in [
        "USER 10001:10001",
        "EXPOSE 8080 9090",
        "ENTRYPOINT [\"samlgate\"]",
        "CMD [\"run\"]",
        "SAMLGATE_CONFIG=/etc/samlgate/samlgate.toml",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    assert!(
        !dockerfile
            .lines()
            .any(|l| l.trim_start().starts_with("HEALTHCHECK")),
        "Kubernetes probes check health; the image has no HEALTHCHECK"
    );
    let ignore = read(&Path::new(ROOT).join(".dockerignore"));
    for entry in ["target", "fuzz/target"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_start_matches('/').trim_end_matches('/') == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

//! `/metrics` of the real binary, after some traffic, is valid exposition text
//! (`promtool check metrics`) and carries every metric SPEC §10 names.
//!
//! samlgate answers in OpenMetrics text (prometheus-client), which Prometheus parses by
//! its Content-Type. `promtool check metrics` (2.42, Debian bookworm) only parses the
//! classic text format, where a counter's HELP/TYPE name carries the `_total` suffix:
//! fed OpenMetrics as is, it reports every counter with samples as "no help text". So
//! the OpenMetrics structure is checked here, and promtool lints the same families
//! rewritten into the classic format (the rewrite only moves `_total` onto the HELP and
//! TYPE names of counters and drops `# UNIT` and `# EOF`).

mod support;

use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{alice, config_toml, get, post_form, program, unix_now, Keys, Samlgate};

/// SPEC §10's metrics as `(family, type)`: OpenMetrics names a counter family without
/// its `_total` suffix, and a family without samples yet still has HELP and TYPE.
const SPEC_METRICS: &[(&str, &str)] = &[
    ("samlgate_http_requests", "counter"),
    ("samlgate_upstream_request_duration_seconds", "histogram"),
    ("samlgate_logins", "counter"),
    ("samlgate_lookup_cache", "counter"),
    ("samlgate_replay_rejections", "counter"),
];

/// [`metrics_after_traffic_as`] in OpenMetrics, as Prometheus asks for it.
async fn metrics_after_traffic() -> String {
    let (content_type, text) =
        metrics_after_traffic_as("Accept: application/openmetrics-text; version=1.0.0\r\n").await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    text
}

/// Starts samlgate (with a tenant lookup, so both lookup caches exist) in front of the
/// mock panel, sends a few kinds of requests, and returns the metrics' content type
/// and text as served for `accept` (a header line or "").
async fn metrics_after_traffic_as(accept: &str) -> (String, String) {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let tenant_lookup = format!(
        "[tenant_lookup]\nurl = \"{}/internal/samlgate/tenants\"\n",
        panel.url()
    );
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", &tenant_lookup));
    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    let session = format!("Cookie: samlgate_session={cookie}\r\n");

    // Proxied with an identity (upstream latency), public, unauthenticated, a login redirect.
    assert_eq!(get(gate.addr, "/reports", &session).await.status, 200);
    assert_eq!(
        get(gate.addr, "/reports?page=2", &session).await.status,
        200
    );
    assert_eq!(get(gate.addr, "/static/app.css", "").await.status, 200);
    assert_eq!(get(gate.addr, "/api/items", "").await.status, 401);
    assert_eq!(
        get(gate.addr, "/reports", "Accept: text/html\r\n")
            .await
            .status,
        302
    );
    // An unknown company, asked of the tenant lookup (a miss, then a hit).
    for _ in 0..2 {
        let login = get(gate.addr, "/saml/login?company_id=nobody", "").await;
        assert!(login.status < 500, "{}", login.status);
    }
    // A SAMLResponse that is not one: a refused login with a reason code.
    let refused = post_form(
        gate.addr,
        "/saml/acs",
        &[
            ("SAMLResponse", "bm90IGEgU0FNTFJlc3BvbnNl"),
            ("RelayState", "/"),
        ],
        "Origin: http://gate.test\r\n",
    )
    .await;
    assert!(
        (400..500).contains(&refused.status),
        "a bogus SAMLResponse is refused: {}",
        refused.status
    );

    let response = get(gate.admin, "/metrics", accept).await;
    assert_eq!(response.status, 200);
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_owned();
    (content_type, response.text())
}

#[tokio::test]
async fn metrics_carry_every_spec_metric() {
    let text = metrics_after_traffic().await;
    // The OpenMetrics structure itself (HELP/TYPE before samples, histogram buckets).
    let families = parse_openmetrics(&text);
    assert!(families.len() >= SPEC_METRICS.len());
    for (family, kind) in SPEC_METRICS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {family} "))),
            "no HELP for {family}:\n{text}"
        );
        assert!(
            text.lines().any(|l| l == format!("# TYPE {family} {kind}")),
            "{family} is not a {kind}:\n{text}"
        );
    }
    // Samples where the traffic above guarantees them.
    for sample in [
        r#"samlgate_http_requests_total{route="proxy",status="200"} 2"#,
        r#"samlgate_http_requests_total{route="public",status="200"} 1"#,
        r#"samlgate_http_requests_total{route="unauthenticated",status="401"} 1"#,
        r#"samlgate_http_requests_total{route="login_redirect",status="302"} 1"#,
        "samlgate_upstream_request_duration_seconds_count 3",
        r#"samlgate_upstream_request_duration_seconds_bucket{le="+Inf"} 3"#,
        r#"samlgate_lookup_cache_total{cache="tenant",result="miss"} 1"#,
        r#"samlgate_lookup_cache_total{cache="tenant",result="hit"} 1"#,
        "samlgate_replay_rejections_total 0",
    ] {
        assert!(text.contains(sample), "no {sample:?} in:\n{text}");
    }
    let lookups: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("samlgate_lookup_cache_total{"))
        .collect();
    for line in &lookups {
        assert!(
            line.contains(r#"cache="account""#) || line.contains(r#"cache="tenant""#),
            "{line}"
        );
        assert!(
            line.contains(r#"result="hit""#) || line.contains(r#"result="miss""#),
            "{line}"
        );
    }
}

#[tokio::test]
async fn refused_logins_are_counted_by_reason() {
    let text = metrics_after_traffic().await;
    assert!(
        text.contains(r#"samlgate_logins_total{outcome="failure",reason=""#),
        "the refused SAMLResponse is not counted:\n{text}"
    );
}

/// One metric family of an OpenMetrics exposition.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<(String, f64)>,
}

/// Checks the OpenMetrics structure of `text` (one HELP and TYPE per family before its
/// samples, sample names the family's plus the suffixes its type allows, cumulative
/// histogram buckets ending in +Inf = _count, `# EOF` last) and returns the families.
fn parse_openmetrics(text: &str) -> Vec<(String, Family)> {
    let mut families: Vec<(String, Family)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().unwrap());
            let value = parts.next().unwrap_or_default();
            if families.last().is_none_or(|(n, _)| n != name) {
                assert!(
                    families.iter().all(|(n, _)| n != name),
                    "family {name} is split in two"
                );
                families.push((name.to_owned(), Family::default()));
            }
            let family = &mut families.last_mut().unwrap().1;
            match keyword {
                "HELP" => {
                    assert!(!family.help && !value.is_empty(), "{line}");
                    family.help = true;
                }
                "TYPE" => {
                    assert!(family.kind.is_empty(), "second TYPE: {line}");
                    family.kind = value.to_owned();
                }
                "UNIT" => assert!(name.ends_with(&format!("_{value}")), "{line}"),
                _ => panic!("unknown descriptor: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let sample = series.split('{').next().unwrap();
        let (name, family) = families.last_mut().expect("a sample before any TYPE");
        let suffixes: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "gauge" | "unknown" => &[""],
            other => panic!("unexpected type {other} of {name}"),
        };
        assert!(
            suffixes.iter().any(|s| sample == format!("{name}{s}")),
            "sample {sample} does not belong to {} family {name}",
            family.kind
        );
        family.samples.push((series.to_owned(), value));
    }
    for (name, family) in &families {
        assert!(family.help, "{name} has no HELP");
        assert!(!family.kind.is_empty(), "{name} has no TYPE");
        if family.kind == "histogram" {
            let buckets: Vec<f64> = family
                .samples
                .iter()
                .filter(|(s, _)| s.starts_with(&format!("{name}_bucket")))
                .map(|(_, v)| *v)
                .collect();
            assert!(
                buckets.windows(2).all(|w| w[0] <= w[1]),
                "{name}: buckets are not cumulative"
            );
            let inf = family
                .samples
                .iter()
                .find(|(s, _)| s.contains(r#"le="+Inf""#))
                .unwrap_or_else(|| panic!("{name}: no +Inf bucket"));
            let count = family
                .samples
                .iter()
                .find(|(s, _)| *s == format!("{name}_count"))
                .unwrap_or_else(|| panic!("{name}: no _count"));
            assert_eq!(inf.1, count.1, "{name}: +Inf bucket != _count");
        }
    }
    families
}

fn promtool_check(promtool: &std::path::Path, text: &str) -> (bool, String) {
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && report.trim().is_empty(), report)
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = program("promtool", &["/usr/bin/promtool"]) else {
        return;
    };
    // What a scraper that does not ask for OpenMetrics (and promtool) gets.
    let (content_type, classic) = metrics_after_traffic_as("").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (ok, report) = promtool_check(&promtool, &classic);
    assert!(
        ok,
        "promtool check metrics found problems:\n{report}\n--- what promtool read:\n{classic}"
    );
}

#[test]
fn promtool_catches_what_it_is_here_for() {
    // The check above is only worth something if promtool complains about bad names.
    let Some(promtool) = program("promtool", &["/usr/bin/promtool"]) else {
        return;
    };
    let bad = "# HELP samlgate_requests Requests.\n# TYPE samlgate_requests counter\n\
               samlgate_requests 1\n\
               # HELP samlgate_latency_milliseconds Latency.\n\
               # TYPE samlgate_latency_milliseconds gauge\nsamlgate_latency_milliseconds 3\n";
    let (ok, report) = promtool_check(&promtool, bad);
    assert!(!ok, "promtool accepted badly named metrics");
    assert!(report.contains("_total"), "{report}");
    assert!(report.contains("seconds"), "{report}");
}

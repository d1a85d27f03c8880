//! Prometheus metrics (SPEC §10), named `samlgate_…`.

use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// What kind of route a request took; a closed set keeps label cardinality bounded.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RouteClass {
    /// Forwarded with an identity.
    proxy,
    /// Forwarded without identity (public_paths).
    public,
    /// Browser navigation sent to log in.
    login_redirect,
    /// API call without a session.
    unauthenticated,
    /// samlgate's own routes.
    samlgate,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteClass,
    status: u16,
}

/// Which lookup cache was consulted.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Cache {
    /// Accounts by company ID and NameID (SPEC §5).
    account,
    /// Tenants looked up by company ID or issuer (SPEC §6).
    tenant,
}

/// Whether a lookup was answered from the cache.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum CacheResult {
    /// Answered from the cache.
    hit,
    /// Not in the cache: asked the panel (or waited for a concurrent call asking it).
    miss,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupCacheLabels {
    cache: Cache,
    result: CacheResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Every metric samlgate exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_duration: Histogram,
    in_flight: Gauge,
    lookup_cache: Family<LookupCacheLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    replay_rejections: Counter,
    sessions_started: Counter,
    config_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("samlgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class and status",
            requests.clone(),
        );
        // 0.5 ms … ~16 s: loopback sidecars answer in well under a millisecond.
        let upstream_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register_with_unit(
            "upstream_request_duration",
            "Time until the upstream answered with response headers",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being handled right now",
            in_flight.clone(),
        );
        let lookup_cache = Family::<LookupCacheLabels, Counter>::default();
        registry.register(
            "lookup_cache",
            "Account and tenant lookups, by cache and whether the cache answered",
            lookup_cache.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Login decisions at the ACS, by outcome and reason code",
            logins.clone(),
        );
        let replay_rejections = Counter::default();
        registry.register(
            "replay_rejections",
            "SAML assertions refused because their ID was seen before",
            replay_rejections.clone(),
        );
        let sessions_started = Counter::default();
        registry.register(
            "sessions_started",
            "Sessions created by successful logins",
            sessions_started.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            config_reloads.clone(),
        );
        Self {
            config_reloads,
            registry,
            requests,
            upstream_duration,
            in_flight,
            lookup_cache,
            logins,
            replay_rejections,
            sessions_started,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: RouteClass, status: StatusCode) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
    }

    /// Records how long the upstream took.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one account lookup, answered from the cache (`hit`) or not.
    pub fn account_cache(&self, hit: bool) {
        self.count_lookup(Cache::account, hit);
    }

    /// Counts one tenant lookup, answered from the cache (`hit`) or not.
    pub fn tenant_cache(&self, hit: bool) {
        self.count_lookup(Cache::tenant, hit);
    }

    // The label enums stay private: `admin` re-exports only what its callers name.
    fn count_lookup(&self, cache: Cache, hit: bool) {
        let result = if hit {
            CacheResult::hit
        } else {
            CacheResult::miss
        };
        self.lookup_cache
            .get_or_create(&LookupCacheLabels { cache, result })
            .inc();
    }

    /// Counts one login decision; `reason` is a closed reason code.
    pub fn login(&self, outcome: &'static str, reason: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { outcome, reason })
            .inc();
        match (outcome, reason) {
            ("success", _) => {
                self.sessions_started.inc();
            }
            (_, "replayed") => {
                self.replay_rejections.inc();
            }
            _ => {}
        }
    }

    /// Counts one configuration reload.
    pub fn config_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Tracks one request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The registry in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The registry in the classic Prometheus text format (0.0.4), for scrapers and
    /// tools (promtool) that do not ask for OpenMetrics: counter families are named
    /// with their `_total` suffix, and there are no `# UNIT` or `# EOF` lines.
    pub fn encode_classic(&self) -> String {
        let open = self.encode();
        let counters: Vec<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|keyword| {
                let (name, tail) = line.strip_prefix(keyword)?.split_once(' ')?;
                counters
                    .contains(&name)
                    .then(|| format!("{keyword}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

/// Decrements the in-flight gauge on drop.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.request(RouteClass::proxy, StatusCode::OK);
        metrics.upstream(Duration::from_millis(3));
        let _guard = metrics.in_flight();
        metrics.account_cache(true);
        metrics.tenant_cache(false);
        metrics.tenant_cache(false);
        metrics.login("failure", "replayed");
        metrics.login("success", "ok");
        let text = metrics.encode();
        assert!(text.contains("samlgate_http_requests_total{route=\"proxy\",status=\"200\"} 1"));
        assert!(text.contains("samlgate_upstream_request_duration_seconds_count 1"));
        assert!(text.contains("samlgate_http_requests_in_flight 1"));
        assert!(text.contains("samlgate_lookup_cache_total{cache=\"account\",result=\"hit\"} 1"));
        assert!(text.contains("samlgate_lookup_cache_total{cache=\"tenant\",result=\"miss\"} 2"));
        assert!(text.contains("samlgate_logins_total{outcome=\"failure\",reason=\"replayed\"} 1"));
        assert!(text.contains("samlgate_replay_rejections_total 1"));
        assert!(text.contains("samlgate_sessions_started_total 1"));
        let classic = metrics.encode_classic();
        assert!(classic.contains("# TYPE samlgate_http_requests_total counter"));
        assert!(classic.contains("# TYPE samlgate_upstream_request_duration_seconds histogram"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}

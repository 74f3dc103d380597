//! The server's metrics, in Prometheus' text format (`GET /metrics` on the admin listener):
//! requests by tenant and status, a latency histogram per tenant, live instances, limits hit
//! and outgoing requests allowed and denied.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One tenant's counters.
#[derive(Default)]
pub struct TenantMetrics {
    /// Responses by status.
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Cumulative latency buckets ([`LATENCY_BUCKETS`]), then the count.
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    /// Limits hit, by kind.
    limits: Mutex<BTreeMap<&'static str, u64>>,
    /// Outgoing requests let through.
    pub outbound_allowed: AtomicU64,
    /// Outgoing requests refused.
    pub outbound_denied: AtomicU64,
}

impl TenantMetrics {
    /// Count one response.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Ok(mut statuses) = self.statuses.lock() {
            *statuses.entry(status).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Count one limit hit.
    pub fn limit(&self, kind: &'static str) {
        if let Ok(mut limits) = self.limits.lock() {
            *limits.entry(kind).or_default() += 1;
        }
    }
}

/// Every tenant's metrics, and the process's.
#[derive(Default)]
pub struct Metrics {
    tenants: Mutex<BTreeMap<String, Arc<TenantMetrics>>>,
    /// Guest instances alive now.
    pub live_instances: AtomicI64,
    /// Connections open now.
    pub connections: AtomicI64,
    /// Connections closed at once because too many were open.
    pub connections_refused: AtomicU64,
}

impl Metrics {
    /// The tenant's counters, made on first use (kept across reloads).
    pub fn tenant(&self, name: &str) -> Arc<TenantMetrics> {
        match self.tenants.lock() {
            Ok(mut tenants) => tenants.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::new(TenantMetrics::default()),
        }
    }

    /// The Prometheus text exposition; `served` gives each configured tenant's state.
    pub fn render(&self, served: &[(String, bool)]) -> String {
        let mut out = String::new();
        let tenants: Vec<(String, Arc<TenantMetrics>)> = match self.tenants.lock() {
            Ok(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        out.push_str("# HELP warrant_requests_total Requests answered, by tenant and status.\n");
        out.push_str("# TYPE warrant_requests_total counter\n");
        for (name, t) in &tenants {
            if let Ok(statuses) = t.statuses.lock() {
                for (status, n) in statuses.iter() {
                    let _ = writeln!(
                        out,
                        "warrant_requests_total{{tenant=\"{name}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str(
            "# HELP warrant_request_duration_seconds Time from a request's arrival to the end of its response.\n",
        );
        out.push_str("# TYPE warrant_request_duration_seconds histogram\n");
        for (name, t) in &tenants {
            for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&t.buckets) {
                let _ = writeln!(
                    out,
                    "warrant_request_duration_seconds_bucket{{tenant=\"{name}\",le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = t.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "warrant_request_duration_seconds_bucket{{tenant=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "warrant_request_duration_seconds_sum{{tenant=\"{name}\"}} {}",
                t.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "warrant_request_duration_seconds_count{{tenant=\"{name}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP warrant_limits_total Requests stopped by a limit, by tenant and limit.\n",
        );
        out.push_str("# TYPE warrant_limits_total counter\n");
        for (name, t) in &tenants {
            if let Ok(limits) = t.limits.lock() {
                for (limit, n) in limits.iter() {
                    let _ = writeln!(
                        out,
                        "warrant_limits_total{{tenant=\"{name}\",limit=\"{limit}\"}} {n}"
                    );
                }
            }
        }
        out.push_str(
            "# HELP warrant_outbound_total Outgoing HTTP requests, by tenant and verdict.\n",
        );
        out.push_str("# TYPE warrant_outbound_total counter\n");
        for (name, t) in &tenants {
            for (verdict, n) in [
                ("allowed", &t.outbound_allowed),
                ("denied", &t.outbound_denied),
            ] {
                let _ = writeln!(
                    out,
                    "warrant_outbound_total{{tenant=\"{name}\",verdict=\"{verdict}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP warrant_tenant_served Whether a tenant is served (1) or not (0).\n");
        out.push_str("# TYPE warrant_tenant_served gauge\n");
        for (name, up) in served {
            let _ = writeln!(
                out,
                "warrant_tenant_served{{tenant=\"{name}\"}} {}",
                u8::from(*up)
            );
        }
        out.push_str("# HELP warrant_live_instances Guest instances alive now.\n");
        out.push_str("# TYPE warrant_live_instances gauge\n");
        let _ = writeln!(
            out,
            "warrant_live_instances {}",
            self.live_instances.load(Ordering::Relaxed)
        );
        out.push_str("# HELP warrant_connections Client connections open now.\n");
        out.push_str("# TYPE warrant_connections gauge\n");
        let _ = writeln!(
            out,
            "warrant_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP warrant_connections_refused_total Connections closed at once: too many open.\n",
        );
        out.push_str("# TYPE warrant_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "warrant_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_statuses_buckets_and_limits() {
        let m = Metrics::default();
        let t = m.tenant("acme");
        t.observe(200, Duration::from_micros(700));
        t.observe(200, Duration::from_millis(30));
        t.observe(504, Duration::from_secs(2));
        t.limit("deadline");
        let text = m.render(&[("acme".into(), true)]);
        assert!(
            text.contains("warrant_requests_total{tenant=\"acme\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("warrant_requests_total{tenant=\"acme\",status=\"504\"} 1\n"));
        assert!(
            text.contains(
                "warrant_request_duration_seconds_bucket{tenant=\"acme\",le=\"0.001\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "warrant_request_duration_seconds_bucket{tenant=\"acme\",le=\"0.05\"} 2\n"
            )
        );
        assert!(
            text.contains(
                "warrant_request_duration_seconds_bucket{tenant=\"acme\",le=\"+Inf\"} 3\n"
            )
        );
        assert!(text.contains("warrant_limits_total{tenant=\"acme\",limit=\"deadline\"} 1\n"));
        assert!(text.contains("warrant_tenant_served{tenant=\"acme\"} 1\n"));
    }
}

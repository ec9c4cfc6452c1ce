//! The daemon's metrics, in the Prometheus (OpenMetrics) text format: API operations by
//! kind and result with their latency, the object counts, and the events an operator wants
//! to alert on (plan rollbacks, reconcile repairs, firewall restores, plugin failures).
//!
//! One set per process, reached through [`global`]: the engine, the firewall and the API
//! count into it where the event happens, and `GET /metrics` renders it with [`render`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationResult {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverLabel {
    driver: String,
}

type Latency = Family<OperationLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric wharfd keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    operations: Family<OperationResult, Counter>,
    latency: Latency,
    networks: Gauge,
    endpoints: Gauge,
    volumes: Gauge,
    sandboxes: Gauge,
    plan_rollbacks: Counter,
    reconcile_repairs: Counter,
    firewall_restores: Counter,
    plugin_errors: Family<DriverLabel, Counter>,
    plugin_panics: Family<DriverLabel, Counter>,
}

/// How many objects of each kind the engine holds, set on each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Objects {
    /// Networks.
    pub networks: usize,
    /// Endpoints (a sandbox's attachment to a network).
    pub endpoints: usize,
    /// Volumes.
    pub volumes: usize,
    /// Sandboxes.
    pub sandboxes: usize,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wharf");
        let operations = Family::<OperationResult, Counter>::default();
        registry.register("operations", "API operations that change state, by kind and result", operations.clone());
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "operation_duration_seconds",
            "How long each kind of API operation takes, in seconds",
            latency.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let networks = gauge(&mut registry, "networks", "Networks, the predefined ones included");
        let endpoints = gauge(&mut registry, "endpoints", "Endpoints: sandboxes' attachments to networks");
        let volumes = gauge(&mut registry, "volumes", "Volumes");
        let sandboxes = gauge(&mut registry, "sandboxes", "Sandboxes");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let plan_rollbacks = counter(
            &mut registry,
            "plan_rollbacks",
            "Plans whose completed steps were undone after a failure or a crash",
        );
        let reconcile_repairs = counter(
            &mut registry,
            "reconcile_repairs",
            "Kernel objects reconcile put back or removed to match the store",
        );
        let firewall_restores = counter(
            &mut registry,
            "firewall_restores",
            "Times wharf's nftables tables were found removed and restored",
        );
        let plugin_errors = Family::<DriverLabel, Counter>::default();
        registry.register(
            "plugin_call_errors",
            "Driver calls that returned an error, by driver",
            plugin_errors.clone(),
        );
        let plugin_panics = Family::<DriverLabel, Counter>::default();
        registry.register("plugin_panics", "Driver calls that panicked, by driver", plugin_panics.clone());
        Metrics {
            registry,
            operations,
            latency,
            networks,
            endpoints,
            volumes,
            sandboxes,
            plan_rollbacks,
            reconcile_repairs,
            firewall_restores,
            plugin_errors,
            plugin_panics,
        }
    }

    /// One API operation of kind `operation` finished after `took`; `ok` says whether it
    /// succeeded, `client_error` whether the request was refused (a 4xx).
    pub fn operation(&self, operation: &'static str, ok: bool, client_error: bool, took: Duration) {
        let result = match (ok, client_error) {
            (true, _) => "ok",
            (false, true) => "refused",
            (false, false) => "failed",
        };
        self.operations.get_or_create(&OperationResult { operation, result }).inc();
        self.latency.get_or_create(&OperationLabel { operation }).observe(took.as_secs_f64());
    }

    /// A plan's completed steps were rolled back.
    pub fn plan_rolled_back(&self) {
        self.plan_rollbacks.inc();
    }

    /// Reconcile repaired one kernel object.
    pub fn reconcile_repaired(&self) {
        self.reconcile_repairs.inc();
    }

    /// wharf's firewall tables were restored after someone removed them.
    pub fn firewall_restored(&self) {
        self.firewall_restores.inc();
    }

    /// A call to `driver` failed; `panicked` when the driver panicked.
    pub fn plugin_failed(&self, driver: &str, panicked: bool) {
        let family = if panicked { &self.plugin_panics } else { &self.plugin_errors };
        family.get_or_create(&DriverLabel { driver: driver.to_string() }).inc();
    }

    fn set_objects(&self, o: Objects) {
        let set = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        set(&self.networks, o.networks);
        set(&self.endpoints, o.endpoints);
        set(&self.volumes, o.volumes);
        set(&self.sandboxes, o.sandboxes);
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Every metric as text, with the object gauges set to `objects`.
pub fn render(objects: Objects) -> String {
    let m = global();
    m.set_objects(objects);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_show_in_the_text() {
        let m = global();
        m.operation("network_create", true, false, Duration::from_millis(3));
        m.operation("network_create", false, true, Duration::from_millis(1));
        m.plugin_failed("bridge", true);
        let text = render(Objects { networks: 4, endpoints: 2, volumes: 1, sandboxes: 3 });
        assert!(text.contains("wharf_operations_total{operation=\"network_create\",result=\"ok\"}"), "{text}");
        assert!(text.contains("wharf_operations_total{operation=\"network_create\",result=\"refused\"}"), "{text}");
        assert!(text.contains("wharf_operation_duration_seconds_count{operation=\"network_create\"}"), "{text}");
        assert!(text.contains("wharf_networks 4\n") && text.contains("wharf_sandboxes 3\n"), "{text}");
        assert!(text.contains("wharf_plugin_panics_total{driver=\"bridge\"}"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

//! What the API tells the operator about each request: one log line (method, path,
//! status, duration; 5xx at error, everything else at debug) and, for an operation that
//! changes state, its count and latency in [`wharf_engine::metrics`]. Also `GET /metrics`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use wharf_engine::engine::Engine;
use wharf_engine::metrics::{self, Objects};

/// The message of an error answer, kept on the response for the request's log line.
#[derive(Clone)]
pub(super) struct ErrorMessage(pub(super) String);

/// The name of the state-changing operation a route carries out, if it is one.
fn operation(method: &Method, route: &str) -> Option<&'static str> {
    let op = match (method.as_str(), route) {
        ("POST", "/networks/create") => "network_create",
        ("DELETE", "/networks/{id}") => "network_remove",
        ("POST", "/networks/prune") => "network_prune",
        ("POST", "/networks/{id}/connect") => "network_connect",
        ("POST", "/networks/{id}/disconnect") => "network_disconnect",
        ("POST", "/volumes/create") => "volume_create",
        ("DELETE", "/volumes/{name}") => "volume_remove",
        ("POST", "/volumes/prune") => "volume_prune",
        ("POST", "/wharf/volumes/{name}/mount") => "volume_mount",
        ("POST", "/wharf/volumes/{name}/unmount") => "volume_unmount",
        ("POST", "/wharf/sandboxes") => "sandbox_create",
        ("DELETE", "/wharf/sandboxes/{id}") => "sandbox_remove",
        ("POST", "/wharf/firewall/reload") => "firewall_reload",
        _ => return None,
    };
    Some(op)
}

/// Log one request, as it came (version prefix included). Wraps the whole router, so
/// refused versions and unknown routes are logged too.
pub(super) async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = resp.extensions().get::<ErrorMessage>().map(|e| e.0.as_str());
    if resp.status().is_server_error() {
        tracing::error!(%method, path, status, duration_ms, error, "API request");
    } else {
        tracing::debug!(%method, path, status, duration_ms, error, "API request");
    }
    resp
}

/// Count a routed request whose route changes state, and time it.
pub(super) async fn count_operation(req: Request, next: Next) -> Response {
    let op = req.extensions().get::<MatchedPath>().and_then(|m| operation(req.method(), m.as_str()));
    let Some(op) = op else { return next.run(req).await };
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    metrics::global().operation(op, status.is_success(), status.is_client_error(), started.elapsed());
    resp
}

/// `GET /metrics`: every metric in the Prometheus text format.
pub(super) async fn metrics_page(State(engine): State<Arc<Engine>>) -> Response {
    let networks = engine.networks();
    let objects = Objects {
        endpoints: networks.iter().map(|n| engine.network_endpoints(&n.id).len()).sum(),
        networks: networks.len(),
        volumes: engine.volumes().len(),
        sandboxes: engine.sandboxes().len(),
    };
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(objects)).into_response()
}

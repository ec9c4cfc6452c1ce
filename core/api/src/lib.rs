//! The HTTP API on the unix socket: Docker Engine API network and volume endpoints, with
//! `/_ping`, `/version`, `/info`, `/events` and what [`system`] answers, plus wharf's own
//! endpoints under `/wharf/`. Behaviour that changed between API versions follows the version
//! the request asked for ([`ApiVersion`]).
//!
//! Handlers parse the request, call the engine on a blocking thread, and render Docker's
//! JSON. Errors become `{"message": ...}` with the status code from [`Error::status`].
//! [`serve`] runs the router on a socket, closing connections whose request headers do not
//! arrive within [`HEADER_READ_TIMEOUT`].

mod events;
pub mod filters;
mod networks;
mod observe;
pub mod shapes;
mod system;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use filters::Filters;
use networks::{
    network_connect, network_create, network_disconnect, network_inspect, network_list, network_prune, network_remove,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use wharf_engine::engine::Engine;
use wharf_engine::error::Error;

/// The newest Docker Engine API version served.
pub const API_VERSION: &str = "1.50";
/// The oldest Docker Engine API version served.
pub const MIN_API_VERSION: &str = "1.24";

type Shared = State<Arc<Engine>>;

/// The API version a request asked for (the minor number of `/v1.NN/`; the newest served when
/// the path has no version), for behaviour that changed between versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32);

type Version = Extension<ApiVersion>;
type Params = Query<HashMap<String, String>>;

/// An engine error on its way to the client, as Docker's `{"message": ...}` with the status
/// code from [`Error::status`].
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(e) = self;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = e.message();
        let mut resp = (status, Json(json!({ "message": message }))).into_response();
        resp.extensions_mut().insert(observe::ErrorMessage(message));
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("engine task failed: {e}")))?
}

fn minor(v: &str) -> Option<u32> {
    v.strip_prefix("1.")?.parse().ok()
}

/// Strip a `/v1.NN` prefix, refusing versions outside the served range with a 400.
async fn versioned(mut req: Request, next: Next) -> Response {
    let mut asked = minor(API_VERSION).unwrap_or(0);
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        let (version, tail) = rest.split_once('/').map(|(v, t)| (v, format!("/{t}"))).unwrap_or((rest, "/".into()));
        if let Some(m) = minor(version) {
            let (max, min) = (minor(API_VERSION).unwrap_or(0), minor(MIN_API_VERSION).unwrap_or(0));
            if m > max {
                let msg =
                    format!("client version {version} is too new. Maximum supported API version is {API_VERSION}");
                return ApiError(Error::InvalidArgument(msg)).into_response();
            }
            if m < min {
                let msg = format!(
                    "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                );
                return ApiError(Error::InvalidArgument(msg)).into_response();
            }
            asked = m;
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("{tail}{query}").parse::<Uri>() {
                *req.uri_mut() = uri;
            }
        }
    }
    req.extensions_mut().insert(ApiVersion(asked));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Server", HeaderValue::from_static(concat!("wharf/", env!("CARGO_PKG_VERSION"), " (linux)")));
    h.insert("OSType", HeaderValue::from_static("linux"));
    resp
}

/// The API's router over `engine`. URIs are normalised (version prefix) before routing.
pub fn router(engine: Arc<Engine>) -> Router {
    let routes = Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/networks", get(network_list))
        .route("/networks/create", post(network_create))
        .route("/networks/prune", post(network_prune))
        .route("/networks/{id}", get(network_inspect).delete(network_remove))
        .route("/networks/{id}/connect", post(network_connect))
        .route("/networks/{id}/disconnect", post(network_disconnect))
        .route("/volumes", get(volume_list))
        .route("/volumes/create", post(volume_create))
        .route("/volumes/prune", post(volume_prune))
        .route("/volumes/{name}", get(volume_inspect).delete(volume_remove))
        .route("/events", get(events::events))
        .route("/system/df", get(system::disk_usage))
        .route("/swarm", get(system::no_swarm))
        .route("/swarm/leave", post(system::no_swarm))
        .route("/containers/{id}/json", get(system::container_inspect))
        .route("/wharf/volumes/{name}", get(volume_inspect_with_usage))
        .route("/wharf/volumes/{name}/mount", post(volume_mount))
        .route("/wharf/volumes/{name}/unmount", post(volume_unmount))
        .route("/wharf/sandboxes", get(sandbox_list).post(sandbox_create))
        .route("/wharf/sandboxes/{id}", get(sandbox_inspect).delete(sandbox_remove))
        .route("/wharf/plugins", get(plugin_list))
        .route("/wharf/firewall/reload", post(firewall_reload))
        .route("/wharf/firewall", get(firewall_show))
        .route("/metrics", get(observe::metrics_page))
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn(observe::count_operation))
        .with_state(engine);
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(versioned))
        .layer(axum::middleware::from_fn(observe::log_request))
}

/// A router that serves `GET /metrics` alone, for a TCP address.
pub fn metrics_router(engine: Arc<Engine>) -> Router {
    Router::new().route("/metrics", get(observe::metrics_page)).with_state(engine)
}

/// How long a client may take to send a request's headers, and a kept-alive connection may
/// stay idle; then the connection is closed, so half-sent requests do not pile up.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve `app` on `listener` over HTTP/1.1 until `shutdown` completes, then let requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::UnixListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait for connections to close.
                    tracing::warn!("accepting an API connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let mut conn = std::pin::pin!(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
            let served = tokio::select! {
                served = conn.as_mut() => served,
                _ = stopped.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("API connection closed: {e}");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(stop);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Any other route: 404, once the request body is read, so a client still sending it sees
/// the answer instead of a broken pipe.
async fn not_found(method: Method, uri: Uri, _body: Bytes) -> ApiError {
    ApiError(Error::NotFound(format!("page not found: {method} {}", uri.path())))
}

async fn ping(method: Method) -> Response {
    let mut h = HeaderMap::new();
    h.insert("Cache-Control", HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Content-Type", HeaderValue::from_static("text/plain; charset=utf-8"));
    let body = if method == Method::HEAD { "" } else { "OK" };
    (StatusCode::OK, h, body).into_response()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": { "Name": "wharf" },
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch(),
                "KernelVersion": kernel_version(), "GitCommit": env!("WHARF_GIT_COMMIT"),
                "GoVersion": env!("WHARF_RUSTC_VERSION"), "BuildTime": env!("WHARF_BUILD_TIME"),
            }
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": env!("WHARF_GIT_COMMIT"),
        "GoVersion": env!("WHARF_RUSTC_VERSION"),
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": env!("WHARF_BUILD_TIME"),
    }))
}

/// The host's memory in bytes, from `/proc/meminfo`; 0 when it cannot be read.
fn total_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

async fn info(State(engine): Shared) -> Json<Value> {
    let plugins = engine.registry().list();
    let names = |k: wharf_engine::registry::Kind| -> Vec<String> {
        plugins.iter().filter(|p| p.kind == k).map(|p| p.name.clone()).collect()
    };
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    Json(json!({
        "ID": engine.id().unwrap_or_default(),
        "Name": hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "OperatingSystem": "wharf",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "KernelVersion": kernel_version(),
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": total_memory(),
        "DockerRootDir": engine.root_dir(),
        "Swarm": {
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
            "Error": "", "RemoteManagers": null,
        },
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0, "Images": 0,
        "Driver": "",
        "Plugins": { "Volume": names(wharf_engine::registry::Kind::Volume), "Network": names(wharf_engine::registry::Kind::Network) },
        "Networks": engine.networks().len(),
        "Volumes": engine.volumes().len(),
        "Sandboxes": engine.sandboxes().len(),
    }))
}

fn filters(q: &HashMap<String, String>) -> Result<Filters, Error> {
    Filters::parse(q.get("filters").map(String::as_str))
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True"))
}

/// wharf's `?dry-run=1` on the operations that change state: answer the steps `op` would
/// carry out, `{"Steps": [...]}`, and change nothing (see [`Engine::dry_run`]).
fn wants_dry_run(q: &HashMap<String, String>) -> bool {
    flag(q, "dry-run")
}

async fn dry_run(engine: Arc<Engine>, op: impl FnOnce(&Engine) -> Result<(), Error> + Send + 'static) -> ApiResult {
    let steps = blocking(move || engine.dry_run(op)).await?;
    Ok(Json(json!({ "Steps": steps })).into_response())
}

/// Whether an object created at `created` (RFC 3339) was created before `until`; a time that
/// cannot be read counts as not before, so nothing is pruned by mistake.
fn created_before(created: &str, until: std::time::SystemTime) -> bool {
    humantime::parse_rfc3339_weak(created).is_ok_and(|c| c < until)
}

fn volume_matches(f: &Filters, v: &wharf_engine::model::Volume) -> Result<bool, Error> {
    Ok(f.any("driver", |d| d == v.driver)
        && f.any("name", |n| v.name.contains(n))
        && f.labels_match("label", &v.labels)
        && f.labels_exclude("label!", &v.labels)
        && f.bool("dangling")?.is_none_or(|d| d == v.mounts.is_empty()))
}

async fn volume_list(State(engine): Shared, Query(q): Params) -> ApiResult {
    let f = filters(&q)?;
    f.only(&["dangling", "driver", "label", "label!", "name"])?;
    let mut out = Vec::new();
    for v in engine.volumes() {
        if volume_matches(&f, &v)? {
            out.push(shapes::volume(&v));
        }
    }
    Ok(Json(json!({ "Volumes": out, "Warnings": [] })).into_response())
}

async fn volume_create(State(engine): Shared, Query(q): Params, body: Bytes) -> ApiResult {
    let req = shapes::volume_create(&body)?;
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.volume_create(req).map(drop)).await;
    }
    let v = blocking(move || engine.volume_create(req)).await?;
    Ok((StatusCode::CREATED, Json(shapes::volume(&v))).into_response())
}

async fn volume_inspect(State(engine): Shared, Path(name): Path<String>) -> ApiResult {
    Ok(Json(shapes::volume(&engine.volume(&name)?)).into_response())
}

async fn volume_remove(State(engine): Shared, Path(name): Path<String>, Query(q): Params) -> ApiResult {
    let force = flag(&q, "force");
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.volume_remove(&name, force)).await;
    }
    blocking(move || engine.volume_remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn volume_inspect_with_usage(State(engine): Shared, Path(name): Path<String>) -> ApiResult {
    let v = engine.volume(&name)?;
    let size = v.status.get("size").and_then(Value::as_i64).unwrap_or(-1);
    Ok(Json(shapes::volume_with_usage(&v, size)).into_response())
}

/// Through API 1.41 a prune took named volumes too; 1.42 made it take anonymous ones only,
/// unless the `all` filter asks for every unused volume.
const VOLUME_PRUNE_ANONYMOUS_ONLY: ApiVersion = ApiVersion(42);

async fn volume_prune(State(engine): Shared, Extension(version): Version, Query(q): Params) -> ApiResult {
    let f = filters(&q)?;
    f.only(&["label", "label!", "all"])?;
    let all = f.bool("all")?.unwrap_or(false) || version < VOLUME_PRUNE_ANONYMOUS_ONLY;
    let report = blocking(move || {
        engine.volume_prune(all, |v| f.labels_match("label", &v.labels) && f.labels_exclude("label!", &v.labels))
    })
    .await?;
    Ok(Json(json!({ "VolumesDeleted": report.removed, "SpaceReclaimed": report.space_reclaimed })).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct MountBody {
    #[serde(rename = "ID")]
    id: String,
}

async fn volume_mount(State(engine): Shared, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let b: MountBody = shapes::parse_body(&body)?;
    let mountpoint = blocking(move || engine.volume_mount(&name, &b.id)).await?;
    Ok(Json(json!({ "Mountpoint": mountpoint })).into_response())
}

async fn volume_unmount(State(engine): Shared, Path(name): Path<String>, body: Bytes) -> ApiResult {
    let b: MountBody = shapes::parse_body(&body)?;
    blocking(move || engine.volume_unmount(&name, &b.id)).await?;
    Ok(StatusCode::OK.into_response())
}

/// Whether sandbox `s`, with its endpoints, passes filters `f`: `id` (prefix), `name`
/// (substring), `label`, `network` (name or id of a network it is connected to).
fn sandbox_matches(
    f: &Filters,
    s: &wharf_engine::model::Sandbox,
    endpoints: &[(wharf_engine::model::Endpoint, wharf_engine::model::Network)],
) -> bool {
    f.any("id", |v| s.id.starts_with(v))
        && f.any("name", |v| s.name.contains(v))
        && f.labels_match("label", &s.labels)
        && f.any("network", |v| endpoints.iter().any(|(_, n)| n.name == v || n.id.starts_with(v)))
}

async fn sandbox_list(State(engine): Shared, Query(q): Params) -> ApiResult {
    let f = filters(&q)?;
    f.only(&["id", "label", "name", "network"])?;
    let mut out = Vec::new();
    for s in engine.sandboxes() {
        let endpoints = engine.sandbox_endpoints(&s.id);
        if sandbox_matches(&f, &s, &endpoints) {
            out.push(shapes::sandbox(&s, &endpoints));
        }
    }
    Ok(Json(out).into_response())
}

async fn sandbox_create(State(engine): Shared, body: Bytes) -> ApiResult {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        name: String,
        netns: Option<String>,
        labels: std::collections::BTreeMap<String, String>,
        dns: Vec<String>,
        dns_search: Vec<String>,
        dns_options: Vec<String>,
    }
    let b: Body = shapes::parse_body(&body)?;
    let servers = b
        .dns
        .iter()
        .map(|s| s.parse().map_err(|_| Error::InvalidArgument(format!("sandbox {}: invalid Dns server {s:?}", b.name))))
        .collect::<Result<_, _>>()?;
    let dns = wharf_engine::model::DnsConfig { servers, search: b.dns_search, options: b.dns_options };
    let netns = b.netns.filter(|p| !p.is_empty());
    let s = blocking(move || engine.sandbox_create_with_dns(&b.name, netns.as_deref(), b.labels, dns)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": s.id, "Netns": s.netns }))).into_response())
}

async fn sandbox_inspect(State(engine): Shared, Path(id): Path<String>) -> ApiResult {
    let s = engine.sandbox(&id)?;
    Ok(Json(shapes::sandbox(&s, &engine.sandbox_endpoints(&s.id))).into_response())
}

async fn sandbox_remove(State(engine): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let force = flag(&q, "force");
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.sandbox_remove(&id, force)).await;
    }
    blocking(move || engine.sandbox_remove(&id, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn plugin_list(State(engine): Shared) -> ApiResult {
    let out: Vec<Value> = engine
        .registry()
        .list()
        .into_iter()
        .map(|d| {
            let (version, sdk) = d.versions.map(|v| (v.version, v.sdk_version)).unwrap_or_default();
            json!({ "Name": d.name, "Kind": d.kind.as_str(), "Source": d.source.to_string(), "AbiVersion": d.abi_version,
                    "Version": version, "SdkVersion": sdk })
        })
        .collect();
    Ok(Json(out).into_response())
}

async fn firewall_reload(State(engine): Shared) -> ApiResult {
    let n = blocking(move || engine.firewall_reload()).await?;
    Ok(Json(json!({ "Facts": n })).into_response())
}

async fn firewall_show(State(engine): Shared) -> ApiResult {
    let report = blocking(move || engine.firewall_show()).await?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests;

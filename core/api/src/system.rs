//! The Docker Engine API endpoints around networks and volumes that tools call as a matter of
//! course: `/system/df` (the volumes part), `/swarm` (wharf is never in a swarm), and
//! `/containers/{id}/json` answered for sandboxes, which stand where Docker has containers.

use super::{blocking, shapes, ApiResult, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};
use wharf_engine::error::Error;
use wharf_engine::model::{Endpoint, Network, Sandbox};

/// `GET /swarm`, `POST /swarm/leave`: Docker's answer on a node that is not in a swarm, which
/// clients take as "nothing to do" (docker-py's `leave_swarm(force=True)` among them).
pub async fn no_swarm() -> ApiResult {
    let body = json!({ "message": "This node is not part of a swarm" });
    Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response())
}

/// `GET /system/df`: volumes with their `UsageData`; wharf has no images, containers or build
/// cache, so those lists are empty. `type` (API 1.42) picks the parts to compute.
pub async fn disk_usage(State(engine): Shared, Query(q): Query<Vec<(String, String)>>) -> ApiResult {
    let types: Vec<&str> = q.iter().filter(|(k, _)| k == "type").map(|(_, v)| v.as_str()).collect();
    if let Some(bad) = types.iter().find(|t| !["container", "image", "volume", "build-cache"].contains(t)) {
        return Err(Error::InvalidArgument(format!("unknown object type: {bad}")).into());
    }
    let wants = |t: &str| types.is_empty() || types.contains(&t);
    let mut out = Map::new();
    if wants("image") {
        out.insert("LayersSize".into(), json!(0));
        out.insert("Images".into(), json!([]));
    }
    if wants("container") {
        out.insert("Containers".into(), json!([]));
    }
    if wants("volume") {
        let volumes = engine.volumes();
        let engine = engine.clone();
        let shown = blocking(move || {
            Ok(volumes
                .iter()
                .map(|v| {
                    let size = engine.volume_size(v).and_then(|s| i64::try_from(s).ok()).unwrap_or(-1);
                    shapes::volume_with_usage(v, size)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        out.insert("Volumes".into(), json!(shown));
    }
    if wants("build-cache") {
        out.insert("BuildCache".into(), json!([]));
    }
    Ok(Json(Value::Object(out)).into_response())
}

/// `GET /containers/{id}/json` for a sandbox: the parts of Docker's container that describe
/// its networks, so clients that follow a network's `Containers` to their containers (such
/// as docker-py's `Network.containers`) find them. Anything else is Docker's 404.
pub async fn container_inspect(State(engine): Shared, Path(id): Path<String>) -> ApiResult {
    let sandbox = engine.sandbox(&id).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("No such container: {id}")),
        other => other,
    })?;
    Ok(Json(container(&sandbox, &engine.sandbox_endpoints(&sandbox.id))).into_response())
}

/// A sandbox in the shape of Docker's `ContainerJSON`: always "running" (its namespace exists
/// as long as it does), with `NetworkSettings.Networks` as Docker's `EndpointSettings`.
pub fn container(s: &Sandbox, endpoints: &[(Endpoint, Network)]) -> Value {
    let networks: Map<String, Value> =
        endpoints.iter().map(|(e, n)| (n.name.clone(), endpoint_settings(e, n))).collect();
    let mode = endpoints.first().map(|(_, n)| n.name.clone()).unwrap_or_else(|| "none".into());
    json!({
        "Id": s.id,
        "Created": s.created,
        "Path": "",
        "Args": [],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": s.created, "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "Image": "",
        "Name": format!("/{}", s.name),
        "Config": { "Hostname": s.name, "Labels": s.labels, "Image": "" },
        "HostConfig": { "NetworkMode": mode },
        "NetworkSettings": { "SandboxKey": s.netns, "Networks": networks },
    })
}

/// Docker's `EndpointSettings` for endpoint `e` on network `n`.
pub fn endpoint_settings(e: &Endpoint, n: &Network) -> Value {
    let mut ipam = Map::new();
    if let Some(a) = e.ipv4.filter(|_| e.static_ipv4) {
        ipam.insert("IPv4Address".into(), json!(a.addr().to_string()));
    }
    if let Some(a) = e.ipv6.filter(|_| e.static_ipv6) {
        ipam.insert("IPv6Address".into(), json!(a.addr().to_string()));
    }
    if !e.link_local_ips.is_empty() {
        ipam.insert("LinkLocalIPs".into(), json!(e.link_local_ips));
    }
    let text = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    json!({
        "IPAMConfig": if ipam.is_empty() { Value::Null } else { Value::Object(ipam) },
        "Links": null,
        "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
        "MacAddress": e.mac.clone().unwrap_or_default(),
        "DriverOpts": if e.options.is_empty() && e.unused_options.is_empty() {
            Value::Null
        } else {
            json!(e.options.iter().chain(&e.unused_options).collect::<std::collections::BTreeMap<_, _>>())
        },
        "GwPriority": e.gw_priority,
        "NetworkID": n.id,
        "EndpointID": e.id,
        "Gateway": text(e.join.gateway_v4),
        "IPAddress": e.ipv4.map(|a| a.addr().to_string()).unwrap_or_default(),
        "IPPrefixLen": e.ipv4.map(|a| a.prefix_len()).unwrap_or(0),
        "IPv6Gateway": text(e.join.gateway_v6),
        "GlobalIPv6Address": e.ipv6.map(|a| a.addr().to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": e.ipv6.map(|a| a.prefix_len()).unwrap_or(0),
        "DNSNames": null,
    })
}

//! The network endpoints of Docker's API: list, inspect, create, remove, prune, connect and
//! disconnect.

use super::{
    blocking, created_before, dry_run, filters, shapes, wants_dry_run, ApiResult, ApiVersion, Params, Shared, Version,
};
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use filters::Filters;
use serde_json::json;
use wharf_engine::error::Error;

fn network_matches(f: &Filters, n: &wharf_engine::model::Network, in_use: bool) -> Result<bool, Error> {
    let builtin = n.predefined;
    Ok(f.any("driver", |v| v == n.driver)
        && f.any("id", |v| n.id.starts_with(v))
        && f.any("name", |v| n.name.contains(v))
        && f.any("scope", |v| v == n.scope)
        && f.any("type", |v| (v == "builtin" && builtin) || (v == "custom" && !builtin))
        && f.labels_exclude("label!", &n.labels)
        && f.labels_match("label", &n.labels)
        && f.bool("dangling")?.is_none_or(|d| d == (!in_use && !builtin)))
}

/// API 1.28 took the endpoints out of the network list; older clients get them there.
const NETWORK_LIST_WITHOUT_CONTAINERS: ApiVersion = ApiVersion(28);
/// API 1.48 brought `EnableIPv4` to network create; older clients' requests leave IPv4 on.
const NETWORK_CREATE_ENABLE_IPV4: ApiVersion = ApiVersion(48);

pub(super) async fn network_list(State(engine): Shared, Extension(version): Version, Query(q): Params) -> ApiResult {
    let f = filters(&q)?;
    f.only(&["driver", "id", "label", "label!", "name", "scope", "type", "dangling"])?;
    f.values_in("type", &["custom", "builtin"])?;
    f.values_in("scope", &["local", "global", "swarm"])?;
    let mut out = Vec::new();
    for n in engine.networks() {
        let eps = engine.network_endpoints(&n.id);
        if network_matches(&f, &n, !eps.is_empty())? {
            let shown = if version < NETWORK_LIST_WITHOUT_CONTAINERS { eps.as_slice() } else { &[] };
            out.push(shapes::network(&n, shown));
        }
    }
    Ok(Json(out).into_response())
}

pub(super) async fn network_inspect(State(engine): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    let n = engine.network(&id)?;
    // `scope` asks for a network of that scope only; `verbose` adds what only swarm
    // services have, which wharf has not.
    if q.get("scope").is_some_and(|s| !s.is_empty() && *s != n.scope) {
        return Err(Error::NotFound(format!("network {id} not found")).into());
    }
    Ok(Json(shapes::network(&n, &engine.network_endpoints(&n.id))).into_response())
}

pub(super) async fn network_create(
    State(engine): Shared,
    Extension(version): Version,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let mut req = shapes::network_create(&body)?;
    if version < NETWORK_CREATE_ENABLE_IPV4 {
        req.enable_ipv4 = None;
    }
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.network_create(req).map(drop)).await;
    }
    let n = blocking(move || engine.network_create(req)).await?;
    let warning = match n.unused_options.keys().map(String::as_str).collect::<Vec<_>>().join(", ") {
        unused if unused.is_empty() => unused,
        unused => format!("no driver reads option(s) {unused}: they are kept but have no effect"),
    };
    Ok((StatusCode::CREATED, Json(json!({ "Id": n.id, "Warning": warning }))).into_response())
}

pub(super) async fn network_remove(State(engine): Shared, Path(id): Path<String>, Query(q): Params) -> ApiResult {
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.network_remove(&id)).await;
    }
    blocking(move || engine.network_remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn network_prune(State(engine): Shared, Query(q): Params) -> ApiResult {
    let f = filters(&q)?;
    f.only(&["label", "label!", "until"])?;
    let until = f.until()?;
    let removed = blocking(move || {
        engine.network_prune(|n| {
            f.labels_match("label", &n.labels)
                && f.labels_exclude("label!", &n.labels)
                && until.is_none_or(|u| created_before(&n.created, u))
        })
    })
    .await?;
    Ok(Json(json!({ "NetworksDeleted": removed })).into_response())
}

/// API 1.48 brought `GwPriority` to an endpoint's settings.
const ENDPOINT_GW_PRIORITY: ApiVersion = ApiVersion(48);

pub(super) async fn network_connect(
    State(engine): Shared,
    Extension(version): Version,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let mut req = shapes::connect(&id, &body)?;
    if version < ENDPOINT_GW_PRIORITY {
        req.gw_priority = 0;
    }
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.connect(req).map(drop)).await;
    }
    blocking(move || engine.connect(req)).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn network_disconnect(
    State(engine): Shared,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Body {
        container: String,
        force: bool,
    }
    let b: Body = shapes::parse_body(&body)?;
    if wants_dry_run(&q) {
        return dry_run(engine, move |e| e.disconnect(&id, &b.container, b.force)).await;
    }
    blocking(move || engine.disconnect(&id, &b.container, b.force)).await?;
    Ok(StatusCode::OK.into_response())
}

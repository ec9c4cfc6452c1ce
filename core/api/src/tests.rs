//! API handler tests: requests through the router to an engine on the recording executor.

use super::*;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;
use wharf_engine::engine::tests::Fixture;

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (u16, HeaderMap, Value) {
    let uri: String = uri
        .chars()
        .map(|c| match c {
            '{' | '}' | '"' | '[' | ']' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

fn app(f: &Fixture) -> Router {
    router(Arc::new(f.engine()))
}

#[tokio::test]
async fn ping_and_version_negotiation() {
    let f = Fixture::new();
    let app = app(&f);
    let (status, headers, body) = call(&app, "GET", "/_ping", "").await;
    assert_eq!(status, 200);
    assert_eq!(body, Value::String("OK".into()));
    assert_eq!(headers["Api-Version"], API_VERSION);
    assert_eq!(headers["OSType"], "linux");
    let (status, _, _) = call(&app, "HEAD", "/v1.41/_ping", "").await;
    assert_eq!(status, 200);
    let (status, _, body) = call(&app, "GET", "/v1.99/version", "").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("too new"));
    let (status, _, body) = call(&app, "GET", "/v1.12/version", "").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("too old"));
    let (_, _, body) = call(&app, "GET", "/v1.47/version", "").await;
    assert_eq!(body["ApiVersion"], API_VERSION);
    assert_eq!(body["MinAPIVersion"], MIN_API_VERSION);
}

#[tokio::test]
async fn network_lifecycle_and_docker_status_codes() {
    let f = Fixture::new();
    let app = app(&f);
    let create = r#"{"Name":"n1","Driver":"testnet","Labels":{"team":"a"}}"#;
    let (status, _, body) = call(&app, "POST", "/v1.47/networks/create", create).await;
    assert_eq!(status, 201, "{body}");
    let id = body["Id"].as_str().unwrap().to_string();
    assert_eq!(call(&app, "POST", "/networks/create", create).await.0, 409);
    assert_eq!(call(&app, "POST", "/networks/create", r#"{"Name":"n2","Driver":"zzz"}"#).await.0, 404);
    let (status, _, body) =
        call(&app, "POST", "/networks/create", r#"{"Name":"n2","Driver":"testnet","Options":{"weird":"1"}}"#).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("weird"));
    assert_eq!(call(&app, "POST", "/networks/create", "{not json").await.0, 400);
    assert_eq!(call(&app, "POST", "/networks/create", r#"{"Name":"bad/name","Driver":"testnet"}"#).await.0, 400);

    let (_, _, list) = call(&app, "GET", "/networks?filters=%7B%22label%22%3A%7B%22team%3Da%22%3Atrue%7D%7D", "").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, _, list) = call(&app, "GET", r#"/networks?filters={"type":["builtin"]}"#, "").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, _, net) = call(&app, "GET", &format!("/networks/{}", &id[..6]), "").await;
    assert_eq!(status, 200);
    assert_eq!(net["Name"], "n1");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");

    assert_eq!(call(&app, "POST", "/wharf/sandboxes", r#"{"Name":"s1"}"#).await.0, 201);
    assert_eq!(call(&app, "POST", "/networks/n1/connect", r#"{"Container":"s1"}"#).await.0, 200);
    let (_, _, net) = call(&app, "GET", "/networks/n1", "").await;
    let containers = net["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers.values().next().unwrap()["IPv4Address"], "172.17.0.2/16");
    assert_eq!(call(&app, "DELETE", "/networks/n1", "").await.0, 403);
    assert_eq!(call(&app, "POST", "/networks/n1/disconnect", r#"{"Container":"s1"}"#).await.0, 200);
    assert_eq!(call(&app, "DELETE", "/networks/host", "").await.0, 403);
    let (_, _, pruned) = call(&app, "POST", "/networks/prune", "").await;
    assert_eq!(pruned["NetworksDeleted"], json!(["n1"]));
    assert_eq!(call(&app, "GET", "/networks/n1", "").await.0, 404);
}

#[tokio::test]
async fn volume_endpoints() {
    let f = Fixture::new();
    let app = app(&f);
    let (status, _, v) = call(&app, "POST", "/volumes/create", r#"{"Name":"data","Labels":{"k":"v"}}"#).await;
    assert_eq!(status, 201);
    assert_eq!(v["Driver"], "local");
    assert_eq!(call(&app, "POST", "/volumes/create", r#"{"Name":"data","Driver":"other"}"#).await.0, 409);
    let (_, _, m) = call(&app, "POST", "/wharf/volumes/data/mount", r#"{"ID":"c1"}"#).await;
    assert!(m["Mountpoint"].as_str().unwrap().ends_with("/data"));
    assert_eq!(call(&app, "DELETE", "/volumes/data", "").await.0, 409);
    let (_, _, list) = call(&app, "GET", r#"/volumes?filters={"dangling":["false"]}"#, "").await;
    assert_eq!(list["Volumes"].as_array().unwrap().len(), 1);
    assert_eq!(call(&app, "POST", "/wharf/volumes/data/unmount", r#"{"ID":"c1"}"#).await.0, 200);
    let (_, _, pruned) = call(&app, "POST", "/volumes/prune", "").await;
    assert_eq!(pruned["VolumesDeleted"], json!([]));
    let (_, _, pruned) = call(&app, "POST", r#"/volumes/prune?filters={"all":["true"]}"#, "").await;
    assert_eq!(pruned["VolumesDeleted"], json!(["data"]));
    assert_eq!(call(&app, "GET", "/volumes/data", "").await.0, 404);
}

#[tokio::test]
async fn shapes_follow_docker() {
    let f = Fixture::new();
    let app = app(&f);
    let (status, _, body) = call(&app, "POST", "/networks/create", r#"{"Name":"with space","Driver":"testnet"}"#).await;
    assert_eq!(status, 201, "{body}");
    let (_, _, net) = call(&app, "GET", "/networks/with%20space", "").await;
    assert_eq!(net["IPAM"]["Options"], Value::Null, "{net}");
    let keys: Vec<&String> = net.as_object().unwrap().keys().collect();
    assert_eq!(keys[..3], ["Name", "Id", "Created"]);
    let create = r#"{"Name":"opts","Driver":"testnet","IPAM":{"Options":{"a":"b"}}}"#;
    assert_eq!(call(&app, "POST", "/networks/create", create).await.0, 201);
    let (_, _, net) = call(&app, "GET", "/networks/opts", "").await;
    assert_eq!(net["IPAM"]["Options"], json!({"a": "b"}));

    call(&app, "POST", "/volumes/create", r#"{"Name":"v1"}"#).await;
    let (_, _, v) = call(&app, "GET", "/volumes/v1", "").await;
    assert!(v.get("UsageData").is_none(), "{v}");
    let (_, _, list) = call(&app, "GET", "/volumes", "").await;
    assert!(list["Volumes"][0].get("UsageData").is_none(), "{list}");
    let (_, _, df) = call(&app, "GET", "/system/df?type=volume", "").await;
    assert_eq!(df["Volumes"][0]["UsageData"]["RefCount"], 0, "{df}");
    assert!(df.get("Images").is_none(), "{df}");
    assert_eq!(call(&app, "GET", "/system/df?type=weird", "").await.0, 400);

    let (status, _, body) = call(&app, "POST", "/v1.47/swarm/leave?force=1", "").await;
    assert_eq!((status, &body["message"]), (503, &json!("This node is not part of a swarm")));
    let (status, _, _) = call(&app, "POST", "/v1.47/containers/create", r#"{"Image":"busybox"}"#).await;
    assert_eq!(status, 404);
    let (_, _, info) = call(&app, "GET", "/info", "").await;
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert!(info["MemTotal"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(info["ID"].as_str().unwrap().len(), 16, "{info}");
    let (_, _, version) = call(&app, "GET", "/version", "").await;
    assert!(version["GoVersion"].as_str().unwrap().starts_with("rustc "), "{version}");
    assert!(version["BuildTime"].as_str().unwrap().ends_with('Z'), "{version}");
}

#[tokio::test]
async fn filters_are_checked_and_applied() {
    let f = Fixture::new();
    let app = app(&f);
    let (status, _, body) = call(&app, "GET", r#"/networks?filters={"type":["weird"]}"#, "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("type=weird"), "{body}");
    for (name, label) in [("keep", "yes"), ("drop", "no")] {
        let body = format!(r#"{{"Name":"{name}","Driver":"testnet","Labels":{{"keep":"{label}"}}}}"#);
        assert_eq!(call(&app, "POST", "/networks/create", &body).await.0, 201);
    }
    let (_, _, list) = call(&app, "GET", r#"/networks?filters={"label!":["keep=yes"],"type":["custom"]}"#, "").await;
    let names: Vec<&Value> = list.as_array().unwrap().iter().map(|n| &n["Name"]).collect();
    assert_eq!(names, [&json!("drop")]);
    // Both were made just now: an until an hour back takes neither, one in the future both
    // but the label kept.
    let (_, _, pruned) = call(&app, "POST", r#"/networks/prune?filters={"until":["1h"]}"#, "").await;
    assert_eq!(pruned["NetworksDeleted"], json!([]));
    let (_, _, pruned) =
        call(&app, "POST", r#"/networks/prune?filters={"until":["4000000000"],"label!":["keep=yes"]}"#, "").await;
    assert_eq!(pruned["NetworksDeleted"], json!(["drop"]));
    assert_eq!(call(&app, "POST", r#"/networks/prune?filters={"until":["soon"]}"#, "").await.0, 400);
}

#[tokio::test]
async fn volume_prune_through_old_api_versions_takes_named_volumes() {
    let f = Fixture::new();
    let app = app(&f);
    for name in ["named1", "named2"] {
        call(&app, "POST", "/volumes/create", &format!(r#"{{"Name":"{name}","Labels":{{"n":"{name}"}}}}"#)).await;
    }
    let (_, _, pruned) = call(&app, "POST", "/v1.42/volumes/prune", "").await;
    assert_eq!(pruned["VolumesDeleted"], json!([]));
    let (_, _, pruned) = call(&app, "POST", r#"/v1.41/volumes/prune?filters={"label!":["n=named2"]}"#, "").await;
    assert_eq!(pruned["VolumesDeleted"], json!(["named1"]));
    let (_, _, pruned) = call(&app, "POST", "/volumes/prune", "").await;
    assert_eq!(pruned["VolumesDeleted"], json!([]));
}

#[tokio::test]
async fn a_sandbox_answers_as_a_container() {
    let f = Fixture::new();
    let app = app(&f);
    call(&app, "POST", "/networks/create", r#"{"Name":"n1","Driver":"testnet"}"#).await;
    call(&app, "POST", "/wharf/sandboxes", r#"{"Name":"s1"}"#).await;
    let connect =
        r#"{"Container":"s1","EndpointConfig":{"Aliases":["web"],"IPAMConfig":{"IPv4Address":"172.17.0.9"}}}"#;
    assert_eq!(call(&app, "POST", "/networks/n1/connect", connect).await.0, 200);
    let (status, _, c) = call(&app, "GET", "/containers/s1/json", "").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["Name"], "/s1");
    let ep = &c["NetworkSettings"]["Networks"]["n1"];
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "172.17.0.9", "{c}");
    assert_eq!(ep["Aliases"], json!(["web"]));
    let (status, _, body) = call(&app, "GET", "/containers/nope/json", "").await;
    assert_eq!((status, &body["message"]), (404, &json!("No such container: nope")));
}

#[tokio::test]
async fn network_endpoints_follow_the_api_version() {
    let f = Fixture::new();
    let app = app(&f);
    call(&app, "POST", "/networks/create", r#"{"Name":"n1","Driver":"testnet"}"#).await;
    call(&app, "POST", "/wharf/sandboxes", r#"{"Name":"s1"}"#).await;
    call(&app, "POST", "/networks/n1/connect", r#"{"Container":"s1"}"#).await;
    let containers = |list: &Value| {
        let n1 = list.as_array().unwrap().iter().find(|n| n["Name"] == "n1").unwrap().clone();
        n1["Containers"].as_object().map_or(0, |c| c.len())
    };
    assert_eq!(containers(&call(&app, "GET", "/v1.27/networks", "").await.2), 1);
    assert_eq!(containers(&call(&app, "GET", "/v1.28/networks", "").await.2), 0);
    assert_eq!(call(&app, "GET", "/networks/n1?scope=local", "").await.0, 200);
    assert_eq!(call(&app, "GET", "/networks/n1?scope=swarm", "").await.0, 404);
    // EnableIPv4 came with API 1.48: before, a network always has IPv4.
    let v4off = r#"{"Name":"old","Driver":"testnet","EnableIPv4":false,"EnableIPv6":true}"#;
    assert_eq!(call(&app, "POST", "/v1.47/networks/create", v4off).await.0, 201);
    let (_, _, old) = call(&app, "GET", "/networks/old", "").await;
    assert_eq!(old["EnableIPv4"], true, "{old}");
    let v4off = r#"{"Name":"new","Driver":"testnet","EnableIPv4":false,"EnableIPv6":true}"#;
    assert_eq!(call(&app, "POST", "/v1.48/networks/create", v4off).await.0, 201);
    let (_, _, new) = call(&app, "GET", "/networks/new", "").await;
    assert_eq!(new["EnableIPv4"], false, "{new}");
}

#[tokio::test]
async fn a_dry_run_answers_the_steps_and_changes_nothing() {
    let f = Fixture::new();
    let app = app(&f);
    f.rec.clear();
    let (status, _, body) =
        call(&app, "POST", "/networks/create?dry-run=1", r#"{"Name":"n1","Driver":"testnet"}"#).await;
    assert_eq!(status, 200, "{body}");
    let steps: Vec<&str> = body["Steps"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(steps.iter().any(|s| s.starts_with("create link br-")), "{steps:?}");
    assert_eq!(call(&app, "GET", "/networks/n1", "").await.0, 404);
    assert!(f.rec.log().is_empty(), "the executor was not asked to do anything: {:?}", f.rec.log());
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let (_, _, events) = call(&app, "GET", &format!("/events?since=0&until={until}"), "").await;
    assert_eq!(events, Value::String(String::new()), "a dry run records no event");
    let (status, _, _) = call(&app, "DELETE", "/volumes/nope?dry-run=1", "").await;
    assert_eq!(status, 404, "a dry run fails as the operation would");
}

//! `GET /events`: network and volume events as Docker streams them, one JSON object per line,
//! with `since`, `until` and `filters` (`type`, `event`, `network`, `volume`, `scope`).

use super::filters::{timestamp, Filters};
use super::{ApiResult, Params, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use futures::StreamExt;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;
use wharf_engine::engine::events::Event;
use wharf_engine::error::Error;

/// Event types Docker knows; wharf has events of two of them.
const TYPES: [&str; 11] =
    ["builder", "config", "container", "daemon", "image", "network", "node", "plugin", "secret", "service", "volume"];

/// Whether `e` passes the filters. A `network` or `volume` filter names objects of that type
/// by id (or a prefix of it) or name, so it lets no event of another type through.
fn matches(f: &Filters, e: &Event) -> bool {
    let names = |kind: &str| {
        f.any(kind, |v| {
            e.kind == kind
                && (e.actor.id == v
                    || e.actor.id.starts_with(v)
                    || e.actor.attributes.get("name").is_some_and(|n| n == v))
        })
    };
    f.any("type", |t| t == e.kind)
        && f.any("event", |a| a == e.action)
        && f.any("scope", |s| s == e.scope)
        && names("network")
        && names("volume")
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn line(e: &Event) -> Result<Bytes, Infallible> {
    let mut text = serde_json::to_vec(e).unwrap_or_default();
    text.push(b'\n');
    Ok(Bytes::from(text))
}

/// Stream the kept events since `since` (none without it) and then new ones, until `until`
/// passes (forever without it) or the daemon stops.
pub async fn events(State(engine): Shared, Query(q): Params) -> ApiResult {
    let f = Filters::parse(q.get("filters").map(String::as_str))?;
    f.only(&["type", "event", "network", "volume", "scope"])?;
    f.values_in("type", &TYPES)?;
    let now = SystemTime::now();
    let time = |name: &str| q.get(name).filter(|v| !v.is_empty()).map(|v| timestamp(v, now)).transpose();
    let (since, until) = (time("since")?, time("until")?);
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(Error::InvalidArgument("`since` time cannot be after `until` time".into()).into());
        }
    }
    let (past, live) = engine.events().subscribe();
    let until_nanos = until.map(nanos);
    let in_window = move |e: &Event| until_nanos.is_none_or(|u| e.time_nano <= u);
    let replay: Vec<Event> = match since.map(nanos) {
        Some(s) => past.into_iter().filter(|e| e.time_nano >= s && in_window(e) && matches(&f, e)).collect(),
        None => Vec::new(),
    };
    let deadline = until.map(|u| tokio::time::Instant::now() + u.duration_since(now).unwrap_or(Duration::ZERO));
    let live = live.filter(|_| until.is_none_or(|u| u > now));
    let follow = futures::stream::unfold((live, f), move |(live, f)| async move {
        let mut rx = live?;
        loop {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok()?,
                None => rx.recv().await,
            };
            match next {
                Ok(e) if matches(&f, &e) && in_window(&e) => return Some((line(&e), (Some(rx), f))),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::stream::iter(replay.iter().map(line).collect::<Vec<_>>()).chain(follow);
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_engine::engine::events::Events;

    #[test]
    fn filters_pick_events_by_type_action_and_object() {
        let events = Events::default();
        events.record("network", "create", "abcdef", &[("name", "web"), ("type", "bridge")]);
        events.record("volume", "create", "data", &[("driver", "local")]);
        let (past, _) = events.subscribe();
        let pick = |raw: &str| -> Vec<&str> {
            let f = Filters::parse(Some(raw)).unwrap();
            past.iter().filter(|e| matches(&f, e)).map(|e| e.actor.id.as_str()).collect()
        };
        assert_eq!(pick(r#"{"type":["volume"]}"#), ["data"]);
        assert_eq!(pick(r#"{"network":["web"]}"#), ["abcdef"]);
        assert_eq!(pick(r#"{"network":["abc"]}"#), ["abcdef"]);
        assert_eq!(pick(r#"{"volume":["data"],"event":["create"]}"#), ["data"]);
        assert!(pick(r#"{"event":["destroy"]}"#).is_empty());
    }
}

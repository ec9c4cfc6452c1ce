//! What happened to networks and volumes, in the shape of Docker's events: the engine records
//! each change once it is committed; `GET /events` replays the recent ones and follows new
//! ones. Only the engine records; readers subscribe.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// How many past events are kept for `since`: as many as dockerd keeps. Each costs about
/// 0.9 KiB of the daemon's memory for as long as it is kept.
const KEPT: usize = 256;

/// The actor of an event: the object's id (a volume's name) and facts about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Actor {
    /// Network id or volume name; empty for a prune.
    #[serde(rename = "ID")]
    pub id: String,
    /// `name`, `type` (driver), `container`, `driver`, `reclaimed`, …
    pub attributes: BTreeMap<String, String>,
}

/// One event, as Docker's `GET /events` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `network` or `volume`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// `create`, `connect`, `disconnect`, `destroy`, `mount`, `unmount`, `prune`.
    #[serde(rename = "Action")]
    pub action: &'static str,
    /// What it happened to.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: &'static str,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The event log: the last [`KEPT`] events, and a channel to follow new ones until the log
/// is closed.
#[derive(Debug)]
pub struct Events {
    log: Mutex<Log>,
}

#[derive(Debug)]
struct Log {
    past: VecDeque<Event>,
    live: Option<broadcast::Sender<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events { log: Mutex::new(Log { past: VecDeque::new(), live: Some(broadcast::channel(KEPT).0) }) }
    }
}

impl Events {
    /// Record that `action` happened to the `kind` object `id`.
    pub fn record(&self, kind: &'static str, action: &'static str, id: &str, attributes: &[(&str, &str)]) {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let time_nano = i64::try_from(nanos).unwrap_or(i64::MAX);
        let attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let event = Event {
            kind,
            action,
            actor: Actor { id: id.to_string(), attributes },
            scope: "local",
            time: time_nano / 1_000_000_000,
            time_nano,
        };
        let mut log = self.lock();
        if log.past.len() == KEPT {
            log.past.pop_front();
        }
        log.past.push_back(event.clone());
        // Sent under the lock, so a subscriber sees each event once: in the past it took
        // together with its receiver, or live.
        if let Some(live) = &log.live {
            let _ = live.send(event);
        }
    }

    /// The kept events, and a receiver of every event after them (`None` once closed).
    pub fn subscribe(&self) -> (Vec<Event>, Option<broadcast::Receiver<Event>>) {
        let log = self.lock();
        (log.past.iter().cloned().collect(), log.live.as_ref().map(broadcast::Sender::subscribe))
    }

    /// End every stream that follows the log, as the daemon stops: receivers see the end.
    pub fn close(&self) {
        self.lock().live = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_and_live_events_meet_without_a_gap() {
        let events = Events::default();
        events.record("network", "create", "n1", &[("name", "a"), ("type", "bridge")]);
        let (past, live) = events.subscribe();
        events.record("volume", "destroy", "v1", &[("driver", "local")]);
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].actor.attributes["type"], "bridge");
        let mut live = live.unwrap();
        let next = live.try_recv().unwrap();
        assert_eq!((next.kind, next.action, next.actor.id.as_str()), ("volume", "destroy", "v1"));
        let json = serde_json::to_value(&next).unwrap();
        assert_eq!(json["Actor"]["ID"], "v1");
        assert_eq!(json["time"], json["timeNano"].as_i64().unwrap() / 1_000_000_000);
        events.close();
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
        assert!(events.subscribe().1.is_none());
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let events = Events::default();
        for i in 0..KEPT + 5 {
            events.record("volume", "create", &format!("v{i}"), &[]);
        }
        let (past, _) = events.subscribe();
        assert_eq!(past.len(), KEPT);
        assert_eq!(past[0].actor.id, "v5");
    }
}

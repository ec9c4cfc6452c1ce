//! Docker's `filters` query parameter: a JSON map of filter name to values, either as
//! `{"name": {"a": true}}` or in the legacy list form `{"name": ["a"]}`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use wharf_engine::error::{Error, Result};

/// Read a time as Docker's `since`/`until` take it (see [`Filters::until`]); a duration is
/// counted back from `now`.
pub fn timestamp(v: &str, now: SystemTime) -> Result<SystemTime> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid timestamp {v:?}: expected a duration (24h), Unix seconds or an RFC 3339 time"
        ))
    };
    if let Some((secs, frac)) = v.split_once('.').or(Some((v, ""))).filter(|(s, f)| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_digit())
    }) {
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let nanos: u32 = format!("{frac:0<9}").get(..9).and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        return Ok(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos));
    }
    if let Ok(d) = humantime::parse_duration(v) {
        return now.checked_sub(d).ok_or_else(bad);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        return Ok(t);
    }
    if v.len() == 10 {
        if let Ok(t) = humantime::parse_rfc3339(&format!("{v}T00:00:00Z")) {
            return Ok(t);
        }
    }
    humantime::parse_rfc3339(v).map_err(|_| bad())
}

/// Parsed filters: name to accepted values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parse the raw query value; empty means no filters.
    pub fn parse(raw: Option<&str>) -> Result<Filters> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(Filters::default()) };
        let value: Value =
            serde_json::from_str(raw).map_err(|e| Error::InvalidArgument(format!("invalid filters {raw:?}: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::InvalidArgument(format!("invalid filters {raw:?}: expected a JSON object")));
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let values: Vec<String> = match v {
                Value::Object(m) => {
                    m.into_iter().filter(|(_, on)| on.as_bool().unwrap_or(false)).map(|(k, _)| k).collect()
                }
                Value::Array(a) => {
                    a.into_iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
                }
                other => return Err(Error::InvalidArgument(format!("invalid filter {k:?}: {other}"))),
            };
            out.insert(k, values);
        }
        Ok(Filters(out))
    }

    /// Refuse filter names not in `allowed`, as Docker does.
    pub fn only(&self, allowed: &[&str]) -> Result<()> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Error::InvalidArgument(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values of filter `name`, if given.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0.get(name).map(Vec::as_slice).filter(|v| !v.is_empty())
    }

    /// True when filter `name` is absent or any of its values satisfies `f`.
    pub fn any(&self, name: &str, f: impl Fn(&str) -> bool) -> bool {
        self.get(name).is_none_or(|vals| vals.iter().any(|v| f(v)))
    }

    /// Whether `labels` satisfy every `label` filter (`key` or `key=value`).
    pub fn labels_match(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(name).is_none_or(|vals| {
            vals.iter().all(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(f.as_str()),
            })
        })
    }

    /// Whether `labels` match none of the `label!` values (`key` or `key=value`).
    pub fn labels_exclude(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(name).is_none_or(|vals| {
            !vals.iter().any(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(f.as_str()),
            })
        })
    }

    /// Refuse any value of filter `name` that `allowed` does not list, as Docker does for
    /// `type=weird`.
    pub fn values_in(&self, name: &str, allowed: &[&str]) -> Result<()> {
        match self.get(name).and_then(|vals| vals.iter().find(|v| !allowed.contains(&v.as_str()))) {
            Some(v) => Err(Error::InvalidArgument(format!("invalid filter '{name}={v}'"))),
            None => Ok(()),
        }
    }

    /// The `until` filter as a point in time: before it is what a prune takes. Docker's forms
    /// are read: a duration before now (`24h`, `90m`), Unix seconds (`1700000000`, with an
    /// optional fraction), an RFC 3339 time, or a date (`2024-01-31`, midnight UTC).
    pub fn until(&self) -> Result<Option<SystemTime>> {
        let Some(vals) = self.get("until") else { return Ok(None) };
        if vals.len() > 1 {
            return Err(Error::InvalidArgument("more than one until filter specified".into()));
        }
        timestamp(&vals[0], SystemTime::now()).map(Some)
    }

    /// A boolean filter such as `dangling=true`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name).and_then(|v| v.first()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(Error::InvalidArgument(format!("invalid filter '{name}={v}'"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let a = Filters::parse(Some(r#"{"name":{"foo":true},"label":{"a=b":true}}"#)).unwrap();
        let b = Filters::parse(Some(r#"{"name":["foo"],"label":["a=b"]}"#)).unwrap();
        assert_eq!(a, b);
        assert!(a.any("name", |v| v == "foo"));
        assert!(a.any("driver", |_| false));
    }

    #[test]
    fn labels_and_bools() {
        let f = Filters::parse(Some(r#"{"label":["a=b","c"],"dangling":["true"]}"#)).unwrap();
        let labels = BTreeMap::from([("a".to_string(), "b".to_string()), ("c".to_string(), String::new())]);
        assert!(f.labels_match("label", &labels));
        assert!(!f.labels_match("label", &BTreeMap::new()));
        assert_eq!(f.bool("dangling").unwrap(), Some(true));
        assert!(f.only(&["label"]).is_err());
    }

    #[test]
    fn until_takes_docker_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(timestamp("1h", now).unwrap(), now - Duration::from_secs(3600));
        assert_eq!(timestamp("1h30m", now).unwrap(), now - Duration::from_secs(5400));
        assert_eq!(timestamp("12", now).unwrap(), SystemTime::UNIX_EPOCH + Duration::from_secs(12));
        assert_eq!(timestamp("12.5", now).unwrap(), SystemTime::UNIX_EPOCH + Duration::from_millis(12500));
        assert_eq!(timestamp("1970-01-02", now).unwrap(), SystemTime::UNIX_EPOCH + Duration::from_secs(86400));
        assert_eq!(timestamp("1970-01-01T00:01:00Z", now).unwrap(), SystemTime::UNIX_EPOCH + Duration::from_secs(60));
        assert_eq!(timestamp("yesterday", now).unwrap_err().status(), 400);
        let f = Filters::parse(Some(r#"{"type":["weird"]}"#)).unwrap();
        assert_eq!(f.values_in("type", &["custom", "builtin"]).unwrap_err().status(), 400);
    }

    #[test]
    fn garbage_is_a_400() {
        assert_eq!(Filters::parse(Some("{nope")).unwrap_err().status(), 400);
        assert_eq!(Filters::parse(Some("[1]")).unwrap_err().status(), 400);
    }
}

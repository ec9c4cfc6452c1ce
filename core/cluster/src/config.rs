//! Where the cluster store is and how to talk to it: `etcd://HOST:PORT[,HOST:PORT…]` and
//! the TLS files.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// The TLS files for talking to etcd over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// The CA certificate that signed etcd's server certificate.
    pub ca: Option<PathBuf>,
    /// This host's client certificate, when etcd asks for one.
    pub cert: Option<PathBuf>,
    /// The key of the client certificate.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is given, which turns TLS on.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// How to reach the cluster store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The address as given, which errors name.
    pub url: String,
    /// `host:port` of each etcd member.
    pub members: Vec<String>,
    /// TLS files; none given means plain HTTP.
    pub tls: TlsFiles,
    /// Every key lives under this prefix.
    pub prefix: String,
    /// How long a host's registration outlives its last renewal.
    pub ttl: Duration,
    /// How long a call may wait for the store before it fails.
    pub timeout: Duration,
}

/// The default TTL of a host's lease.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// The default time a call waits for the store.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

impl StoreConfig {
    /// Read `etcd://HOST:PORT[,HOST:PORT…]`.
    pub fn parse(url: &str) -> Result<StoreConfig> {
        let bad = |why: &str| Error::Invalid(format!("cluster store {url:?}: {why}"));
        let rest = url.strip_prefix("etcd://").ok_or_else(|| bad("only etcd://HOST:PORT[,HOST:PORT…] is supported"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("give HOST:PORT pairs without a path"));
        }
        let mut members = Vec::new();
        for m in rest.split(',') {
            let m = m.trim();
            let (host, port) = m.rsplit_once(':').ok_or_else(|| bad(&format!("{m:?} has no port")))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!("{m:?} is not HOST:PORT")));
            }
            members.push(m.to_string());
        }
        Ok(StoreConfig {
            url: url.to_string(),
            members,
            tls: TlsFiles::default(),
            prefix: "/wharf/".to_string(),
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The members as URLs of the scheme TLS calls for.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.is_set() { "https" } else { "http" };
        self.members.iter().map(|m| format!("{scheme}://{m}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_or_more_members() {
        let c = StoreConfig::parse("etcd://10.0.0.1:2379,[fd00::1]:2379").unwrap();
        assert_eq!(c.members, ["10.0.0.1:2379", "[fd00::1]:2379"]);
        assert_eq!(c.endpoints(), ["http://10.0.0.1:2379", "http://[fd00::1]:2379"]);
    }

    #[test]
    fn refuses_what_is_not_an_etcd_address() {
        for bad in ["consul://a:1", "etcd://a", "etcd://a:0", "etcd://:2379", "etcd://a:2379/x", "etcd://a:b"] {
            let e = StoreConfig::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

//! A small HTTP/1.1 client for the API socket, used by the `wharf` CLI.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;

/// A client of one daemon socket.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
}

/// A response: status and JSON body (a string when the body is not JSON).
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Client {
    /// A client for the socket named by `host` (`unix:///path` or a plain path).
    pub fn new(host: &str) -> Result<Client, String> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if host.contains("://") && !host.starts_with("unix://") {
            return Err(format!("unsupported host {host:?}: only unix:// sockets are supported"));
        }
        Ok(Client { socket: PathBuf::from(path) })
    }

    /// Send one request and read the response.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response, String> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| self.cannot_connect(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {}: {e}", self.socket.display()))?;
        tokio::spawn(conn);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "wharf")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| format!("bad request {path}: {e}"))?;
        let resp = sender.send_request(req).await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| format!("{method} {path}: {e}"))?.to_bytes();
        let body =
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
        Ok(Response { status, body })
    }

    /// Why the socket cannot be reached, with what to do about it: start the daemon when
    /// nothing listens, or join the socket's group when it refuses this user.
    fn cannot_connect(&self, e: &std::io::Error) -> String {
        use std::io::ErrorKind;
        use std::os::unix::fs::MetadataExt;
        let path = self.socket.display();
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                format!("cannot connect to wharfd at {path}: {e}; is wharfd running? (start it, or name its socket with -H)")
            }
            ErrorKind::PermissionDenied => {
                let group = std::fs::metadata(&self.socket).ok().map(|m| {
                    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                        .ok()
                        .flatten()
                        .map_or_else(|| format!("gid {}", m.gid()), |g| g.name)
                });
                match group {
                    Some(g) => format!(
                        "permission denied on {path} (group {g}): run as root or as a member of group {g} (wharfd --group)"
                    ),
                    None => format!("permission denied on {path}: run as root, or give the socket a group with wharfd --group"),
                }
            }
            _ => format!("cannot connect to wharfd at {path}: {e}"),
        }
    }

    /// Send a request; a non-2xx status becomes the daemon's error message.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let r = self.request(method, path, body).await?;
        if (200..300).contains(&r.status) {
            Ok(r.body)
        } else {
            let msg =
                r.body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| r.body.to_string());
            Err(format!("Error response from daemon: {msg}"))
        }
    }
}

//! iperf3 in network namespaces: a server, and a client's throughput.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An iperf3 server in namespace file `netns`, stopped on drop.
#[derive(Debug)]
pub struct Iperf(Child);

impl Iperf {
    /// Start it, and give it a moment to listen.
    pub fn serve(netns: &str) -> Result<Iperf, String> {
        let child = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["--", "iperf3", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("iperf3: {e}"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Iperf(child))
    }
}

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Gbit/s received by an iperf3 client in `netns` sending to `to` for `secs`.
pub fn client(netns: &str, to: &str, port: u16, secs: u32) -> Result<f64, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "iperf3", "-J", "-c", to, "-p", &port.to_string(), "-t", &secs.to_string()])
        .output()
        .map_err(|e| format!("iperf3: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3 -c {to}:{port}: {e}"));
    }
    v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9).ok_or_else(|| "iperf3: no result".into())
}

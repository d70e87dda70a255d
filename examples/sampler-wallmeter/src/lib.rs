//! `wallmeter`: an example third-party ipw sampler reading a smart plug over local HTTP, with
//! nothing but the ipw sampler SDK, serde and the standard library (one HTTP/1.0 GET per read
//! on a plain `TcpStream`).
//!
//! Settings: `url` (the plug, e.g. `http://192.168.1.50`), `kind` (`shelly`: Gen2+ devices,
//! `GET /rpc/Switch.GetStatus?id=0`; `tasmota`: `GET /cm?cmnd=Status%208`), `timeout_ms`
//! (per request, default 2000).
//!
//! Channels: `wall`, the plug's cumulative energy (Shelly `aenergy.total` in Wh, Tasmota
//! `ENERGY.Total` in kWh) as an energy counter, shaped by `wall-power`, the instant power it
//! reports beside it (Shelly `apower`, Tasmota `ENERGY.Power`, watts).

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, Channel, ChannelKind, Domain, Reading, Sampler,
};
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Which firmware's API the plug speaks.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Shelly Gen2 and later (Plus/Pro): JSON-RPC over HTTP.
    Shelly,
    /// Tasmota firmware with an energy monitor.
    Tasmota,
}

impl Kind {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Shelly => "/rpc/Switch.GetStatus?id=0",
            Kind::Tasmota => "/cm?cmnd=Status%208",
        }
    }

    /// Smallest step of the energy total, joules. Assumed from the units and the decimals the
    /// firmwares print by default: Shelly's `aenergy.total` in Wh with 3 decimals (1 mWh =
    /// 3.6 J); Tasmota's `Total` in kWh with `EnergyRes 3` (1 Wh = 3600 J). A Tasmota set to
    /// more decimals is finer than declared, which is safe; fewer would be coarser.
    pub fn resolution_j(self) -> f64 {
        match self {
            Kind::Shelly => 3.6,
            Kind::Tasmota => 3600.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    kind: Kind,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
}

fn default_timeout() -> u64 {
    2000
}

/// One reading from the plug.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlugReading {
    /// Instant active power, watts.
    pub power_w: f64,
    /// Cumulative energy, joules.
    pub energy_j: f64,
}

/// `host[:port]` of an `http://` URL (a path after it is ignored: the API paths are fixed).
pub fn host_port(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "wallmeter: url `{url}` must start with http:// (plugs speak plain HTTP on the LAN)"
        )
    })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("wallmeter: url `{url}` has no host"));
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// One HTTP/1.0 GET, the whole exchange bounded by `timeout`; the body of a 200 response.
pub fn http_get(host_port: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("wallmeter: cannot resolve {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("wallmeter: {host_port} resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("wallmeter: cannot connect to {host_port}: {e}"))?;
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left(deadline))).ok();
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("wallmeter: {host_port}: cannot send the request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Each read gets what is left of the whole budget: a plug trickling bytes cannot stall
        // the sampler past `timeout_ms`.
        if Instant::now() >= deadline {
            return Err(format!(
                "wallmeter: {host_port}: timed out after {} ms",
                timeout.as_millis()
            ));
        }
        s.set_read_timeout(Some(left(deadline))).ok();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "wallmeter: {host_port}: timed out after {} ms",
                    timeout.as_millis()
                ));
            }
            Err(e) => return Err(format!("wallmeter: {host_port}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("wallmeter: {host_port}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("wallmeter: {host_port}{path}: `{status}`"));
    }
    Ok(body.to_string())
}

/// The number at a JSON pointer, or an error naming the field.
fn number(v: &serde_json::Value, pointer: &str, kind: &str) -> Result<f64, String> {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| {
            format!(
                "wallmeter: the {kind} response has no number at `{}`",
                pointer.trim_start_matches('/').replace('/', ".")
            )
        })
}

/// Parse a response body of `kind`.
pub fn parse(kind: Kind, body: &str) -> Result<PlugReading, String> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("wallmeter: the {kind:?} response is not JSON ({e})"))?;
    Ok(match kind {
        Kind::Shelly => PlugReading {
            power_w: number(&v, "/apower", "shelly")?,
            energy_j: number(&v, "/aenergy/total", "shelly")? * 3600.0,
        },
        Kind::Tasmota => PlugReading {
            power_w: number(&v, "/StatusSNS/ENERGY/Power", "tasmota")?,
            energy_j: number(&v, "/StatusSNS/ENERGY/Total", "tasmota")? * 3.6e6,
        },
    })
}

/// The sampler: one plug.
pub struct WallMeter {
    host_port: String,
    kind: Kind,
    timeout: Duration,
}

impl WallMeter {
    /// Ask the plug once; the reading and the midpoint of the exchange (the plug's figures
    /// are from some moment within it).
    fn ask(&self) -> Result<(f64, PlugReading), String> {
        let t0 = monotonic_now();
        let body = http_get(&self.host_port, self.kind.path(), self.timeout)?;
        let t1 = monotonic_now();
        Ok(((t0 + t1) / 2.0, parse(self.kind, &body)?))
    }
}

impl Sampler for WallMeter {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("wallmeter config: {e}"))?;
        let m = WallMeter {
            host_port: host_port(&cfg.url)?,
            kind: cfg.kind,
            timeout: Duration::from_millis(cfg.timeout_ms),
        };
        // Fail now, with the reason, rather than at the first measurement.
        m.ask()?;
        Ok(m)
    }

    fn channels(&self) -> Vec<Channel> {
        vec![
            Channel {
                name: "wall".into(),
                domain: Domain::System,
                device: Some(self.host_port.clone()),
                kind: ChannelKind::EnergyCounter {
                    resolution_j: self.kind.resolution_j(),
                    // Totals only grow (a user can reset them; the host reads that as a reset).
                    wrap_j: None,
                },
                // Both firmwares update their meter readings about once a second (assumed;
                // neither documents a rate for the HTTP figures).
                update_period_s: 1.0,
                // No accuracy is declared: the vendors' published figures are for their
                // metering chips under test conditions, which this example cannot vouch for.
                accuracy: Default::default(),
                shaped_by: Some("wall-power".into()),
            },
            Channel {
                name: "wall-power".into(),
                domain: Domain::Telemetry,
                device: Some(self.host_port.clone()),
                kind: ChannelKind::Telemetry { unit: "W".into() },
                update_period_s: 1.0,
                accuracy: Default::default(),
                shaped_by: None,
            },
        ]
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let (t, r) = self.ask()?;
        out.push(Reading {
            channel: 0,
            timestamp_s: t,
            value: r.energy_j,
        });
        out.push(Reading {
            channel: 1,
            timestamp_s: t,
            value: r.power_w,
        });
        Ok(())
    }
}

export_sampler!(WallMeter, "wallmeter");

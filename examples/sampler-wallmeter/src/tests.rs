//! Tests against a loopback fake plug: a thread answering HTTP with canned bodies.

use super::*;
use serde_json::json;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A fake plug serving `bodies` in turn (the last one again once they run out), recording the
/// request lines it got. `delay` holds each answer back.
struct Plug {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn plug(bodies: Vec<String>, delay: Duration) -> Plug {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for (i, conn) in l.incoming().enumerate() {
            let Ok(mut c) = conn else { break };
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.lock()
                .unwrap()
                .push(req.lines().next().unwrap_or_default().to_string());
            std::thread::sleep(delay);
            let body = &bodies[i.min(bodies.len() - 1)];
            let _ = c.write_all(
                format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
                    .as_bytes(),
            );
        }
    });
    Plug { url, requests }
}

fn shelly(apower: f64, total_wh: f64) -> String {
    json!({
        "id": 0, "source": "init", "output": true, "apower": apower, "voltage": 231.4,
        "freq": 50.0, "current": 0.512,
        "aenergy": { "total": total_wh, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1700000000 },
        "temperature": { "tC": 38.1, "tF": 100.6 }
    })
    .to_string()
}

fn tasmota(power: f64, total_kwh: f64) -> String {
    json!({ "StatusSNS": { "Time": "2024-05-01T12:00:00", "ENERGY": {
        "TotalStartTime": "2024-01-01T00:00:00", "Total": total_kwh, "Yesterday": 1.2,
        "Today": 0.3, "Power": power, "ApparentPower": 130, "ReactivePower": 40,
        "Factor": 0.92, "Voltage": 230, "Current": 0.565
    }}})
    .to_string()
}

#[test]
fn shelly_energy_and_power() {
    let p = plug(
        vec![shelly(118.5, 1234.567), shelly(120.0, 1234.601)],
        Duration::ZERO,
    );
    let mut m = <WallMeter as Sampler>::open(&json!({ "url": p.url, "kind": "shelly" })).unwrap();
    let mut out = Vec::new();
    m.read(&mut out).unwrap();
    assert_eq!(out.len(), 2);
    // Wh to J.
    assert!((out[0].value - 1234.601 * 3600.0).abs() < 1e-6, "{out:?}");
    assert_eq!(out[1].value, 120.0);
    assert_eq!(out[0].timestamp_s, out[1].timestamp_s);
    assert_eq!(
        p.requests.lock().unwrap()[0],
        "GET /rpc/Switch.GetStatus?id=0 HTTP/1.0"
    );
    let ch = m.channels();
    assert_eq!(ch[0].shaped_by.as_deref(), Some("wall-power"));
    assert!(matches!(
        ch[0].kind,
        ChannelKind::EnergyCounter { resolution_j, wrap_j: None } if resolution_j == 3.6
    ));
    assert!(ch[0].accuracy.is_none());
}

#[test]
fn tasmota_energy_and_power() {
    let p = plug(vec![tasmota(120.0, 12.345)], Duration::ZERO);
    let mut m = <WallMeter as Sampler>::open(&json!({ "url": p.url, "kind": "tasmota" })).unwrap();
    let mut out = Vec::new();
    m.read(&mut out).unwrap();
    // kWh to J.
    assert!((out[0].value - 12.345 * 3.6e6).abs() < 1e-3, "{out:?}");
    assert_eq!(out[1].value, 120.0);
    assert_eq!(
        p.requests.lock().unwrap()[0],
        "GET /cm?cmnd=Status%208 HTTP/1.0"
    );
    assert!(matches!(
        m.channels()[0].kind,
        ChannelKind::EnergyCounter { resolution_j, .. } if resolution_j == 3600.0
    ));
}

#[test]
fn a_slow_plug_times_out() {
    let p = plug(vec![shelly(1.0, 1.0)], Duration::from_millis(1500));
    let t = Instant::now();
    let e =
        <WallMeter as Sampler>::open(&json!({ "url": p.url, "kind": "shelly", "timeout_ms": 200 }))
            .err()
            .unwrap();
    assert!(e.contains("timed out after 200 ms"), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn garbage_names_the_field() {
    let cases = [
        (
            Kind::Shelly,
            json!({ "apower": 5.0, "aenergy": { "total": "lots" } }).to_string(),
            "aenergy.total",
        ),
        (
            Kind::Shelly,
            json!({ "aenergy": { "total": 1.0 } }).to_string(),
            "apower",
        ),
        (
            Kind::Tasmota,
            json!({ "StatusSNS": { "ENERGY": { "Total": 1.0 } } }).to_string(),
            "StatusSNS.ENERGY.Power",
        ),
        (
            Kind::Tasmota,
            json!({ "StatusSNS": { "ENERGY": { "Power": 1.0 } } }).to_string(),
            "StatusSNS.ENERGY.Total",
        ),
    ];
    for (kind, body, field) in cases {
        let e = parse(kind, &body).unwrap_err();
        assert!(e.contains(&format!("`{field}`")), "{e}");
    }
    let e = parse(Kind::Shelly, "<html>not json</html>").unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    // Through the sampler too.
    let p = plug(vec!["{\"apower\": null}".into()], Duration::ZERO);
    let e = <WallMeter as Sampler>::open(&json!({ "url": p.url, "kind": "shelly" }))
        .err()
        .unwrap();
    assert!(e.contains("`apower`"), "{e}");
}

#[test]
fn urls_and_statuses() {
    assert_eq!(host_port("http://10.0.0.5").unwrap(), "10.0.0.5:80");
    assert_eq!(
        host_port("http://plug.lan:8080/x").unwrap(),
        "plug.lan:8080"
    );
    assert!(host_port("https://plug").unwrap_err().contains("http://"));
    // A non-200 answer is an error with the status line.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut b = [0u8; 512];
            let _ = c.read(&mut b);
            let _ = c.write_all(b"HTTP/1.0 401 Unauthorized\r\n\r\n");
        }
    });
    let e = http_get(&addr, "/rpc/Switch.GetStatus?id=0", Duration::from_secs(2)).unwrap_err();
    assert!(e.contains("401 Unauthorized"), "{e}");
}

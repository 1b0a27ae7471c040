//! Acknowledged means stored: the server is killed (SIGKILL) while 16 gateways send single
//! state reports as fast as it answers (so reports are being committed together, see the
//! store's `group_commit`), restarted on the same database, and every report it answered
//! 200 is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, http};

pub fn cases() -> Vec<Case> {
    vec![case!(sync every_acknowledged_report_survives_sigkill_under_group_commit).once()]
}

fn every_acknowledged_report_survives_sigkill_under_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let mut server = ServerProcess::start(dir.path(), &db, &[("RUST_LOG", "info")]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Fleet" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let gateways = 16;
    let devices: Vec<String> = (0..gateways)
        .map(|i| {
            let d = http::post(
                &base,
                &format!("/applications/{app}/devices"),
                &session,
                json!({ "name": format!("gw{i}"), "attributes": [{ "name": "t", "dataType": "number" }] }),
            )
            .expect(201);
            d["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // Each gateway sends one report per request, each at its own time, and records the times
    // the server acknowledged.
    let t0 = tollgate_store::now_ms() - 3_600_000;
    let acked: Arc<Mutex<Vec<Vec<i64>>>> = Arc::new(Mutex::new(vec![Vec::new(); gateways]));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(g, device)| {
            let (base, session, app, device) =
                (base.clone(), session.clone(), app.clone(), device.clone());
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for k in 0..900i64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let time = t0 + k;
                    let r = http::try_call(
                        &base,
                        "POST",
                        &format!("/applications/{app}/devices/{device}/state"),
                        Some(&session),
                        Some(&json!({ "time": time, "data": { "t": k } })),
                    );
                    match r {
                        Ok(r) if r.status == 200 => acked.lock().unwrap()[g].push(time),
                        // The server is gone: the report may or may not be stored.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().iter().map(Vec::len).sum::<usize>() < 400 {
        assert!(Instant::now() < deadline, "the gateways are too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.iter().map(Vec::len).sum();

    let server = ServerProcess::start(dir.path(), &db, &[("RUST_LOG", "info")]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let mut missing = Vec::new();
    for (g, device) in devices.iter().enumerate() {
        let r = http::get(
            &base,
            &format!(
                "/applications/{app}/devices/{device}/state?start={t0}&end={}&limit=1000&sortDirection=asc",
                t0 + 1000
            ),
            &session,
        )
        .expect(200);
        let stored: std::collections::BTreeSet<i64> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let t = &s["time"];
                t.as_i64()
                    .unwrap_or_else(|| chrono_ms(t.as_str().expect("a time")))
            })
            .collect();
        missing.extend(
            acked[g]
                .iter()
                .filter(|t| !stored.contains(t))
                .map(|t| (g, *t)),
        );
    }
    eprintln!(
        "acknowledged before the kill: {total}; missing after restart: {}",
        missing.len()
    );
    assert!(total >= 400);
    assert!(
        missing.is_empty(),
        "{} acknowledged reports are missing after SIGKILL, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Milliseconds since the epoch of an RFC 3339 time as the API returns it.
fn chrono_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

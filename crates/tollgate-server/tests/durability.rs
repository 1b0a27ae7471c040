//! Acknowledged means stored: the server is killed (SIGKILL) while 16 gateways send single
//! state reports as fast as it answers (half with an application API token, half with a
//! user session; reports are being committed together, see the store's `group_commit`, and
//! the test waits until its metrics show batches of several requests) and two more send
//! batches of 20 (each committed alone), restarted on the same database, and every report it
//! answered 200 is there. On SQLite, checkpoints run meanwhile in the background (the
//! store's `checkpointer`), so the kill may land in one. On PostgreSQL only the token's
//! requests are committed together (sessions commit alone); the kill is of the server, not of
//! the database, and proves that nothing is acknowledged before its commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_testkit::{Case, case};

use crate::common::process::{ServerProcess, http};

pub fn cases() -> Vec<Case> {
    vec![case!(sync every_acknowledged_report_survives_sigkill_under_group_commit)]
}

fn every_acknowledged_report_survives_sigkill_under_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::common::fresh_database_url(dir.path()));
    let mut server = ServerProcess::start(dir.path(), &db, &[("RUST_LOG", "info")]);
    let base = server.url.clone();
    let session = http::admin_session(&base);
    let app = http::post(&base, "/applications", &session, json!({ "name": "Fleet" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let token = http::post(
        &base,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "gateways", "scope": ["device.sendState"] }),
    )
    .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Gateways 0..16 send one report per request; 16 and 17 send 20 per request.
    let single = 16;
    let gateways = single + 2;
    let batch = 20i64;
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
    // Each gateway sends reports each at its own time, and records the times the server
    // acknowledged.
    let t0 = tollgate_store::now_ms() - 3_600_000;
    let acked: Arc<Mutex<Vec<Vec<i64>>>> = Arc::new(Mutex::new(vec![Vec::new(); gateways]));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(g, device)| {
            let credential = if g % 2 == 0 { &token } else { &session };
            let (base, credential, app, device) = (
                base.clone(),
                credential.clone(),
                app.clone(),
                device.clone(),
            );
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let per_request = if g < single { 1 } else { batch };
                let mut k = 0i64;
                while k < 900 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let times: Vec<i64> = (k..k + per_request).map(|i| t0 + i).collect();
                    k += per_request;
                    let reports: Vec<_> = times
                        .iter()
                        .map(|t| json!({ "time": t, "data": { "t": t - t0 } }))
                        .collect();
                    let body = if per_request == 1 {
                        reports[0].clone()
                    } else {
                        json!(reports)
                    };
                    let r = http::try_call(
                        &base,
                        "POST",
                        &format!("/applications/{app}/devices/{device}/state"),
                        Some(&credential),
                        Some(&body),
                    );
                    match r {
                        Ok(r) if r.status == 200 => acked.lock().unwrap()[g].extend(times),
                        // The server is gone: the reports may or may not be stored.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Killed once enough is acknowledged, including batches of both batching gateways, and
    // the group commit has committed requests together (more requests than transactions).
    let grouped = || {
        let metrics = http::text(&base, "/metrics");
        let counter = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        counter("tollgate_state_group_commit_requests_total ")
            > counter("tollgate_state_group_commits_total ")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (count, batched) = {
            let acked = acked.lock().unwrap();
            let count = acked.iter().map(Vec::len).sum::<usize>();
            (count, acked[single..].iter().all(|a| !a.is_empty()))
        };
        if count >= 800 && batched && grouped() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateways are too slow, or never grouped"
        );
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
    assert!(total >= 800);
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

//! Data queries over HTTP: time-series results against a straightforward computation over
//! the same generated points, last values, bad input, and the dashboard token's boundary.

use std::collections::BTreeMap;
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use serde_json::{Value, json};
use tollgate_server::time::iso;
use tollgate_store::now_ms;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const RES: i64 = 5 * MINUTE;

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n as u64) as i64
    }
}

/// A generated device: name, floor tag, and its temperature points `(time, value)`.
type Generated = (String, String, Vec<(i64, f64)>);

struct Fixture {
    t: TestApp,
    session: String,
    app: String,
    /// device id → what was generated for it
    devices: BTreeMap<String, Generated>,
    /// Start of the generated hour (aligned to a minute, an hour and a half ago).
    base: i64,
}

/// Three thermostats (two on floor 3, one on floor 2) reporting temperature and a boolean
/// about every 20 s for an hour, in batches; a few reports fall just outside the hour and
/// exactly on bucket edges.
async fn fixture() -> Fixture {
    let t = TestApp::new().await;
    let (user, session) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await.to_string();
    let base = (now_ms() - 90 * MINUTE) / MINUTE * MINUTE;
    let mut rng = Lcg(42);
    let mut devices = BTreeMap::new();
    for (name, floor) in [("A", "3"), ("B", "3"), ("C", "2")] {
        let d = t
            .post(
                &format!("/applications/{app}/devices"),
                &session,
                json!({
                    "name": name,
                    "tags": [{ "key": "floor", "value": floor }],
                    "attributes": [
                        { "name": "temperature", "dataType": "number" },
                        { "name": "on", "dataType": "boolean" },
                        { "name": "label", "dataType": "string" }
                    ]
                }),
            )
            .await
            .expect(201);
        let id = d["id"].as_str().unwrap().to_owned();
        let mut times: Vec<i64> = (0..180)
            .map(|i| base + i * 20_000 + rng.below(20_000))
            .collect();
        // Edges: the first and last millisecond of the window, bucket boundaries, outside.
        times.extend([
            base,
            base + RES,
            base + 2 * RES - 1,
            base + HOUR - 1,
            base + HOUR,
            base - 1,
        ]);
        times.sort();
        times.dedup();
        let mut points = Vec::new();
        let mut reports = Vec::new();
        for time in times {
            // Values with fractions and a wide spread (negative too).
            let v = (rng.below(2_000_001) - 1_000_000) as f64 / 1000.0;
            points.push((time, v));
            reports.push(json!({ "time": time, "data": { "temperature": v, "on": rng.below(2) == 1, "label": "x" } }));
        }
        for chunk in reports.chunks(100) {
            t.post(
                &format!("/applications/{app}/devices/{id}/state"),
                &session,
                Value::Array(chunk.to_vec()),
            )
            .await
            .expect(200);
        }
        devices.insert(id, (name.to_owned(), floor.to_owned(), points));
    }
    Fixture {
        t,
        session,
        app,
        devices,
        base,
    }
}

/// The straightforward computation: every bucket of the window, scan every point.
fn reference(points: &[(i64, f64)], start: i64, end: i64, res: i64, agg: &str) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut lo = start;
    while lo < end {
        let hi = (lo + res).min(end);
        let mut inside: Vec<(i64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0 >= lo && p.0 < hi)
            .collect();
        inside.sort_by_key(|p| p.0);
        if !inside.is_empty() {
            let vals: Vec<f64> = inside.iter().map(|p| p.1).collect();
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let mut sorted = vals.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let v = match agg {
                "FIRST" => vals[0],
                "LAST" => vals[vals.len() - 1],
                "COUNT" => n,
                "MAX" => sorted[sorted.len() - 1],
                "MIN" => sorted[0],
                "SUM" => vals.iter().sum(),
                "MEAN" => mean,
                "MEDIAN" => {
                    let m = sorted.len() / 2;
                    if sorted.len().is_multiple_of(2) {
                        (sorted[m - 1] + sorted[m]) / 2.0
                    } else {
                        sorted[m]
                    }
                }
                "STD_DEV" => (vals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt(),
                other => panic!("{other}"),
            };
            out.push((lo, v));
        }
        lo += res;
    }
    out
}

fn points_of(resp: &Value, device: &str, attr: &str) -> Vec<(String, f64)> {
    resp["devices"][device]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            p["data"][attr]
                .as_f64()
                .map(|v| (p["time"].as_str().unwrap().to_owned(), v))
        })
        .collect()
}

async fn every_aggregation_agrees_with_a_reference_computation() {
    let f = fixture().await;
    let (start, end) = (f.base, f.base + HOUR);
    let url = format!("/applications/{}/data/time-series-query", f.app);
    for agg in [
        "FIRST", "LAST", "COUNT", "MAX", "MIN", "MEDIAN", "MEAN", "SUM", "STD_DEV",
    ] {
        let resp =
            f.t.post(
                &url,
                &f.session,
                json!({
                    "start": start, "end": end, "resolution": RES, "aggregation": agg,
                    "attributes": ["temperature"],
                    "deviceTags": [{ "key": "floor", "value": "3" }]
                }),
            )
            .await
            .expect(200);
        assert_eq!(resp["aggregation"], agg);
        assert_eq!(resp["resolution"], RES);
        assert_eq!(resp["start"], iso(start));
        assert_eq!(resp["end"], iso(end));
        let selected: Vec<&String> = f
            .devices
            .iter()
            .filter(|(_, d)| d.1 == "3")
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            resp["devices"].as_object().unwrap().len(),
            2,
            "{agg}: only floor 3"
        );
        for id in selected {
            let (name, _, points) = &f.devices[id];
            assert_eq!(resp["devices"][id]["name"], name.as_str());
            assert_eq!(resp["devices"][id]["tags"], json!({ "floor": ["3"] }));
            let got = points_of(&resp, id, "temperature");
            let want = reference(points, start, end, RES, agg);
            assert_eq!(got.len(), 12, "{agg}: one value per 5-minute bucket");
            assert_eq!(got.len(), want.len(), "{agg}");
            for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
                assert_eq!(gt, &iso(*wt), "{agg}");
                assert!(
                    (gv - wv).abs() <= 1e-9 * (1.0 + wv.abs()),
                    "{agg} at {gt}: got {gv}, want {wv}"
                );
            }
        }
    }
    // The same through device ids, with a window that does not divide evenly and an odd
    // resolution.
    let id = f.devices.keys().next().unwrap().clone();
    let (start, end, res) = (f.base + 7_777, f.base + 45 * MINUTE + 3, 333_333);
    let resp = f
        .t
        .post(&url, &f.session, json!({ "start": start, "end": end, "resolution": res, "aggregation": { "type": "MEAN" }, "deviceIds": [id] }))
        .await
        .expect(200);
    assert_eq!(resp["devices"].as_object().unwrap().len(), 1);
    let got = points_of(&resp, &id, "temperature");
    let want = reference(&f.devices[&id].2, start, end, res, "MEAN");
    assert_eq!(got.len(), want.len());
    for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
        assert_eq!(gt, &iso(*wt));
        assert!((gv - wv).abs() <= 1e-9 * (1.0 + wv.abs()));
    }
    // Booleans aggregate as 1/0; strings do not aggregate.
    let on = points_of(&resp, &id, "on");
    assert_eq!(on.len(), want.len());
    assert!(on.iter().all(|(_, v)| (0.0..=1.0).contains(v)));
    assert!(points_of(&resp, &id, "label").is_empty());
}

async fn raw_points_last_hour_and_last_values() {
    let f = fixture().await;
    let url = format!("/applications/{}/data/time-series-query", f.app);
    let id = f.devices.keys().next().unwrap().clone();
    let points = &f.devices[&id].2;
    // NONE: raw points, newest first, limited.
    let resp = f
        .t
        .post(
            &url,
            &f.session,
            json!({ "start": f.base, "end": f.base + HOUR, "aggregation": "NONE", "limit": 5, "order": "desc", "deviceIds": [id], "attributes": ["temperature", "label"] }),
        )
        .await
        .expect(200);
    assert_eq!(resp["limit"], 5);
    assert_eq!(resp["resolution"], Value::Null);
    let got = resp["devices"][&id]["points"].as_array().unwrap();
    let mut inside: Vec<&(i64, f64)> = points
        .iter()
        .filter(|p| p.0 >= f.base && p.0 < f.base + HOUR)
        .collect();
    inside.sort_by_key(|p| std::cmp::Reverse(p.0));
    assert_eq!(got.len(), 5);
    for (g, w) in got.iter().zip(&inside) {
        assert_eq!(g["time"], iso(w.0));
        assert_eq!(g["data"]["temperature"].as_f64().unwrap(), w.1);
        assert_eq!(g["data"]["label"], "x");
    }

    // The dashboard's question: the last hour relative to now, all floor-3 devices.
    let resp = f
        .t
        .post(&url, &f.session, json!({ "end": 0, "duration": HOUR, "resolution": RES, "aggregation": "COUNT", "deviceTags": [{ "key": "floor", "value": "3" }] }))
        .await
        .expect(200);
    let now = now_ms();
    for (id, (_, floor, points)) in &f.devices {
        if floor != "3" {
            assert!(resp["devices"].get(id).is_none());
            continue;
        }
        let total: i64 = resp["devices"][id]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["data"]["temperature"].as_i64().unwrap())
            .sum();
        // Points in [now - 1h, now): the fixture's second half-hour and a bit.
        let window_start =
            tollgate_server::time::parse_iso(resp["start"].as_str().unwrap()).unwrap();
        let want = points
            .iter()
            .filter(|p| p.0 >= window_start && p.0 < window_start + HOUR)
            .count() as i64;
        assert_eq!(total, want);
        assert!(window_start <= now - HOUR + 1 && window_start >= now - HOUR - 60_000);
    }

    // Last values: per device, the latest point at or before `end`.
    let lv = format!("/applications/{}/data/last-value-query", f.app);
    let resp =
        f.t.post(&lv, &f.session, json!({ "attribute": "temperature" }))
            .await
            .expect(200);
    assert_eq!(resp.as_object().unwrap().len(), 3);
    for (id, (_, _, points)) in &f.devices {
        let last = points.iter().max_by_key(|p| p.0).unwrap();
        assert_eq!(resp[id]["time"], iso(last.0));
        assert_eq!(resp[id]["data"]["temperature"].as_f64().unwrap(), last.1);
    }
    let cut = f.base + 30 * MINUTE;
    let resp =
        f.t.post(
            &lv,
            &f.session,
            json!({ "attribute": "temperature", "end": cut, "deviceTags": [{ "value": "2" }] }),
        )
        .await
        .expect(200);
    assert_eq!(resp.as_object().unwrap().len(), 1);
    let (cid, (_, _, cpoints)) = f.devices.iter().find(|(_, d)| d.1 == "2").unwrap();
    let last = cpoints
        .iter()
        .filter(|p| p.0 <= cut)
        .max_by_key(|p| p.0)
        .unwrap();
    assert_eq!(resp[cid]["data"]["temperature"].as_f64().unwrap(), last.1);
    // An attribute no device has: nothing.
    let resp =
        f.t.post(&lv, &f.session, json!({ "attribute": "humidity" }))
            .await
            .expect(200);
    assert_eq!(resp, json!({}));
}

async fn bad_queries_are_400s_and_other_applications_devices_are_invisible() {
    let f = fixture().await;
    let url = format!("/applications/{}/data/time-series-query", f.app);
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "aggregation": "MEAN" }), "resolution is required"),
        (
            json!({ "resolution": 1, "duration": 86_400_000 }),
            "more than 10000 buckets",
        ),
        (
            json!({ "resolution": 0.5 }),
            "resolution must be a whole number",
        ),
        (json!({ "resolution": -5 }), "at least 1"),
        (
            json!({ "resolution": 60000, "aggregation": "AVERAGE" }),
            "aggregation",
        ),
        (
            json!({ "resolution": 60000, "aggregation": { "type": "TIMEATVALUE", "options": { "value": 1 } } }),
            "TIMEATVALUE is not supported",
        ),
        (
            json!({ "resolution": 60000, "deviceQuery": { "name": "A" } }),
            "deviceQuery",
        ),
        (
            json!({ "resolution": 60000, "start": 2000, "end": 1000 }),
            "start must be before end",
        ),
        (json!({ "resolution": 60000, "duration": -1 }), "duration"),
        (json!({ "resolution": 60000, "order": "up" }), "order"),
        (json!({ "aggregation": "NONE", "limit": 0 }), "limit"),
        (
            json!({ "resolution": 60000, "deviceIds": ["nope"] }),
            "deviceIds",
        ),
        (
            json!({ "resolution": 60000, "deviceTags": [{}] }),
            "tag filter",
        ),
        (
            json!({ "resolution": 60000, "attributes": ["bad name"] }),
            "attributes",
        ),
        (json!({ "resolution": 60000, "colour": 1 }), "colour"),
        (json!([1]), "object"),
    ];
    for (body, needle) in &cases {
        let r = f.t.post(&url, &f.session, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{needle}: {}", r.message());
    }
    let lv = format!("/applications/{}/data/last-value-query", f.app);
    for (body, needle) in [
        (json!({}), "attribute is required"),
        (json!({ "attribute": "bad name" }), "attribute"),
        (json!({ "attribute": "t", "end": 1.5 }), "end"),
    ] {
        let r = f.t.post(&lv, &f.session, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{}", r.message());
    }

    // Another application's user names our devices by id: they match nothing there; our
    // application's path is a 404 for them.
    let (other_user, other) = f.t.login("other@example.com").await;
    let other_app = f.t.app_of(other_user, "Theirs").await;
    let ids: Vec<&String> = f.devices.keys().collect();
    let resp =
        f.t.post(
            &format!("/applications/{other_app}/data/time-series-query"),
            &other,
            json!({ "resolution": HOUR, "deviceIds": ids }),
        )
        .await
        .expect(200);
    assert_eq!(resp["devices"], json!({}));
    let resp =
        f.t.post(
            &format!("/applications/{other_app}/data/last-value-query"),
            &other,
            json!({ "attribute": "temperature", "deviceIds": ids }),
        )
        .await
        .expect(200);
    assert_eq!(resp, json!({}));
    assert_eq!(
        f.t.post(&url, &other, json!({ "resolution": HOUR }))
            .await
            .status,
        404
    );
}

/// The dashboard token: time-series and last-value queries only.
async fn a_dashboard_token_queries_data_and_nothing_else() {
    let f = fixture().await;
    let token = f
        .t
        .api_token(&f.session, f.app.parse().unwrap(), json!({ "name": "dashboard", "scope": ["data.timeSeriesQuery", "data.lastValueQuery"] }))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = &f.app;
    let r = f
        .t
        .post(&format!("/applications/{app}/data/time-series-query"), &token, json!({ "end": 0, "duration": HOUR, "resolution": RES, "aggregation": "MEAN", "attributes": ["temperature"], "deviceTags": [{ "key": "floor", "value": "3" }] }))
        .await
        .expect(200);
    assert_eq!(r["devices"].as_object().unwrap().len(), 2);
    let r =
        f.t.post(
            &format!("/applications/{app}/data/last-value-query"),
            &token,
            json!({ "attribute": "temperature" }),
        )
        .await
        .expect(200);
    assert_eq!(r.as_object().unwrap().len(), 3);
    let id = f.devices.keys().next().unwrap();
    for (method, path, body) in [
        (
            axum::http::Method::GET,
            format!("/applications/{app}/devices"),
            None,
        ),
        (
            axum::http::Method::GET,
            format!("/applications/{app}/devices/{id}"),
            None,
        ),
        (
            axum::http::Method::GET,
            format!("/applications/{app}/devices/{id}/state"),
            None,
        ),
        (
            axum::http::Method::POST,
            format!("/applications/{app}/devices/{id}/state"),
            Some(json!({ "data": { "temperature": 1 } })),
        ),
        (
            axum::http::Method::GET,
            format!("/applications/{app}/flows"),
            None,
        ),
    ] {
        let r = f.t.send(method.clone(), &path, Some(&token), body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_aggregation_agrees_with_a_reference_computation),
        case!(raw_points_last_hour_and_last_values),
        case!(bad_queries_are_400s_and_other_applications_devices_are_invisible),
        case!(a_dashboard_token_queries_data_and_nothing_else),
    ]
}

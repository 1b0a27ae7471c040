//! Devices, device state and commands over HTTP: every action, its bad inputs, other
//! applications' ids, and what tokens with narrow scopes may and may not do.

use crate::common::TestApp;
use axum::http::Method;
use serde_json::{Value, json};
use tollgate_store::now_ms;
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

/// A user, their session and an application they own.
async fn setup() -> (TestApp, String, String) {
    let t = TestApp::new().await;
    let (user, session) = t.login("owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    (t, session, app.to_string())
}

fn thermostat(name: &str, floor: &str) -> Value {
    json!({
        "name": name,
        "description": "Hall thermostat",
        "deviceClass": "standalone",
        "tags": [{ "key": "floor", "value": floor }, { "key": "kind", "value": "thermo" }],
        "attributes": [
            { "name": "temperature", "dataType": "number" },
            { "name": "heating", "dataType": "boolean" },
            { "name": "mode", "dataType": "string" },
            { "name": "position", "dataType": "gps" },
            { "name": "snapshot", "dataType": "blob", "contentType": "image/png" }
        ]
    })
}

async fn create(t: &TestApp, token: &str, app: &str, body: Value) -> String {
    let d = t
        .post(&format!("/applications/{app}/devices"), token, body)
        .await
        .expect(201);
    d["id"].as_str().unwrap().to_owned()
}

async fn count_rows(t: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(t.store().pool())
        .await
        .unwrap()
}

async fn devices_are_created_read_listed_patched_and_deleted() {
    let (t, s, app) = setup().await;
    let base = format!("/applications/{app}/devices");
    let created = t.post(&base, &s, thermostat("Hall", "3")).await.expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["deviceId"], id);
    assert_eq!(created["applicationId"], app);
    assert_eq!(created["name"], "Hall");
    assert_eq!(created["deviceClass"], "standalone");
    assert_eq!(created["tags"][0], json!({ "key": "floor", "value": "3" }));
    assert_eq!(created["attributes"][4]["contentType"], "image/png");
    assert_eq!(created["attributes"].as_array().unwrap().len(), 5);

    let got = t.get(&format!("{base}/{id}"), &s).await.expect(200);
    assert_eq!(got, created);

    // A few more to list, filter and page.
    let gw = create(
        &t,
        &s,
        &app,
        json!({ "name": "Gateway", "deviceClass": "gateway" }),
    )
    .await;
    create(&t, &s, &app, thermostat("Attic", "4")).await;
    create(&t, &s, &app, thermostat("Basement", "3")).await;

    let all = t.get(&base, &s).await.expect(200);
    assert_eq!(all["totalCount"], 4);
    let names = crate::common::item_names(&all);
    assert_eq!(names, ["Attic", "Basement", "Gateway", "Hall"]);
    assert_eq!(all["applicationId"], app);

    let page = t
        .get(
            &format!("{base}?perPage=2&page=1&sortField=name&sortDirection=desc"),
            &s,
        )
        .await
        .expect(200);
    let names = crate::common::item_names(&page);
    assert_eq!(names, ["Basement", "Attic"]);
    assert_eq!(
        (page["count"].as_i64(), page["totalCount"].as_i64()),
        (Some(2), Some(4))
    );

    let floor3 = t
        .get(
            &format!("{base}?tagFilter[0][key]=floor&tagFilter[0][value]=3"),
            &s,
        )
        .await
        .expect(200);
    let names = crate::common::item_names(&floor3);
    assert_eq!(names, ["Basement", "Hall"]);
    // As the official clients send it: brackets percent-encoded, spaces as `+`.
    let encoded = t
        .get(
            &format!("{base}?tagFilter%5B0%5D%5Bkey%5D=floor&tagFilter%5B0%5D%5Bvalue%5D=3"),
            &s,
        )
        .await
        .expect(200);
    assert_eq!(encoded, floor3);
    // Every entry must match; a value alone matches any key.
    let both = t
        .get(&format!("{base}?tagFilter[0][key]=floor&tagFilter[0][value]=3&tagFilter[1][value]=thermo&filterField=name&filter=h*"), &s)
        .await
        .expect(200);
    assert_eq!(both["totalCount"], 1);
    assert_eq!(both["items"][0]["name"], "Hall");
    let gateways = t
        .get(&format!("{base}?deviceClass=gateway"), &s)
        .await
        .expect(200);
    assert_eq!(gateways["totalCount"], 1);
    assert_eq!(gateways["items"][0]["id"], gw);

    // Patch: rename, retag, point at the gateway; other fields stay.
    let patched = t
        .patch(
            &format!("{base}/{id}"),
            &s,
            json!({ "name": "Hall 2", "tags": [{ "key": "floor", "value": "5" }], "gatewayId": gw, "deviceClass": "peripheral" }),
        )
        .await
        .expect(200);
    assert_eq!(patched["name"], "Hall 2");
    assert_eq!(patched["gatewayId"], gw);
    assert_eq!(patched["deviceClass"], "peripheral");
    assert_eq!(patched["description"], "Hall thermostat");
    assert_eq!(patched["attributes"], created["attributes"]);
    let floor3 = t
        .get(
            &format!("{base}?tagFilter[0][key]=floor&tagFilter[0][value]=3"),
            &s,
        )
        .await
        .expect(200);
    assert_eq!(floor3["totalCount"], 1);
    let floor5 = t
        .get(&format!("{base}?tagFilter[0][value]=5"), &s)
        .await
        .expect(200);
    assert_eq!(floor5["items"][0]["id"], id);

    t.delete(&format!("{base}/{id}"), &s).await.expect(200);
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.status, 404);
    assert_eq!(t.delete(&format!("{base}/{id}"), &s).await.status, 404);
    assert_eq!(t.get(&base, &s).await.expect(200)["totalCount"], 3);
    assert_eq!(count_rows(&t, "device_tags").await, 4); // Attic 2, Basement 2, Gateway 0
}

async fn bad_device_input_is_a_400_that_changes_nothing() {
    let (t, s, app) = setup().await;
    let base = format!("/applications/{app}/devices");
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let before = t.get(&format!("{base}/{id}"), &s).await.expect(200);

    let long = "x".repeat(256);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": long }), "name"),
        (
            json!({ "name": "d", "attributes": [{ "name": "t", "dataType": "xml" }] }),
            "dataType",
        ),
        (
            json!({ "name": "d", "attributes": [{ "name": "t" }] }),
            "dataType",
        ),
        (
            json!({ "name": "d", "attributes": [{ "name": "bad name", "dataType": "number" }] }),
            "name",
        ),
        (
            json!({ "name": "d", "attributes": [{ "name": "t", "dataType": "number" }, { "name": "t", "dataType": "string" }] }),
            "declared twice",
        ),
        (
            json!({ "name": "d", "tags": [{ "key": "a b", "value": "1" }] }),
            "key",
        ),
        (json!({ "name": "d", "tags": [{ "key": "a" }] }), "value"),
        (
            json!({ "name": "d", "deviceClass": "toaster" }),
            "deviceClass",
        ),
        (json!({ "name": "d", "colour": "red" }), "colour"),
        (json!({ "name": 5 }), "name"),
        (
            json!({ "name": "d", "gatewayId": "0123456789abcdef01234567" }),
            "gatewayId does not name a device",
        ),
        (
            json!({ "name": "d", "systemInterval": 2 }),
            "systemInterval",
        ),
    ];
    for (body, needle) in &cases {
        let r = t.post(&base, &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{body}: {}", r.message());
        assert_eq!(r.body["type"], "Validation");
    }
    for raw in ["{", "", "[1,2]", "null"] {
        let r = t
            .send_raw(
                Method::POST,
                &base,
                Some(&s),
                Some(raw),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(r.status, 400, "{raw:?}: {}", r.body);
    }
    // Patches are checked the same way, and the device is untouched.
    for (body, needle) in [
        (json!({ "name": "" }), "name"),
        (
            json!({ "attributes": [{ "name": "t", "dataType": "number" }, { "name": "t", "dataType": "number" }] }),
            "declared twice",
        ),
        (json!({ "gatewayId": id }), "itself"),
        (json!({ "deviceId": id }), "deviceId"),
    ] {
        let r = t.patch(&format!("{base}/{id}"), &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{body}: {}", r.message());
    }
    assert_eq!(t.get(&format!("{base}/{id}"), &s).await.expect(200), before);
    assert_eq!(t.get(&base, &s).await.expect(200)["totalCount"], 1);

    // Bad ids and list parameters.
    let r = t.get(&format!("{base}/not-an-id"), &s).await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("24 hexadecimal"), "{}", r.message());
    for (q, needle) in [
        ("sortField=connectionStatus", "sortField must be one of"),
        ("perPage=0", "perPage"),
        ("deviceClass=toaster", "deviceClass"),
        ("tagFilter[0][key]=a%20b", "tag keys"),
        ("query=%7B%7D", "not supported"),
        ("tagsAsObject=true", "tagsAsObject"),
    ] {
        let r = t.get(&format!("{base}?{q}"), &s).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.message().contains(needle), "{q}: {}", r.message());
    }
    let r = t.get(&format!("{base}/0123456789abcdef01234567"), &s).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.message(), "Device was not found");
}

async fn ids_from_another_application_are_404s_and_change_nothing() {
    let (t, s, app) = setup().await;
    let (other_user, other) = t.login("other@example.com").await;
    let other_app = t.app_of(other_user, "Theirs").await;
    let theirs = create(
        &t,
        &other,
        &other_app.to_string(),
        thermostat("Theirs", "1"),
    )
    .await;
    t.post(
        &format!("/applications/{other_app}/devices/{theirs}/state"),
        &other,
        json!({ "data": { "temperature": 20 } }),
    )
    .await
    .expect(200);
    let (_, mine_token) = t
        .raw_token(
            app.parse().unwrap(),
            &["all.Application"],
            TokenStatus::Active,
            None,
        )
        .await;

    // Their device under my application's path, with my session and with my token.
    let dev = format!("/applications/{app}/devices/{theirs}");
    for token in [&s, &mine_token] {
        let calls: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, dev.clone(), None),
            (
                Method::PATCH,
                dev.clone(),
                Some(json!({ "name": "mine now" })),
            ),
            (Method::DELETE, dev.clone(), None),
            (
                Method::POST,
                format!("{dev}/state"),
                Some(json!({ "data": { "temperature": 99 } })),
            ),
            (Method::GET, format!("{dev}/state"), None),
            (Method::GET, format!("{dev}/compositeState"), None),
            (
                Method::POST,
                format!("{dev}/command"),
                Some(json!({ "name": "reboot" })),
            ),
            (Method::GET, format!("{dev}/command"), None),
        ];
        for (method, path, body) in calls {
            let r = t.send(method.clone(), &path, Some(token), body).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
            assert_eq!(r.message(), "Device was not found");
        }
    }
    // My token on their application's path: the application itself is hidden.
    let r = t
        .get(
            &format!("/applications/{other_app}/devices/{theirs}"),
            &mine_token,
        )
        .await;
    assert_eq!(r.status, 404);
    // Untouched.
    let d = t
        .get(
            &format!("/applications/{other_app}/devices/{theirs}"),
            &other,
        )
        .await
        .expect(200);
    assert_eq!(d["name"], "Theirs");
    let st = t
        .get(
            &format!("/applications/{other_app}/devices/{theirs}/state"),
            &other,
        )
        .await
        .expect(200);
    assert_eq!(st[0]["data"]["temperature"], 20);
    assert_eq!(count_rows(&t, "device_commands").await, 0);
}

async fn state_reports_single_and_batched_are_read_back() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let dev = format!("/applications/{app}/devices/{id}");
    let now = now_ms();
    let t0 = now - 600_000; // ten minutes ago

    // One report, with conversions the reference makes.
    t.post(
        &format!("{dev}/state"),
        &s,
        json!({ "time": t0, "data": { "temperature": "21.5", "heating": 1, "mode": 7, "position": "37.33233141,-122.0312186", "snapshot": "aGk=" }, "meta": { "source": "test" } }),
    )
    .await
    .expect(200);
    // A batch in every time form; unknown attributes are ignored.
    let batch = json!([
        { "time": t0 + 60_000, "data": { "temperature": 22, "ignored": 5 } },
        { "time": (t0 + 120_000) as f64 / 1000.0, "data": { "temperature": 23, "heating": false } },
        { "time": { "$date": tollgate_server::time::iso(t0 + 180_000) }, "data": { "temperature": 24 } },
        { "time": -60_000, "data": { "mode": "eco" } }
    ]);
    t.post(&format!("{dev}/state"), &s, batch).await.expect(200);

    let latest = t.get(&format!("{dev}/state"), &s).await.expect(200);
    assert_eq!(latest.as_array().unwrap().len(), 1);
    assert_eq!(latest[0]["data"], json!({ "mode": "eco" }));

    let all = t
        .get(&format!("{dev}/state?limit=10&sortDirection=asc"), &s)
        .await
        .expect(200);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0]["time"], tollgate_server::time::iso(t0));
    assert_eq!(
        all[0]["data"],
        json!({ "temperature": 21.5, "heating": true, "mode": "7", "position": "37.33233141,-122.0312186", "snapshot": "aGk=" })
    );
    assert_eq!(all[0]["meta"], json!({ "source": "test" }));
    assert_eq!(all[1]["data"], json!({ "temperature": 22 }));
    assert_eq!(
        all[2]["data"],
        json!({ "temperature": 23, "heating": false })
    );
    assert_eq!(all[2]["time"], tollgate_server::time::iso(t0 + 120_000));
    assert_eq!(all[3]["data"], json!({ "temperature": 24 }));

    // A window: start/end and duration.
    let w = t
        .get(
            &format!(
                "{dev}/state?limit=10&start={}&end={}",
                t0 + 60_000,
                t0 + 120_000
            ),
            &s,
        )
        .await
        .expect(200);
    let temps: Vec<i64> = w
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"]["temperature"].as_i64().unwrap())
        .collect();
    assert_eq!(temps, [23, 22]); // newest first by default
    let recent = t
        .get(&format!("{dev}/state?limit=10&duration=120000"), &s)
        .await
        .expect(200);
    assert_eq!(recent.as_array().unwrap().len(), 1);

    // A report at an existing time merges into it, value by value.
    t.post(
        &format!("{dev}/state"),
        &s,
        json!({ "time": t0, "data": { "temperature": 30 } }),
    )
    .await
    .expect(200);
    let first = t
        .get(&format!("{dev}/state?limit=1&sortDirection=asc"), &s)
        .await
        .expect(200);
    assert_eq!(first[0]["data"]["temperature"], 30);
    assert_eq!(first[0]["data"]["mode"], "7");

    // The composite state: the latest value of each attribute, and when it came.
    let c = t
        .get(&format!("{dev}/compositeState"), &s)
        .await
        .expect(200);
    assert_eq!(c["temperature"]["value"], 24);
    assert_eq!(
        c["temperature"]["time"],
        tollgate_server::time::iso(t0 + 180_000)
    );
    assert_eq!(c["heating"]["value"], false);
    assert_eq!(c["mode"]["value"], "eco");
    assert_eq!(c["position"]["value"], "37.33233141,-122.0312186");
    let c = t
        .get(
            &format!(
                "{dev}/compositeState?attributes=temperature,heating&end={}",
                t0 + 90_000
            ),
            &s,
        )
        .await
        .expect(200);
    assert_eq!(
        c,
        json!({
            "temperature": { "value": 22, "time": tollgate_server::time::iso(t0 + 60_000) },
            "heating": { "value": true, "time": tollgate_server::time::iso(t0) }
        })
    );

    // Changing an attribute's type drops its history (it could not be read as the new type).
    t.patch(
        &dev,
        &s,
        json!({ "attributes": [{ "name": "temperature", "dataType": "string" }, { "name": "heating", "dataType": "boolean" }] }),
    )
    .await
    .expect(200);
    let after = t
        .get(&format!("{dev}/state?limit=10&sortDirection=asc"), &s)
        .await
        .expect(200);
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), 2, "{after:?}"); // only reports with heating remain
    assert_eq!(after[0]["data"], json!({ "heating": true }));
    assert_eq!(count_rows(&t, "device_points").await, 2);
}

async fn bad_state_reports_are_400s_and_nothing_is_half_written() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let bare = create(&t, &s, &app, json!({ "name": "Bare" })).await;
    let dev = format!("/applications/{app}/devices/{id}");
    let now = now_ms();
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({ "time": now - i, "data": { "temperature": 1 } }))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "data": { "temperature": "warm" } }),
            "data.temperature is a number attribute",
        ),
        (
            json!({ "data": { "heating": "maybe" } }),
            "data.heating is a boolean attribute",
        ),
        (
            json!({ "data": { "position": "somewhere" } }),
            "data.position is a gps attribute",
        ),
        (
            json!({ "data": { "snapshot": "not base64!" } }),
            "data.snapshot is a blob attribute",
        ),
        (
            json!({ "data": { "color": "red", "size": 3 } }),
            "color, size are not an attribute of this device",
        ),
        (json!({ "data": {} }), "data is empty"),
        (json!({ "data": { "temperature": [1] } }), "temperature"),
        (json!({ "data": { "bad name": 1 } }), "bad name"),
        (json!({ "temperature": 1 }), "data"),
        (
            json!({ "time": "yesterday", "data": { "temperature": 1 } }),
            "time cannot be read",
        ),
        (
            json!({ "time": now - 31 * 86_400_000, "data": { "temperature": 1 } }),
            "30 days",
        ),
        (
            json!({ "time": now + 2 * 86_400_000, "data": { "temperature": 1 } }),
            "future",
        ),
        (json!([]), "empty"),
        (Value::Array(many), "at most 1000"),
        // One bad report spoils the batch: nothing of it is written.
        (
            json!([
                { "time": now - 2000, "data": { "temperature": 1 } },
                { "time": now - 1000, "data": { "temperature": "hot" } }
            ]),
            "/1/data.temperature",
        ),
        (
            json!([{ "data": { "temperature": 1 } }, { "data": { "nope": 1 } }]),
            "/1/nothing to record",
        ),
    ];
    for (body, needle) in &cases {
        let r = t.post(&format!("{dev}/state"), &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{needle}: {}", r.message());
        // The message names the problem, never a rejected value.
        assert!(
            !r.message().contains("warm") && !r.message().contains("somewhere"),
            "{}",
            r.message()
        );
    }
    let r = t
        .post(
            &format!("/applications/{app}/devices/{bare}/state"),
            &s,
            json!({ "data": { "temperature": 1 } }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("declares no attributes"),
        "{}",
        r.message()
    );
    let r = t
        .send_raw(
            Method::POST,
            &format!("{dev}/state"),
            Some(&s),
            Some("{\"data\": "),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("not valid JSON"), "{}", r.message());

    assert_eq!(count_rows(&t, "device_points").await, 0);
    assert_eq!(count_rows(&t, "device_reports").await, 0);
    assert_eq!(
        t.get(&format!("{dev}/state?limit=100"), &s)
            .await
            .expect(200),
        json!([])
    );

    for (q, needle) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("sortDirection=sideways", "sortDirection"),
        ("start=abc", "start"),
        ("duration=-5", "duration"),
        ("start=2000&end=1000", "start must not be after end"),
    ] {
        for what in ["state", "command"] {
            let r = t.get(&format!("{dev}/{what}?{q}"), &s).await;
            assert_eq!(r.status, 400, "{what}?{q}: {}", r.body);
            assert!(r.message().contains(needle), "{q}: {}", r.message());
        }
    }
    let r = t
        .get(
            &format!("{dev}/compositeState?attributes=temperature,nope"),
            &s,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("nope"), "{}", r.message());
}

async fn commands_are_sent_and_read_back() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let dev = format!("/applications/{app}/devices/{id}");
    let now = now_ms();
    t.post(
        &format!("{dev}/command"),
        &s,
        json!({ "name": "set-away", "payload": { "away": false }, "time": now - 2000 }),
    )
    .await
    .expect(200);
    t.post(
        &format!("{dev}/command"),
        &s,
        json!({ "name": "reboot", "time": now - 1000 }),
    )
    .await
    .expect(200);
    let last = t.get(&format!("{dev}/command"), &s).await.expect(200);
    assert_eq!(
        last,
        json!([{ "time": tollgate_server::time::iso(now - 1000), "name": "reboot" }])
    );
    let both = t
        .get(&format!("{dev}/command?limit=5&sortDirection=asc"), &s)
        .await
        .expect(200);
    assert_eq!(both[0]["name"], "set-away");
    assert_eq!(both[0]["payload"], json!({ "away": false }));
    assert_eq!(both[1]["name"], "reboot");
    let window = t
        .get(
            &format!(
                "{dev}/command?limit=5&start={}&end={}",
                now - 2500,
                now - 1500
            ),
            &s,
        )
        .await
        .expect(200);
    assert_eq!(window.as_array().unwrap().len(), 1);
    assert_eq!(window[0]["name"], "set-away");

    let long = "c".repeat(256);
    for (body, needle) in [
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": long }), "name"),
        (json!({ "name": "x", "extra": 1 }), "extra"),
        (
            json!({ "name": "x", "time": "whenever" }),
            "time cannot be read",
        ),
    ] {
        let r = t.post(&format!("{dev}/command"), &s, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(needle), "{}", r.message());
    }
    assert_eq!(count_rows(&t, "device_commands").await, 2);
    // Deleting the device deletes its commands and state.
    t.post(
        &format!("{dev}/state"),
        &s,
        json!({ "data": { "temperature": 1 } }),
    )
    .await
    .expect(200);
    t.delete(&dev, &s).await.expect(200);
    assert_eq!(count_rows(&t, "device_commands").await, 0);
    assert_eq!(count_rows(&t, "device_points").await, 0);
    assert_eq!(count_rows(&t, "device_reports").await, 0);
}

async fn deleting_the_application_removes_its_devices_state_commands_and_flows() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let dev = format!("/applications/{app}/devices/{id}");
    t.post(
        &format!("{dev}/state"),
        &s,
        json!({ "data": { "temperature": 1, "mode": "x" } }),
    )
    .await
    .expect(200);
    t.post(&format!("{dev}/command"), &s, json!({ "name": "go" }))
        .await
        .expect(200);
    t.post(
        &format!("/applications/{app}/flows"),
        &s,
        json!({ "name": "F" }),
    )
    .await
    .expect(201);
    assert_eq!(count_rows(&t, "device_points").await, 2);
    t.delete(&format!("/applications/{app}"), &s)
        .await
        .expect(200);
    for table in [
        "devices",
        "device_tags",
        "device_reports",
        "device_points",
        "device_commands",
        "flows",
    ] {
        assert_eq!(count_rows(&t, table).await, 0, "{table}");
    }
}

/// The issue's token scenarios: a gateway that only reports state; a read-only token that
/// reads state and commands but cannot report or command.
async fn narrow_tokens_do_exactly_what_their_scope_says() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let dev = format!("/applications/{app}/devices/{id}");
    let gateway = t
        .api_token(
            &s,
            app.parse().unwrap(),
            json!({ "name": "gateway", "scope": ["device.sendState"] }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = t
        .api_token(
            &s,
            app.parse().unwrap(),
            json!({ "name": "reader", "scope": ["all.Application.read"] }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    t.post(
        &format!("{dev}/state"),
        &gateway,
        json!({ "data": { "temperature": 20 } }),
    )
    .await
    .expect(200);
    t.post(
        &format!("{dev}/state"),
        &gateway,
        json!([{ "time": now_ms() - 5000, "data": { "temperature": 19 } }, { "time": now_ms() - 4000, "data": { "temperature": 18 } }]),
    )
    .await
    .expect(200);
    for (method, path, body) in [
        (Method::GET, dev.clone(), None),
        (Method::GET, format!("/applications/{app}/devices"), None),
        (Method::GET, format!("{dev}/state"), None),
        (Method::GET, format!("{dev}/compositeState"), None),
        (Method::GET, format!("{dev}/command"), None),
        (
            Method::POST,
            format!("{dev}/command"),
            Some(json!({ "name": "x" })),
        ),
        (
            Method::POST,
            format!("/applications/{app}/data/time-series-query"),
            Some(json!({ "resolution": 60000 })),
        ),
        (Method::PATCH, dev.clone(), Some(json!({ "name": "x" }))),
    ] {
        let r = t.send(method.clone(), &path, Some(&gateway), body).await;
        assert_eq!(r.status, 403, "gateway {method} {path}: {}", r.body);
        assert!(r.headers.contains_key("x-tollgate-required-action"));
    }

    t.post(&format!("{dev}/command"), &s, json!({ "name": "reboot" }))
        .await
        .expect(200);
    let states = t
        .get(&format!("{dev}/state?limit=5"), &reader)
        .await
        .expect(200);
    let temps: Vec<i64> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"]["temperature"].as_i64().unwrap())
        .collect();
    assert_eq!(temps, [20, 18, 19]);
    let c = t
        .get(&format!("{dev}/compositeState"), &reader)
        .await
        .expect(200);
    assert_eq!(c["temperature"]["value"], 20);
    let cmds = t.get(&format!("{dev}/command"), &reader).await.expect(200);
    assert_eq!(cmds[0]["name"], "reboot");
    let r = t
        .post(
            &format!("{dev}/state"),
            &reader,
            json!({ "data": { "temperature": 1 } }),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-tollgate-required-action"], "device.sendState");
    assert!(r.message().contains("device.sendState"), "{}", r.message());
    let r = t
        .post(&format!("{dev}/command"), &reader, json!({ "name": "x" }))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers["x-tollgate-required-action"],
        "device.sendCommand"
    );
    assert_eq!(
        t.post(
            &format!("/applications/{app}/devices"),
            &reader,
            json!({ "name": "x" })
        )
        .await
        .status,
        403
    );
    assert_eq!(t.delete(&dev, &reader).await.status, 403);
    // Nothing the refused calls carried was stored.
    assert_eq!(count_rows(&t, "device_commands").await, 1);
    assert_eq!(count_rows(&t, "device_points").await, 3);
}

/// Members with the view role read devices but cannot report state; collaborators can.
async fn roles_bound_device_actions() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("admin@example.com").await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Org" }))
        .await
        .expect(201);
    let org_id = org["id"].as_str().unwrap().to_owned();
    let app = t
        .post(
            "/applications",
            &admin,
            json!({ "name": "A", "orgId": org_id }),
        )
        .await
        .expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let id = create(&t, &admin, &app, thermostat("Hall", "3")).await;
    let mut sessions = Vec::new();
    for role in ["view", "collaborate"] {
        let email = format!("{role}@example.com");
        let uid = t.user(&email).await;
        let session = t.session_for(uid).await;
        t.join_org(&org_id, &admin, &email, role, &session).await;
        sessions.push(session);
    }
    let state = format!("/applications/{app}/devices/{id}/state");
    let body = json!({ "data": { "temperature": 1 } });
    assert_eq!(t.post(&state, &sessions[0], body.clone()).await.status, 403);
    t.get(&state, &sessions[0]).await.expect(200);
    t.post(&state, &sessions[1], body).await.expect(200);
    t.post(
        &format!("/applications/{app}/flows"),
        &sessions[1],
        json!({ "name": "F" }),
    )
    .await
    .expect(201);
    assert_eq!(
        t.post(
            &format!("/applications/{app}/flows"),
            &sessions[0],
            json!({ "name": "F" })
        )
        .await
        .status,
        403
    );
}

/// Many reporters at once: every report is accepted and stored. (On SQLite a transaction
/// that read before writing used to fail at once with "database is locked".)
async fn concurrent_reports_are_all_stored() {
    let (t, s, app) = setup().await;
    let mut devices = Vec::new();
    for i in 0..8 {
        devices.push(create(&t, &s, &app, thermostat(&format!("D{i}"), "1")).await);
    }
    let t = std::sync::Arc::new(t);
    let now = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in devices.iter().enumerate() {
        for k in 0..10i64 {
            let (t, s, path) = (
                t.clone(),
                s.clone(),
                format!("/applications/{app}/devices/{id}/state"),
            );
            let time = now - 60_000 + k * 1000 + i as i64;
            tasks.spawn(async move {
                t.post(
                    &path,
                    &s,
                    json!([{ "time": time, "data": { "temperature": k, "mode": "m" } }]),
                )
                .await
                .status
            });
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(count_rows(&t, "device_reports").await, 80);
    assert_eq!(count_rows(&t, "device_points").await, 160);
}

/// Devices are answered from memory once read; every change is what the next read sees.
async fn cached_device_reads_see_every_change_at_once() {
    let (t, s, app) = setup().await;
    let id = create(&t, &s, &app, thermostat("Hall", "3")).await;
    let path = format!("/applications/{app}/devices/{id}");
    let first = t.get(&path, &s).await.expect(200);
    assert_eq!(first["name"], "Hall");
    assert_eq!(
        t.get(&path, &s).await.expect(200),
        first,
        "the cached rendering is the same"
    );
    assert!(t.state.devices().cached() >= 1);

    t.patch(&path, &s, json!({ "name": "Hall 2" }))
        .await
        .expect(200);
    assert_eq!(t.get(&path, &s).await.expect(200)["name"], "Hall 2");

    // Another application's path never reaches a cached device.
    let owner = t
        .store()
        .user_by_email("owner@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let other = t.app_of(owner, "Other").await;
    assert_eq!(
        t.get(&format!("/applications/{other}/devices/{id}"), &s)
            .await
            .status,
        404
    );

    t.delete(&path, &s).await.expect(200);
    assert_eq!(t.get(&path, &s).await.status, 404);

    let id2 = create(&t, &s, &app, thermostat("Hall 3", "3")).await;
    let path2 = format!("/applications/{app}/devices/{id2}");
    t.get(&path2, &s).await.expect(200);
    t.delete(&format!("/applications/{app}"), &s)
        .await
        .expect(200);
    assert_eq!(t.get(&path2, &s).await.status, 404);
}

/// A `json` attribute holds a JSON document, sent as a string; anything else is a 400.
async fn json_attributes_hold_json_documents() {
    let (t, s, app) = setup().await;
    let body = json!({
        "name": "Controller",
        "attributes": [{ "name": "config", "dataType": "json" }, { "name": "rpm", "dataType": "number" }]
    });
    let id = create(&t, &s, &app, body).await;
    let dev = format!("/applications/{app}/devices/{id}");
    assert_eq!(
        t.get(&dev, &s).await.expect(200)["attributes"][0]["dataType"],
        "json"
    );

    let config = r#"{"mode":"eco","zones":[1,2]}"#;
    t.post(
        &format!("{dev}/state"),
        &s,
        json!({ "data": { "config": config, "rpm": 900 } }),
    )
    .await
    .expect(200);
    let latest = t.get(&format!("{dev}/state"), &s).await.expect(200);
    assert_eq!(latest[0]["data"], json!({ "config": config, "rpm": 900 }));

    let r = t
        .post(
            &format!("{dev}/state"),
            &s,
            json!({ "data": { "config": "{not json" } }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("config") && r.message().contains("JSON"),
        "{}",
        r.message()
    );
    assert!(
        !r.message().contains("not json"),
        "the value is not echoed: {}",
        r.message()
    );
    assert_eq!(
        t.get(&format!("{dev}/state?limit=10"), &s)
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(devices_are_created_read_listed_patched_and_deleted),
        case!(bad_device_input_is_a_400_that_changes_nothing),
        case!(ids_from_another_application_are_404s_and_change_nothing),
        case!(state_reports_single_and_batched_are_read_back),
        case!(bad_state_reports_are_400s_and_nothing_is_half_written),
        case!(commands_are_sent_and_read_back),
        case!(deleting_the_application_removes_its_devices_state_commands_and_flows),
        case!(narrow_tokens_do_exactly_what_their_scope_says),
        case!(roles_bound_device_actions),
        case!(concurrent_reports_are_all_stored, multi_thread = 4),
        case!(cached_device_reads_see_every_change_at_once),
        case!(json_attributes_hold_json_documents),
    ]
}

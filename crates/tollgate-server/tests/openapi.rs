//! The OpenAPI document: every registry action is in it, and `docs/openapi.json` is its
//! snapshot (regenerate with `TOLLGATE_UPDATE_SNAPSHOTS=1 cargo test --test openapi`).

use crate::common::TestApp;
use axum::http::Method;
use tollgate_core::REGISTRY;
use tollgate_testkit::{Case, case};

async fn document_lists_every_action_and_matches_the_snapshot() {
    let t = TestApp::new().await;
    let doc = t
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    for def in REGISTRY {
        let op = &doc["paths"][def.path][def.method.as_str().to_ascii_lowercase()];
        assert_eq!(
            op["operationId"],
            def.name,
            "{} {}",
            def.method.as_str(),
            def.path
        );
        assert_eq!(op["x-tollgate-read-only"], def.read_only);
        if let Some(body) = def.body {
            let r = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            let name = r.rsplit('/').next().unwrap();
            assert_eq!(name, body);
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{name} is defined"
            );
        }
    }
    // No reference points outside the document.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let target = &r[..r.find('"').unwrap()];
        let name = target
            .strip_prefix("#/components/schemas/")
            .expect("refs point at components");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling ref {target}"
        );
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var("TOLLGATE_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &pretty).unwrap();
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        snapshot == pretty,
        "docs/openapi.json is out of date: run TOLLGATE_UPDATE_SNAPSHOTS=1 cargo test -p tollgate-server --test all openapi"
    );
}

pub fn cases() -> Vec<Case> {
    vec![case!(document_lists_every_action_and_matches_the_snapshot).once()]
}

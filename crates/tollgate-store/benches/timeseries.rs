//! Time-series queries over one million stored points (one device attribute, one point a
//! second for about 11.6 days), seeded straight into the store.
//!
//! `cargo bench -p tollgate-store --bench timeseries` runs on SQLite in a temporary
//! directory; with `TOLLGATE_BENCH_POSTGRES_URL=postgres://...` set it runs on that database
//! (which it fills; use a throwaway one). Measured:
//!
//! * `mean_1h_buckets_all_points`: MEAN at 1-hour resolution over all 1M points (the
//!   database computes per-bucket partials; 278 buckets come back);
//! * `median_1h_buckets_all_points`: MEDIAN over the same (every point comes back and is
//!   aggregated in Rust: the worst case);
//! * `mean_5min_buckets_last_hour`: the dashboard query, the last hour at 5 minutes (3600
//!   points out of the million, through the primary key's range).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use tollgate_core::attribute::Stored;
use tollgate_core::timeseries::{Aggregation, Buckets, aggregate};
use tollgate_store::applications::Owner;
use tollgate_store::devices::DeviceFields;
use tollgate_store::states::Report;
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Store};

const POINTS: i64 = 1_000_000;
const SECOND: i64 = 1000;
const HOUR: i64 = 3600 * SECOND;

struct Seeded {
    store: Store,
    device: Id,
    start: i64,
    end: i64,
    _dir: tempfile::TempDir,
}

async fn seed() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("TOLLGATE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = Store::connect(&url).await.unwrap();
    let user = store
        .create_user(&NewUser {
            email: &format!("bench-{}@example.com", Id::generate()),
            password_hash: "not-a-hash",
            first_name: "Bench",
            last_name: "",
        })
        .await
        .unwrap();
    let app = store
        .create_application(
            &Actor::operator(),
            Owner::User(user.id),
            "bench",
            "",
            &Map::new(),
        )
        .await
        .unwrap();
    let attributes: Vec<Map<String, Value>> = vec![
        serde_json::from_value(json!({ "name": "temperature", "dataType": "number" })).unwrap(),
    ];
    let device = store
        .create_device(
            &Actor::operator(),
            app.id,
            &DeviceFields {
                name: "bench".into(),
                device_class: "standalone".into(),
                attributes,
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
    let start = 1_700_000_000_000;
    let started = std::time::Instant::now();
    // 10,000 reports per call, as a batching gateway would send them (one transaction each).
    for chunk in 0..POINTS / 10_000 {
        let reports: Vec<Report> = (0..10_000)
            .map(|i| {
                let n = chunk * 10_000 + i;
                Report {
                    time: start + n * SECOND,
                    meta: None,
                    values: vec![(
                        "temperature".into(),
                        Stored::Num(20.0 + ((n * 7919) % 1000) as f64 / 100.0),
                    )],
                }
            })
            .collect();
        store
            .insert_reports(&Actor::operator(), app.id, device.id, move |_| {
                Ok::<_, tollgate_store::StoreError>(reports.clone())
            })
            .await
            .unwrap();
    }
    eprintln!(
        "seeded {POINTS} points in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Seeded {
        store,
        device: device.id,
        start,
        end: start + POINTS * SECOND,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(seed());
    let all = Buckets {
        start: s.start,
        end: s.end,
        resolution: HOUR,
    };
    let last_hour = Buckets {
        start: s.end - HOUR,
        end: s.end,
        resolution: 5 * 60 * SECOND,
    };

    // Check once that both paths agree before timing them.
    let via_sql = rt
        .block_on(s.store.series_partials(s.device, "temperature", &all))
        .unwrap();
    assert_eq!(via_sql.len() as i64, all.count());
    assert_eq!(via_sql.iter().map(|(_, p)| p.count).sum::<i64>(), POINTS);

    let mut group = c.benchmark_group("timeseries_1M_points");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("mean_1h_buckets_all_points", |b| {
        b.iter(|| {
            let partials = rt
                .block_on(s.store.series_partials(s.device, "temperature", &all))
                .unwrap();
            let values: Vec<f64> = partials
                .iter()
                .filter_map(|(_, p)| p.finish(Aggregation::Mean))
                .collect();
            assert_eq!(values.len(), 278);
            values
        })
    });
    group.bench_function("median_1h_buckets_all_points", |b| {
        b.iter(|| {
            let raw = rt
                .block_on(
                    s.store
                        .series_numbers(s.device, "temperature", all.start, all.end),
                )
                .unwrap();
            assert_eq!(raw.len() as i64, POINTS);
            aggregate(&raw, &all, Aggregation::Median)
        })
    });
    group.bench_function("mean_5min_buckets_last_hour", |b| {
        b.iter(|| {
            let partials = rt
                .block_on(s.store.series_partials(s.device, "temperature", &last_hour))
                .unwrap();
            assert_eq!(partials.len(), 12);
            partials
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

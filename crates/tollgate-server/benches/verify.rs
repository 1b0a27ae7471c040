//! Verification from memory over a million cached tokens:
//! `cargo bench -p tollgate-server --bench verify`.
//!
//! The cache is filled the way `--preload-tokens` fills it (`Credentials::prime`), with one
//! million tokens whose secrets the benchmark knows, over a thousand applications and the
//! scopes a real deployment mixes. Each case calls `verify_in_memory`: shape and checksum,
//! SHA-256, the cache lookup, status and expiry, and the last-used note.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::RngExt;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_server::auth::Credentials;
use tollgate_server::auth::credentials::InMemory;
use tollgate_server::freshness::Freshness;
use tollgate_store::tokens::{TokenKey, TokenStatus};
use tollgate_store::{Id, Store};

const TOKENS: usize = 1_000_000;
const SCOPES: &[&str] = &[
    r#"["all.Application"]"#,
    r#"["all.Application.read"]"#,
    r#"["device.get","devices.get","device.sendState"]"#,
    r#"["data.timeSeriesQuery","data.lastValueQuery"]"#,
];

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    // The store is only there to satisfy the constructor: every lookup below is answered
    // from memory, and a lookup that was not would show up as a missing answer.
    let store = rt.block_on(Store::connect(&url)).unwrap();
    let credentials = Arc::new(Credentials::new(store, Arc::new(Freshness::default())));
    let apps: Vec<Id> = (0..1000).map(|_| Id::generate()).collect();
    let secrets: Vec<String> = (0..TOKENS)
        .map(|i| {
            let secret = Secret::generate(SecretKind::ApplicationToken);
            let key = TokenKey {
                id: Id::generate(),
                application_id: apps[i % apps.len()],
                scope_json: SCOPES[i % SCOPES.len()].to_owned(),
                status: TokenStatus::Active,
                expiration_date: None,
                last_used: None,
                restrictions_json: None,
            };
            credentials.prime(&secret.digest(), &key).unwrap();
            secret.expose().to_owned()
        })
        .collect();
    assert_eq!(credentials.cached_tokens(), TOKENS);
    let unknown = Secret::generate(SecretKind::ApplicationToken)
        .expose()
        .to_owned();
    // Teach the negative cache the unknown token once, through the database path.
    let _ = rt.block_on(credentials.verify(&unknown));
    let malformed = format!("{}x", &secrets[0][..40]);

    let answered = |r: InMemory, ok: bool| match r {
        InMemory::Answer(a) => assert_eq!(a.is_ok(), ok),
        InMemory::AskDatabase(..) => panic!("went to the database"),
    };
    let mut group = c.benchmark_group("verify in memory, 1M tokens cached");
    group.bench_function("same token", |b| {
        b.iter(|| answered(credentials.verify_in_memory(black_box(&secrets[0])), true))
    });
    let mut rng = rand::rng();
    group.bench_function("random token of the million", |b| {
        b.iter_batched(
            || &secrets[rng.random_range(0..TOKENS)],
            |s| answered(credentials.verify_in_memory(black_box(s)), true),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("unknown token (remembered)", |b| {
        b.iter(|| answered(credentials.verify_in_memory(black_box(&unknown)), false))
    });
    group.bench_function("malformed token", |b| {
        b.iter(|| answered(credentials.verify_in_memory(black_box(&malformed)), false))
    });
    group.finish();
}

criterion_group!(verify, benches);
criterion_main!(verify);

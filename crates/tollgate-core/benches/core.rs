//! Micro-benchmarks of the pure parts of a token check: `cargo bench -p tollgate-core`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::secret::{self, Secret, SecretKind};
use tollgate_core::{Action, Scope};

fn benches(c: &mut Criterion) {
    let token = Secret::generate(SecretKind::ApplicationToken);
    c.bench_function("secret/check (shape + checksum)", |b| {
        b.iter(|| secret::check(black_box(token.expose())))
    });
    c.bench_function("secret/digest (sha256)", |b| {
        b.iter(|| secret::digest(black_box(token.expose())))
    });
    let custom = [
        "application.get",
        "applicationApiTokens.*",
        "all.Application.read",
    ];
    c.bench_function("scope/parse+compile", |b| {
        b.iter(|| Scope::parse(black_box(&custom)).unwrap().compile())
    });
    let parent = Scope::parse(&["all.Application.read", "applicationApiTokens.*"]).unwrap();
    let child = Scope::parse(&["application.get", "applicationApiTokens.post"]).unwrap();
    c.bench_function("scope/child within parent", |b| {
        b.iter(|| black_box(&child).within(black_box(&parent)).is_ok())
    });
    let compiled = parent.compile();
    c.bench_function("scope/authorization decision", |b| {
        b.iter(|| black_box(&compiled).contains(black_box(Action::ApplicationApiTokensPost)))
    });
}

criterion_group!(core, benches);
criterion_main!(core);

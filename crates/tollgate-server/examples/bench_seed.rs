//! Seed a Tollgate database for the load benchmark (`scripts/bench-load.sh`), fast: straight
//! into the store, not through a million HTTP calls.
//!
//! ```text
//! cargo run --release --example bench_seed -- DATABASE_URL OUT_DIR [TOKENS] [APPS] [DEVICES]
//! ```
//!
//! Creates one user, APPS applications (1,000), DEVICES devices spread over them (10,000,
//! each with a `temperature` attribute and a `floor` tag) and TOKENS application tokens
//! (1,000,000) spread over them with a mix of scopes. All but the few named below have random
//! secrets that are never known (only digests are stored, as always). Writes into OUT_DIR the
//! secrets and ids the benchmark uses: `valid.token` (custom scope: device.get, devices.get,
//! device.sendState), `inactive.token`, `unknown.token` (well-formed, never issued),
//! `malformed.token`, `restricted.token` (the same scope, restricted to that device, to
//! 127.0.0.0/8 and ::1, and to a rate it never reaches), `reader.token` and `reader.id` (the
//! read actions of issue 17, and `flows.post` to add flows), `app.id`, `device.id`, and for
//! the case with every feature on at once (issues 13, 14 and 15): `allfeatures.token` and
//! `allfeatures.id` (the same scope plus `applicationApiToken.usage`, restricted to one
//! device, to 127.0.0.0/8 and ::1, to a rate and a usage limit it never reaches, expiring in
//! [`ALL_FEATURES_EXPIRY_DAYS`] days, so inside the first warning lead time and every answer
//! carries `Tollgate-Token-Expires`), `allfeatures.app` and `allfeatures.device` (its
//! application, the second one, with a token policy setting every field, and a device of it),
//! `allfeatures.expires` (its expiry, ms since the epoch: a seed is stale a day before), and
//! `gateway.device`: a device of `app.id` with three attributes (`temperature`, `humidity`,
//! `door`) that the batched-report case posts 100 reports a request to, so each report
//! stores three points as in `ingest_load`.

use std::path::PathBuf;
use std::time::Instant;

use rand::Rng;
use serde_json::{Map, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::applications::Owner;
use tollgate_store::devices::{DeviceFields, Tag};
use tollgate_store::policy::{DAY_MS, PolicyPatch};
use tollgate_store::tokens::{Creator, NewToken, TokenStatus};
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Store};

const SCOPES: &[&str] = &[
    r#"["all.Application"]"#,
    r#"["all.Application.read"]"#,
    r#"["device.get","devices.get","device.sendState"]"#,
    r#"["data.timeSeriesQuery","data.lastValueQuery"]"#,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("DATABASE_URL");
    let out = PathBuf::from(args.get(2).expect("OUT_DIR"));
    let tokens: usize = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
    let apps: usize = args.get(4).map_or(Ok(1_000), |s| s.parse())?;
    let devices: usize = args.get(5).map_or(Ok(10_000), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    let store = Store::connect(url).await?;

    let user = store
        .create_user(&NewUser {
            email: "bench@example.com",
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2VlZA$unusable",
            first_name: "Bench",
            last_name: "",
        })
        .await?;
    let mut app_ids = Vec::with_capacity(apps);
    for i in 0..apps {
        let app = store
            .create_application(
                &Actor::operator(),
                Owner::User(user.id),
                &format!("app {i}"),
                "",
                &Map::new(),
            )
            .await?;
        app_ids.push(app.id);
    }
    let attributes = vec![
        json!({ "name": "temperature", "dataType": "number" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ];
    let mut device_ids = Vec::with_capacity(devices);
    for i in 0..devices {
        let fields = DeviceFields {
            name: format!("device {i}"),
            description: String::new(),
            device_class: "standalone".into(),
            tags: vec![Tag {
                key: "floor".into(),
                value: (i % 10).to_string(),
            }],
            attributes: attributes.clone(),
            extra: Map::new(),
        };
        device_ids.push(
            store
                .create_device(&Actor::operator(), app_ids[i % apps], &fields, &[])
                .await?
                .id,
        );
    }
    // The batched case's device: three attributes, so a report of three values stores three
    // points (what issue 17's points/s target counts).
    let gateway = store
        .create_device(
            &Actor::operator(),
            app_ids[0],
            &DeviceFields {
                name: "gateway".into(),
                description: String::new(),
                device_class: "standalone".into(),
                tags: Vec::new(),
                attributes: [
                    json!({ "name": "temperature", "dataType": "number" }),
                    json!({ "name": "humidity", "dataType": "number" }),
                    json!({ "name": "door", "dataType": "boolean" }),
                ]
                .into_iter()
                .filter_map(|a| a.as_object().cloned())
                .collect(),
                extra: Map::new(),
            },
            &[],
        )
        .await?
        .id;
    eprintln!(
        "{apps} applications, {devices} devices in {:?}",
        started.elapsed()
    );

    // The named tokens, through the store's own path.
    let app = app_ids[0];
    let valid = named_token(&store, app, user.id, TokenStatus::Active).await?;
    let inactive = named_token(&store, app, user.id, TokenStatus::Inactive).await?;
    // The same scope with a device restriction, an address list and a rate limit high enough
    // never to refuse: what the restrictions cost on the hot path (issue 14).
    let limits = format!(
        r#"{{"deviceIds":["{}"],"allowedAddresses":["127.0.0.0/8","::1/128"],"rateLimit":{{"requests":1000000000,"perSeconds":1}}}}"#,
        device_ids[0]
    );
    let restricted = restricted_token(
        &store,
        app,
        user.id,
        TokenStatus::Active,
        Some(&limits),
        SCOPE,
    )
    .await?;
    let (reader_id, reader) =
        scoped_token(&store, app, user.id, TokenStatus::Active, None, READER).await?;

    // Every feature at once: the restrictions above plus a usage limit, an expiry inside the
    // first warning lead time, in an application with a token policy of its own (the second
    // application, so the other cases' tokens stay under no policy).
    let all_app = app_ids[1 % apps];
    // Device i belongs to application i % apps.
    let all_device = device_ids[1 % apps];
    store
        .set_application_policy(
            &Actor::operator(),
            all_app,
            &PolicyPatch {
                max_lifetime_ms: Some(Some(90 * DAY_MS)),
                expiry_required: Some(Some(true)),
                idle_deactivation_ms: Some(Some(30 * DAY_MS)),
                warning_leads_ms: Some(Some(vec![30 * DAY_MS, 7 * DAY_MS, DAY_MS])),
            },
        )
        .await?;
    let all_limits = format!(
        r#"{{"deviceIds":["{all_device}"],"allowedAddresses":["127.0.0.0/8","::1/128"],"rateLimit":{{"requests":1000000000,"perSeconds":1}},"usageLimit":{ALL_FEATURES_USES}}}"#
    );
    let all_expires = tollgate_store::now_ms() + ALL_FEATURES_EXPIRY_DAYS * DAY_MS;
    let all_scope: Vec<&str> = SCOPE
        .iter()
        .copied()
        .chain(["applicationApiToken.usage"])
        .collect();
    let (all_id, all_features) = token_with(
        &store,
        all_app,
        user.id,
        TokenOptions {
            restrictions: Some(&all_limits),
            usage_limit: Some(ALL_FEATURES_USES),
            expiration_date: Some(all_expires),
            ..TokenOptions::plain(&all_scope)
        },
    )
    .await?;

    // The rest in bulk: 500 rows per statement, one transaction per 100,000.
    let bulk = tokens.saturating_sub(5);
    let now = tollgate_store::now_ms();
    let mut rng = rand::rng();
    let mut done = 0;
    while done < bulk {
        let mut tx = store.pool().begin().await?;
        let chunk_end = (done + 100_000).min(bulk);
        while done < chunk_end {
            let rows = (chunk_end - done).min(500);
            let mut sql = String::from(
                "INSERT INTO api_tokens (id, application_id, digest, name, description, scope, \
                 status, expiration_date, creator_type, creator_id, creator_name, creation_date, \
                 last_updated) VALUES ",
            );
            for r in 0..rows {
                let b = r * 8;
                if r > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, '', ${}, 'active', NULL, 'user', ${}, 'bench@example.com', ${}, ${})",
                    b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8
                ));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in 0..rows {
                let i = done + r;
                let mut digest = [0u8; 32];
                rng.fill_bytes(&mut digest);
                q = q
                    .bind(Id::generate().to_hex())
                    .bind(app_ids[i % apps].to_hex())
                    .bind(digest.to_vec())
                    .bind(format!("token {i}"))
                    .bind(SCOPES[i % SCOPES.len()])
                    .bind(user.id.to_hex())
                    .bind(now)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
            done += rows;
        }
        tx.commit().await?;
        eprintln!("{done} tokens ({:?})", started.elapsed());
    }

    let unknown = Secret::generate(SecretKind::ApplicationToken);
    let malformed = format!("{}x", &valid.expose()[..40]);
    for (name, value) in [
        ("valid.token", valid.expose().to_owned()),
        ("inactive.token", inactive.expose().to_owned()),
        ("restricted.token", restricted.expose().to_owned()),
        ("reader.token", reader.expose().to_owned()),
        ("reader.id", reader_id.to_string()),
        ("unknown.token", unknown.expose().to_owned()),
        ("malformed.token", malformed),
        ("app.id", app.to_string()),
        ("device.id", device_ids[0].to_string()),
        ("allfeatures.token", all_features.expose().to_owned()),
        ("allfeatures.id", all_id.to_string()),
        ("allfeatures.app", all_app.to_string()),
        ("allfeatures.device", all_device.to_string()),
        ("allfeatures.expires", all_expires.to_string()),
        ("gateway.device", gateway.to_string()),
    ] {
        std::fs::write(out.join(name), value)?;
    }
    // Leave the data in the database file, not in a write-ahead log of hundreds of MB that
    // every fresh copy of the seed would read on its first open (start-up measured 1.8 s
    // instead of ~0.1 s). The checkpoint empties the log only when no reader holds it back
    // (the store's own background tasks may, for a moment): try until it does. (A seed of
    // 2026-12-03 kept a 212 MB log: start-up 641 ms instead of 82, and case f2 at half speed.)
    let mut tries = 0;
    while !store.checkpoint().await? {
        tries += 1;
        anyhow::ensure!(
            tries < 100,
            "the write-ahead log could not be emptied in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    store.close().await;
    let wal = url
        .strip_prefix("sqlite://")
        .map(|path| format!("{path}-wal"));
    if let Some(len) = wal.and_then(|w| std::fs::metadata(w).ok()).map(|m| m.len()) {
        anyhow::ensure!(len == 0, "the write-ahead log still holds {len} bytes");
    }
    eprintln!("seeded {tokens} tokens in {:?}", started.elapsed());
    Ok(())
}

/// A token whose secret the benchmark knows, with the custom scope it uses.
async fn named_token(
    store: &Store,
    app: Id,
    user: Id,
    status: TokenStatus,
) -> anyhow::Result<Secret> {
    restricted_token(store, app, user, status, None, SCOPE).await
}

/// The scope of the named tokens.
const SCOPE: &[&str] = &["device.get", "devices.get", "device.sendState"];

/// The scope of `reader.token`: the read actions answered from memory (issue 17).
const READER: &[&str] = &[
    "application.get",
    "applicationApiTokens.get",
    "applicationApiToken.get",
    "flows.get",
    "flows.post",
    "devices.get",
    "device.getState",
    "device.getCompositeState",
    "data.lastValueQuery",
];

async fn restricted_token(
    store: &Store,
    app: Id,
    user: Id,
    status: TokenStatus,
    restrictions: Option<&str>,
    scope: &[&str],
) -> anyhow::Result<Secret> {
    Ok(scoped_token(store, app, user, status, restrictions, scope)
        .await?
        .1)
}

/// As [`named_token`], with `restrictions` (a JSON object) if given and `scope`; with its id.
async fn scoped_token(
    store: &Store,
    app: Id,
    user: Id,
    status: TokenStatus,
    restrictions: Option<&str>,
    scope: &[&str],
) -> anyhow::Result<(Id, Secret)> {
    let options = TokenOptions {
        status,
        restrictions,
        ..TokenOptions::plain(scope)
    };
    token_with(store, app, user, options).await
}

/// The all-features token's usage limit: the most a token may have, never reached.
const ALL_FEATURES_USES: i64 = 1_000_000_000_000;

/// The all-features token expires this many days after seeding: inside the first warning
/// lead time (30 days), so every answer carries the expiry warning header.
const ALL_FEATURES_EXPIRY_DAYS: i64 = 29;

/// What a named token is made with.
struct TokenOptions<'a> {
    scope: &'a [&'a str],
    status: TokenStatus,
    restrictions: Option<&'a str>,
    usage_limit: Option<i64>,
    expiration_date: Option<i64>,
}

impl<'a> TokenOptions<'a> {
    /// Active, with `scope`, no restriction, no expiry.
    fn plain(scope: &'a [&'a str]) -> TokenOptions<'a> {
        TokenOptions {
            scope,
            status: TokenStatus::Active,
            restrictions: None,
            usage_limit: None,
            expiration_date: None,
        }
    }
}

/// A token whose secret the benchmark knows, through the store's own path; with its id.
async fn token_with(
    store: &Store,
    app: Id,
    user: Id,
    options: TokenOptions<'_>,
) -> anyhow::Result<(Id, Secret)> {
    let secret = Secret::generate(SecretKind::ApplicationToken);
    let scope: Vec<String> = options.scope.iter().map(|s| s.to_string()).collect();
    let record = store
        .create_token(
            &Actor::operator(),
            &NewToken {
                application_id: app,
                digest: secret.digest(),
                name: "bench",
                description: "",
                scope: &scope,
                status: options.status,
                expiration_date: options.expiration_date,
                restrictions: options.restrictions,
                usage_limit: options.usage_limit,
                carve_from: None,
                creator: Creator {
                    kind: "user",
                    id: user,
                    name: "bench@example.com".into(),
                },
            },
        )
        .await?;
    Ok((record.id, secret))
}

//! A fresh store per test, on the backend of the current pass.

use tollgate_store::applications::Owner;
use tollgate_store::tokens::{Creator, NewToken, TokenRecord, TokenStatus};
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Store, StoreError};

/// A migrated store on a fresh database; the directory lives as long as the store is used.
pub struct Fresh {
    pub store: Store,
    pub url: String,
    _dir: tempfile::TempDir,
}

pub async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = tollgate_testkit::fresh_database_url(dir.path()).await;
    let store = Store::connect_with(&url, 8).await.expect("open the store");
    Fresh {
        store,
        url,
        _dir: dir,
    }
}

pub async fn user(store: &Store, email: &str) -> Id {
    store
        .create_user(&NewUser {
            email,
            password_hash: "$argon2id$not-a-real-hash",
            first_name: "Test",
            last_name: "User",
        })
        .await
        .unwrap()
        .id
}

pub async fn app(store: &Store, owner: Id, name: &str) -> Id {
    store
        .create_application(
            &Actor::operator(),
            Owner::User(owner),
            name,
            "",
            &Default::default(),
        )
        .await
        .unwrap()
        .id
}

/// A device named `name` in `app`, with no attributes or tags.
pub async fn device(store: &Store, app: Id, name: &str) -> tollgate_store::devices::Device {
    store
        .create_device(
            &Actor::operator(),
            app,
            &tollgate_store::devices::DeviceFields {
                name: name.into(),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap()
}

/// The rows `device` has in `device_reports` and in `device_points`, counted in the tables
/// themselves (not through a read that first looks the device up).
pub async fn state_rows(store: &Store, device: Id) -> (i64, i64) {
    let mut counts = [0; 2];
    for (n, table) in counts.iter_mut().zip(["device_reports", "device_points"]) {
        *n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE device_id = $1"
        )))
        .bind(device.to_hex())
        .fetch_one(store.pool())
        .await
        .unwrap();
    }
    (counts[0], counts[1])
}

pub async fn token(store: &Store, app: Id, name: &str, expires: Option<i64>) -> TokenRecord {
    let scope = vec!["all.Application".to_owned()];
    store
        .create_token(
            &Actor::operator(),
            &NewToken {
                application_id: app,
                digest: rand_digest(),
                name,
                description: "",
                scope: &scope,
                status: TokenStatus::Active,
                expiration_date: expires,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: Creator {
                    kind: "user",
                    id: app,
                    name: "fixture@example.com".into(),
                },
            },
        )
        .await
        .unwrap()
}

/// Token rules that allow everything (the store's own tests are about the store).
pub fn allow(_: &TokenRecord) -> Result<(), StoreError> {
    Ok(())
}

/// The digest of a freshly generated token secret.
pub fn rand_digest() -> [u8; 32] {
    use tollgate_core::secret::{Secret, SecretKind};
    Secret::generate(SecretKind::ApplicationToken).digest()
}

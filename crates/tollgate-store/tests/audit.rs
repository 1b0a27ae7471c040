//! The audit log on both backends: an entry commits exactly when the change it records does.

use serde_json::json;
use tollgate_store::audit::{AUDIT_SORTS, AuditEntry, AuditFilter, AuditQuery, LogOf, Match};
use tollgate_store::devices::DeviceFields;
use tollgate_store::list::ListSpec;
use tollgate_store::tokens::{TokenChange, TokenStatus};
use tollgate_store::{Actor, Backend, Id, Store, StoreError};
use tollgate_testkit::{Case, case};

use crate::support::{allow, app, fresh, token, user};

fn by_time(per_page: i64, page: i64) -> ListSpec {
    ListSpec {
        sort: AUDIT_SORTS[0].1,
        descending: false,
        page,
        per_page,
        filter: None,
    }
}

async fn log_of(store: &Store, app: Id) -> Vec<AuditEntry> {
    let q = AuditQuery {
        log: LogOf::Application(app),
        start: None,
        end: None,
        filter: AuditFilter::default(),
    };
    store.audit_logs(&q, &by_time(1000, 0)).await.unwrap().items
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Each audited write leaves one entry naming the actor (a token by id and name, from its
/// client address), the targets, the action and what was changed.
async fn every_change_is_recorded_with_its_actor_and_targets() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "Plant floor").await;
    let ci = token(&f.store, app, "CI", None).await;
    let client: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let actor = Actor::api_token(ci.id, app).acting_from(Some(client));
    let device = f
        .store
        .create_device(
            &actor,
            app,
            &DeviceFields {
                name: "pump".into(),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
    let change = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..Default::default()
    };
    let other = token(&f.store, app, "Dashboard", None).await;
    f.store
        .update_token(&actor, app, other.id, &change, allow)
        .await
        .unwrap();
    f.store.delete_device(&actor, app, device.id).await.unwrap();
    // A token deleting itself is still named as the actor.
    f.store
        .delete_token(&actor, app, ci.id, allow)
        .await
        .unwrap();

    let log = log_of(&f.store, app).await;
    let actions: Vec<String> = log
        .iter()
        .map(|e| format!("{}.{}", e.request_resource, e.request_action))
        .collect();
    assert_eq!(
        actions,
        [
            "applications.post",
            "applicationApiTokens.post",
            "devices.post",
            "applicationApiTokens.post",
            "applicationApiToken.patch",
            "device.delete",
            "applicationApiToken.delete",
        ]
    );
    let patch = &log[4];
    assert_eq!(patch.actor_type, "ApiToken");
    assert_eq!(patch.actor_id, Some(ci.id));
    assert_eq!(patch.actor_name.as_deref(), Some("CI"));
    assert_eq!(patch.client_address.as_deref(), Some("203.0.113.7"));
    let primary = patch.primary_target.as_ref().unwrap();
    assert_eq!(
        (primary.kind.as_str(), primary.id, primary.name.as_deref()),
        ("Application", app, Some("Plant floor"))
    );
    let secondary = patch.secondary_target.as_ref().unwrap();
    assert_eq!(
        (
            secondary.kind.as_str(),
            secondary.id,
            secondary.name.as_deref()
        ),
        ("ApiToken", other.id, Some("Dashboard"))
    );
    assert_eq!(patch.request_body, json!({ "status": "inactive" }));
    assert_eq!(
        patch.request_path_params,
        json!({ "applicationId": app.to_hex(), "apiTokenId": other.id.to_hex() })
    );
    assert_eq!(
        log[5].secondary_target.as_ref().unwrap().name.as_deref(),
        Some("pump")
    );
    assert_eq!(log[6].actor_name.as_deref(), Some("CI"));
    // The operator's entries say so, with no address.
    assert_eq!(log[0].actor_type, "Operator");
    assert_eq!(log[0].client_address, None);
    // A sandbox application belongs to no organization's log.
    assert!(log.iter().all(|e| e.org_id.is_none()));
}

/// Refused writes leave neither change nor entry: the token rules say no, or the credential
/// was revoked before the write.
async fn a_refused_write_leaves_neither_change_nor_entry() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let t = token(&f.store, app, "CI", None).await;
    let before = log_of(&f.store, app).await.len();
    let rename = TokenChange {
        name: Some("renamed".into()),
        ..Default::default()
    };
    let refused = f
        .store
        .update_token(&Actor::operator(), app, t.id, &rename, |_| {
            Err(StoreError::Conflict("refused by the rules"))
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    assert_eq!(f.store.token(app, t.id).await.unwrap().name, "CI");
    assert_eq!(log_of(&f.store, app).await.len(), before);

    let off = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..Default::default()
    };
    f.store
        .update_token(&Actor::operator(), app, t.id, &off, allow)
        .await
        .unwrap();
    let before = log_of(&f.store, app).await.len();
    let by_revoked = f
        .store
        .create_device(
            &Actor::api_token(t.id, app),
            app,
            &DeviceFields {
                name: "pump".into(),
                ..Default::default()
            },
            &[],
        )
        .await;
    assert!(matches!(by_revoked, Err(StoreError::Revoked(_))));
    assert_eq!(count(&f.store, "devices").await, 0);
    assert_eq!(log_of(&f.store, app).await.len(), before);
}

/// No change without its entry: when the entry cannot be written, the change is not made. No
/// entry without its change: when the change fails after its entry was written, the entry
/// goes too.
async fn a_failing_write_leaves_neither_change_nor_entry() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let t = token(&f.store, app, "CI", None).await;

    // The entry's insert fails (its table is away): no token is created.
    sqlx::query("ALTER TABLE audit_logs RENAME TO audit_logs_away")
        .execute(f.store.pool())
        .await
        .unwrap();
    let tokens_before = count(&f.store, "api_tokens").await;
    let scope = vec!["all.Application".to_owned()];
    let created = f
        .store
        .create_token(
            &Actor::operator(),
            &tollgate_store::tokens::NewToken {
                application_id: app,
                digest: crate::support::rand_digest(),
                name: "never",
                description: "",
                scope: &scope,
                status: TokenStatus::Active,
                expiration_date: None,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: t.creator.clone(),
            },
        )
        .await;
    assert!(created.is_err(), "a token was created without its entry");
    assert_eq!(count(&f.store, "api_tokens").await, tokens_before);
    sqlx::query("ALTER TABLE audit_logs_away RENAME TO audit_logs")
        .execute(f.store.pool())
        .await
        .unwrap();

    // The deletion fails after its entry was inserted (a trigger refuses it): no entry stays.
    let trigger = match f.store.backend() {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON api_tokens \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
                .to_owned(),
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_delete() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
                .to_owned(),
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON api_tokens \
             FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
                .to_owned(),
        ],
    };
    for sql in trigger {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(f.store.pool())
            .await
            .unwrap();
    }
    let entries_before = count(&f.store, "audit_logs").await;
    let deleted = f
        .store
        .delete_token(&Actor::operator(), app, t.id, allow)
        .await;
    assert!(deleted.is_err());
    assert!(f.store.token(app, t.id).await.is_ok());
    assert_eq!(count(&f.store, "audit_logs").await, entries_before);
    let deletes = log_of(&f.store, app)
        .await
        .into_iter()
        .filter(|e| e.request_action == "delete")
        .count();
    assert_eq!(deletes, 0);
}

/// Filters (targets, actor, request, time), paging, the organization's log, one entry, and
/// pruning.
async fn logs_filter_page_and_prune() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let org = f
        .store
        .create_org(&Actor::operator(), "Acme", "", &Default::default(), owner)
        .await
        .unwrap();
    let app = f
        .store
        .create_application(
            &Actor::operator(),
            tollgate_store::applications::Owner::Organization(org.id),
            "Plant",
            "",
            &Default::default(),
        )
        .await
        .unwrap()
        .id;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(token(&f.store, app, &format!("t{i}"), None).await.id);
    }
    for id in &ids[..2] {
        f.store
            .delete_token(&Actor::operator(), app, *id, allow)
            .await
            .unwrap();
    }
    let query = |filter: AuditFilter| AuditQuery {
        log: LogOf::Org(org.id),
        start: None,
        end: None,
        filter,
    };
    let all = f
        .store
        .audit_logs(&query(AuditFilter::default()), &by_time(3, 0))
        .await
        .unwrap();
    // applications.post + 5 creations + 2 deletions, in the organization's log.
    assert_eq!(all.total, 8);
    assert_eq!(all.items.len(), 3);
    let last = f
        .store
        .audit_logs(&query(AuditFilter::default()), &by_time(3, 2))
        .await
        .unwrap();
    assert_eq!(last.items.len(), 2);
    let deletes = AuditFilter {
        request: vec![(None, Some("delete".into()))],
        ..Default::default()
    };
    let page = f
        .store
        .audit_logs(&query(deletes), &by_time(10, 0))
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let one = AuditFilter {
        secondary_target: vec![Match {
            kind: Some("ApiToken".into()),
            id: Some(ids[4]),
            name: None,
        }],
        ..Default::default()
    };
    let page = f
        .store
        .audit_logs(&query(one), &by_time(10, 0))
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    let entry = &page.items[0];
    assert_eq!(
        f.store
            .audit_log(LogOf::Org(org.id), entry.id)
            .await
            .unwrap(),
        *entry
    );
    assert!(matches!(
        f.store.audit_log(LogOf::Org(ids[0]), entry.id).await,
        Err(StoreError::NotFound)
    ));
    let nobody = AuditFilter {
        actor: vec![Match {
            kind: Some("User".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let page = f
        .store
        .audit_logs(&query(nobody), &by_time(10, 0))
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    let future = AuditQuery {
        start: Some(tollgate_store::now_ms() + 60_000),
        ..query(AuditFilter::default())
    };
    let page = f.store.audit_logs(&future, &by_time(10, 0)).await.unwrap();
    assert_eq!(page.total, 0);
    // Pruning removes what is older than the bound, and only that.
    assert_eq!(f.store.prune_audit_logs(0).await.unwrap(), 0);
    let pruned = f
        .store
        .prune_audit_logs(tollgate_store::now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(pruned, 8);
    assert_eq!(count(&f.store, "audit_logs").await, 0);
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_change_is_recorded_with_its_actor_and_targets),
        case!(a_refused_write_leaves_neither_change_nor_entry),
        case!(a_failing_write_leaves_neither_change_nor_entry),
        case!(logs_filter_page_and_prune),
    ]
}

//! Token policies, the background jobs and their lease (issue 15, item 2) on both backends:
//! a policy write changes only the fields given; every announcement is made once however
//! often (and by however many stores) the jobs run, and after a restart; idle tokens are
//! switched off and can be switched on again; one lease has one holder at a time.

use std::sync::Arc;

use tokio::sync::Barrier;
use tollgate_store::applications::Owner;
use tollgate_store::policy::{DAY_MS, IDLE, JOBS_LEASE, PolicyPatch, Source};
use tollgate_store::tokens::{TokenChange, TokenStatus};
use tollgate_store::{Actor, Id, Store, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{allow, app, fresh, token, user};

async fn entries(store: &Store, action: &str, token: Id) -> i64 {
    let (resource, verb) = action.split_once('.').unwrap();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_logs WHERE request_resource = $1 AND request_action = $2 \
         AND secondary_target_id = $3",
    )
    .bind(resource)
    .bind(verb)
    .bind(token.to_hex())
    .fetch_one(store.pool())
    .await
    .unwrap()
}

async fn a_policy_write_changes_only_the_fields_given() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let org = f
        .store
        .create_org(&Actor::operator(), "Plant", "", &Default::default(), owner)
        .await
        .unwrap();
    let app = f
        .store
        .create_application(
            &Actor::operator(),
            Owner::Organization(org.id),
            "Line",
            "",
            &Default::default(),
        )
        .await
        .unwrap()
        .id;
    let p = f.store.application_policy(app).await.unwrap();
    assert_eq!(p.org_id, Some(org.id));
    assert_eq!(p.effective().max_lifetime_ms, (None, Source::Default));

    f.store
        .set_org_policy(
            &Actor::operator(),
            org.id,
            &PolicyPatch {
                max_lifetime_ms: Some(Some(90 * DAY_MS)),
                idle_deactivation_ms: Some(Some(30 * DAY_MS)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = f
        .store
        .set_application_policy(
            &Actor::operator(),
            app,
            &PolicyPatch {
                max_lifetime_ms: Some(Some(10 * DAY_MS)),
                expiry_required: Some(Some(true)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = p.effective();
    assert_eq!(e.max_lifetime_ms, (Some(10 * DAY_MS), Source::Application));
    assert_eq!(e.expiry_required, (true, Source::Application));
    assert_eq!(
        e.idle_deactivation_ms,
        (Some(30 * DAY_MS), Source::Organization)
    );
    assert_eq!(e.warning_leads_ms.1, Source::Default);
    // A second write of one field keeps the others; null unsets.
    let p = f
        .store
        .set_application_policy(
            &Actor::operator(),
            app,
            &PolicyPatch {
                max_lifetime_ms: Some(None),
                warning_leads_ms: Some(Some(vec![14 * DAY_MS])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = p.effective();
    assert_eq!(e.max_lifetime_ms, (Some(90 * DAY_MS), Source::Organization));
    assert_eq!(e.expiry_required, (true, Source::Application));
    assert_eq!(e.warning_leads_ms, (vec![14 * DAY_MS], Source::Application));
    assert_eq!(
        f.store.first_leads().await.unwrap(),
        vec![(app, 14 * DAY_MS)]
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_logs WHERE request_resource = 'applicationTokenPolicy' \
         AND request_action = 'patch' AND application_id = $1",
    )
    .bind(app.to_hex())
    .fetch_one(f.store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 2);
    // An application that is not there: nothing written.
    let missing = Id::generate();
    assert!(
        f.store
            .set_application_policy(&Actor::operator(), missing, &PolicyPatch::default())
            .await
            .is_err()
    );
}

/// The warnings, the expiry and the retirement are each announced once, whatever the number
/// of runs and stores (a restart is a new store on the same database).
async fn announcements_are_made_once_across_runs_and_restarts() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let app = app(&f.store, owner, "a").await;
    let t0 = now_ms();
    let t = token(&f.store, app, "ingest", Some(t0 + 40 * DAY_MS)).await;
    let never = token(&f.store, app, "never", None).await;

    // 40 days ahead: nothing due.
    let r = f.store.run_token_jobs(t0).await.unwrap();
    assert!(r.expiring.is_empty() && r.expired.is_empty(), "{r:?}");
    // 20 days before expiry, three runs, then a "restarted" store: one 30-day warning.
    for _ in 0..3 {
        f.store.run_token_jobs(t0 + 20 * DAY_MS).await.unwrap();
    }
    let again = Store::connect_with(&f.url, 2).await.unwrap();
    let r = again.run_token_jobs(t0 + 20 * DAY_MS).await.unwrap();
    assert!(r.expiring.is_empty(), "announced twice: {r:?}");
    assert_eq!(
        entries(&f.store, "applicationApiToken.expiring", t.id).await,
        1
    );
    // Down from then until 12 hours before expiry: only the nearest warning (1 day), once.
    let late = t0 + 40 * DAY_MS - DAY_MS / 2;
    let r = f.store.run_token_jobs(late).await.unwrap();
    assert_eq!(r.expiring.len(), 1);
    again.run_token_jobs(late).await.unwrap();
    assert_eq!(
        entries(&f.store, "applicationApiToken.expiring", t.id).await,
        2
    );
    let body: String = sqlx::query_scalar::<_, String>(
        "SELECT request_body FROM audit_logs WHERE request_resource = 'applicationApiToken' \
         AND request_action = 'expiring' ORDER BY creation_date DESC, id DESC",
    )
    .fetch_all(f.store.pool())
    .await
    .unwrap()
    .into_iter()
    .find(|b| b.contains("\"leadDays\":1"))
    .expect("the 1-day warning names its lead time");
    assert!(body.contains("expirationDate"), "{body}");
    // Expired: announced once, by whichever store runs first.
    let after = t0 + 41 * DAY_MS;
    let (a, b) = tokio::join!(f.store.run_token_jobs(after), again.run_token_jobs(after));
    assert_eq!(a.unwrap().expired.len() + b.unwrap().expired.len(), 1);
    f.store.run_token_jobs(after).await.unwrap();
    assert_eq!(
        entries(&f.store, "applicationApiToken.expired", t.id).await,
        1
    );
    assert_eq!(
        entries(&f.store, "applicationApiToken.expired", never.id).await,
        0
    );
    assert_eq!(
        entries(&f.store, "applicationApiToken.expiring", never.id).await,
        0
    );

    // A rolled token: retired once (not "expired").
    let rolled = f
        .store
        .roll_token(&Actor::operator(), app, never.id, |_| {
            Ok::<_, tollgate_store::StoreError>(tollgate_store::lifecycle::RollPlan {
                digest: crate::support::rand_digest(),
                expiration_date: None,
                creator: never.creator.clone(),
                retires_at: now_ms() + 1_000,
            })
        })
        .await
        .unwrap();
    let past = now_ms() + 5 * DAY_MS;
    for s in [&f.store, &again, &f.store] {
        s.run_token_jobs(past).await.unwrap();
    }
    assert_eq!(
        entries(&f.store, "applicationApiToken.retired", never.id).await,
        1
    );
    assert_eq!(
        entries(&f.store, "applicationApiToken.expired", never.id).await,
        0
    );
    assert_eq!(
        entries(&f.store, "applicationApiToken.retired", rolled.new.id).await,
        0
    );
    let actor: String =
        sqlx::query_scalar("SELECT actor_type FROM audit_logs WHERE request_action = 'retired'")
            .fetch_one(f.store.pool())
            .await
            .unwrap();
    assert_eq!(actor, "System");
}

/// An idle token is switched off once (with the reason), a used one is not; switched on
/// again, it counts as used from then.
async fn idle_tokens_are_switched_off_and_can_be_switched_on_again() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let app = app(&f.store, owner, "a").await;
    let other = crate::support::app(&f.store, owner, "no policy").await;
    let idle = token(&f.store, app, "idle", None).await;
    let used = token(&f.store, app, "used", None).await;
    let elsewhere = token(&f.store, other, "elsewhere", None).await;
    f.store
        .set_application_policy(
            &Actor::operator(),
            app,
            &PolicyPatch {
                idle_deactivation_ms: Some(Some(10 * DAY_MS)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t0 = now_ms();
    f.store
        .record_last_used(&[(used.id, t0 + 5 * DAY_MS)])
        .await
        .unwrap();
    let r = f.store.run_token_jobs(t0 + 11 * DAY_MS).await.unwrap();
    assert_eq!(r.idle_deactivated.len(), 1, "{r:?}");
    assert_eq!(r.idle_deactivated[0].id, idle.id);
    f.store.run_token_jobs(t0 + 11 * DAY_MS).await.unwrap();
    let stored = f.store.token(app, idle.id).await.unwrap();
    assert_eq!(stored.status, TokenStatus::Inactive);
    assert_eq!(stored.life.deactivation_reason.as_deref(), Some(IDLE));
    assert_eq!(
        entries(&f.store, "applicationApiToken.idleDeactivated", idle.id).await,
        1
    );
    assert_eq!(
        f.store.token(app, used.id).await.unwrap().status,
        TokenStatus::Active
    );
    assert_eq!(
        f.store.token(other, elsewhere.id).await.unwrap().status,
        TokenStatus::Active
    );
    // Switched on again: the reason goes, and idleness counts from now.
    let back = f
        .store
        .update_token(
            &Actor::operator(),
            app,
            idle.id,
            &TokenChange {
                status: Some(TokenStatus::Active),
                ..Default::default()
            },
            allow,
        )
        .await
        .unwrap();
    assert_eq!(back.life.deactivation_reason, None);
    assert!(back.life.activated_at.is_some());
    let r = f.store.run_token_jobs(now_ms() + 9 * DAY_MS).await.unwrap();
    assert!(r.idle_deactivated.is_empty(), "{r:?}");
    let r = f
        .store
        .run_token_jobs(now_ms() + 11 * DAY_MS)
        .await
        .unwrap();
    let ids: Vec<Id> = r.idle_deactivated.iter().map(|a| a.id).collect();
    assert!(
        ids.contains(&idle.id) && !ids.contains(&elsewhere.id),
        "{r:?}"
    );
}

/// One holder at a time: many nodes asking at once, one gets it; it renews; others take
/// over only when it has run out or been given up.
async fn a_lease_has_one_holder_at_a_time() {
    let f = fresh().await;
    let nodes: Vec<Id> = (0..6).map(|_| Id::generate()).collect();
    let barrier = Arc::new(Barrier::new(nodes.len()));
    let mut tasks = Vec::new();
    for n in &nodes {
        let (store, barrier, n) = (f.store.clone(), barrier.clone(), *n);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.take_lease(JOBS_LEASE, n, 60_000).await.unwrap()
        }));
    }
    let mut winners = Vec::new();
    for (t, n) in tasks.into_iter().zip(&nodes) {
        if t.await.unwrap() {
            winners.push(*n);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let holder = winners[0];
    let other = *nodes.iter().find(|n| **n != holder).unwrap();
    assert!(
        f.store
            .take_lease(JOBS_LEASE, holder, 60_000)
            .await
            .unwrap()
    );
    assert!(!f.store.take_lease(JOBS_LEASE, other, 60_000).await.unwrap());
    assert_eq!(
        f.store.lease_holder(JOBS_LEASE).await.unwrap().unwrap().0,
        holder
    );
    // A short lease runs out: the other takes over, and the first cannot renew.
    assert!(f.store.take_lease(JOBS_LEASE, holder, 1).await.unwrap());
    tollgate_testkit::eventually(
        "the other node takes over",
        std::time::Duration::from_secs(10),
        || async {
            f.store
                .take_lease(JOBS_LEASE, other, 60_000)
                .await
                .unwrap()
                .then_some(())
        },
    )
    .await;
    assert!(
        !f.store
            .take_lease(JOBS_LEASE, holder, 60_000)
            .await
            .unwrap()
    );
    // Given up: taken at once.
    f.store.release_lease(JOBS_LEASE, other).await.unwrap();
    assert!(
        f.store
            .take_lease(JOBS_LEASE, holder, 60_000)
            .await
            .unwrap()
    );
}

/// The jobs run every interval on every token table, however large: none of their questions
/// may read every token (SQLite's plan names the tokens table `t`; "SCAN t" is a walk over all
/// of it, "SEARCH t USING INDEX" a look-up). With 1,000,000 tokens the walks took 0.8–2.9 s
/// each, every minute. SQLite only: PostgreSQL's planner walks small tables whatever indexes
/// exist, so its plan here would prove nothing.
async fn no_job_reads_every_token() {
    let f = fresh().await;
    for (job, sql, params) in tollgate_store::policy::job_queries() {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..params {
            q = q.bind(0_i64);
        }
        let plan: Vec<String> = q
            .fetch_all(f.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get::<String, _>(r, 3))
            .collect();
        assert!(
            plan.iter().any(|d| d.starts_with("SEARCH t ")),
            "{job}: the plan does not look tokens up by an index: {plan:?}"
        );
        assert!(
            !plan.iter().any(|d| d.starts_with("SCAN t")),
            "{job}: the plan reads every token: {plan:?}"
        );
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(no_job_reads_every_token).once(),
        case!(a_policy_write_changes_only_the_fields_given),
        case!(
            announcements_are_made_once_across_runs_and_restarts,
            multi_thread = 2
        ),
        case!(idle_tokens_are_switched_off_and_can_be_switched_on_again),
        case!(a_lease_has_one_holder_at_a_time, multi_thread = 4),
    ]
}

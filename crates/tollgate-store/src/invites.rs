//! Organization invitations: an invite names an email and a role, and stays pending until the
//! person with that email accepts it (then they become a member, in the same transaction that
//! removes the invite) or rejects it. Whether an account with that email exists is never
//! consulted when inviting, so an invite says nothing about who has an account.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::Role;

use crate::audit::{self, Entry, Place, Target};
use crate::ids::from_db;
use crate::orgs::{ResourceRole, ensure_admin, lock_org, replace_application_roles};
use crate::users::normalize_email;
use crate::{Actor, Id, Result, Store, StoreError};

/// How long an invitation can be accepted: 7 days.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Most pending invitations one organization may have.
pub const MAX_PENDING_INVITES: i64 = 1000;

#[derive(Clone, Debug)]
pub struct Invite {
    pub id: Id,
    pub org_id: Id,
    pub email: String,
    pub role: Role,
    pub application_roles: Vec<ResourceRole>,
    pub dashboard_roles: Option<Value>,
    pub invited_by: Option<Id>,
    pub invite_date: i64,
    pub expires_at: i64,
}

impl Invite {
    pub fn has_expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }
}

/// A pending invitation as its invitee sees it.
#[derive(Clone, Debug)]
pub struct InviteForUser {
    pub invite: Invite,
    pub org_name: String,
    pub invited_by_name: String,
    pub invited_by_email: Option<String>,
}

/// What a new invitation grants.
#[derive(Clone, Debug)]
pub struct NewInvite<'a> {
    pub email: &'a str,
    pub role: Role,
    pub application_roles: &'a [ResourceRole],
    pub dashboard_roles: Option<&'a Value>,
    pub invited_by: Id,
}

/// How an invitee answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteAnswer {
    Accept,
    Reject,
}

/// Why an answer was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// No pending invitation with that id for this user's email.
    #[error("no such invitation")]
    NotFound,
    /// The invitation expired (it is removed).
    #[error("the invitation has expired")]
    Expired,
    /// Accepting: the user is a member already (the invitation is removed).
    #[error("already a member")]
    AlreadyMember,
    #[error(transparent)]
    Store(#[from] StoreError),
}

const INVITE_COLUMNS: &str = "id, org_id, email, role, application_roles, dashboard_roles, \
                              invited_by, invite_date, expires_at";

fn invite_from_row(row: &AnyRow) -> Result<Invite> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let roles: Vec<(String, String)> =
        serde_json::from_str(&row.try_get::<String, _>("application_roles")?)
            .map_err(|e| corrupt(e.to_string()))?;
    let application_roles = roles
        .into_iter()
        .map(|(id, role)| {
            Ok(ResourceRole {
                resource_id: from_db(&id)?,
                role: role
                    .parse()
                    .map_err(|_| corrupt(format!("bad role {role:?}")))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let role: String = row.try_get("role")?;
    Ok(Invite {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        org_id: from_db(&row.try_get::<String, _>("org_id")?)?,
        email: row.try_get("email")?,
        role: role
            .parse()
            .map_err(|_| corrupt(format!("bad role {role:?}")))?,
        application_roles,
        dashboard_roles: row
            .try_get::<Option<String>, _>("dashboard_roles")?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(e.to_string())))
            .transpose()?,
        invited_by: row
            .try_get::<Option<String>, _>("invited_by")?
            .map(|s| from_db(&s))
            .transpose()?,
        invite_date: row.try_get("invite_date")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// The audit entry of a change of an invitation (its primary target, by id and email).
fn invite_entry(
    action: &'static str,
    status: u16,
    email: &str,
    invite: Id,
    org: Id,
    body: Value,
) -> Entry {
    let params: &[(&str, Id)] = if action == "me.respondToInvite" {
        &[("inviteId", invite)]
    } else {
        &[("orgId", org)]
    };
    Entry {
        place: Place::Org(org),
        action,
        status,
        primary: Some(Target::new("OrgInvite", invite, email)),
        secondary: None,
        path_params: audit::path(params),
        body,
    }
}

impl Store {
    /// Invite `new.email` to `org` (pending until accepted). Inviting an email that already
    /// has a pending invitation renews it with the new role. A member already: `Conflict`.
    /// Too many pending: `Conflict("…")` naming the limit. `actor` must still be one of the
    /// organization's administrators (`NoLongerAdmin`), checked with the organization locked,
    /// which also makes invitations of one organization take turns (the pending limit holds).
    pub async fn create_invite(
        &self,
        actor: &Actor,
        org: Id,
        new: &NewInvite<'_>,
    ) -> Result<Invite> {
        let now = crate::now_ms();
        let email = normalize_email(new.email);
        let roles: Vec<(String, &str)> = new
            .application_roles
            .iter()
            .map(|r| (r.resource_id.to_hex(), r.role.as_str()))
            .collect();
        let invite = Invite {
            id: Id::generate(),
            org_id: org,
            email: email.clone(),
            role: new.role,
            application_roles: new.application_roles.to_vec(),
            dashboard_roles: new.dashboard_roles.cloned(),
            invited_by: Some(new.invited_by),
            invite_date: now,
            expires_at: now + INVITE_TTL_MS,
        };
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, org).await?;
        ensure_admin(&mut tx, org, actor).await?;
        let member: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM org_members m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 AND u.email = $2",
        )
        .bind(org.to_hex())
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Err(StoreError::Conflict("a member with this email"));
        }
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM org_invites WHERE org_id = $1")
            .bind(org.to_hex())
            .fetch_one(&mut *tx)
            .await?;
        if pending >= MAX_PENDING_INVITES {
            return Err(StoreError::Conflict("the most pending invitations allowed"));
        }
        sqlx::query("DELETE FROM org_invites WHERE org_id = $1 AND email = $2")
            .bind(org.to_hex())
            .bind(&email)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO org_invites (id, org_id, email, role, application_roles, \
             dashboard_roles, invited_by, invite_date, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(invite.id.to_hex())
        .bind(org.to_hex())
        .bind(&email)
        .bind(new.role.as_str())
        .bind(serde_json::to_string(&roles).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(new.dashboard_roles.map(Value::to_string))
        .bind(new.invited_by.to_hex())
        .bind(now)
        .bind(invite.expires_at)
        .execute(&mut *tx)
        .await?;
        let roles: Vec<Value> = roles
            .iter()
            .map(|(id, role)| serde_json::json!({ "resourceId": id, "role": role }))
            .collect();
        let body = audit::fields([
            ("email", Some(Value::from(email.as_str()))),
            ("role", Some(Value::from(new.role.as_str()))),
            ("applicationRoles", Some(Value::Array(roles))),
            ("dashboardRoles", new.dashboard_roles.cloned()),
        ]);
        let entry = invite_entry("org.inviteMember", 200, &invite.email, invite.id, org, body);
        audit::record(&mut tx, actor, entry).await?;
        tx.commit().await?;
        Ok(invite)
    }

    /// The organization's pending invitations (expired ones included, marked by the caller),
    /// oldest first.
    pub async fn org_invites(&self, org: Id) -> Result<Vec<Invite>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM org_invites WHERE org_id = $1 \
             ORDER BY invite_date, id"
        )))
        .bind(org.to_hex())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invite_from_row).collect()
    }

    /// Withdraw an invitation of `org`, as `actor` (still one of its administrators). Not one
    /// of its invitations: `NotFound`.
    pub async fn revoke_invite(&self, actor: &Actor, org: Id, invite: Id) -> Result<()> {
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, org).await?;
        ensure_admin(&mut tx, org, actor).await?;
        let email: String = sqlx::query_scalar(
            "DELETE FROM org_invites WHERE org_id = $1 AND id = $2 RETURNING email",
        )
        .bind(org.to_hex())
        .bind(invite.to_hex())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let body = serde_json::json!({ "inviteId": invite.to_hex() });
        let entry = invite_entry("org.revokeInvite", 200, &email, invite, org, body);
        audit::record(&mut tx, actor, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The invitations waiting for `email`, with what the invitee is shown about each.
    pub async fn invites_for_email(&self, email: &str) -> Result<Vec<InviteForUser>> {
        let rows = sqlx::query(
            "SELECT i.id, i.org_id, i.email, i.role, i.application_roles, i.dashboard_roles, \
             i.invited_by, i.invite_date, i.expires_at, o.name AS org_name, \
             u.first_name AS by_first, u.last_name AS by_last, u.email AS by_email \
             FROM org_invites i JOIN orgs o ON o.id = i.org_id \
             LEFT JOIN users u ON u.id = i.invited_by \
             WHERE i.email = $1 ORDER BY i.invite_date, i.id",
        )
        .bind(normalize_email(email))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let first: Option<String> = row.try_get("by_first")?;
                let last: Option<String> = row.try_get("by_last")?;
                let name = format!("{} {}", first.unwrap_or_default(), last.unwrap_or_default());
                Ok(InviteForUser {
                    invite: invite_from_row(row)?,
                    org_name: row.try_get("org_name")?,
                    invited_by_name: name.trim().to_owned(),
                    invited_by_email: row.try_get("by_email")?,
                })
            })
            .collect()
    }

    /// Answer an invitation addressed to `email` on behalf of `user`. Accepting makes the user
    /// a member with the invitation's role, in the transaction that removes the invitation.
    /// `actor` is the user's session, re-checked first.
    pub async fn answer_invite(
        &self,
        actor: &Actor,
        invite: Id,
        user: Id,
        email: &str,
        answer: InviteAnswer,
    ) -> Result<Invite, AnswerError> {
        let now = crate::now_ms();
        let mut tx = self.begin_as(actor).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM org_invites WHERE id = $1 AND email = $2"
        )))
        .bind(invite.to_hex())
        .bind(normalize_email(email))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some(row) = row else {
            return Err(AnswerError::NotFound);
        };
        let found = invite_from_row(&row)?;
        sqlx::query("DELETE FROM org_invites WHERE id = $1")
            .bind(invite.to_hex())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let expired = found.has_expired(now);
        let body = serde_json::json!({ "accept": answer == InviteAnswer::Accept });
        // An expired invitation is removed (and that recorded) but answered 400.
        let status = if expired { 400 } else { 200 };
        let entry = invite_entry(
            "me.respondToInvite",
            status,
            &found.email,
            invite,
            found.org_id,
            body,
        );
        audit::record(&mut tx, actor, entry).await?;
        if expired {
            tx.commit().await?;
            return Err(AnswerError::Expired);
        }
        if answer == InviteAnswer::Accept {
            let inserted = sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, dashboard_roles, join_date) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(found.org_id.to_hex())
            .bind(user.to_hex())
            .bind(found.role.as_str())
            .bind(
                found
                    .dashboard_roles
                    .clone()
                    .unwrap_or_else(|| Value::Array(vec![]))
                    .to_string(),
            )
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx);
            match inserted {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => {
                    drop(tx);
                    // Remove the now pointless invitation on its own.
                    let _ = sqlx::query("DELETE FROM org_invites WHERE id = $1")
                        .bind(invite.to_hex())
                        .execute(&self.pool)
                        .await;
                    return Err(AnswerError::AlreadyMember);
                }
                Err(e) => return Err(e.into()),
            }
            if !found.application_roles.is_empty() {
                replace_application_roles(&mut tx, found.org_id, user, &found.application_roles)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(found)
    }

    /// Remove invitations that expired more than `grace_ms` ago.
    pub async fn purge_expired_invites(&self, now: i64, grace_ms: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM org_invites WHERE expires_at < $1")
            .bind(now - grace_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

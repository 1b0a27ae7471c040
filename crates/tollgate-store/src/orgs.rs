//! Organizations and their members.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::Role;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like, page_sql};
use crate::notify::Change;
use crate::{Id, Result, Store, StoreError, WriteTx};

#[derive(Clone, Debug)]
pub struct Org {
    pub id: Id,
    pub name: String,
    pub description: String,
    /// Other reference-schema fields the server keeps and returns (e.g. `iconColor`).
    pub extra: Map<String, Value>,
    /// Who must use two-factor authentication to act in this organization.
    pub mfa_mode: MfaMode,
    pub creation_date: i64,
    pub last_updated: i64,
}

/// The reference's `mfaMode`: which members must use two-factor authentication to act in the
/// organization (its own actions and its applications').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MfaMode {
    #[default]
    NotRequired,
    /// Members whose organization role is admin.
    AdminRequired,
    /// Every member.
    Required,
}

impl MfaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MfaMode::NotRequired => "notRequired",
            MfaMode::AdminRequired => "adminRequired",
            MfaMode::Required => "required",
        }
    }

    pub fn parse(s: &str) -> Option<MfaMode> {
        match s {
            "notRequired" => Some(MfaMode::NotRequired),
            "adminRequired" => Some(MfaMode::AdminRequired),
            "required" => Some(MfaMode::Required),
            _ => None,
        }
    }

    /// Whether a member with organization role `role` must use two-factor authentication.
    pub fn requires(self, role: Role) -> bool {
        match self {
            MfaMode::NotRequired => false,
            MfaMode::AdminRequired => role == Role::Admin,
            MfaMode::Required => true,
        }
    }
}

/// A member's standing in an organization, as the authorization layer needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub role: Role,
    /// The organization requires two-factor authentication of this member and they have not
    /// enabled it.
    pub two_factor_missing: bool,
}

/// A per-resource override of a member's role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRole {
    pub resource_id: Id,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub user_id: Id,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub application_roles: Vec<ResourceRole>,
    /// Stored and returned as given (the server has no dashboards).
    pub dashboard_roles: Value,
}

/// What to change about a member; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct MemberChange {
    pub role: Option<Role>,
    pub application_roles: Option<Vec<ResourceRole>>,
    pub dashboard_roles: Option<Value>,
}

/// What to change about an organization.
#[derive(Clone, Debug, Default)]
pub struct OrgChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub mfa_mode: Option<MfaMode>,
    pub extra: Map<String, Value>,
}

pub const ORG_FIELDS: Fields = Fields {
    sortable: &[
        ("name", Sort::Text("name")),
        ("id", Sort::Number("id")),
        ("creationDate", Sort::Number("creation_date")),
        ("lastUpdated", Sort::Number("last_updated")),
    ],
    filterable: &[("name", "name")],
    default_sort: "name",
};

fn parse_role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad role {s:?}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn org_from_row(row: &AnyRow) -> Result<Org> {
    Ok(Org {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        extra: parse_json(&row.try_get::<String, _>("extra")?)?,
        mfa_mode: MfaMode::parse(&row.try_get::<String, _>("mfa_mode")?).unwrap_or_default(),
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

const ORG_COLUMNS: &str = "id, name, description, extra, mfa_mode, creation_date, last_updated";

impl Store {
    /// Create an organization with `creator` as its first administrator, as `actor`.
    pub async fn create_org(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
        extra: &Map<String, Value>,
        creator: Id,
    ) -> Result<Org> {
        let now = crate::now_ms();
        let org = Org {
            id: Id::generate(),
            name: name.to_owned(),
            description: description.to_owned(),
            extra: extra.clone(),
            mfa_mode: MfaMode::NotRequired,
            creation_date: now,
            last_updated: now,
        };
        let mut tx = self.begin_as(actor).await?;
        sqlx::query(
            "INSERT INTO orgs (id, name, description, extra, creation_date, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(org.id.to_hex())
        .bind(name)
        .bind(description)
        .bind(Value::Object(extra.clone()).to_string())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id, role, join_date) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id.to_hex())
        .bind(creator.to_hex())
        .bind(Role::Admin.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    pub async fn org(&self, id: Id) -> Result<Org> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        org_from_row(&row)
    }

    /// The organizations `user` belongs to.
    pub async fn list_orgs_for_user(&self, user: Id, spec: &ListSpec) -> Result<Page<Org>> {
        let cond = " FROM orgs WHERE id IN (SELECT org_id FROM org_members WHERE user_id = $1)";
        let (list, count) = page_sql(
            self.backend,
            &format!("SELECT {ORG_COLUMNS}{cond}"),
            &format!("SELECT COUNT(*){cond}"),
            1,
            spec,
        );
        let filter = spec.filter.as_ref().map(|f| glob_to_like(&f.glob));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list)).bind(user.to_hex());
        let mut c = sqlx::query_scalar(sqlx::AssertSqlSafe(count)).bind(user.to_hex());
        if let Some(f) = &filter {
            q = q.bind(f.clone());
            c = c.bind(f.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let total: i64 = c.fetch_one(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(org_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// Change an organization's name, description or kept fields, as `actor` (who must still
    /// be one of its administrators). The patch is merged into the row as it is now, read
    /// `FOR UPDATE`, so concurrent patches of different fields both survive.
    pub async fn update_org(&self, actor: &Actor, id: Id, change: &OrgChange) -> Result<Org> {
        let mut tx = self.begin_as(actor).await?;
        let mut org = lock_org(&mut tx, id).await?;
        ensure_admin(&mut tx, id, actor).await?;
        if let Some(n) = &change.name {
            org.name = n.clone();
        }
        if let Some(d) = &change.description {
            org.description = d.clone();
        }
        if let Some(m) = change.mfa_mode {
            org.mfa_mode = m;
        }
        crate::merge_extra(&mut org.extra, &change.extra);
        org.last_updated = crate::now_ms();
        sqlx::query(
            "UPDATE orgs SET name = $2, description = $3, extra = $4, last_updated = $5, \
             mfa_mode = $6 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&org.name)
        .bind(&org.description)
        .bind(Value::Object(org.extra.clone()).to_string())
        .bind(org.last_updated)
        .bind(org.mfa_mode.as_str())
        .execute(&mut *tx)
        .await?;
        let mut body = change.extra.clone();
        if let Some(n) = &change.name {
            body.insert("name".into(), n.as_str().into());
        }
        if let Some(d) = &change.description {
            body.insert("description".into(), d.as_str().into());
        }
        if let Some(m) = change.mfa_mode {
            body.insert("mfaMode".into(), m.as_str().into());
        }
        let entry = Entry {
            place: Place::Org(id),
            action: "org.patch",
            status: 200,
            primary: None,
            secondary: None,
            path_params: audit::path(&[("orgId", id)]),
            body: Value::Object(body),
        };
        audit::record(&mut tx, actor, entry).await?;
        tx.commit().await?;
        Ok(org)
    }

    /// Delete an organization and every application it owns (with everything in them), as
    /// `actor` (who must still be one of its administrators). The organization row is locked
    /// first: an application being created into it either commits first (and is deleted
    /// here) or finds the organization gone.
    pub async fn delete_org(&self, actor: &Actor, id: Id) -> Result<()> {
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, id).await?;
        ensure_admin(&mut tx, id, actor).await?;
        let apps: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM applications WHERE owner_type = 'organization' AND owner_id = $1",
        )
        .bind(id.to_hex())
        .fetch_all(&mut *tx)
        .await?;
        let mut changes = Vec::with_capacity(apps.len());
        for app in &apps {
            let app = from_db(app)?;
            crate::applications::delete_application_in(&mut tx, app).await?;
            changes.push(Change::Application(app));
        }
        let deleted = sqlx::query("DELETE FROM orgs WHERE id = $1")
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.commit_with(tx, &changes).await
    }

    /// Members of an organization, with their user details, ordered by email.
    pub async fn org_members(&self, org: Id) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, u.first_name, u.last_name, m.role, m.dashboard_roles \
             FROM org_members m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 ORDER BY u.email",
        )
        .bind(org.to_hex())
        .fetch_all(&self.pool)
        .await?;
        let overrides = sqlx::query(
            "SELECT user_id, application_id, role FROM member_application_roles \
             WHERE org_id = $1 ORDER BY application_id",
        )
        .bind(org.to_hex())
        .fetch_all(&self.pool)
        .await?;
        let mut members = Vec::with_capacity(rows.len());
        for row in &rows {
            let user_id = from_db(&row.try_get::<String, _>("user_id")?)?;
            let mut application_roles = Vec::new();
            for o in &overrides {
                if from_db(&o.try_get::<String, _>("user_id")?)? == user_id {
                    application_roles.push(ResourceRole {
                        resource_id: from_db(&o.try_get::<String, _>("application_id")?)?,
                        role: parse_role(&o.try_get::<String, _>("role")?)?,
                    });
                }
            }
            members.push(Member {
                user_id,
                email: row.try_get("email")?,
                first_name: row.try_get("first_name")?,
                last_name: row.try_get("last_name")?,
                role: parse_role(&row.try_get::<String, _>("role")?)?,
                application_roles,
                dashboard_roles: parse_json(&row.try_get::<String, _>("dashboard_roles")?)?,
            });
        }
        Ok(members)
    }

    /// `user`'s role in `org`, or `None` if they are not a member.
    pub async fn org_role(&self, org: Id, user: Id) -> Result<Option<Role>> {
        Ok(self.org_membership(org, user).await?.map(|m| m.role))
    }

    /// `user`'s role in `org` and whether the organization's two-factor rule stops them, or
    /// `None` if they are not a member (one query).
    pub async fn org_membership(&self, org: Id, user: Id) -> Result<Option<Membership>> {
        let row = sqlx::query(
            "SELECT m.role, o.mfa_mode, \
             CAST(CASE WHEN u.totp_secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS two_factor \
             FROM org_members m JOIN orgs o ON o.id = m.org_id JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 AND m.user_id = $2",
        )
        .bind(org.to_hex())
        .bind(user.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| membership_from_row(&row, "role")).transpose()
    }

    /// Names of the organizations whose `mfaMode` requires two-factor authentication of
    /// `user` (by their organization role), by name.
    pub async fn orgs_requiring_two_factor(&self, user: Id) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT o.name FROM orgs o JOIN org_members m ON m.org_id = o.id \
             WHERE m.user_id = $1 AND (o.mfa_mode = 'required' \
               OR (o.mfa_mode = 'adminRequired' AND m.role = 'admin')) ORDER BY o.name",
        )
        .bind(user.to_hex())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Add an existing user to an organization, as `actor` (who must still be one of its
    /// administrators). Already a member: `Conflict`.
    pub async fn add_member(
        &self,
        actor: &Actor,
        org: Id,
        user: Id,
        change: &MemberChange,
    ) -> Result<()> {
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, org).await?;
        ensure_admin(&mut tx, org, actor).await?;
        let inserted = sqlx::query(
            "INSERT INTO org_members (org_id, user_id, role, dashboard_roles, join_date) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(org.to_hex())
        .bind(user.to_hex())
        .bind(change.role.unwrap_or(Role::View).as_str())
        .bind(
            change
                .dashboard_roles
                .clone()
                .unwrap_or_else(|| Value::Array(vec![]))
                .to_string(),
        )
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await;
        match inserted.map_err(StoreError::from_sqlx) {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(StoreError::Conflict("a member with this email"));
            }
            Err(e) => return Err(e),
        }
        if let Some(roles) = &change.application_roles {
            replace_application_roles(&mut tx, org, user, roles).await?;
        }
        audit_member(
            &mut tx,
            actor,
            org,
            user,
            "org.addMember",
            member_body(change),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Change a member's role or overrides, as `actor` (who must still be one of its
    /// administrators: `NoLongerAdmin`). Not a member: `NotFound`. Demoting the last
    /// administrator: `LastAdmin`.
    ///
    /// "At least one administrator" spans rows, so no row lock on the member alone can keep
    /// it: every change of an organization's members first locks the organization's row
    /// `FOR UPDATE`, which makes them take turns, and then checks the rule on what the
    /// members are now. (Two admins demoting each other at READ COMMITTED otherwise both see
    /// the other still an admin, and both commit.)
    pub async fn modify_member(
        &self,
        actor: &Actor,
        org: Id,
        user: Id,
        change: &MemberChange,
    ) -> Result<()> {
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, org).await?;
        ensure_admin(&mut tx, org, actor).await?;
        let current = member_role(&mut tx, org, user).await?;
        if let Some(role) = change.role {
            if current == Role::Admin && role != Role::Admin {
                ensure_another_admin(&mut tx, org, user).await?;
            }
            sqlx::query("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2")
                .bind(org.to_hex())
                .bind(user.to_hex())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(d) = &change.dashboard_roles {
            sqlx::query(
                "UPDATE org_members SET dashboard_roles = $3 WHERE org_id = $1 AND user_id = $2",
            )
            .bind(org.to_hex())
            .bind(user.to_hex())
            .bind(d.to_string())
            .execute(&mut *tx)
            .await?;
        }
        if let Some(roles) = &change.application_roles {
            replace_application_roles(&mut tx, org, user, roles).await?;
        }
        audit_member(
            &mut tx,
            actor,
            org,
            user,
            "org.modifyMember",
            member_body(change),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remove a member, as `actor` (who must still be one of its administrators). Not a
    /// member: `NotFound`. The last administrator: `LastAdmin`. Locked as
    /// [`Store::modify_member`] is.
    pub async fn remove_member(&self, actor: &Actor, org: Id, user: Id) -> Result<()> {
        let mut tx = self.begin_as(actor).await?;
        lock_org(&mut tx, org).await?;
        ensure_admin(&mut tx, org, actor).await?;
        if member_role(&mut tx, org, user).await? == Role::Admin {
            ensure_another_admin(&mut tx, org, user).await?;
        }
        let body = Value::Object(Map::new());
        audit_member(&mut tx, actor, org, user, "org.removeMember", body).await?;
        sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org.to_hex())
            .bind(user.to_hex())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What a member change set, as the request body names it.
fn member_body(change: &MemberChange) -> Value {
    let roles = change.application_roles.as_ref().map(|roles| {
        Value::Array(
            roles
                .iter()
                .map(|r| serde_json::json!({ "resourceId": r.resource_id.to_hex(), "role": r.role.as_str() }))
                .collect(),
        )
    });
    audit::fields([
        ("role", change.role.map(|r| Value::from(r.as_str()))),
        ("applicationRoles", roles),
        ("dashboardRoles", change.dashboard_roles.clone()),
    ])
}

/// The audit entry of a change of `user`'s membership of `org`. The reference has no target
/// type for a member: the member's id and email are in the body, as the request names them.
async fn audit_member(
    tx: &mut WriteTx,
    actor: &Actor,
    org: Id,
    user: Id,
    action: &'static str,
    body: Value,
) -> Result<()> {
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user.to_hex())
        .fetch_optional(&mut **tx)
        .await?;
    let mut body = body;
    if let Value::Object(map) = &mut body {
        map.insert("userId".into(), user.to_hex().into());
        if let Some(email) = email {
            map.insert("email".into(), email.into());
        }
    }
    let entry = Entry {
        place: Place::Org(org),
        action,
        status: 200,
        primary: None,
        secondary: None,
        path_params: audit::path(&[("orgId", org)]),
        body,
    };
    audit::record(tx, actor, entry).await
}

/// A [`Membership`] from a row with the role in column `role_column`, `mfa_mode` and
/// `two_factor` (0 or 1).
pub(crate) fn membership_from_row(row: &AnyRow, role_column: &str) -> Result<Membership> {
    let role = parse_role(&row.try_get::<String, _>(role_column)?)?;
    let mode = MfaMode::parse(&row.try_get::<String, _>("mfa_mode")?).unwrap_or_default();
    let two_factor = row.try_get::<i64, _>("two_factor")? != 0;
    Ok(Membership {
        role,
        two_factor_missing: mode.requires(role) && !two_factor,
    })
}

/// Lock an organization's row `FOR UPDATE` (what serializes every change of it and of its
/// members) and return it; `NotFound` when it does not exist.
pub(crate) async fn lock_org(tx: &mut WriteTx, id: Id) -> Result<Org> {
    let sql = format!(
        "SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1{}",
        Lock::Update.clause(tx.backend)
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_hex())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    org_from_row(&row)
}

/// With the organization locked: a user acting on it must still be one of its
/// administrators (every organization write needs that role; it may have been taken away
/// since the request was authorized). The operator may always act.
pub(crate) async fn ensure_admin(tx: &mut WriteTx, org: Id, actor: &Actor) -> Result<()> {
    let Some(user) = actor.user() else {
        return Ok(());
    };
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org.to_hex())
            .bind(user.to_hex())
            .fetch_optional(&mut **tx)
            .await?;
    match role.as_deref().map(parse_role).transpose()? {
        Some(Role::Admin) => Ok(()),
        _ => Err(StoreError::NoLongerAdmin),
    }
}

/// A member's role, inside a transaction; not a member: `NotFound`.
async fn member_role(conn: &mut sqlx::AnyConnection, org: Id, user: Id) -> Result<Role> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org.to_hex())
            .bind(user.to_hex())
            .fetch_optional(&mut *conn)
            .await?;
    parse_role(&role.ok_or(StoreError::NotFound)?)
}

async fn ensure_another_admin(conn: &mut sqlx::AnyConnection, org: Id, user: Id) -> Result<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND user_id <> $2 AND role = 'admin'",
    )
    .bind(org.to_hex())
    .bind(user.to_hex())
    .fetch_one(&mut *conn)
    .await?;
    if others == 0 {
        Err(StoreError::LastAdmin)
    } else {
        Ok(())
    }
}

pub(crate) async fn replace_application_roles(
    conn: &mut sqlx::AnyConnection,
    org: Id,
    user: Id,
    roles: &[ResourceRole],
) -> Result<()> {
    sqlx::query("DELETE FROM member_application_roles WHERE org_id = $1 AND user_id = $2")
        .bind(org.to_hex())
        .bind(user.to_hex())
        .execute(&mut *conn)
        .await?;
    for r in roles {
        // Overrides only make sense for the organization's own applications.
        let owned: Option<String> = sqlx::query_scalar(
            "SELECT id FROM applications WHERE id = $1 AND owner_type = 'organization' AND owner_id = $2",
        )
        .bind(r.resource_id.to_hex())
        .bind(org.to_hex())
        .fetch_optional(&mut *conn)
        .await?;
        if owned.is_none() {
            return Err(StoreError::UnknownReference(r.resource_id));
        }
        sqlx::query(
            "INSERT INTO member_application_roles (org_id, user_id, application_id, role) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id, application_id) DO UPDATE SET role = $4",
        )
        .bind(org.to_hex())
        .bind(user.to_hex())
        .bind(r.resource_id.to_hex())
        .bind(r.role.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

//! Applications, and who may see them.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::Role;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like, page_sql};
use crate::notify::{Change, Part};
use crate::{Id, Result, Store, StoreError};

/// Who owns an application: a user (their sandbox) or an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    User(Id),
    Organization(Id),
}

impl Owner {
    pub fn type_name(self) -> &'static str {
        match self {
            Owner::User(_) => "user",
            Owner::Organization(_) => "organization",
        }
    }

    pub fn id(self) -> Id {
        match self {
            Owner::User(id) | Owner::Organization(id) => id,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Application {
    pub id: Id,
    pub owner: Owner,
    pub name: String,
    pub description: String,
    /// Other reference-schema fields the server keeps and returns (e.g. `globals`).
    pub extra: Map<String, Value>,
    pub creation_date: i64,
    pub last_updated: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ApplicationChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub extra: Map<String, Value>,
}

pub const APPLICATION_FIELDS: Fields = Fields {
    sortable: &[
        ("name", Sort::Text("name")),
        ("id", Sort::Number("id")),
        ("creationDate", Sort::Number("creation_date")),
        ("lastUpdated", Sort::Number("last_updated")),
        ("ownerId", Sort::Number("owner_id")),
    ],
    filterable: &[("name", "name")],
    default_sort: "name",
};

const APP_COLUMNS: &str =
    "id, owner_type, owner_id, name, description, extra, creation_date, last_updated";

fn app_from_row(row: &AnyRow) -> Result<Application> {
    let owner_id = from_db(&row.try_get::<String, _>("owner_id")?)?;
    let owner = match row.try_get::<String, _>("owner_type")?.as_str() {
        "user" => Owner::User(owner_id),
        "organization" => Owner::Organization(owner_id),
        other => return Err(StoreError::Corrupt(format!("bad owner type {other:?}"))),
    };
    Ok(Application {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        owner,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        extra: serde_json::from_str(&row.try_get::<String, _>("extra")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

/// Applications a user may see: their own, and their organizations' where their effective
/// role (the per-application override if any, else the organization role) is not `none`.
const VISIBLE_TO_USER: &str = " FROM applications a WHERE \
    ((a.owner_type = 'user' AND a.owner_id = $1) OR \
     (a.owner_type = 'organization' AND EXISTS (\
        SELECT 1 FROM org_members m WHERE m.org_id = a.owner_id AND m.user_id = $1 AND \
        COALESCE((SELECT r.role FROM member_application_roles r WHERE r.org_id = m.org_id \
                  AND r.user_id = m.user_id AND r.application_id = a.id), m.role) <> 'none')))";

impl Store {
    /// Create an application owned by `owner`, as `actor`. An organization that does not
    /// exist (or is being deleted) is `NotFound`: its row is locked until commit, so an
    /// application is never created into an organization whose deletion has committed.
    pub async fn create_application(
        &self,
        actor: &Actor,
        owner: Owner,
        name: &str,
        description: &str,
        extra: &Map<String, Value>,
    ) -> Result<Application> {
        let now = crate::now_ms();
        let app = Application {
            id: Id::generate(),
            owner,
            name: name.to_owned(),
            description: description.to_owned(),
            extra: extra.clone(),
            creation_date: now,
            last_updated: now,
        };
        let mut tx = self.begin_as(actor).await?;
        let owner_sql = match owner {
            Owner::User(_) => format!(
                "SELECT id FROM users WHERE id = $1{}",
                Lock::KeyShare.clause(self.backend)
            ),
            Owner::Organization(_) => format!(
                "SELECT id FROM orgs WHERE id = $1{}",
                Lock::KeyShare.clause(self.backend)
            ),
        };
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(owner_sql))
            .bind(owner.id().to_hex())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO applications (id, owner_type, owner_id, name, description, extra, \
             creation_date, last_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app.id.to_hex())
        .bind(owner.type_name())
        .bind(owner.id().to_hex())
        .bind(name)
        .bind(description)
        .bind(Value::Object(extra.clone()).to_string())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut body = extra.clone();
        body.insert("name".into(), name.into());
        body.insert("description".into(), description.into());
        if let Owner::Organization(org) = owner {
            body.insert("orgId".into(), org.to_hex().into());
        }
        let entry = audit_entry("applications.post", 201, &[], Value::Object(body), app.id);
        audit::record(&mut tx, actor, entry).await?;
        tx.commit().await?;
        Ok(app)
    }

    pub async fn application(&self, id: Id) -> Result<Application> {
        let sql = format!("SELECT {APP_COLUMNS} FROM applications WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        app_from_row(&row)
    }

    /// The application and `user`'s effective role in it (`Role::None`: may not see it).
    pub async fn application_role(&self, id: Id, user: Id) -> Result<(Application, Role)> {
        let (app, role, _) = self.application_access(id, user).await?;
        Ok((app, role))
    }

    /// The application, `user`'s effective role in it (`Role::None`: may not see it), and
    /// whether the owning organization's two-factor rule stops them (it applies to the
    /// member's organization role, whatever the per-application override).
    pub async fn application_access(&self, id: Id, user: Id) -> Result<(Application, Role, bool)> {
        let app = self.application(id).await?;
        let (role, two_factor_missing) = match app.owner {
            Owner::User(owner) if owner == user => (Role::Admin, false),
            Owner::User(_) => (Role::None, false),
            Owner::Organization(org) => {
                let row = sqlx::query(
                    "SELECT m.role AS org_role, r.role AS app_role, o.mfa_mode, \
                     CAST(CASE WHEN u.totp_secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS two_factor \
                     FROM org_members m JOIN orgs o ON o.id = m.org_id \
                     JOIN users u ON u.id = m.user_id \
                     LEFT JOIN member_application_roles r ON r.org_id = m.org_id \
                       AND r.user_id = m.user_id AND r.application_id = $3 \
                     WHERE m.org_id = $1 AND m.user_id = $2",
                )
                .bind(org.to_hex())
                .bind(user.to_hex())
                .bind(id.to_hex())
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    None => (Role::None, false),
                    Some(row) => {
                        let membership = crate::orgs::membership_from_row(&row, "org_role")?;
                        let app_role: Option<String> = row.try_get("app_role")?;
                        let role = match app_role {
                            Some(r) => r
                                .parse()
                                .map_err(|_| StoreError::Corrupt("bad role".into()))?,
                            None => membership.role,
                        };
                        (role, membership.two_factor_missing)
                    }
                }
            }
        };
        Ok((app, role, two_factor_missing))
    }

    /// The applications `user` may see, optionally only those of one organization.
    pub async fn list_applications_for_user(
        &self,
        user: Id,
        org: Option<Id>,
        spec: &ListSpec,
    ) -> Result<Page<Application>> {
        let cond = match org {
            Some(_) => {
                format!("{VISIBLE_TO_USER} AND a.owner_type = 'organization' AND a.owner_id = $2")
            }
            None => VISIBLE_TO_USER.to_owned(),
        };
        let n = if org.is_some() { 2 } else { 1 };
        let (list, count) = page_sql(
            self.backend,
            &format!("SELECT {APP_COLUMNS}{cond}"),
            &format!("SELECT COUNT(*){cond}"),
            n,
            spec,
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list)).bind(user.to_hex());
        let mut c = sqlx::query_scalar(sqlx::AssertSqlSafe(count)).bind(user.to_hex());
        if let Some(org) = org {
            q = q.bind(org.to_hex());
            c = c.bind(org.to_hex());
        }
        if let Some(f) = &spec.filter {
            q = q.bind(glob_to_like(&f.glob));
            c = c.bind(glob_to_like(&f.glob));
        }
        let rows = q.fetch_all(&self.pool).await?;
        let total: i64 = c.fetch_one(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(app_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// How many applications each owner has (for summaries).
    pub async fn count_applications(&self, owner: Owner) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM applications WHERE owner_type = $1 AND owner_id = $2",
        )
        .bind(owner.type_name())
        .bind(owner.id().to_hex())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Change an application's name, description or kept fields, as `actor`. The row is read
    /// `FOR UPDATE` (locked before the credential is checked, so two such writes never hold a
    /// weaker lock each and wait to strengthen it) and the patch merged into what it holds
    /// now, so concurrent patches of different fields both survive.
    pub async fn update_application(
        &self,
        actor: &Actor,
        id: Id,
        change: &ApplicationChange,
    ) -> Result<Application> {
        let mut tx = self.begin_in_application(actor, id, Lock::Update).await?;
        let sql = format!("SELECT {APP_COLUMNS} FROM applications WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut app = app_from_row(&row)?;
        if let Some(n) = &change.name {
            app.name = n.clone();
        }
        if let Some(d) = &change.description {
            app.description = d.clone();
        }
        crate::merge_extra(&mut app.extra, &change.extra);
        app.last_updated = crate::now_ms();
        sqlx::query(
            "UPDATE applications SET name = $2, description = $3, extra = $4, last_updated = $5 \
             WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&app.name)
        .bind(&app.description)
        .bind(Value::Object(app.extra.clone()).to_string())
        .bind(app.last_updated)
        .execute(&mut *tx)
        .await?;
        let mut body = change.extra.clone();
        if let Some(n) = &change.name {
            body.insert("name".into(), n.as_str().into());
        }
        if let Some(d) = &change.description {
            body.insert("description".into(), d.as_str().into());
        }
        let params = [("applicationId", id)];
        let entry = audit_entry("application.patch", 200, &params, Value::Object(body), id);
        audit::record(&mut tx, actor, entry).await?;
        // Cached `application.get` answers (this node's now, other nodes' when they hear).
        let change = Change::Reads {
            application: Some(id),
            part: Part::Application,
        };
        self.commit_with(tx, &[change]).await?;
        Ok(app)
    }

    /// Delete an application and everything it owns, as `actor`; other nodes drop its
    /// tokens. The row is locked first (parents before children, as every write takes them).
    pub async fn delete_application(&self, actor: &Actor, id: Id) -> Result<()> {
        let mut tx = self.begin_in_application(actor, id, Lock::Update).await?;
        // Recorded first, while the application's name and organization can still be read.
        let params = [("applicationId", id)];
        let entry = audit_entry(
            "application.delete",
            200,
            &params,
            Value::Object(Map::new()),
            id,
        );
        audit::record(&mut tx, actor, entry).await?;
        delete_application_in(&mut tx, id).await?;
        self.commit_with(tx, &[Change::Application(id)]).await
    }
}

fn audit_entry(
    action: &'static str,
    status: u16,
    params: &[(&str, Id)],
    body: Value,
    app: Id,
) -> Entry {
    Entry {
        place: Place::Application(app),
        action,
        status,
        primary: None,
        secondary: None,
        path_params: audit::path(params),
        body,
    }
}

/// Delete one application inside a caller's transaction. Everything it owns goes with it by
/// `ON DELETE CASCADE`.
pub(crate) async fn delete_application_in(conn: &mut sqlx::AnyConnection, id: Id) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM applications WHERE id = $1")
        .bind(id.to_hex())
        .execute(&mut *conn)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

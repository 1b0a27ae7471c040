//! Stored workflow definitions. The definition (triggers, nodes, globals, ...) is one JSON
//! document; name and class are columns because lists sort and filter on them.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::devices::{json_of, json_text};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like, page_sql};
use crate::{Id, Result, Store, StoreError};

/// Who created or last changed a flow: `user` or `apiToken`, and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Id,
}

#[derive(Clone, Debug)]
pub struct Flow {
    pub id: Id,
    pub application_id: Id,
    pub name: String,
    pub flow_class: String,
    pub definition: Map<String, Value>,
    pub created_by: Actor,
    pub last_updated_by: Actor,
    pub creation_date: i64,
    pub last_updated: i64,
}

pub const FLOW_FIELDS: Fields = Fields {
    sortable: &[
        ("name", Sort::Text("name")),
        ("id", Sort::Number("id")),
        ("creationDate", Sort::Number("creation_date")),
        ("lastUpdated", Sort::Number("last_updated")),
    ],
    filterable: &[("name", "name")],
    default_sort: "name",
};

const FLOW_COLUMNS: &str = "id, application_id, name, flow_class, definition, created_by_type, \
    created_by_id, last_updated_by_type, last_updated_by_id, creation_date, last_updated";

fn actor_kind(s: &str) -> Result<&'static str> {
    ["user", "apiToken", "flow"]
        .into_iter()
        .find(|k| *k == s)
        .ok_or_else(|| StoreError::Corrupt(format!("bad actor type {s:?}")))
}

fn flow_from_row(row: &AnyRow) -> Result<Flow> {
    Ok(Flow {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        name: row.try_get("name")?,
        flow_class: row.try_get("flow_class")?,
        definition: json_of(&row.try_get::<String, _>("definition")?)?,
        created_by: Actor {
            kind: actor_kind(&row.try_get::<String, _>("created_by_type")?)?,
            id: from_db(&row.try_get::<String, _>("created_by_id")?)?,
        },
        last_updated_by: Actor {
            kind: actor_kind(&row.try_get::<String, _>("last_updated_by_type")?)?,
            id: from_db(&row.try_get::<String, _>("last_updated_by_id")?)?,
        },
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

impl Store {
    pub async fn create_flow(
        &self,
        application: Id,
        name: &str,
        flow_class: &str,
        definition: &Map<String, Value>,
        by: &Actor,
    ) -> Result<Flow> {
        let now = crate::now_ms();
        let flow = Flow {
            id: Id::generate(),
            application_id: application,
            name: name.to_owned(),
            flow_class: flow_class.to_owned(),
            definition: definition.clone(),
            created_by: by.clone(),
            last_updated_by: by.clone(),
            creation_date: now,
            last_updated: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO flows (id, application_id, name, flow_class, definition, \
             created_by_type, created_by_id, last_updated_by_type, last_updated_by_id, \
             creation_date, last_updated) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $6, $7, $8, $8 \
             WHERE EXISTS (SELECT 1 FROM applications WHERE id = $2)",
        )
        .bind(flow.id.to_hex())
        .bind(application.to_hex())
        .bind(name)
        .bind(flow_class)
        .bind(json_text(definition)?)
        .bind(by.kind)
        .bind(by.id.to_hex())
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(flow)
    }

    pub async fn flow(&self, application: Id, id: Id) -> Result<Flow> {
        let sql = format!("SELECT {FLOW_COLUMNS} FROM flows WHERE id = $1 AND application_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        flow_from_row(&row)
    }

    /// Flows of `application` of class `flow_class`, one page.
    pub async fn list_flows(
        &self,
        application: Id,
        flow_class: &str,
        spec: &ListSpec,
    ) -> Result<Page<Flow>> {
        let cond = " FROM flows WHERE application_id = $1 AND flow_class = $2";
        let (list, count) = page_sql(
            self.backend,
            &format!("SELECT {FLOW_COLUMNS}{cond}"),
            &format!("SELECT COUNT(*){cond}"),
            2,
            spec,
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list))
            .bind(application.to_hex())
            .bind(flow_class);
        let mut c = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count))
            .bind(application.to_hex())
            .bind(flow_class);
        if let Some(f) = &spec.filter {
            q = q.bind(glob_to_like(&f.glob));
            c = c.bind(glob_to_like(&f.glob));
        }
        let rows = q.fetch_all(&self.pool).await?;
        let total = c.fetch_one(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(flow_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// Replace a flow's name and definition (the handler has merged the patch into the old
    /// definition and checked the result).
    pub async fn update_flow(
        &self,
        application: Id,
        id: Id,
        name: &str,
        definition: &Map<String, Value>,
        by: &Actor,
    ) -> Result<Flow> {
        let now = crate::now_ms();
        let updated = sqlx::query(
            "UPDATE flows SET name = $3, definition = $4, last_updated_by_type = $5, \
             last_updated_by_id = $6, last_updated = $7 WHERE id = $1 AND application_id = $2",
        )
        .bind(id.to_hex())
        .bind(application.to_hex())
        .bind(name)
        .bind(json_text(definition)?)
        .bind(by.kind)
        .bind(by.id.to_hex())
        .bind(now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.flow(application, id).await
    }

    pub async fn delete_flow(&self, application: Id, id: Id) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM flows WHERE id = $1 AND application_id = $2")
            .bind(id.to_hex())
            .bind(application.to_hex())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

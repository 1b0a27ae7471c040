//! Stored workflow definitions. The definition (triggers, nodes, globals, ...) is one JSON
//! document; name and class are columns because lists sort and filter on them.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place, Target};
use crate::devices::{json_of, json_text};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like, page_sql};
use crate::notify::{Change, Part};
use crate::{Id, Result, Store, StoreError};

/// Who created or last changed a flow, as recorded: `user` or `apiToken`, and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub kind: &'static str,
    pub id: Id,
}

impl Author {
    /// What is recorded of `actor`. The operator does not write workflows (there is no
    /// command for it), so it has no author record.
    fn of(actor: &Actor) -> Result<Author> {
        match actor.id() {
            Some(id) => Ok(Author {
                kind: actor.kind(),
                id,
            }),
            None => Err(StoreError::Corrupt(
                "a workflow must be written by a user or a token".into(),
            )),
        }
    }
}

/// What a PATCH changes: the name, if given, and fields of the definition (`null` removes
/// one). Applied by [`Store::update_flow`] to the flow as it is when the change commits.
#[derive(Clone, Debug, Default)]
pub struct FlowChange {
    pub name: Option<String>,
    pub definition: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub struct Flow {
    pub id: Id,
    pub application_id: Id,
    pub name: String,
    pub flow_class: String,
    pub definition: Map<String, Value>,
    pub created_by: Author,
    pub last_updated_by: Author,
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
        created_by: Author {
            kind: actor_kind(&row.try_get::<String, _>("created_by_type")?)?,
            id: from_db(&row.try_get::<String, _>("created_by_id")?)?,
        },
        last_updated_by: Author {
            kind: actor_kind(&row.try_get::<String, _>("last_updated_by_type")?)?,
            id: from_db(&row.try_get::<String, _>("last_updated_by_id")?)?,
        },
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

/// The audit entry of a flow's creation or change.
fn flow_entry(action: &'static str, status: u16, flow: &Flow, with_id: bool, body: Value) -> Entry {
    let mut path = vec![("applicationId", flow.application_id)];
    if with_id {
        path.push(("flowId", flow.id));
    }
    Entry {
        place: Place::Application(flow.application_id),
        action,
        status,
        primary: None,
        secondary: Some(Target::new("Flow", flow.id, &flow.name)),
        path_params: audit::path(&path),
        body,
    }
}

impl Store {
    /// Store a new workflow definition in `application`, written by `actor`.
    pub async fn create_flow(
        &self,
        actor: &Actor,
        application: Id,
        name: &str,
        flow_class: &str,
        definition: &Map<String, Value>,
    ) -> Result<Flow> {
        let by = Author::of(actor)?;
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
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        sqlx::query(
            "INSERT INTO flows (id, application_id, name, flow_class, definition, \
             created_by_type, created_by_id, last_updated_by_type, last_updated_by_id, \
             creation_date, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $7, $8, $8)",
        )
        .bind(flow.id.to_hex())
        .bind(application.to_hex())
        .bind(name)
        .bind(flow_class)
        .bind(json_text(definition)?)
        .bind(by.kind)
        .bind(by.id.to_hex())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut body = definition.clone();
        body.insert("name".into(), name.into());
        body.insert("flowClass".into(), flow_class.into());
        let entry = flow_entry("flows.post", 201, &flow, false, Value::Object(body));
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[flows_changed(application)]).await?;
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

    /// Apply `change` to a flow of `application`, as `actor`, merged into the flow as it is
    /// now (read `FOR UPDATE`, so concurrent patches of different fields both survive);
    /// `check` (the definition's rules) sees the merged result before it is written.
    pub async fn update_flow<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        change: &FlowChange,
        check: impl FnOnce(&Flow) -> Result<(), E>,
    ) -> Result<Flow, E> {
        let by = Author::of(actor)?;
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM flows WHERE id = $1 AND application_id = $2{}",
            Lock::Update.clause(self.backend)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(StoreError::NotFound)?;
        let mut flow = flow_from_row(&row)?;
        if let Some(name) = &change.name {
            flow.name = name.clone();
        }
        crate::merge_extra(&mut flow.definition, &change.definition);
        flow.last_updated_by = by;
        flow.last_updated = crate::now_ms();
        check(&flow)?;
        // Writing the merged definition back is safe only because the row has been locked
        // since it was read.
        sqlx::query(
            "UPDATE flows SET name = $2, definition = $3, last_updated_by_type = $4, \
             last_updated_by_id = $5, last_updated = $6 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&flow.name)
        .bind(json_text(&flow.definition)?)
        .bind(flow.last_updated_by.kind)
        .bind(flow.last_updated_by.id.to_hex())
        .bind(flow.last_updated)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let mut body = change.definition.clone();
        if let Some(name) = &change.name {
            body.insert("name".into(), name.as_str().into());
        }
        let entry = flow_entry("flow.patch", 200, &flow, true, Value::Object(body));
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[flows_changed(application)]).await?;
        Ok(flow)
    }

    /// Delete a flow of `application`, as `actor`.
    pub async fn delete_flow(&self, actor: &Actor, application: Id, id: Id) -> Result<()> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let name: String = sqlx::query_scalar(
            "DELETE FROM flows WHERE id = $1 AND application_id = $2 RETURNING name",
        )
        .bind(id.to_hex())
        .bind(application.to_hex())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let entry = Entry {
            place: Place::Application(application),
            action: "flow.delete",
            status: 200,
            primary: None,
            secondary: Some(Target::new("Flow", id, &name)),
            path_params: audit::path(&[("applicationId", application), ("flowId", id)]),
            body: Value::Object(Map::new()),
        };
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[flows_changed(application)]).await
    }
}

/// The notice of a change of `application`'s flows (for cached `flows.get` answers).
fn flows_changed(application: Id) -> Change {
    Change::Reads {
        application: Some(application),
        part: Part::Flows,
    }
}

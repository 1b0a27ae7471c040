//! Devices (with their tags and attribute definitions) and the commands sent to them.
//!
//! Every function takes the application id from the caller's capability and matches it in
//! SQL, so a device of another application is `NotFound`, exactly like one that does not exist.

use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::attribute::DataType;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place, Target};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like};
use crate::notify::{Change, Part};
use crate::{Backend, Id, Result, Store, StoreError, WriteTx};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug)]
pub struct Device {
    pub id: Id,
    pub application_id: Id,
    pub name: String,
    pub description: String,
    pub device_class: String,
    pub tags: Vec<Tag>,
    /// Attribute definitions as the reference shapes them (`name`, `dataType`, ...).
    pub attributes: Vec<Map<String, Value>>,
    /// Other reference fields kept and returned.
    pub extra: Map<String, Value>,
    pub creation_date: i64,
    pub last_updated: i64,
}

impl Device {
    /// The declared attributes and their types, in declaration order.
    pub fn attribute_types(&self) -> Vec<(&str, DataType)> {
        attribute_types(&self.attributes)
    }

    /// The declared type of `name`, if it is an attribute of this device.
    pub fn attribute_type(&self, name: &str) -> Option<DataType> {
        // Once per reported value: a scan, without collecting every attribute first.
        self.attributes.iter().find_map(|a| {
            if a.get("name")?.as_str()? != name {
                return None;
            }
            DataType::parse(a.get("dataType")?.as_str()?)
        })
    }
}

fn attribute_types(attributes: &[Map<String, Value>]) -> Vec<(&str, DataType)> {
    attributes
        .iter()
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?;
            let ty = DataType::parse(a.get("dataType")?.as_str()?)?;
            Some((name, ty))
        })
        .collect()
}

/// A device's writable fields (creation, or the result of applying a patch).
#[derive(Clone, Debug, Default)]
pub struct DeviceFields {
    pub name: String,
    pub description: String,
    pub device_class: String,
    pub tags: Vec<Tag>,
    pub attributes: Vec<Map<String, Value>>,
    pub extra: Map<String, Value>,
}

impl From<&Device> for DeviceFields {
    fn from(d: &Device) -> Self {
        DeviceFields {
            name: d.name.clone(),
            description: d.description.clone(),
            device_class: d.device_class.clone(),
            tags: d.tags.clone(),
            attributes: d.attributes.clone(),
            extra: d.extra.clone(),
        }
    }
}

/// What a device PATCH changes: `None` leaves a field as it is; `extra` is merged (`null`
/// removes a field). Applied by [`Store::update_device`] to the device as it is when the
/// change commits, never to a copy read earlier.
#[derive(Clone, Debug, Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub device_class: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub attributes: Option<Vec<Map<String, Value>>>,
    pub extra: Map<String, Value>,
}

/// The audit entry of a device's creation or change (`params` after the application's id).
fn device_entry(
    action: &'static str,
    status: u16,
    device: &Device,
    params: &[(&str, Id)],
    body: Value,
) -> Entry {
    let mut path = vec![("applicationId", device.application_id)];
    path.extend_from_slice(params);
    Entry {
        place: Place::Application(device.application_id),
        action,
        status,
        primary: None,
        secondary: Some(Target::new("Device", device.id, &device.name)),
        path_params: audit::path(&path),
        body,
    }
}

/// Devices a new or changed device names (its `gatewayId`, `parentId`), by the field that
/// names them: each must be a device of the same application when the write commits.
pub type DeviceRefs<'a> = &'a [(&'a str, Id)];

/// Filters of `devices.get` besides the name glob.
#[derive(Clone, Debug, Default)]
pub struct DeviceFilter {
    /// A device must match every entry; an entry without a key (or value) matches any.
    pub tags: Vec<(Option<String>, Option<String>)>,
    /// If not empty, the device class must be one of these.
    pub classes: Vec<String>,
    /// The devices the caller may see at all (a device-restricted token's), if limited.
    pub within: Option<DeviceScope>,
}

/// The devices a device-restricted token reaches: those named in `ids` or carrying one of
/// `tags` (key, and value; no value: any value of the key), as they are now.
#[derive(Clone, Debug, Default)]
pub struct DeviceScope {
    pub ids: Vec<Id>,
    pub tags: Vec<(String, Option<String>)>,
}

/// ` AND (id IN (…) OR EXISTS (…tag…) …)`, its values pushed onto `binds`.
fn scope_clause(scope: &DeviceScope, binds: &mut Vec<String>) -> String {
    let mut alternatives = Vec::new();
    if !scope.ids.is_empty() {
        let ps: Vec<String> = scope
            .ids
            .iter()
            .map(|id| {
                binds.push(id.to_hex());
                format!("${}", binds.len())
            })
            .collect();
        alternatives.push(format!("devices.id IN ({})", ps.join(", ")));
    }
    for (key, value) in &scope.tags {
        binds.push(key.clone());
        let mut sub = format!(
            "EXISTS (SELECT 1 FROM device_tags r WHERE r.device_id = devices.id AND r.tag_key = ${}",
            binds.len()
        );
        if let Some(v) = value {
            binds.push(v.clone());
            sub.push_str(&format!(" AND r.tag_value = ${}", binds.len()));
        }
        sub.push(')');
        alternatives.push(sub);
    }
    if alternatives.is_empty() {
        // Restricted to nothing: no device.
        return " AND 1 = 0".to_owned();
    }
    format!(" AND ({})", alternatives.join(" OR "))
}

pub const DEVICE_FIELDS: Fields = Fields {
    sortable: &[
        ("name", Sort::Text("name")),
        ("id", Sort::Number("id")),
        ("creationDate", Sort::Number("creation_date")),
        ("lastUpdated", Sort::Number("last_updated")),
    ],
    filterable: &[("name", "name")],
    default_sort: "name",
};

const DEVICE_COLUMNS: &str = "id, application_id, name, description, device_class, tags, \
    attributes, extra, creation_date, last_updated";

pub(crate) fn json_of<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn device_from_row(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        device_class: row.try_get("device_class")?,
        tags: json_of(&row.try_get::<String, _>("tags")?)?,
        attributes: json_of(&row.try_get::<String, _>("attributes")?)?,
        extra: json_of(&row.try_get::<String, _>("extra")?)?,
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

/// A command as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub time: i64,
    pub name: String,
    pub payload: Option<Value>,
}

/// A time range and page of a device's history (states or commands).
#[derive(Clone, Copy, Debug)]
pub struct HistoryQuery {
    /// Inclusive bounds, milliseconds since the epoch.
    pub start: i64,
    pub end: i64,
    pub limit: i64,
    pub descending: bool,
}

impl Store {
    /// Create a device in `application`, as `actor`; `refs` must name devices of the
    /// application (`UnknownDevice` otherwise).
    pub async fn create_device(
        &self,
        actor: &Actor,
        application: Id,
        fields: &DeviceFields,
        refs: DeviceRefs<'_>,
    ) -> Result<Device> {
        let now = crate::now_ms();
        let device = Device {
            id: Id::generate(),
            application_id: application,
            name: fields.name.clone(),
            description: fields.description.clone(),
            device_class: fields.device_class.clone(),
            tags: fields.tags.clone(),
            attributes: fields.attributes.clone(),
            extra: fields.extra.clone(),
            creation_date: now,
            last_updated: now,
        };
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        lock_devices(&mut tx, application, None, refs).await?;
        sqlx::query(
            "INSERT INTO devices (id, application_id, name, description, device_class, tags, \
             attributes, extra, creation_date, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(device.id.to_hex())
        .bind(application.to_hex())
        .bind(&device.name)
        .bind(&device.description)
        .bind(&device.device_class)
        .bind(json_text(&device.tags)?)
        .bind(json_text(&device.attributes)?)
        .bind(json_text(&device.extra)?)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        write_tags(&mut tx, application, device.id, &device.tags).await?;
        let body = audit::fields([
            ("name", Some(Value::from(device.name.as_str()))),
            (
                "description",
                Some(Value::from(device.description.as_str())),
            ),
            (
                "deviceClass",
                Some(Value::from(device.device_class.as_str())),
            ),
            ("tags", Some(serde_json::json!(device.tags))),
            ("attributes", Some(serde_json::json!(device.attributes))),
        ]);
        let entry = device_entry("devices.post", 201, &device, &[], body);
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[devices_changed(application)])
            .await?;
        Ok(device)
    }

    /// A device of `application`; one of another application is `NotFound`.
    pub async fn device(&self, application: Id, id: Id) -> Result<Device> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND application_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    /// Which of `ids` are devices of `application`.
    pub async fn existing_devices(&self, application: Id, ids: &[Id]) -> Result<Vec<Id>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM devices WHERE application_id = $1 AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q =
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(application.to_hex());
        for id in ids {
            q = q.bind(id.to_hex());
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|s| from_db(s))
            .collect()
    }

    pub async fn list_devices(
        &self,
        application: Id,
        filter: &DeviceFilter,
        spec: &ListSpec,
    ) -> Result<Page<Device>> {
        // Conditions and their values, numbered as they are added.
        let mut cond = String::from(" FROM devices WHERE application_id = $1");
        let mut binds: Vec<String> = vec![application.to_hex()];
        let next = |binds: &mut Vec<String>, v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
        if let Some(f) = &spec.filter {
            let p = next(&mut binds, glob_to_like(&f.glob));
            cond.push_str(&format!(
                " AND LOWER({}) LIKE LOWER({p}) ESCAPE '\\'",
                f.column
            ));
        }
        if !filter.classes.is_empty() {
            let ps: Vec<String> = filter
                .classes
                .iter()
                .map(|c| next(&mut binds, c.clone()))
                .collect();
            cond.push_str(&format!(" AND device_class IN ({})", ps.join(", ")));
        }
        if let Some(scope) = &filter.within {
            let clause = scope_clause(scope, &mut binds);
            cond.push_str(&clause);
        }
        for (key, value) in &filter.tags {
            let mut sub = String::from(
                " AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id",
            );
            if let Some(k) = key {
                let p = next(&mut binds, k.clone());
                sub.push_str(&format!(" AND t.tag_key = {p}"));
            }
            if let Some(v) = value {
                let p = next(&mut binds, v.clone());
                sub.push_str(&format!(" AND t.tag_value = {p}"));
            }
            sub.push(')');
            cond.push_str(&sub);
        }
        let dir = if spec.descending { "DESC" } else { "ASC" };
        let list = format!(
            "SELECT {DEVICE_COLUMNS}{cond} ORDER BY {col} {dir}, id {dir} LIMIT {limit} OFFSET {offset}",
            col = spec.sort.expr(self.backend),
            limit = spec.per_page,
            offset = spec.page.saturating_mul(spec.per_page),
        );
        let count = format!("SELECT COUNT(*){cond}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list));
        let mut c = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count));
        for b in &binds {
            q = q.bind(b.clone());
            c = c.bind(b.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let total = c.fetch_one(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(device_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// The devices of `application` named in `ids` or carrying any of `tags` (a device query
    /// is inclusive, as in the reference); with neither, every device; only devices `within`
    /// reaches, if given (a device-restricted token's). At most `limit`.
    pub async fn query_devices(
        &self,
        application: Id,
        ids: &[Id],
        tags: &[(Option<String>, Option<String>)],
        within: Option<&DeviceScope>,
        limit: i64,
    ) -> Result<Vec<Device>> {
        let mut binds: Vec<String> = vec![application.to_hex()];
        let mut alternatives: Vec<String> = Vec::new();
        if !ids.is_empty() {
            let ps: Vec<String> = ids
                .iter()
                .map(|id| {
                    binds.push(id.to_hex());
                    format!("${}", binds.len())
                })
                .collect();
            alternatives.push(format!("id IN ({})", ps.join(", ")));
        }
        for (key, value) in tags {
            let mut sub =
                String::from("EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id");
            if let Some(k) = key {
                binds.push(k.clone());
                sub.push_str(&format!(" AND t.tag_key = ${}", binds.len()));
            }
            if let Some(v) = value {
                binds.push(v.clone());
                sub.push_str(&format!(" AND t.tag_value = ${}", binds.len()));
            }
            sub.push(')');
            alternatives.push(sub);
        }
        let mut selection = if alternatives.is_empty() {
            String::new()
        } else {
            format!(" AND ({})", alternatives.join(" OR "))
        };
        if let Some(scope) = within {
            selection.push_str(&scope_clause(scope, &mut binds));
        }
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE application_id = $1{selection} \
             ORDER BY name, id LIMIT {limit}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Apply `patch` to a device of `application`, as `actor`, merged into the device as it
    /// is now: the row is read `FOR UPDATE`, so a concurrent PATCH of other fields, or a state
    /// report checked against the old attributes, waits and then sees this change (and this
    /// one sees theirs). `refs` (devices the patch names) must be devices of the application.
    /// State of attributes that were removed or whose type changed is deleted in the same
    /// transaction (it could no longer be read as the declared type; the reference does the
    /// same), so attributes and stored points always agree.
    pub async fn update_device(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        patch: &DevicePatch,
        refs: DeviceRefs<'_>,
    ) -> Result<Device> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let old = lock_devices(&mut tx, application, Some(id), refs)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut new = old.clone();
        if let Some(v) = &patch.name {
            new.name = v.clone();
        }
        if let Some(v) = &patch.description {
            new.description = v.clone();
        }
        if let Some(v) = &patch.device_class {
            new.device_class = v.clone();
        }
        if let Some(v) = &patch.tags {
            new.tags = v.clone();
        }
        if let Some(v) = &patch.attributes {
            new.attributes = v.clone();
        }
        crate::merge_extra(&mut new.extra, &patch.extra);
        new.last_updated = crate::now_ms();
        // Writing the merged row back is safe only because it has been locked since it was
        // read.
        sqlx::query(
            "UPDATE devices SET name = $2, description = $3, device_class = $4, tags = $5, \
             attributes = $6, extra = $7, last_updated = $8 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.device_class)
        .bind(json_text(&new.tags)?)
        .bind(json_text(&new.attributes)?)
        .bind(json_text(&new.extra)?)
        .bind(new.last_updated)
        .execute(&mut *tx)
        .await?;
        if old.tags != new.tags {
            sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
                .bind(id.to_hex())
                .execute(&mut *tx)
                .await?;
            write_tags(&mut tx, application, id, &new.tags).await?;
        }
        let new_types = attribute_types(&new.attributes);
        let dropped: Vec<&str> = old
            .attribute_types()
            .into_iter()
            .filter(|old| !new_types.contains(old))
            .map(|(n, _)| n)
            .collect();
        for name in &dropped {
            sqlx::query("DELETE FROM device_points WHERE device_id = $1 AND attribute = $2")
                .bind(id.to_hex())
                .bind(*name)
                .execute(&mut *tx)
                .await?;
        }
        if !dropped.is_empty() {
            // Reports left with no values would show as empty states.
            sqlx::query(
                "DELETE FROM device_reports WHERE device_id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM device_points p WHERE p.device_id = device_reports.device_id \
                  AND p.time = device_reports.time)",
            )
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        }
        let mut body = patch.extra.clone();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_owned(), v);
            }
        };
        put("name", patch.name.as_deref().map(Value::from));
        put("description", patch.description.as_deref().map(Value::from));
        put(
            "deviceClass",
            patch.device_class.as_deref().map(Value::from),
        );
        put("tags", patch.tags.as_ref().map(|t| serde_json::json!(t)));
        put(
            "attributes",
            patch.attributes.as_ref().map(|a| serde_json::json!(a)),
        );
        let params = [("deviceId", id)];
        let entry = device_entry("device.patch", 200, &new, &params, Value::Object(body));
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[Change::Device(id), devices_changed(application)])
            .await?;
        Ok(new)
    }

    /// Delete a device, as `actor`; its tags, state and commands go with it (ON DELETE
    /// CASCADE).
    pub async fn delete_device(&self, actor: &Actor, application: Id, id: Id) -> Result<()> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let name: String = sqlx::query_scalar(
            "DELETE FROM devices WHERE id = $1 AND application_id = $2 RETURNING name",
        )
        .bind(id.to_hex())
        .bind(application.to_hex())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let entry = Entry {
            place: Place::Application(application),
            action: "device.delete",
            status: 200,
            primary: None,
            secondary: Some(Target::new("Device", id, &name)),
            path_params: audit::path(&[("applicationId", application), ("deviceId", id)]),
            body: Value::Object(Map::new()),
        };
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[Change::Device(id), devices_changed(application)])
            .await
    }

    /// Record a command sent to a device of `application`, as `actor`.
    pub async fn insert_command(
        &self,
        actor: &Actor,
        application: Id,
        device: Id,
        cmd: &Command,
    ) -> Result<()> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        // The foreign key check locks the device row until commit (it cannot be deleted
        // under the insert); the condition keeps other applications' devices out.
        let inserted = sqlx::query(
            "INSERT INTO device_commands (id, device_id, time, name, payload) \
             SELECT $1, $2, $3, $4, $5 \
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = $2 AND application_id = $6)",
        )
        .bind(Id::generate().to_hex())
        .bind(device.to_hex())
        .bind(cmd.time)
        .bind(&cmd.name)
        .bind(cmd.payload.as_ref().map(json_text).transpose()?)
        .bind(application.to_hex())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await
    }

    /// Commands sent to `device` (already checked to be in the caller's application).
    pub async fn commands(&self, device: Id, q: &HistoryQuery) -> Result<Vec<Command>> {
        let dir = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT time, name, payload FROM device_commands WHERE device_id = $1 \
             AND time >= $2 AND time <= $3 ORDER BY time {dir}, id {dir} LIMIT {}",
            q.limit
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.to_hex())
            .bind(q.start)
            .bind(q.end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Command {
                    time: r.try_get("time")?,
                    name: r.try_get("name")?,
                    payload: r
                        .try_get::<Option<String>, _>("payload")?
                        .map(|p| json_of(&p))
                        .transpose()?,
                })
            })
            .collect()
    }
}

/// Lock, in id order (so that two devices naming each other never deadlock), the device
/// `target` of `application` `FOR UPDATE` and each device `refs` names `FOR KEY SHARE` (it
/// must still exist when the write commits). Returns the target as it is now (`None` when it
/// does not exist); a reference to anything but a device of the application is
/// `UnknownDevice`.
async fn lock_devices(
    tx: &mut WriteTx,
    application: Id,
    target: Option<Id>,
    refs: DeviceRefs<'_>,
) -> Result<Option<Device>> {
    let mut order: Vec<(Id, Option<&str>)> = refs.iter().map(|(f, id)| (*id, Some(*f))).collect();
    order.extend(target.map(|t| (t, None)));
    order.sort_by_key(|(id, field)| (*id, field.is_some()));
    order.dedup_by_key(|(id, _)| *id);
    let mut found = None;
    for (id, field) in order {
        let lock = if Some(id) == target {
            Lock::Update
        } else {
            Lock::KeyShare
        };
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND application_id = $2{}",
            lock.clause(tx.backend)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&mut **tx)
            .await?;
        match (row, field) {
            (Some(row), _) if Some(id) == target => found = Some(device_from_row(&row)?),
            (Some(_), _) => {}
            (None, _) if Some(id) == target => return Ok(None),
            (None, field) => {
                return Err(StoreError::UnknownDevice {
                    field: field.unwrap_or_default().to_owned(),
                });
            }
        }
    }
    Ok(found)
}

/// What a group commit of state reports reads, in its transaction, before it checks its
/// requests: the devices named, by id, and the API
/// tokens acting, by id, each with its application, status and expiration date (a token
/// whose application is gone is left out, as if deleted).
pub(crate) struct BatchReads {
    pub devices: std::collections::HashMap<Id, Device>,
    pub tokens: std::collections::HashMap<Id, (Id, String, Option<i64>)>,
}

impl BatchReads {
    fn with_capacity(devices: usize, tokens: usize) -> BatchReads {
        BatchReads {
            devices: std::collections::HashMap::with_capacity(devices),
            tokens: std::collections::HashMap::with_capacity(tokens),
        }
    }

    /// One row of either backend's batch read: a token's (`token`, its id) or a device's.
    fn add(&mut self, row: &AnyRow, token: Option<String>) -> Result<()> {
        match token {
            Some(id) => {
                self.tokens.insert(
                    from_db(&id)?,
                    (
                        from_db(&row.try_get::<String, _>("token_application")?)?,
                        row.try_get("status")?,
                        row.try_get("expiration_date")?,
                    ),
                );
            }
            None => {
                let d = device_from_row(row)?;
                self.devices.insert(d.id, d);
            }
        }
        Ok(())
    }
}

/// [`BatchReads`]. On SQLite, whose batch holds the turn to write, in one round trip to
/// SQLite's connection thread: two statements of fixed text (the ids go as one JSON array
/// each, so the statements stay prepared whatever a batch holds), run together by sqlx's
/// SQLite driver; rows of the second are told apart by their `token_id` column. On
/// PostgreSQL, [`batch_reads_locked`].
pub(crate) async fn batch_reads(
    tx: &mut WriteTx,
    devices: &[Id],
    tokens: &[Id],
) -> Result<BatchReads> {
    if tx.backend == Backend::Postgres {
        return batch_reads_locked(tx, devices, tokens).await;
    }
    let hex = |ids: &[Id]| {
        serde_json::Value::Array(
            ids.iter()
                .map(|i| serde_json::Value::String(i.to_hex()))
                .collect(),
        )
        .to_string()
    };
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE id IN (SELECT value FROM json_each($1));\n\
         SELECT t.id AS token_id, t.application_id AS token_application, t.status, \
         t.expiration_date FROM api_tokens t JOIN applications a ON a.id = t.application_id \
         WHERE t.id IN (SELECT value FROM json_each($2))"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(hex(devices))
        .bind(hex(tokens))
        .fetch_all(&mut **tx)
        .await?;
    let mut out = BatchReads::with_capacity(devices.len(), tokens.len());
    for row in rows {
        // The second statement's rows have a `token_id` column; the first's do not.
        let token = match row.try_column("token_id") {
            Ok(_) => Some(row.try_get::<String, _>("token_id")?),
            Err(_) => None,
        };
        out.add(&row, token)?;
    }
    Ok(out)
}

/// [`BatchReads`] on PostgreSQL, where no turn to write orders the batch against other
/// writes: every row read is locked `FOR KEY SHARE` until the batch commits, in the lock
/// order of [`crate::actor::check`] (the tokens' applications, then the tokens, then the
/// devices, each by id), so a revocation or a device change waits for the batch or is seen by
/// it. One statement of fixed text ([`PG_BATCH_READS`]): the ids go as one comma-separated
/// string each.
async fn batch_reads_locked(tx: &mut WriteTx, devices: &[Id], tokens: &[Id]) -> Result<BatchReads> {
    let joined = |ids: &[Id]| ids.iter().map(|i| i.to_hex()).collect::<Vec<_>>().join(",");
    let mut out = BatchReads::with_capacity(devices.len(), tokens.len());
    let rows = sqlx::query(sqlx::AssertSqlSafe(PG_BATCH_READS.as_str()))
        .bind(joined(tokens))
        .bind(joined(devices))
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        // Token rows have a `token_id`; device rows have it NULL.
        let token = row.try_get::<Option<String>, _>("token_id")?;
        out.add(&row, token)?;
    }
    Ok(out)
}

/// The tokens acting in a PostgreSQL batch ($1) and its devices ($2), in one round trip:
/// token rows first (their device columns NULL), then device rows (`token_id` NULL). The
/// lock order holds within the one statement: `Append` runs its branches in order, and each
/// `ORDER BY` reads all its input (locking the applications) before its `FOR KEY SHARE`
/// locks the first of its own rows.
static PG_BATCH_READS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH app AS MATERIALIZED (SELECT id FROM applications WHERE id IN \
         (SELECT application_id FROM api_tokens WHERE id = ANY(string_to_array($1, ','))) \
         ORDER BY id FOR KEY SHARE), \
         tok AS MATERIALIZED (SELECT t.id, t.application_id, t.status, t.expiration_date \
         FROM api_tokens t JOIN app ON app.id = t.application_id \
         WHERE t.id = ANY(string_to_array($1, ',')) ORDER BY t.id FOR KEY SHARE OF t), \
         dev AS MATERIALIZED (SELECT {DEVICE_COLUMNS} FROM devices \
         WHERE id = ANY(string_to_array($2, ',')) ORDER BY id FOR KEY SHARE) \
         SELECT id AS token_id, application_id AS token_application, status, expiration_date, \
         NULL::text AS id, NULL::text AS application_id, NULL::text AS name, \
         NULL::text AS description, NULL::text AS device_class, NULL::text AS tags, \
         NULL::text AS attributes, NULL::text AS extra, NULL::bigint AS creation_date, \
         NULL::bigint AS last_updated FROM tok \
         UNION ALL SELECT NULL, NULL, NULL, NULL, {DEVICE_COLUMNS} FROM dev"
    )
});

/// A device of `application`, locked `FOR KEY SHARE` until the transaction ends: it cannot be
/// deleted, and a PATCH (which locks it `FOR UPDATE`) waits, so what is checked against it
/// stays true until commit.
pub(crate) async fn device_for_write(tx: &mut WriteTx, application: Id, id: Id) -> Result<Device> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND application_id = $2{}",
        Lock::KeyShare.clause(tx.backend)
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_hex())
        .bind(application.to_hex())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    device_from_row(&row)
}

async fn write_tags(
    tx: &mut sqlx::AnyConnection,
    application: Id,
    device: Id,
    tags: &[Tag],
) -> Result<()> {
    for (i, tag) in tags.iter().enumerate() {
        sqlx::query(
            "INSERT INTO device_tags (device_id, application_id, ord, tag_key, tag_value) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(device.to_hex())
        .bind(application.to_hex())
        .bind(i as i64)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// `$from, $from+1, ...` (`n` of them).
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The notice of a change of `application`'s devices (for cached `devices.get` answers).
fn devices_changed(application: Id) -> Change {
    Change::Reads {
        application: Some(application),
        part: Part::Devices,
    }
}

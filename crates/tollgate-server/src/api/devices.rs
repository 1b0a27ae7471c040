//! Devices, device state and commands: `devices.*`, `device.*`.
//!
//! Every store call takes the application from the `AppAccess` capability, so a device id of
//! another application is a 404 exactly like one that does not exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_core::attribute::{DataType, Reported, Stored, convert};
use tollgate_store::devices::{
    Command, DEVICE_FIELDS, Device, DeviceFields, DeviceFilter, HistoryQuery, Tag,
};
use tollgate_store::states::{Report, StoredReport};
use tollgate_store::{Id, Part, now_ms};

use crate::api::{success, with_extra};
use crate::auth::AppAccess;
use crate::device_cache::CachedDevice;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::extract::{Body, ListParams, Path, Query, RequestBody};
use crate::limits;
use crate::state::AppState;
use crate::state_cache::{Held, MAX_KEPT_REPORTS, StateAnswer, Types};
use crate::time::{iso, relative_ms, report_time};

/// Most reports one `device.sendState` request may carry.
pub const MAX_REPORTS: usize = 1000;
/// Most entries `device.getState` and `device.getCommand` return.
pub const MAX_HISTORY: i64 = 1000;
/// The reference ignores reports older than 30 days or more than a day ahead; this server
/// refuses them, so the sender knows.
pub const MAX_AGE_MS: i64 = 30 * 86_400_000;
pub const MAX_AHEAD_MS: i64 = 86_400_000;

/// Fields kept and returned but not interpreted, besides the ones with columns.
const EXTRA_FIELDS: &[&str] = &["gatewayId", "parentId", "systemInterval", "keepDuplicates"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePost {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    attributes: Vec<Map<String, Value>>,
    device_class: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for DevicePost {
    const SCHEMA: &'static str = "devicePost";
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePatch {
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<Tag>>,
    attributes: Option<Vec<Map<String, Value>>>,
    device_class: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for DevicePatch {
    const SCHEMA: &'static str = "devicePatch";
}

/// A check the schema cannot express: attribute names are unique.
fn check_attributes(attributes: &[Map<String, Value>]) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for a in attributes {
        let name = a.get("name").and_then(Value::as_str).unwrap_or_default();
        if !seen.insert(name) {
            return Err(ApiError::validation(format!(
                "attributes: {name} is declared twice; attribute names must be unique"
            )));
        }
    }
    Ok(())
}

/// The devices a body names (`gatewayId`, `parentId`), by field. Whether each is a device of
/// this application is checked by the store when the write commits (a check made before
/// could be out of date by then).
fn device_refs(
    extra: &Map<String, Value>,
    this: Option<Id>,
) -> Result<Vec<(&'static str, Id)>, ApiError> {
    let mut refs = Vec::new();
    for field in ["gatewayId", "parentId"] {
        let Some(id) = extra.get(field).and_then(Value::as_str) else {
            continue;
        };
        let id: Id = id.parse().map_err(|_| {
            ApiError::validation(format!(
                "{field} is not valid: ids are 24 hexadecimal characters"
            ))
        })?;
        if Some(id) == this {
            return Err(ApiError::validation(format!(
                "{field} cannot name the device itself"
            )));
        }
        refs.push((field, id));
    }
    Ok(refs)
}

/// A device-restricted token's writes stay within its devices: the device as written (`id`:
/// `None` when creating; `tags`: `None` when the write leaves them alone) must be among them,
/// and so must every device the body names (one outside them is answered exactly as one that
/// does not exist). Judged on the devices as they are now, as the guard judges the path's device.
async fn check_restricted_write(
    state: &AppState,
    access: &AppAccess,
    id: Option<Id>,
    tags: Option<&[Tag]>,
    refs: &[(&'static str, Id)],
) -> Result<(), ApiError> {
    let Some(devices) = access.devices() else {
        return Ok(());
    };
    if let Some(tags) = tags {
        let id = id.map(|i| i.to_string());
        if !crate::restrict::devices::would_admit(devices, id.as_deref(), tags) {
            return Err(ApiError::restricted(
                access.action(),
                crate::restrict::devices::outside_message(devices, id.is_none()),
            ));
        }
    }
    for (field, target) in refs {
        let reachable = match state.devices().get(access.application(), *target).await {
            Ok(d) => crate::restrict::devices::admits(devices, &d),
            // The store answers a missing device when the write commits.
            Err(tollgate_store::StoreError::NotFound) => true,
            Err(e) => return Err(ApiError::from_store(e, "Device")),
        };
        if !reachable {
            return Err(ApiError::from_store(
                tollgate_store::StoreError::UnknownDevice {
                    field: (*field).to_owned(),
                },
                "Device",
            ));
        }
    }
    Ok(())
}

/// The kept-but-uninterpreted fields of a body (a `null` among them removes the field).
fn kept_extra(changes: Map<String, Value>) -> Map<String, Value> {
    changes
        .into_iter()
        .filter(|(k, _)| EXTRA_FIELDS.contains(&k.as_str()))
        .collect()
}

/// A device as the API shows it.
pub fn device_json(d: &Device) -> Value {
    with_extra(
        json!({
            "id": d.id,
            "deviceId": d.id,
            "applicationId": d.application_id,
            "name": d.name,
            "description": d.description,
            "deviceClass": d.device_class,
            "tags": d.tags,
            "attributes": d.attributes,
            "creationDate": iso(d.creation_date),
            "lastUpdated": iso(d.last_updated),
        }),
        &d.extra,
    )
}

/// A stored value as JSON, by the attribute's declared type.
pub fn value_json(ty: DataType, v: &Stored) -> Value {
    match (ty, v) {
        (DataType::Boolean, Stored::Num(n)) => json!(*n != 0.0),
        (_, Stored::Num(n)) => number_json(*n),
        (_, Stored::Txt(s)) => json!(s),
    }
}

/// Whole numbers as integers (`21`, not `21.0`), as JavaScript would write them.
pub fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// Query flags are strings on the wire: "true", "1".
fn flag(v: &Option<String>) -> bool {
    matches!(
        v.as_deref().map(str::to_ascii_lowercase).as_deref(),
        Some("true" | "1" | "yes")
    )
}

/// Refuse query options this server does not implement, when they are switched on.
fn refuse_flags(flags: &[(&str, &Option<String>)]) -> Result<(), ApiError> {
    for (name, v) in flags {
        if flag(v) {
            return Err(ApiError::validation(format!(
                "{name} is not supported by this server: leave it out"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
    /// `deviceClass[0]=a&deviceClass[1]=b` as some encoders send it.
    Indexed(BTreeMap<String, String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) if s.is_empty() => vec![],
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
            OneOrMany::Indexed(m) => m.into_values().collect(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct TagQuery {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum TagFilter {
    List(Vec<TagQuery>),
    Indexed(BTreeMap<String, TagQuery>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(flatten)]
    list: ListParams,
    device_class: Option<OneOrMany>,
    tag_filter: Option<TagFilter>,
    query: Option<String>,
    parent_id: Option<String>,
    exclude_connection_info: Option<String>,
    tags_as_object: Option<String>,
    attributes_as_object: Option<String>,
    query_deleted: Option<String>,
}

const DEVICE_CLASSES: &[&str] = &[
    "standalone",
    "gateway",
    "peripheral",
    "floating",
    "edgeCompute",
    "system",
    "embedded",
];

/// A tag filter entry: a key and/or a value, each checked as the reference's tags are.
pub fn tag_pair(
    key: Option<String>,
    value: Option<String>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let key = key.filter(|k| !k.is_empty());
    let value = value.filter(|v| !v.is_empty());
    let bad_key = |k: &String| {
        k.len() > 255
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if key.as_ref().is_some_and(bad_key) {
        return Err(ApiError::validation(
            "tag keys are 1 to 255 letters, digits, _ or -",
        ));
    }
    if value.as_ref().is_some_and(|v| v.len() > 255) {
        return Err(ApiError::validation(
            "tag values are at most 255 characters",
        ));
    }
    if key.is_none() && value.is_none() {
        return Err(ApiError::validation(
            "each tag filter needs a key, a value, or both",
        ));
    }
    Ok((key, value))
}

/// Answered from memory while the freshness gate allows (`read_cache`), by query string, for
/// callers that see every device (a device-restricted token's answer depends on the devices'
/// tags as well as its restriction; it is read from the database). The body depends on the
/// application's devices and the query only, and devices change only with a change notice.
pub async fn list(
    State(state): State<AppState>,
    access: AppAccess,
    RawQuery(raw): RawQuery,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    if query.query.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::validation(
            "query (advanced device queries) is not supported by this server: use filterField/filter, tagFilter and deviceClass",
        ));
    }
    if query.parent_id.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::validation(
            "parentId filtering is not supported by this server",
        ));
    }
    refuse_flags(&[
        ("tagsAsObject", &query.tags_as_object),
        ("attributesAsObject", &query.attributes_as_object),
        ("queryDeleted", &query.query_deleted),
    ])?;
    let _ = &query.exclude_connection_info; // connection info is never returned
    let spec = query.list.spec(&DEVICE_FIELDS)?;
    let classes = query
        .device_class
        .map(OneOrMany::into_vec)
        .unwrap_or_default();
    limits::at_most("deviceClass", classes.len(), limits::MAX_DEVICE_CLASSES)?;
    if classes
        .iter()
        .any(|c| !DEVICE_CLASSES.contains(&c.as_str()))
    {
        return Err(ApiError::validation(format!(
            "deviceClass must be one of {}",
            DEVICE_CLASSES.join(", ")
        )));
    }
    let tags = match query.tag_filter {
        None => vec![],
        Some(TagFilter::List(v)) => v,
        Some(TagFilter::Indexed(m)) => m.into_values().collect(),
    };
    limits::at_most("tagFilter", tags.len(), limits::MAX_TAG_FILTERS)?;
    let tags = tags
        .into_iter()
        .map(|t| tag_pair(t.key, t.value))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = DeviceFilter {
        tags,
        classes,
        // A device-restricted token lists only its devices.
        within: access.device_scope(),
    };
    let app = access.application();
    let store = state.store();
    let restricted = filter.within.is_some();
    let load = || async {
        let page = store.list_devices(app, &filter, &spec).await?;
        let items = page.items.iter().map(device_json).collect();
        let mut out = query
            .list
            .envelope(&spec, &DEVICE_FIELDS, items, page.total);
        out["applicationId"] = json!(app);
        Ok::<_, ApiError>(Bytes::from(out.to_string()))
    };
    let body = if restricted {
        load().await?
    } else {
        let cached = state
            .reads()
            .get(
                app,
                Part::Devices,
                raw.as_deref().unwrap_or(""),
                |_| true,
                |_| true,
                load,
            )
            .await?;
        Bytes::clone(&cached)
    };
    Ok(crate::api::json_bytes(body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Representation {
    tags_as_object: Option<String>,
    attributes_as_object: Option<String>,
    exclude_connection_info: Option<String>,
}

impl Representation {
    fn check(&self) -> Result<(), ApiError> {
        let _ = &self.exclude_connection_info; // connection info is never returned
        refuse_flags(&[
            ("tagsAsObject", &self.tags_as_object),
            ("attributesAsObject", &self.attributes_as_object),
        ])
    }
}

pub async fn create(
    State(state): State<AppState>,
    access: AppAccess,
    Query(repr): Query<Representation>,
    Body(body): Body<DevicePost>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    repr.check()?;
    let mut extra = Map::new();
    tollgate_store::merge_extra(&mut extra, &kept_extra(body.extra));
    let fields = DeviceFields {
        name: body.name,
        description: body.description,
        device_class: body.device_class.unwrap_or_else(|| "standalone".into()),
        tags: body.tags,
        attributes: body.attributes,
        extra,
    };
    check_attributes(&fields.attributes)?;
    let refs = device_refs(&fields.extra, None)?;
    check_restricted_write(&state, &access, None, Some(&fields.tags), &refs).await?;
    let device = state
        .store()
        .create_device(&access.actor(), access.application(), &fields, &refs)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    tracing::info!(device = %device.id, application = %device.application_id, "device created");
    Ok((StatusCode::CREATED, Json(device_json(&device))))
}

async fn load(state: &AppState, access: &AppAccess, id: Id) -> Result<Arc<CachedDevice>, ApiError> {
    state
        .devices()
        .get(access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Device"))
}

pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(repr): Query<Representation>,
) -> ApiResult<Response> {
    repr.check()?;
    let device = load(&state, &access, id).await?;
    // Rendered once per cached device: the hot read path serves the same bytes.
    let body = device.rendered(|d| Bytes::from(device_json(d).to_string()));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(repr): Query<Representation>,
    Body(body): Body<DevicePatch>,
) -> ApiResult<Json<Value>> {
    repr.check()?;
    if let Some(attributes) = &body.attributes {
        check_attributes(attributes)?;
    }
    let extra = kept_extra(body.extra);
    let refs = device_refs(&extra, Some(id))?;
    check_restricted_write(&state, &access, Some(id), body.tags.as_deref(), &refs).await?;
    // The merge happens in the store, into the device as it is when the change commits: the
    // device cache (or another request's copy) may be out of date.
    let patch = tollgate_store::devices::DevicePatch {
        name: body.name,
        description: body.description,
        device_class: body.device_class,
        tags: body.tags,
        attributes: body.attributes,
        extra,
    };
    let device = state
        .store()
        .update_device(&access.actor(), access.application(), id, &patch, &refs)
        .await
        .map_err(|e| ApiError::from_store(e, "Device"))?;
    Ok(Json(device_json(&device)))
}

pub async fn delete(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    state
        .store()
        .delete_device(&access.actor(), access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Device"))?;
    tracing::info!(device = %id, "device deleted");
    Ok(success())
}

/// `device.sendState`'s body: one report or an array of them (`deviceStateOrStates`).
#[derive(Deserialize)]
#[serde(transparent)]
pub struct StateBody(Value);

impl RequestBody for StateBody {
    const SCHEMA: &'static str = "deviceStateOrStates";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        match body {
            Value::Array(a) if a.is_empty() => Err(ApiError::validation(
                "The array of state reports is empty: send at least one",
            )),
            Value::Array(a) if a.len() > MAX_REPORTS => Err(ApiError::validation(format!(
                "Too many state reports in one request: at most {MAX_REPORTS}"
            ))),
            // The two halves of the `oneOf`, so that a problem is named by its place rather
            // than as "matches neither".
            Value::Array(_) => crate::schemas::validate("deviceStates", body),
            Value::Object(_) => crate::schemas::validate("deviceState", body),
            _ => Err(ApiError::validation(
                "The body must be a state report ({\"data\": {...}}) or an array of them",
            )),
        }
    }

    // Each half of the `oneOf` was validated above: the whole schema would validate the
    // body again (and, being a `oneOf`, against both halves).
    const PRECHECK_VALIDATES: bool = true;

    fn from_valid(value: Value) -> Result<Self, serde_json::Error> {
        Ok(StateBody(value))
    }
}

/// Check one report against the device's attributes and convert its values.
fn check_report(
    device: &Device,
    report: &Value,
    at: Option<usize>,
    now: i64,
) -> Result<Report, ApiError> {
    // Where the report is in the body, for messages only (`/3/` in an array, nothing for a
    // lone report): made only when a message needs it.
    let label = || at.map_or(String::new(), |i| format!("/{i}/"));
    let time = match report.get("time") {
        None | Some(Value::Null) => now,
        Some(t) => report_time(t, now).ok_or_else(|| {
            ApiError::validation(format!(
                "{}time cannot be read: use milliseconds or seconds since the epoch, an ISO 8601 date, or {{\"$date\": \"<ISO date>\"}}",
                label()
            ))
        })?,
    };
    if time < now - MAX_AGE_MS {
        return Err(ApiError::validation(format!(
            "{}time is more than 30 days in the past: such state is not recorded",
            label()
        )));
    }
    if time > now + MAX_AHEAD_MS {
        return Err(ApiError::validation(format!(
            "{}time is more than a day in the future: such state is not recorded",
            label()
        )));
    }
    let data = report
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation(format!("{}data must be an object", label())))?;
    let mut values = Vec::new();
    let mut unknown = Vec::new();
    for (name, raw) in data {
        let Some(ty) = device.attribute_type(name) else {
            unknown.push(name.as_str());
            continue;
        };
        let reported = match raw {
            Value::Number(n) => Reported::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Reported::Str(s),
            Value::Bool(b) => Reported::Bool(*b),
            _ => {
                return Err(ApiError::validation(format!(
                    "{}data.{name}: values are numbers, strings or booleans",
                    label()
                )));
            }
        };
        let stored = convert(ty, &reported).map_err(|e| {
            ApiError::validation(format!("{}data.{name} is a {ty} attribute: {e}", label()))
        })?;
        values.push((name.clone(), stored));
    }
    if values.is_empty() {
        let declared: Vec<&str> = device.attribute_types().iter().map(|(n, _)| *n).collect();
        let declared = if declared.is_empty() {
            "the device declares no attributes: add some with device.patch".to_owned()
        } else {
            format!("its attributes are {}", declared.join(", "))
        };
        let got = if unknown.is_empty() {
            "data is empty".to_owned()
        } else {
            format!(
                "{} {} not an attribute of this device",
                unknown
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                if unknown.len() == 1 { "is" } else { "are" }
            )
        };
        return Err(ApiError::validation(format!(
            "{}nothing to record: {got}; {declared}",
            label()
        )));
    }
    Ok(Report {
        time,
        meta: report.get("meta").cloned(),
        values,
    })
}

pub async fn send_state(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Body(StateBody(body)): Body<StateBody>,
) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let count = body.as_array().map_or(1, Vec::len);
    // The reports are checked against the device as the store's transaction sees it (and
    // keeps it until commit), not against a cached copy: a PATCH that removed an attribute a
    // moment ago is seen, and one racing this report waits for it.
    state
        .store()
        .insert_reports_of(
            &access.actor(),
            access.application(),
            id,
            count,
            move |device| match &body {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, r)| check_report(device, r, Some(i), now))
                    .collect::<Result<Vec<_>, ApiError>>()
                    .map_err(Refusal::from),
                single => Ok(vec![check_report(device, single, None, now)?]),
            },
        )
        .await
        .map_err(|e| e.named("Device"))?;
    Ok(success())
}

/// Query parameters of `device.getState` and `device.getCommand`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParams {
    limit: Option<String>,
    since: Option<String>,
    sort_direction: Option<String>,
    duration: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

fn int_param(v: &Option<String>, name: &str) -> Result<Option<i64>, ApiError> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            ApiError::validation(format!("{name} must be a whole number of milliseconds"))
        }),
    }
}

impl HistoryParams {
    /// Whether the request names a time range (otherwise: every report up to now).
    fn has_range(&self) -> bool {
        [&self.since, &self.duration, &self.start, &self.end]
            .into_iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()))
    }

    fn resolve(&self, now: i64) -> Result<HistoryQuery, ApiError> {
        let limit = match self
            .limit
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => 1,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_HISTORY).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(format!("limit must be between 1 and {MAX_HISTORY}"))
                })?,
        };
        let descending = match self
            .sort_direction
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "desc") => true,
            Some("asc") => false,
            Some(_) => return Err(ApiError::validation("sortDirection must be asc or desc")),
        };
        let end = int_param(&self.end, "end")?.map_or(now, |e| relative_ms(e, now));
        let duration = int_param(&self.duration, "duration")?;
        if duration.is_some_and(|d| d <= 0) {
            return Err(ApiError::validation("duration must be more than 0"));
        }
        let start = match (
            int_param(&self.start, "start")?,
            duration,
            int_param(&self.since, "since")?,
        ) {
            (Some(s), _, _) => relative_ms(s, now),
            (None, Some(d), _) => end - d,
            (None, None, Some(s)) => relative_ms(s, now),
            (None, None, None) => 0,
        };
        if start > end {
            return Err(ApiError::validation("start must not be after end"));
        }
        Ok(HistoryQuery {
            start,
            end,
            limit,
            descending,
        })
    }
}

/// `device.getState`'s answer: the reports, each with the values of the declared attributes.
fn states_json<'a>(
    types: impl Iterator<Item = (&'a str, DataType)> + Clone,
    reports: &[StoredReport],
) -> Value {
    let out: Vec<Value> = reports
        .iter()
        .map(|r| {
            let data: Map<String, Value> = types
                .clone()
                .filter_map(|(n, ty)| r.values.get(n).map(|v| (n.to_owned(), value_json(ty, v))))
                .collect();
            let mut item = json!({ "time": iso(r.time), "data": data });
            if let Some(m) = &r.meta {
                item["meta"] = m.clone();
            }
            item
        })
        .collect();
    Value::Array(out)
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The attributes an answer is read for, owned (to keep with it).
fn owned_types(types: &[(&str, DataType)]) -> Types {
    types.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect()
}

/// Without a time range (the newest reports, the common dashboard read), the answer comes
/// from memory while the freshness gate allows (`state_cache`), rendered once.
pub async fn get_state(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<Response> {
    let now = now_ms();
    let q = params.resolve(now)?;
    let device = load(&state, &access, id).await?;
    let types = device.attribute_types();
    let names: Vec<&str> = types.iter().map(|(n, _)| *n).collect();
    if params.has_range() || q.limit > MAX_KEPT_REPORTS {
        let reports = state.store().states(id, &names, &q).await?;
        let body = states_json(types.iter().copied(), &reports);
        return Ok(Json(body).into_response());
    }
    let store = state.store();
    let answer = state
        .states()
        .get(
            access.application(),
            id,
            &format!("reports:{}:{}", q.limit, q.descending),
            |a| a.holds_at(now, &types),
            true,
            || async {
                let reports = store.states(id, &names, &q).await?;
                let until = store.next_report_after(id, now).await?;
                Ok::<_, ApiError>(StateAnswer::new(
                    owned_types(&types),
                    Held::Reports(reports),
                    until,
                ))
            },
        )
        .await?;
    Ok(json_response(answer.rendered(render_reports)))
}

fn render_reports(a: &StateAnswer) -> Bytes {
    let Held::Reports(reports) = &a.held else {
        return Bytes::from_static(b"[]");
    };
    let types = a.types.iter().map(|(n, t)| (n.as_str(), *t));
    Bytes::from(states_json(types, reports).to_string())
}

#[derive(Deserialize)]
pub struct CompositeParams {
    start: Option<String>,
    end: Option<String>,
    attributes: Option<String>,
}

/// The latest value of each declared attribute, read for this device up to now: from memory
/// while the freshness gate allows (`state_cache`).
pub async fn latest_values(
    state: &AppState,
    application: Id,
    id: Id,
    types: &[(&str, DataType)],
    now: i64,
) -> Result<Arc<StateAnswer>, ApiError> {
    let store = state.store();
    let names: Vec<&str> = types.iter().map(|(n, _)| *n).collect();
    state
        .states()
        .get(
            application,
            id,
            "latest",
            |a| a.holds_at(now, types),
            true,
            || async {
                let values = store.last_values(id, &names, now).await?;
                let until = store.next_report_after(id, now).await?;
                Ok::<_, ApiError>(StateAnswer::new(
                    owned_types(types),
                    Held::Latest(values),
                    until,
                ))
            },
        )
        .await
}

/// `device.getCompositeState`'s answer from the latest values: those at or after `start` of
/// the attributes `wanted` (all without a list).
fn composite_json(a: &StateAnswer, start: i64, wanted: Option<&[&str]>) -> Value {
    let mut out = Map::new();
    if let Held::Latest(values) = &a.held {
        for (name, ty) in &a.types {
            if wanted.is_some_and(|w| !w.contains(&name.as_str())) {
                continue;
            }
            if let Some((_, time, v)) = values.iter().find(|(n, t, _)| n == name && *t >= start) {
                out.insert(
                    name.clone(),
                    json!({ "value": value_json(*ty, v), "time": iso(*time) }),
                );
            }
        }
    }
    Value::Object(out)
}

pub async fn get_composite_state(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(params): Query<CompositeParams>,
) -> ApiResult<Response> {
    let now = now_ms();
    let given_start = int_param(&params.start, "start")?;
    let given_end = int_param(&params.end, "end")?;
    let start = given_start.map_or(1, |s| relative_ms(s, now));
    let end = given_end.map_or(now, |e| relative_ms(e, now));
    if start > end {
        return Err(ApiError::validation("start must not be after end"));
    }
    let device = load(&state, &access, id).await?;
    let types = device.attribute_types();
    let wanted: Option<Vec<&str>> = params
        .attributes
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        });
    if let Some(w) = &wanted {
        limits::at_most("attributes", w.len(), limits::MAX_QUERY_ATTRIBUTES)?;
        let unknown: Vec<&str> = w
            .iter()
            .copied()
            .filter(|n| !types.iter().any(|(t, _)| t == n))
            .take(5)
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::validation(format!(
                "attributes: {} not an attribute of this device",
                unknown.join(", ")
            )));
        }
    }
    if given_start.is_none() && given_end.is_none() {
        // No range: the latest values up to now (every stored time is after `start`'s 1).
        let latest = latest_values(&state, access.application(), id, &types, now).await?;
        return Ok(match &wanted {
            None => json_response(
                latest.rendered(|a| Bytes::from(composite_json(a, start, None).to_string())),
            ),
            Some(w) => Json(composite_json(&latest, start, Some(w))).into_response(),
        });
    }
    let mut out = Map::new();
    for (name, ty) in &types {
        if wanted.as_ref().is_some_and(|w| !w.contains(name)) {
            continue;
        }
        if let Some((time, v)) = state.store().last_value(id, name, start, end).await? {
            out.insert(
                (*name).to_owned(),
                json!({ "value": value_json(*ty, &v), "time": iso(time) }),
            );
        }
    }
    Ok(Json(Value::Object(out)).into_response())
}

#[derive(Deserialize)]
pub struct CommandBody {
    time: Option<Value>,
    name: String,
    payload: Option<Value>,
}

impl RequestBody for CommandBody {
    const SCHEMA: &'static str = "deviceCommand";
}

pub async fn send_command(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Body(body): Body<CommandBody>,
) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let time = match &body.time {
        None | Some(Value::Null) => now,
        Some(t) => report_time(t, now).ok_or_else(|| {
            ApiError::validation(
                "time cannot be read: use milliseconds or seconds since the epoch, an ISO 8601 date, or {\"$date\": \"<ISO date>\"}",
            )
        })?,
    };
    let cmd = Command {
        time,
        name: body.name,
        payload: body.payload,
    };
    state
        .store()
        .insert_command(&access.actor(), access.application(), id, &cmd)
        .await
        .map_err(|e| ApiError::from_store(e, "Device"))?;
    Ok(success())
}

pub async fn get_command(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<Json<Value>> {
    let q = params.resolve(now_ms())?;
    load(&state, &access, id).await?;
    let commands = state.store().commands(id, &q).await?;
    let out: Vec<Value> = commands
        .iter()
        .map(|c| {
            let mut item = json!({ "time": iso(c.time), "name": c.name });
            if let Some(p) = &c.payload {
                item["payload"] = p.clone();
            }
            item
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

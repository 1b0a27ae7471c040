//! Data queries over device state: `data.timeSeriesQuery`, `data.lastValueQuery`.
//!
//! Devices are chosen by ids and/or tags (inclusive, as the reference's device queries are:
//! a device named by id or carrying any listed tag), always within the caller's application;
//! ids of devices elsewhere simply match nothing. Bucketing and aggregation follow
//! `tollgate_core::timeseries`; COUNT, SUM, MIN, MAX and MEAN are computed by the database.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_core::attribute::DataType;
use tollgate_core::timeseries::{Aggregation, Buckets, aggregate};
use tollgate_store::devices::Device;
use tollgate_store::{Id, now_ms};

use crate::api::devices::{number_json, tag_pair, value_json};
use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, RequestBody};
use crate::limits;
use crate::state::AppState;
use crate::state_cache::Held;
use crate::time::{iso, relative_ms};

/// Most devices one query may cover.
pub const MAX_DEVICES: i64 = 1000;
/// Most buckets one aggregated query may ask for (per device and attribute).
pub const MAX_BUCKETS: i64 = 10_000;
/// Raw points (`NONE`) per device: default and most.
pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;
/// Window when neither `start` nor `duration` is given.
pub const DEFAULT_DURATION: i64 = 86_400_000;

#[derive(Deserialize)]
pub struct TagSel {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeSeriesQuery {
    start: Option<f64>,
    end: Option<f64>,
    duration: Option<f64>,
    resolution: Option<f64>,
    aggregation: Option<Value>,
    attributes: Option<Vec<String>>,
    device_ids: Option<Vec<String>>,
    device_tags: Option<Vec<TagSel>>,
    device_query: Option<Value>,
    limit: Option<f64>,
    order: Option<String>,
}

impl RequestBody for TimeSeriesQuery {
    const SCHEMA: &'static str = "timeSeriesQuery";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_device_query(body)?;
        check_counts(body)?;
        let ty = match body.get("aggregation") {
            Some(Value::Object(o)) => o.get("type"),
            other => other,
        };
        if ty.and_then(Value::as_str) == Some("TIMEATVALUE") {
            return Err(ApiError::validation(
                "aggregation TIMEATVALUE is not supported by this server: use FIRST, LAST, COUNT, MAX, MIN, MEDIAN, MEAN, SUM, STD_DEV or NONE",
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastValueQuery {
    attribute: Option<String>,
    device_ids: Option<Vec<String>>,
    device_tags: Option<Vec<TagSel>>,
    device_query: Option<Value>,
    end: Option<f64>,
}

impl RequestBody for LastValueQuery {
    const SCHEMA: &'static str = "lastValueQuery";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_device_query(body)?;
        check_counts(body)?;
        if body.get("attribute").is_none() {
            return Err(ApiError::validation(
                "attribute is required: the attribute whose last value you want",
            ));
        }
        Ok(())
    }
}

/// The lists of a query, bounded before the schema or the database sees them.
fn check_counts(body: &Value) -> Result<(), ApiError> {
    for (field, max) in [
        ("deviceIds", limits::MAX_DEVICE_IDS),
        ("deviceTags", limits::MAX_DEVICE_TAGS),
        ("attributes", limits::MAX_QUERY_ATTRIBUTES),
    ] {
        if let Some(list) = body.get(field).and_then(Value::as_array) {
            limits::at_most(field, list.len(), max)?;
        }
    }
    Ok(())
}

fn refuse_device_query(body: &Value) -> Result<(), ApiError> {
    if body.get("deviceQuery").is_some() {
        return Err(ApiError::validation(
            "deviceQuery (advanced device queries) is not supported by this server: select devices with deviceIds and deviceTags",
        ));
    }
    Ok(())
}

/// A whole number of milliseconds from a JSON number.
fn whole(v: Option<f64>, name: &str) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 => Ok(Some(n as i64)),
        Some(_) => Err(ApiError::validation(format!(
            "{name} must be a whole number of milliseconds"
        ))),
    }
}

/// The devices a query selects, in name order.
async fn select_devices(
    state: &AppState,
    access: &AppAccess,
    ids: Option<Vec<String>>,
    tags: Option<Vec<TagSel>>,
) -> Result<Vec<Device>, ApiError> {
    // The schema has checked the id pattern already.
    let ids: Vec<Id> = ids
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| ApiError::validation("deviceIds: ids are 24 hexadecimal characters"))
        })
        .collect::<Result<_, _>>()?;
    let tags = tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| tag_pair(t.key, t.value))
        .collect::<Result<Vec<_>, _>>()?;
    let devices = state
        .store()
        .query_devices(
            access.application(),
            &ids,
            &tags,
            access.device_scope().as_ref(),
            MAX_DEVICES + 1,
        )
        .await?;
    if devices.len() as i64 > MAX_DEVICES {
        return Err(ApiError::validation(format!(
            "The query selects more than {MAX_DEVICES} devices: narrow it with deviceIds or deviceTags"
        )));
    }
    Ok(devices)
}

/// Tags as the time-series response shows them: key → values.
fn tags_json(d: &Device) -> Value {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &d.tags {
        map.entry(&t.key).or_default().push(&t.value);
    }
    json!(map)
}

pub async fn time_series_query(
    State(state): State<AppState>,
    access: AppAccess,
    Body(q): Body<TimeSeriesQuery>,
) -> ApiResult<Json<Value>> {
    let _ = &q.device_query; // refused in precheck
    let now = now_ms();
    let end = relative_ms(whole(q.end, "end")?.unwrap_or(0), now);
    let duration = whole(q.duration, "duration")?;
    if duration.is_some_and(|d| d <= 0) {
        return Err(ApiError::validation("duration must be more than 0"));
    }
    let start = match whole(q.start, "start")? {
        Some(s) => relative_ms(s, now),
        None => end - duration.unwrap_or(DEFAULT_DURATION),
    };
    if start >= end {
        return Err(ApiError::validation("start must be before end"));
    }
    let aggregation_text = match &q.aggregation {
        None => "MEAN".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("MEAN")
            .to_owned(),
        Some(_) => return Err(ApiError::validation("aggregation must be a string")),
    };
    let aggregation = if aggregation_text == "NONE" {
        None
    } else {
        Some(Aggregation::parse(&aggregation_text).ok_or_else(|| {
            ApiError::validation(
                "aggregation must be one of FIRST, LAST, COUNT, MAX, MIN, MEDIAN, MEAN, SUM, STD_DEV, NONE",
            )
        })?)
    };
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::validation("order must be asc or desc")),
    };
    let buckets = match aggregation {
        None => None,
        Some(_) => {
            let resolution = whole(q.resolution, "resolution")?.ok_or_else(|| {
                ApiError::validation(
                    "resolution is required for an aggregated query: the bucket width in milliseconds, e.g. 300000 for 5 minutes",
                )
            })?;
            if resolution < 1 {
                return Err(ApiError::validation(
                    "resolution must be at least 1 millisecond",
                ));
            }
            let b = Buckets {
                start,
                end,
                resolution,
            };
            if b.count() > MAX_BUCKETS {
                let least = (end - start + MAX_BUCKETS - 1) / MAX_BUCKETS;
                return Err(ApiError::validation(format!(
                    "The window holds more than {MAX_BUCKETS} buckets of that resolution: use a resolution of at least {least} ms or a shorter window"
                )));
            }
            Some(b)
        }
    };
    let limit = match whole(q.limit, "limit")? {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
    };
    let wanted = q.attributes.filter(|a| !a.is_empty());
    let devices = select_devices(&state, &access, q.device_ids, q.device_tags).await?;

    let mut out = Map::new();
    for device in &devices {
        let attrs: Vec<(&str, DataType)> = device
            .attribute_types()
            .into_iter()
            .filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == n)))
            .collect();
        // time → attribute → value
        let mut points: BTreeMap<i64, Map<String, Value>> = BTreeMap::new();
        for (name, ty) in &attrs {
            match (aggregation, &buckets) {
                (Some(agg), Some(b)) => {
                    // Only numbers (and booleans as 1/0) aggregate.
                    if !ty.is_numeric() {
                        continue;
                    }
                    let values: Vec<(i64, f64)> = if agg.from_partial() {
                        state
                            .store()
                            .series_partials(device.id, name, b)
                            .await?
                            .into_iter()
                            .filter_map(|(i, p)| p.finish(agg).map(|v| (b.bucket_start(i), v)))
                            .collect()
                    } else {
                        let raw = state
                            .store()
                            .series_numbers(device.id, name, b.start, b.end)
                            .await?;
                        aggregate(&raw, b, agg)
                    };
                    for (t, v) in values {
                        let v = if agg == Aggregation::Count {
                            json!(v as i64)
                        } else {
                            number_json(v)
                        };
                        points.entry(t).or_default().insert((*name).to_owned(), v);
                    }
                }
                _ => {
                    let raw = state
                        .store()
                        .series_points(device.id, name, start, end, limit, descending)
                        .await?;
                    for (t, v) in raw {
                        points
                            .entry(t)
                            .or_default()
                            .insert((*name).to_owned(), value_json(*ty, &v));
                    }
                }
            }
        }
        let mut list: Vec<Value> = points
            .into_iter()
            .map(|(t, data)| json!({ "time": iso(t), "data": data }))
            .collect();
        if descending {
            list.reverse();
        }
        if aggregation.is_none() {
            list.truncate(limit as usize);
        }
        out.insert(
            device.id.to_string(),
            json!({ "name": device.name, "tags": tags_json(device), "points": list }),
        );
    }
    Ok(Json(json!({
        "start": iso(start),
        "end": iso(end),
        "resolution": buckets.map(|b| b.resolution),
        "aggregation": aggregation_text,
        "limit": if aggregation.is_none() { json!(limit) } else { Value::Null },
        "order": if descending { "desc" } else { "asc" },
        "devices": out,
    })))
}

/// For devices named by id only, with nothing else narrowing them (no tags, no device
/// restriction on the caller) and no `end`, devices come from the device cache and their
/// latest values from memory (`state_cache`), under the freshness gate; otherwise from the
/// database.
pub async fn last_value_query(
    State(state): State<AppState>,
    access: AppAccess,
    Body(q): Body<LastValueQuery>,
) -> ApiResult<Json<Value>> {
    let _ = &q.device_query; // refused in precheck
    let attribute = q.attribute.unwrap_or_default();
    let now = now_ms();
    let given_end = whole(q.end, "end")?.unwrap_or(0);
    let end = relative_ms(given_end, now);
    let by_ids_only = given_end == 0
        && access.device_scope().is_none()
        && q.device_tags.as_ref().is_none_or(Vec::is_empty)
        && q.device_ids.as_ref().is_some_and(|ids| !ids.is_empty());
    let mut out = Map::new();
    if by_ids_only {
        let mut ids: Vec<Id> = q
            .device_ids
            .unwrap_or_default()
            .iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    ApiError::validation("deviceIds: ids are 24 hexadecimal characters")
                })
            })
            .collect::<Result<_, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let device = match state.devices().get(access.application(), id).await {
                Ok(d) => d,
                Err(tollgate_store::StoreError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(ty) = device.attribute_type(&attribute) else {
                continue;
            };
            let types = device.attribute_types();
            let latest =
                crate::api::devices::latest_values(&state, access.application(), id, &types, now)
                    .await?;
            if let Held::Latest(values) = &latest.held
                && let Some((_, time, v)) =
                    values.iter().find(|(n, t, _)| *n == attribute && *t >= 0)
            {
                out.insert(
                    id.to_string(),
                    json!({ "time": iso(*time), "data": { attribute.as_str(): value_json(ty, v) } }),
                );
            }
        }
        return Ok(Json(Value::Object(out)));
    }
    let devices = select_devices(&state, &access, q.device_ids, q.device_tags).await?;
    for device in &devices {
        let Some(ty) = device.attribute_type(&attribute) else {
            continue;
        };
        if let Some((time, v)) = state
            .store()
            .last_value(device.id, &attribute, 0, end)
            .await?
        {
            out.insert(
                device.id.to_string(),
                json!({ "time": iso(time), "data": { attribute.as_str(): value_json(ty, &v) } }),
            );
        }
    }
    Ok(Json(Value::Object(out)))
}

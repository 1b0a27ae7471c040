//! Device state: reports (one row per report time) and points (one row per attribute value).
//!
//! Reports are written in one transaction per request, with multi-row inserts, so a batch is
//! stored whole or not at all and costs a handful of statements rather than one per value.
//! A report at a time that already has one merges into it, value by value (the reference's
//! "overwriting previous states").

use std::collections::BTreeMap;

use sqlx::Row;
use tollgate_core::attribute::Stored;
use tollgate_core::timeseries::{Buckets, Partial};

use crate::actor::{Actor, Lock};
use crate::devices::{Device, HistoryQuery, device_for_write, json_of, json_text, placeholders};
use crate::{Change, Id, Result, Store, StoreError};

/// One validated state report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub time: i64,
    pub meta: Option<serde_json::Value>,
    pub values: Vec<(String, Stored)>,
}

/// A stored report, as `device.getState` returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredReport {
    pub time: i64,
    pub meta: Option<serde_json::Value>,
    pub values: BTreeMap<String, Stored>,
}

/// Rows per multi-row INSERT, largest first: `n` rows are written as a few statements of
/// these sizes. A statement is prepared once per connection and cached by its text, so a
/// handful of fixed shapes stay prepared whatever number of rows a write (or a batch of
/// writes committed together) has; a statement of exactly `n` rows would be parsed anew for
/// almost every batch. At most 4 values a row, 1,024 rows stay far below SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters.
const CHUNK_ROWS: [usize; 6] = [1024, 256, 64, 16, 4, 1];

/// `rows` cut into consecutive chunks of the sizes in [`CHUNK_ROWS`].
pub(crate) fn chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    for size in CHUNK_ROWS {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            out.push(chunk);
            rest = tail;
        }
    }
    out
}

fn stored_from(num: Option<f64>, txt: Option<String>) -> Result<Stored> {
    match (num, txt) {
        (Some(n), _) => Ok(Stored::Num(n)),
        (None, Some(t)) => Ok(Stored::Txt(t)),
        (None, None) => Err(StoreError::Corrupt("a point without a value".into())),
    }
}

impl Store {
    /// Store state reports for a device of `application`, as `actor`, all or nothing.
    /// `check` turns the request into reports against the device *as it is in this
    /// transaction* (locked until commit, so a PATCH that removes or retypes an attribute
    /// either commits first, and `check` sees it, or waits for these points and then deletes
    /// them): stored points always belong to declared attributes, whatever a cache held.
    /// Reports (or values) at the same time merge; within one call the later one wins.
    ///
    /// Concurrent calls are committed together ([`crate::group_commit`]; on PostgreSQL those
    /// made with a token of `application`): each is checked in turn inside one transaction
    /// and all are acknowledged after its one commit, with the answers (and the durability)
    /// they would have had one by one.
    pub async fn insert_reports<E: From<StoreError> + Send + 'static>(
        &self,
        actor: &Actor,
        application: Id,
        device: Id,
        check: impl Fn(&Device) -> Result<Vec<Report>, E> + Send + 'static,
    ) -> Result<usize, E> {
        self.insert_reports_of(actor, application, device, 1, check)
            .await
    }

    /// [`Store::insert_reports`] for a request that holds `count` reports. A request of at
    /// least [`crate::group_commit::ALONE_FROM`] reports is already a batch: it commits in a
    /// transaction of its own instead of joining the group (measured with 100 reports per
    /// request: joining halved the reports stored per second, each batch's commit waiting on
    /// thousands of rows).
    ///
    /// `check` is `Fn`, not `FnOnce`: on PostgreSQL a request whose group's transaction failed
    /// is checked again, in a transaction of its own, against the device as that one sees it.
    pub async fn insert_reports_of<E: From<StoreError> + Send + 'static>(
        &self,
        actor: &Actor,
        application: Id,
        device: Id,
        count: usize,
        check: impl Fn(&Device) -> Result<Vec<Report>, E> + Send + 'static,
    ) -> Result<usize, E> {
        if crate::group_commit::joins(self.backend(), actor, application, count) {
            return crate::group_commit::insert_reports(self, actor, application, device, check)
                .await;
        }
        self.insert_reports_alone(actor, application, device, check)
            .await
    }

    /// [`Store::insert_reports`] in a transaction of its own.
    pub(crate) async fn insert_reports_alone<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        device: Id,
        check: impl FnOnce(&Device) -> Result<Vec<Report>, E> + Send,
    ) -> Result<usize, E> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let current = device_for_write(&mut tx, application, device).await?;
        let reports = check(&current)?;
        write_reports(&mut tx, &[(device, &reports)], &[]).await?;
        // Cached state answers of the device go (on PostgreSQL, on every node when the
        // notice arrives).
        self.commit_with(tx, &[Change::State(device)]).await?;
        Ok(reports.len())
    }

    /// The reports of `device` in the query's range, each with its values of `attributes`
    /// (the device's declared attributes).
    pub async fn states(
        &self,
        device: Id,
        attributes: &[&str],
        q: &HistoryQuery,
    ) -> Result<Vec<StoredReport>> {
        let dir = if q.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT time, meta FROM device_reports WHERE device_id = $1 AND time >= $2 \
             AND time <= $3 ORDER BY time {dir} LIMIT {}",
            q.limit
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.to_hex())
            .bind(q.start)
            .bind(q.end)
            .fetch_all(&self.pool)
            .await?;
        let mut reports: Vec<StoredReport> = rows
            .iter()
            .map(|r| {
                Ok(StoredReport {
                    time: r.try_get("time")?,
                    meta: r
                        .try_get::<Option<String>, _>("meta")?
                        .map(|m| json_of(&m))
                        .transpose()?,
                    values: BTreeMap::new(),
                })
            })
            .collect::<Result<_>>()?;
        let (Some(lo), Some(hi)) = (
            reports.iter().map(|r| r.time).min(),
            reports.iter().map(|r| r.time).max(),
        ) else {
            return Ok(reports);
        };
        if attributes.is_empty() {
            return Ok(reports);
        }
        // One range scan of the primary key per attribute, between the oldest and newest
        // report of the page.
        let sql = format!(
            "SELECT attribute, time, num, txt FROM device_points WHERE device_id = $1 \
             AND attribute IN ({}) AND time >= $2 AND time <= $3",
            placeholders(4, attributes.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.to_hex())
            .bind(lo)
            .bind(hi);
        for a in attributes {
            query = query.bind(a.to_string());
        }
        let index: BTreeMap<i64, usize> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| (r.time, i))
            .collect();
        for row in query.fetch_all(&self.pool).await? {
            let time: i64 = row.try_get("time")?;
            if let Some(&i) = index.get(&time) {
                let value = stored_from(row.try_get("num")?, row.try_get("txt")?)?;
                reports[i].values.insert(row.try_get("attribute")?, value);
            }
        }
        Ok(reports)
    }

    /// The latest value of `attribute` of `device` at a time in `[start, end]`.
    pub async fn last_value(
        &self,
        device: Id,
        attribute: &str,
        start: i64,
        end: i64,
    ) -> Result<Option<(i64, Stored)>> {
        let row = sqlx::query(
            "SELECT time, num, txt FROM device_points WHERE device_id = $1 AND attribute = $2 \
             AND time >= $3 AND time <= $4 ORDER BY time DESC LIMIT 1",
        )
        .bind(device.to_hex())
        .bind(attribute)
        .bind(start)
        .bind(end)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("time")?,
                stored_from(r.try_get("num")?, r.try_get("txt")?)?,
            ))
        })
        .transpose()
    }

    /// The latest value of each of `attributes` of `device` at a time up to `end` (the
    /// attributes without one are left out).
    pub async fn last_values(
        &self,
        device: Id,
        attributes: &[&str],
        end: i64,
    ) -> Result<Vec<(String, i64, Stored)>> {
        let mut out = Vec::with_capacity(attributes.len());
        for a in attributes {
            if let Some((time, v)) = self.last_value(device, a, i64::MIN, end).await? {
                out.push(((*a).to_owned(), time, v));
            }
        }
        Ok(out)
    }

    /// The earliest report of `device` later than `after`, if any (a report may be up to a
    /// day ahead of the clock: an answer read at `after` holds until then).
    pub async fn next_report_after(&self, device: Id, after: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(time) FROM device_reports WHERE device_id = $1 AND time > $2",
        )
        .bind(device.to_hex())
        .bind(after)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Per-bucket count, sum, min and max of the numeric points of one series, computed by
    /// the database in one pass (nothing but the buckets comes back).
    pub async fn series_partials(
        &self,
        device: Id,
        attribute: &str,
        buckets: &Buckets,
    ) -> Result<Vec<(i64, Partial)>> {
        let rows = sqlx::query(
            "SELECT (time - $3) / $5 AS bucket, COUNT(num) AS n, SUM(num) AS total, \
             MIN(num) AS lo, MAX(num) AS hi FROM device_points \
             WHERE device_id = $1 AND attribute = $2 AND time >= $3 AND time < $4 \
             AND num IS NOT NULL GROUP BY bucket ORDER BY bucket",
        )
        .bind(device.to_hex())
        .bind(attribute)
        .bind(buckets.start)
        .bind(buckets.end)
        .bind(buckets.resolution)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("bucket")?,
                    Partial {
                        count: r.try_get("n")?,
                        sum: r.try_get("total")?,
                        min: r.try_get("lo")?,
                        max: r.try_get("hi")?,
                    },
                ))
            })
            .collect()
    }

    /// The numeric points of one series in `[start, end)`, in time order.
    pub async fn series_numbers(
        &self,
        device: Id,
        attribute: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, f64)>> {
        let rows = sqlx::query(
            "SELECT time, num FROM device_points WHERE device_id = $1 AND attribute = $2 \
             AND time >= $3 AND time < $4 AND num IS NOT NULL ORDER BY time",
        )
        .bind(device.to_hex())
        .bind(attribute)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("time")?, r.try_get("num")?)))
            .collect()
    }

    /// Raw points of one series in `[start, end)`: at most `limit`, newest or oldest first.
    pub async fn series_points(
        &self,
        device: Id,
        attribute: &str,
        start: i64,
        end: i64,
        limit: i64,
        descending: bool,
    ) -> Result<Vec<(i64, Stored)>> {
        let dir = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT time, num, txt FROM device_points WHERE device_id = $1 AND attribute = $2 \
             AND time >= $3 AND time < $4 ORDER BY time {dir} LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.to_hex())
            .bind(attribute)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("time")?,
                    stored_from(r.try_get("num")?, r.try_get("txt")?)?,
                ))
            })
            .collect()
    }
}

/// One multi-row statement of a write: the rows of one table (and, for points, one value
/// column).
enum Part<'a> {
    Reports(&'a [(String, i64, Option<String>)]),
    Points {
        column: &'static str,
        other: &'static str,
        rows: &'a [((&'a str, &'a str, i64), &'a Stored)],
    },
}

impl Part<'_> {
    /// The statement, its parameters numbered from `first` (`$N`), or anonymous (`?`) when
    /// `first` is `None`. SQLite gets anonymous ones: for every parameter sqlx asks SQLite
    /// its name, which SQLite finds by a walk through the statement's list of names, so a
    /// statement of N numbered parameters cost O(N²) (perf: 39 % of the server's CPU under
    /// batched reports). sqlx numbers anonymous parameters in order across the statements
    /// of one query, the order `bind` adds them.
    fn sql(&self, first: Option<usize>) -> String {
        let (width, rows) = match self {
            Part::Reports(rows) => (3, rows.len()),
            Part::Points { rows, .. } => (4, rows.len()),
        };
        let mut values = String::with_capacity(rows * 6 * width);
        for i in 0..rows {
            if i > 0 {
                values.push_str(", ");
            }
            values.push('(');
            for k in 0..width {
                if k > 0 {
                    values.push_str(", ");
                }
                match first {
                    Some(first) => {
                        values.push('$');
                        values.push_str(&(first + width * i + k).to_string());
                    }
                    None => values.push('?'),
                }
            }
            values.push(')');
        }
        match self {
            Part::Reports(_) => format!(
                "INSERT INTO device_reports (device_id, time, meta) VALUES {values} \
                 ON CONFLICT (device_id, time) DO UPDATE \
                 SET meta = COALESCE(excluded.meta, device_reports.meta)"
            ),
            Part::Points { column, other, .. } => format!(
                "INSERT INTO device_points (device_id, attribute, time, {column}) VALUES {values} \
                 ON CONFLICT (device_id, attribute, time) DO UPDATE \
                 SET {column} = excluded.{column}, {other} = NULL"
            ),
        }
    }

    fn bind<'q>(
        &self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        match self {
            Part::Reports(rows) => {
                for (d, t, m) in rows.iter() {
                    q = q.bind(d.clone()).bind(*t).bind(m.clone());
                }
            }
            Part::Points { rows, .. } => {
                for ((d, attr, t), v) in rows.iter() {
                    q = q.bind((*d).to_owned()).bind((*attr).to_owned()).bind(*t);
                    q = match v {
                        Stored::Num(n) => q.bind(*n),
                        Stored::Txt(s) => q.bind(s.clone()),
                    };
                }
            }
        }
        q
    }
}

/// Write the reports of several devices in `tx` (not committed), with (PostgreSQL) the
/// change `notices` of the transaction: a handful of statements whatever their number.
/// Reports (or values) of one device at the same time merge; the later one wins.
///
/// Every statement is a round trip (on SQLite to the connection's thread: a message each
/// way and two thread wake-ups; on PostgreSQL to the server, which also pays for each
/// statement's start and end), and a group commit's round trips made its length and so every
/// request's wait (BENCHMARKS.md). So on SQLite the multi-row statements go as one query
/// text, which sqlx's SQLite driver runs statement by statement on its thread, each binding
/// its own parameters from the query's one list of values; on PostgreSQL, where a query of
/// several statements cannot be prepared, everything is one statement ([`PG_WRITE`]).
pub(crate) async fn write_reports(
    tx: &mut crate::WriteTx,
    items: &[(Id, &[Report])],
    notices: &[Change],
) -> Result<()> {
    // Merge first: one multi-row upsert must not touch the same key twice (PostgreSQL
    // refuses that).
    let devices: Vec<String> = items.iter().map(|(d, _)| d.to_hex()).collect();
    let mut times: BTreeMap<(&str, i64), Option<&serde_json::Value>> = BTreeMap::new();
    let mut points: BTreeMap<(&str, &str, i64), &Stored> = BTreeMap::new();
    for ((_, reports), dev) in items.iter().zip(&devices) {
        for r in reports.iter() {
            let meta = times.entry((dev.as_str(), r.time)).or_default();
            if r.meta.is_some() {
                *meta = r.meta.as_ref();
            }
            for (attr, v) in &r.values {
                points.insert((dev.as_str(), attr.as_str(), r.time), v);
            }
        }
    }
    let times: Vec<(String, i64, Option<String>)> = times
        .into_iter()
        .map(|((d, t), m)| Ok((d.to_owned(), t, m.map(json_text).transpose()?)))
        .collect::<Result<_>>()?;
    if tx.backend == crate::Backend::Postgres {
        return write_reports_pg(tx, &times, &points, notices).await;
    }
    // Numbers and texts go in separate statements so that no value parameter is ever
    // NULL: sqlx 0.9's Any driver sends a NULL `f64` as `float4`, and a statement prepared
    // with that type then rejects the next call's real `f64`.
    let (nums, txts): (Vec<_>, Vec<_>) = points
        .into_iter()
        .partition(|(_, v)| matches!(v, Stored::Num(_)));
    let mut parts: Vec<Part<'_>> = chunks(&times).into_iter().map(Part::Reports).collect();
    for (column, other, rows) in [("num", "txt", &nums), ("txt", "num", &txts)] {
        parts.extend(chunks(rows).into_iter().map(|rows| Part::Points {
            column,
            other,
            rows,
        }));
    }
    if parts.is_empty() {
        return Ok(());
    }
    let mut sql = String::new();
    for part in &parts {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&part.sql(None));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for part in &parts {
        q = part.bind(q);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The one statement of a PostgreSQL write: the reports, the points and the change notices,
/// each list a JSON array in one parameter, so the text is the same whatever a write holds
/// (prepared once per connection) and a batch costs one round trip. Writable CTEs run
/// exactly once whether or not they are referenced; their foreign-key checks run at the end
/// of the statement. A point has `n` (a number) or `s` (a text), the other NULL (which JSON
/// can say, where a NULL parameter could not be typed).
const PG_WRITE: &str = "WITH r AS (\
    INSERT INTO device_reports (device_id, time, meta) \
    SELECT d, t, m FROM json_to_recordset($1::json) AS x(d text, t bigint, m text) \
    ON CONFLICT (device_id, time) DO UPDATE \
    SET meta = COALESCE(excluded.meta, device_reports.meta)), \
    p AS (\
    INSERT INTO device_points (device_id, attribute, time, num, txt) \
    SELECT d, a, t, n, s FROM json_to_recordset($2::json) \
    AS x(d text, a text, t bigint, n double precision, s text) \
    ON CONFLICT (device_id, attribute, time) DO UPDATE \
    SET num = excluded.num, txt = excluded.txt) \
    SELECT count(pg_notify($3, c)) FROM json_array_elements_text($4::json) AS c";

/// A row of [`PG_WRITE`]'s points.
#[derive(serde::Serialize)]
struct PgPoint<'a> {
    d: &'a str,
    a: &'a str,
    t: i64,
    n: Option<PgNumber>,
    s: Option<&'a str>,
}

/// A number as [`PG_WRITE`] reads it: JSON has no NaN or infinities (the attribute rules
/// refuse them, but a value is never silently changed here), so those go as the text
/// PostgreSQL's `double precision` reads.
struct PgNumber(f64);

impl serde::Serialize for PgNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            n if n.is_finite() => s.serialize_f64(n),
            n if n.is_nan() => s.serialize_str("NaN"),
            n if n > 0.0 => s.serialize_str("Infinity"),
            _ => s.serialize_str("-Infinity"),
        }
    }
}

async fn write_reports_pg(
    tx: &mut crate::WriteTx,
    times: &[(String, i64, Option<String>)],
    points: &BTreeMap<(&str, &str, i64), &Stored>,
    notices: &[Change],
) -> Result<()> {
    #[derive(serde::Serialize)]
    struct PgReport<'a> {
        d: &'a str,
        t: i64,
        m: Option<&'a str>,
    }
    let reports: Vec<PgReport<'_>> = times
        .iter()
        .map(|(d, t, m)| PgReport {
            d,
            t: *t,
            m: m.as_deref(),
        })
        .collect();
    let points: Vec<PgPoint<'_>> = points
        .iter()
        .map(|((d, a, t), v)| PgPoint {
            d,
            a,
            t: *t,
            n: match v {
                Stored::Num(n) => Some(PgNumber(*n)),
                Stored::Txt(_) => None,
            },
            s: match v {
                Stored::Num(_) => None,
                Stored::Txt(s) => Some(s),
            },
        })
        .collect();
    let notices: Vec<String> = notices.iter().map(Change::to_string).collect();
    sqlx::query(PG_WRITE)
        .bind(json_text(&reports)?)
        .bind(json_text(&points)?)
        .bind(crate::notify::CHANNEL)
        .bind(json_text(&notices)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn rows_are_cut_into_fixed_sizes_in_order_without_loss() {
        for n in [0usize, 1, 3, 4, 17, 100, 1000, 1024, 1600, 5000] {
            let rows: Vec<usize> = (0..n).collect();
            let cut = chunks(&rows);
            assert_eq!(cut.concat(), rows, "{n} rows");
            assert!(cut.iter().all(|c| super::CHUNK_ROWS.contains(&c.len())));
        }
        assert_eq!(
            chunks(&[0u8; 1600])
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>(),
            vec![1024, 256, 256, 64]
        );
    }
}

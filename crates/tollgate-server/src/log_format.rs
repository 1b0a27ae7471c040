//! The text log line, formatted cheaply.
//!
//! The same shape as `tracing_subscriber`'s default ("full") format without colour:
//! `2026-12-02T00:39:07.664139Z  INFO target: message key=value …`, with the spans in scope
//! before the target as `name{fields}:`. It is formatted for every request, so it avoids what
//! the profile showed the default format spending: the calendar date is worked out once per
//! second per thread (not per line), and integers, floats, booleans and strings are written
//! without going through `Debug`. A terminal keeps the default, coloured format (`main.rs`).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter (see the module's documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainText;

/// The field formatter: `key=value` separated by spaces, the message bare and first.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainFields;

thread_local! {
    /// The second last formatted on this thread and its text, `2026-12-02T00:39:07`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-02T00:39:07.664139Z` for `now`.
fn write_time(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let at = chrono::DateTime::<chrono::Utc>::from(
                UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            cell.1.clear();
            let _ = write!(cell.1, "{}", at.format("%Y-%m-%dT%H:%M:%S"));
            cell.0 = secs;
        }
        w.write_str(&cell.1)
    })?;
    let micros = since.subsec_micros();
    let mut digits = itoa::Buffer::new();
    let d = digits.format(micros);
    w.write_char('.')?;
    for _ in d.len()..6 {
        w.write_char('0')?;
    }
    w.write_str(d)?;
    w.write_char('Z')
}

fn level_text(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write_time(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        writer.write_str(level_text(meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// Writes the separator and `key=` (nothing for the message), then the value.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let w = &mut self.writer;
        self.result = (|| {
            if !self.first {
                w.write_char(' ')?;
            }
            let name = field.name();
            if name != "message" {
                // `r#type` is written `type`, as the default format does.
                w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                w.write_char('=')?;
            }
            value(w)
        })();
        self.first = false;
    }
}

impl Visit for Visitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |w| w.write_str(ryu::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The message bare; other strings quoted, as the default format does.
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn times_are_written_like_rfc_3339_with_microseconds() {
        let mut s = String::new();
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_170_747_000_042);
        write_time(&mut s, t).unwrap();
        assert_eq!(s, "2026-12-02T00:19:07.000042Z");
        // The same second again, from the cache, and the next one.
        s.clear();
        write_time(&mut s, t + std::time::Duration::from_micros(900_000)).unwrap();
        assert_eq!(s, "2026-12-02T00:19:07.900042Z");
        s.clear();
        write_time(&mut s, t + std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(s, "2026-12-02T00:19:08.000042Z");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs, formatted by `PlainText` (or by the default format, without colour).
    fn logged(plain: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .with_writer(move || w.clone());
        if plain {
            let subscriber = builder
                .event_format(PlainText)
                .fmt_fields(PlainFields)
                .finish();
            tracing::subscriber::with_default(subscriber, f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// Everything after the timestamp, which differs between two runs.
    fn after_time(line: &str) -> &str {
        line.split_once('Z').unwrap().1
    }

    #[test]
    fn lines_read_as_the_default_format_does() {
        let log = |plain| {
            logged(plain, || {
                let method = "GET";
                tracing::info!(target: "tollgate::request", %method, route = %"/applications/{applicationId}", status = 200u64, latency_ms = 0.25f64, ok = true, delta = -3i64, "request");
                tracing::warn!(error = "disk \"full\"", "could not write");
                let span = tracing::debug_span!("request", path = "/x");
                let _e = span.enter();
                tracing::error!(id = ?Some(7), "inside");
            })
        };
        let (plain, default) = (log(true), log(false));
        let plain: Vec<&str> = plain.lines().map(after_time).collect();
        let default: Vec<&str> = default.lines().map(after_time).collect();
        assert_eq!(plain, default);
        assert_eq!(
            plain[0],
            "  INFO tollgate::request: request method=GET route=/applications/{applicationId} status=200 latency_ms=0.25 ok=true delta=-3"
        );
        assert!(plain[2].contains("request{path=\"/x\"}:"), "{}", plain[2]);
    }
}

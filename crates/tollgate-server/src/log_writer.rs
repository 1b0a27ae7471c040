//! Standard error, written in batches by a thread of its own.
//!
//! The server logs one line per request. Handing each line to a writer thread through a
//! channel (what `tracing-appender`'s non-blocking writer does) costs, per line, a wake-up of
//! that thread, its `sched_yield`s while it spins for the next line, and about one `write`
//! system call: measured with `strace -c` under `device.get` load, 0.45 `sched_yield` and 0.5
//! `write` per request, together more system time than the request's own socket write.
//! Here a line is appended to a shared buffer under a lock held for one copy, and the thread
//! writes the buffer out every [`INTERVAL`] (or as soon as it holds [`HIGH_WATER`] bytes):
//! about 20 system calls a second, whatever the request rate.
//!
//! Nothing is dropped: past [`CAP`] bytes waiting, a logger waits until the thread has
//! written. Dropping the [`Guard`] writes what is left; a process killed with `SIGKILL` loses
//! at most the last [`INTERVAL`] of lines (as with any buffered writer).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// The buffer is written out early once it holds this much.
pub const HIGH_WATER: usize = 256 * 1024;
/// Loggers wait while this much is waiting to be written (the sink is slower than the logs).
pub const CAP: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer thread early (high water, or closing).
    wake: Condvar,
    /// Wakes loggers waiting for room.
    drained: Condvar,
}

impl Shared {
    /// The lock, even if a logger panicked while holding it: the buffer is plain bytes, and
    /// a half-appended line is better written than lost with everything after it.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer handed to `tracing_subscriber` (cheap to clone).
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes what is left and stops the thread.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A batched writer over `sink` and the guard of its thread.
pub fn batched<W: Write + Send + 'static>(sink: W) -> io::Result<(BatchedWriter, Guard)> {
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("tollgate-log".into())
        .spawn(move || run(&for_thread, sink))?;
    Ok((
        BatchedWriter {
            shared: shared.clone(),
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run<W: Write>(shared: &Shared, mut sink: W) {
    let mut spare = Vec::new();
    loop {
        let closed = {
            let mut p = shared.lock();
            if !p.closed && p.bytes.len() < HIGH_WATER {
                p = shared
                    .wake
                    .wait_timeout(p, INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut p.bytes, &mut spare);
            p.closed
        };
        shared.drained.notify_all();
        if !spare.is_empty() {
            // A log that cannot be written (standard error closed) has nowhere to say so.
            let _ = sink.write_all(&spare).and_then(|()| sink.flush());
            spare.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl BatchedWriter {
    fn append(&self, line: &[u8]) {
        let mut p = self.shared.lock();
        while p.bytes.len() >= CAP && !p.closed {
            self.shared.wake.notify_one();
            p = self
                .shared
                .drained
                .wait(p)
                .unwrap_or_else(|e| e.into_inner());
        }
        p.bytes.extend_from_slice(line);
        if p.bytes.len() >= HIGH_WATER {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;
    fn make_writer(&'a self) -> BatchedWriter {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, counting the writes it received.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_and_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = batched(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[t],
                "lines of one thread in order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [10_000; 4], "no line lost");
        assert!(writes < 1_000, "40,000 lines took {writes} writes");
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_more_logging() {
        let sink = Sink::default();
        let (mut writer, _guard) = batched(sink.clone()).unwrap();
        writer.write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }

    #[test]
    fn a_logger_waits_for_room_past_the_cap_and_loses_nothing() {
        /// A sink slower than the logger.
        #[derive(Clone, Default)]
        struct Slow(Arc<Mutex<usize>>);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(2));
                *self.0.lock().unwrap() += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Slow::default();
        let (mut writer, guard) = batched(sink.clone()).unwrap();
        let line = [b'x'; 1024];
        for _ in 0..(3 * CAP / line.len()) {
            writer.write_all(&line).unwrap();
            assert!(writer.shared.lock().bytes.len() <= CAP + line.len());
        }
        drop(guard);
        assert_eq!(*sink.0.lock().unwrap(), 3 * CAP);
    }
}

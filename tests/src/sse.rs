//! A Server-Sent Events client for the tests: reads a live stream on a thread of its own and
//! hands over each event as it arrives, so a test can say how long one took and whether the
//! stream ended. [`SseStream::message`] reconnects a stream that ended, with the last id it saw,
//! as a browser's `EventSource` does.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One event of a stream: its id and its data, parsed as JSON (`Value::Null` for an event with
/// an id alone).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub data: Value,
    pub at: Instant,
}

/// An open stream, or the error answer that came instead.
pub struct SseStream {
    pub status: u16,
    pub content_type: String,
    events: Receiver<SseEvent>,
    /// The last id the stream sent, as a browser keeps it for `Last-Event-ID`.
    pub last_id: Option<u64>,
    pub opened: Instant,
    /// How many times [`SseStream::message`] reconnected it.
    pub reconnects: usize,
    /// Where it was opened and with what headers (`Last-Event-ID` aside), to reconnect.
    base: String,
    path: String,
    headers: Vec<(String, String)>,
}

/// What waiting on a stream gave.
#[derive(Debug)]
pub enum Next {
    Event(SseEvent),
    TimedOut,
    Ended,
}

impl SseStream {
    /// Opens `GET base + path` with a bearer token and, when given, `Last-Event-ID`.
    pub fn open(base: &str, path: &str, token: &str, last_event_id: Option<u64>) -> SseStream {
        let mut headers = vec![("authorization", format!("Bearer {token}"))];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id.to_string()));
        }
        SseStream::open_with(base, path, &headers)
    }

    /// Opens `GET base + path` with these headers alone, as a browser's `EventSource` does
    /// (which sends none of its own choosing).
    pub fn open_with(base: &str, path: &str, headers: &[(&str, String)]) -> SseStream {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req = agent.get(format!("{base}{path}")).header("accept", "text/event-stream");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let last_event_id = headers.iter().find(|(n, _)| *n == "last-event-id").and_then(|(_, v)| v.parse().ok());
        let opened = Instant::now();
        let response = req.call().expect("the stream's request");
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let (tx, events) = channel();
        let reader = BufReader::new(response.into_body().into_reader());
        std::thread::spawn(move || {
            let (mut id, mut data) = (None, String::new());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if id.is_some() || !data.is_empty() {
                        let data = if data.is_empty() { Value::Null } else { serde_json::from_str(&data).unwrap_or(Value::String(data.clone())) };
                        if tx.send(SseEvent { id: id.take(), data, at: Instant::now() }).is_err() {
                            return;
                        }
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
        });
        let headers = headers.iter().filter(|(n, _)| *n != "last-event-id").map(|(n, v)| (n.to_string(), v.clone())).collect();
        SseStream { status, content_type, events, last_id: last_event_id, opened, reconnects: 0, base: base.to_owned(), path: path.to_owned(), headers }
    }

    /// The next event within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Next {
        match self.events.recv_timeout(timeout) {
            Ok(event) => {
                if event.id.is_some() {
                    self.last_id = event.id;
                }
                Next::Event(event)
            }
            Err(RecvTimeoutError::Timeout) => Next::TimedOut,
            Err(RecvTimeoutError::Disconnected) => Next::Ended,
        }
    }

    /// The next message (an event with data) within `timeout`, or `None`. A stream that ends
    /// (they are bounded) is opened again after the last id it sent.
    pub fn message(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Next::Event(e) if !e.data.is_null() => return Some(e),
                Next::Event(_) => {}
                Next::TimedOut => return None,
                Next::Ended => {
                    let mut headers: Vec<(&str, String)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
                    if let Some(id) = self.last_id {
                        headers.push(("last-event-id", id.to_string()));
                    }
                    let again = SseStream::open_with(&self.base, &self.path, &headers);
                    if again.status != 200 {
                        return None;
                    }
                    self.events = again.events;
                    self.reconnects += 1;
                }
            }
        }
    }
}

//! The embedded stand-in for Redis pub/sub: a durable log in SQLite. A publish is committed
//! before it returns, with one delivery per subscribed component; each subscriber gets its
//! channel's messages in order, at least once, with retries and capped backoff. How long a
//! failing message is retried depends on why it failed ([`Failure`]): a poison message moves to
//! the dead letters at once, a transient failure is retried for as long as the policy's window,
//! and a fault (a trap, an unexplained error) for a number of attempts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{Notify, watch};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    published_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    faults INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_subscriber ON deliveries (subscriber, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    subscriber TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    published_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    last_error TEXT
);
";

/// Columns added after the first release; added to an older log on open.
const UPGRADES: &[(&str, &str)] = &[
    ("faults", "ALTER TABLE deliveries ADD COLUMN faults INTEGER NOT NULL DEFAULT 0"),
    ("first_failed_at", "ALTER TABLE deliveries ADD COLUMN first_failed_at INTEGER"),
];

/// Why a delivery failed, which decides how long it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The subscriber says the message can never succeed: dead-lettered at once.
    Poison(String),
    /// Something it depends on is unavailable (a busy database, a full instance pool, a
    /// timeout): retried for the policy's whole window, however many attempts that takes.
    Transient(String),
    /// The subscriber failed without saying why (a trap, an unmarked error): retried up to the
    /// policy's attempts, since it may well fail the same way every time.
    Fault(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Poison(e) => write!(f, "poison: {e}"),
            Failure::Transient(e) => write!(f, "transient: {e}"),
            Failure::Fault(e) => write!(f, "fault: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Faults before a message is dead-lettered (the first delivery counts).
    pub max_attempts: u32,
    /// Wait after the first failure; doubles each time, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long transient failures are retried, from the message's first failure.
    pub retry_for: Duration,
}

impl Default for RetryPolicy {
    /// What the host runs with unless told otherwise: faults get 5 attempts; transient failures
    /// are retried for 15 minutes (a message blocks its channel meanwhile), backing off from
    /// 200 ms to at most 30 s between attempts.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(30), retry_for: Duration::from_secs(900) }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub faults: u32,
    pub first_failed_at: Option<i64>,
    pub published_at: i64,
}

#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub subscriber: String,
    pub channel: String,
    /// The payload as text when it is UTF-8, else base16.
    pub payload: String,
    pub attempts: u32,
    pub published_at: i64,
    pub failed_at: i64,
    pub last_error: Option<String>,
}

pub struct MessageLog {
    conn: Mutex<Connection>,
    /// channel -> subscribed components
    subscriptions: HashMap<String, Vec<String>>,
    wakeups: HashMap<String, Arc<Notify>>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

impl MessageLog {
    pub fn open(path: &Path, subscriptions: &[(String, String)]) -> Result<MessageLog> {
        // WAL with synchronous=NORMAL (set by `open`): a committed publish survives the host
        // being killed; only an OS crash can lose the last commits, as with the app's database.
        let conn = crate::sqlite::open(path, &[SCHEMA])?;
        for (column, alter) in UPGRADES {
            let present: bool = conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('deliveries') WHERE name = ?", [column], |r| r.get(0))?;
            if !present {
                conn.execute_batch(alter).with_context(|| format!("upgrading {}", path.display()))?;
            }
        }
        let mut subs: HashMap<String, Vec<String>> = HashMap::new();
        let mut wakeups = HashMap::new();
        for (channel, component) in subscriptions {
            subs.entry(channel.clone()).or_default().push(component.clone());
            wakeups.entry(component.clone()).or_insert_with(|| Arc::new(Notify::new()));
        }
        Ok(MessageLog { conn: Mutex::new(conn), subscriptions: subs, wakeups })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `payload` for every subscriber of `channel`; durable when it returns. A channel
    /// nobody subscribes to drops the message, as Redis pub/sub does.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> Result<()> {
        let Some(subscribers) = self.subscriptions.get(channel) else { return Ok(()) };
        let now = now_ms();
        {
            let mut conn = self.conn();
            let tx = conn.transaction().context("starting a publish")?;
            for s in subscribers {
                tx.prepare_cached("INSERT INTO deliveries (subscriber, channel, payload, published_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)")?
                    .execute(params![s, channel, payload, now, now])?;
            }
            tx.commit().context("committing a publish")?;
        }
        for s in subscribers {
            if let Some(n) = self.wakeups.get(s) {
                n.notify_one();
            }
        }
        Ok(())
    }

    /// The oldest undelivered message for `subscriber`.
    pub fn next(&self, subscriber: &str) -> Result<Option<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, channel, payload, attempts, next_attempt_at, faults, first_failed_at, published_at FROM deliveries WHERE subscriber = ? ORDER BY id LIMIT 1",
        )?;
        Ok(stmt
            .query_row([subscriber], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    payload: r.get(2)?,
                    attempts: r.get(3)?,
                    next_attempt_at: r.get(4)?,
                    faults: r.get(5)?,
                    first_failed_at: r.get(6)?,
                    published_at: r.get(7)?,
                })
            })
            .optional()?)
    }

    pub fn ack(&self, id: i64) -> Result<()> {
        self.conn().prepare_cached("DELETE FROM deliveries WHERE id = ?")?.execute([id])?;
        Ok(())
    }

    /// Records a failed attempt: schedules a retry, or moves the message to the dead letters
    /// when `failure` says it can never succeed or it has failed for long enough. Returns true
    /// when it was dead-lettered.
    pub fn fail(&self, d: &Delivery, failure: &Failure, policy: &RetryPolicy) -> Result<bool> {
        let attempts = d.attempts + 1;
        let now = now_ms();
        let first_failed_at = d.first_failed_at.unwrap_or(now);
        let faults = d.faults + u32::from(matches!(failure, Failure::Fault(_)));
        let dead = match failure {
            Failure::Poison(_) => true,
            Failure::Fault(_) => faults >= policy.max_attempts,
            Failure::Transient(_) => now - first_failed_at >= policy.retry_for.as_millis() as i64,
        };
        let error = failure.to_string();
        let mut conn = self.conn();
        if dead {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO dead_letters (id, subscriber, channel, payload, published_at, attempts, failed_at, last_error)
                 SELECT id, subscriber, channel, payload, published_at, ?, ?, ? FROM deliveries WHERE id = ?",
                params![attempts, now, error, d.id],
            )?;
            tx.execute("DELETE FROM deliveries WHERE id = ?", [d.id])?;
            tx.commit()?;
            return Ok(true);
        }
        let next = now + policy.backoff(attempts).as_millis() as i64;
        conn.execute(
            "UPDATE deliveries SET attempts = ?, faults = ?, first_failed_at = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            params![attempts, faults, first_failed_at, next, error, d.id],
        )?;
        Ok(false)
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, subscriber, channel, payload, attempts, published_at, failed_at, last_error FROM dead_letters ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let payload: Vec<u8> = r.get(3)?;
            Ok(DeadLetter {
                id: r.get(0)?,
                subscriber: r.get(1)?,
                channel: r.get(2)?,
                payload: String::from_utf8(payload.clone()).unwrap_or_else(|_| payload.iter().map(|b| format!("{b:02x}")).collect()),
                attempts: r.get(4)?,
                published_at: r.get(5)?,
                failed_at: r.get(6)?,
                last_error: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves dead letters back to the end of their subscriber's queue with a fresh attempt count
    /// (all of them, or the one with `id`). Returns how many moved. A running host picks them up
    /// within [`IDLE_POLL`] (another process may have redriven them), or at once when it redrove
    /// them itself.
    pub fn redrive(&self, id: Option<i64>) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let moved = tx.execute(
            "INSERT INTO deliveries (subscriber, channel, payload, published_at, next_attempt_at)
             SELECT subscriber, channel, payload, published_at, ? FROM dead_letters WHERE ?2 IS NULL OR id = ?2 ORDER BY id",
            params![now, id],
        )?;
        tx.execute("DELETE FROM dead_letters WHERE ?1 IS NULL OR id = ?1", params![id])?;
        tx.commit()?;
        for wakeup in self.wakeups.values() {
            wakeup.notify_one();
        }
        Ok(moved)
    }

    pub fn dead_letter_count(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?)
    }

    pub fn pending(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))?)
    }

    fn wakeup(&self, subscriber: &str) -> Arc<Notify> {
        self.wakeups.get(subscriber).cloned().unwrap_or_default()
    }
}

/// How often an idle dispatcher looks at the log without being woken: messages queued by
/// another process (`gocoffee-host redrive`) are picked up this soon.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// Delivers `subscriber`'s messages one at a time, in order, until `shutdown` turns true. The
/// message in hand is finished (or left for redelivery) before it stops.
pub async fn dispatch<F, Fut>(log: Arc<MessageLog>, subscriber: String, policy: RetryPolicy, mut shutdown: watch::Receiver<bool>, invoke: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let wakeup = log.wakeup(&subscriber);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = {
            let log = log.clone();
            let subscriber = subscriber.clone();
            tokio::task::spawn_blocking(move || log.next(&subscriber)).await
        };
        let delivery = match next {
            Ok(Ok(Some(d))) => d,
            Ok(Ok(None)) => {
                tokio::select! {
                    _ = wakeup.notified() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(%subscriber, error = %format!("{e:#}"), "reading the message log failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(%subscriber, error = %e, "message log task failed");
                return;
            }
        };
        let wait = delivery.next_attempt_at - now_ms();
        if wait > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let started = std::time::Instant::now();
        let waited_ms = now_ms() - delivery.published_at;
        let tracer = crate::otlp::tracer();
        let span = tracer.enabled().then(|| crate::otlp::delivery(&subscriber, &delivery.channel, &delivery.payload));
        let result = invoke(delivery.payload.clone()).await;
        if let Some(mut span) = span {
            span.attribute("messaging.message.id", delivery.id);
            span.attribute("gocoffee.delivery.attempt", delivery.attempts + 1);
            span.error = result.is_err();
            tracer.finish(span);
        }
        let log2 = log.clone();
        let outcome = match result {
            Ok(()) => {
                tracing::info!(%subscriber, channel = %delivery.channel, id = delivery.id, attempt = delivery.attempts + 1, ms = started.elapsed().as_millis() as u64, "delivered");
                crate::metrics::delivery(&subscriber, &delivery.channel, "delivered", waited_ms);
                tokio::task::spawn_blocking(move || log2.ack(delivery.id).map(|_| ())).await
            }
            Err(failure) => {
                let d = delivery.clone();
                let recorded = failure.clone();
                let dead = tokio::task::spawn_blocking(move || log2.fail(&d, &recorded, &policy)).await;
                match &dead {
                    Ok(Ok(true)) => {
                        tracing::error!(%subscriber, id = delivery.id, attempts = delivery.attempts + 1, error = %failure, "dead-lettered");
                        crate::metrics::delivery(&subscriber, &delivery.channel, "dead_lettered", waited_ms);
                    }
                    _ => {
                        tracing::warn!(%subscriber, id = delivery.id, attempt = delivery.attempts + 1, error = %failure, "delivery failed; will retry");
                        crate::metrics::delivery(&subscriber, &delivery.channel, "retried", waited_ms);
                    }
                }
                dead.map(|r| r.map(|_| ()))
            }
        };
        if let Err(e) | Ok(Err(e)) = outcome.map_err(anyhow::Error::from) {
            tracing::error!(%subscriber, error = %format!("{e:#}"), "recording a delivery outcome failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gocoffee-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("log.db")
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, base_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(40), retry_for: Duration::from_secs(60) }
    }

    fn fault() -> Failure {
        Failure::Fault("boom".into())
    }

    /// A dispatcher for subscriber `s` running in the background, as `up` runs one.
    struct Running {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start_dispatcher<F, Fut>(log: &Arc<MessageLog>, policy: RetryPolicy, invoke: F) -> Running
    where
        F: Fn(Vec<u8>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
    {
        let (stop, shutdown) = watch::channel(false);
        Running { stop, task: tokio::spawn(dispatch(log.clone(), "s".into(), policy, shutdown, invoke)) }
    }

    impl Running {
        /// Waits until `done` holds or `limit` passes, then stops the dispatcher.
        async fn stop_when(self, limit: Duration, done: impl Fn() -> bool) {
            let deadline = std::time::Instant::now() + limit;
            while !done() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.stop.send(true).expect("stop");
            self.task.await.expect("dispatcher");
        }
    }

    #[test]
    fn by_default_transient_failures_are_retried_for_15_minutes_and_faults_5_times() {
        let p = RetryPolicy::default();
        assert_eq!(
            (p.retry_for, p.max_attempts, p.base_backoff, p.max_backoff),
            (Duration::from_secs(900), 5, Duration::from_millis(200), Duration::from_secs(30))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        assert_eq!([1, 2, 3, 4, 40].map(|n| p.backoff(n).as_millis()), [10, 20, 40, 40, 40]);
    }

    #[test]
    fn every_subscriber_gets_its_own_copy_in_order_and_unsubscribed_channels_drop() {
        let subs = [("orders".to_owned(), "a".to_owned()), ("orders".to_owned(), "b".to_owned())];
        let log = MessageLog::open(&temp("fanout"), &subs).expect("open");
        log.publish("orders", b"1").expect("publish");
        log.publish("orders", b"2").expect("publish");
        log.publish("nobody", b"x").expect("publish");
        assert_eq!(log.pending().expect("count"), 4);
        let first = log.next("a").expect("next").expect("message");
        assert_eq!(first.payload, b"1");
        log.ack(first.id).expect("ack");
        assert_eq!(log.next("a").expect("next").map(|d| d.payload), Some(b"2".to_vec()));
        assert_eq!(log.next("b").expect("next").map(|d| d.payload), Some(b"1".to_vec()));
    }

    #[test]
    fn published_messages_survive_reopening() {
        let path = temp("durable");
        let subs = [("c".to_owned(), "s".to_owned())];
        MessageLog::open(&path, &subs).expect("open").publish("c", b"kept").expect("publish");
        let reopened = MessageLog::open(&path, &subs).expect("reopen");
        assert_eq!(reopened.next("s").expect("next").map(|d| d.payload), Some(b"kept".to_vec()));
    }

    #[test]
    fn a_message_that_keeps_faulting_is_dead_lettered_after_max_attempts() {
        let subs = [("c".to_owned(), "s".to_owned())];
        let log = MessageLog::open(&temp("dlq"), &subs).expect("open");
        log.publish("c", b"poison").expect("publish");
        for attempt in 1..=3 {
            let d = log.next("s").expect("next").expect("message");
            assert_eq!(d.attempts, attempt - 1);
            assert_eq!(log.fail(&d, &fault(), &policy()).expect("fail"), attempt == 3);
        }
        assert!(log.next("s").expect("next").is_none());
        let dead = log.dead_letters().expect("list");
        assert_eq!((dead.len(), dead[0].payload.as_str(), dead[0].attempts, dead[0].last_error.as_deref()), (1, "poison", 3, Some("fault: boom")));

        // Once the cause is fixed, a redrive queues it again with a fresh attempt count.
        assert_eq!(log.redrive(Some(dead[0].id + 1)).expect("redrive"), 0);
        assert_eq!(log.redrive(None).expect("redrive"), 1);
        assert!(log.dead_letters().expect("list").is_empty());
        let again = log.next("s").expect("next").expect("requeued");
        assert_eq!((again.payload.as_slice(), again.attempts), (&b"poison"[..], 0));
    }

    #[test]
    fn a_poison_message_is_dead_lettered_at_once_and_transient_failures_only_after_the_window() {
        let subs = [("c".to_owned(), "s".to_owned())];
        let log = MessageLog::open(&temp("classes"), &subs).expect("open");
        log.publish("c", b"bad").expect("publish");
        let d = log.next("s").expect("next").expect("message");
        assert!(log.fail(&d, &Failure::Poison("not an event".into()), &policy()).expect("fail"));

        // Timed from before the first failure, which the log measures the window from.
        let started = std::time::Instant::now();
        log.publish("c", b"waits").expect("publish");
        let window = RetryPolicy { retry_for: Duration::from_millis(300), ..policy() };
        let mut attempts = 0;
        loop {
            let d = log.next("s").expect("next").expect("still queued");
            attempts += 1;
            if log.fail(&d, &Failure::Transient("database is locked".into()), &window).expect("fail") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The log keeps whole milliseconds, so its 300 can be 299.x of real time.
        assert!(started.elapsed() >= Duration::from_millis(299), "kept for the whole window: {:?}", started.elapsed());
        assert!(attempts > window.max_attempts as usize, "transient failures don't count as faults: {attempts}");
        let dead = log.dead_letters().expect("list");
        assert_eq!(dead.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(), ["bad", "waits"]);
        assert_eq!(dead[0].last_error.as_deref(), Some("poison: not an event"));
    }

    #[test]
    fn an_older_log_gains_the_new_columns_on_open() {
        let path = temp("upgrade");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, subscriber TEXT NOT NULL, channel TEXT NOT NULL, payload BLOB NOT NULL,
             published_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL, last_error TEXT);
             INSERT INTO deliveries (subscriber, channel, payload, published_at, next_attempt_at) VALUES ('s', 'c', x'6f6c64', 0, 0);",
        )
        .expect("old schema");
        drop(conn);
        let log = MessageLog::open(&path, &[("c".to_owned(), "s".to_owned())]).expect("upgrades");
        let d = log.next("s").expect("next").expect("message");
        assert_eq!((d.payload.as_slice(), d.faults, d.first_failed_at), (&b"old"[..], 0, None));
    }

    /// With the default policy, a dependency that is down for several seconds (longer than the
    /// old 5 attempts at 200 ms doubling, about 3 s) delays the message instead of losing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transient_outage_longer_than_the_attempts_delays_a_message_but_does_not_dead_letter_it() {
        let subs = [("c".to_owned(), "s".to_owned())];
        let log = Arc::new(MessageLog::open(&temp("outage"), &subs).expect("open"));
        log.publish("c", b"OrderPlaced").expect("publish");
        let policy = RetryPolicy::default();
        let outage_ends = std::time::Instant::now() + Duration::from_millis(4_500);
        let tries = Arc::new(Mutex::new(0u32));
        let counted = tries.clone();
        let running = start_dispatcher(&log, policy, move |_| {
            *counted.lock().expect("lock") += 1;
            let outcome = if std::time::Instant::now() < outage_ends { Err(Failure::Transient("database is locked".into())) } else { Ok(()) };
            async move { outcome }
        });
        running.stop_when(Duration::from_secs(30), || log.pending().expect("count") == 0).await;
        assert_eq!(log.pending().expect("count"), 0, "delivered once the outage ended");
        assert!(log.dead_letters().expect("list").is_empty());
        assert!(*tries.lock().expect("lock") > policy.max_attempts, "retried past the attempt limit");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_redriven_by_another_process_is_delivered_without_a_new_publish() {
        let path = temp("redrive");
        let subs = [("c".to_owned(), "s".to_owned())];
        let log = Arc::new(MessageLog::open(&path, &subs).expect("open"));
        log.publish("c", b"once-poison").expect("publish");
        let d = log.next("s").expect("next").expect("message");
        log.fail(&d, &Failure::Poison("x".into()), &policy()).expect("dead-lettered");
        let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let recorded = seen.clone();
        let running = start_dispatcher(&log, policy(), move |p| {
            recorded.lock().expect("lock").push(p);
            async { Ok(()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // `gocoffee-host redrive` is another process: its own connection, no wakeup to send.
        assert_eq!(MessageLog::open(&path, &[]).expect("cli").redrive(None).expect("redrive"), 1);
        running.stop_when(IDLE_POLL * 5, || !seen.lock().expect("lock").is_empty()).await;
        assert_eq!(*seen.lock().expect("lock"), [b"once-poison".to_vec()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dispatcher_retries_then_moves_on_keeping_order() {
        let subs = [("c".to_owned(), "s".to_owned())];
        let log = Arc::new(MessageLog::open(&temp("dispatch"), &subs).expect("open"));
        for m in ["ok-1", "bad", "ok-2"] {
            log.publish("c", m.as_bytes()).expect("publish");
        }
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let recorded = seen.clone();
        let running = start_dispatcher(&log, policy(), move |p| {
            let m = String::from_utf8(p).expect("utf8");
            recorded.lock().expect("lock").push(m.clone());
            let outcome = if m == "bad" { Err(Failure::Fault(format!("cannot handle {m}"))) } else { Ok(()) };
            async move { outcome }
        });
        running.stop_when(Duration::from_secs(10), || log.pending().expect("count") == 0).await;
        assert_eq!(*seen.lock().expect("lock"), ["ok-1", "bad", "bad", "bad", "ok-2"]);
        assert_eq!(log.dead_letters().expect("list").len(), 1);
    }
}

//! The host side of the Spin 2.0 interfaces components import: key-value and sqlite on SQLite
//! files, variables resolved at start-up, and Redis: the Redis trigger's own address is the
//! durable message log (publish feeds the trigger), any other address a real Redis server.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::runtime::HostState;
use crate::sqlite::Pool;

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-imports",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value@2.0.0.store": KvStore,
        "fermyon:spin/sqlite@2.0.0.connection": SqliteConnection,
        "fermyon:spin/redis@2.0.0.connection": RedisConnection,
        "spin:postgres/postgres@3.0.0.connection": crate::postgres::PgConnection,
    },
});

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "redis-trigger",
        exports: { default: async },
    });
}

pub mod cron {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "cron-trigger",
        exports: { default: async },
    });
}

use fermyon::spin2_0_0::{key_value, redis, sqlite, variables};

pub struct KvStore {
    pool: Arc<Pool>,
    conn: Option<rusqlite::Connection>,
}

pub struct SqliteConnection {
    pool: Arc<Pool>,
    conn: Option<rusqlite::Connection>,
}

pub enum RedisConnection {
    /// The trigger's address: publishing goes into the durable log the trigger reads.
    Log,
    /// Any other address: a real Redis server.
    Server(Box<::redis::aio::MultiplexedConnection>),
}

/// How long opening a connection to a real Redis server may take.
const REDIS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `(host, port)` of a `redis://` address, to tell the trigger's address from others however
/// each is spelt (`redis://localhost` is not `redis://127.0.0.1`: compared as written).
pub fn redis_endpoint(address: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(address).ok()?;
    Some((url.host_str()?.to_ascii_lowercase(), url.port().unwrap_or(6379)))
}

fn redis_error(e: ::redis::RedisError) -> redis::Error {
    if e.kind() == ::redis::ErrorKind::TypeError { redis::Error::TypeError } else { redis::Error::Other(e.to_string()) }
}

/// A reply as the interface's flat list of results (an array's items in order), as Spin gives it.
fn redis_results(value: ::redis::Value, out: &mut Vec<redis::RedisResult>) -> Result<(), redis::Error> {
    use ::redis::Value as V;
    match value {
        V::Nil => out.push(redis::RedisResult::Nil),
        V::Int(n) => out.push(redis::RedisResult::Int64(n)),
        V::BulkString(b) => out.push(redis::RedisResult::Binary(b)),
        V::SimpleString(s) => out.push(redis::RedisResult::Status(s)),
        V::Okay => out.push(redis::RedisResult::Status("OK".into())),
        V::Array(items) | V::Set(items) => {
            for item in items {
                redis_results(item, out)?;
            }
        }
        V::Double(d) => out.push(redis::RedisResult::Binary(d.to_string().into_bytes())),
        V::Boolean(b) => out.push(redis::RedisResult::Int64(i64::from(b))),
        V::BigNumber(n) => out.push(redis::RedisResult::Binary(n.to_string().into_bytes())),
        V::ServerError(e) => return Err(redis::Error::Other(format!("{e:?}"))),
        other => return Err(redis::Error::Other(format!("a reply of this kind can't be returned: {other:?}"))),
    }
    Ok(())
}

/// SQLite work that may wait (for the write lock, up to the busy timeout; for the disk): the
/// runtime moves this worker's other tasks to another thread first. That handoff costs more
/// than a short read takes, so reads that can't wait run in place ([`runs_in_place`]).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Whether a prepared statement can run on the async worker itself: it only reads, outside any
/// transaction. In WAL mode such a read takes no lock, so it never waits on another
/// connection. Writes, `BEGIN IMMEDIATE` (it waits for the write lock), `COMMIT` (it may
/// checkpoint) and everything inside a transaction go through [`blocking`]. (SQLite counts
/// transaction control as read-only, so it is told apart by its first word.) With reads in
/// place, `GET /api/v1/menu` flat out on two cores went from 2.04k to 2.34k req/s, p99 10.3
/// to 7.5 ms (A/B in one run).
fn runs_in_place(conn: &rusqlite::Connection, stmt: &rusqlite::Statement<'_>, sql: &str) -> bool {
    const CONTROL: [&str; 6] = ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"];
    let first_word = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or_default();
    conn.is_autocommit() && stmt.readonly() && !CONTROL.iter().any(|k| first_word.eq_ignore_ascii_case(k))
}

/// A connection from `pool`: an idle one in place, a new one (a file to open) where blocking
/// is allowed.
fn connection(pool: &Pool) -> anyhow::Result<rusqlite::Connection> {
    match pool.idle() {
        Some(conn) => Ok(conn),
        None => blocking(|| pool.get()),
    }
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        if !self.component.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        let pool = self.shared.kv.pool(&label);
        let conn = match connection(&pool) {
            Ok(c) => c,
            Err(e) => return Ok(Err(key_value::Error::Other(e.to_string()))),
        };
        Ok(Ok(self.table.push(KvStore { pool, conn: Some(conn) })?))
    }

    async fn get(&mut self, store: Resource<KvStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok((|| {
            let mut stmt = conn.prepare_cached("SELECT value FROM spin_key_value WHERE key = ?")?;
            let mut rows = stmt.query([&key])?;
            rows.next()?.map(|r| r.get::<_, Vec<u8>>(0)).transpose()
        })()
        .map_err(|e: rusqlite::Error| key_value::Error::Other(e.to_string())))
    }

    async fn set(&mut self, store: Resource<KvStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(blocking(|| {
            conn.prepare_cached("INSERT INTO spin_key_value (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(rusqlite::params![key, value])
                .map(drop)
        })
        .map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn delete(&mut self, store: Resource<KvStore>, key: String) -> wasmtime::Result<Result<(), key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(blocking(|| conn.prepare_cached("DELETE FROM spin_key_value WHERE key = ?")?.execute([key]).map(drop))
            .map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn exists(&mut self, store: Resource<KvStore>, key: String) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(conn
            .prepare_cached("SELECT 1 FROM spin_key_value WHERE key = ?")
            .and_then(|mut s| s.exists([key]))
            .map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn get_keys(&mut self, store: Resource<KvStore>) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok((|| {
            let mut stmt = conn.prepare_cached("SELECT key FROM spin_key_value ORDER BY key")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()
        })()
        .map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        let mut s = self.table.delete(store)?;
        if let Some(conn) = s.conn.take() {
            s.pool.put(conn);
        }
        Ok(())
    }
}

impl sqlite::Host for HostState {}

fn to_sql(v: sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        sqlite::Value::Integer(n) => V::Integer(n),
        sqlite::Value::Real(f) => V::Real(f),
        sqlite::Value::Text(s) => V::Text(s),
        sqlite::Value::Blob(b) => V::Blob(b),
        sqlite::Value::Null => V::Null,
    }
}

fn from_sql(v: rusqlite::types::Value) -> sqlite::Value {
    use rusqlite::types::Value as V;
    match v {
        V::Integer(n) => sqlite::Value::Integer(n),
        V::Real(f) => sqlite::Value::Real(f),
        V::Text(s) => sqlite::Value::Text(s),
        V::Blob(b) => sqlite::Value::Blob(b),
        V::Null => sqlite::Value::Null,
    }
}

/// Runs one statement as Spin's `execute` does: every row, with the column names. Where it could
/// wait, through [`blocking`].
pub fn execute(conn: &rusqlite::Connection, statement: &str, parameters: Vec<sqlite::Value>) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
    if runs_in_place(conn, &stmt, statement) { run(&mut stmt, parameters) } else { blocking(|| run(&mut stmt, parameters)) }
}

fn run(stmt: &mut rusqlite::CachedStatement<'_>, parameters: Vec<sqlite::Value>) -> rusqlite::Result<sqlite::QueryResult> {
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(parameters.into_iter().map(to_sql)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len()).map(|i| row.get::<_, rusqlite::types::Value>(i).map(from_sql)).collect::<rusqlite::Result<_>>()?;
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

impl sqlite::HostConnection for HostState {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<SqliteConnection>, sqlite::Error>> {
        if !self.component.sqlite_databases.contains(&database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        let pool = self.shared.sqlite.pool(&database);
        let conn = match connection(&pool) {
            Ok(c) => c,
            Err(e) => return Ok(Err(sqlite::Error::Io(e.to_string()))),
        };
        Ok(Ok(self.table.push(SqliteConnection { pool, conn: Some(conn) })?))
    }

    async fn execute(
        &mut self,
        conn: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let c = self.table.get(&conn)?;
        let Some(conn) = c.conn.as_ref() else { return Ok(Err(sqlite::Error::InvalidConnection)) };
        Ok(execute(conn, &statement, parameters).map_err(|e| sqlite::Error::Io(e.to_string())))
    }

    async fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        let mut c = self.table.delete(conn)?;
        if let Some(conn) = c.conn.take() {
            c.pool.put(conn);
        }
        Ok(())
    }
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !crate::manifest::valid_variable_name(&name) {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self.component.variables.get(&name).cloned().ok_or(variables::Error::Undefined(name)))
    }
}

impl redis::Host for HostState {}

const LOG_TAKES_PUBLISH_ONLY: &str = "this is the Redis trigger's address, which the local host serves from its embedded message log: publish only; \
     open another address (a real Redis server, listed in allowed_outbound_hosts) for data";

impl HostState {
    /// The real server behind `conn`, or why there is none.
    fn redis_server(&mut self, conn: &Resource<RedisConnection>) -> wasmtime::Result<Result<::redis::aio::MultiplexedConnection, redis::Error>> {
        Ok(match self.table.get(conn)? {
            RedisConnection::Server(c) => Ok((**c).clone()),
            RedisConnection::Log => Err(redis::Error::Other(LOG_TAKES_PUBLISH_ONLY.into())),
        })
    }
}

/// Runs one command on `conn`'s real server: the interface's error when there is none or the
/// command fails.
macro_rules! on_server {
    ($state:expr, $conn:expr, |$c:ident| $call:expr) => {{
        match $state.redis_server(&$conn)? {
            Ok(mut $c) => Ok($call.await.map_err(redis_error)),
            Err(e) => Ok(Err(e)),
        }
    }};
}

impl redis::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<RedisConnection>, redis::Error>> {
        if !self.component.allowed_hosts.allows_url(&address) {
            tracing::warn!(component = %self.component.id, %address, "redis address not in allowed_outbound_hosts");
            return Ok(Err(redis::Error::InvalidAddress));
        }
        let Some(endpoint) = redis_endpoint(&address) else { return Ok(Err(redis::Error::InvalidAddress)) };
        if self.shared.redis_log.contains(&endpoint) {
            return Ok(Ok(self.table.push(RedisConnection::Log)?));
        }
        let Ok(client) = ::redis::Client::open(address.as_str()) else { return Ok(Err(redis::Error::InvalidAddress)) };
        let connected = tokio::time::timeout(REDIS_CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await;
        match connected {
            Ok(Ok(c)) => Ok(Ok(self.table.push(RedisConnection::Server(Box::new(c)))?)),
            Ok(Err(e)) => Ok(Err(redis::Error::Other(format!("connecting to {}:{}: {e}", endpoint.0, endpoint.1)))),
            Err(_) => Ok(Err(redis::Error::Other(format!("connecting to {}:{} timed out", endpoint.0, endpoint.1)))),
        }
    }

    async fn publish(&mut self, conn: Resource<RedisConnection>, channel: String, payload: Vec<u8>) -> wasmtime::Result<Result<(), redis::Error>> {
        if let RedisConnection::Log = self.table.get(&conn)? {
            let log = self.shared.log.clone();
            return Ok(blocking(|| log.publish(&channel, &payload)).map_err(|e| redis::Error::Other(format!("{e:#}"))));
        }
        on_server!(self, conn, |c| ::redis::AsyncCommands::publish::<_, _, ()>(&mut c, &channel, &payload))
    }

    async fn get(&mut self, conn: Resource<RedisConnection>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::get::<_, Option<Vec<u8>>>(&mut c, &key))
    }

    async fn set(&mut self, conn: Resource<RedisConnection>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::set::<_, _, ()>(&mut c, &key, &value))
    }

    async fn incr(&mut self, conn: Resource<RedisConnection>, key: String) -> wasmtime::Result<Result<i64, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::incr::<_, _, i64>(&mut c, &key, 1))
    }

    async fn del(&mut self, conn: Resource<RedisConnection>, keys: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::del::<_, u32>(&mut c, &keys))
    }

    async fn sadd(&mut self, conn: Resource<RedisConnection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::sadd::<_, _, u32>(&mut c, &key, &values))
    }

    async fn smembers(&mut self, conn: Resource<RedisConnection>, key: String) -> wasmtime::Result<Result<Vec<String>, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::smembers::<_, Vec<String>>(&mut c, &key))
    }

    async fn srem(&mut self, conn: Resource<RedisConnection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        on_server!(self, conn, |c| ::redis::AsyncCommands::srem::<_, _, u32>(&mut c, &key, &values))
    }

    async fn execute(
        &mut self,
        conn: Resource<RedisConnection>,
        command: String,
        arguments: Vec<redis::RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<redis::RedisResult>, redis::Error>> {
        let mut cmd = ::redis::cmd(&command);
        for argument in arguments {
            match argument {
                redis::RedisParameter::Int64(n) => cmd.arg(n),
                redis::RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let reply: wasmtime::Result<Result<::redis::Value, redis::Error>> = on_server!(self, conn, |c| cmd.query_async::<::redis::Value>(&mut c));
        Ok(reply?.and_then(|value| {
            let mut out = Vec::new();
            redis_results(value, &mut out).map(|()| out)
        }))
    }

    async fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    // The interface, not the redis crate.
    use super::redis;
    use crate::log::MessageLog;
    use crate::runtime::{AllowedHosts, ComponentConfig, Runtime, Shared};
    use crate::sqlite::{KV_SCHEMA, Pools};

    fn runtime(name: &str) -> Arc<Runtime> {
        let dir = std::env::temp_dir().join(format!("gocoffee-host-spin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(MessageLog::open(&dir.join("log.db"), &[("orders".into(), "consumer".into())]).expect("log"));
        let shared = Arc::new(Shared {
            sqlite: Pools::new(dir.join("sqlite"), &[]),
            kv: Pools::new(dir.join("kv"), KV_SCHEMA),
            log,
            redis_log: vec![("127.0.0.1".into(), 6379)],
            pg: Default::default(),
            sockets: Default::default(),
            llm: Arc::new(crate::llm::Llm::new(dir.join("ai-models"), None).expect("llm")),
        });
        Runtime::without_components(crate::runtime::engine(4).expect("engine"), shared)
    }

    fn component() -> Arc<ComponentConfig> {
        Arc::new(ComponentConfig {
            id: "c".into(),
            allowed_hosts: AllowedHosts::parse(&["redis://127.0.0.1:6379".to_owned()]).expect("hosts"),
            key_value_stores: vec!["default".into()],
            sqlite_databases: vec!["default".into()],
            ai_models: vec![],
            variables: HashMap::from([("greeting".to_owned(), "hello".to_owned())]),
            environment: vec![],
        })
    }

    fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(r.rep())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_value_stores_keep_values_and_only_listed_stores_open() {
        use key_value::HostStore as Kv;
        let rt = runtime("kv");
        let mut store = rt.store(&component(), None);
        let s = store.data_mut();
        assert!(matches!(Kv::open(s, "secret-store".into()).await.expect("call"), Err(key_value::Error::AccessDenied)));
        let kv = Kv::open(s, "default".into()).await.expect("call").expect("opens");
        Kv::set(s, borrow(&kv), "b".into(), b"2".to_vec()).await.expect("call").expect("set");
        Kv::set(s, borrow(&kv), "a".into(), b"1".to_vec()).await.expect("call").expect("set");
        Kv::set(s, borrow(&kv), "a".into(), b"one".to_vec()).await.expect("call").expect("overwrite");
        assert_eq!(Kv::get(s, borrow(&kv), "a".into()).await.expect("call").expect("get"), Some(b"one".to_vec()));
        assert_eq!(Kv::get(s, borrow(&kv), "zzz".into()).await.expect("call").expect("get"), None);
        assert!(Kv::exists(s, borrow(&kv), "b".into()).await.expect("call").expect("exists"));
        assert_eq!(Kv::get_keys(s, borrow(&kv)).await.expect("call").expect("keys"), ["a", "b"]);
        Kv::delete(s, borrow(&kv), "b".into()).await.expect("call").expect("delete");
        assert!(!Kv::exists(s, borrow(&kv), "b".into()).await.expect("call").expect("exists"));
        Kv::drop(s, kv).await.expect("drop");

        // A new invocation sees what the last one wrote.
        let mut store = rt.store(&component(), None);
        let s = store.data_mut();
        let kv = Kv::open(s, "default".into()).await.expect("call").expect("opens");
        assert_eq!(Kv::get(s, borrow(&kv), "a".into()).await.expect("call").expect("get"), Some(b"one".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_runs_statements_with_typed_values_and_reports_constraint_failures() {
        use sqlite::HostConnection as Sql;
        let rt = runtime("sqlite");
        let mut store = rt.store(&component(), None);
        let s = store.data_mut();
        assert!(matches!(Sql::open(s, "other".into()).await.expect("call"), Err(sqlite::Error::AccessDenied)));
        let db = Sql::open(s, "default".into()).await.expect("call").expect("opens");
        Sql::execute(s, borrow(&db), "CREATE TABLE t (id INTEGER PRIMARY KEY, r REAL, s TEXT, b BLOB, n TEXT)".into(), vec![])
            .await
            .expect("call")
            .expect("create");
        let row =
            vec![sqlite::Value::Integer(7), sqlite::Value::Real(1.5), sqlite::Value::Text("x".into()), sqlite::Value::Blob(vec![0, 1]), sqlite::Value::Null];
        Sql::execute(s, borrow(&db), "INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(), row.clone()).await.expect("call").expect("insert");
        let result = Sql::execute(s, borrow(&db), "SELECT * FROM t WHERE id = ?".into(), vec![sqlite::Value::Integer(7)]).await.expect("call").expect("select");
        assert_eq!(result.columns, ["id", "r", "s", "b", "n"]);
        assert_eq!(result.rows.len(), 1);
        assert!(matches!(
            result.rows[0].values.as_slice(),
            [sqlite::Value::Integer(7), sqlite::Value::Real(_), sqlite::Value::Text(_), sqlite::Value::Blob(_), sqlite::Value::Null]
        ));
        // The guest tells conflicts from faults by SQLite's own wording.
        match Sql::execute(s, borrow(&db), "INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(), row).await.expect("call") {
            Err(sqlite::Error::Io(message)) => assert!(message.contains("constraint failed"), "{message}"),
            other => panic!("expected a constraint failure, got {other:?}"),
        }
        // A transaction the guest never finished is rolled back when the connection returns to the pool.
        Sql::execute(s, borrow(&db), "BEGIN IMMEDIATE".into(), vec![]).await.expect("call").expect("begin");
        Sql::execute(s, borrow(&db), "INSERT INTO t (id) VALUES (8)".into(), vec![]).await.expect("call").expect("insert");
        Sql::drop(s, db).await.expect("drop");
        let db = Sql::open(s, "default".into()).await.expect("call").expect("opens");
        let count = Sql::execute(s, borrow(&db), "SELECT COUNT(*) FROM t".into(), vec![]).await.expect("call").expect("count");
        assert!(matches!(count.rows[0].values[0], sqlite::Value::Integer(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn variables_and_redis_follow_the_component_config() {
        use redis::HostConnection as Redis;
        let rt = runtime("vars");
        let mut store = rt.store(&component(), None);
        let s = store.data_mut();
        assert_eq!(variables::Host::get(s, "greeting".into()).await.expect("call").expect("defined"), "hello");
        assert!(matches!(variables::Host::get(s, "missing".into()).await.expect("call"), Err(variables::Error::Undefined(_))));
        assert!(matches!(variables::Host::get(s, "Bad-Name".into()).await.expect("call"), Err(variables::Error::InvalidName(_))));

        assert!(matches!(Redis::open(s, "redis://10.0.0.1:6379".into()).await.expect("call"), Err(redis::Error::InvalidAddress)));
        let conn = Redis::open(s, "redis://127.0.0.1:6379".into()).await.expect("call").expect("allowed");
        Redis::publish(s, borrow(&conn), "orders".into(), b"hello".to_vec()).await.expect("call").expect("published");
        assert!(matches!(Redis::get(s, borrow(&conn), "k".into()).await.expect("call"), Err(redis::Error::Other(_))));
        assert_eq!(rt.shared.log.next("consumer").expect("read").map(|d| d.payload), Some(b"hello".to_vec()));
    }

    #[test]
    fn only_reads_outside_a_transaction_run_in_place() {
        let conn = rusqlite::Connection::open_in_memory().expect("opens");
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)").expect("create");
        let in_place = |sql: &str| runs_in_place(&conn, &conn.prepare(sql).expect("prepares"), sql);
        assert!(in_place("SELECT id FROM t"));
        assert!(in_place("  select count(*) from t"));
        for sql in
            ["INSERT INTO t VALUES (1)", "DELETE FROM t RETURNING id", "BEGIN IMMEDIATE", "begin", "COMMIT", "end transaction", "SAVEPOINT s", "ROLLBACK"]
        {
            assert!(!in_place(sql), "{sql} must be allowed to block");
        }
        conn.execute_batch("BEGIN").expect("begin");
        assert!(!in_place("SELECT id FROM t"), "inside a transaction everything may block");
    }
}

//! The host side of the Spin 2.0 interfaces components import: key-value and sqlite on SQLite
//! files, variables resolved at start-up, and Redis publish into the durable message log.

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
    },
});

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "redis-trigger",
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

pub struct RedisConnection {
    _address: String,
}

/// SQLite work is quick but blocking: let the runtime move other tasks off this thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        if !self.component.key_value_stores.iter().any(|s| *s == label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        let pool = self.shared.kv.pool(&label);
        let conn = match blocking(|| pool.get()) {
            Ok(c) => c,
            Err(e) => return Ok(Err(key_value::Error::Other(e.to_string()))),
        };
        Ok(Ok(self.table.push(KvStore { pool, conn: Some(conn) })?))
    }

    async fn get(&mut self, store: Resource<KvStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(blocking(|| {
            let mut stmt = conn.prepare_cached("SELECT value FROM spin_key_value WHERE key = ?")?;
            let mut rows = stmt.query([&key])?;
            rows.next()?.map(|r| r.get::<_, Vec<u8>>(0)).transpose()
        })
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
        Ok(blocking(|| conn.prepare_cached("DELETE FROM spin_key_value WHERE key = ?")?.execute([key]).map(drop)).map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn exists(&mut self, store: Resource<KvStore>, key: String) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(blocking(|| conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE key = ?")?.exists([key])).map_err(|e| key_value::Error::Other(e.to_string())))
    }

    async fn get_keys(&mut self, store: Resource<KvStore>) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let s = self.table.get(&store)?;
        let Some(conn) = s.conn.as_ref() else { return Ok(Err(key_value::Error::Other("store closed".into()))) };
        Ok(blocking(|| {
            let mut stmt = conn.prepare_cached("SELECT key FROM spin_key_value ORDER BY key")?;
            let keys = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>();
            keys
        })
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

pub fn execute(conn: &rusqlite::Connection, statement: &str, parameters: Vec<sqlite::Value>) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
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
        if !self.component.sqlite_databases.iter().any(|d| *d == database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        let pool = self.shared.sqlite.pool(&database);
        let conn = match blocking(|| pool.get()) {
            Ok(c) => c,
            Err(e) => return Ok(Err(sqlite::Error::Io(e.to_string()))),
        };
        Ok(Ok(self.table.push(SqliteConnection { pool, conn: Some(conn) })?))
    }

    async fn execute(&mut self, conn: Resource<SqliteConnection>, statement: String, parameters: Vec<sqlite::Value>) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let c = self.table.get(&conn)?;
        let Some(conn) = c.conn.as_ref() else { return Ok(Err(sqlite::Error::InvalidConnection)) };
        Ok(blocking(|| execute(conn, &statement, parameters)).map_err(|e| sqlite::Error::Io(e.to_string())))
    }

    async fn drop(&mut self, conn: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        let mut c = self.table.delete(conn)?;
        if let Some(conn) = c.conn.take() {
            let pool = c.pool.clone();
            blocking(move || pool.put(conn));
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

const NOT_SUPPORTED: &str = "the local host implements Redis publish only; use key-value or sqlite for data";

impl redis::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<RedisConnection>, redis::Error>> {
        if !self.component.allowed_hosts.allows_url(&address) {
            tracing::warn!(component = %self.component.id, %address, "redis address not in allowed_outbound_hosts");
            return Ok(Err(redis::Error::InvalidAddress));
        }
        Ok(Ok(self.table.push(RedisConnection { _address: address })?))
    }

    async fn publish(&mut self, conn: Resource<RedisConnection>, channel: String, payload: Vec<u8>) -> wasmtime::Result<Result<(), redis::Error>> {
        self.table.get(&conn)?;
        let log = self.shared.log.clone();
        Ok(blocking(|| log.publish(&channel, &payload)).map_err(|e| redis::Error::Other(format!("{e:#}"))))
    }

    async fn get(&mut self, _: Resource<RedisConnection>, _: String) -> wasmtime::Result<Result<Option<Vec<u8>>, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn set(&mut self, _: Resource<RedisConnection>, _: String, _: Vec<u8>) -> wasmtime::Result<Result<(), redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn incr(&mut self, _: Resource<RedisConnection>, _: String) -> wasmtime::Result<Result<i64, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn del(&mut self, _: Resource<RedisConnection>, _: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn sadd(&mut self, _: Resource<RedisConnection>, _: String, _: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn smembers(&mut self, _: Resource<RedisConnection>, _: String) -> wasmtime::Result<Result<Vec<String>, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn srem(&mut self, _: Resource<RedisConnection>, _: String, _: Vec<String>) -> wasmtime::Result<Result<u32, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn execute(&mut self, _: Resource<RedisConnection>, _: String, _: Vec<redis::RedisParameter>) -> wasmtime::Result<Result<Vec<redis::RedisResult>, redis::Error>> {
        Ok(Err(redis::Error::Other(NOT_SUPPORTED.into())))
    }

    async fn drop(&mut self, conn: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

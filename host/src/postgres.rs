//! `spin:postgres/postgres@3.0.0` on a real PostgreSQL server, as Spin's outbound-pg factor has it
//! (`crates/factor-outbound-pg` in Spin 3.6): `open` takes a connection string whose every host
//! and port `allowed_outbound_hosts` must allow as `postgres://host:port`; parameters and columns
//! convert type by type (a type the interface can't carry reads as `unsupported`); errors carry
//! the driver's text. Connections are pooled per address, each keeping the statements it prepared;
//! one the guest drops inside a transaction is rolled back before it is reused, and one the guest
//! never drops (a trap) is closed.
//!
//! Where this departs from Spin: no TLS (the server is local; `sslmode=require` fails to connect),
//! and a `timestamptz` column reads as its UTC date-time instead of failing the query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{Datelike, Timelike};
use tokio_postgres::types::{ToSql, Type};
use wasmtime::component::Resource;

use crate::runtime::HostState;
use crate::spin::spin::postgres::postgres::{self as pg, Column, DbDataType, DbValue, ParameterValue, RowSet};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per address.
const MAX_IDLE: usize = 16;
/// The most a query's rows may weigh in the guest before it fails.
const MAX_RESULT_BYTES: usize = 32 << 20;

/// Idle connections by connection string.
#[derive(Default)]
pub struct PgPools(Mutex<HashMap<String, Vec<Session>>>);

/// A server session: its client, and the statements it has prepared, by their text. A statement
/// is parsed and planned once per session instead of once per call: half the round trips.
pub struct Session {
    client: tokio_postgres::Client,
    prepared: HashMap<String, tokio_postgres::Statement>,
}

/// Prepared statements a session keeps at most (the adapters use a few dozen).
const MAX_PREPARED: usize = 256;

impl Session {
    async fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.prepared.len() >= MAX_PREPARED {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl PgPools {
    fn take(&self, address: &str) -> Option<Session> {
        let mut pools = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pools.get_mut(address)?;
        while let Some(session) = idle.pop() {
            if !session.client.is_closed() {
                return Some(session);
            }
        }
        None
    }

    fn give_back(&self, address: String, session: Session) {
        let mut pools = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pools.entry(address).or_default();
        if idle.len() < MAX_IDLE && !session.client.is_closed() {
            idle.push(session);
        }
    }
}

/// One guest connection: a session of the pool, and whether the guest left a transaction open.
pub struct PgConnection {
    address: String,
    session: Session,
    in_transaction: bool,
}

/// Whether a transaction is open after `statement`, given whether one was before: `BEGIN` and
/// `START TRANSACTION` open one; `COMMIT`, `END`, `ABORT` and `ROLLBACK` (not `ROLLBACK TO`) close it.
fn transaction_after(open: bool, statement: &str) -> bool {
    let mut words = statement.split_whitespace().map(str::to_ascii_uppercase);
    match (words.next().as_deref(), words.next().as_deref()) {
        (Some("BEGIN"), _) | (Some("START"), Some("TRANSACTION")) => true,
        (Some("COMMIT" | "END" | "ABORT"), _) => false,
        (Some("ROLLBACK"), Some("TO")) => open,
        (Some("ROLLBACK"), _) => false,
        _ => open,
    }
}

/// The `postgres://host:port` URLs a connection string would connect to, for the allow-list.
fn endpoints(address: &str) -> Result<Vec<String>, pg::Error> {
    let config: tokio_postgres::Config = address.parse().map_err(|e: tokio_postgres::Error| pg::Error::ConnectionFailed(e.to_string()))?;
    let ports = config.get_ports();
    let mut urls = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(name) = host else {
            return Err(pg::Error::ConnectionFailed("Unix sockets are not supported on WebAssembly".into()));
        };
        // The port at the host's index, or the one port given for every host.
        let port = ports.get(i).or_else(|| if ports.len() == 1 { ports.first() } else { None });
        urls.push(match port {
            Some(port) => format!("postgres://{name}:{port}"),
            None => format!("postgres://{name}"),
        });
    }
    Ok(urls)
}

async fn connect(address: &str) -> Result<tokio_postgres::Client, pg::Error> {
    let mut config: tokio_postgres::Config = address.parse().map_err(|e: tokio_postgres::Error| pg::Error::ConnectionFailed(e.to_string()))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| pg::Error::ConnectionFailed(format!("{e:?}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// A NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(tokio_postgres::types::IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn parameter(value: &ParameterValue) -> Result<Box<dyn ToSql + Send + Sync>, String> {
    let date = |(y, m, d): (i32, u8, u8)| chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or(format!("invalid date y={y}, m={m}, d={d}"));
    let time = |(h, m, s, ns): (u8, u8, u8, u32)| {
        chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns).ok_or(format!("invalid time {h}:{m}:{s}:{ns}"))
    };
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date(v) => Box::new(date(*v)?),
        ParameterValue::Time(v) => Box::new(time(*v)?),
        ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => Box::new(chrono::NaiveDateTime::new(date((*y, *mo, *d))?, time((*h, *mi, *s, *ns))?)),
        ParameterValue::Timestamp(v) => Box::new(chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0).ok_or(format!("invalid epoch timestamp {v}"))?),
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn parameters(params: &[ParameterValue]) -> Result<Vec<Box<dyn ToSql + Send + Sync>>, String> {
    params.iter().map(parameter).collect()
}

fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        _ => DbDataType::Other,
    }
}

fn datetime(v: chrono::NaiveDateTime) -> DbValue {
    DbValue::Datetime((v.year(), v.month() as u8, v.day() as u8, v.hour() as u8, v.minute() as u8, v.second() as u8, v.nanosecond()))
}

/// One column of one row as the interface carries it.
fn value(row: &tokio_postgres::Row, i: usize) -> Result<DbValue, tokio_postgres::Error> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        f: impl Fn(T) -> DbValue,
    ) -> Result<DbValue, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(DbValue::DbNull, f))
    }
    Ok(match *row.columns()[i].type_() {
        Type::BOOL => get(row, i, DbValue::Boolean)?,
        Type::BYTEA => get(row, i, DbValue::Binary)?,
        Type::FLOAT4 => get(row, i, DbValue::Floating32)?,
        Type::FLOAT8 => get(row, i, DbValue::Floating64)?,
        Type::INT2 => get(row, i, DbValue::Int16)?,
        Type::INT4 => get(row, i, DbValue::Int32)?,
        Type::INT8 => get(row, i, DbValue::Int64)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, DbValue::Str)?,
        Type::TIMESTAMP => get(row, i, datetime)?,
        Type::TIMESTAMPTZ => get(row, i, |v: chrono::DateTime<chrono::Utc>| datetime(v.naive_utc()))?,
        Type::DATE => get(row, i, |v: chrono::NaiveDate| DbValue::Date((v.year(), v.month() as u8, v.day() as u8)))?,
        Type::TIME => get(row, i, |v: chrono::NaiveTime| DbValue::Time((v.hour() as u8, v.minute() as u8, v.second() as u8, v.nanosecond())))?,
        _ => DbValue::Unsupported,
    })
}

fn size(v: &DbValue) -> usize {
    std::mem::size_of::<DbValue>()
        + match v {
            DbValue::Str(s) => s.len(),
            DbValue::Binary(b) => b.len(),
            _ => 0,
        }
}

fn query_failed(e: tokio_postgres::Error) -> pg::Error {
    pg::Error::QueryFailed(format!("{e:?}"))
}

impl pg::Host for HostState {}

impl pg::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<PgConnection>, pg::Error>> {
        let urls = match endpoints(&address) {
            Ok(urls) => urls,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(url) = urls.iter().find(|url| !self.component.allowed_hosts.allows_url(url)) {
            tracing::warn!(component = %self.component.id, %url, "postgres address not in allowed_outbound_hosts");
            return Ok(Err(pg::Error::ConnectionFailed(format!("address {url} is not permitted"))));
        }
        let session = match self.shared.pg.take(&address) {
            Some(session) => session,
            None => match connect(&address).await {
                Ok(client) => Session { client, prepared: HashMap::new() },
                Err(e) => return Ok(Err(e)),
            },
        };
        Ok(Ok(self.table.push(PgConnection { address, session, in_transaction: false })?))
    }

    async fn query(&mut self, conn: Resource<PgConnection>, statement: String, params: Vec<ParameterValue>) -> wasmtime::Result<Result<RowSet, pg::Error>> {
        let params = match parameters(&params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(pg::Error::BadParameter(e))),
        };
        let connection = self.table.get_mut(&conn)?;
        connection.in_transaction = transaction_after(connection.in_transaction, &statement);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let prepared = match connection.session.statement(&statement).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        let rows = match connection.session.client.query(&prepared, &refs).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        // As Spin: the columns come from the first row, so an empty result has none.
        let columns = rows
            .first()
            .map_or_else(Vec::new, |row| row.columns().iter().map(|c| Column { name: c.name().to_owned(), data_type: data_type(c.type_()) }).collect());
        let mut bytes = 0;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let values = match (0..row.len()).map(|i| value(row, i)).collect::<Result<Vec<_>, _>>() {
                Ok(values) => values,
                Err(e) => return Ok(Err(pg::Error::ValueConversionFailed(format!("{e:?}")))),
            };
            bytes += values.iter().map(size).sum::<usize>();
            if bytes > MAX_RESULT_BYTES {
                return Ok(Err(pg::Error::QueryFailed(format!("the result is over {MAX_RESULT_BYTES} bytes"))));
            }
            out.push(values);
        }
        Ok(Ok(RowSet { columns, rows: out }))
    }

    async fn execute(&mut self, conn: Resource<PgConnection>, statement: String, params: Vec<ParameterValue>) -> wasmtime::Result<Result<u64, pg::Error>> {
        let params = match parameters(&params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(pg::Error::ValueConversionFailed(e))),
        };
        let connection = self.table.get_mut(&conn)?;
        connection.in_transaction = transaction_after(connection.in_transaction, &statement);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let prepared = match connection.session.statement(&statement).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        Ok(connection.session.client.execute(&prepared, &refs).await.map_err(query_failed))
    }

    async fn drop(&mut self, conn: Resource<PgConnection>) -> wasmtime::Result<()> {
        let connection = self.table.delete(conn)?;
        // A transaction the guest left open must not reach the next guest.
        if connection.in_transaction && connection.session.client.batch_execute("ROLLBACK").await.is_err() {
            return Ok(());
        }
        self.shared.pg.give_back(connection.address, connection.session);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_of_a_connection_string_is_checked_at_its_port() {
        assert_eq!(endpoints("postgres://u:p@db.example.com:6432/app").expect("url"), vec!["postgres://db.example.com:6432"]);
        assert_eq!(endpoints("host=a,b port=5433 user=u").expect("key-value"), vec!["postgres://a:5433", "postgres://b:5433"]);
        assert_eq!(endpoints("postgres://u@db/app").expect("no port"), vec!["postgres://db:5432"], "the driver's default port");
        assert!(matches!(endpoints("host=/var/run/postgresql"), Err(pg::Error::ConnectionFailed(_))));
        assert!(matches!(endpoints("postgres://[bad"), Err(pg::Error::ConnectionFailed(_))));
    }

    #[test]
    fn transactions_are_followed_by_their_first_words() {
        let open_after = |statements: &[&str]| statements.iter().fold(false, |open, s| transaction_after(open, s));
        assert!(open_after(&["begin", "insert into t values (1)"]));
        assert!(open_after(&["START TRANSACTION ISOLATION LEVEL SERIALIZABLE"]));
        assert!(!open_after(&["BEGIN", "COMMIT"]));
        assert!(open_after(&["BEGIN", "SAVEPOINT a", "ROLLBACK TO a"]), "a rollback to a savepoint keeps the transaction");
        assert!(!open_after(&["BEGIN", "rollback"]));
        assert!(!open_after(&["select 1"]));
    }
}

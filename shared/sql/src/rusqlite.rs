//! [`Db`] on rusqlite: what native tests (and tools) use; the host serves Spin's `sqlite`
//! interface itself, and components use Spin's.

use std::sync::Mutex;

use crate::db::{Db, DbError, Rows, Value};

/// One rusqlite connection, in WAL mode with a 5 s busy timeout.
pub struct Sqlite(Mutex<::rusqlite::Connection>);

impl Sqlite {
    pub fn open(path: &std::path::Path) -> Sqlite {
        let conn = ::rusqlite::Connection::open(path).expect("open");
        conn.busy_timeout(std::time::Duration::from_secs(5)).expect("timeout");
        conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
        Sqlite(Mutex::new(conn))
    }
}

impl Db for Sqlite {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        use ::rusqlite::types::Value as V;
        let conn = self.0.lock().map_err(|_| DbError::Other("poisoned".into()))?;
        let err = |e: ::rusqlite::Error| DbError::from_message(e.to_string());
        let mut stmt = conn.prepare(sql).map_err(err)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let params = ::rusqlite::params_from_iter(params.iter().map(|p| match p {
            Value::Integer(n) => V::Integer(*n),
            Value::Real(f) => V::Real(*f),
            Value::Text(s) => V::Text(s.clone()),
            Value::Blob(b) => V::Blob(b.clone()),
            Value::Null => V::Null,
        }));
        let mut rows = stmt.query(params).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let values = (0..columns.len())
                .map(|i| match row.get::<_, V>(i) {
                    Ok(V::Integer(n)) => Value::Integer(n),
                    Ok(V::Real(f)) => Value::Real(f),
                    Ok(V::Text(s)) => Value::Text(s),
                    Ok(V::Blob(b)) => Value::Blob(b),
                    _ => Value::Null,
                })
                .collect();
            out.push(values);
        }
        Ok(Rows { columns, rows: out })
    }
}

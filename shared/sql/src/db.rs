//! The one thing the adapters need from a database connection: run a statement with parameters
//! and get rows back. Spin's `sqlite` interface has exactly this shape, and so do thin wrappers
//! over rusqlite, Spin's `postgres` interface and a PostgreSQL driver. Statements are written in
//! SQLite's dialect; where PostgreSQL's differs, [`crate::dialect`] has both.

/// A parameter or column value, as Spin's sqlite interface defines them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

impl From<Option<&str>> for Value {
    fn from(s: Option<&str>) -> Self {
        s.map_or(Value::Null, Value::from)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// A UNIQUE, PRIMARY KEY or CHECK constraint failed.
    Constraint(String),
    /// Anything else: I/O, a locked database, a missing table.
    Other(String),
}

impl DbError {
    /// Classifies a driver's error message. Spin and rusqlite both surface SQLite's own text.
    pub fn from_message(message: String) -> DbError {
        if message.contains("constraint failed") { DbError::Constraint(message) } else { DbError::Other(message) }
    }

    /// Classifies a PostgreSQL error by its SQLSTATE: class 23, integrity constraint violation
    /// (unique, check, foreign key, not null), is a constraint failure.
    pub fn from_sqlstate(code: &str, message: String) -> DbError {
        if code.starts_with("23") { DbError::Constraint(message) } else { DbError::Other(message) }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Constraint(m) | DbError::Other(m) => f.write_str(m),
        }
    }
}

/// The SQL a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    /// PostgreSQL: a [`Db`] of this dialect takes SQLite's `?` and `?N` parameters and turns them
    /// into `$N` itself.
    Postgres,
}

pub trait Db {
    /// Runs one statement. Statements that return rows (SELECT, `... RETURNING`) return them.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

impl<D: Db + ?Sized> Db for &D {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        (**self).execute(sql, params)
    }

    fn dialect(&self) -> Dialect {
        (**self).dialect()
    }
}

impl<D: Db + ?Sized> Db for Box<D> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        (**self).execute(sql, params)
    }

    fn dialect(&self) -> Dialect {
        (**self).dialect()
    }
}

/// Typed access to a row's columns; a value of the wrong type reads as a store fault.
pub trait RowExt {
    fn text(&self, i: usize) -> Result<&str, DbError>;
    fn int(&self, i: usize) -> Result<i64, DbError>;
    fn opt_text(&self, i: usize) -> Result<Option<&str>, DbError>;
}

impl RowExt for Vec<Value> {
    fn text(&self, i: usize) -> Result<&str, DbError> {
        match self.get(i) {
            Some(Value::Text(s)) => Ok(s),
            other => Err(DbError::Other(format!("column {i}: expected text, got {other:?}"))),
        }
    }

    fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.get(i) {
            Some(Value::Integer(n)) => Ok(*n),
            other => Err(DbError::Other(format!("column {i}: expected integer, got {other:?}"))),
        }
    }

    fn opt_text(&self, i: usize) -> Result<Option<&str>, DbError> {
        match self.get(i) {
            Some(Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

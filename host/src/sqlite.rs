//! SQLite files under the state folder, one per Spin database or key-value store, with a small
//! pool of open connections each so a request doesn't pay for opening the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::Connection;

const POOL_MAX_IDLE: usize = 16;

/// Open connections to one database file.
pub struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    init: &'static [&'static str],
}

impl Pool {
    pub fn new(path: PathBuf, init: &'static [&'static str]) -> Pool {
        Pool { path, idle: Mutex::new(Vec::new()), init }
    }

    pub fn get(&self) -> Result<Connection> {
        match self.idle() {
            Some(c) => Ok(c),
            None => open(&self.path, self.init),
        }
    }

    /// An open connection, if one is idle: never touches the file.
    pub fn idle(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Returns a connection for reuse. One left inside a transaction (a guest that never
    /// committed) is rolled back first (in WAL mode that only drops the transaction's pages).
    pub fn put(&self, conn: Connection) {
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

pub fn open(path: &Path, init: &[&str]) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL: readers don't block the writer. NORMAL sync in WAL mode survives a process crash
    // (SIGKILL); only an OS crash can lose the last transactions.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    for statement in init {
        conn.execute_batch(statement).with_context(|| format!("initialising {}", path.display()))?;
    }
    Ok(conn)
}

/// The pools of one kind of store (`sqlite` databases or `kv` stores), by name.
pub struct Pools {
    dir: PathBuf,
    init: &'static [&'static str],
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Pools {
    pub fn new(dir: PathBuf, init: &'static [&'static str]) -> Pools {
        Pools { dir, init, pools: Mutex::new(HashMap::new()) }
    }

    pub fn pool(&self, name: &str) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.entry(name.to_owned()).or_insert_with(|| Arc::new(Pool::new(self.dir.join(format!("{name}.db")), self.init))).clone()
    }
}

pub const KV_SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS spin_key_value (key TEXT PRIMARY KEY, value BLOB NOT NULL)"];

//! [`Db`] on a PostgreSQL server through the `postgres` driver: what native tests (and tools) use
//! for the PostgreSQL store, as [`crate::rusqlite`] is for SQLite. Spin components reach the same
//! statements through Spin's `postgres` interface. Also [`LocalServer`], a throwaway PostgreSQL
//! cluster for tests.

use postgres::types::{ToSql, Type};

use crate::db::{Db, DbError, Dialect, Rows, Value};

/// One connection (one session: a transaction spans the statements between `BEGIN` and `COMMIT`).
/// The driver blocks on a runtime of its own, which can't run inside another tokio runtime, so the
/// client lives on a thread of its own and statements go to it: callable from async tests too.
pub struct Postgres {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = (String, Vec<Value>, std::sync::mpsc::Sender<Result<Rows, DbError>>);

impl Postgres {
    pub fn connect(address: &str) -> Result<Postgres, DbError> {
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let (ready, connected) = std::sync::mpsc::channel();
        let address = address.to_owned();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let mut client = match postgres::Client::connect(&address, postgres::NoTls) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(DbError::Other(format!("connecting to PostgreSQL: {e}"))));
                        return;
                    }
                };
                // Ends when the Postgres value (the sender) is dropped, closing the session.
                for (sql, params, reply) in inbox {
                    let _ = reply.send(run(&mut client, &sql, &params));
                }
            })
            .map_err(|e| DbError::Other(format!("starting the PostgreSQL thread: {e}")))?;
        connected.recv().map_err(|_| DbError::Other("the PostgreSQL thread ended".into()))??;
        Ok(Postgres { jobs })
    }
}

fn error(e: postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::from_sqlstate(db.code().code(), format!("{}: {}", db.code().code(), db.message())),
        None => DbError::Other(e.to_string()),
    }
}

/// A column as a [`Value`]: integers of any width, floats, text, bytes, booleans as 0 or 1.
fn column(row: &postgres::Row, i: usize) -> Result<Value, DbError> {
    fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a postgres::Row, i: usize, f: impl Fn(T) -> Value) -> Result<Value, DbError> {
        Ok(row.try_get::<_, Option<T>>(i).map_err(error)?.map_or(Value::Null, f))
    }
    let ty = row.columns()[i].type_();
    match *ty {
        Type::INT8 => get(row, i, Value::Integer),
        Type::INT4 => get(row, i, |n: i32| Value::Integer(n.into())),
        Type::INT2 => get(row, i, |n: i16| Value::Integer(n.into())),
        Type::BOOL => get(row, i, |b: bool| Value::Integer(b.into())),
        Type::FLOAT8 => get(row, i, Value::Real),
        Type::FLOAT4 => get(row, i, |f: f32| Value::Real(f.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get(row, i, Value::Text),
        Type::BYTEA => get(row, i, Value::Blob),
        _ => Err(DbError::Other(format!("column {} has type {}, which the adapters don't read", row.columns()[i].name(), ty.name()))),
    }
}

fn run(client: &mut postgres::Client, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    let values: Vec<Box<dyn ToSql + Sync>> = params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync> {
            match p {
                Value::Integer(n) => Box::new(*n),
                Value::Real(f) => Box::new(*f),
                Value::Text(s) => Box::new(s.clone()),
                Value::Blob(b) => Box::new(b.clone()),
                Value::Null => Box::new(None::<String>),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    let statement = client.prepare(&crate::dialect::numbered_parameters(sql)).map_err(error)?;
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    let rows = client.query(&statement, &refs).map_err(error)?;
    let rows = rows.iter().map(|row| (0..row.len()).map(|i| column(row, i)).collect::<Result<Vec<_>, _>>()).collect::<Result<Vec<_>, _>>()?;
    Ok(Rows { columns, rows })
}

impl Db for Postgres {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let (reply, answer) = std::sync::mpsc::channel();
        let gone = || DbError::Other("the PostgreSQL connection's thread ended".into());
        self.jobs.send((sql.to_owned(), params.to_vec(), reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

/// A throwaway PostgreSQL cluster: Debian's `postgresql` package (`tests/tools.sh apt`), a fresh
/// cluster in a temporary folder on a free loopback port, trust authentication for the `postgres`
/// user, nothing fsynced. Stopped and removed when dropped. PostgreSQL refuses to run as root, so
/// under root the cluster belongs to the `postgres` user.
pub struct LocalServer {
    child: std::process::Child,
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl LocalServer {
    /// Starts one, or says why it can't.
    pub fn start() -> Result<LocalServer, String> {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

        let bin = bin_dir()?;
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gocoffee-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            let chowned = Command::new("chown").arg("postgres:postgres").arg(&dir).status().is_ok_and(|s| s.success());
            if !chowned {
                return Err(format!("could not give {} to the postgres user", dir.display()));
            }
        }
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .arg("-k")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let server = LocalServer { child, bin: bin.clone(), dir, port };
        // Accepting TCP comes a moment before accepting queries: pg_isready tells them apart.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(bin.join("pg_isready")).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"]).status().is_ok_and(|s| s.success()) {
            if Instant::now() > deadline {
                return Err(format!("postgres did not start on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// A connection string for database `name` (`postgres` always exists).
    pub fn address(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database, and its connection string.
    pub fn database(&self, name: &str) -> Result<String, DbError> {
        let admin = Postgres::connect(&self.address("postgres"))?;
        admin.execute(&format!("DROP DATABASE IF EXISTS \"{name}\""), &[])?;
        admin.execute(&format!("CREATE DATABASE \"{name}\""), &[])?;
        Ok(self.address(name))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // A fast shutdown: sessions are ended, nothing is waited for.
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's `bin` folder (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> Result<std::path::PathBuf, String> {
    let missing = || "no PostgreSQL server under /usr/lib/postgresql: run tests/tools.sh apt".to_owned();
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| missing())?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program`, run as the `postgres` user when this process is root.
fn as_postgres(program: &std::path::Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

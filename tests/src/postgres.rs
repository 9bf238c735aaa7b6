//! A real PostgreSQL server for the tests: Debian's `postgresql` package (installed by
//! `tests/tools.sh apt`), a fresh cluster in a temporary folder on a free loopback port, trust
//! authentication for the `postgres` user, nothing fsynced. Stopped and removed when dropped.
//! PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct PostgresServer {
    child: Child,
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

static STARTED: AtomicU32 = AtomicU32::new(0);

/// The newest installed server's `bin` folder (`/usr/lib/postgresql/<version>/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is missing: run tests/tools.sh apt")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server under /usr/lib/postgresql: run tests/tools.sh apt").1
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and can't fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::getuid() == 0
    }
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("gocoffee-pg-{}-{}", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).expect("postgres dir");
        if is_root() {
            let ok = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().expect("chown");
            assert!(ok.success(), "chown of {}", dir.display());
        }
        let data = dir.join("data");
        let out = command(&bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = command(&bin.join("postgres"))
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
            .expect("start postgres");
        let server = PostgresServer { child, bin: bin.clone(), dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Accepting TCP comes a moment before accepting queries; pg_isready tells them apart.
        loop {
            let ready = Command::new(bin.join("pg_isready")).args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"]).status().is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A connection string for the `postgres` database.
    pub fn address(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // A fast shutdown: open sessions are ended, nothing is waited for.
        let _ = command(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! `gocoffee-host backup` and `restore`: a consistent copy of every SQLite file under the state
//! folder, taken with SQLite's online backup API while the host keeps serving, and bringing one
//! back into a stopped host's folder.
//!
//! Each file's copy is one snapshot (its read transaction is held for the whole copy), and the
//! snapshots of all files are one cut: they are opened while the backup holds every file's write
//! lock, so no transaction commits in any file between two of them. The files depend on each other
//! both ways (a store's outbox entry is deleted after the log has its message; the log's delivery
//! cursor moves after a store has handled it), so no order of separate snapshots would do: one
//! taken in between could hold an entry marked sent in a store and missing from the log. In a cut
//! each such step is either done or still to do, and redoing it is idempotent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde::{Deserialize, Serialize};

/// What a backup folder holds, written last: a folder without it is not a backup.
const MANIFEST: &str = "gocoffee-backup.json";
/// The folders of the state directory that hold databases, besides `log.db` at its top.
const DATABASE_DIRS: [&str; 2] = ["sqlite", "kv"];

#[derive(Serialize, Deserialize)]
struct Manifest {
    created_at_ms: u64,
    /// Paths relative to the state folder, the message log first.
    files: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    path: String,
    bytes: u64,
}

/// Every database of a state folder, relative to it: `log.db` first, then the stores, sorted.
fn databases(state: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if state.join("log.db").is_file() {
        found.push(PathBuf::from("log.db"));
    }
    for dir in DATABASE_DIRS {
        let Ok(entries) = std::fs::read_dir(state.join(dir)) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "db") && p.is_file())
            .filter_map(|p| p.file_name().map(|n| Path::new(dir).join(n)))
            .collect();
        files.sort();
        found.extend(files);
    }
    Ok(found)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// Copies every database of `state` into the new folder `to`. Prints one line per file.
pub fn backup(state: &Path, to: &Path) -> Result<()> {
    ensure!(!to.exists(), "{} already exists: a backup goes into a new folder", to.display());
    let files = databases(state)?;
    ensure!(!files.is_empty(), "no databases under {}: nothing to back up", state.display());

    let sources = cut(state, &files)?;

    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let mut manifest = Manifest { created_at_ms: now_ms(), files: Vec::new() };
    for (rel, source) in files.iter().zip(&sources) {
        let target = partial.join(rel);
        std::fs::create_dir_all(target.parent().unwrap_or(&partial))?;
        let mut copy = Connection::open(&target).with_context(|| format!("creating {}", target.display()))?;
        {
            let backup = Backup::new(source, &mut copy)?;
            // Every page in one step: the copy is exactly the source's snapshot.
            loop {
                match backup.step(-1).with_context(|| format!("copying {}", rel.display()))? {
                    StepResult::Done => break,
                    // More, Busy, Locked: go on.
                    _ => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        }
        // A single file, independent of any -wal beside it.
        copy.pragma_update(None, "journal_mode", "DELETE")?;
        check_integrity(&copy, rel)?;
        drop(copy);
        let bytes = std::fs::metadata(&target)?.len();
        println!("{}  {bytes} bytes", rel.display());
        manifest.files.push(FileEntry { path: rel.to_string_lossy().into_owned(), bytes });
    }
    for source in &sources {
        source.execute_batch("COMMIT")?;
    }
    std::fs::write(partial.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&partial, to).with_context(|| format!("moving the backup to {}", to.display()))?;
    println!("backed up {} database(s) to {}", manifest.files.len(), to.display());
    Ok(())
}

/// How long the backup keeps trying to hold every write lock at once, and how long it waits for
/// each before letting all go and trying again (a writer may hold one file and wait for another).
const CUT_DEADLINE: Duration = Duration::from_secs(10);
const LOCK_WAIT: Duration = Duration::from_millis(50);

/// Opens one read snapshot per file, all at the same point: taken while every file's write lock
/// is held, released as soon as the snapshots exist (writers wait a few milliseconds, readers not
/// at all). Locks are taken in one order and all given back when one is busy, so the backup never
/// deadlocks with a writer holding one file and waiting for another.
fn cut(state: &Path, files: &[PathBuf]) -> Result<Vec<Connection>> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        if let Some(snapshots) = try_cut(state, files)? {
            return Ok(snapshots);
        }
        ensure!(started.elapsed() < CUT_DEADLINE, "could not hold every database's write lock at once within {CUT_DEADLINE:?}: the host is too busy");
        attempt += 1;
        std::thread::sleep(Duration::from_millis(5 * u64::from(attempt.min(10))));
    }
}

/// One try at [`cut`]: `None` when a write lock was busy.
fn try_cut(state: &Path, files: &[PathBuf]) -> Result<Option<Vec<Connection>>> {
    let mut locks = Vec::with_capacity(files.len());
    for rel in files {
        let conn = Connection::open_with_flags(state.join(rel), OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("opening {}", rel.display()))?;
        conn.busy_timeout(LOCK_WAIT)?;
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => locks.push(conn),
            // Dropping the connections rolls their empty transactions back.
            Err(rusqlite::Error::SqliteFailure(e, _)) if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("locking {}", rel.display())),
        }
    }
    let mut snapshots = Vec::with_capacity(files.len());
    for rel in files {
        let conn = Connection::open_with_flags(state.join(rel), OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("opening {}", rel.display()))?;
        conn.busy_timeout(CUT_DEADLINE)?;
        conn.execute_batch("BEGIN")?;
        // A read transaction starts at its first read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0)).with_context(|| format!("reading {}", rel.display()))?;
        snapshots.push(conn);
    }
    for lock in locks {
        lock.execute_batch("ROLLBACK")?;
    }
    Ok(Some(snapshots))
}

fn check_integrity(conn: &Connection, rel: &Path) -> Result<()> {
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(verdict == "ok", "{} failed its integrity check: {verdict}", rel.display());
    Ok(())
}

/// Replaces the databases of `state` (whose host must be stopped) by the backup in `from`:
/// databases the backup doesn't have are removed, so the folder is as it was when the backup was
/// taken. Compiled components (the cache) are left alone.
pub fn restore(from: &Path, state: &Path) -> Result<()> {
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(from.join(MANIFEST)).with_context(|| format!("{} is not a backup (no {MANIFEST})", from.display()))?)
            .with_context(|| format!("reading {MANIFEST}"))?;
    // Check the whole backup before touching the state.
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            bail!("{MANIFEST} names a file outside the state folder: {}", f.path);
        }
        let conn = Connection::open_with_flags(from.join(rel), OpenFlags::SQLITE_OPEN_READ_ONLY).with_context(|| format!("the backup lacks {}", f.path))?;
        check_integrity(&conn, rel)?;
    }
    std::fs::create_dir_all(state)?;
    let keep: Vec<PathBuf> = manifest.files.iter().map(|f| PathBuf::from(&f.path)).collect();
    for rel in databases(state)? {
        if !keep.contains(&rel) {
            remove_database(&state.join(&rel))?;
            println!("removed {} (not in the backup)", rel.display());
        }
    }
    for rel in &keep {
        let target = state.join(rel);
        std::fs::create_dir_all(target.parent().unwrap_or(state))?;
        let staged = target.with_extension("db.restoring");
        std::fs::copy(from.join(rel), &staged).with_context(|| format!("copying {}", rel.display()))?;
        remove_database(&target)?;
        std::fs::rename(&staged, &target)?;
        println!("restored {}", rel.display());
    }
    println!("restored {} database(s) from the backup of {} ms since the epoch", keep.len(), manifest.created_at_ms);
    Ok(())
}

/// A database file and its write-ahead log and shared-memory index.
fn remove_database(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gocoffee-backup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn db(path: &Path) -> Connection {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        let c = Connection::open(path).expect("open");
        c.pragma_update(None, "journal_mode", "WAL").expect("wal");
        c
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path).expect("open").query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn a_backup_taken_while_a_writer_holds_uncheckpointed_pages_restores_what_was_committed() {
        let dir = temp("roundtrip");
        let state = dir.join("state");
        let writer = db(&state.join("sqlite/default.db"));
        writer.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);").expect("write");
        db(&state.join("log.db")).execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("log");
        // Committed but still only in the -wal file, with the writer's connection open.
        assert!(state.join("sqlite/default.db-wal").exists());
        backup(&state, &dir.join("b1")).expect("backup");
        writer.execute("INSERT INTO t VALUES (4)", []).expect("after");
        db(&state.join("kv/new.db")).execute_batch("CREATE TABLE t (x);").expect("new store");
        drop(writer);

        restore(&dir.join("b1"), &state).expect("restore");
        assert_eq!(count(&state.join("sqlite/default.db")), 3, "what was committed when the backup was taken, nothing after");
        assert_eq!(count(&state.join("log.db")), 1);
        assert!(!state.join("kv/new.db").exists(), "a store made after the backup is gone");
    }

    #[test]
    fn a_backup_waits_for_a_transaction_in_flight_and_holds_it_whole() {
        let dir = temp("in-flight");
        let state = dir.join("state");
        db(&state.join("sqlite/default.db")).execute_batch("CREATE TABLE t (x);").expect("store");
        let log = db(&state.join("log.db"));
        log.execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);").expect("open transaction");
        let to = dir.join("b");
        std::thread::scope(|s| {
            let taking = s.spawn(|| backup(&state, &to));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!to.exists(), "no cut while a write is in flight");
            log.execute_batch("INSERT INTO t VALUES (2); COMMIT;").expect("commit");
            taking.join().expect("thread").expect("backup");
        });
        assert_eq!(count(&to.join("log.db")), 2, "the transaction, whole");
    }

    #[test]
    fn a_backup_never_overwrites_and_restore_refuses_a_folder_that_is_not_one() {
        let dir = temp("refusals");
        let state = dir.join("state");
        db(&state.join("log.db")).execute_batch("CREATE TABLE t (x);").expect("log");
        backup(&state, &dir.join("b")).expect("backup");
        assert!(backup(&state, &dir.join("b")).is_err(), "an existing folder is never overwritten");
        std::fs::create_dir_all(dir.join("junk")).expect("junk");
        let err = restore(&dir.join("junk"), &state).expect_err("not a backup");
        assert!(format!("{err:#}").contains("is not a backup"), "{err:#}");
        assert_eq!(count(&state.join("log.db")), 0, "the state is untouched");
    }
}

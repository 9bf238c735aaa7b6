//! The Spin shell: adapters for Spin's SQLite (or PostgreSQL), Redis and variables interfaces, and
//! the entry helpers every component calls ([`serve`] for HTTP, [`consume`] for the Redis
//! trigger, and [`delivery`]'s for profiles with HTTP triggers alone).
//! Resources are opened per request: a Spin component keeps no warm state.
#![cfg(target_arch = "wasm32")]

pub mod delivery;
mod emf;
pub mod live;
pub mod outbound;

use std::cell::OnceCell;
use std::sync::Arc;

use gocoffee_app::analytics::AnalyticsContext;
use gocoffee_app::auth::{KeySet, PemSigner};
use gocoffee_app::ports::{ImageBlobs, Images, OsEntropy, StoreError, StoreResult, SystemClock, TokenKeys, TokenSigner};
use gocoffee_app::{ApiError, Config, Function, Request, Response, Services};
use gocoffee_sql::analytics::SqlAnalyticsStore;
use gocoffee_sql::{Db, DbError, Publisher, Rows, SqliteOutboxRelay, SqliteStore, Value};
#[cfg(feature = "sqlite")]
use spin_sdk::sqlite;

/// Spin's `default` SQLite database.
#[cfg(feature = "sqlite")]
pub struct SpinSqliteDb(sqlite::Connection);

#[cfg(feature = "sqlite")]
impl SpinSqliteDb {
    pub fn open_default() -> Result<Self, sqlite::Error> {
        Self::open("default")
    }

    /// The database of that label (the component must be granted it in spin.toml).
    pub fn open(label: &str) -> Result<Self, sqlite::Error> {
        sqlite::Connection::open(label).map(SpinSqliteDb)
    }
}

#[cfg(feature = "sqlite")]
impl Db for SpinSqliteDb {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let params: Vec<sqlite::Value> = params
            .iter()
            .map(|p| match p {
                Value::Integer(n) => sqlite::Value::Integer(*n),
                Value::Real(f) => sqlite::Value::Real(*f),
                Value::Text(s) => sqlite::Value::Text(s.clone()),
                Value::Blob(b) => sqlite::Value::Blob(b.clone()),
                Value::Null => sqlite::Value::Null,
            })
            .collect();
        let result = self.0.execute(sql, &params).map_err(|e| match e {
            sqlite::Error::Io(message) => DbError::from_message(message),
            other => DbError::Other(other.to_string()),
        })?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        sqlite::Value::Integer(n) => Value::Integer(n),
                        sqlite::Value::Real(f) => Value::Real(f),
                        sqlite::Value::Text(s) => Value::Text(s),
                        sqlite::Value::Blob(b) => Value::Blob(b),
                        sqlite::Value::Null => Value::Null,
                    })
                    .collect()
            })
            .collect();
        Ok(Rows { columns: result.columns, rows })
    }
}

/// A PostgreSQL database through Spin's `postgres` interface (`spin:postgres/postgres@3.0.0`, the
/// one Spin 3.0 and later, Fermyon Cloud and Fermyon Wasm Functions all offer), for platforms
/// without SQLite. The statements are the SQLite adapters', numbered as PostgreSQL wants.
pub struct SpinPgDb(spin_sdk::pg3::Connection);

impl SpinPgDb {
    /// `address`: `postgres://user:password@host:port/database`, which the component's
    /// `allowed_outbound_hosts` must allow (`postgres://host:port`).
    pub fn open(address: &str) -> Result<Self, String> {
        spin_sdk::pg3::Connection::open(address).map(SpinPgDb).map_err(|e| format!("{e:?}"))
    }
}

impl Db for SpinPgDb {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        use spin_sdk::pg3::{DbValue, ParameterValue};
        let params: Vec<ParameterValue> = params
            .iter()
            .map(|p| match p {
                Value::Integer(n) => ParameterValue::Int64(*n),
                Value::Real(f) => ParameterValue::Floating64(*f),
                Value::Text(s) => ParameterValue::Str(s.clone()),
                Value::Blob(b) => ParameterValue::Binary(b.clone()),
                Value::Null => ParameterValue::DbNull,
            })
            .collect();
        let result = self.0.query(&gocoffee_sql::dialect::numbered_parameters(sql), &params).map_err(|e| {
            let text = format!("{e:?}");
            match gocoffee_sql::dialect::sqlstate(&text) {
                Some(code) => DbError::from_sqlstate(code, text.clone()),
                None => DbError::Other(text),
            }
        })?;
        let columns = result.columns.into_iter().map(|c| c.name).collect();
        let rows = result
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        DbValue::Int64(n) => Ok(Value::Integer(n)),
                        DbValue::Int32(n) => Ok(Value::Integer(n.into())),
                        DbValue::Int16(n) => Ok(Value::Integer(n.into())),
                        DbValue::Int8(n) => Ok(Value::Integer(n.into())),
                        DbValue::Boolean(b) => Ok(Value::Integer(b.into())),
                        DbValue::Floating64(f) => Ok(Value::Real(f)),
                        DbValue::Floating32(f) => Ok(Value::Real(f.into())),
                        DbValue::Str(s) => Ok(Value::Text(s)),
                        DbValue::Binary(b) => Ok(Value::Blob(b)),
                        DbValue::DbNull => Ok(Value::Null),
                        other => Err(DbError::Other(format!("a column the adapters don't read: {other:?}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rows { columns, rows })
    }

    fn dialect(&self) -> gocoffee_sql::Dialect {
        gocoffee_sql::Dialect::Postgres
    }
}

/// The component's database: PostgreSQL when `database_url` is set, else Spin's SQLite database
/// `label` (in a build with SQLite).
pub fn open_db(label: &str) -> Result<Box<dyn Db>, String> {
    match variable("database_url").filter(|url| !url.is_empty()) {
        Some(url) => Ok(Box::new(SpinPgDb::open(&url).map_err(|e| format!("opening the PostgreSQL database: {e}"))?)),
        #[cfg(feature = "sqlite")]
        None => Ok(Box::new(SpinSqliteDb::open(label).map_err(|e| format!("opening the SQLite database {label}: {e}"))?)),
        #[cfg(not(feature = "sqlite"))]
        None => Err(format!("database_url is not set, and this build has no SQLite for `{label}`")),
    }
}

/// Menu pictures in Spin's `default` key-value store. One value per picture: its content type,
/// a newline, then the bytes, so a picture and its type are always written together. The store
/// is opened on first use, so menu reads without pictures never open it.
#[derive(Default)]
pub struct SpinKvImageBlobs(OnceCell<spin_sdk::key_value::Store>);

impl SpinKvImageBlobs {
    fn store(&self) -> StoreResult<&spin_sdk::key_value::Store> {
        if let Some(store) = self.0.get() {
            return Ok(store);
        }
        let store = spin_sdk::key_value::Store::open_default().map_err(kv_error)?;
        Ok(self.0.get_or_init(|| store))
    }
}

fn kv_error(e: spin_sdk::key_value::Error) -> StoreError {
    StoreError::Unavailable(format!("key-value: {e}"))
}

#[async_trait::async_trait(?Send)]
impl ImageBlobs for SpinKvImageBlobs {
    async fn put_image(&self, key: &str, content_type: &str, bytes: &[u8]) -> StoreResult<()> {
        let mut value = Vec::with_capacity(content_type.len() + 1 + bytes.len());
        value.extend_from_slice(content_type.as_bytes());
        value.push(b'\n');
        value.extend_from_slice(bytes);
        self.store()?.set(key, &value).map_err(kv_error)
    }

    async fn image(&self, key: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        let Some(mut value) = self.store()?.get(key).map_err(kv_error)? else { return Ok(None) };
        let Some(split) = value.iter().position(|&b| b == b'\n') else {
            return Err(StoreError::Unavailable(format!("key-value entry `{key}` is not a picture")));
        };
        let bytes = value.split_off(split + 1);
        value.truncate(split);
        Ok(Some((String::from_utf8_lossy(&value).into_owned(), bytes)))
    }

    async fn delete_image(&self, key: &str) -> StoreResult<()> {
        self.store()?.delete(key).map_err(kv_error)
    }
}

/// Publishes on Redis channels through Spin's outbound Redis. Connects on first use, so a
/// request with nothing to publish never opens a connection.
pub struct SpinRedisPublisher {
    address: String,
    connection: OnceCell<spin_sdk::redis::Connection>,
}

impl SpinRedisPublisher {
    pub fn new(address: String) -> Self {
        SpinRedisPublisher { address, connection: OnceCell::new() }
    }
}

impl Publisher for SpinRedisPublisher {
    fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), String> {
        let connection = match self.connection.get() {
            Some(c) => c,
            None => {
                let c = spin_sdk::redis::Connection::open(&self.address).map_err(|e| format!("connecting to redis: {e}"))?;
                self.connection.get_or_init(|| c)
            }
        };
        connection.publish(channel, payload).map_err(|e| format!("publishing to {channel}: {e}"))
    }
}

/// A Spin variable of this component, if it is set.
pub fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok()
}

/// JSON log lines on stderr, which Spin (and the local host) collect per component. Installed
/// once per instance; an instance serves one invocation.
fn init_logging() {
    let subscriber = tracing_subscriber::fmt().json().with_ansi(false).with_writer(std::io::stderr).with_target(false).finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The app's metrics as CloudWatch Embedded Metric Format lines on stdout, written when the
/// invocation ends: the local host reads them into its Prometheus endpoint; on Spin and
/// Fermyon they land in the component's log, for whatever collects it.
fn init_metrics() -> Option<&'static emf::EmfRecorder> {
    static METRICS: std::sync::OnceLock<Option<&'static emf::EmfRecorder>> = std::sync::OnceLock::new();
    *METRICS.get_or_init(|| {
        let recorder: &'static emf::EmfRecorder = Box::leak(Box::new(emf::EmfRecorder::new(gocoffee_app::telemetry::NAMESPACE)));
        metrics::set_global_recorder(recorder).ok()?;
        gocoffee_app::telemetry::describe();
        Some(recorder)
    })
}

fn flush_metrics(recorder: Option<&'static emf::EmfRecorder>) {
    if let Some(recorder) = recorder {
        let _ = recorder.flush(gocoffee_app::ports::Clock::now_ms(&SystemClock), std::io::stdout().lock());
    }
}

/// Runs `f` with the services of one invocation (and a function's own `extension`), or explains
/// why they could not be opened.
pub async fn with_services<T>(
    function: Option<&Function>,
    extension: Option<&dyn std::any::Any>,
    f: impl AsyncFnOnce(&Services<'_>) -> T,
) -> Result<T, String> {
    with_services_signing(function, extension, None, f).await
}

async fn with_services_signing<T>(
    function: Option<&Function>,
    extension: Option<&dyn std::any::Any>,
    signer: Option<&dyn TokenSigner>,
    f: impl AsyncFnOnce(&Services<'_>) -> T,
) -> Result<T, String> {
    init_logging();
    let metrics = init_metrics();
    // The public keys are parsed when a token is to be checked, not for every request.
    let config = Config::from_lookup(|name| if name == TOKEN_PUBLIC_KEYS { None } else { variable(name) }).map_err(|e| format!("configuration: {e}"))?;
    let keys = LazyKeys { pems: variable(TOKEN_PUBLIC_KEYS), parsed: OnceCell::new() };
    let db = open_db("default")?;
    let store = SqliteStore::open(&db).map_err(|e| format!("preparing the schema: {e}"))?;
    let publisher = delivery::SpinPublisher::default();
    let relay = SqliteOutboxRelay { db: &db, publisher };
    // Only the menu component is granted key-value (spin.toml); elsewhere pictures are out of reach.
    let blobs = function.is_some_and(|f| f.images).then(SpinKvImageBlobs::default);
    let svc = Services {
        users: &store,
        menu: &store,
        orders: &store,
        relay: &relay,
        kitchen_queue: None,
        kitchen: &store,
        images: blobs.as_ref().map(|b| Images::Served(b)),
        limiter: Some(&store),
        tokens: &keys,
        signer,
        clock: &SystemClock,
        entropy: &OsEntropy,
        config: &config,
        extension,
    };
    let result = f(&svc).await;
    flush_metrics(metrics);
    Ok(result)
}

const TOKEN_PUBLIC_KEYS: &str = "token_public_keys";

/// The keys tokens are checked against (`token_public_keys`), parsed on first use: most requests
/// carry no token, and parsing the PEM blocks in every instance was 5 % of a menu read.
struct LazyKeys {
    pems: Option<String>,
    parsed: OnceCell<Result<Arc<KeySet>, String>>,
}

#[async_trait::async_trait(?Send)]
impl TokenKeys for LazyKeys {
    async fn keys(&self) -> StoreResult<Arc<KeySet>> {
        let parsed = self.parsed.get_or_init(|| match self.pems.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(pems) => KeySet::from_pems(pems).map(Arc::new).map_err(|why| format!("{TOKEN_PUBLIC_KEYS}: {why}")),
            None => Err(format!("{TOKEN_PUBLIC_KEYS} is not set")),
        });
        parsed.clone().map_err(StoreError::Unavailable)
    }
}

/// What a component's entry point returns: its whole body as a boxed future. The entry points
/// are plain functions that box their future here, so its code (every route, store and client
/// under it) is compiled once, in this crate, rather than again in each component crate that
/// awaits it: a component crate is left with its exports.
pub type Entry<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + 'a>>;

/// The whole body of an HTTP component serving `function`.
pub fn serve(function: &Function, req: Request) -> Entry<'_, Response> {
    Box::pin(serve_with(function, None, req))
}

/// The identity component: [`serve`], holding the key tokens are signed with
/// (`token_signing_key`), which no other component is given. It is parsed only when a token is
/// signed.
pub fn serve_identity(req: Request) -> Entry<'static, Response> {
    Box::pin(async move {
        let signer = LazyPemSigner { pem: variable("token_signing_key"), parsed: OnceCell::new() };
        serve_signing(&gocoffee_app::identity::FUNCTION, None, Some(&signer), req).await
    })
}

/// A PEM signing key, parsed on first use.
struct LazyPemSigner {
    pem: Option<String>,
    parsed: OnceCell<Result<PemSigner, String>>,
}

impl LazyPemSigner {
    fn get(&self) -> StoreResult<&PemSigner> {
        let parsed = self.parsed.get_or_init(|| match &self.pem {
            Some(pem) => PemSigner::from_pem(pem).map_err(|e| format!("token_signing_key: {e}")),
            None => Err("token_signing_key is not set".into()),
        });
        parsed.as_ref().map_err(|e| StoreError::Unavailable(e.clone()))
    }
}

#[async_trait::async_trait(?Send)]
impl TokenSigner for LazyPemSigner {
    async fn kid(&self) -> StoreResult<String> {
        Ok(self.get()?.kid().to_owned())
    }

    async fn sign(&self, message: &[u8]) -> StoreResult<Vec<u8>> {
        self.get()?.sign(message).await
    }
}

/// An HTTP component whose routes need what it brings itself (`extension`).
pub async fn serve_with(function: &Function, extension: Option<&dyn std::any::Any>, req: Request) -> Response {
    serve_signing(function, extension, None, req).await
}

async fn serve_signing(function: &Function, extension: Option<&dyn std::any::Any>, signer: Option<&dyn TokenSigner>, mut req: Request) -> Response {
    // Spin sets `spin-client-addr` itself, over any a client sent: who anonymous calls count as.
    if let Some(addr) = req.headers().get("spin-client-addr").and_then(|v| v.to_str().ok()).and_then(gocoffee_app::ClientAddr::parse) {
        req.extensions_mut().insert(addr);
    }
    match with_services_signing(Some(function), extension, signer, async |svc| gocoffee_app::handle(svc, &[function], req).await).await {
        Ok(response) => response,
        Err(cause) => {
            tracing::error!(%cause, "service unavailable");
            ApiError::unavailable().into_response()
        }
    }
}

/// The analytics read model, in Spin's `analytics` database: apart from the write side's. (On
/// PostgreSQL, its own table in the one database.)
fn analytics_context() -> Result<AnalyticsContext, String> {
    let db = open_db(ANALYTICS_DATABASE)?;
    let store = SqlAnalyticsStore::open(db).map_err(|e| format!("preparing the analytics schema: {e}"))?;
    Ok(AnalyticsContext { store: Box::new(store) })
}

/// The analytics database's label in spin.toml.
pub const ANALYTICS_DATABASE: &str = "analytics";

/// The whole body of the analytics HTTP component.
pub fn serve_analytics(req: Request) -> Entry<'static, Response> {
    Box::pin(async move {
        match analytics_context() {
            Ok(ac) => serve_with(&gocoffee_app::analytics::FUNCTION, Some(&ac), req).await,
            Err(cause) => {
                tracing::error!(%cause, "service unavailable");
                ApiError::unavailable().into_response()
            }
        }
    })
}

/// The whole body of the Redis-triggered analytics projector (the `analytics` channel). Errors
/// read as [`consume`]'s do.
pub fn consume_analytics(payload: &[u8]) -> Entry<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let ac = analytics_context().map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?;
        with_services(None, Some(&ac), async |svc| gocoffee_app::analytics::consume(svc, payload).await)
            .await
            .map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?
            .map_err(anyhow::Error::from)
    })
}

/// The whole body of the Redis-triggered order consumer, on the orders and payments channels
/// (Spin doesn't say which a message came from; the payload does). An error makes the trigger
/// redeliver (the local host retries with backoff, then dead-letters). Its message is the last
/// line the component writes to stderr (spin-sdk prints it), and it starts `poison message:` or
/// `retryable:` ([`ConsumerError`](gocoffee_app::consumer::ConsumerError)'s display), which is how
/// the host tells a message that can never succeed from a dependency that is down.
pub fn consume(payload: &[u8]) -> Entry<'_, anyhow::Result<()>> {
    Box::pin(async move {
        with_services(None, None, async |svc| {
            gocoffee_app::consumer::handle_stream_message(svc, payload).await?;
            // Publish what handling queued (OrderConfirmed); if that fails the next relay sends it.
            if let Err(e) = gocoffee_app::ports::EventRelay::relay(svc.relay).await {
                tracing::warn!(error = %e, "outbox relay failed; a later request relays it");
            }
            Ok::<_, gocoffee_app::consumer::ConsumerError>(())
        })
        .await
        .map_err(|cause| anyhow::anyhow!("retryable: {cause}"))?
        .map_err(anyhow::Error::from)
    })
}

/// The whole body of a cron component (Fermyon's spin-trigger-cron world, whose WIT the host
/// keeps in `host/wit/deps/spin-cron@2.0.0`): each tick runs `$run`, an async function returning
/// `Result<(), String>`; an error is printed and returned to the trigger. For crates in
/// `functions/` (the WIT path is relative to the calling crate), which must allow `unsafe_code`
/// for the exported C ABI the bindings generate.
#[macro_export]
macro_rules! cron_component {
    ($run:path) => {
        mod bindings {
            spin_sdk::wit_bindgen::generate!({
                world: "spin-cron",
                path: "../../host/wit/deps/spin-cron@2.0.0",
                runtime_path: "::spin_sdk::wit_bindgen::rt",
            });
        }

        struct CronComponent;

        impl bindings::Guest for CronComponent {
            fn handle_cron_event(_metadata: bindings::fermyon::spin_cron::cron_types::Metadata) -> Result<(), bindings::fermyon::spin_cron::cron_types::Error> {
                spin_sdk::http::run(async {
                    $run().await.map_err(|e| {
                        eprintln!("{e}");
                        bindings::fermyon::spin_cron::cron_types::Error::Other(e)
                    })
                })
            }
        }

        bindings::export!(CronComponent with_types_in bindings);
    };
}

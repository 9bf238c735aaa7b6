//! The wasmtime side: one engine with a pooling allocator and copy-on-write memory images, one
//! linker with WASI, WASI HTTP and the Spin interfaces, each component compiled once (and cached
//! on disk) and pre-instantiated, and the per-invocation store state.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::log::{Failure, MessageLog};
use crate::manifest::{Manifest, Variables};
pub use crate::outbound::AllowedHosts;
use crate::spin::cron::CronTriggerPre;
use crate::spin::cron::fermyon::spin_cron::cron_types::Metadata as CronMetadata;
use crate::spin::trigger::RedisTriggerPre;
use crate::sqlite::{KV_SCHEMA, Pools};

/// How often the epoch ticks; a guest gets `GUEST_TIMEOUT` worth of ticks per invocation.
const EPOCH_TICK: Duration = Duration::from_millis(100);
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Linear memory one invocation may grow to, at most (a platform may set less:
/// [`Options::guest_memory`]).
const MAX_GUEST_MEMORY: usize = crate::platform::DEFAULT_GUEST_MEMORY;
/// Invocations that can be live at once by default (`--max-instances`): the pool's size. HTTP
/// requests take slots through the server's gate, which leaves one per Redis subscriber free,
/// so deliveries never find the pool full; past the gate, a request waits briefly, then 503.
pub const DEFAULT_MAX_INSTANCES: u32 = 128;
/// How much of a component's stderr a delivery keeps, to read why it failed.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// What one component may use, fixed at start-up.
#[derive(Debug)]
pub struct ComponentConfig {
    pub id: String,
    pub allowed_hosts: AllowedHosts,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    /// The models it may use through the llm interface.
    pub ai_models: Vec<String>,
    pub variables: HashMap<String, String>,
    pub environment: Vec<(String, String)>,
}

/// State shared by every invocation.
pub struct Shared {
    pub sqlite: Pools,
    pub kv: Pools,
    pub log: Arc<MessageLog>,
    /// The Redis triggers' addresses (`(host, port)`): the embedded log stands in for them, so a
    /// component that publishes there feeds the triggers. Every other address is a real server.
    pub redis_log: Vec<(String, u16)>,
    /// Idle PostgreSQL connections, by connection string.
    pub pg: crate::postgres::PgPools,
    /// The open WebSocket connections, which components push to through the management API.
    pub sockets: Arc<crate::sockets::Sockets>,
    /// The models behind the llm interface.
    pub llm: Arc<crate::llm::Llm>,
}

/// The data of one invocation's store.
pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: OutboundHttp,
    pub component: Arc<ComponentConfig>,
    pub shared: Arc<Shared>,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Outbound HTTP, limited to the component's `allowed_outbound_hosts`. An HTTP-triggered
/// invocation also has `chain`: a request to `http://<component>.spin.internal/...` runs that
/// component in process (Spin's service chaining, which Spin offers the HTTP trigger alone).
/// From any trigger, `http://<component>.spin.internal/@connections/...` is the management API
/// of that component's WebSocket connections ([`crate::sockets`]).
pub struct OutboundHttp {
    component: Arc<ComponentConfig>,
    chain: Option<Weak<Runtime>>,
    sockets: Arc<crate::sockets::Sockets>,
}

/// The component a service-chaining host names: `<id>.spin.internal`, one label before the
/// suffix, as Spin reads it (`a.b.spin.internal` is an ordinary host name).
pub fn chained_component(uri: &http::Uri) -> Option<&str> {
    let id = uri.host()?.strip_suffix(".spin.internal")?;
    (!id.is_empty() && !id.contains('.')).then_some(id)
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let url = request.uri().to_string();
        if !self.component.allowed_hosts.allows_url(&url) {
            tracing::warn!(component = %self.component.id, %url, "outbound request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some(target) = chained_component(request.uri()).map(str::to_owned)
            && request.uri().path().starts_with(crate::sockets::MANAGEMENT_PREFIX)
        {
            let sockets = self.sockets.clone();
            return Box::new(async move {
                let (parts, body) = request.into_parts();
                let limited = http_body_util::Limited::new(body, crate::sockets::MAX_MESSAGE + 1).collect().await;
                let (status, payload) = match limited {
                    Ok(collected) => sockets.manage(&target, &parts.method, parts.uri.path(), collected.to_bytes()),
                    Err(_) => (413, r#"{"__type":"PayloadTooLargeException","message":"the message is over 128 KiB"}"#.to_owned()),
                };
                let body = http_body_util::Full::new(bytes::Bytes::from(payload)).map_err(|never: std::convert::Infallible| match never {}).boxed_unsync();
                let response = http::Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
                Ok((response, Box::new(async { Ok(()) }) as Box<dyn std::future::Future<Output = _> + Send>))
            });
        }
        if let Some(runtime) = self.chain.as_ref().and_then(Weak::upgrade)
            && let Some(target) = chained_component(request.uri()).map(str::to_owned)
        {
            let caller = self.component.id.clone();
            return Box::new(async move {
                let response = runtime.chained(&caller, &target, request).await?;
                Ok((response, Box::new(async { Ok(()) }) as Box<dyn std::future::Future<Output = _> + Send>))
            });
        }
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>))
        })
    }
}

pub struct LoadedComponent {
    pub config: Arc<ComponentConfig>,
    pub http: Option<ProxyPre<HostState>>,
    pub redis: Option<RedisTriggerPre<HostState>>,
    pub cron: Option<CronTriggerPre<HostState>>,
}

pub struct Runtime {
    pub engine: Engine,
    pub shared: Arc<Shared>,
    pub components: HashMap<String, LoadedComponent>,
    /// Itself, for the service chaining of the invocations it runs.
    me: Weak<Runtime>,
    guest_memory: usize,
}

/// Why a component could not answer an HTTP request.
pub enum InvokeError {
    /// No instance could be had (the pool is full): back-pressure, 503.
    Busy(String),
    Failed(anyhow::Error),
}

/// How much of each linear memory and table stays resident in a freed slot, where the kernel
/// can say which pages were written ([`engine`]). Bounds the host's resident memory at about
/// `max_instances` times this, for slots whose guests used that much.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
const KEEP_RESIDENT_TABLE: usize = 1 << 20;

pub fn engine(max_instances: u32) -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 4)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 4)
        .total_stacks(max_instances)
        .max_memory_size(MAX_GUEST_MEMORY)
        // Freed slots are decommitted (madvise) in batches rather than one by one: each call
        // costs every core a TLB shootdown. Hello flat out on two cores, this build beside one
        // without it: 11.0k -> 13.4k req/s.
        .decommit_batch_size(max_instances as usize / 4 + 1);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        // Linux 6.7+: a freed slot's pages that the guest wrote are found with PAGEMAP_SCAN and
        // put back to the image's contents in place, so the next instance in that slot takes no
        // page faults (and no TLB shootdowns) for them. Two cores, flat out, A/B in one run:
        // hello 13.9k -> 25.2k req/s, GET /api/v1/menu 1.65k -> 2.06k. Without the ioctl,
        // keeping memory resident means zeroing all of it per instance (1 MiB made hello
        // slower, 7.5k), so slots are decommitted instead.
        pool.pagemap_scan(wasmtime::Enabled::Yes).linear_memory_keep_resident(KEEP_RESIDENT_MEMORY).table_keep_resident(KEEP_RESIDENT_TABLE);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e}")).context("configuring wasmtime")?;
    let ticker = engine.clone();
    std::thread::Builder::new().name("epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            ticker.increment_epoch();
        }
    })?;
    Ok(engine)
}

/// Compiles `wasm`, or loads the machine code an earlier run compiled from the same bytes with an
/// engine of the same configuration.
fn load_component(engine: &Engine, wasm: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {} (build the components first: make components)", wasm.display()))?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let key = format!("{:x}-{:016x}", Sha256::digest(&bytes), engine_hash.finish());
    let cached = cache_dir.join(format!("{key}.cwasm"));
    if cached.exists() {
        // SAFETY: the file is machine code this host wrote below for this engine configuration
        // (the key covers the wasm bytes and the engine's compatibility hash), and wasmtime
        // checks its header again before use.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable compiled component"),
        }
    }
    let started = std::time::Instant::now();
    let component = Component::new(engine, &bytes).map_err(|e| anyhow::anyhow!("{e:?}")).with_context(|| format!("compiling {}", wasm.display()))?;
    tracing::info!(component = %wasm.display(), ms = started.elapsed().as_millis() as u64, "compiled");
    std::fs::create_dir_all(cache_dir)?;
    let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
    let serialized = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, &cached)?;
    Ok(component)
}

pub struct Options {
    pub manifest_path: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Linear memory one invocation may grow to (the platform's limit).
    pub guest_memory: usize,
    /// The llm interface's models, in Spin's layout.
    pub ai_models: PathBuf,
    /// Where inference goes, if anywhere.
    pub llm_remote: Option<crate::llm::Remote>,
}

impl Runtime {
    pub fn new(engine: Engine, manifest: &Manifest, variables: &Variables, opts: &Options, log: Arc<MessageLog>) -> Result<Arc<Runtime>> {
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::spin::SpinImports::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(|e| anyhow::anyhow!("{e}"))?;

        let http_components: Vec<&str> = manifest.trigger.http.iter().map(|t| t.component.as_str()).collect();
        let redis_components: Vec<&str> = manifest.trigger.redis.iter().map(|t| t.component.as_str()).collect();
        let cron_components: Vec<&str> = manifest.trigger.cron.iter().map(|t| t.component.as_str()).collect();
        let mut components = HashMap::new();
        for (id, decl) in &manifest.component {
            let id_str = id.as_str();
            if !http_components.contains(&id_str) && !redis_components.contains(&id_str) && !cron_components.contains(&id_str) {
                continue;
            }
            let hosts: Vec<String> = decl.allowed_outbound_hosts.iter().map(|h| variables.expand(h)).collect::<Result<_>>()?;
            let mut vars = HashMap::new();
            for (name, template) in &decl.variables {
                vars.insert(name.clone(), variables.expand(template).with_context(|| format!("component {id}, variable {name}"))?);
            }
            let config = Arc::new(ComponentConfig {
                id: id.clone(),
                allowed_hosts: AllowedHosts::parse(&hosts).with_context(|| format!("component {id}"))?,
                key_value_stores: decl.key_value_stores.clone(),
                sqlite_databases: decl.sqlite_databases.clone(),
                ai_models: decl.ai_models.clone(),
                variables: vars,
                environment: decl.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            });
            let path = manifest.source_path(&opts.manifest_path, id).context("component source")?;
            let component = load_component(&engine, &path, &opts.cache_dir)?;
            let pre = linker.instantiate_pre(&component).map_err(|e| anyhow::anyhow!("{e:?}")).with_context(|| format!("linking component {id}"))?;
            let http = if http_components.contains(&id.as_str()) {
                Some(
                    ProxyPre::new(pre.clone())
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .with_context(|| format!("component {id} does not export wasi:http/incoming-handler@0.2.0"))?,
                )
            } else {
                None
            };
            let redis = if redis_components.contains(&id.as_str()) {
                Some(
                    RedisTriggerPre::new(pre.clone())
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .with_context(|| format!("component {id} does not export fermyon:spin/inbound-redis"))?,
                )
            } else {
                None
            };
            let cron = if cron_components.contains(&id.as_str()) {
                Some(
                    CronTriggerPre::new(pre)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .with_context(|| format!("component {id} does not export the cron trigger's handle-cron-event"))?,
                )
            } else {
                None
            };
            components.insert(id.clone(), LoadedComponent { config, http, redis, cron });
        }
        let app_address = manifest.application.trigger.redis.as_ref().map(|r| r.address.as_str());
        let mut redis_log = Vec::new();
        for t in &manifest.trigger.redis {
            let Some(address) = t.address.as_deref().or(app_address) else { continue };
            let address = variables.expand(address).with_context(|| format!("the redis trigger of channel {}", t.channel))?;
            redis_log.extend(crate::spin::redis_endpoint(&address));
        }
        let shared = Arc::new(Shared {
            sqlite: Pools::new(opts.state_dir.join("sqlite"), &[]),
            kv: Pools::new(opts.state_dir.join("kv"), KV_SCHEMA),
            log,
            redis_log,
            pg: Default::default(),
            sockets: Default::default(),
            llm: Arc::new(crate::llm::Llm::new(opts.ai_models.clone(), opts.llm_remote.clone())?),
        });
        Ok(Arc::new_cyclic(|me| Runtime { engine, shared, components, me: me.clone(), guest_memory: opts.guest_memory.min(MAX_GUEST_MEMORY) }))
    }

    /// A runtime with no components, for tests of what the host gives a store.
    #[cfg(test)]
    pub fn without_components(engine: Engine, shared: Arc<Shared>) -> Arc<Runtime> {
        Arc::new_cyclic(|me| Runtime { engine, shared, components: HashMap::new(), me: me.clone(), guest_memory: MAX_GUEST_MEMORY })
    }

    /// A store for one invocation of `component`; with `stderr`, the guest's stderr also lands
    /// there.
    pub fn store(&self, component: &Arc<ComponentConfig>, stderr: Option<StderrTail>) -> Store<HostState> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestStdout::default());
        match stderr {
            Some(tail) => wasi.stderr(tail),
            None => wasi.inherit_stderr(),
        };
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        let allowed = component.clone();
        // TCP as Spin offers it: any connection allowed_outbound_hosts allows, nothing else.
        wasi.allow_tcp(true);
        wasi.socket_addr_check(move |addr, used_for| {
            let ok = match used_for {
                SocketAddrUse::TcpConnect => allowed.allowed_hosts.allows_tcp(addr),
                // A connect first asks for the ephemeral bind it implies (the unspecified address,
                // port 0), and Spin lets connects through; every other bind, any listening socket
                // and UDP are refused, as under Spin.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            if !ok && !matches!(used_for, SocketAddrUse::TcpBind) {
                tracing::warn!(component = %allowed.id, %addr, ?used_for, "socket denied: not in allowed_outbound_hosts");
            }
            Box::pin(async move { ok })
        });
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHttp { component: component.clone(), chain: None, sockets: self.shared.sockets.clone() },
            component: component.clone(),
            shared: self.shared.clone(),
            limits: StoreLimitsBuilder::new().memory_size(self.guest_memory).instances(16).build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline((GUEST_TIMEOUT.as_millis() / EPOCH_TICK.as_millis()) as u64);
        store
    }

    /// Hands one message to a Redis-triggered component, and says how it failed if it did.
    /// Spin's `handle-message` fails with a bare `error`, so the reason is read from what the
    /// component wrote to stderr last: Go Coffee's consumers end with a line that starts
    /// `poison message:` or `retryable:`. The host's own failure to start it is transient.
    pub async fn deliver(&self, component: &str, payload: Vec<u8>) -> Result<(), Failure> {
        let loaded = self.components.get(component).ok_or_else(|| Failure::Fault(format!("no component {component}")))?;
        let pre = loaded.redis.as_ref().ok_or_else(|| Failure::Fault(format!("component {component} has no redis trigger")))?;
        let tail = StderrTail::default();
        let mut store = self.store(&loaded.config, Some(tail.clone()));
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| Failure::Transient(format!("instantiating {component}: {e:?}")))?;
        // Running wasm past the epoch deadline (a loop on this payload) is a fault; waiting in
        // the host past twice that (a database lock, say) is a dependency being slow: transient.
        let call = instance.fermyon_spin_inbound_redis().call_handle_message(&mut store, &payload);
        let Ok(result) = tokio::time::timeout(2 * GUEST_TIMEOUT, call).await else {
            return Err(Failure::Transient(format!("component {component} waited on the host past {:?}", 2 * GUEST_TIMEOUT)));
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(classify(component, &tail.text())),
            Err(trap) => Err(Failure::Fault(format!("component {component} trapped: {trap:?}"))),
        }
    }
}

impl Runtime {
    /// Runs `component`'s HTTP handler on a fresh instance, on a task of its own so it can go on
    /// streaming the body after the headers, for at most GUEST_TIMEOUT of wall-clock time (the
    /// epoch deadline is wall-clock too, but checked only while wasm runs, so it never ends a
    /// guest blocked on a slow reader or a host call). `permit`
    /// is the instance slot the caller took, held as long as the instance lives.
    pub async fn serve_http<B>(
        &self,
        component: &str,
        req: hyper::Request<B>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let failed = |e: anyhow::Error| InvokeError::Failed(e);
        let loaded = self.components.get(component).ok_or_else(|| failed(anyhow::anyhow!("component {component} is not loaded")))?;
        let pre = loaded.http.clone().ok_or_else(|| failed(anyhow::anyhow!("component {component} is not an HTTP component")))?;
        let mut store = self.store(&loaded.config, None);
        store.data_mut().hooks.chain = Some(self.me.clone());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(|e| failed(anyhow::anyhow!("{e}")))?;
        let out = store.data_mut().http().new_response_outparam(sender).map_err(|e| failed(anyhow::anyhow!("{e}")))?;
        let task = tokio::task::spawn(async move {
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await.map_err(|e| InvokeError::Busy(format!("instantiating: {e:?}")))?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await.map_err(|e| InvokeError::Failed(anyhow::anyhow!("{e:?}")))
            };
            tokio::time::timeout(GUEST_TIMEOUT, run).await.unwrap_or_else(|_| Err(InvokeError::Failed(anyhow::anyhow!("ran past {GUEST_TIMEOUT:?}"))))
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(failed(anyhow::anyhow!("the component answered with an error: {code:?}"))),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(failed(anyhow::anyhow!("the component returned without setting a response"))),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(failed(e.into())),
            },
        }
    }

    /// A chained request from `caller` to `target`, in process, as Spin runs it: the target must
    /// have an HTTP trigger (a private route or a public one), and sees the request as matched by
    /// `/...` with the whole path as its path info, no `Host` header, the client `0.0.0.0:0`, and
    /// the authority `<target>.spin.internal`. Spin appends its `spin-*` headers to any the caller
    /// sent; here they replace them, so a caller can't pose as another client. The call takes no
    /// slot at the HTTP gate (its caller holds one) but does take an instance: with the pool
    /// full, or the target failing, the caller gets a 503 or 500 answer, as from any server.
    async fn chained(
        &self,
        caller: &str,
        target: &str,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> wasmtime_wasi_http::Result<http::Response<wasmtime_wasi_http::WasiBody>> {
        let started = std::time::Instant::now();
        if self.components.get(target).is_none_or(|c| c.http.is_none()) {
            tracing::warn!(component = %caller, target, "chained request denied: no HTTP-triggered component of that name");
            return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
        }
        let (mut parts, body) = request.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        parts.headers.remove(http::header::HOST);
        for (name, value) in [
            ("spin-full-url", format!("http://localhost{path_and_query}")),
            ("spin-path-info", path.clone()),
            ("spin-matched-route", "/...".to_owned()),
            ("spin-raw-component-route", "/...".to_owned()),
            ("spin-component-route", String::new()),
            ("spin-base-path", "/".to_owned()),
            ("spin-client-addr", "0.0.0.0:0".to_owned()),
        ] {
            if let Ok(value) = http::HeaderValue::try_from(value) {
                parts.headers.insert(name, value);
            }
        }
        let response = match self.serve_http(target, http::Request::from_parts(parts, body), None).await {
            Ok(response) => response,
            Err(InvokeError::Busy(why)) => {
                tracing::warn!(component = %caller, target, why, "chained request: no instance free: 503");
                plain_response(503)
            }
            Err(InvokeError::Failed(e)) => {
                tracing::error!(component = %caller, target, error = %format!("{e:#}"), "chained component failed");
                plain_response(500)
            }
        };
        let status = response.status().as_u16();
        tracing::info!(%method, %path, status, component = target, caller, us = started.elapsed().as_micros() as u64, "chained request");
        Ok(response)
    }
}

/// An empty answer with `status`.
fn plain_response(status: u16) -> http::Response<wasmtime_wasi_http::WasiBody> {
    let mut response = http::Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

impl Runtime {
    /// Runs a cron-triggered component once, as spin-trigger-cron does on each tick: `timestamp`
    /// is the Unix time in seconds. A failure is logged by the caller; the next tick runs anyway.
    pub async fn tick(&self, component: &str, timestamp: u64) -> Result<(), String> {
        let loaded = self.components.get(component).ok_or_else(|| format!("no component {component}"))?;
        let pre = loaded.cron.as_ref().ok_or_else(|| format!("component {component} has no cron trigger"))?;
        let tail = StderrTail::default();
        let mut store = self.store(&loaded.config, Some(tail.clone()));
        let instance = pre.instantiate_async(&mut store).await.map_err(|e| format!("instantiating {component}: {e:?}"))?;
        let call = instance.call_handle_cron_event(&mut store, CronMetadata { timestamp });
        let Ok(result) = tokio::time::timeout(2 * GUEST_TIMEOUT, call).await else {
            return Err(format!("component {component} ran past {:?}", 2 * GUEST_TIMEOUT));
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("component {component} failed: {e:?}; {}", tail.text().lines().last().unwrap_or_default())),
            Err(trap) => Err(format!("component {component} trapped: {trap:?}")),
        }
    }
}

/// The failure a component reported on its last stderr line that says one.
fn classify(component: &str, stderr: &str) -> Failure {
    for line in stderr.lines().rev() {
        if let Some(why) = line.strip_prefix("poison message:") {
            return Failure::Poison(why.trim().to_owned());
        }
        if let Some(why) = line.strip_prefix("retryable:") {
            return Failure::Transient(why.trim().to_owned());
        }
    }
    Failure::Fault(format!("component {component} failed to handle the message; see its log above"))
}

/// A guest's stderr, passed through to the host's with its last few KiB kept.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        // Best effort, as an inherited stderr is: a closed host stderr must not fail the guest.
        let _ = std::io::stderr().write_all(buf);
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(buf);
        if tail.len() > STDERR_TAIL_BYTES {
            let cut = tail.len() - STDERR_TAIL_BYTES;
            tail.drain(..cut);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A guest's stdout, passed through to the host's line by line, except the metrics documents
/// (Embedded Metric Format) the app writes at the end of an invocation: those become the host's
/// own series ([`crate::metrics::record_emf`]). One per invocation; a last line without its
/// newline is passed on when the invocation's store is dropped.
#[derive(Clone, Default)]
pub struct GuestStdout(Arc<Mutex<Vec<u8>>>);

impl GuestStdout {
    fn line(line: &[u8]) {
        if !(line.starts_with(b"{") && names_aws_key(line) && crate::metrics::record_emf(line)) {
            // Best effort, as an inherited stdout is.
            let _ = std::io::stdout().write_all(line);
        }
    }
}

/// Whether `line` names the EMF metadata key at all (most lines are not JSON objects with it).
fn names_aws_key(line: &[u8]) -> bool {
    line.windows(6).any(|w| w == b"\"_aws\"")
}

impl Drop for GuestStdout {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 {
            let rest = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
            if !rest.is_empty() {
                GuestStdout::line(&rest);
            }
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestStdout {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestStdout {
    fn poll_write(self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(buf);
        if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
            let rest = pending.split_off(end + 1);
            let complete = std::mem::replace(&mut *pending, rest);
            drop(pending);
            for line in complete.split_inclusive(|&b| b == b'\n') {
                GuestStdout::line(line);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};

    fn config(hosts: &[&str]) -> Arc<ComponentConfig> {
        Arc::new(ComponentConfig {
            id: "c".into(),
            allowed_hosts: AllowedHosts::parse(&hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("parses"),
            key_value_stores: vec![],
            sqlite_databases: vec![],
            ai_models: vec![],
            variables: HashMap::new(),
            environment: vec![],
        })
    }

    fn request(url: &str) -> http::Request<wasmtime_wasi_http::WasiBody> {
        let body = Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(url).body(body).expect("request")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outbound_http_reaches_allowed_hosts_and_is_denied_elsewhere() {
        // (Service chaining is tested end to end in tests/tests/conformance.rs.)
        // A one-shot HTTP server on loopback stands in for an allowed API.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from_static(b"pong"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
        let mut hooks = OutboundHttp { component: config(&[&format!("http://127.0.0.1:{port}")]), chain: None, sockets: Default::default() };
        let denied = Box::into_pin(hooks.send_request(request(&format!("http://127.0.0.1:{}/x", port + 1)), None, Box::new(async { Ok(()) }))).await;
        assert!(matches!(denied, Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
        let (response, _io) =
            Box::into_pin(hooks.send_request(request(&format!("http://127.0.0.1:{port}/ping")), None, Box::new(async { Ok(()) }))).await.expect("allowed");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.map_err(|_| ()).expect("body").to_bytes();
        assert_eq!(&body[..], b"pong");
    }

    #[tokio::test]
    async fn the_management_api_reaches_only_the_named_components_open_connections() {
        let sockets = Arc::<crate::sockets::Sockets>::default();
        let (id, mut commands) = sockets.open("live").expect("an id");
        let mut hooks = OutboundHttp { component: config(&["http://live.spin.internal"]), chain: None, sockets: sockets.clone() };
        let mut post = async |url: &str, text: &'static str| {
            let body = Full::new(bytes::Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed_unsync();
            let request = http::Request::post(url).body(body).expect("request");
            match Box::into_pin(hooks.send_request(request, None, Box::new(async { Ok(()) }))).await {
                Ok((response, _)) => response.status().as_u16(),
                Err(e) => panic!("{url}: {e}"),
            }
        };
        assert_eq!(post(&format!("http://live.spin.internal/@connections/{id}"), "hello").await, 200);
        assert!(matches!(commands.try_recv(), Ok(crate::sockets::Command::Send(text)) if text.as_str() == "hello"));
        assert_eq!(post("http://live.spin.internal/@connections/nobody", "hello").await, 410, "an unknown connection is gone");
        assert_eq!(post("http://live.spin.internal/@connections/", "hello").await, 404);
        sockets.closed(&id);
        assert_eq!(post(&format!("http://live.spin.internal/@connections/{id}"), "hello").await, 410, "a closed one too");

        // Another component's connections are out of reach, and so is the API without the address.
        let (theirs, _commands) = sockets.open("kitchen").expect("an id");
        assert_eq!(post(&format!("http://live.spin.internal/@connections/{theirs}"), "hello").await, 410);
        let mut unlisted = OutboundHttp { component: config(&["http://live.spin.internal"]), chain: None, sockets: sockets.clone() };
        let request = request(&format!("http://kitchen.spin.internal/@connections/{theirs}"));
        let denied = Box::into_pin(unlisted.send_request(request, None, Box::new(async { Ok(()) }))).await;
        assert!(matches!(denied, Err(wasmtime_wasi_http::Error::HttpRequestDenied)));
    }

    #[test]
    fn a_failure_is_classified_by_the_last_line_that_says_why() {
        let json_log = r#"{"level":"WARN","fields":{"error":"poison message: nope"}}"#;
        assert_eq!(classify("c", &format!("{json_log}\nretryable: database is locked\n")), Failure::Transient("database is locked".into()));
        assert_eq!(classify("c", "retryable: earlier\npoison message: not an order event\n"), Failure::Poison("not an order event".into()));
        assert!(matches!(classify("c", json_log), Failure::Fault(_)), "a JSON log line is not a verdict");
        assert!(matches!(classify("c", ""), Failure::Fault(_)));
    }

    #[test]
    fn a_chaining_host_is_one_label_before_spin_internal() {
        let id = |url: &str| chained_component(&url.parse().expect("uri")).map(str::to_owned);
        assert_eq!(id("http://orders.spin.internal/x?y=1"), Some("orders".into()));
        assert_eq!(id("https://orders.spin.internal:8080/"), Some("orders".into()), "scheme and port don't matter, as in Spin");
        assert_eq!(id("http://a.b.spin.internal/"), None);
        assert_eq!(id("http://spin.internal/"), None);
        assert_eq!(id("http://orders.spin.internal.example.com/"), None);
        assert_eq!(id("http://127.0.0.1/"), None);
    }
}

//! gocoffee-host: the local runtime. Reads `spin.toml` and serves its components on wasmtime,
//! with Spin's routing and interfaces, state in SQLite files under one folder, and an embedded
//! durable log standing in for Redis pub/sub.

mod backup;
mod eval;
mod llm;
mod log;
mod manifest;
mod metrics;
mod minilm;
mod otlp;
mod outbound;
mod platform;
mod postgres;
mod profile;
mod routes;
mod runtime;
mod server;
mod sockets;
mod spin;
mod sqlite;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;

use crate::log::{MessageLog, RetryPolicy};
use crate::manifest::{Manifest, Variables};
use crate::platform::Platform;
use crate::routes::{Route, Router};
use crate::runtime::{Options, Runtime};
use crate::server::{Limits, Server};

const USAGE: &str = "\
gocoffee-host: serve a Spin application (spin.toml) locally on wasmtime

USAGE:
    gocoffee-host [up] [OPTIONS]        serve the application
    gocoffee-host dead-letters [OPTIONS] list messages that kept failing, as JSON lines
    gocoffee-host redrive [--id <N>] [OPTIONS]
                                        queue dead letters (all, or one) for delivery again
    gocoffee-host backup --to <DIR> [OPTIONS]
                                        copy every database of the state folder into the new
                                        folder DIR, consistently, while the host keeps serving
    gocoffee-host restore --from <DIR> [OPTIONS]
                                        put a backup's databases back into the state folder
                                        (stop the host first)
    gocoffee-host profile --platform <P> [-f <FILE>] [--to <OUT>]
                                        write the platform's manifest, generated from FILE:
                                        HTTP triggers only, events over service chaining,
                                        schedules as routes [default OUT: spin.<P>.toml]
    gocoffee-host check [--platform <P>] [-f <FILE>]
                                        say whether the application deploys to the platform:
                                        each component's size and imports, and every trigger,
                                        store and interface the platform would refuse
    gocoffee-host eval [--from <DIR>] [--split dev|test|all] [--llm-url <URL> --llm-model <NAME>]
                                        the AI layer on its frozen evaluation set (DIR, default
                                        bench/ai-eval): routing, search, customer service and
                                        analytics, each method beside its baselines; with a
                                        language model, its answers' fallback rate and citations
                                        [default split: test]

OPTIONS:
    -f, --manifest <FILE>       the application manifest [default: spin.toml]
        --listen <ADDR>         address to serve on [default: 127.0.0.1:3000]
        --state-dir <DIR>       where SQLite files and the message log live [default: .gocoffee]
        --cache-dir <DIR>       compiled components [default: <state-dir>/cache]
        --ai-models <DIR>       the models of the llm interface, in Spin's layout
                                (DIR/all-minilm-l6-v2/...) [default: <state-dir>/ai-models]
        --llm-url <URL>         where inference (and embeddings with other models) go, as
                                Spin's remote_http llm engine sends them; without it, inference
                                is model-not-supported (token: GOCOFFEE_LLM_AUTH_TOKEN)
        --llm-api-type <T>      the service's API: open_ai (/v1/chat/completions) or default
                                (Spin's /infer) [default: open_ai]
        --variable <NAME=VALUE> set an application variable (also SPIN_VARIABLE_<NAME>)
        --max-attempts <N>      faults (traps, unexplained errors) before a message is
                                dead-lettered [default: 5]
        --retry-for-secs <S>    how long transient failures are retried [default: 900]
        --retry-base-ms <MS>    first retry delay, doubling each time [default: 200]
        --retry-max-ms <MS>     longest delay between retries [default: 30000]
        --max-instances <N>     component instances live at once [default: 128]
        --queue-timeout-ms <MS> how long a request waits for a free instance before 503
                                [default: 2000]
        --read-timeout-ms <MS>  time allowed for a request's headers (else the connection is
                                closed), and then for its body (else 408) [default: 15000]
        --max-connections <N>   connections open at once; more wait to be accepted
                                [default: 512]
        --operator-token <T>    lets remote clients use /.well-known/gocoffee/... with
                                `Authorization: Bearer <T>` (also GOCOFFEE_OPERATOR_TOKEN);
                                loopback clients need none
        --metrics-listen <ADDR> serve the host's metrics for Prometheus at http://ADDR/metrics
                                (requests by route and status class with latency, deliveries
                                by outcome with their wait, backlog, dead letters) [default: off]
        --platform <P>          refuse what a hosted platform refuses, and keep its limits:
                                spin, fermyon-cloud or fermyon-wasm-functions
                                [default: spin]
        --log-format <text|json> [default: text]
        --id <N>                with redrive: only this dead letter
        --to <DIR>, --from <DIR> with backup and restore: the backup folder
    -h, --help                  print this help
";

struct Args {
    command: String,
    manifest: PathBuf,
    listen: SocketAddr,
    state_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    variables: BTreeMap<String, String>,
    policy: RetryPolicy,
    max_instances: u32,
    limits: Limits,
    operator_token: Option<String>,
    json_logs: bool,
    id: Option<i64>,
    /// `--to` / `--from`: a backup folder, or where `profile` writes.
    to_or_from: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    platform: Platform,
    /// `eval --split`: dev, test or all.
    split: String,
    /// Where the llm interface's models are (Spin's layout) [default: <state-dir>/ai-models].
    ai_models: Option<PathBuf>,
    /// A remote inference service (Spin's `remote_http` llm engine).
    llm_url: Option<url::Url>,
    llm_api: llm::ApiType,
    /// `eval --llm-model`: the model the inference service is asked for.
    llm_model: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        command: "up".into(),
        manifest: "spin.toml".into(),
        listen: "127.0.0.1:3000".parse()?,
        state_dir: ".gocoffee".into(),
        cache_dir: None,
        variables: BTreeMap::new(),
        policy: RetryPolicy::default(),
        max_instances: runtime::DEFAULT_MAX_INSTANCES,
        limits: Limits::default(),
        operator_token: std::env::var("GOCOFFEE_OPERATOR_TOKEN").ok().filter(|t| !t.is_empty()),
        json_logs: false,
        id: None,
        to_or_from: None,
        metrics_listen: None,
        platform: Platform::Spin,
        split: "test".into(),
        ai_models: None,
        llm_url: None,
        llm_api: llm::ApiType::OpenAi,
        llm_model: None,
    };
    let mut it = std::env::args().skip(1).peekable();
    if let Some(cmd) = it.peek().filter(|a| !a.starts_with('-')).cloned() {
        args.command = cmd;
        it.next();
    }
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-f" | "--manifest" => args.manifest = value(&flag)?.into(),
            "--listen" => args.listen = value(&flag)?.parse().context("--listen must be an address like 127.0.0.1:3000")?,
            "--state-dir" => args.state_dir = value(&flag)?.into(),
            "--cache-dir" => args.cache_dir = Some(value(&flag)?.into()),
            "--variable" => {
                let v = value(&flag)?;
                let (k, val) = v.split_once('=').context("--variable takes NAME=VALUE")?;
                args.variables.insert(k.to_owned(), val.to_owned());
            }
            "--max-attempts" => args.policy.max_attempts = value(&flag)?.parse().context("--max-attempts must be a number")?,
            "--retry-for-secs" => args.policy.retry_for = Duration::from_secs(value(&flag)?.parse().context("--retry-for-secs must be a number")?),
            "--retry-base-ms" => args.policy.base_backoff = millis(&value(&flag)?, &flag)?,
            "--retry-max-ms" => args.policy.max_backoff = millis(&value(&flag)?, &flag)?,
            "--max-instances" => args.max_instances = value(&flag)?.parse().context("--max-instances must be a number")?,
            "--queue-timeout-ms" => args.limits.queue_timeout = millis(&value(&flag)?, &flag)?,
            "--read-timeout-ms" => args.limits.read_timeout = millis(&value(&flag)?, &flag)?,
            "--max-connections" => args.limits.max_connections = value(&flag)?.parse().context("--max-connections must be a number")?,
            "--operator-token" => args.operator_token = Some(value(&flag)?).filter(|t| !t.is_empty()),
            "--platform" => args.platform = value(&flag)?.parse()?,
            "--log-format" => args.json_logs = value(&flag)? == "json",
            "--id" => args.id = Some(value(&flag)?.parse().context("--id must be a number")?),
            "--split" => args.split = value(&flag)?,
            "--ai-models" => args.ai_models = Some(value(&flag)?.into()),
            "--llm-url" => args.llm_url = Some(value(&flag)?.parse().context("--llm-url must be a URL like http://127.0.0.1:8080")?),
            "--llm-api-type" => args.llm_api = value(&flag)?.parse()?,
            "--llm-model" => args.llm_model = Some(value(&flag)?),
            "--to" | "--from" => args.to_or_from = Some(value(&flag)?.into()),
            "--metrics-listen" => args.metrics_listen = Some(value(&flag)?.parse().context("--metrics-listen must be an address like 127.0.0.1:9464")?),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if args.policy.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    if args.max_instances < 2 {
        bail!("--max-instances must be at least 2");
    }
    if args.limits.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    Ok(args)
}

fn millis(value: &str, flag: &str) -> Result<Duration> {
    Ok(Duration::from_millis(value.parse().with_context(|| format!("{flag} must be a number of milliseconds"))?))
}

fn subscriptions(manifest: &Manifest, variables: &Variables) -> Result<Vec<(String, String)>> {
    manifest.trigger.redis.iter().map(|t| Ok((variables.expand(&t.channel)?, t.component.clone()))).collect()
}

fn main() -> Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GOCOFFEE_LOG").unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    if args.json_logs {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        use std::io::IsTerminal;
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
    }
    match args.command.as_str() {
        "up" => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(up(args)),
        "dead-letters" => dead_letters(&args),
        "redrive" => {
            let moved = MessageLog::open(&args.state_dir.join("log.db"), &[])?.redrive(args.id)?;
            println!("{moved} message(s) queued for delivery again");
            Ok(())
        }
        "backup" => backup::backup(&args.state_dir, args.to_or_from.as_deref().context("backup needs --to <DIR>")?),
        "restore" => backup::restore(args.to_or_from.as_deref().context("restore needs --from <DIR>")?, &args.state_dir),
        "check" => check(&args),
        "profile" => write_profile(&args),
        "eval" => {
            let dir = args.ai_models.clone().unwrap_or_else(|| args.state_dir.join("ai-models")).join(minilm::MODEL);
            let model = if dir.join("model.safetensors").exists() { Some(minilm::MiniLm::load(&dir)?) } else { None };
            let embed = |texts: &[String]| model.as_ref().context("no model")?.embed(texts).map(|e| e.vectors);
            let set = args.to_or_from.as_deref().unwrap_or(std::path::Path::new("bench/ai-eval"));
            // A language model, when one is given: through the same client the llm interface
            // forwards inference with, asked as the customer-service agent asks (160 tokens at
            // most, temperature 0.2).
            let remote = match (&args.llm_url, &args.llm_model) {
                (Some(url), Some(name)) => {
                    let auth_token = std::env::var("GOCOFFEE_LLM_AUTH_TOKEN").ok().filter(|t| !t.is_empty());
                    Some((llm::Llm::new(dir.clone(), Some(llm::Remote { url: url.clone(), api: args.llm_api, auth_token }))?, name.clone()))
                }
                (Some(_), None) => bail!("eval --llm-url needs --llm-model <NAME>, the model the service is asked for"),
                _ => None,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let infer = |prompt: &str| -> Result<String> {
                let (llm, name) = remote.as_ref().context("no language model")?;
                rt.block_on(llm.infer(name.clone(), prompt.to_owned(), Some(llm::params_with(160, 0.2)))).map(|r| r.text).map_err(|e| anyhow::anyhow!("{e:?}"))
            };
            let infer = remote.as_ref().map(|(_, name)| (name.as_str(), &infer as &dyn Fn(&str) -> Result<String>));
            eval::run(set, &args.split, model.as_ref().map(|_| &embed as &dyn Fn(&[String]) -> Result<Vec<Vec<f32>>>), infer)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn dead_letters(args: &Args) -> Result<()> {
    let log = MessageLog::open(&args.state_dir.join("log.db"), &[])?;
    for d in log.dead_letters()? {
        println!("{}", serde_json::to_string(&d)?);
    }
    Ok(())
}

/// `gocoffee-host profile`: the platform's manifest, generated from `--manifest`, written beside
/// it (or to `--to`, `-` for stdout).
fn write_profile(args: &Args) -> Result<()> {
    let source = std::fs::read_to_string(&args.manifest).with_context(|| format!("reading {}", args.manifest.display()))?;
    let name = args.manifest.file_name().and_then(|n| n.to_str()).unwrap_or("spin.toml");
    let text = profile::generate(args.platform, &source, name)?;
    let out = args.to_or_from.clone().unwrap_or_else(|| args.manifest.with_file_name(profile::profile_file(args.platform)));
    if out.as_os_str() == "-" {
        print!("{text}");
    } else {
        std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        println!("{}", out.display());
    }
    Ok(())
}

/// `gocoffee-host check`: the readiness report, and a failure when the platform would refuse
/// anything.
fn check(args: &Args) -> Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let (components, problems) = platform::readiness(args.platform, &manifest, &args.manifest)?;
    println!("{} on {}:", args.manifest.display(), args.platform.name());
    for c in &components {
        println!("  {} ({} bytes): {}", c.id, c.bytes, c.imports.join(", "));
    }
    if problems.is_empty() {
        println!("ready: {} component(s), {} bytes together", components.len(), components.iter().map(|c| c.bytes).sum::<u64>());
        return Ok(());
    }
    for p in &problems {
        println!("refused: {p}");
    }
    eprintln!("{} would refuse {} thing(s) in {}", args.platform.name(), problems.len(), args.manifest.display());
    std::process::exit(1)
}

async fn up(args: Args) -> Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    // Under a platform, what it would refuse stops the host too: a rehearsal, not a pretence.
    let (_, problems) = platform::readiness(args.platform, &manifest, &args.manifest)?;
    if !problems.is_empty() {
        bail!("{} would refuse this application:\n  {}", args.platform.name(), problems.join("\n  "));
    }
    let variables = Variables::resolve(&manifest.variables, &args.variables, |k| std::env::var(k).ok())?;
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    let subs = subscriptions(&manifest, &variables)?;
    let log = Arc::new(MessageLog::open(&args.state_dir.join("log.db"), &subs)?);
    otlp::init();
    if let Some(addr) = args.metrics_listen {
        let handle = metrics::install()?;
        let listener = metrics::bind(addr).await?;
        tracing::info!(address = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(metrics::serve(listener, handle, log.clone()));
    }
    let opts = Options {
        manifest_path: args.manifest.clone(),
        state_dir: args.state_dir.clone(),
        cache_dir: args.cache_dir.clone().unwrap_or_else(|| args.state_dir.join("cache")),
        guest_memory: args.platform.guest_memory(),
        ai_models: args.ai_models.clone().unwrap_or_else(|| args.state_dir.join("ai-models")),
        llm_remote: args.llm_url.clone().map(|url| llm::Remote {
            url,
            api: args.llm_api,
            auth_token: std::env::var("GOCOFFEE_LLM_AUTH_TOKEN").ok().filter(|t| !t.is_empty()),
        }),
    };
    let engine = runtime::engine(args.max_instances)?;
    let runtime = tokio::task::block_in_place(|| Runtime::new(engine, &manifest, &variables, &opts, log.clone()))?;
    // Private routes are absent from the router: only service chaining reaches them.
    let routes = manifest.trigger.http.iter().filter_map(|t| Some(Route::parse(t.path()?, &t.component))).collect::<Result<Vec<_>>>()?;
    let router = Router::new(routes)?;

    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // One slot per Redis subscriber stays out of HTTP's reach: a dispatcher delivers one message
    // at a time, so deliveries always find an instance however busy HTTP is.
    // A component subscribed to several channels has one queue and one dispatcher.
    let mut subscribers: Vec<String> = subs.iter().map(|(_, c)| c.clone()).collect();
    subscribers.sort();
    subscribers.dedup();
    let crons: Vec<(String, cron::Schedule)> = manifest.trigger.cron.iter().map(|t| Ok((t.component.clone(), t.schedule()?))).collect::<Result<_>>()?;
    let reserved = subscribers.len() + crons.len();
    if args.max_instances as usize <= reserved {
        bail!("--max-instances must be more than the {reserved} Redis subscriber(s) and cron trigger(s), which each keep one");
    }
    let http_slots = (args.max_instances as usize) - reserved;
    let server = Arc::new(Server {
        runtime,
        router,
        listen: addr,
        limits: args.limits.clone(),
        gate: Arc::new(tokio::sync::Semaphore::new(http_slots)),
        operator_token: args.operator_token.clone(),
        websockets: args.platform.websockets(),
    });
    let (stop, shutdown) = watch::channel(false);

    let policy = args.policy;
    let mut dispatchers = vec![];
    for component in &subscribers {
        let server = server.clone();
        let component = component.clone();
        dispatchers.push(tokio::spawn(log::dispatch(log.clone(), component.clone(), policy, shutdown.clone(), move |payload| {
            let server = server.clone();
            let component = component.clone();
            async move { server.runtime.deliver(&component, payload).await }
        })));
    }

    for (component, schedule) in crons {
        dispatchers.push(tokio::spawn(run_cron(server.clone(), component, schedule, shutdown.clone())));
    }

    print_banner(&manifest, &variables, &server, &subs, &args, log.pending().unwrap_or(0));
    // In-flight requests get as long as an invocation may run.
    let serving = tokio::spawn(server.clone().serve(listener, shutdown.clone(), runtime::GUEST_TIMEOUT + Duration::from_secs(5)));

    wait_for_signal().await;
    tracing::info!("shutting down: no new requests; finishing in-flight work");
    let _ = stop.send(true);
    serving.await??;
    for d in dispatchers {
        let _ = d.await;
    }
    tracing::info!(pending = log.pending().unwrap_or(-1), "stopped; undelivered messages resume on the next start");
    Ok(())
}

/// Runs a cron-triggered component at each time its schedule names, as spin-trigger-cron does:
/// a tick that fails is logged, and the next one runs anyway; ticks missed while one ran late
/// are skipped, not made up.
async fn run_cron(server: Arc<Server>, component: String, schedule: cron::Schedule, mut shutdown: watch::Receiver<bool>) {
    loop {
        let Some(next) = schedule.upcoming(chrono::Utc).next() else { return };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        match server.runtime.tick(&component, next.timestamp().max(0) as u64).await {
            Ok(()) => tracing::debug!(%component, ms = started.elapsed().as_millis() as u64, "cron tick"),
            Err(e) => tracing::warn!(%component, error = %e, "cron tick failed; the next one runs on schedule"),
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print_banner(manifest: &Manifest, variables: &Variables, server: &Server, subs: &[(String, String)], args: &Args, pending: i64) {
    let base = format!("http://{}", server.listen);
    println!("Serving {} from {} (state in {})", manifest.application.name, args.manifest.display(), args.state_dir.display());
    println!("Available routes:");
    for r in server.router.routes() {
        let wildcard = if r.raw.ends_with("/...") { " (wildcard)" } else { "" };
        println!("  {}: {base}{}{wildcard}", r.component, r.component_route());
    }
    for (channel, component) in subs {
        println!("  {component}: redis channel \"{channel}\" (embedded durable log)");
    }
    for t in &manifest.trigger.cron {
        println!("  {}: cron \"{}\" (run now: POST {base}/.well-known/gocoffee/cron/{})", t.component, t.cron_expression, t.component);
    }
    if pending > 0 {
        println!("Resuming {pending} undelivered message(s) from the log.");
    }
    if let (Some(email), Some(_)) = (variables.get("admin_email").filter(|e| !e.is_empty()), variables.get("admin_password")) {
        println!("Log in as the admin from the admin_email / admin_password variables:");
        println!("  curl -s {base}/api/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{email}\",\"password\":\"<admin_password>\"}}'");
    }
    println!("Listening on {base}");
}

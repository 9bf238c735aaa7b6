//! `gocoffee-host profile`: a hosted platform's manifest, generated from spin.toml so the two can
//! never drift (`make profiles` writes them; a test fails when a checked-in one is stale).
//!
//! Fermyon's platforms run HTTP triggers alone, so the profile rewrites what spin.toml hands to
//! other triggers:
//! - events: each Redis-triggered consumer gets a private HTTP route instead; the components that
//!   published to Redis get `event_subscribers` (which channel goes to whom, read from the Redis
//!   triggers) and may chain to exactly those consumers, so their outbox relay delivers over
//!   service chaining (`gocoffee_spin::delivery`);
//! - schedules: each cron component gets a public route, `/cron/<component>`, guarded by
//!   `cron_secret`, that the platform's scheduled jobs call; the comment above it says how to
//!   register the job;
//! - state (Wasm Functions): no SQLite, so `database_url` is required and every store is in
//!   PostgreSQL.
//!
//! Fermyon Cloud has no service chaining, so its profile drops the consumer components instead and
//! has each publisher run their handlers in process (`event_delivery = "in-process"`), granted
//! what they need; it keeps SQLite, and writes out the hosts (no variables there).
//!
//! The edit keeps spin.toml's formatting and comments (toml_edit); only what changes is redone.

use anyhow::{Context, Result, bail};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

use crate::platform::Platform;

/// The route prefix of the cron components' scheduled runs.
const CRON_ROUTE: &str = "/cron/";
/// The shortest interval Fermyon Wasm Functions' cron jobs take (`spin aka cron create`).
const CRON_MIN_MINUTES: u32 = 5;

/// `source` (spin.toml's text) rewritten for `platform`.
pub fn generate(platform: Platform, source: &str, source_name: &str) -> Result<String> {
    let chained = match platform {
        Platform::FermyonWasmFunctions => true,
        Platform::FermyonCloud => false,
        Platform::Spin => bail!("profile: spin.toml itself is the Spin profile; ask for fermyon-wasm-functions or fermyon-cloud"),
    };
    let mut doc: DocumentMut = source.parse().context("parsing the manifest")?;

    let subscriptions = take_redis_triggers(&mut doc)?;
    let crons = take_cron_triggers(&mut doc)?;
    if let Some(Item::Table(app_triggers)) = doc.get_mut("application").and_then(|a| a.get_mut("trigger")) {
        app_triggers.remove("redis");
    }
    let app = doc.get_mut("application").and_then(Item::as_table_mut).context("the manifest has no [application]")?;
    if app.get("trigger").and_then(Item::as_table).is_some_and(Table::is_empty) {
        app.remove("trigger");
    }

    // Variables: no Redis; the schedules' key is required; a database on Wasm Functions, SQLite
    // on Cloud.
    let variables = doc.get_mut("variables").and_then(Item::as_table_mut).context("the manifest has no [variables]")?;
    variables.remove("redis_address");
    let required_secret = || {
        let mut t = InlineTable::new();
        t.insert("required", true.into());
        t.insert("secret", true.into());
        value(t)
    };
    if chained {
        variables.insert("database_url", required_secret());
        if let Some(mut key) = variables.key_mut("database_url") {
            key.leaf_decor_mut().set_prefix("# PostgreSQL holds every store (the platform has no SQLite): postgres://user:password@host:port/name.\n");
        }
    } else {
        // Cloud keeps the state in its SQLite (and can't reach a database named by a variable).
        variables.remove("database_url");
    }
    if !crons.is_empty() {
        variables.insert("cron_secret", required_secret());
        if let Some(mut key) = variables.key_mut("cron_secret") {
            key.leaf_decor_mut().set_prefix("# The key scheduled runs present (?key= or a bearer token), 32 random bytes or more.\n");
        }
    }

    // Triggers: consumers on private routes (or none: run in process), cron components on
    // guarded public ones.
    let consumers = distinct(subscriptions.iter().map(|(_, c)| c.as_str()));
    let http = doc.get_mut("trigger").and_then(|t| t.get_mut("http")).and_then(Item::as_array_of_tables_mut).context("the manifest has no [[trigger.http]]")?;
    for (i, component) in consumers.iter().enumerate().filter(|_| chained) {
        let mut t = Table::new();
        let mut private = InlineTable::new();
        private.insert("private", true.into());
        t.insert("route", value(private));
        t.insert("component", value(component.as_str()));
        if i == 0 {
            t.decor_mut().set_prefix("\n# The event consumers: reached only by the outbox relay's service chaining.\n");
        }
        http.push(t);
    }
    for (component, expression) in &crons {
        let mut t = Table::new();
        t.insert("route", value(format!("{CRON_ROUTE}{component}")));
        t.insert("component", value(component.as_str()));
        let how = if chained {
            format!(
                "\n# `{component}` on a schedule ({expression} in {source_name}; every {CRON_MIN_MINUTES} minutes at most here):\n\
                 #   spin aka cron create --name {component} --schedule \"{}\" --path-and-query \"{CRON_ROUTE}{component}?key=$CRON_SECRET\"\n",
                platform_schedule(expression)?
            )
        } else {
            format!(
                "\n# `{component}` on a schedule ({expression} in {source_name}). Fermyon Cloud has no cron jobs: call it from any\n\
                 # scheduler, e.g. `curl -fsS -H \"authorization: Bearer $CRON_SECRET\" https://<app>.fermyon.app{CRON_ROUTE}{component}`.\n"
            )
        };
        t.decor_mut().set_prefix(how);
        http.push(t);
    }

    // Cloud: the consumers' components go; what their handlers need goes to the components that
    // now run them.
    let components = doc.get_mut("component").and_then(Item::as_table_mut).context("the manifest has no components")?;
    // Neither platform keeps WebSocket connections: the notifier feeds the SSE streams only.
    for (_, item) in components.iter_mut() {
        if let Some(component) = item.as_table_mut() {
            remove_host(component, "{{ live_connections_url }}");
            if let Some(vars) = component.get_mut("variables").and_then(Item::as_table_mut) {
                vars.remove("live_connections_url");
                vars.remove("live_socket_url");
            }
        }
    }
    let mut consumer_tables = Vec::new();
    if !chained {
        for consumer in &consumers {
            let Some(Item::Table(t)) = components.remove(consumer) else { bail!("no component `{consumer}`, which a Redis trigger names") };
            consumer_tables.push(t);
        }
    }

    let spec = subscriptions_spec(&subscriptions);
    let cron_components: Vec<&str> = crons.iter().map(|(c, _)| c.as_str()).collect();
    for (id, item) in components.iter_mut() {
        let component = item.as_table_mut().with_context(|| format!("component `{id}` is not a table"))?;
        let publishes = remove_host(component, "{{ redis_address }}");
        if chained {
            component.remove("sqlite_databases");
            // Serverless AI is not offered there (platform.rs): the build leaves the llm interface out.
            component.remove("ai_models");
        } else {
            for consumer in consumer_tables.iter().filter(|_| publishes) {
                take_needs(component, consumer);
            }
            // Variables in allowed_outbound_hosts are refused; what's literal stays.
            if let Some(hosts) = component.get_mut("allowed_outbound_hosts").and_then(Item::as_array_mut) {
                hosts.retain(|h| !h.as_str().is_some_and(|h| h.contains("{{")));
            }
            if let Some(vars) = component.get_mut("variables").and_then(Item::as_table_mut) {
                vars.remove("database_url");
            }
        }
        let features = match (chained, component.contains_key("sqlite_databases"), publishes, component.contains_key("ai_models")) {
            (true, ..) => Vec::new(),
            (false, sqlite, publishes, llm) => {
                [(sqlite, "sqlite"), (publishes, "in-process-consumers"), (llm, "llm")].into_iter().filter(|(on, _)| *on).map(|(_, f)| f).collect()
            }
        };
        rebuilt(platform, id.get(), component, &features)?;
        if let Some(hosts) = component.get_mut("allowed_outbound_hosts").and_then(Item::as_array_mut) {
            if publishes && chained {
                for consumer in &consumers {
                    hosts.push(format!("http://{consumer}.spin.internal"));
                }
            }
            reformat(hosts);
        }
        if let Some(vars) = component.get_mut("variables").and_then(Item::as_table_mut) {
            vars.remove("redis_address");
            if publishes {
                vars.insert("event_subscribers", value(spec.as_str()));
                if !chained {
                    vars.insert("event_delivery", value("in-process"));
                }
            }
            if cron_components.contains(&id.get()) {
                vars.insert("cron_secret", value("{{ cron_secret }}"));
            }
        }
    }

    drop_unused_variables(&mut doc);

    let (title, deploy) = if chained {
        (
            "Go Coffee on Fermyon Wasm Functions (Akamai Functions): HTTP triggers only, events over service\n\
             # chaining to private routes, schedules as the platform's cron jobs, state in PostgreSQL.",
            "spin aka deploy",
        )
    } else {
        (
            "Go Coffee on Fermyon Cloud: HTTP triggers only, no service chaining (each component runs its events'\n\
             # consumers itself), schedules called from outside, state in the platform's SQLite.",
            "spin cloud deploy",
        )
    };
    let header = format!(
        "# GENERATED by `gocoffee-host profile --platform {}` from {source_name} (`make profiles`): don't edit it,\n\
         # edit {source_name} and regenerate; a test fails while this file is stale.\n\
         # {title}\n\
         #   {deploy} -f {} --variable ...   (README, \"Deploying to Fermyon\")\n",
        platform.name(),
        profile_file(platform)
    );
    if let Some(mut key) = doc.as_table_mut().key_mut("spin_manifest_version") {
        key.leaf_decor_mut().set_prefix(header);
    }
    Ok(doc.to_string())
}

/// Removes the application variables no component refers to any more (those that only named
/// hosts, say, once the hosts are written out), so a deploy isn't asked for values nothing reads.
fn drop_unused_variables(doc: &mut DocumentMut) {
    let mut used = String::new();
    if let Some(components) = doc.get("component").and_then(Item::as_table) {
        for (_, component) in components.iter() {
            if let Some(c) = component.as_table() {
                for key in ["allowed_outbound_hosts", "variables"] {
                    used.push_str(&c.get(key).map(Item::to_string).unwrap_or_default());
                }
            }
        }
    }
    if let Some(app) = doc.get("application").and_then(Item::as_table) {
        used.push_str(&app.to_string());
    }
    if let Some(variables) = doc.get_mut("variables").and_then(Item::as_table_mut) {
        let unused: Vec<String> = variables.iter().map(|(k, _)| k.to_owned()).filter(|k| !refers_to(&used, k)).collect();
        for name in unused {
            variables.remove(&name);
        }
    }
}

/// Whether `text` has a `{{ name }}` expression.
fn refers_to(text: &str, name: &str) -> bool {
    text.split("{{").skip(1).filter_map(|rest| rest.split_once("}}")).any(|(expr, _)| expr.trim() == name)
}

/// Gives `component` what `consumer`'s handler needs to run inside it: its SQLite databases, its
/// literal outbound hosts and its variables.
fn take_needs(component: &mut Table, consumer: &Table) {
    let strings = |t: &Table, key: &str| -> Vec<String> {
        t.get(key).and_then(Item::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    };
    for key in ["sqlite_databases", "allowed_outbound_hosts"] {
        let have = strings(component, key);
        let missing: Vec<String> = strings(consumer, key).into_iter().filter(|v| !have.contains(v) && !v.contains("{{")).collect();
        if missing.is_empty() {
            continue;
        }
        let array = component.entry(key).or_insert_with(|| value(Array::new())).as_array_mut();
        if let Some(array) = array {
            for v in missing {
                array.push(v);
            }
            array.fmt();
        }
    }
    if let (Some(theirs), Some(Item::Table(ours))) = (consumer.get("variables").and_then(Item::as_table), component.get_mut("variables")) {
        for (name, v) in theirs.iter() {
            if !ours.contains_key(name) && name != "redis_address" && name != "database_url" {
                ours.insert(name, v.clone());
            }
        }
    }
}

/// Where the profile of `platform` is checked in, beside spin.toml.
pub fn profile_file(platform: Platform) -> String {
    format!("spin.{}.toml", platform.name())
}

/// Removes the Redis triggers; each one's (channel, component), in order.
fn take_redis_triggers(doc: &mut DocumentMut) -> Result<Vec<(String, String)>> {
    let Some(Item::ArrayOfTables(redis)) = doc.get_mut("trigger").and_then(|t| t.as_table_mut()).and_then(|t| t.remove("redis")) else {
        return Ok(Vec::new());
    };
    pairs(&redis, "channel")
}

/// Removes the cron triggers; each one's (component, cron expression), in order.
fn take_cron_triggers(doc: &mut DocumentMut) -> Result<Vec<(String, String)>> {
    let Some(Item::ArrayOfTables(cron)) = doc.get_mut("trigger").and_then(|t| t.as_table_mut()).and_then(|t| t.remove("cron")) else {
        return Ok(Vec::new());
    };
    Ok(pairs(&cron, "cron_expression")?.into_iter().map(|(expression, component)| (component, expression)).collect())
}

/// Each trigger's `field` and `component`, both literal strings.
fn pairs(triggers: &ArrayOfTables, field: &str) -> Result<Vec<(String, String)>> {
    triggers
        .iter()
        .map(|t| {
            let get = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_owned).with_context(|| format!("a trigger without a string `{k}`"));
            let (f, component) = (get(field)?, get("component")?);
            if f.contains("{{") {
                bail!("trigger `{f}` of `{component}`: a profile needs a literal {field}, not a variable");
            }
            Ok((f, component))
        })
        .collect()
}

const RELEASE_DIR: &str = "target/wasm32-wasip2/release/";

/// Points the component at its build for `platform` (`make components` makes each: without SQLite
/// and the Redis and cron exports for Wasm Functions, with SQLite and the in-process consumers
/// for Cloud), in `target/wasm32-wasip2/<platform>/`, and makes its build command produce it.
fn rebuilt(platform: Platform, id: &str, component: &mut Table, features: &[&str]) -> Result<()> {
    let Some(file) = component.get("source").and_then(Item::as_str).and_then(|s| s.strip_prefix(RELEASE_DIR)).map(str::to_owned) else {
        bail!("component `{id}`: a profile needs source = \"{RELEASE_DIR}<name>.wasm\"");
    };
    let dir = format!("target/wasm32-wasip2/{}/", platform.name());
    component.insert("source", value(format!("{dir}{file}")));
    if let Some(build) = component.get_mut("build").and_then(Item::as_table_mut)
        && let Some(command) = build.get("command").and_then(Item::as_str).map(str::to_owned)
    {
        let features = if features.is_empty() { String::new() } else { format!(" --features {}", features.join(",")) };
        let command = format!("{command} --no-default-features{features} && install -D -m 644 {RELEASE_DIR}{file} {dir}{file}");
        build.insert("command", value(command));
    }
    Ok(())
}

/// Removes `host` from the component's allowed_outbound_hosts; whether it was there.
fn remove_host(component: &mut Table, host: &str) -> bool {
    let Some(hosts) = component.get_mut("allowed_outbound_hosts").and_then(Item::as_array_mut) else { return false };
    let before = hosts.len();
    hosts.retain(|v| v.as_str() != Some(host));
    hosts.len() != before
}

/// One entry per line once there are more than three; otherwise one line.
fn reformat(hosts: &mut Array) {
    if hosts.len() > 3 {
        for v in hosts.iter_mut() {
            v.decor_mut().set_prefix("\n    ");
        }
        hosts.set_trailing("\n");
        hosts.set_trailing_comma(true);
    } else {
        hosts.fmt();
    }
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

/// `gocoffee_spin::delivery`'s `event_subscribers`: `channel:component,component` entries,
/// separated by spaces, channels in the order the triggers first name them.
fn subscriptions_spec(subscriptions: &[(String, String)]) -> String {
    distinct(subscriptions.iter().map(|(ch, _)| ch.as_str()))
        .iter()
        .map(|channel| {
            let components: Vec<&str> = subscriptions.iter().filter(|(ch, _)| ch == channel).map(|(_, c)| c.as_str()).collect();
            format!("{channel}:{}", components.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A spin-trigger-cron expression (seconds first, six fields) as a platform cron job's five
/// fields in UTC, no more often than every [`CRON_MIN_MINUTES`].
fn platform_schedule(expression: &str) -> Result<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let [_seconds, minute, rest @ ..] = fields.as_slice() else {
        bail!("cron expression `{expression}`: expected six fields, seconds first");
    };
    if rest.len() != 4 {
        bail!("cron expression `{expression}`: expected six fields, seconds first");
    }
    let every_minutes = match *minute {
        "*" => Some(1),
        m => m.strip_prefix("*/").and_then(|n| n.parse::<u32>().ok()),
    };
    let minute = match every_minutes {
        Some(n) if n < CRON_MIN_MINUTES => format!("*/{CRON_MIN_MINUTES}"),
        _ => (*minute).to_owned(),
    };
    Ok(format!("{minute} {}", rest.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_drop_the_seconds_and_keep_the_platform_minimum() {
        assert_eq!(platform_schedule("*/15 * * * * *").unwrap(), "*/5 * * * *");
        assert_eq!(platform_schedule("0 * * * * *").unwrap(), "*/5 * * * *");
        assert_eq!(platform_schedule("0 */10 * * * *").unwrap(), "*/10 * * * *");
        assert_eq!(platform_schedule("0 30 6 * * 1-5").unwrap(), "30 6 * * 1-5");
        assert!(platform_schedule("* * * * *").is_err());
    }

    #[test]
    fn a_variable_is_used_where_an_expression_names_it() {
        assert!(refers_to(r#"a = "{{ jwt_secret }}""#, "jwt_secret"));
        assert!(refers_to(r#"["{{payment_rpc_origin}}"]"#, "payment_rpc_origin"));
        assert!(!refers_to(r#"a = "{{ jwt_secret_2 }}""#, "jwt_secret"));
        assert!(!refers_to("jwt_secret", "jwt_secret"));
    }

    #[test]
    fn subscribers_are_grouped_by_channel_in_trigger_order() {
        let subs = [("orders", "a"), ("payments", "a"), ("orders", "b"), ("analytics", "c")].map(|(x, y)| (x.to_owned(), y.to_owned()));
        assert_eq!(subscriptions_spec(&subs), "orders:a,b payments:a analytics:c");
    }
}

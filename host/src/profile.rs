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
    if platform != Platform::FermyonWasmFunctions {
        bail!("profile: only fermyon-wasm-functions has a generated profile so far (asked for {})", platform.name());
    }
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

    // Variables: no Redis; a database and the schedules' key are required.
    let variables = doc.get_mut("variables").and_then(Item::as_table_mut).context("the manifest has no [variables]")?;
    variables.remove("redis_address");
    let required_secret = || {
        let mut t = InlineTable::new();
        t.insert("required", true.into());
        t.insert("secret", true.into());
        value(t)
    };
    variables.insert("database_url", required_secret());
    if let Some(mut key) = variables.key_mut("database_url") {
        key.leaf_decor_mut().set_prefix("# PostgreSQL holds every store (the platform has no SQLite): postgres://user:password@host:port/name.\n");
    }
    if !crons.is_empty() {
        variables.insert("cron_secret", required_secret());
        if let Some(mut key) = variables.key_mut("cron_secret") {
            key.leaf_decor_mut().set_prefix("# The key the platform's scheduled jobs present (?key=), 32 random bytes or more.\n");
        }
    }

    // Triggers: consumers on private routes, cron components on guarded public ones.
    let consumers = distinct(subscriptions.iter().map(|(_, c)| c.as_str()));
    let http = doc.get_mut("trigger").and_then(|t| t.get_mut("http")).and_then(Item::as_array_of_tables_mut).context("the manifest has no [[trigger.http]]")?;
    for (i, component) in consumers.iter().enumerate() {
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
        let schedule = platform_schedule(expression)?;
        let mut t = Table::new();
        t.insert("route", value(format!("{CRON_ROUTE}{component}")));
        t.insert("component", value(component.as_str()));
        t.decor_mut().set_prefix(format!(
            "\n# `{component}` on a schedule ({expression} in {source_name}; every {CRON_MIN_MINUTES} minutes at most here):\n\
             #   spin aka cron create --name {component} --schedule \"{schedule}\" --path-and-query \"{CRON_ROUTE}{component}?key=$CRON_SECRET\"\n"
        ));
        http.push(t);
    }

    // Components: chaining instead of Redis, PostgreSQL instead of SQLite.
    let spec = subscriptions_spec(&subscriptions);
    let cron_components: Vec<&str> = crons.iter().map(|(c, _)| c.as_str()).collect();
    let components = doc.get_mut("component").and_then(Item::as_table_mut).context("the manifest has no components")?;
    for (id, item) in components.iter_mut() {
        let component = item.as_table_mut().with_context(|| format!("component `{id}` is not a table"))?;
        component.remove("sqlite_databases");
        without_sqlite(id.get(), component)?;
        let publishes = remove_host(component, "{{ redis_address }}");
        if publishes {
            let hosts = component.get_mut("allowed_outbound_hosts").and_then(Item::as_array_mut).context("allowed_outbound_hosts")?;
            for consumer in &consumers {
                hosts.push(format!("http://{consumer}.spin.internal"));
            }
            reformat(hosts);
        }
        if let Some(vars) = component.get_mut("variables").and_then(Item::as_table_mut) {
            vars.remove("redis_address");
            if publishes {
                vars.insert("event_subscribers", value(spec.as_str()));
            }
            if cron_components.contains(&id.get()) {
                vars.insert("cron_secret", value("{{ cron_secret }}"));
            }
        }
    }

    let header = format!(
        "# GENERATED by `gocoffee-host profile --platform {}` from {source_name} (`make profiles`): don't edit it,\n\
         # edit {source_name} and regenerate; a test fails while this file is stale.\n\
         # Go Coffee on Fermyon Wasm Functions (Akamai Functions): HTTP triggers only, events over service\n\
         # chaining to private routes, schedules as the platform's cron jobs, state in PostgreSQL.\n\
         #   spin aka deploy -f {} --variable ...   (README, \"Deploying to Fermyon\")\n",
        platform.name(),
        profile_file(platform)
    );
    if let Some(mut key) = doc.as_table_mut().key_mut("spin_manifest_version") {
        key.leaf_decor_mut().set_prefix(header);
    }
    Ok(doc.to_string())
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

/// Where `make components` puts the builds without SQLite.
const WASM_FUNCTIONS_DIR: &str = "target/wasm32-wasip2/wasm-functions/";
const RELEASE_DIR: &str = "target/wasm32-wasip2/release/";

/// Points the component at its build without SQLite (`--no-default-features`), which doesn't
/// import the interface the platform lacks, and makes its build command produce it.
fn without_sqlite(id: &str, component: &mut Table) -> Result<()> {
    let Some(file) = component.get("source").and_then(Item::as_str).and_then(|s| s.strip_prefix(RELEASE_DIR)).map(str::to_owned) else {
        bail!("component `{id}`: a profile needs source = \"{RELEASE_DIR}<name>.wasm\"");
    };
    component.insert("source", value(format!("{WASM_FUNCTIONS_DIR}{file}")));
    if let Some(build) = component.get_mut("build").and_then(Item::as_table_mut)
        && let Some(command) = build.get("command").and_then(Item::as_str).map(str::to_owned)
    {
        let command = format!("{command} --no-default-features && install -D -m 644 {RELEASE_DIR}{file} {WASM_FUNCTIONS_DIR}{file}");
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
    fn subscribers_are_grouped_by_channel_in_trigger_order() {
        let subs = [("orders", "a"), ("payments", "a"), ("orders", "b"), ("analytics", "c")].map(|(x, y)| (x.to_owned(), y.to_owned()));
        assert_eq!(subscriptions_spec(&subs), "orders:a,b payments:a analytics:c");
    }
}

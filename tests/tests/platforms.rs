//! The host's platform mode (`--platform`, `gocoffee-host check`) on the real manifests and
//! components: the readiness check `make test` runs for each profile, and the refusals that make
//! a local run an honest rehearsal of a deploy to Fermyon Cloud or Fermyon Wasm Functions.

use std::process::{Command, Output};

use gocoffee_tests::{host_binary, workspace};

fn check(platform: &str, manifest: &str) -> Output {
    Command::new(host_binary()).args(["check", "--platform", platform, "-f"]).arg(workspace().join(manifest)).output().expect("run gocoffee-host check")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_profile_is_ready_for_spin_with_every_component_read() {
    let out = check("spin", "spin.toml");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("\nready: "), "{text}");
    // Each component's imports come from its binary: the orders component uses SQLite and Redis.
    let orders = text.lines().find(|l| l.trim_start().starts_with("orders (")).expect("orders in the report");
    assert!(orders.contains("fermyon:spin/sqlite@2.0.0") && orders.contains("fermyon:spin/redis@2.0.0"), "{orders}");
}

#[test]
fn the_wasm_functions_profile_is_ready_for_its_platform_with_nothing_it_lacks() {
    let out = check("fermyon-wasm-functions", gocoffee_tests::WASM_FUNCTIONS_PROFILE);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("\nready: 16 component(s)"), "{text}");
    // Built without SQLite and without their Redis or cron exports: PostgreSQL and HTTP alone.
    for component in ["orders", "order-consumer", "reconciler"] {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{component} ("))).expect("in the report");
        assert!(line.contains("spin:postgres/postgres@3.0.0"), "{line}");
        assert!(!line.contains("sqlite") && !line.contains("redis-types") && !line.contains("spin-cron"), "{line}");
    }
    // No Serverless AI there: the AI function is built without the llm interface.
    let ai = text.lines().find(|l| l.trim_start().starts_with("ai (")).expect("ai in the report");
    assert!(!ai.contains("fermyon:spin/llm"), "{ai}");
}

#[test]
fn the_cloud_profile_is_ready_for_its_platform_with_sqlite_and_no_chaining() {
    let out = check("fermyon-cloud", gocoffee_tests::FERMYON_CLOUD_PROFILE);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // The consumers are no components of their own there: the publishers run them.
    assert!(text.contains("\nready: 12 component(s)"), "{text}");
    let ai = text.lines().find(|l| l.trim_start().starts_with("ai (")).expect("ai in the report");
    assert!(ai.contains("fermyon:spin/llm@2.0.0"), "Fermyon Cloud offers Serverless AI: {ai}");
    let orders = text.lines().find(|l| l.trim_start().starts_with("orders (")).expect("orders in the report");
    assert!(orders.contains("fermyon:spin/sqlite@2.0.0") && !orders.contains("redis-types"), "{orders}");
    let manifest = std::fs::read_to_string(workspace().join(gocoffee_tests::FERMYON_CLOUD_PROFILE)).expect("the profile");
    assert!(!manifest.contains(".spin.internal") && !manifest.contains("{{ database_origin }}"), "no chaining, no variables in hosts");
}

/// The profiles are generated, never edited: what's checked in is what `gocoffee-host profile`
/// makes of spin.toml today (`make profiles` rewrites them).
#[test]
fn the_checked_in_profiles_are_what_spin_toml_generates() {
    for (platform, file) in [("fermyon-wasm-functions", gocoffee_tests::WASM_FUNCTIONS_PROFILE), ("fermyon-cloud", gocoffee_tests::FERMYON_CLOUD_PROFILE)] {
        let out = Command::new(host_binary())
            .args(["profile", "--platform", platform, "--to", "-", "-f"])
            .arg(workspace().join("spin.toml"))
            .output()
            .expect("run gocoffee-host profile");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let checked_in = std::fs::read_to_string(workspace().join(file)).expect("the profile");
        assert!(stdout(&out) == checked_in, "{file} is stale: run `make profiles` and commit it");
    }
}

#[test]
fn the_hosted_platforms_refuse_the_default_profile_and_say_why() {
    let cloud = check("fermyon-cloud", "spin.toml");
    let text = stdout(&cloud);
    assert!(!cloud.status.success(), "{text}");
    assert!(text.contains("refused: non-HTTP triggers are not supported on Fermyon Cloud - the app uses 'redis', 'cron'"), "{text}");
    assert!(text.contains("takes no variables in allowed_outbound_hosts"), "{text}");
    assert!(!text.contains("SQLite"), "Fermyon Cloud has SQLite: {text}");

    let wf = check("fermyon-wasm-functions", "spin.toml");
    let text = stdout(&wf);
    assert!(!wf.status.success(), "{text}");
    assert!(text.contains("on Fermyon Wasm Functions - the app uses 'redis', 'cron'"), "{text}");
    assert!(text.contains("component `orders` lists sqlite_databases"), "{text}");
    assert!(text.contains("component `orders` imports fermyon:spin/sqlite@2.0.0"), "{text}");
    assert!(!text.contains("allowed_outbound_hosts"), "variables there are fine on Wasm Functions: {text}");

    // Service chaining: offered by Wasm Functions, refused by Cloud.
    let chaining = check("fermyon-cloud", "tests/conformance/spin.toml");
    assert!(stdout(&chaining).contains("component `conformance` uses service chaining"), "{}", stdout(&chaining));
    let chaining = check("fermyon-wasm-functions", "tests/conformance/spin.toml");
    assert!(!stdout(&chaining).contains("service chaining"), "{}", stdout(&chaining));
}

#[test]
fn the_host_will_not_serve_what_its_platform_refuses() {
    let state = workspace().join("target/test-state").join(format!("platform-up-{}", std::process::id()));
    let out = Command::new(host_binary())
        .args(["up", "--platform", "fermyon-wasm-functions", "--listen", "127.0.0.1:0", "-f"])
        .arg(workspace().join("spin.toml"))
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("run gocoffee-host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fermyon-wasm-functions would refuse this application") && stderr.contains("sqlite_databases"), "{stderr}");
}

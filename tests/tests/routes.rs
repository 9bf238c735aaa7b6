//! The three descriptions of the HTTP surface agree: the app's route table, `openapi.yaml`, and
//! the routes and components in `spin.toml`.

use std::collections::BTreeSet;

use gocoffee_tests::{routes, workspace};

fn openapi() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(workspace().join("openapi.yaml")).expect("openapi.yaml")).expect("valid YAML")
}

fn spin() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(workspace().join("spin.toml")).expect("spin.toml")).expect("valid TOML")
}

/// Spin's matching: exact, or a `/...` wildcard over the prefix and everything below it.
fn spin_route_matches(route: &str, path: &str) -> bool {
    match route.strip_suffix("/...") {
        Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
        None => route == path,
    }
}

fn http_triggers() -> Vec<(String, String)> {
    spin()["trigger"]["http"]
        .as_array()
        .expect("http triggers")
        .iter()
        .map(|t| (t["route"].as_str().expect("route").to_owned(), t["component"].as_str().expect("component").to_owned()))
        .collect()
}

#[test]
fn openapi_documents_exactly_the_routes_the_app_serves() {
    let doc = openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("key");
            if method != "parameters" {
                documented.insert((method.to_ascii_uppercase(), path.as_str().expect("path").to_owned()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = routes().iter().map(|(_, r)| (r.method.to_string(), r.path.to_owned())).collect();
    assert_eq!(documented, served, "openapi.yaml and the functions' route tables differ");
}

#[test]
fn every_route_reaches_the_component_of_its_group_in_spin_toml() {
    let triggers = http_triggers();
    let routes = routes();
    for (function, r) in &routes {
        // Path parameters become a concrete segment for matching.
        let concrete = r.path.replace("{id}", "x").replace("{file}", "x.png");
        let best = triggers.iter().filter(|(route, _)| spin_route_matches(route, &concrete)).max_by_key(|(route, _)| route.len());
        let (route, component) = best.unwrap_or_else(|| panic!("no spin.toml route serves {} {}", r.method, r.path));
        assert_eq!(component, function, "{} {} is routed by {route} to {component}", r.method, r.path);
    }
    for (route, component) in &triggers {
        assert!(
            routes.iter().any(|(_, r)| spin_route_matches(route, &r.path.replace("{id}", "x"))),
            "spin.toml route {route} ({component}) serves no API route"
        );
    }
}

#[test]
fn every_component_is_built_from_its_own_function_crate() {
    let manifest = spin();
    for (id, c) in manifest["component"].as_table().expect("components") {
        let source = c["source"].as_str().expect("source");
        assert_eq!(source, format!("target/wasm32-wasip2/release/{}.wasm", id.replace('-', "_")), "{id}");
        assert!(workspace().join("functions").join(id).join("Cargo.toml").exists(), "functions/{id} is missing");
        let command = c["build"]["command"].as_str().expect("build command");
        assert!(command.ends_with(&format!("--target wasm32-wasip2 -p {id} --lib")), "{id}: {command}");
        assert!(c.get("allowed_outbound_hosts").is_some(), "{id} must list allowed_outbound_hosts explicitly");
    }
}

#[test]
fn every_variable_a_component_reads_is_declared_for_the_application() {
    let manifest = spin();
    let declared = manifest["variables"].as_table().expect("variables");
    for (id, c) in manifest["component"].as_table().expect("components") {
        let Some(vars) = c.get("variables").and_then(|v| v.as_table()) else { continue };
        for (name, template) in vars {
            let t = template.as_str().expect("template");
            let referenced = t.trim().trim_start_matches("{{").trim_end_matches("}}").trim();
            assert!(declared.contains_key(referenced), "{id}.{name} refers to undeclared variable {referenced}");
        }
    }
}

/// Whether openapi.yaml says `method path` needs a bearer token (its own `security`, or the
/// document's).
fn needs_token(doc: &serde_yaml::Value, method: &str, path: &str) -> bool {
    let op = &doc["paths"][path][method.to_ascii_lowercase().as_str()];
    let security = if op["security"].is_null() { &doc["security"] } else { &op["security"] };
    security.as_sequence().is_some_and(|s| !s.is_empty())
}

#[test]
fn the_http_api_in_sam_template_mirrors_spin_toml_and_guards_what_openapi_says_needs_a_token() {
    use gocoffee_tests::lambda::{select_route, template_routes};
    let routes = template_routes();
    // Each spin.toml route is the same function's route(s) on API Gateway: `/x/...` is `ANY /x`
    // plus `ANY /x/{proxy+}`, an exact route is `ANY` on that path.
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for (route, component) in http_triggers().into_iter().filter(|(_, c)| !gocoffee_tests::SPIN_ONLY.contains(&c.as_str())) {
        match route.strip_suffix("/...") {
            Some(prefix) => {
                expected.insert((format!("ANY {prefix}"), component.clone()));
                expected.insert((format!("ANY {prefix}/{{proxy+}}"), component));
            }
            None => {
                expected.insert((format!("ANY {route}"), component));
            }
        }
    }
    let declared: BTreeSet<(String, String)> = routes.iter().filter(|r| r.key.starts_with("ANY ")).map(|r| (r.key.clone(), r.function.clone())).collect();
    assert_eq!(declared, expected, "sam-template.yaml's ANY routes and spin.toml's routes differ");
    assert_eq!(
        routes.iter().filter(|r| r.key == "$default").map(|r| (r.function.as_str(), r.authorized)).collect::<Vec<_>>(),
        [("health", false)],
        "one $default route"
    );
    // A route naming its method exists only to put the authorizer on an operation under a public
    // prefix.
    for r in routes.iter().filter(|r| !r.key.starts_with("ANY ") && r.key != "$default") {
        assert!(r.authorized, "{} names its method but not the authorizer", r.key);
    }
    let doc = openapi();
    for (owner, r) in gocoffee_tests::routes().into_iter().filter(|(_, r)| gocoffee_tests::on_aws(r)) {
        let concrete = r.path.replace("{id}", "x").replace("{file}", "x.png");
        let route = select_route(&routes, r.method.as_str(), &concrete).expect("routed");
        assert_eq!(route.function, owner, "{} {} goes to {} by {}", r.method, r.path, route.function, route.key);
        assert_eq!(
            route.authorized,
            needs_token(&doc, r.method.as_str(), r.path),
            "{} {} is routed by {}: the authorizer must guard it exactly when openapi.yaml says it needs a token",
            r.method,
            r.path,
            route.key
        );
    }
}

//! `spin.toml` (manifest version 2): the parts the host acts on, and application variables with
//! the `{{ name }}` templates that refer to them. Fields the host has no use for (Redis trigger
//! addresses, since the embedded log stands in for every Redis server; `secret`; build settings)
//! are ignored, as Spin ignores what a trigger doesn't read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

/// `[application.trigger.redis]`: the Redis trigger's default server.
#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTriggers {
    pub redis: Option<RedisTriggerConfig>,
}

#[derive(Debug, Deserialize)]
pub struct RedisTriggerConfig {
    pub address: String,
}

#[derive(Debug, Deserialize)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
    #[serde(default)]
    pub cron: Vec<CronTrigger>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: RouteDecl,
    pub component: String,
}

/// An HTTP trigger's `route`: a path, or `{ private = true }` for a component that only other
/// components reach, by service chaining (`http://<component>.spin.internal/...`), as in Spin.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteDecl {
    Path(String),
    Private { private: bool },
}

impl HttpTrigger {
    /// The path the router serves this trigger on; `None` for a private route.
    pub fn path(&self) -> Option<&str> {
        match &self.route {
            RouteDecl::Path(path) => Some(path),
            RouteDecl::Private { .. } => None,
        }
    }

    /// How the trigger is named in errors.
    fn describe(&self) -> String {
        self.path().map_or_else(|| format!("private route of `{}`", self.component), |p| format!("route {p}"))
    }
}

#[derive(Debug, Deserialize)]
pub struct RedisTrigger {
    pub channel: String,
    pub component: String,
    /// This trigger's own server, instead of the application's.
    pub address: Option<String>,
}

/// `[[trigger.cron]]` as Fermyon's spin-trigger-cron plugin reads it: a component and a cron
/// expression with seconds (`sec min hour day-of-month month day-of-week [year]`).
#[derive(Debug, Deserialize)]
pub struct CronTrigger {
    pub component: String,
    pub cron_expression: String,
}

impl CronTrigger {
    pub fn schedule(&self) -> Result<cron::Schedule> {
        self.cron_expression.parse().with_context(|| format!("cron trigger for {}: `{}` is not a cron expression", self.component, self.cron_expression))
    }
}

#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!("{}: only spin_manifest_version = 2 is supported", path.display());
        }
        for t in &manifest.trigger.http {
            if !manifest.component.contains_key(&t.component) {
                bail!("trigger for {} names unknown component `{}`", t.describe(), t.component);
            }
            if matches!(t.route, RouteDecl::Private { private: false }) {
                bail!("the trigger of component `{}`: `route = {{ private = false }}` is not allowed; give a path instead", t.component);
            }
        }
        for t in &manifest.trigger.redis {
            if !manifest.component.contains_key(&t.component) {
                bail!("redis trigger for channel {} names unknown component `{}`", t.channel, t.component);
            }
        }
        for t in &manifest.trigger.cron {
            if !manifest.component.contains_key(&t.component) {
                bail!("cron trigger names unknown component `{}`", t.component);
            }
            t.schedule()?;
        }
        for name in manifest.variables.keys() {
            if !valid_variable_name(name) {
                bail!("variable name `{name}` must be lowercase letters, digits and underscores, starting with a letter");
            }
        }
        Ok(manifest)
    }

    /// A component's source resolved against the manifest's folder.
    pub fn source_path(&self, manifest_path: &Path, id: &str) -> Option<PathBuf> {
        let c = self.component.get(id)?;
        Some(manifest_path.parent().unwrap_or(Path::new(".")).join(&c.source))
    }
}

pub fn valid_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Application variables with their values resolved: `--variable` flags, then
/// `SPIN_VARIABLE_<NAME>` from the environment, then the manifest's default.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    pub fn resolve(decls: &BTreeMap<String, VariableDecl>, flags: &BTreeMap<String, String>, env: impl Fn(&str) -> Option<String>) -> Result<Variables> {
        for name in flags.keys() {
            if !decls.contains_key(name) {
                bail!("--variable {name}: the manifest declares no such variable");
            }
        }
        let mut values = BTreeMap::new();
        let mut missing = vec![];
        for (name, decl) in decls {
            let value = flags.get(name).cloned().or_else(|| env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()))).or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if decl.required => missing.push(name.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            bail!(
                "required variables are not set: {} (set SPIN_VARIABLE_{} or pass --variable {}=...)",
                missing.join(", "),
                missing[0].to_ascii_uppercase(),
                missing[0]
            );
        }
        Ok(Variables { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Expands `{{ name }}` references in `template`.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").with_context(|| format!("unclosed {{{{ in `{template}`"))?;
            let name = after[..end].trim();
            let value = self.get(name).with_context(|| format!("`{template}` refers to variable `{name}`, which has no value"))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        let mut d = BTreeMap::new();
        d.insert("secret".into(), VariableDecl { default: None, required: true });
        d.insert("host".into(), VariableDecl { default: Some("127.0.0.1".into()), required: false });
        d
    }

    #[test]
    fn flags_beat_environment_beat_defaults() {
        let env = |k: &str| (k == "SPIN_VARIABLE_HOST").then(|| "env-host".to_owned());
        let mut flags = BTreeMap::new();
        flags.insert("secret".to_owned(), "s3".to_owned());
        let v = Variables::resolve(&decls(), &flags, env).expect("resolves");
        assert_eq!((v.get("secret"), v.get("host")), (Some("s3"), Some("env-host")));
        flags.insert("host".into(), "flag-host".into());
        assert_eq!(Variables::resolve(&decls(), &flags, env).expect("resolves").get("host"), Some("flag-host"));
    }

    #[test]
    fn a_missing_required_variable_or_an_unknown_flag_is_an_error() {
        let err = Variables::resolve(&decls(), &BTreeMap::new(), |_| None).expect_err("missing");
        assert!(err.to_string().contains("SPIN_VARIABLE_SECRET"), "{err}");
        let mut flags = BTreeMap::new();
        flags.insert("nope".to_owned(), "x".to_owned());
        assert!(Variables::resolve(&decls(), &flags, |_| Some("x".into())).is_err());
    }

    fn manifest(triggers: &str) -> Result<Manifest> {
        let dir = std::env::temp_dir().join(format!("gocoffee-manifest-{}-{}", std::process::id(), triggers.len()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("spin.toml");
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n{triggers}\n[component.a]\nsource = \"a.wasm\"\n[component.b]\nsource = \"b.wasm\"\n"
        );
        std::fs::write(&path, text).expect("write");
        Manifest::load(&path)
    }

    #[test]
    fn a_route_is_a_path_or_private_and_never_private_false() {
        let m = manifest("[[trigger.http]]\nroute = \"/a/...\"\ncomponent = \"a\"\n[[trigger.http]]\nroute = { private = true }\ncomponent = \"b\"")
            .expect("loads");
        let paths: Vec<Option<&str>> = m.trigger.http.iter().map(HttpTrigger::path).collect();
        assert_eq!(paths, vec![Some("/a/..."), None]);
        let err = manifest("[[trigger.http]]\nroute = { private = false }\ncomponent = \"b\"").expect_err("private = false");
        assert!(err.to_string().contains("private = false"), "{err}");
        assert!(manifest("[[trigger.http]]\nroute = { private = true }\ncomponent = \"c\"").is_err(), "unknown component");
    }

    #[test]
    fn templates_expand_and_unknown_names_fail() {
        let v = Variables::resolve(&decls(), &BTreeMap::new(), |_| Some("v".into())).expect("resolves");
        assert_eq!(v.expand("redis://{{ host }}:6379").expect("expands"), "redis://v:6379");
        assert_eq!(v.expand("plain").expect("expands"), "plain");
        assert!(v.expand("{{ missing }}").is_err());
        assert!(v.expand("{{ host").is_err());
    }
}

//! `--platform`: what a hosted Spin platform offers and refuses, so the host can refuse the same
//! and a local run is an honest rehearsal of a deploy (`gocoffee-host check` prints the verdict
//! without serving).
//!
//! The rules come from the platforms' own documents and tools, read on 2026-11-27:
//! - Fermyon Cloud: its FAQ's feature table and quotas (developer.fermyon.com/cloud/faq), and the
//!   `cloud` plugin's deploy checks (fermyon/cloud-plugin `src/commands/deploy.rs`): HTTP triggers
//!   only, no service chaining (`local_service_chaining` is not among its supported features),
//!   no variables in `allowed_outbound_hosts`, `wasi:keyvalue` `store` only, 100 MB per
//!   application. Its memory limit is not published, so the host's own applies.
//! - Fermyon Wasm Functions (Akamai Functions): its FAQ and quotas: HTTP triggers only, no SQLite,
//!   key-value store `default` only, no `wasi:keyvalue/atomics`, 128 MiB per execution, 50 MiB
//!   per application; service chaining is offered.
//!
//! Both give a request 30 s, as the host does for every platform.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::manifest::Manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    /// Self-hosted Spin (`spin up`, SpinKube): every trigger and interface the host has.
    #[default]
    Spin,
    FermyonCloud,
    FermyonWasmFunctions,
}

impl Platform {
    /// Whether the host keeps WebSocket connections for components (`crate::sockets`). No Spin
    /// platform does; the host does by default, so clients' WebSocket transport (API Gateway's
    /// contract) runs locally, and refuses upgrades as a hosted platform would under its rules.
    pub fn websockets(self) -> bool {
        self == Platform::Spin
    }
}

/// The linear memory one invocation may grow to where a platform sets no lower limit.
pub const DEFAULT_GUEST_MEMORY: usize = 256 << 20;

impl std::str::FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Platform> {
        match name {
            "spin" => Ok(Platform::Spin),
            "fermyon-cloud" => Ok(Platform::FermyonCloud),
            "fermyon-wasm-functions" | "akamai-functions" => Ok(Platform::FermyonWasmFunctions),
            other => bail!("--platform `{other}`: expected spin, fermyon-cloud or fermyon-wasm-functions"),
        }
    }
}

/// A component's imports a platform doesn't provide: an interface-name prefix and why.
type Refusal = (&'static str, &'static str);

const NO_SQLITE: &str = "Fermyon Wasm Functions has no SQLite; use PostgreSQL or key-value";
const NO_ATOMICS: &str = "the platform's key-value store has no wasi:keyvalue/atomics";
const NO_TRIGGERS: &str = "the platform runs HTTP triggers alone; build the component without its Redis or cron export";

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Spin => "spin",
            Platform::FermyonCloud => "fermyon-cloud",
            Platform::FermyonWasmFunctions => "fermyon-wasm-functions",
        }
    }

    /// The linear memory one invocation may grow to.
    pub fn guest_memory(self) -> usize {
        match self {
            Platform::FermyonWasmFunctions => 128 << 20,
            Platform::Spin | Platform::FermyonCloud => DEFAULT_GUEST_MEMORY,
        }
    }

    /// The most the application's components may weigh together.
    fn app_bytes(self) -> Option<u64> {
        match self {
            Platform::Spin => None,
            Platform::FermyonCloud => Some(100_000_000),
            Platform::FermyonWasmFunctions => Some(50 << 20),
        }
    }

    fn refused_imports(self) -> &'static [Refusal] {
        match self {
            Platform::Spin => &[],
            Platform::FermyonCloud => &[
                ("wasi:keyvalue/batch", "Fermyon Cloud offers wasi:keyvalue/store only"),
                ("wasi:keyvalue/atomics", "Fermyon Cloud offers wasi:keyvalue/store only"),
            ],
            Platform::FermyonWasmFunctions => &[
                ("fermyon:spin/sqlite", NO_SQLITE),
                ("spin:sqlite/", NO_SQLITE),
                ("wasi:keyvalue/atomics", NO_ATOMICS),
                ("fermyon:spin/redis-types", NO_TRIGGERS),
                ("fermyon:spin-cron/", NO_TRIGGERS),
                ("fermyon:spin/llm", "Fermyon Wasm Functions offers Serverless AI only to accounts granted it"),
            ],
        }
    }

    /// The interfaces the platform documents (its feature table), by name prefix: anything else a
    /// component imports is refused, so an interface nobody checked is never waved through.
    fn offered_imports(self) -> Option<&'static [&'static str]> {
        const FERMYON: &[&str] = &[
            "wasi:",
            "fermyon:spin/key-value@",
            "fermyon:spin/variables@",
            "fermyon:spin/redis@",
            "fermyon:spin/postgres@",
            "fermyon:spin/mysql@",
            "fermyon:spin/sqlite@",
            "fermyon:spin/llm@",
            "spin:postgres/",
            "spin:mysql/",
            "spin:redis/redis@",
            "spin:key-value/",
            "spin:variables/",
            "spin:sqlite/",
        ];
        match self {
            Platform::Spin => None,
            Platform::FermyonCloud | Platform::FermyonWasmFunctions => Some(FERMYON),
        }
    }

    /// Everything in the manifest this platform would refuse, each said in a sentence.
    pub fn manifest_problems(self, manifest: &Manifest) -> Vec<String> {
        let mut problems = Vec::new();
        if self == Platform::Spin {
            return problems;
        }
        let platform = match self {
            Platform::FermyonCloud => "Fermyon Cloud",
            _ => "Fermyon Wasm Functions",
        };
        let mut others: Vec<&str> = Vec::new();
        if !manifest.trigger.redis.is_empty() {
            others.push("'redis'");
        }
        if !manifest.trigger.cron.is_empty() {
            others.push("'cron'");
        }
        if !others.is_empty() {
            problems.push(format!(
                "non-HTTP triggers are not supported on {platform} - the app uses {} (the platform calls HTTP routes on a schedule instead of a cron trigger)",
                others.join(", ")
            ));
        }
        for (id, component) in &manifest.component {
            let chains = component.allowed_outbound_hosts.iter().any(|h| h.contains(".spin.internal"));
            if self == Platform::FermyonCloud && chains {
                problems.push(format!("component `{id}` uses service chaining (*.spin.internal), which Fermyon Cloud doesn't offer (local_service_chaining)"));
            }
            if self == Platform::FermyonCloud && component.allowed_outbound_hosts.iter().any(|h| h.contains("{{")) {
                problems.push(format!("component `{id}`: Fermyon Cloud takes no variables in allowed_outbound_hosts; write the hosts out"));
            }
            if self == Platform::FermyonWasmFunctions && !component.sqlite_databases.is_empty() {
                problems.push(format!("component `{id}` lists sqlite_databases: {NO_SQLITE}"));
            }
            if self == Platform::FermyonWasmFunctions
                && let Some(label) = component.key_value_stores.iter().find(|l| *l != "default")
            {
                problems.push(format!("component `{id}` lists key-value store `{label}`: Fermyon Wasm Functions has the `default` store only"));
            }
        }
        problems
    }

    /// What this platform would refuse in one component's imports.
    pub fn import_problems(self, id: &str, imports: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        for import in imports {
            if let Some((_, why)) = self.refused_imports().iter().find(|(prefix, _)| import.starts_with(prefix)) {
                problems.push(format!("component `{id}` imports {import}: {why}"));
            } else if let Some(offered) = self.offered_imports()
                && !offered.iter().any(|prefix| import.starts_with(prefix))
            {
                problems.push(format!("component `{id}` imports {import}, which is not among the interfaces {} documents", self.name()));
            }
        }
        problems
    }

    /// Whether the application's components fit in the platform's size limit.
    pub fn size_problems(self, total_bytes: u64) -> Vec<String> {
        match self.app_bytes() {
            Some(limit) if total_bytes > limit => {
                vec![format!("the components weigh {total_bytes} bytes together, over the platform's {limit}")]
            }
            _ => Vec::new(),
        }
    }
}

/// The names of the interfaces a component imports, read from its binary without compiling it.
pub fn imports(wasm: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    // Only the outer component's own imports: nested modules' and components' are satisfied inside.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.context("reading the component")? {
            wasmparser::Payload::Version { encoding: wasmparser::Encoding::Component, .. } => depth += 1,
            wasmparser::Payload::Version { encoding: wasmparser::Encoding::Module, .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let name = import.context("an import")?.name;
                    names.push(format!("{}{}", name.name, name.version_suffix.unwrap_or_default()));
                }
            }
            _ => {}
        }
    }
    if names.is_empty() && !wasmparser::Parser::is_component(wasm) {
        bail!("not a WebAssembly component");
    }
    Ok(names)
}

/// One component's part of a readiness report.
pub struct ComponentReport {
    pub id: String,
    pub bytes: u64,
    pub imports: Vec<String>,
}

/// Every problem deploying `manifest` to `platform` would meet, with each triggered component's
/// size and imports: what `gocoffee-host check` prints.
pub fn readiness(platform: Platform, manifest: &Manifest, manifest_path: &Path) -> Result<(Vec<ComponentReport>, Vec<String>)> {
    let mut problems = platform.manifest_problems(manifest);
    let mut reports = Vec::new();
    let triggered = |id: &str| {
        manifest.trigger.http.iter().any(|t| t.component == id)
            || manifest.trigger.redis.iter().any(|t| t.component == id)
            || manifest.trigger.cron.iter().any(|t| t.component == id)
    };
    for id in manifest.component.keys().filter(|id| triggered(id)) {
        let path = manifest.source_path(manifest_path, id).context("component source")?;
        let wasm = std::fs::read(&path).with_context(|| format!("reading {} (build the components first: make components)", path.display()))?;
        let imports = imports(&wasm).with_context(|| format!("component `{id}` ({})", path.display()))?;
        problems.extend(platform.import_problems(id, &imports));
        reports.push(ComponentReport { id: id.clone(), bytes: wasm.len() as u64, imports });
    }
    problems.extend(platform.size_problems(reports.iter().map(|r| r.bytes).sum()));
    Ok((reports, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_named_as_their_tools_name_them() {
        assert_eq!("fermyon-wasm-functions".parse::<Platform>().expect("parses"), Platform::FermyonWasmFunctions);
        assert_eq!("akamai-functions".parse::<Platform>().expect("parses"), Platform::FermyonWasmFunctions);
        assert_eq!("fermyon-cloud".parse::<Platform>().expect("parses").name(), "fermyon-cloud");
        assert!("aws".parse::<Platform>().is_err());
    }

    #[test]
    fn imports_a_platform_lacks_are_named_with_the_reason() {
        let imports = vec!["fermyon:spin/sqlite@2.0.0".to_owned(), "fermyon:spin/key-value@2.0.0".to_owned(), "wasi:keyvalue/atomics@0.2.0-draft2".to_owned()];
        let wf = Platform::FermyonWasmFunctions.import_problems("orders", &imports);
        assert_eq!(wf.len(), 2, "{wf:?}");
        assert!(wf[0].contains("fermyon:spin/sqlite@2.0.0") && wf[0].contains("PostgreSQL"), "{wf:?}");
        let cloud = Platform::FermyonCloud.import_problems("orders", &imports);
        assert_eq!(cloud.len(), 1, "{cloud:?}");
        assert!(Platform::Spin.import_problems("orders", &imports).is_empty());
        // A trigger export's types, and an interface neither platform documents.
        let others = vec!["fermyon:spin-cron/cron-types@2.0.0".to_owned(), "fermyon:spin/redis-types".to_owned(), "example:made/up@1.0.0".to_owned()];
        let wf = Platform::FermyonWasmFunctions.import_problems("reconciler", &others);
        assert_eq!(wf.len(), 3, "{wf:?}");
        assert!(wf[0].contains("HTTP triggers alone") && wf[2].contains("not among the interfaces"), "{wf:?}");
        assert_eq!(Platform::FermyonCloud.import_problems("reconciler", &others).len(), 3);
        assert!(Platform::Spin.import_problems("reconciler", &others).is_empty());
    }

    #[test]
    fn an_application_over_the_size_limit_is_refused() {
        assert!(Platform::FermyonWasmFunctions.size_problems(50 << 20).is_empty());
        assert_eq!(Platform::FermyonWasmFunctions.size_problems((50 << 20) + 1).len(), 1);
        assert!(Platform::Spin.size_problems(u64::MAX).is_empty());
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        assert!(imports(b"\0asm\x01\0\0\0").is_err());
        assert!(imports(b"not wasm").is_err());
    }
}

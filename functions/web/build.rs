//! Embeds `web/`: each page at its route, each asset under `/assets/` named by a hash of its
//! content. A file refers to another as `{{name.ext}}` (a page to its script, a script to the
//! module it imports), replaced by the other's fingerprinted URL, so a file's hash covers what it
//! refers to and a change anywhere renames everything that depends on it.
//!
//! The hash is FNV-1a (64 bits), written here: it only has to tell versions of a file apart, and a
//! cryptographic hash crate would be one more build dependency compiled for every target.

use std::collections::BTreeMap;
use std::path::Path;

/// The pages: file, and the route it is served at.
const PAGES: &[(&str, &str)] = &[("index.html", "/"), ("kitchen.html", "/kitchen")];

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("webmanifest") => "application/manifest+json",
        other => panic!("web/: no content type for {other:?}"),
    }
}

/// The `{{name}}` references in `text`.
fn references(text: &str) -> Vec<String> {
    text.split("{{").skip(1).filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim().to_owned())).collect()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    println!("cargo::rerun-if-changed={}", root.display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&root).expect("web/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name").to_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        println!("cargo::rerun-if-changed={}", path.display());
        sources.insert(name, std::fs::read_to_string(&path).expect("a UTF-8 text file"));
    }
    // Resolve files whose references are resolved, until all are.
    let mut urls: BTreeMap<String, String> = BTreeMap::new();
    let mut rendered: BTreeMap<String, String> = BTreeMap::new();
    while rendered.len() < sources.len() {
        let ready: Vec<String> = sources
            .iter()
            .filter(|(name, text)| !rendered.contains_key(*name) && references(text).iter().all(|r| urls.contains_key(r)))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            !ready.is_empty(),
            "web/: references that can't be resolved (a cycle, or a missing file) among {:?}",
            sources.keys().filter(|n| !rendered.contains_key(*n)).collect::<Vec<_>>()
        );
        for name in ready {
            let mut text = sources[&name].clone();
            for r in references(&sources[&name]) {
                text = text.replace(&format!("{{{{{r}}}}}"), &urls[&r]);
            }
            if !PAGES.iter().any(|(page, _)| *page == name) {
                let (stem, ext) = name.rsplit_once('.').expect("an extension");
                urls.insert(name.clone(), format!("/assets/{stem}.{:016x}.{ext}", fnv1a(text.as_bytes())));
            }
            rendered.insert(name, text);
        }
    }
    let mut table = String::from("static FILES: &[Asset] = &[\n");
    for (name, text) in &rendered {
        let file = out.join(name);
        std::fs::write(&file, text).expect("write");
        let (path, fingerprinted) = match PAGES.iter().find(|(page, _)| page == name) {
            Some((_, route)) => (route.to_string(), false),
            None => (urls[name].clone(), true),
        };
        table.push_str(&format!(
            "    Asset {{ path: {path:?}, content_type: {:?}, body: include_bytes!({:?}), fingerprinted: {fingerprinted} }},\n",
            content_type(name),
            file.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out.join("assets.rs"), table).expect("write assets.rs");
}

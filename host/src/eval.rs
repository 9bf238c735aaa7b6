//! `gocoffee-host eval`: the AI layer measured on its frozen evaluation set (`bench/ai-eval`),
//! each method beside its baselines, on one split. Embeddings come from the host's own
//! all-MiniLM-L6-v2 when its files are there; without them the hybrid rows are left out and
//! the command says so.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gocoffee_ai::agents::AGENTS;
use gocoffee_ai::eval::{RoutingCase, SearchCase, accuracy_and_macro_f1, in_split, ndcg_at, reciprocal_rank};
use gocoffee_ai::router::Router;
use gocoffee_ai::search::{Catalogue, Method};

/// Turns texts into vectors (the host's native model), or `None` without one.
pub type Embed<'a> = Option<&'a dyn Fn(&[String]) -> Result<Vec<Vec<f32>>>>;

fn load<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs every evaluation on `split` (`dev`, `test` or `all`) and prints the tables.
pub fn run(dir: &Path, split: &str, embed: Embed<'_>) -> Result<()> {
    if !matches!(split, "dev" | "test" | "all") {
        bail!("--split must be dev, test or all");
    }
    if embed.is_none() {
        println!("(no embedding model: the hybrid rows are left out; `make models` installs all-MiniLM-L6-v2)");
    }
    routing(dir, split, embed)?;
    search(dir, split, embed)?;
    Ok(())
}

fn routing(dir: &Path, split: &str, embed: Embed<'_>) -> Result<()> {
    let all: Vec<RoutingCase> = load(dir, "routing.json")?;
    let cases: Vec<&RoutingCase> = in_split(&all, split, |c| c.split.as_str()).collect();
    let router = Router::new(AGENTS);
    if let Some(c) = all.iter().find(|c| router.agent(&c.agent).is_none()) {
        bail!("routing.json labels {:?} with {:?}, which is no registered agent", c.request, c.agent);
    }
    let truth: Vec<&str> = cases.iter().map(|c| c.agent.as_str()).collect();
    println!("\nrouting: {} requests ({split}), {} agents", cases.len(), AGENTS.len());
    println!("  {:<28} {:>9} {:>9} {:>12}", "method", "accuracy", "macro-F1", "µs/request");
    let row = |name: &str, predicted: Vec<&str>, micros: f64| {
        let (acc, f1) = accuracy_and_macro_f1(&truth, &predicted);
        println!("  {name:<28} {acc:>9.3} {f1:>9.3} {micros:>12.1}");
    };
    let started = Instant::now();
    let keyword: Vec<&str> = cases.iter().map(|c| router.keyword(&c.request)).collect();
    row("keyword (baseline)", keyword, per(started, cases.len()));
    let started = Instant::now();
    let bm25: Vec<&str> = cases.iter().map(|c| router.route(&c.request, None).agent).collect();
    row("bm25", bm25, per(started, cases.len()));
    if let Some(embed) = embed {
        let docs = embed(&router.embedding_texts())?;
        let requests: Vec<String> = cases.iter().map(|c| c.request.clone()).collect();
        let started = Instant::now();
        let vectors = embed(&requests)?;
        let hybrid: Vec<&str> = cases.iter().zip(&vectors).map(|(c, v)| router.route(&c.request, Some((v, &docs))).agent).collect();
        row("bm25 + embeddings", hybrid, per(started, cases.len()));
    }
    Ok(())
}

fn search(dir: &Path, split: &str, embed: Embed<'_>) -> Result<()> {
    let all: Vec<SearchCase> = load(dir, "search.json")?;
    let cases: Vec<&SearchCase> = in_split(&all, split, |c| c.split.as_str()).collect();
    let catalogue = Catalogue::from_menu(&gocoffee_core::menu::default_menu());
    for c in &all {
        if let Some(id) = c.relevant.keys().find(|id| !catalogue.items().iter().any(|i| &i.id == *id)) {
            bail!("search.json grades {id:?} for {:?}, which is not on the menu", c.query);
        }
    }
    println!("\nsearch: {} queries ({split}) over the default menu ({} items)", cases.len(), catalogue.items().len());
    println!("  {:<28} {:>9} {:>9} {:>12}", "method", "nDCG@5", "MRR", "µs/query");
    let item_vectors = match embed {
        Some(embed) => Some(embed(&catalogue.embedding_texts())?),
        None => None,
    };
    let query_vectors = match embed {
        Some(embed) => Some(embed(&cases.iter().map(|c| c.query.clone()).collect::<Vec<_>>())?),
        None => None,
    };
    let mut methods = vec![("substring (baseline)", Method::Substring), ("bm25 (baseline)", Method::Bm25), ("bm25 + typos + constraints", Method::Lexical)];
    if item_vectors.is_some() {
        methods.push(("hybrid (+ embeddings)", Method::Hybrid));
    }
    for (name, method) in methods {
        let started = Instant::now();
        let (mut ndcg, mut mrr) = (0.0, 0.0);
        for (i, c) in cases.iter().enumerate() {
            let vectors = match (&query_vectors, &item_vectors) {
                (Some(q), Some(items)) => Some((q[i].as_slice(), items.as_slice())),
                _ => None,
            };
            let hits = catalogue.search(&c.query, &c.filters, method, vectors, 10);
            let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            ndcg += ndcg_at(5, &ids, &c.relevant);
            mrr += reciprocal_rank(&ids, &c.relevant);
        }
        let n = cases.len().max(1) as f64;
        println!("  {name:<28} {:>9.3} {:>9.3} {:>12.1}", ndcg / n, mrr / n, per(started, cases.len()));
    }
    Ok(())
}

fn per(started: Instant, n: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
}

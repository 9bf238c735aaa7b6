//! `gocoffee-host eval`: the AI layer measured on its frozen evaluation set (`bench/ai-eval`),
//! each method beside its baselines, on one split: routing (accuracy, macro-F1), search
//! (nDCG@5, MRR), customer service (hit rate, citations) and analytics (exact
//! answers on frozen synthetic sales). Embeddings come from the host's own
//! all-MiniLM-L6-v2 when its files are there; without them the hybrid rows are left out and
//! the command says so. With a language model (`--llm-url`, `--llm-model`), the customer-service
//! answers are also phrased by it, as the agent does, and its fallback rate is measured.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gocoffee_ai::agents::AGENTS;
use gocoffee_ai::eval::{AnalyticsCase, Expect, RoutingCase, SearchCase, ServiceCase, accuracy_and_macro_f1, in_split, ndcg_at, reciprocal_rank};
use gocoffee_ai::model::Source;
use gocoffee_ai::router::Router;
use gocoffee_ai::search::{Catalogue, Method};
use gocoffee_ai::service::{Intent, Knowledge, cafe_passages, cited, intent, prompt};
use gocoffee_ai::text::terms;

/// Turns texts into vectors (the host's native model), or `None` without one.
pub type Embed<'a> = Option<&'a dyn Fn(&[String]) -> Result<Vec<Vec<f32>>>>;

/// A language model: its name, and the answer to a prompt (as Spin's `infer` takes it).
pub type Infer<'a> = Option<(&'a str, &'a dyn Fn(&str) -> Result<String>)>;

fn load<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs every evaluation on `split` (`dev`, `test` or `all`) and prints the tables.
pub fn run(dir: &Path, split: &str, embed: Embed<'_>, infer: Infer<'_>) -> Result<()> {
    if !matches!(split, "dev" | "test" | "all") {
        bail!("--split must be dev, test or all");
    }
    if embed.is_none() {
        println!("(no embedding model: the hybrid rows are left out; `make models` installs all-MiniLM-L6-v2)");
    }
    routing(dir, split, embed)?;
    search(dir, split, embed)?;
    service(dir, split, embed, infer)?;
    analytics(dir, split)?;
    if let Some(embed) = embed {
        batches(dir, embed)?;
    }
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

/// What the agent (or a baseline) made of a customer-service question.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Answered from these passages, best first (the café's and the menu's).
    Passages(Vec<String>),
    Tool(&'static str),
    Handoff,
}

fn expected(e: &Expect) -> &str {
    match e {
        Expect::Passage(_) => "passage",
        Expect::Tool(t) => t,
        Expect::Handoff(_) => "handoff",
    }
}

fn service(dir: &Path, split: &str, embed: Embed<'_>, infer: Infer<'_>) -> Result<()> {
    let all: Vec<ServiceCase> = load(dir, "service.json")?;
    let passages = cafe_passages();
    for c in &all {
        if let Expect::Passage(id) = &c.expect
            && !passages.iter().any(|p| &p.id == id)
        {
            bail!("service.json answers {:?} with {id:?}, which is no passage of shared/ai/data/cafe.md", c.question);
        }
    }
    let cases: Vec<&ServiceCase> = in_split(&all, split, |c| c.split.as_str()).collect();
    let menu = gocoffee_core::menu::default_menu();
    let knowledge = Knowledge::new(&menu);
    let vectors = match embed {
        Some(embed) => Some((embed(&knowledge.embedding_texts())?, embed(&cases.iter().map(|c| c.question.clone()).collect::<Vec<_>>())?)),
        None => None,
    };
    // The baseline: the passage sharing the most words with the question, no tools.
    let keyword = |q: &str| -> Outcome {
        let asked: Vec<String> = terms(q);
        let best = passages
            .iter()
            .map(|p| {
                let text = terms(&format!("{} {}", p.title, p.text));
                (asked.iter().filter(|w| text.contains(w)).count(), p)
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, p)) if n > 0 => Outcome::Passages(vec![p.id.clone()]),
            _ => Outcome::Handoff,
        }
    };
    let agent = |i: usize, q: &str, with_vectors: bool| -> Outcome {
        match intent(q) {
            Intent::MyOrders => Outcome::Tool("my_orders"),
            Intent::Recommend => Outcome::Tool("recommend"),
            Intent::Handoff => Outcome::Handoff,
            Intent::Question => {
                let pair = match (&vectors, with_vectors) {
                    (Some((docs, questions)), true) => Some((questions[i].as_slice(), docs.as_slice())),
                    _ => None,
                };
                match knowledge.retrieve(q, pair, 3) {
                    None => Outcome::Handoff,
                    Some(found) => Outcome::Passages(found.iter().map(|(p, _)| knowledge.passages[*p].id.clone()).collect()),
                }
            }
        }
    };
    println!("\ncustomer service: {} questions ({split}) over {} passages and the menu", cases.len(), passages.len());
    if infer.is_none() {
        // Every answer is the fallback's (retrieval and templates): its rate is 1 by
        // construction, not a measurement.
        println!("  (no language model: every answer is retrieval + template; --llm-url measures one)");
    }
    println!("  {:<28} {:>9} {:>9} {:>12}", "method", "hit rate", "cited ok", "µs/question");
    let row = |name: &str, outcomes: Vec<Outcome>, micros: f64| {
        let (mut hits, mut cited, mut passage_cases) = (0, 0, 0);
        for (c, o) in cases.iter().zip(&outcomes) {
            match (&c.expect, o) {
                (Expect::Passage(want), Outcome::Passages(got)) => {
                    passage_cases += 1;
                    // The answer is built from the first café passage found; every one found is cited.
                    if got.iter().find(|id| !id.starts_with("menu:")) == Some(want) {
                        hits += 1;
                    }
                    if got.contains(want) {
                        cited += 1;
                    }
                }
                (Expect::Passage(_), _) => passage_cases += 1,
                (e, Outcome::Tool(t)) if expected(e) == *t => hits += 1,
                (Expect::Handoff(_), Outcome::Handoff) => hits += 1,
                _ => {}
            }
        }
        let n = cases.len().max(1) as f64;
        println!("  {name:<28} {:>9.3} {:>9.3} {micros:>12.1}", hits as f64 / n, cited as f64 / passage_cases.max(1) as f64);
    };
    let started = Instant::now();
    let outcomes = cases.iter().map(|c| keyword(&c.question)).collect();
    row("keyword FAQ (baseline)", outcomes, per(started, cases.len()));
    let started = Instant::now();
    let outcomes = cases.iter().enumerate().map(|(i, c)| agent(i, &c.question, false)).collect();
    row("intents + bm25", outcomes, per(started, cases.len()));
    let mut best = cases.iter().enumerate().map(|(i, c)| agent(i, &c.question, false)).collect::<Vec<_>>();
    if vectors.is_some() {
        let started = Instant::now();
        let outcomes = cases.iter().enumerate().map(|(i, c)| agent(i, &c.question, true)).collect::<Vec<_>>();
        best.clone_from(&outcomes);
        row("intents + bm25 + embeddings", outcomes, per(started, cases.len()));
    }
    if let Some((model, infer)) = infer {
        phrased(model, infer, &cases, &best, &knowledge)?;
    }
    Ok(())
}

/// The best method's answers phrased by `model`, as the agent asks it (its instructions, the
/// passages found, the question): how often the agent would fall back (the model failed, or
/// cited none of its passages), and how often the model cited the passage that answers.
fn phrased(model: &str, infer: &dyn Fn(&str) -> Result<String>, cases: &[&ServiceCase], outcomes: &[Outcome], knowledge: &Knowledge) -> Result<()> {
    let (mut asked, mut failed, mut ungrounded, mut right, mut passage_cases) = (0, 0, 0, 0, 0);
    let started = Instant::now();
    for (c, o) in cases.iter().zip(outcomes) {
        let Outcome::Passages(ids) = o else { continue };
        let context: Vec<Source> = ids.iter().filter_map(|id| knowledge.passages.iter().find(|p| &p.id == id)).cloned().collect();
        let prompt = prompt(&c.question, vec![], context.clone());
        asked += 1;
        let want = match &c.expect {
            Expect::Passage(want) => {
                passage_cases += 1;
                Some(want)
            }
            _ => None,
        };
        match infer(&prompt.render()) {
            Err(e) => {
                failed += 1;
                tracing::debug!(error = %e, question = %c.question, "the model failed");
            }
            Ok(answer) => {
                let sources = cited(&context, &answer);
                if sources.is_empty() {
                    ungrounded += 1;
                }
                if want.is_some_and(|want| sources.iter().any(|s| &s.id == want)) {
                    right += 1;
                }
            }
        }
    }
    let n = asked.max(1) as f64;
    println!(
        "  phrased by {model}: {asked} answers, fallback rate {:.3} (failed {failed}, cited none {ungrounded}), cited ok {:.3}, {:.0} ms/answer",
        (failed + ungrounded) as f64 / n,
        right as f64 / passage_cases.max(1) as f64,
        started.elapsed().as_secs_f64() * 1000.0 / n
    );
    Ok(())
}

/// 2026-11-25T15:00:00Z, a Wednesday: the evaluation's "now" for the frozen sales.
const EVAL_NOW_MS: i64 = 1_795_618_800_000;

fn analytics(dir: &Path, split: &str) -> Result<()> {
    let all: Vec<AnalyticsCase> = load(dir, "analytics.json")?;
    let menu = gocoffee_core::menu::default_menu();
    let items: Vec<(&str, &str)> = menu.iter().map(|m| (m.id.as_str(), m.name.as_str())).collect();
    let ids: Vec<&str> = menu.iter().map(|m| m.id.as_str()).collect();
    for c in &all {
        c.query.validate(&ids).map_err(|why| anyhow::anyhow!("analytics.json labels {:?} with an invalid query: {why}", c.question))?;
    }
    let cases: Vec<&AnalyticsCase> = in_split(&all, split, |c| c.split.as_str()).collect();
    let facts = gocoffee_ai::analytics::synthetic_facts(7, EVAL_NOW_MS);
    let started = Instant::now();
    let (mut exact_query, mut exact_answer, mut refused) = (0, 0, 0);
    for c in &cases {
        let want = gocoffee_ai::analytics::execute(&c.query, &facts, EVAL_NOW_MS);
        match gocoffee_ai::analytics::parse(&c.question, &items).and_then(|q| q.validate(&ids).map(|()| q)) {
            Ok(q) => {
                exact_query += usize::from(q == c.query);
                exact_answer += usize::from(gocoffee_ai::analytics::execute(&q, &facts, EVAL_NOW_MS).rows == want.rows);
            }
            Err(_) => refused += 1,
        }
    }
    let n = cases.len().max(1) as f64;
    println!("\nanalytics: {} questions ({split}) over {} synthetic orders", cases.len(), facts.len());
    println!("  {:<28} {:>9} {:>9} {:>9} {:>12}", "method", "answer ok", "query ok", "refused", "µs/question");
    println!(
        "  {:<28} {:>9.3} {:>9.3} {:>9.3} {:>12.1}",
        "rules -> validated query",
        exact_answer as f64 / n,
        exact_query as f64 / n,
        refused as f64 / n,
        per(started, cases.len())
    );
    Ok(())
}

/// How long the native model takes per batch: the median of five runs at each size, over the
/// routing set's requests (short texts, as the agents embed).
fn batches(dir: &Path, embed: &dyn Fn(&[String]) -> Result<Vec<Vec<f32>>>) -> Result<()> {
    let texts: Vec<String> = load::<RoutingCase>(dir, "routing.json")?.into_iter().map(|c| c.request).collect();
    println!("\nembeddings (all-MiniLM-L6-v2, native, one thread per batch): median of 5 runs");
    println!("  {:<28} {:>9} {:>12}", "batch", "ms", "ms/text");
    for size in [1, 8, 32, 64] {
        let batch: Vec<String> = texts.iter().cycle().take(size).cloned().collect();
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let started = Instant::now();
                embed(&batch).map(|_| started.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_>>()?;
        runs.sort_by(f64::total_cmp);
        println!("  {:<28} {:>9.1} {:>12.2}", format!("{size} text(s)"), runs[2], runs[2] / size as f64);
    }
    Ok(())
}

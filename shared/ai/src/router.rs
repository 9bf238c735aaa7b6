//! The agent registry and the router in front of it. Each agent is described once (what it
//! does, example requests, what it takes and returns); routing ranks agents by their
//! descriptions and examples, BM25 fused with embedding similarity when there is a model, and a
//! language model's choice, when one is configured, counts only if it names a registered agent.

use gocoffee_core::Role;
use serde::Serialize;

use crate::orchestrator::AgentFn;

use crate::retrieve::{Bm25, Document, cosine};
use crate::text::terms;

/// One agent as the registry describes it.
#[derive(Debug)]
pub struct AgentSpec {
    /// Its id, in answers, insight events and metrics.
    pub name: &'static str,
    pub description: &'static str,
    /// Requests it should get: the router's training data. Never copied from the evaluation set.
    pub examples: &'static [&'static str],
    /// What it reads from a request, and what its `data` holds, for the registry listing.
    pub inputs: &'static str,
    pub outputs: &'static str,
    /// Words that point at it, for the keyword baseline the evaluation compares routing with.
    pub keywords: &'static [&'static str],
    /// The least role a caller needs for it; the router doesn't offer it to others.
    pub role: Role,
    pub run: AgentFn,
}

/// How much embedding similarity counts beside BM25 scaled to [0, 1] (tuned on the dev split).
pub const SEMANTIC_WEIGHT: f32 = 1.0;

/// How a request was routed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routing {
    pub agent: &'static str,
    /// `bm25`, `hybrid` (BM25 + embeddings), `llm`, `keyword`, `requested` or `context`.
    pub method: &'static str,
    /// Each agent's score, best first.
    pub scores: Vec<(&'static str, f32)>,
}

/// The registry's agents, indexed for routing.
pub struct Router {
    agents: &'static [AgentSpec],
    /// Which agent each indexed document describes.
    owners: Vec<usize>,
    docs: Vec<Document>,
    bm25: Bm25,
}

impl Router {
    pub fn new(agents: &'static [AgentSpec]) -> Router {
        let mut owners = Vec::new();
        let mut docs = Vec::new();
        for (i, a) in agents.iter().enumerate() {
            for text in std::iter::once(&a.description).chain(a.examples) {
                owners.push(i);
                docs.push(Document { id: a.name.to_owned(), title: String::new(), body: (*text).to_owned(), tags: vec![] });
            }
        }
        Router { bm25: Bm25::new(&docs), agents, owners, docs }
    }

    pub fn agents(&self) -> &'static [AgentSpec] {
        self.agents
    }

    /// The texts to embed, once per deployment (descriptions and examples, in index order).
    pub fn embedding_texts(&self) -> Vec<String> {
        self.docs.iter().map(|d| d.body.clone()).collect()
    }

    pub fn agent(&self, name: &str) -> Option<&'static AgentSpec> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The best agent for `request`: per agent, its best-matching description or example
    /// (BM25 scaled by the best document's, plus the cosine similarity when `vectors` hold the
    /// request's embedding and the documents'). Ties go to the first registered agent.
    pub fn route(&self, request: &str, vectors: Option<(&[f32], &[Vec<f32>])>) -> Routing {
        self.route_among(request, vectors, &vec![true; self.agents.len()])
    }

    /// [`Router::route`] among the agents `permitted` marks (in registry order).
    pub fn route_among(&self, request: &str, vectors: Option<(&[f32], &[Vec<f32>])>, permitted: &[bool]) -> Routing {
        let lexical = self.bm25.scores(request);
        let top = lexical.iter().copied().fold(0.0f32, f32::max);
        let mut best = vec![0.0f32; self.agents.len()];
        for (d, &owner) in self.owners.iter().enumerate() {
            let mut s = if top > 0.0 { lexical[d] / top } else { 0.0 };
            if let Some((q, docs)) = vectors {
                s += SEMANTIC_WEIGHT * docs.get(d).map(|v| cosine(q, v)).unwrap_or(0.0).max(0.0);
            }
            best[owner] = best[owner].max(s);
        }
        let mut scores: Vec<(&'static str, f32)> =
            self.agents.iter().map(|a| a.name).zip(best).enumerate().filter(|(i, _)| permitted.get(*i).copied().unwrap_or(false)).map(|(_, s)| s).collect();
        if scores.is_empty() {
            scores.push((self.agents[0].name, 0.0));
        }
        // Stable: ties keep registry order.
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        let method = if vectors.is_some() { "hybrid" } else { "bm25" };
        Routing { agent: scores[0].0, method, scores }
    }

    /// The baseline: the agent with the most keywords in the request (each keyword a whole
    /// term, or a phrase of them), ties and no match to the first registered agent.
    pub fn keyword(&self, request: &str) -> &'static str {
        let words = terms(request);
        let text = format!(" {} ", words.join(" "));
        let count = |a: &AgentSpec| {
            a.keywords
                .iter()
                .filter(|k| {
                    let k = terms(k).join(" ");
                    !k.is_empty() && text.contains(&format!(" {k} "))
                })
                .count()
        };
        let mut best = (self.agents[0].name, 0);
        for a in self.agents {
            let n = count(a);
            if n > best.1 {
                best = (a.name, n);
            }
        }
        best.0
    }

    /// A language model's answer to "which agent?", if it names a registered one: the first
    /// agent name in the text, whole word.
    pub fn validate_choice(&self, answer: &str) -> Option<&'static str> {
        let lower = answer.to_lowercase();
        let mut found: Vec<(usize, &'static str)> = self
            .agents
            .iter()
            .filter_map(|a| {
                lower
                    .match_indices(a.name)
                    .find(|(at, _)| {
                        let before = lower[..*at].chars().next_back();
                        let after = lower[at + a.name.len()..].chars().next();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '-') && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
                    })
                    .map(|(at, _)| (at, a.name))
            })
            .collect();
        found.sort();
        found.first().map(|(_, name)| *name)
    }

    /// The prompt that asks a language model to choose.
    pub fn choice_prompt(&self, request: &str) -> String {
        let mut p = String::from("Choose the one agent that should handle the request. Answer with its name only.\n\nAgents:\n");
        for a in self.agents {
            p.push_str(&format!("- {}: {}\n", a.name, a.description));
        }
        p.push_str(&format!("\nRequest: {request}\nAgent:"));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static AGENTS: &[AgentSpec] = &[
        AgentSpec {
            name: "customer-service",
            description: "Answers questions about the café and your orders.",
            examples: &["when do you open", "where is my order"],
            inputs: "",
            outputs: "",
            keywords: &["open", "my order"],
            role: Role::Customer,
            run: crate::orchestrator::service_agent,
        },
        AgentSpec {
            name: "search",
            description: "Finds items on the menu.",
            examples: &["do you have oat milk lattes", "something sweet under $5"],
            inputs: "",
            outputs: "",
            keywords: &["have", "menu"],
            role: Role::Customer,
            run: crate::orchestrator::search_agent,
        },
    ];

    #[test]
    fn requests_go_to_the_agent_whose_examples_they_resemble() {
        let r = Router::new(AGENTS);
        assert_eq!(r.route("is my order ready yet?", None).agent, "customer-service");
        assert_eq!(r.route("any lattes with oat milk?", None).agent, "search");
        assert_eq!(r.keyword("what's on the menu"), "search");
        assert_eq!(r.keyword("hello"), "customer-service");
    }

    #[test]
    fn embeddings_decide_where_words_do_not() {
        let r = Router::new(AGENTS);
        let n = r.embedding_texts().len();
        let mut docs = vec![vec![1.0, 0.0]; n];
        docs[n - 1] = vec![0.0, 1.0];
        let routing = r.route("craving a treat", Some((&[0.0, 1.0], &docs)));
        assert_eq!((routing.agent, routing.method), ("search", "hybrid"));
    }

    #[test]
    fn agents_the_caller_may_not_use_are_not_offered() {
        let r = Router::new(AGENTS);
        assert_eq!(r.route_among("any lattes with oat milk?", None, &[true, false]).agent, "customer-service");
    }

    #[test]
    fn a_models_choice_counts_only_when_it_names_a_registered_agent() {
        let r = Router::new(AGENTS);
        assert_eq!(r.validate_choice("search"), Some("search"));
        assert_eq!(r.validate_choice("I'd pick Customer-Service."), Some("customer-service"));
        assert_eq!(r.validate_choice("research"), None);
        assert_eq!(r.validate_choice("the kitchen agent"), None);
        assert!(r.choice_prompt("hi").contains("- search: Finds items"));
    }
}

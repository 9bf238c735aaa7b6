//! The customer-service agent: answers from the café's knowledge base (`data/cafe.md`, one
//! passage per section, plus one passage of facts per menu item) and cites what it used; looks
//! up the caller's own orders (only theirs: the tool queries by the caller's id); recommends
//! from the caller's history and the menu; hands off to staff when it doesn't know, when a
//! person is needed, or when asked about someone else's order.

use gocoffee_app::ports::OrderQuery;
use gocoffee_app::{ApiError, Ctx};
use gocoffee_core::{MenuItem, Order};
use serde_json::json;

use crate::model::{Limits, Prompt, Source, Turn};
use crate::orchestrator::{AgentAnswer, AgentCtx};
use crate::retrieve::{Bm25, Document, cosine};
use crate::search::{Catalogue, Filters, Method};
use crate::text::{terms, words};

/// The café's own text: one passage per `## id: Title` section.
const CAFE: &str = include_str!("../data/cafe.md");

/// Below both of these (BM25 of the best passage, and its cosine similarity when there are
/// embeddings) nothing in the knowledge base answers the question (tuned on the dev split).
const MIN_BM25: f32 = 4.0;
const MIN_COSINE: f32 = 0.45;
/// Passages given to the model, and cited.
pub const CONTEXT_PASSAGES: usize = 3;

/// What the language model is told before the passages (see [`prompt`]).
const INSTRUCTIONS: &str = "You are the assistant of Go Coffee, a coffee shop. Answer the customer in at most three short sentences, \
using only the passages below, and cite each passage you use by its id in square brackets, like [opening-hours]. \
If the passages don't answer the question, say you don't know and that a member of staff can help.";

/// The knowledge base: the café's passages, then the menu's.
pub struct Knowledge {
    pub passages: Vec<Source>,
    bm25: Bm25,
}

/// What the language model is asked for a question: the instructions, the passages found, the
/// conversation so far and the question (the agent's, and the evaluation's).
pub fn prompt(request: &str, history: Vec<Turn>, context: Vec<Source>) -> Prompt {
    Prompt { system: INSTRUCTIONS.into(), history, request: request.to_owned(), context }
}

/// The passages of `context` that `answer` cites (`[id]`): none, and the answer isn't grounded.
pub fn cited(context: &[Source], answer: &str) -> Vec<Source> {
    context.iter().filter(|s| answer.contains(&format!("[{}]", s.id))).cloned().collect()
}

/// The café's passages from its markdown.
pub fn cafe_passages() -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for line in CAFE.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            let (id, title) = heading.split_once(": ").unwrap_or((heading, heading));
            out.push(Source { id: id.trim().to_owned(), title: title.trim().to_owned(), text: String::new() });
        } else if let Some(p) = out.last_mut()
            && !line.trim().is_empty()
        {
            if !p.text.is_empty() {
                p.text.push(' ');
            }
            p.text.push_str(line.trim());
        }
    }
    out
}

/// What the menu says of an item, as a passage (`menu:<id>`): price, sizes, and its tags.
pub fn item_passage(item: &MenuItem) -> Source {
    let sizes: Vec<String> = item.sizes.iter().map(|s| format!("{} {}", s.size, s.price_cents)).collect();
    let contains: Vec<&str> = item.tags.iter().filter_map(|t| t.strip_prefix("contains-")).collect();
    let diet: Vec<&str> = item.tags.iter().filter(|t| !t.starts_with("contains-")).map(String::as_str).collect();
    let mut text = format!("{}: {} Sizes: {}.", item.name, item.description, sizes.join(", "));
    if !contains.is_empty() {
        text.push_str(&format!(" Contains {}.", contains.join(", ")));
    }
    if !diet.is_empty() {
        text.push_str(&format!(" Labelled {}.", diet.join(", ")));
    }
    if !item.available {
        text.push_str(" Not available right now.");
    }
    Source { id: format!("menu:{}", item.id), title: item.name.clone(), text }
}

impl Knowledge {
    pub fn new(menu: &[MenuItem]) -> Knowledge {
        let mut passages = cafe_passages();
        passages.extend(menu.iter().map(item_passage));
        let docs: Vec<Document> = passages.iter().map(|p| Document { id: p.id.clone(), title: p.title.clone(), body: p.text.clone(), tags: vec![] }).collect();
        Knowledge { bm25: Bm25::new(&docs), passages }
    }

    /// The texts to embed, one per passage, in order.
    pub fn embedding_texts(&self) -> Vec<String> {
        self.passages.iter().map(|p| format!("{}. {}", p.title, p.text)).collect()
    }

    /// The passages that answer `question` best, with their scores, best first; `None` when
    /// nothing answers it well enough. `vectors`: the question's embedding and the passages'.
    pub fn retrieve(&self, question: &str, vectors: Option<(&[f32], &[Vec<f32>])>, k: usize) -> Option<Vec<(usize, f32)>> {
        let lexical = self.bm25.scores(question);
        let cosines: Option<Vec<f32>> = vectors.map(|(q, docs)| docs.iter().map(|d| cosine(q, d)).collect());
        let best_lexical = lexical.iter().copied().fold(0.0f32, f32::max);
        let best_cosine = cosines.as_ref().map(|c| c.iter().copied().fold(0.0f32, f32::max));
        let answered = best_lexical >= MIN_BM25 || best_cosine.is_some_and(|c| c >= MIN_COSINE);
        if !answered {
            return None;
        }
        let fused = crate::retrieve::fuse(&lexical, cosines.as_deref(), 1.5);
        Some(crate::retrieve::ranked(&fused, 0.0).into_iter().take(k).map(|i| (i, fused[i])).collect())
    }
}

/// What a customer's message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Their own orders: status, history, cancelling one.
    MyOrders,
    Recommend,
    /// A person is needed (a complaint, the manager), or it is about someone else's order.
    Handoff,
    Question,
}

fn has_phrase(words: &[String], phrase: &[&str]) -> bool {
    words.windows(phrase.len()).any(|w| w.iter().zip(phrase).all(|(a, b)| a == b))
}

/// The message's intent, by rules over its words.
pub fn intent(message: &str) -> Intent {
    let w = words(message);
    let any = |list: &[&str]| w.iter().any(|x| list.contains(&x.as_str()));
    let phrase = |p: &str| has_phrase(&w, &p.split(' ').collect::<Vec<_>>());
    let others = ["someone", "somebody", "another", "other", "friend", "friends", "wife", "husband", "colleague", "partner", "his", "her", "their"];
    if any(&others) && any(&["order", "orders", "ordered"]) && !phrase("my order") {
        return Intent::Handoff;
    }
    if any(&["complain", "complaint", "rude", "spilled", "spilt", "burnt", "burned", "sick", "lawyer", "job", "jobs", "hiring", "lost", "phone"])
        || phrase("speak to")
        || phrase("talk to")
        || phrase("real person")
        || phrase("the manager")
    {
        return Intent::Handoff;
    }
    if any(&["recommend", "recommendation", "recommendations", "suggest", "suggestion", "surprise"])
        || phrase("what should i")
        || phrase("what would you")
        || phrase("should i get")
        || phrase("should i try")
        || phrase("usually have")
        || phrase("usually get")
    {
        return Intent::Recommend;
    }
    let mine = phrase("my order")
        || phrase("my orders")
        || phrase("my last")
        || phrase("i ordered")
        || phrase("did i order")
        || phrase("did i get")
        || phrase("my latest")
        || phrase("my receipt")
        || phrase("my history")
        || phrase("order history")
        || (any(&["my"])
            && any(&["latte", "coffee", "drink", "cappuccino", "tea", "food", "muffin", "croissant"])
            && any(&["where", "ready", "status", "done", "yet"]));
    if mine {
        return Intent::MyOrders;
    }
    Intent::Question
}

/// The caller's latest orders: the tool queries by the caller's own id, so it can't return
/// anyone else's.
async fn my_orders(ctx: &Ctx<'_>, user_id: &str, limit: usize) -> Result<Vec<Order>, ApiError> {
    let page = ctx.svc.orders.orders(&OrderQuery { customer_id: Some(user_id.to_owned()), limit, ..OrderQuery::default() }).await.map_err(|e| {
        tracing::error!(error = %e, "the orders are out of reach");
        ApiError::unavailable()
    })?;
    Ok(page.items)
}

fn describe(order: &Order) -> String {
    let lines: Vec<String> = order.lines.iter().map(|l| if l.quantity > 1 { format!("{} × {}", l.quantity, l.name) } else { l.name.clone() }).collect();
    format!("{} ({}): {}", lines.join(", "), order.id, order.status.as_str())
}

fn handoff(why: &str) -> AgentAnswer {
    AgentAnswer {
        answer: format!("{why} A member of our staff can help: ask at the counter, and they'll take it from here."),
        kind: "handoff",
        subject: "customer-question".into(),
        data: json!({ "handoff": true }),
        sources: vec![],
        confidence: 0.0,
        model: crate::model::FALLBACK_MODEL.into(),
        fallback: None,
        window: None,
    }
}

/// The agent.
pub async fn run(a: &AgentCtx<'_>) -> Result<AgentAnswer, ApiError> {
    match intent(&a.request) {
        Intent::Handoff => {
            let about_others = words(&a.request)
                .iter()
                .any(|w| ["someone", "somebody", "another", "friend", "friends", "wife", "husband", "colleague", "partner"].contains(&w.as_str()));
            Ok(handoff(if about_others { "I can only talk about your own orders." } else { "That's one for a person, not for me." }))
        }
        Intent::MyOrders => {
            let orders = my_orders(a.app, &a.caller.user_id, 5).await?;
            let answer = match orders.first() {
                None => "You haven't placed any orders yet.".to_owned(),
                Some(latest) => {
                    let mut s = format!("Your latest order is {}.", describe(latest));
                    if orders.len() > 1 {
                        let earlier: Vec<String> = orders[1..].iter().map(describe).collect();
                        s.push_str(&format!(" Before that: {}.", earlier.join("; ")));
                    }
                    s
                }
            };
            let data = json!({ "orders": orders.iter().map(|o| json!({"id": o.id, "status": o.status, "total_cents": o.total_cents.0, "placed_at_ms": o.placed_at_ms,
                "items": o.lines.iter().map(|l| json!({"item_id": l.item_id, "name": l.name, "quantity": l.quantity})).collect::<Vec<_>>()})).collect::<Vec<_>>() });
            let status = cafe_passages().into_iter().filter(|p| p.id == "order-status").collect();
            Ok(AgentAnswer {
                answer,
                kind: "my_orders",
                subject: "orders".into(),
                data,
                sources: status,
                confidence: 1.0,
                model: crate::model::FALLBACK_MODEL.into(),
                fallback: None,
                window: None,
            })
        }
        Intent::Recommend => recommend(a).await,
        Intent::Question => answer(a).await,
    }
}

async fn answer(a: &AgentCtx<'_>) -> Result<AgentAnswer, ApiError> {
    let menu = a.menu().await?;
    let knowledge = Knowledge::new(&menu);
    let mut texts = vec![a.request.clone()];
    texts.extend(knowledge.embedding_texts());
    let vectors = a.models.embed(&texts).await;
    let split = vectors.as_ref().map(|v| (v[0].as_slice(), &v[1..]));
    let Some(found) = knowledge.retrieve(&a.request, split, CONTEXT_PASSAGES) else {
        return Ok(handoff("I don't know the answer to that, sorry."));
    };
    let context: Vec<Source> = found.iter().map(|(i, _)| knowledge.passages[*i].clone()).collect();
    let prompt = prompt(&a.request, a.history.clone(), context.clone());
    let (generation, fallback) = a.models.generate(&prompt, &Limits { max_tokens: 160, ..Limits::default() }).await;
    // An answer that cites none of its passages isn't grounded: the fallback's is.
    let cited = cited(&context, &generation.text);
    let (text, model, fallback, cited) = if cited.is_empty() && fallback.is_none() {
        let g = crate::model::Fallback::answer(&prompt);
        let cited = self::cited(&context, &g.text);
        (g.text, g.model, Some("ungrounded".to_owned()), cited)
    } else {
        (generation.text, generation.model, fallback, cited)
    };
    let confidence = found.first().map(|(_, s)| (s / 2.5).min(1.0)).unwrap_or(0.0);
    Ok(AgentAnswer {
        answer: text,
        kind: "answer",
        subject: "knowledge".into(),
        data: json!({ "passages": found.iter().map(|(i, s)| json!({"id": knowledge.passages[*i].id, "score": s})).collect::<Vec<_>>() }),
        sources: cited,
        confidence,
        model,
        fallback,
        window: None,
    })
}

async fn recommend(a: &AgentCtx<'_>) -> Result<AgentAnswer, ApiError> {
    let menu = a.menu().await?;
    let catalogue = Catalogue::from_menu(&menu);
    let history = my_orders(a.app, &a.caller.user_id, 20).await?;
    let mut counts: Vec<(String, u32)> = Vec::new();
    for line in history.iter().filter(|o| o.status != gocoffee_core::OrderStatus::Cancelled).flat_map(|o| &o.lines) {
        match counts.iter_mut().find(|(id, _)| *id == line.item_id) {
            Some((_, n)) => *n += line.quantity,
            None => counts.push((line.item_id.clone(), line.quantity)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let items = catalogue.items();
    let usual = counts.iter().find_map(|(id, _)| items.iter().position(|i| &i.id == id));
    // What the message asks for, if it asks for something ("something cold"), else the usual's neighbours.
    let asked: Vec<String> = terms(&a.request)
        .into_iter()
        .filter(|t| !["recommend", "suggest", "suggestion", "get", "try", "today", "usually", "should", "new"].contains(&t.as_str()))
        .collect();
    let vectors = a.models.embed(&catalogue.embedding_texts()).await;
    let mut picks: Vec<usize> = Vec::new();
    if !asked.is_empty() {
        let query_vector = a.models.embed(std::slice::from_ref(&a.request)).await;
        let pair = match (&query_vector, &vectors) {
            (Some(q), Some(v)) => Some((q[0].as_slice(), v.as_slice())),
            _ => None,
        };
        let hits = catalogue.search(&a.request, &Filters::default(), Method::Hybrid, pair, 3);
        picks.extend(hits.iter().filter_map(|h| items.iter().position(|i| i.id == h.id)));
    }
    if picks.is_empty()
        && let Some(u) = usual
    {
        let mut near: Vec<(usize, f32)> = (0..items.len())
            .filter(|&i| i != u && !counts.iter().any(|(id, _)| *id == items[i].id))
            .map(|i| {
                let s = match &vectors {
                    Some(v) => cosine(&v[u], &v[i]),
                    None => {
                        items[i].tags.iter().filter(|t| items[u].tags.contains(t)).count() as f32
                            + if items[i].category == items[u].category { 1.0 } else { 0.0 }
                    }
                };
                (i, s)
            })
            .collect();
        near.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        picks.extend(near.into_iter().take(2).map(|(i, _)| i));
    }
    if picks.is_empty() {
        // No history and nothing asked: the first drinks and food on the menu, the house's order.
        picks.extend((0..items.len()).filter(|&i| items[i].category == "drink").take(2));
        picks.extend((0..items.len()).filter(|&i| items[i].category == "food").take(1));
    }
    let names: Vec<&str> = picks.iter().map(|&i| items[i].name.as_str()).collect();
    let mut answer = format!("You might like {}.", names.join(", "));
    if let Some(u) = usual {
        answer = format!("Your usual is the {}. {answer}", items[u].name);
    }
    Ok(AgentAnswer {
        answer,
        kind: "recommendation",
        subject: "menu".into(),
        data: json!({ "usual": usual.map(|u| items[u].id.clone()), "items": picks.iter().map(|&i| json!({"id": items[i].id, "name": items[i].name, "price_cents": items[i].price_cents})).collect::<Vec<_>>() }),
        sources: picks.iter().filter_map(|&i| menu.iter().find(|m| m.id == items[i].id)).map(item_passage).collect(),
        confidence: if usual.is_some() || !asked.is_empty() { 0.8 } else { 0.4 },
        model: crate::model::FALLBACK_MODEL.into(),
        fallback: None,
        window: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knowledge_base_parses_into_passages_with_ids() {
        let passages = cafe_passages();
        assert!(passages.len() >= 30);
        for (i, p) in passages.iter().enumerate() {
            assert!(!p.text.is_empty() && !p.title.is_empty(), "{}", p.id);
            assert!(passages[..i].iter().all(|o| o.id != p.id), "{} twice", p.id);
        }
        assert!(passages.iter().any(|p| p.id == "opening-hours"));
    }

    #[test]
    fn an_items_passage_states_its_allergens() {
        let menu = gocoffee_core::menu::default_menu();
        let bread = menu.iter().find(|m| m.id == "banana-bread").expect("banana bread");
        let p = item_passage(bread);
        assert_eq!(p.id, "menu:banana-bread");
        assert!(p.text.contains("Contains gluten, egg, nuts."), "{}", p.text);
    }

    #[test]
    fn intents_are_read_from_the_words() {
        assert_eq!(intent("where is my order?"), Intent::MyOrders);
        assert_eq!(intent("what did I order last time"), Intent::MyOrders);
        assert_eq!(intent("what do you recommend?"), Intent::Recommend);
        assert_eq!(intent("I want to make a complaint"), Intent::Handoff);
        assert_eq!(intent("what did my friend order"), Intent::Handoff);
        assert_eq!(intent("when do you open"), Intent::Question);
    }

    #[test]
    fn retrieval_finds_the_passage_or_admits_it_has_none() {
        let k = Knowledge::new(&gocoffee_core::menu::default_menu());
        let found = k.retrieve("what time do you open on saturday", None, 3).expect("answered");
        assert_eq!(k.passages[found[0].0].id, "opening-hours");
        assert!(k.retrieve("quantum chromodynamics", None, 3).is_none());
    }
}

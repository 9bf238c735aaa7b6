//! Semantic search over a catalogue (the menu, or any list of items it is given): BM25 over the
//! items' names, descriptions and tags, typo-tolerant, fused with embedding similarity, after
//! the filters (category, dietary tags, price) and the constraints the query states in words
//! ("under $4", "no dairy", "nut-free", "vegan") have removed what doesn't qualify.

use gocoffee_core::MenuItem;
use serde::{Deserialize, Serialize};

use crate::retrieve::{Bm25, Document, cosine, fuse, ranked};
use crate::text::words;

/// How much the cosine similarity counts beside BM25 scaled to [0, 1] (tuned on the dev split).
pub const SEMANTIC_WEIGHT: f32 = 1.5;
/// Below this fused score an item is not a match. MiniLM's cosine for an unrelated short pair
/// sits around 0.1 to 0.2.
const MIN_SCORE: f32 = 0.35;

/// One thing a catalogue offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    /// The cheapest size's price.
    pub price_cents: u64,
    /// Modifier ids ("decaf", "oat-milk"), which a constraint may be met by.
    #[serde(skip)]
    pub modifiers: Vec<String>,
}

impl From<&MenuItem> for Item {
    fn from(m: &MenuItem) -> Item {
        Item {
            id: m.id.clone(),
            name: m.name.clone(),
            description: m.description.clone(),
            category: serde_json::to_value(m.category).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            tags: m.tags.clone(),
            price_cents: m.sizes.iter().map(|s| s.price_cents.0).min().unwrap_or(0),
            modifiers: m.modifiers.iter().map(|o| o.id.clone()).collect(),
        }
    }
}

/// What a caller (or the words of the query) restricts the results to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Every one must hold (see [`Item::satisfies`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_cents: Option<u64>,
    /// Allergens the item must not contain (`milk`, `gluten`, `nuts`, `egg`), from words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
}

impl Item {
    /// Whether a tag holds: as labelled, or as a customer would mean it ("vegan" is met by an
    /// item that can be made vegan, "dairy-free" by one that takes a plant milk,
    /// "caffeine-free" by one that comes decaf).
    pub fn satisfies(&self, tag: &str) -> bool {
        let has = |t: &str| self.tags.iter().any(|x| x == t);
        match tag {
            "vegan" => has("vegan") || has("vegan-option"),
            "vegetarian" => has("vegetarian") || has("vegan") || has("vegan-option"),
            "dairy-free" => has("dairy-free") || has("vegan") || has("vegan-option"),
            "caffeine-free" => has("caffeine-free") || self.modifiers.iter().any(|m| m == "decaf") || self.category == "food",
            "gluten-free" => has("gluten-free"),
            other => has(other),
        }
    }

    /// Whether it can be had without `allergen` (milk can be swapped for a plant milk).
    fn avoids(&self, allergen: &str) -> bool {
        let tag = format!("contains-{allergen}");
        !self.tags.contains(&tag) || (allergen == "milk" && self.satisfies("dairy-free"))
    }

    fn passes(&self, f: &Filters) -> bool {
        f.category.as_ref().is_none_or(|c| c == &self.category)
            && f.tags.iter().all(|t| self.satisfies(t))
            && f.max_price_cents.is_none_or(|p| self.price_cents <= p)
            && f.without.iter().all(|a| self.avoids(a))
    }

    fn document(&self) -> Document {
        Document { id: self.id.clone(), title: self.name.clone(), body: format!("{} {}", self.description, self.category), tags: self.tags.clone() }
    }
}

/// The allergen a word names, if it names one.
fn allergen(word: &str) -> Option<&'static str> {
    match word {
        "milk" | "dairy" | "lactose" | "cream" | "milky" => Some("milk"),
        "gluten" | "wheat" | "coeliac" | "celiac" => Some("gluten"),
        "nut" | "nuts" | "walnut" | "walnuts" | "peanut" | "peanuts" => Some("nuts"),
        "egg" | "eggs" => Some("egg"),
        _ => None,
    }
}

/// A price in a query ("$4", "4.50", "4.5", "4 dollars", "450 cents"), in cents: `words` split
/// "4.50" into "4" and "50".
fn price(words: &[String], at: usize) -> Option<u64> {
    let whole: u64 = words.get(at)?.parse().ok()?;
    match words.get(at + 1).map(String::as_str) {
        Some("cents" | "cent") => Some(whole),
        Some(f) if (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let frac: u64 = f.parse().ok()?;
            Some(whole * 100 + if f.len() == 1 { frac * 10 } else { frac })
        }
        _ => Some(whole * 100),
    }
}

/// The constraints `query` states in words, added to `filters`.
pub fn understand(query: &str, filters: &Filters) -> Filters {
    let w = words(query);
    let mut f = filters.clone();
    let mut add_without = |a: &str| {
        if !f.without.iter().any(|x| x == a) {
            f.without.push(a.to_owned());
        }
    };
    for (i, word) in w.iter().enumerate() {
        let next = w.get(i + 1).map(String::as_str);
        let prev = i.checked_sub(1).and_then(|p| w.get(p)).map(String::as_str);
        // "no milk", "without nuts", "free of gluten", "not dairy", "allergic to eggs"
        if matches!(word.as_str(), "no" | "without" | "not" | "non" | "allergic" | "intolerant" | "avoid")
            || (word == "of" && prev == Some("free"))
            || (word == "to" && prev == Some("allergic"))
        {
            if let Some(a) = next.and_then(allergen) {
                add_without(a);
            }
            if matches!(next, Some("caffeine") | Some("coffee")) && word != "not" {
                if !f.tags.iter().any(|t| t == "caffeine-free") {
                    f.tags.push("caffeine-free".into());
                }
            }
        }
        // "dairy-free", "gluten free", "nut free"
        if next == Some("free") {
            if let Some(a) = allergen(word) {
                add_without(a);
            }
            if word == "caffeine" && !f.tags.iter().any(|t| t == "caffeine-free") {
                f.tags.push("caffeine-free".into());
            }
        }
        if (word == "decaf" || word == "decaffeinated") && !f.tags.iter().any(|t| t == "caffeine-free") {
            f.tags.push("caffeine-free".into());
        }
        // "something to eat", "a snack", "a drink": the category, unless the caller chose one.
        if filters.category.is_none() {
            if matches!(word.as_str(), "eat" | "food" | "snack" | "snacks" | "hungry" | "bite") {
                f.category = Some("food".into());
            } else if matches!(word.as_str(), "drink" | "drinks" | "beverage" | "beverages" | "thirsty") {
                f.category = Some("drink".into());
            }
        }
        if (word == "vegan" || word == "vegetarian") && !f.tags.iter().any(|t| t == word) {
            f.tags.push(word.clone());
        }
        // "under $4", "less than 4.50", "below 5 dollars", "up to 4", "max 5"
        let bound = match (word.as_str(), next) {
            ("under" | "below" | "max" | "maximum", _) => Some(i + 1),
            ("less" | "cheaper" | "lower", Some("than")) => Some(i + 2),
            ("up", Some("to")) => Some(i + 2),
            _ => None,
        };
        if let Some(p) = bound.and_then(|at| price(&w, at)) {
            f.max_price_cents = Some(f.max_price_cents.map_or(p, |q| q.min(p)));
        }
    }
    f
}

/// How a search ranks: the baselines the evaluation compares against, and the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Items whose name or description contains the query's words, in catalogue order.
    Substring,
    /// BM25 on the words as typed, no constraints read from them.
    Bm25,
    /// BM25 with typos mended and the query's constraints applied.
    Lexical,
    /// [`Method::Lexical`] fused with embedding similarity.
    Hybrid,
}

/// One ranked result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub name: String,
    pub category: String,
    pub price_cents: u64,
    pub tags: Vec<String>,
    pub score: f32,
}

/// A catalogue ready to search: its items and their BM25 index.
pub struct Catalogue {
    items: Vec<Item>,
    bm25: Bm25,
}

impl Catalogue {
    pub fn new(items: Vec<Item>) -> Catalogue {
        let docs: Vec<Document> = items.iter().map(Item::document).collect();
        Catalogue { bm25: Bm25::new(&docs), items }
    }

    pub fn from_menu(menu: &[MenuItem]) -> Catalogue {
        Catalogue::new(menu.iter().filter(|m| m.available).map(Item::from).collect())
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The texts an embedding model sees, one per item, in catalogue order.
    pub fn embedding_texts(&self) -> Vec<String> {
        self.items.iter().map(|i| i.document().embedding_text()).collect()
    }

    /// The best `limit` items for `query` under `filters`. `vectors` are the query's embedding
    /// and the items' (in catalogue order); without them [`Method::Hybrid`] is
    /// [`Method::Lexical`].
    pub fn search(&self, query: &str, filters: &Filters, method: Method, vectors: Option<(&[f32], &[Vec<f32>])>, limit: usize) -> Vec<Hit> {
        let (filters, scores, floor) = match method {
            Method::Substring => {
                let w = words(query);
                let scores = self
                    .items
                    .iter()
                    .map(|i| {
                        let text = format!("{} {}", i.name, i.description).to_lowercase();
                        if !w.is_empty() && w.iter().any(|x| x.len() > 2 && text.contains(x.as_str())) { 1.0 } else { 0.0 }
                    })
                    .collect();
                (filters.clone(), scores, 0.0)
            }
            Method::Bm25 => (filters.clone(), self.bm25.scores_exact(query), 0.0),
            Method::Lexical | Method::Hybrid => {
                let understood = understand(query, filters);
                let lexical = self.bm25.scores(query);
                let cosines: Option<Vec<f32>> =
                    if method == Method::Hybrid { vectors.map(|(q, items)| items.iter().map(|v| cosine(q, v)).collect()) } else { None };
                let floor = if cosines.is_some() { MIN_SCORE } else { 0.0 };
                let mut fused = fuse(&lexical, cosines.as_deref(), SEMANTIC_WEIGHT);
                // A query that is all constraints ("vegan", "under $4") matches whatever meets them.
                if fused.iter().all(|s| *s <= floor) && understood != *filters {
                    fused = vec![floor + 0.01; fused.len()];
                }
                (understood, fused, floor)
            }
        };
        ranked(&scores, floor)
            .into_iter()
            .filter(|&i| self.items[i].passes(&filters))
            .take(limit)
            .map(|i| {
                let item = &self.items[i];
                Hit {
                    id: item.id.clone(),
                    name: item.name.clone(),
                    category: item.category.clone(),
                    price_cents: item.price_cents,
                    tags: item.tags.clone(),
                    score: scores[i],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Catalogue {
        Catalogue::from_menu(&gocoffee_core::menu::default_menu())
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn constraints_in_words_become_filters() {
        let f = understand("a vegan drink under $4.50 with no dairy, nut-free please", &Filters::default());
        assert_eq!(f.max_price_cents, Some(450));
        assert_eq!(f.tags, ["vegan"]);
        assert_eq!(f.without, ["milk", "nuts"]);
        assert_eq!(understand("less than 4 dollars", &Filters::default()).max_price_cents, Some(400));
        assert_eq!(understand("below 4.5", &Filters::default()).max_price_cents, Some(450));
        assert_eq!(understand("under 380 cents", &Filters::default()).max_price_cents, Some(380));
        assert_eq!(understand("something decaf", &Filters::default()).tags, ["caffeine-free"]);
        assert_eq!(understand("latte", &Filters::default()), Filters::default());
        assert_eq!(understand("something vegan to eat", &Filters::default()).category.as_deref(), Some("food"));
        let chosen = Filters { category: Some("drink".into()), ..Filters::default() };
        assert_eq!(understand("a snack", &chosen).category.as_deref(), Some("drink"));
    }

    #[test]
    fn a_typo_still_finds_the_item_and_filters_hold() {
        let c = menu();
        assert_eq!(ids(&c.search("capucino", &Filters::default(), Method::Lexical, None, 3))[0], "cappuccino");
        assert!(c.search("capucino", &Filters::default(), Method::Bm25, None, 3).is_empty());
        let food = Filters { category: Some("food".into()), ..Filters::default() };
        assert!(c.search("toast", &food, Method::Lexical, None, 5).iter().all(|h| h.category == "food"));
        let cheap = c.search("latte under $4.20", &Filters::default(), Method::Lexical, None, 5);
        assert!(!cheap.is_empty() && cheap.iter().all(|h| h.price_cents <= 420), "{cheap:?}");
        let nut_free = c.search("banana bread without nuts", &Filters::default(), Method::Lexical, None, 5);
        assert!(!ids(&nut_free).contains(&"banana-bread"));
    }

    #[test]
    fn a_query_of_constraints_alone_lists_what_meets_them() {
        let c = menu();
        let vegan = c.search("vegan", &Filters::default(), Method::Lexical, None, 20);
        assert!(ids(&vegan).contains(&"avocado-toast") && ids(&vegan).contains(&"latte"));
        assert!(!ids(&vegan).contains(&"croissant"));
    }

    #[test]
    fn semantic_similarity_lifts_an_item_with_no_shared_words() {
        let c = menu();
        let n = c.items().len();
        let query = vec![1.0, 0.0];
        let mut vectors = vec![vec![0.0, 1.0]; n];
        let cold = c.items().iter().position(|i| i.id == "cold-brew").expect("cold brew");
        vectors[cold] = vec![1.0, 0.1];
        let hits = c.search("something refreshing", &Filters::default(), Method::Hybrid, Some((&query, &vectors)), 3);
        assert_eq!(ids(&hits), ["cold-brew"]);
    }
}

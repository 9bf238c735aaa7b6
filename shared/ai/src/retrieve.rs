//! Retrieval: Okapi BM25 over the words of short documents (menu items, knowledge passages,
//! agent descriptions), typo-tolerant through the corpus's [`Vocabulary`], fused with embedding
//! similarity when an embedding model answers.
//!
//! BM25 is written here rather than taken from a crate: the corpora are a few hundred short
//! documents, the scoring is twenty lines, and the tokenisation (accents, plurals, typos) is
//! ours to tune; the `bm25` crate would hash terms and bring its own tokeniser.

use std::collections::HashMap;

use crate::text::{Vocabulary, terms};

/// BM25's usual constants: term-frequency saturation and length normalisation.
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// A title's words count this many times, so a query naming an item finds that item first.
const TITLE_WEIGHT: usize = 3;

/// One retrievable text: what it is called, what it says, and labels that also count as words.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
}

impl Document {
    /// The text an embedding model sees for it.
    pub fn embedding_text(&self) -> String {
        if self.tags.is_empty() { format!("{}. {}", self.title, self.body) } else { format!("{}. {} ({})", self.title, self.body, self.tags.join(", ")) }
    }
}

/// A BM25 index of a fixed corpus.
#[derive(Debug, Clone)]
pub struct Bm25 {
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f32>,
    avg_length: f32,
    document_frequency: HashMap<String, u32>,
    vocabulary: Vocabulary,
}

impl Bm25 {
    pub fn new(corpus: &[Document]) -> Bm25 {
        let mut docs = Vec::with_capacity(corpus.len());
        let mut lengths = Vec::with_capacity(corpus.len());
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        let mut vocabulary = Vocabulary::default();
        for doc in corpus {
            let mut all = Vec::new();
            let title = terms(&doc.title);
            for _ in 0..TITLE_WEIGHT {
                all.extend(title.iter().cloned());
            }
            all.extend(terms(&doc.body));
            for tag in &doc.tags {
                all.extend(terms(tag));
            }
            let mut counts: HashMap<String, u32> = HashMap::new();
            for t in &all {
                *counts.entry(t.clone()).or_default() += 1;
            }
            for t in counts.keys() {
                *document_frequency.entry(t.clone()).or_default() += 1;
                vocabulary.insert(t);
            }
            lengths.push(all.len() as f32);
            docs.push(counts);
        }
        let avg_length = if lengths.is_empty() { 1.0 } else { (lengths.iter().sum::<f32>() / lengths.len() as f32).max(1.0) };
        Bm25 { docs, lengths, avg_length, document_frequency, vocabulary }
    }

    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// Each document's score for `query`'s terms as written (no typo mending).
    pub fn scores_exact(&self, query: &str) -> Vec<f32> {
        self.score_terms(&terms(query))
    }

    /// Each document's score for `query`, its unknown words mended to the nearest known ones.
    pub fn scores(&self, query: &str) -> Vec<f32> {
        self.score_terms(&self.vocabulary.mend(&terms(query)))
    }

    fn score_terms(&self, query: &[String]) -> Vec<f32> {
        let n = self.docs.len() as f32;
        let mut unique: Vec<&String> = query.iter().collect();
        unique.sort();
        unique.dedup();
        self.docs
            .iter()
            .zip(&self.lengths)
            .map(|(counts, &length)| {
                unique
                    .iter()
                    .map(|t| {
                        let tf = counts.get(*t).copied().unwrap_or(0) as f32;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let df = self.document_frequency.get(*t).copied().unwrap_or(0) as f32;
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / self.avg_length))
                    })
                    .sum()
            })
            .collect()
    }
}

/// Cosine similarity; 0 when either vector is empty or zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// One score per document from lexical and (when there are any) semantic scores: BM25 scaled
/// to [0, 1] by the best document's, plus `semantic_weight` times the cosine similarity (below
/// zero counts as zero). Scaling BM25 by its maximum keeps a one-word query's best match at 1
/// however rare the word.
pub fn fuse(bm25: &[f32], cosines: Option<&[f32]>, semantic_weight: f32) -> Vec<f32> {
    let top = bm25.iter().copied().fold(0.0f32, f32::max);
    bm25.iter()
        .enumerate()
        .map(|(i, &s)| {
            let lexical = if top > 0.0 { s / top } else { 0.0 };
            let semantic = cosines.and_then(|c| c.get(i)).copied().unwrap_or(0.0).max(0.0);
            lexical + semantic_weight * semantic
        })
        .collect()
}

/// Indices of `scores` from best to worst, ties in corpus order, only those above `floor`.
pub fn ranked(scores: &[f32], floor: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > floor).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, title: &str, body: &str) -> Document {
        Document { id: id.into(), title: title.into(), body: body.into(), tags: vec![] }
    }

    fn corpus() -> Vec<Document> {
        vec![
            doc("latte", "Caffè Latte", "Espresso with silky steamed milk."),
            doc("americano", "Americano", "Espresso lengthened with hot water."),
            doc("chai", "Chai Latte", "Spiced black tea with steamed milk."),
            doc("croissant", "Butter Croissant", "Flaky, baked every morning."),
        ]
    }

    #[test]
    fn the_named_document_ranks_first_and_rare_words_weigh_more() {
        let index = Bm25::new(&corpus());
        let s = index.scores("latte");
        assert!(s[0] > 0.0 && s[2] > 0.0 && s[1] == 0.0 && s[3] == 0.0);
        let s = index.scores("spiced tea");
        assert_eq!(ranked(&s, 0.0), [2]);
        let s = index.scores("espresso with water");
        assert_eq!(ranked(&s, 0.0)[0], 1);
    }

    #[test]
    fn typos_find_their_word_but_not_in_exact_mode() {
        let index = Bm25::new(&corpus());
        assert_eq!(ranked(&index.scores("crossaint"), 0.0), [3]);
        assert!(ranked(&index.scores_exact("crossaint"), 0.0).is_empty());
    }

    #[test]
    fn fusion_scales_lexical_scores_and_adds_semantic_ones() {
        let fused = fuse(&[2.0, 1.0, 0.0], Some(&[0.1, 0.9, -0.5]), 1.0);
        assert_eq!(fused, vec![1.1, 1.4, 0.0]);
        assert_eq!(fuse(&[0.0, 0.0], None, 1.0), vec![0.0, 0.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[], &[1.0]), 0.0);
    }
}

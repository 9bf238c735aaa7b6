//! Words out of text, the same way for documents and queries: lower case, accents folded
//! ("Caffè" is "caffe"), split on anything not a letter or digit, common English words dropped,
//! and a light plural stemmer ("lattes", "muffins", "berries"). Typos are mended against a
//! vocabulary with Damerau–Levenshtein distance ([`Vocabulary::correct`]).

use std::collections::BTreeSet;

/// Words too common to tell documents apart.
const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "by",
    "can",
    "could",
    "do",
    "does",
    "for",
    "from",
    "get",
    "have",
    "how",
    "i",
    "in",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "please",
    "some",
    "something",
    "that",
    "the",
    "there",
    "this",
    "to",
    "want",
    "what",
    "which",
    "with",
    "would",
    "you",
    "your",
    "we",
    "us",
    "like",
    "id",
    "im",
    "one",
    "about",
    "then",
    "also",
    "else",
    "those",
    "these",
    "them",
];

/// A letter without its accent, for the Latin letters menus use.
fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

/// The word's singular, roughly: enough that "lattes" finds "latte" and "berries" "berry".
pub fn stem(word: &str) -> String {
    let n = word.len();
    if n > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..n - 3]);
    }
    if n > 4 && (word.ends_with("ches") || word.ends_with("shes") || word.ends_with("sses")) {
        return word[..n - 2].to_owned();
    }
    if n > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") && !word.ends_with("is") {
        return word[..n - 1].to_owned();
    }
    word.to_owned()
}

/// The raw words of `text`: lower case, accents folded, split on anything else (hyphens too, so
/// "dairy-free" is "dairy" and "free").
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase).map(fold) {
        if c.is_alphanumeric() {
            word.push(c);
        } else if c == '\'' || c == '’' {
            // "don't" -> "dont", "today's" -> "todays"
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The terms BM25 counts: [`words`] without stopwords, stemmed.
pub fn terms(text: &str) -> Vec<String> {
    words(text).into_iter().filter(|w| !STOPWORDS.contains(&w.as_str())).map(|w| stem(&w)).collect()
}

/// The most edits a word of `len` characters may be from the word it was meant as: none for
/// short words (they collide too easily), one up to seven, two beyond.
fn tolerance(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// The terms a corpus knows, to mend a query's typos against.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary(BTreeSet<String>);

impl Vocabulary {
    pub fn insert(&mut self, term: &str) {
        self.0.insert(term.to_owned());
    }

    pub fn contains(&self, term: &str) -> bool {
        self.0.contains(term)
    }

    /// `term` if the vocabulary knows it, else the nearest known term within the typo tolerance
    /// of its length (the alphabetically first of equally near ones), else `None`.
    pub fn correct(&self, term: &str) -> Option<String> {
        if self.contains(term) {
            return Some(term.to_owned());
        }
        let limit = tolerance(term.chars().count());
        if limit == 0 {
            return None;
        }
        self.0
            .iter()
            .filter(|known| known.len().abs_diff(term.len()) <= limit)
            .map(|known| (strsim::damerau_levenshtein(known, term), known))
            .filter(|(d, known)| *d <= limit.min(tolerance(known.chars().count()).max(1)))
            .min_by_key(|(d, _)| *d)
            .map(|(_, known)| known.clone())
    }

    /// `terms` with each unknown one replaced by its correction (dropped when there is none).
    pub fn mend(&self, terms: &[String]) -> Vec<String> {
        terms.iter().filter_map(|t| self.correct(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_accents_and_punctuation() {
        assert_eq!(words("Caffè Latte, dairy-free!"), ["caffe", "latte", "dairy", "free"]);
        assert_eq!(words("don't  stop"), ["dont", "stop"]);
    }

    #[test]
    fn terms_drop_stopwords_and_plurals() {
        assert_eq!(terms("Do you have any lattes or muffins?"), ["latte", "muffin"]);
        assert_eq!(terms("berries and glasses"), ["berry", "glass"]);
        assert_eq!(terms("hibiscus"), ["hibiscus"]);
    }

    #[test]
    fn typos_are_mended_within_the_tolerance_of_the_word() {
        let mut v = Vocabulary::default();
        for t in ["cappuccino", "latte", "mocha", "croissant", "tea"] {
            v.insert(t);
        }
        assert_eq!(v.correct("capucino").as_deref(), Some("cappuccino"));
        assert_eq!(v.correct("latet").as_deref(), Some("latte"));
        assert_eq!(v.correct("crossiant").as_deref(), Some("croissant"));
        assert_eq!(v.correct("moca").as_deref(), Some("mocha"));
        // three letters: no guessing
        assert_eq!(v.correct("tee"), None);
        assert_eq!(v.correct("pizza"), None);
    }
}

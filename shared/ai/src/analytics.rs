//! The analytics agent's pure logic: a manager's question turned into a validated [`Query`] by
//! rules (no model), the query run over the read model's [`OrderFacts`], anomaly flags on a
//! series, and the frozen synthetic sales the evaluation runs on. Times are UTC.

use std::collections::{BTreeMap, BTreeSet};

use gocoffee_core::analytics::{ItemCount, OrderFacts};
use serde::{Deserialize, Serialize};

use crate::text::{Vocabulary, stem, words};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// The most rows a top or bottom may keep.
pub const MAX_RANK: u32 = 50;
/// How many rows a ranking keeps when the question names none but asks in the plural ("best sellers").
const PLURAL_RANK: u32 = 5;
const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// The figure a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Revenue,
    Orders,
    ItemsSold,
    AverageOrderValue,
    AveragePreparation,
    AverageWait,
    CancellationRate,
    PaymentFailureRate,
    CryptoShare,
}

/// What the figure is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    None,
    Item,
    HourOfDay,
    Weekday,
    Day,
}

/// The period asked about (see [`window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    Today,
    Yesterday,
    ThisWeek,
    LastWeek,
    // snake_case alone would spell these "last7_days".
    #[serde(rename = "last_7_days")]
    Last7Days,
    #[serde(rename = "last_30_days")]
    Last30Days,
    ThisMonth,
    LastMonth,
}

/// A question the executor answers: what the model (or the rules) may ask for, and no more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub measure: Measure,
    pub by: By,
    pub range: Range,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottom: Option<u32>,
    /// A menu item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl Measure {
    /// Whether it can be asked about one item, or split by item: only the figures an order's
    /// item lines carry.
    fn per_item(self) -> bool {
        matches!(self, Measure::Revenue | Measure::Orders | Measure::ItemsSold)
    }

    fn noun(self) -> &'static str {
        match self {
            Measure::Revenue => "revenue",
            Measure::Orders => "orders",
            Measure::ItemsSold => "units sold",
            Measure::AverageOrderValue => "average order value",
            Measure::AveragePreparation => "average preparation time",
            Measure::AverageWait => "average wait",
            Measure::CancellationRate => "cancellation rate",
            Measure::PaymentFailureRate => "crypto payment failure rate",
            Measure::CryptoShare => "share of orders paid in crypto",
        }
    }
}

impl Query {
    /// Checks it is a query the executor answers: a top or a bottom (not both) of 1 to
    /// [`MAX_RANK`] rows, only with a `by`; `by: item` and `item` only with revenue, orders or
    /// items sold, not together, and `item` one of `item_ids`.
    pub fn validate(&self, item_ids: &[&str]) -> Result<(), String> {
        match (self.top, self.bottom) {
            (Some(_), Some(_)) => return Err("ask for a top or a bottom, not both".into()),
            (Some(n), None) | (None, Some(n)) => {
                if self.by == By::None {
                    return Err("a top or bottom needs something to rank: by item, hour_of_day, weekday or day".into());
                }
                if !(1..=MAX_RANK).contains(&n) {
                    return Err(format!("a top or bottom keeps 1 to {MAX_RANK} rows"));
                }
            }
            (None, None) => {}
        }
        if self.by == By::Item && !self.measure.per_item() {
            return Err(format!("the {} can't be split by item: only revenue, orders and items sold can", self.measure.noun()));
        }
        if let Some(item) = &self.item {
            if !self.measure.per_item() {
                return Err(format!("the {} can't be asked about one item: only revenue, orders and items sold can", self.measure.noun()));
            }
            if self.by == By::Item {
                return Err("ask about one item or split by item, not both".into());
            }
            if !item_ids.contains(&item.as_str()) {
                return Err(format!("{item:?} is not on the menu"));
            }
        }
        Ok(())
    }
}

// ---- Parsing: keyword and phrase rules over the question's stemmed, typo-mended words. ----

const REVENUE: &[&str] = &["revenue", "sale", "taking", "turnover", "income", "earning", "money", "cash", "gross", "dollar", "spend", "spent"];
const SOLD: &[&str] = &["sold", "sell", "selling", "seller", "bestseller", "bestselling", "popular", "unpopular", "shift", "shifted", "unit", "cup", "moved"];
const ORDERS: &[&str] = &[
    "order",
    "ordered",
    "ordering",
    "footfall",
    "busy",
    "busiest",
    "busier",
    "rush",
    "peak",
    "quiet",
    "quietest",
    "quieter",
    "slow",
    "slowest",
    "traffic",
    "customer",
    "transaction",
    "visit",
    "visitor",
];
const CRYPTO: &[&str] = &["crypto", "cryptocurrency", "bitcoin", "btc", "usdc", "eth", "stablecoin", "onchain"];
const ITEM_WORDS: &[&str] = &["item", "product", "drink"];
/// Words the rules read besides those above, so a misspelling of one is mended to it.
const KEYWORDS: &[&str] = &[
    "make",
    "made",
    "earn",
    "earned",
    "bring",
    "brought",
    "much",
    "many",
    "long",
    "fast",
    "quick",
    "speed",
    "making",
    "fail",
    "failure",
    "failed",
    "failing",
    "payment",
    "pay",
    "paid",
    "cancel",
    "cancelled",
    "canceled",
    "cancellation",
    "prep",
    "preparation",
    "prepare",
    "preparing",
    "prepared",
    "wait",
    "waiting",
    "waited",
    "ready",
    "served",
    "serve",
    "queue",
    "average",
    "avg",
    "mean",
    "typical",
    "value",
    "basket",
    "ticket",
    "aov",
    "per",
    "each",
    "went",
    "out",
    "hour",
    "hourly",
    "weekday",
    "week",
    "day",
    "daily",
    "date",
    "month",
    "today",
    "tonight",
    "yesterday",
    "this",
    "last",
    "past",
    "previous",
    "prior",
    "current",
    "time",
    "when",
    "what",
    "which",
    "top",
    "bottom",
    "best",
    "worst",
    "most",
    "least",
    "highest",
    "lowest",
    "longest",
    "shortest",
    "fastest",
    "quickest",
    "biggest",
    "largest",
    "smallest",
    "fewest",
    "greatest",
    "weakest",
    "maximum",
    "minimum",
    "share",
    "rate",
    "percentage",
    "proportion",
    "number",
    "total",
    "count",
    "year",
    "quarter",
    "tomorrow",
    "next",
    "fortnight",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "twenty",
    "thirty",
    "fifty",
];
/// Common words a mender would otherwise turn into a keyword ("your" into "hour", "cost" into
/// "most", "late" into "latte"): known, so left alone.
const PLAIN: &[&str] = &[
    "your",
    "cost",
    "lost",
    "post",
    "must",
    "rest",
    "test",
    "late",
    "take",
    "took",
    "same",
    "safe",
    "case",
    "well",
    "tell",
    "self",
    "told",
    "hold",
    "data",
    "want",
    "such",
    "them",
    "then",
    "than",
    "that",
    "these",
    "those",
    "have",
    "been",
    "were",
    "does",
    "done",
    "show",
    "give",
    "list",
    "need",
    "over",
    "from",
    "into",
    "until",
    "with",
    "about",
    "more",
    "less",
    "size",
    "often",
    "included",
    "include",
    "including",
    "business",
    "could",
    "would",
    "should",
    "grew",
    "grow",
    "weak",
    "good",
    "far",
    "like",
    "just",
    "whole",
    "start",
    "store",
    "shop",
    "cafe",
];
/// Words of an item's name too common to name the item alone ("cold" is not "cold brew").
const VAGUE: &[&str] = &["cold", "flat", "white", "butter", "iced", "green", "black", "house", "caffe"];

/// A question's words, stemmed and mended, and which of them a rule has already taken.
struct Tokens {
    raw: Vec<String>,
    words: Vec<String>,
    used: Vec<bool>,
}

impl Tokens {
    fn new(question: &str, items: &[(&str, &str)]) -> Tokens {
        let mut vocabulary = Vocabulary::default();
        for w in REVENUE.iter().chain(SOLD).chain(ORDERS).chain(CRYPTO).chain(ITEM_WORDS).chain(KEYWORDS).chain(PLAIN) {
            vocabulary.insert(w);
        }
        for (id, name) in items {
            let forms = [phrase(id), phrase(name)];
            for w in forms.iter().flatten() {
                vocabulary.insert(w);
            }
        }
        let raw = words(question);
        let words: Vec<String> = raw
            .iter()
            .map(|w| {
                let s = stem(w);
                if s.bytes().all(|b| b.is_ascii_digit()) { s } else { vocabulary.correct(&s).unwrap_or(s) }
            })
            .collect();
        Tokens { used: vec![false; words.len()], raw, words }
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    /// The `i`th word, or "" when there is none or a rule took it.
    fn at(&self, i: usize) -> &str {
        if self.used.get(i) == Some(&false) { self.words.get(i).map_or("", String::as_str) } else { "" }
    }

    fn before(&self, i: usize, k: usize) -> &str {
        i.checked_sub(k).map_or("", |j| self.at(j))
    }

    fn has(&self, any: &[&str]) -> bool {
        (0..self.len()).any(|i| any.contains(&self.at(i)))
    }

    fn starts(&self, prefix: &str) -> bool {
        (0..self.len()).any(|i| !self.at(i).is_empty() && self.at(i).starts_with(prefix))
    }

    fn take(&mut self, from: usize, to: usize) {
        for u in self.used.iter_mut().take(to + 1).skip(from) {
            *u = true;
        }
    }
}

/// The stemmed words of an item's id or name ("flat-white" is "flat white").
fn phrase(text: &str) -> Vec<String> {
    words(text).iter().map(|w| stem(w)).collect()
}

const NUMBERS: [(&str, u32); 13] = [
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("twenty", 20),
    ("thirty", 30),
    ("fifty", 50),
];

/// "3" or "three" (a few words), else `None`.
fn number(word: &str) -> Option<u32> {
    if !word.is_empty() && word.len() <= 4 && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    NUMBERS.iter().find(|(w, _)| *w == word).map(|(_, n)| *n)
}

const PERIODS: &str = "the periods I answer for are today, yesterday, this or last week, the last 7 or 30 days, and this or last month";

/// The period the question names, its words taken; `None` when it names none.
fn period(t: &mut Tokens) -> Result<Option<Range>, String> {
    for i in 0..t.len() {
        let prev = t.before(i, 1);
        let (range, from) = match t.at(i) {
            "today" | "tonight" => (Range::Today, i),
            "yesterday" => (Range::Yesterday, i),
            "week" | "month" => {
                let month = t.at(i) == "month";
                match (prev, month) {
                    ("this" | "current", false) => (Range::ThisWeek, i - 1),
                    ("last" | "previous" | "prior", false) => (Range::LastWeek, i - 1),
                    ("past", false) => (Range::Last7Days, i - 1),
                    ("this" | "current", true) => (Range::ThisMonth, i - 1),
                    ("last" | "previous" | "prior", true) => (Range::LastMonth, i - 1),
                    ("past", true) => (Range::Last30Days, i - 1),
                    ("next", _) => return Err(PERIODS.into()),
                    _ => continue,
                }
            }
            "day" => match number(prev) {
                Some(7) => (Range::Last7Days, i - 1),
                Some(30) => (Range::Last30Days, i - 1),
                Some(_) => return Err(PERIODS.into()),
                None => continue,
            },
            "tomorrow" | "year" | "yearly" | "annual" | "quarter" | "fortnight" | "ytd" => return Err(PERIODS.into()),
            _ => continue,
        };
        t.take(from, i);
        return Ok(Some(range));
    }
    Ok(None)
}

/// The menu item the question names, its words taken: the longest run of words matching an
/// item's id or name ("matcha latte" over "latte"), else a word only one item's name has
/// ("muffins").
fn menu_item(t: &mut Tokens, items: &[(&str, &str)]) -> Option<String> {
    let forms: Vec<(usize, Vec<String>)> = items.iter().enumerate().flat_map(|(k, (id, name))| [(k, phrase(id)), (k, phrase(name))]).collect();
    let mut owners: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (k, form) in &forms {
        for w in form {
            owners.entry(w.as_str()).or_default().insert(*k);
        }
    }
    // (score, start, length, item): a whole id or name scores twice its length, a lone word 1.
    let mut best: Option<(usize, usize, usize, usize)> = None;
    for i in 0..t.len() {
        for (k, form) in &forms {
            let n = form.len();
            let matches = n > 0 && i + n <= t.len() && form.iter().enumerate().all(|(j, w)| t.at(i + j) == w.as_str());
            if matches && best.is_none_or(|b| 2 * n > b.0) {
                best = Some((2 * n, i, n, *k));
            }
        }
        let w = t.at(i);
        if let Some(ks) = owners.get(w).filter(|ks| ks.len() == 1 && w.len() >= 4 && !VAGUE.contains(&w))
            && let Some(&k) = ks.first()
            && best.is_none()
        {
            best = Some((1, i, 1, k));
        }
    }
    let (_, start, n, k) = best?;
    t.take(start, start + n - 1);
    items.get(k).map(|(id, _)| (*id).to_owned())
}

/// The figure asked for, the first rule that holds winning: failures and cancellations before
/// crypto, times before orders ("wait from ordering"), average order value before revenue.
fn measure(t: &Tokens, item: bool) -> Option<Measure> {
    let revenue = t.has(REVENUE) || t.has(&["bring", "brought"]) || (t.has(&["much"]) && t.has(&["make", "made", "earn", "earned", "take", "took"]));
    let per_order = (0..t.len()).any(|i| t.at(i) == "per" && matches!(t.at(i + 1), "order" | "customer" | "transaction" | "head" | "visit" | "ticket"));
    let average = t.has(&["average", "avg", "mean", "typical"]);
    let m = if t.starts("fail") || t.has(&["declined", "bounced"]) {
        Measure::PaymentFailureRate
    } else if t.starts("cancel") {
        Measure::CancellationRate
    } else if t.has(CRYPTO) {
        Measure::CryptoShare
    } else if t.has(&["prep", "preparation", "prepare", "preparing", "prepared"])
        || (t.has(&["long", "fast", "quick", "speed"]) && t.has(&["make", "making"]) && !revenue)
    {
        Measure::AveragePreparation
    } else if t.starts("wait") || t.has(&["queue", "queuing", "queueing", "turnaround"]) || (t.has(&["long"]) && t.has(&["ready", "served", "serve"])) {
        Measure::AverageWait
    } else if t.has(&["aov", "basket"])
        || (t.has(&["value"]) && t.has(&["order"]))
        || (t.has(&["spend", "spent", "ticket"]) && (average || per_order))
        || (revenue && per_order)
    {
        Measure::AverageOrderValue
    } else if revenue {
        Measure::Revenue
    } else if t.has(SOLD) || (t.has(&["went"]) && t.has(&["out"])) {
        Measure::ItemsSold
    } else if t.has(ORDERS) {
        Measure::Orders
    } else if item || t.has(ITEM_WORDS) {
        Measure::ItemsSold
    } else {
        return None;
    };
    Some(m)
}

/// A top (`true`) or bottom of n rows, when the question ranks.
fn ranking(t: &Tokens, measure: Measure) -> Option<(bool, u32)> {
    let timed = matches!(measure, Measure::AveragePreparation | Measure::AverageWait);
    let (mut top, mut n) = (None, None);
    for i in 0..t.len() {
        let high = match t.at(i) {
            "top" | "best" | "most" | "highest" | "busiest" | "peak" | "rush" | "biggest" | "largest" | "greatest" | "maximum" | "max" | "longest"
            | "popular" | "bestseller" | "bestselling" => true,
            "bottom" | "worst" | "least" | "lowest" | "quietest" | "quiet" | "fewest" | "smallest" | "unpopular" | "minimum" | "min" | "weakest" => false,
            // the slowest preparation is the longest; the slowest hour for orders the quietest
            "slowest" => timed,
            "fastest" | "quickest" | "shortest" => !timed,
            _ => continue,
        };
        // a bottom word wins ("least popular")
        top = Some(top != Some(false) && high);
        n = n.or_else(|| number(t.at(i + 1)).or_else(|| number(t.before(i, 1))));
    }
    let plural = (0..t.len()).any(|i| {
        matches!(t.at(i), "seller" | "bestseller" | "item" | "product" | "drink" | "hour" | "day" | "weekday") && t.raw.get(i).is_some_and(|r| r.ends_with('s'))
    });
    top.map(|top| (top, n.unwrap_or(if plural { PLURAL_RANK } else { 1 })))
}

/// What the figure is split by: weekday, hour and day words first, then items.
fn split(t: &Tokens, measure: Measure, item: bool, ranked: bool) -> By {
    let day_of_week =
        (0..t.len()).any(|i| t.at(i) == "day" && t.at(i + 1) == "of" && (t.at(i + 2) == "week" || (t.at(i + 2) == "the" && t.at(i + 3) == "week")));
    let time_of_day = (0..t.len()).any(|i| {
        t.at(i) == "time" && ((t.at(i + 1) == "of" && t.has(&["day"])) || matches!(t.before(i, 1), "what" | "which" | "busiest" | "quietest" | "peak" | "rush"))
    });
    // "which item ...", "top 3 products", not "how many items" (nor "how long do drinks take")
    let item_word = (0..t.len()).any(|i| ITEM_WORDS.contains(&t.at(i)) && !matches!(t.before(i, 1), "many" | "of")) && (measure.per_item() || ranked);
    if day_of_week || t.has(&["weekday"]) {
        By::Weekday
    } else if t.has(&["hour", "hourly", "hr", "hrs"]) || time_of_day {
        By::HourOfDay
    } else if t.has(&["day", "daily", "date"]) {
        By::Day
    } else if t.has(&["when"]) {
        By::HourOfDay
    } else if !item && (t.has(&["seller", "bestseller", "bestselling", "popular", "unpopular"]) || item_word || (ranked && t.has(&["sold", "sell", "selling"])))
    {
        By::Item
    } else if t.has(&["rush", "peak"]) {
        By::HourOfDay
    } else {
        By::None
    }
}

/// A manager's question turned into a validated [`Query`], deterministically (no model):
/// keyword and phrase rules over the question's words, stemmed and with typos mended, with the
/// defaults the evaluation set documents: no period named is the last 30 days; "what sold
/// most" is items sold by item, top 1; "when are we busiest" orders by hour, top 1; "how many
/// lattes" names the item from the menu (`items` is its (id, name) pairs). A ranking without a
/// split is dropped. `Err(why)` when no figure is recognisable, or the query would not
/// validate.
pub fn parse(question: &str, items: &[(&str, &str)]) -> Result<Query, String> {
    let mut t = Tokens::new(question, items);
    let range = period(&mut t)?.unwrap_or(Range::Last30Days);
    let item = menu_item(&mut t, items);
    let measure = measure(&t, item.is_some()).ok_or_else(|| {
        "no figure recognisable: ask about revenue, orders, items sold, order value, preparation or wait times, cancellations, or crypto payments".to_owned()
    })?;
    let rank = ranking(&t, measure);
    let mut by = split(&t, measure, item.is_some(), rank.is_some());
    if by == By::None && rank.is_some() && measure == Measure::ItemsSold && item.is_none() {
        by = By::Item;
    }
    let (top, bottom) = match rank {
        Some((true, n)) if by != By::None => (Some(n), None),
        Some((false, n)) if by != By::None => (None, Some(n)),
        _ => (None, None),
    };
    let query = Query { measure, by, range, top, bottom, item };
    let ids: Vec<&str> = items.iter().map(|(id, _)| *id).collect();
    query.validate(&ids)?;
    Ok(query)
}

// ---- Calendar arithmetic (UTC; no date crate). ----

use gocoffee_core::calendar::{civil_from_days as civil, days_from_civil, weekday};

fn date(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `[from_ms, to_ms)` of a range at `now_ms`: weeks start on Monday; today, this week and this
/// month end at now; last week is the previous Monday to Monday, last month the previous
/// calendar month; the last 7 and 30 days end at now.
pub fn window(range: Range, now_ms: i64) -> (i64, i64) {
    let today = now_ms.div_euclid(DAY_MS);
    let week = today - weekday(today);
    let (y, m, _) = civil(today);
    let month = days_from_civil(y, m, 1);
    let last_month = if m == 1 { days_from_civil(y - 1, 12, 1) } else { days_from_civil(y, m - 1, 1) };
    match range {
        Range::Today => (today * DAY_MS, now_ms),
        Range::Yesterday => ((today - 1) * DAY_MS, today * DAY_MS),
        Range::ThisWeek => (week * DAY_MS, now_ms),
        Range::LastWeek => ((week - 7) * DAY_MS, week * DAY_MS),
        Range::Last7Days => (now_ms - 7 * DAY_MS, now_ms),
        Range::Last30Days => (now_ms - 30 * DAY_MS, now_ms),
        Range::ThisMonth => (month * DAY_MS, now_ms),
        Range::LastMonth => (last_month * DAY_MS, month * DAY_MS),
    }
}

// ---- Execution. ----

/// One figure: money stays integer cents.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum Value {
    Cents(u64),
    Count(u64),
    Millis(i64),
    Ratio(f64),
}

impl Value {
    fn number(&self) -> f64 {
        match *self {
            Value::Cents(n) | Value::Count(n) => n as f64,
            Value::Millis(ms) => ms as f64,
            Value::Ratio(r) => r,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub query: Query,
    pub from_ms: i64,
    pub to_ms: i64,
    pub rows: Vec<Row>,
    pub summary: String,
}

/// What a group of orders adds up to, every measure at once.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    orders: u64,
    sales: u64,
    revenue: u64,
    units: u64,
    cancelled: u64,
    crypto: u64,
    failed: u64,
    prep: (i64, i64),
    wait: (i64, i64),
}

impl Tally {
    fn add(&mut self, f: &OrderFacts, units: u64) {
        self.orders += 1;
        if f.is_sale() {
            self.sales += 1;
            self.revenue += f.total_cents;
            self.units += units;
        }
        self.cancelled += u64::from(f.cancelled_at_ms.is_some());
        self.crypto += u64::from(f.crypto);
        self.failed += u64::from(f.payment_failed);
        if let Some(ready) = f.ready_at_ms {
            self.wait = (self.wait.0 + ready - f.placed_at_ms, self.wait.1 + 1);
            if let Some(started) = f.started_at_ms {
                self.prep = (self.prep.0 + ready - started, self.prep.1 + 1);
            }
        }
    }

    /// The measure over this group; `None` for an average or rate with nothing to divide by.
    fn value(&self, measure: Measure) -> Option<Value> {
        let ratio = |n: u64, of: u64| if of > 0 { Some(Value::Ratio(n as f64 / of as f64)) } else { None };
        let mean = |(sum, n): (i64, i64)| if n > 0 { Some(Value::Millis(sum / n)) } else { None };
        match measure {
            Measure::Revenue => Some(Value::Cents(self.revenue)),
            Measure::Orders => Some(Value::Count(self.orders)),
            Measure::ItemsSold => Some(Value::Count(self.units)),
            Measure::AverageOrderValue => {
                if self.sales > 0 {
                    Some(Value::Cents(self.revenue / self.sales))
                } else {
                    None
                }
            }
            Measure::AveragePreparation => mean(self.prep),
            Measure::AverageWait => mean(self.wait),
            Measure::CancellationRate => ratio(self.cancelled, self.orders),
            Measure::PaymentFailureRate => ratio(self.failed, self.crypto),
            Measure::CryptoShare => ratio(self.crypto, self.orders),
        }
    }
}

/// A group's place in the natural order (hour, weekday, day; 0 for items and "all") and key.
fn group(by: By, placed_at_ms: i64) -> (i64, String) {
    let day = placed_at_ms.div_euclid(DAY_MS);
    match by {
        By::HourOfDay => {
            let h = placed_at_ms.rem_euclid(DAY_MS) / HOUR_MS;
            (h, format!("{h:02}"))
        }
        By::Weekday => (weekday(day), WEEKDAYS[weekday(day) as usize].to_owned()),
        By::Day => (day, date(day)),
        By::None | By::Item => (0, "all".to_owned()),
    }
}

/// Runs a validated query over the facts of the orders placed in its [`window`] (others are
/// left out). Revenue is the takings of sales (neither cancelled nor refunded); asked of one
/// item, or split by item, it is the takings of the sales that included the item: the facts
/// keep no line prices, so an item's own share of an order is not known, and the summary says
/// which figure it is. Orders count every order placed (cancelled too), with an item those
/// holding it; items sold are units in sales; averages are in whole cents or milliseconds.
///
/// Groups: every hour from the first to the last with an order (a quiet hour inside opening
/// hours shows as 0; the night doesn't), every weekday and day the window covers, every item
/// in its orders; a sum is 0 for an empty group, an average or rate leaves the group out.
/// Ranked rows (and items, always) are by value, high first for a top, ties in natural order.
pub fn execute(query: &Query, facts: &[OrderFacts], now_ms: i64) -> Answer {
    let (from_ms, to_ms) = window(query.range, now_ms);
    let placed: Vec<&OrderFacts> = facts.iter().filter(|f| (from_ms..to_ms).contains(&f.placed_at_ms)).collect();
    let mut groups: BTreeMap<(i64, String), Tally> = BTreeMap::new();
    let first_day = from_ms.div_euclid(DAY_MS);
    let last_day = if to_ms > from_ms { (to_ms - 1).div_euclid(DAY_MS) } else { first_day - 1 };
    match query.by {
        By::None => {
            groups.insert((0, "all".to_owned()), Tally::default());
        }
        By::HourOfDay => {
            let hours = placed.iter().map(|f| f.placed_at_ms.rem_euclid(DAY_MS) / HOUR_MS);
            if let (Some(lo), Some(hi)) = (hours.clone().min(), hours.max()) {
                for h in lo..=hi {
                    groups.insert((h, format!("{h:02}")), Tally::default());
                }
            }
        }
        By::Weekday | By::Day => {
            for day in first_day..=last_day {
                groups.entry(group(query.by, day * DAY_MS)).or_default();
            }
        }
        By::Item => {}
    }
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &placed {
        for ItemCount { item_id, name, .. } in &f.items {
            names.entry(item_id.as_str()).or_insert(name.as_str());
        }
        let entries: Vec<((i64, String), u64)> = match (query.by, &query.item) {
            (By::Item, _) => f.items.iter().map(|i| ((0, i.item_id.clone()), u64::from(i.quantity))).collect(),
            (by, Some(id)) => match f.items.iter().find(|i| &i.item_id == id) {
                Some(line) => vec![(group(by, f.placed_at_ms), u64::from(line.quantity))],
                None => continue,
            },
            (by, None) => vec![(group(by, f.placed_at_ms), f.items.iter().map(|i| u64::from(i.quantity)).sum())],
        };
        for (key, units) in entries {
            groups.entry(key).or_default().add(f, units);
        }
    }
    let mut rows: Vec<Row> = groups.into_iter().filter_map(|((_, key), t)| t.value(query.measure).map(|value| Row { key, value })).collect();
    if query.top.is_some() || query.bottom.is_some() || query.by == By::Item {
        // Stable: equal values keep the natural order the groups came in.
        let high_first = query.bottom.is_none();
        rows.sort_by(|a, b| {
            let (x, y) = (a.value.number(), b.value.number());
            if high_first { y.total_cmp(&x) } else { x.total_cmp(&y) }
        });
    }
    if let Some(n) = query.top.or(query.bottom) {
        rows.truncate(n as usize);
    }
    let summary = summary(query, &rows, &names);
    Answer { query: query.clone(), from_ms, to_ms, rows, summary }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn shown(value: &Value, measure: Measure) -> String {
    match *value {
        Value::Cents(c) => gocoffee_core::Cents(c).to_string(),
        Value::Count(n) => {
            let noun = if measure == Measure::ItemsSold { "unit" } else { "order" };
            format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
        }
        Value::Millis(ms) => {
            let s = (ms + 500).div_euclid(1000);
            if s >= 60 { format!("{} min {} s", s / 60, s % 60) } else { format!("{s} s") }
        }
        Value::Ratio(r) => format!("{:.1}%", r * 100.0),
    }
}

/// One plain sentence: "Revenue yesterday: $123.45.", "Caffè Latte sold most last week: 42 units."
fn summary(query: &Query, rows: &[Row], names: &BTreeMap<&str, &str>) -> String {
    let range = match query.range {
        Range::Today => "today",
        Range::Yesterday => "yesterday",
        Range::ThisWeek => "this week",
        Range::LastWeek => "last week",
        Range::Last7Days => "in the last 7 days",
        Range::Last30Days => "in the last 30 days",
        Range::ThisMonth => "this month",
        Range::LastMonth => "last month",
    };
    let name = |id: &str| names.get(id).map_or_else(|| id.to_owned(), |n| (*n).to_owned());
    let subject = match (&query.item, query.measure) {
        (Some(id), Measure::Revenue) => format!("revenue of the sales that included {}", name(id)),
        (Some(id), Measure::Orders) => format!("orders that included {}", name(id)),
        (Some(id), Measure::ItemsSold) => format!("{} sold", name(id)),
        (_, m) if query.by == By::Item && m == Measure::Revenue => "revenue of the sales that included each item".to_owned(),
        (_, m) => m.noun().to_owned(),
    };
    let label = |key: &str| match query.by {
        By::Item => name(key),
        By::HourOfDay => key.parse::<u32>().map_or_else(|_| key.to_owned(), |h| format!("{h:02}:00–{:02}:00 UTC", (h + 1) % 24)),
        By::Weekday => capitalised(key),
        By::Day | By::None => key.to_owned(),
    };
    let show = |v: &Value| shown(v, query.measure);
    let (most, least) = if query.measure == Measure::Orders { ("most", "fewest") } else { ("highest", "lowest") };
    match (query.top.or(query.bottom), rows) {
        (_, []) => format!("There is no {subject} to report {range}: no order in that period has the figures it needs."),
        (None, [row]) if query.by == By::None => capitalised(&format!("{subject} {range}: {}.", show(&row.value))),
        (Some(1), [row, ..]) => {
            let top = query.top.is_some();
            if query.by == By::Item && query.measure == Measure::ItemsSold {
                format!("{} sold {} {range}: {}.", label(&row.key), if top { "most" } else { "least" }, show(&row.value))
            } else {
                format!("{} had the {} {subject} {range}: {}.", capitalised(&label(&row.key)), if top { most } else { least }, show(&row.value))
            }
        }
        (n, rows) => {
            let listed: Vec<String> = rows.iter().take(8).map(|r| format!("{} {}", label(&r.key), show(&r.value))).collect();
            let more = if rows.len() > 8 { format!(" and {} more", rows.len() - 8) } else { String::new() };
            let head = match (n, query.top.is_some()) {
                (Some(n), true) => format!("Top {n} by {subject} {range}"),
                (Some(n), false) => format!("Bottom {n} by {subject} {range}"),
                (None, _) => capitalised(&format!("{subject} {range}")),
            };
            format!("{head}: {}{more}.", listed.join(", "))
        }
    }
}

// ---- Anomalies. ----

/// A point of a series the detectors agree is unusual.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub key: String,
    pub value: f64,
    /// The median of the same position in earlier periods, else of the whole series.
    pub expected: f64,
    pub detectors: Vec<&'static str>,
}

/// Below this many points nothing is flagged: too little to know what is usual.
const MIN_SERIES: usize = 8;
/// A robust z-score above this is unusual (Iglewicz and Hoaglin's cut-off).
const MAX_Z: f64 = 3.5;
/// Tukey's "far out" fences: this many interquartile ranges beyond the quartiles.
const FENCE: f64 = 3.0;

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

/// The `q` quantile of sorted values, interpolated; 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else { return 0.0 };
    let pos = q * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A robust standard deviation: 1.4826 times the median absolute deviation, or (when over half
/// the points sit on the centre) 1.2533 times the mean absolute deviation.
fn spread(xs: &[f64], center: f64) -> f64 {
    let dev: Vec<f64> = xs.iter().map(|x| (x - center).abs()).collect();
    let mad = median(&dev);
    if mad > 0.0 {
        1.4826 * mad
    } else if dev.is_empty() {
        0.0
    } else {
        1.2533 * dev.iter().sum::<f64>() / dev.len() as f64
    }
}

/// Anomaly flags on a series (daily revenue, in order) from an ensemble of robust detectors:
/// `mad` (robust z-score above 3.5), `tukey` (outside Q1 - 3 IQR, Q3 + 3 IQR) and `seasonal`
/// (the point against the median of the same position in its earlier periods of `period`
/// points, 7 for weekly seasonality in daily data, with a robust z-score of those residuals;
/// only with at least 2 earlier periods). A point is flagged when at least 2 agree, so a quiet
/// weekend, unusual to the first detector alone, is not. Fewer than 8 points: no flags.
pub fn anomalies(series: &[(String, f64)], period: usize) -> Vec<Anomaly> {
    if series.len() < MIN_SERIES {
        return Vec::new();
    }
    let xs: Vec<f64> = series.iter().map(|(_, x)| *x).collect();
    let center = median(&xs);
    let scale = spread(&xs, center);
    let mut sorted = xs.clone();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
    let (low, high) = (q1 - FENCE * (q3 - q1), q3 + FENCE * (q3 - q1));
    let seasonal: Vec<Option<f64>> = (0..xs.len())
        .map(|i| {
            if period == 0 {
                return None;
            }
            let earlier: Vec<f64> = (1..).map_while(|k: usize| k.checked_mul(period).and_then(|p| i.checked_sub(p))).map(|j| xs[j]).collect();
            if earlier.len() >= 2 { Some(median(&earlier)) } else { None }
        })
        .collect();
    let residuals: Vec<f64> = xs.iter().zip(&seasonal).filter_map(|(x, e)| e.map(|e| x - e)).collect();
    let r_center = median(&residuals);
    let r_scale = spread(&residuals, r_center);
    let mut out = Vec::new();
    for ((key, x), expected) in series.iter().zip(&seasonal) {
        let mut detectors = Vec::new();
        if scale > 0.0 && (x - center).abs() / scale > MAX_Z {
            detectors.push("mad");
        }
        if !(low..=high).contains(x) {
            detectors.push("tukey");
        }
        if let Some(e) = expected
            && r_scale > 0.0
            && ((x - e) - r_center).abs() / r_scale > MAX_Z
        {
            detectors.push("seasonal");
        }
        if detectors.len() >= 2 {
            out.push(Anomaly { key: key.clone(), value: *x, expected: expected.unwrap_or(center), detectors });
        }
    }
    out
}

// ---- The frozen synthetic sales. ----

/// xorshift64: small, deterministic, enough for made-up sales.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with the given weights.
    fn pick(&mut self, weights: &[u64]) -> usize {
        let mut r = self.next_u64() % weights.iter().sum::<u64>().max(1);
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        0
    }
}

/// The day, this many days before `now_ms`'s, that has four times its usual orders.
pub const PLANTED_DAYS_AGO: i64 = 15;
/// Orders an hour from 06:00 to 18:00 UTC, relatively: the breakfast and lunch rushes.
const HOUR_WEIGHTS: [u64; 13] = [2, 8, 10, 7, 4, 4, 8, 7, 4, 3, 3, 2, 1];

/// How often an item of the default menu is ordered, relatively.
fn popularity(id: &str) -> u64 {
    match id {
        "latte" => 14,
        "cappuccino" => 12,
        "flat-white" => 9,
        "americano" | "croissant" => 8,
        "espresso" | "cold-brew" => 6,
        "mocha" | "blueberry-muffin" => 5,
        "chai-latte" | "matcha-latte" | "banana-bread" => 4,
        "avocado-toast" => 2,
        _ => 3,
    }
}

/// The frozen synthetic sales the evaluation runs on: the 60 days up to `now_ms` (today until
/// now), drawn by a xorshift generator seeded by `seed`. About 80 orders a weekday and 55 a
/// weekend day, busier at 07–09 and 12–13 UTC; items of the default menu at their cheapest
/// size's price; 30% paid in crypto, a tenth of which fail their payment (cancelled by the
/// system), and 2% cancelled by their customers; preparation starts and ends a few minutes
/// after placing, later in the rushes. One planted anomaly: the day [`PLANTED_DAYS_AGO`] has
/// four times the orders.
pub fn synthetic_facts(seed: u64, now_ms: i64) -> Vec<OrderFacts> {
    let mut rng = Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1);
    let menu = gocoffee_core::menu::default_menu();
    let weights: Vec<u64> = menu.iter().map(|m| popularity(&m.id)).collect();
    let prices: Vec<u64> = menu.iter().map(|m| m.sizes.iter().map(|s| s.price_cents.0).min().unwrap_or(0)).collect();
    let today = now_ms.div_euclid(DAY_MS);
    let mut facts = Vec::new();
    for day in today - 59..=today {
        let base = if weekday(day) >= 5 { 55.0 } else { 80.0 };
        let mut orders = (base * (0.9 + 0.2 * rng.unit())) as u64;
        if day == today - PLANTED_DAYS_AGO {
            orders *= 4;
        }
        for _ in 0..orders {
            let hour = 6 + rng.pick(&HOUR_WEIGHTS) as i64;
            let placed = day * DAY_MS + hour * HOUR_MS + (rng.next_u64() % HOUR_MS as u64) as i64;
            let mut items: Vec<ItemCount> = Vec::new();
            for _ in 0..1 + rng.pick(&[70, 22, 8]) {
                let k = rng.pick(&weights);
                let quantity = 1 + rng.pick(&[85, 12, 3]) as u32;
                let Some(m) = menu.get(k) else { continue };
                match items.iter_mut().find(|i| i.item_id == m.id) {
                    Some(i) => i.quantity += quantity,
                    None => items.push(ItemCount { item_id: m.id.clone(), name: m.name.clone(), quantity }),
                }
            }
            let total_cents = items
                .iter()
                .map(|i| u64::from(i.quantity) * menu.iter().position(|m| m.id == i.item_id).and_then(|k| prices.get(k).copied()).unwrap_or(0))
                .sum();
            let crypto = rng.unit() < 0.30;
            let payment_failed = crypto && rng.unit() < 0.10;
            let cancelled = payment_failed || rng.unit() < 0.02;
            let rush = matches!(hour, 7 | 8 | 12 | 13);
            let queue = 20_000 + (rng.next_u64() % if rush { 300_000 } else { 100_000 }) as i64;
            let making = 60_000 + (rng.next_u64() % if rush { 240_000 } else { 150_000 }) as i64;
            let collect = 30_000 + (rng.next_u64() % 240_000) as i64;
            if placed >= now_ms {
                continue;
            }
            let by_now = |at: i64| if at < now_ms { Some(at) } else { None };
            let (started, ready, completed, cancelled_at) = if cancelled {
                (None, None, None, by_now(placed + if payment_failed { 900_000 } else { queue }))
            } else {
                (by_now(placed + queue), by_now(placed + queue + making), by_now(placed + queue + making + collect), None)
            };
            let paid = crypto && !payment_failed;
            // placed, payment requested and paid (crypto), confirmed, then each step that happened
            let version = 1
                + u64::from(crypto)
                + u64::from(paid)
                + u64::from(!cancelled)
                + [started, ready, completed, cancelled_at].iter().filter(|t| t.is_some()).count() as u64;
            facts.push(OrderFacts {
                order_id: format!("syn-{}", facts.len() + 1),
                version,
                placed_at_ms: placed,
                total_cents,
                items,
                crypto,
                paid,
                started_at_ms: started,
                ready_at_ms: ready,
                completed_at_ms: completed,
                cancelled_at_ms: cancelled_at,
                payment_failed,
                refunded: false,
            });
        }
    }
    facts.sort_by(|a, b| a.placed_at_ms.cmp(&b.placed_at_ms).then_with(|| a.order_id.cmp(&b.order_id)));
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-25T15:00:00Z, a Wednesday (the evaluation's now).
    const NOW: i64 = 1_795_618_800_000;
    /// Its midnight.
    const T0: i64 = 1_795_564_800_000;
    const MIN: i64 = 60_000;

    fn menu() -> Vec<(String, String)> {
        gocoffee_core::menu::default_menu().into_iter().map(|m| (m.id, m.name)).collect()
    }

    fn ask(question: &str) -> Result<Query, String> {
        let menu = menu();
        let items: Vec<(&str, &str)> = menu.iter().map(|(id, name)| (id.as_str(), name.as_str())).collect();
        parse(question, &items)
    }

    fn query(measure: Measure, by: By, range: Range) -> Query {
        Query { measure, by, range, top: None, bottom: None, item: None }
    }

    #[derive(Deserialize)]
    struct Case {
        split: String,
        question: String,
        query: Query,
    }

    #[test]
    fn every_label_reads_and_validates_and_the_dev_questions_parse_to_their_labels() {
        let cases: Vec<Case> = serde_json::from_str(include_str!("../../../bench/ai-eval/analytics.json")).expect("the evaluation set");
        let menu = menu();
        let ids: Vec<&str> = menu.iter().map(|(id, _)| id.as_str()).collect();
        for c in &cases {
            assert_eq!(c.query.validate(&ids), Ok(()), "{}", c.question);
        }
        for c in cases.iter().filter(|c| c.split == "dev") {
            assert_eq!(ask(&c.question), Ok(c.query.clone()), "{}", c.question);
        }
    }

    #[test]
    fn questions_become_queries_with_the_documented_defaults() {
        let top = |mut q: Query, n: u32| {
            q.top = Some(n);
            q
        };
        let bottom = |mut q: Query, n: u32| {
            q.bottom = Some(n);
            q
        };
        let item = |mut q: Query, id: &str| {
            q.item = Some(id.into());
            q
        };
        let cases = [
            ("what sold most", top(query(Measure::ItemsSold, By::Item, Range::Last30Days), 1)),
            ("when are we busiest", top(query(Measure::Orders, By::HourOfDay, Range::Last30Days), 1)),
            ("which day of the week is quietest", bottom(query(Measure::Orders, By::Weekday, Range::Last30Days), 1)),
            ("best sellers last week", top(query(Measure::ItemsSold, By::Item, Range::LastWeek), 5)),
            ("top three products this month", top(query(Measure::ItemsSold, By::Item, Range::ThisMonth), 3)),
            ("how many capucinos last month", item(query(Measure::ItemsSold, By::None, Range::LastMonth), "cappuccino")),
            ("how many muffins did we sell in the past week", item(query(Measure::ItemsSold, By::None, Range::Last7Days), "blueberry-muffin")),
            ("matcha latte sales yesterday", item(query(Measure::Revenue, By::None, Range::Yesterday), "matcha-latte")),
            ("how much did we take yesterday", query(Measure::Revenue, By::None, Range::Yesterday)),
            ("what's our aov", query(Measure::AverageOrderValue, By::None, Range::Last30Days)),
            ("which hour is slowest for prep", top(query(Measure::AveragePreparation, By::HourOfDay, Range::Last30Days), 1)),
            ("how long do drinks take to make", query(Measure::AveragePreparation, By::None, Range::Last30Days)),
            ("footfall today", query(Measure::Orders, By::None, Range::Today)),
            ("how busy were we yesterday", query(Measure::Orders, By::None, Range::Yesterday)),
        ];
        for (question, want) in cases {
            assert_eq!(ask(question), Ok(want), "{question}");
        }
        for nonsense in ["sing me a song about penguins", "hello", "", "revenue this year", "sales next week", "top 100 items"] {
            assert!(ask(nonsense).is_err(), "{nonsense:?} should not parse: {:?}", ask(nonsense));
        }
    }

    #[test]
    fn validate_rejects_what_the_executor_cannot_answer() {
        let ids = ["latte", "mocha"];
        let ok = Query { top: Some(3), ..query(Measure::ItemsSold, By::Item, Range::Today) };
        assert_eq!(ok.validate(&ids), Ok(()));
        let bad = [
            Query { bottom: Some(1), ..ok.clone() },
            Query { top: Some(0), ..ok.clone() },
            Query { top: Some(MAX_RANK + 1), ..ok.clone() },
            Query { top: Some(1), ..query(Measure::Revenue, By::None, Range::Today) },
            query(Measure::AverageWait, By::Item, Range::Today),
            Query { item: Some("latte".into()), ..query(Measure::CancellationRate, By::None, Range::Today) },
            Query { item: Some("latte".into()), ..query(Measure::Orders, By::Item, Range::Today) },
            Query { item: Some("pizza".into()), ..query(Measure::Orders, By::None, Range::Today) },
        ];
        for q in bad {
            assert!(q.validate(&ids).is_err(), "{q:?}");
        }
        let json = r#"{"measure": "revenue", "by": "none", "range": "last_7_days", "limit": 3}"#;
        assert!(serde_json::from_str::<Query>(json).is_err(), "unknown fields are refused");
        let q: Query = serde_json::from_str(r#"{"measure": "revenue", "by": "day", "range": "last_30_days"}"#).expect("a query");
        assert_eq!(q, query(Measure::Revenue, By::Day, Range::Last30Days));
    }

    #[test]
    fn windows_follow_the_calendar() {
        let day = DAY_MS;
        assert_eq!(window(Range::Today, NOW), (T0, NOW));
        assert_eq!(window(Range::Yesterday, NOW), (T0 - day, T0));
        assert_eq!(window(Range::ThisWeek, NOW), (T0 - 2 * day, NOW), "Monday 23rd");
        assert_eq!(window(Range::LastWeek, NOW), (T0 - 9 * day, T0 - 2 * day));
        assert_eq!(window(Range::Last7Days, NOW), (NOW - 7 * day, NOW));
        assert_eq!(window(Range::Last30Days, NOW), (NOW - 30 * day, NOW));
        assert_eq!(window(Range::ThisMonth, NOW), (1_793_491_200_000, NOW));
        assert_eq!(window(Range::LastMonth, NOW), (1_790_812_800_000, 1_793_491_200_000));
        // 2027-01-10T09:00Z, a Sunday: last month is December, this week began on the 4th.
        let jan = 1_799_571_600_000;
        assert_eq!(window(Range::LastMonth, jan), (1_796_083_200_000, 1_798_761_600_000));
        assert_eq!(window(Range::ThisWeek, jan), (1_799_020_800_000, jan));
        assert_eq!([date(20_782), date(19_782), date(-1), date(0)], ["2026-11-25", "2024-02-29", "1969-12-31", "1970-01-01"]);
        assert_eq!(weekday(20_782), 2);
        for d in -800_000..800_000 {
            let (y, m, dd) = civil(d * 7 + 3);
            assert_eq!(days_from_civil(y, m, dd), d * 7 + 3);
        }
    }

    fn fact(id: &str, placed: i64, items: &[(&str, &str, u32)], total_cents: u64) -> OrderFacts {
        OrderFacts {
            order_id: id.into(),
            version: 1,
            placed_at_ms: placed,
            total_cents,
            items: items.iter().map(|(i, name, quantity)| ItemCount { item_id: (*i).into(), name: (*name).into(), quantity: *quantity }).collect(),
            crypto: false,
            paid: false,
            started_at_ms: None,
            ready_at_ms: None,
            completed_at_ms: None,
            cancelled_at_ms: None,
            payment_failed: false,
            refunded: false,
        }
    }

    /// Today: a at 08:10 (two lattes and an espresso, made); b at 08:30 (an espresso, cancelled);
    /// c at 09:05 (a crypto latte whose payment failed); d at 09:20 (a crypto mocha, ready with
    /// no recorded start); e at 11:00 (a latte and a croissant, made). And one yesterday.
    fn day_of_orders() -> Vec<OrderFacts> {
        const LATTE: (&str, &str) = ("latte", "Caffè Latte");
        let at = |h: i64, m: i64| T0 + h * 60 * MIN + m * MIN;
        let mut a = fact("a", at(8, 10), &[(LATTE.0, LATTE.1, 2), ("espresso", "Espresso", 1)], 1100);
        (a.started_at_ms, a.ready_at_ms) = (Some(at(8, 11)), Some(at(8, 14)));
        let mut b = fact("b", at(8, 30), &[("espresso", "Espresso", 1)], 250);
        b.cancelled_at_ms = Some(at(8, 31));
        let mut c = fact("c", at(9, 5), &[(LATTE.0, LATTE.1, 1)], 400);
        (c.crypto, c.payment_failed, c.cancelled_at_ms) = (true, true, Some(at(9, 20)));
        let mut d = fact("d", at(9, 20), &[("mocha", "Caffè Mocha", 1)], 450);
        (d.crypto, d.paid, d.ready_at_ms) = (true, true, Some(at(9, 25)));
        let mut e = fact("e", at(11, 0), &[(LATTE.0, LATTE.1, 1), ("croissant", "Butter Croissant", 1)], 725);
        (e.started_at_ms, e.ready_at_ms) = (Some(at(11, 1)), Some(at(11, 3)));
        let old = fact("old", T0 - 14 * 60 * MIN, &[(LATTE.0, LATTE.1, 5)], 2000);
        vec![a, b, c, d, e, old]
    }

    fn rows(q: &Query) -> Vec<(String, Value)> {
        execute(q, &day_of_orders(), NOW).rows.into_iter().map(|r| (r.key, r.value)).collect()
    }

    fn one(q: &Query) -> Value {
        let rows = rows(q);
        assert_eq!(rows.len(), 1, "{q:?}: {rows:?}");
        rows[0].1.clone()
    }

    #[test]
    fn figures_over_a_day_of_orders() {
        let today = |m: Measure| query(m, By::None, Range::Today);
        assert_eq!(one(&today(Measure::Revenue)), Value::Cents(2275), "a, d and e stayed sales; the old order is out of range");
        assert_eq!(execute(&today(Measure::Revenue), &day_of_orders(), NOW).summary, "Revenue today: $22.75.");
        assert_eq!(one(&today(Measure::Orders)), Value::Count(5));
        assert_eq!(one(&today(Measure::ItemsSold)), Value::Count(6));
        assert_eq!(one(&today(Measure::AverageOrderValue)), Value::Cents(758), "2275 / 3, rounded down");
        assert_eq!(one(&today(Measure::AveragePreparation)), Value::Millis(150_000));
        assert_eq!(one(&today(Measure::AverageWait)), Value::Millis(240_000));
        assert_eq!(one(&today(Measure::CancellationRate)), Value::Ratio(0.4));
        assert_eq!(one(&today(Measure::PaymentFailureRate)), Value::Ratio(0.5));
        assert_eq!(one(&today(Measure::CryptoShare)), Value::Ratio(0.4));
        let latte = |m: Measure| Query { item: Some("latte".into()), ..today(m) };
        assert_eq!(one(&latte(Measure::ItemsSold)), Value::Count(3));
        assert_eq!(one(&latte(Measure::Orders)), Value::Count(3), "a, c and e held a latte");
        assert_eq!(one(&latte(Measure::Revenue)), Value::Cents(1825), "the sales that included one: a and e");
        let empty = execute(&today(Measure::AverageWait), &[], NOW);
        assert!(empty.rows.is_empty() && empty.summary.starts_with("There is no average wait"), "{}", empty.summary);
    }

    #[test]
    fn rankings_and_splits() {
        let best = Query { top: Some(1), ..query(Measure::ItemsSold, By::Item, Range::Today) };
        let answer = execute(&best, &day_of_orders(), NOW);
        assert_eq!(answer.rows, [Row { key: "latte".into(), value: Value::Count(3) }]);
        assert_eq!(answer.summary, "Caffè Latte sold most today: 3 units.");
        let count = |key: &str, n: u64| (key.to_owned(), Value::Count(n));
        let worst = Query { top: None, bottom: Some(2), ..best.clone() };
        assert_eq!(rows(&worst), [count("croissant", 1), count("espresso", 1)], "ties by key");
        let hourly = query(Measure::Orders, By::HourOfDay, Range::Today);
        assert_eq!(rows(&hourly), [count("08", 2), count("09", 2), count("10", 0), count("11", 1)], "an empty hour inside the day shows");
        assert_eq!(rows(&Query { bottom: Some(1), ..hourly.clone() }), [count("10", 0)]);
        assert_eq!(rows(&Query { top: Some(1), ..hourly.clone() }), [count("08", 2)]);
        let waits = query(Measure::AverageWait, By::HourOfDay, Range::Today);
        let keys: Vec<String> = rows(&waits).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["08", "09", "11"], "an average leaves an hour without ready orders out");
        let week = query(Measure::Orders, By::Weekday, Range::ThisWeek);
        assert_eq!(rows(&week), [count("monday", 0), count("tuesday", 1), count("wednesday", 5)]);
        let days = query(Measure::Revenue, By::Day, Range::ThisWeek);
        let cents = |d: &str, c: u64| (d.to_owned(), Value::Cents(c));
        assert_eq!(rows(&days), [cents("2026-11-23", 0), cents("2026-11-24", 2000), cents("2026-11-25", 2275)]);
        let json = serde_json::to_value(Value::Cents(250)).expect("json");
        assert_eq!(json, serde_json::json!({ "unit": "cents", "value": 250 }));
    }

    /// A made-up series around `level` with small deterministic noise in [-5, 5].
    fn noisy(n: usize, level: impl Fn(usize) -> f64) -> Vec<(String, f64)> {
        (0..n).map(|i| (i.to_string(), level(i) + ((i * 37) % 11) as f64 - 5.0)).collect()
    }

    #[test]
    fn anomalies_flag_a_spike_and_nothing_in_noise() {
        assert!(anomalies(&noisy(28, |_| 100.0), 7).is_empty());
        // Weekends are quieter: unusual to the median alone, not to the ensemble.
        let mut weekly = noisy(28, |i| if i % 7 >= 5 { 60.0 } else { 100.0 });
        assert!(anomalies(&weekly, 7).is_empty());
        weekly[17].1 = 400.0;
        let flags = anomalies(&weekly, 7);
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!((flags[0].key.as_str(), flags[0].value, flags[0].expected), ("17", 400.0, 99.0));
        assert_eq!(flags[0].detectors, ["mad", "tukey", "seasonal"]);
        assert!(anomalies(&weekly[10..17], 7).is_empty(), "too short to judge");
    }

    #[test]
    fn synthetic_sales_are_frozen_and_hold_one_planted_anomaly() {
        let facts = synthetic_facts(7, NOW);
        assert_eq!(facts, synthetic_facts(7, NOW));
        assert_ne!(facts, synthetic_facts(8, NOW));
        assert!((3500..6000).contains(&facts.len()), "{}", facts.len());
        assert!(facts.iter().all(|f| (NOW - 60 * DAY_MS..NOW).contains(&f.placed_at_ms) && !f.items.is_empty()));
        let cancelled = facts.iter().filter(|f| f.cancelled_at_ms.is_some()).count() as f64 / facts.len() as f64;
        assert!((0.02..0.09).contains(&cancelled), "{cancelled}");
        let from = (NOW.div_euclid(DAY_MS) - 55) * DAY_MS;
        let days = gocoffee_core::analytics::sales(&facts, from, NOW, gocoffee_core::analytics::Bucket::Day);
        let series: Vec<(String, f64)> = days.iter().map(|d| (date(d.start_ms.div_euclid(DAY_MS)), d.revenue_cents as f64)).collect();
        let flagged: Vec<String> = anomalies(&series, 7).into_iter().map(|a| a.key).collect();
        assert_eq!(flagged, [date(NOW.div_euclid(DAY_MS) - PLANTED_DAYS_AGO)]);
    }
}

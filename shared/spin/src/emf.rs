//! A `metrics` recorder for one component invocation that writes what was recorded as CloudWatch
//! Embedded Metric Format lines, the format the Lambda shell writes with
//! `metrics_cloudwatch_embedded`. That crate doesn't build for 32-bit targets such as
//! `wasm32-wasip2` (it implements the facade's traits on `std`'s `AtomicU64`, and `metrics` uses
//! `portable_atomic`'s there), so components use this small one: counters and histograms, which
//! is all the app records, one document per label set.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::atomics::AtomicU64;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{Map, Value, json};

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(value);
    }
}

enum Series {
    Counter(Arc<AtomicU64>),
    Histogram(Arc<Values>),
}

#[derive(Default)]
pub struct EmfRecorder {
    namespace: &'static str,
    units: Mutex<BTreeMap<String, Unit>>,
    series: Mutex<BTreeMap<Key, Series>>,
}

impl EmfRecorder {
    pub fn new(namespace: &'static str) -> EmfRecorder {
        EmfRecorder { namespace, ..Default::default() }
    }

    /// Writes one EMF document per label set for what was recorded since the last flush.
    pub fn flush(&self, now_ms: i64, mut out: impl std::io::Write) -> std::io::Result<()> {
        let units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut documents: BTreeMap<Vec<(String, String)>, (Vec<Value>, Map<String, Value>)> = BTreeMap::new();
        for (key, series) in series.iter() {
            let value = match series {
                Series::Counter(c) => match c.swap(0, Ordering::Relaxed) {
                    0 => continue,
                    n => json!(n),
                },
                Series::Histogram(h) => match std::mem::take(&mut *h.0.lock().unwrap_or_else(PoisonError::into_inner)) {
                    v if v.is_empty() => continue,
                    v => json!(v),
                },
            };
            let labels: Vec<(String, String)> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            let (metrics, values) = documents.entry(labels).or_default();
            let mut metric = json!({ "Name": key.name() });
            if let Some(unit) = units.get(key.name()).and_then(|u| unit_name(*u)) {
                metric["Unit"] = json!(unit);
            }
            metrics.push(metric);
            values.insert(key.name().to_owned(), value);
        }
        for (labels, (metrics, mut document)) in documents {
            let dimensions: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            document.insert(
                "_aws".into(),
                json!({ "Timestamp": now_ms, "CloudWatchMetrics": [{ "Namespace": self.namespace, "Dimensions": [dimensions], "Metrics": metrics }] }),
            );
            for (k, v) in &labels {
                document.insert(k.clone(), json!(v));
            }
            serde_json::to_writer(&mut out, &document)?;
            writeln!(out)?;
        }
        Ok(())
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.units.lock().unwrap_or_else(PoisonError::into_inner).insert(key.as_str().to_owned(), unit);
        }
    }
}

/// The units CloudWatch knows by these names.
fn unit_name(unit: Unit) -> Option<&'static str> {
    Some(match unit {
        Unit::Count => "Count",
        Unit::Percent => "Percent",
        Unit::Seconds => "Seconds",
        Unit::Milliseconds => "Milliseconds",
        Unit::Microseconds => "Microseconds",
        Unit::Bytes => "Bytes",
        _ => return None,
    })
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        match series.entry(key.clone()).or_insert_with(|| Series::Counter(Arc::default())) {
            Series::Counter(c) => Counter::from_arc(c.clone()),
            Series::Histogram(_) => Counter::noop(),
        }
    }

    /// The app records no gauges; a component lives for one invocation, too short for one.
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        match series.entry(key.clone()).or_insert_with(|| Series::Histogram(Arc::default())) {
            Series::Histogram(h) => Histogram::from_arc(h.clone()),
            Series::Counter(_) => Histogram::noop(),
        }
    }
}

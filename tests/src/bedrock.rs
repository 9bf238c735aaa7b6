//! Amazon Bedrock Runtime played on a local port (moto has no Bedrock): Converse and InvokeModel
//! as Bedrock's wire protocol has them, errors included (`x-amzn-errortype` and a `message`
//! body), for the adapters' tests and the AI Lambda's.

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

/// One request as the server saw it.
pub struct Seen {
    pub path: String,
    /// Lower case.
    pub headers: String,
    pub body: Value,
}

/// A Bedrock Runtime stand-in on a free port. Converse answers by model id: `throttled` (429),
/// `denied` (403), `slow` (after 2 s), `filtered` (stopped by the content filter), anything else
/// an answer citing the first passage it was given. InvokeModel answers Titan's shape, with a
/// vector made from the text (so equal texts give equal vectors).
pub fn stand_in() -> (String, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let (head, body) = crate::read_request(&stream);
                let headers = head.to_ascii_lowercase();
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let (status, error, answer) = answer(&path, &body);
                let _ = tx.send(Seen { path, headers, body });
                let error = error.map(|e| format!("x-amzn-errortype: {e}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\n")).unwrap_or_default();
                let answer = answer.to_string();
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{error}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    (url, rx)
}

fn answer(path: &str, body: &Value) -> (u16, Option<&'static str>, Value) {
    let model = path.trim_start_matches("/model/").split('/').next().unwrap_or_default();
    if path.ends_with("/invoke") {
        let text = body["inputText"].as_str().unwrap_or_default();
        let raw = [text.len() as f64, text.matches('a').count() as f64 + 1.0, text.split_whitespace().count() as f64];
        let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
        return (200, None, json!({ "embedding": raw.iter().map(|x| x / norm).collect::<Vec<_>>(), "inputTextTokenCount": text.split_whitespace().count() }));
    }
    match model {
        "throttled" => (429, Some("ThrottlingException"), json!({ "message": "Too many requests, please wait before trying again." })),
        "denied" => (403, Some("AccessDeniedException"), json!({ "message": "You don't have access to the model with the specified model ID." })),
        "slow" => {
            std::thread::sleep(Duration::from_secs(2));
            (200, None, json!({}))
        }
        _ => {
            let stop = if model == "filtered" { "content_filtered" } else { "end_turn" };
            let system = body["system"][0]["text"].as_str().unwrap_or_default();
            let cited = system.split('[').nth(1).and_then(|s| s.split(']').next()).unwrap_or("none");
            let text = format!("Here you are. [{cited}]");
            (
                200,
                None,
                json!({
                    "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
                    "stopReason": stop,
                    "usage": { "inputTokens": 41, "outputTokens": 5, "totalTokens": 46 },
                    "metrics": { "latencyMs": 12 }
                }),
            )
        }
    }
}

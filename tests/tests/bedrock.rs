//! The Bedrock adapters against a local server speaking Bedrock Runtime's wire protocol
//! ([`gocoffee_tests::bedrock`]; moto has no Converse): the real SDK client signs and sends, the
//! server checks what arrives and answers as Bedrock does, errors included.

use std::time::Duration;

use gocoffee_ai::aws::{BedrockModel, TITAN_EMBED_V2, TitanEmbedder};
use gocoffee_ai::guard::{Guard, MemoryLedger, Policy};
use gocoffee_ai::model::{Embedder, LanguageModel, Limits, ModelError, Prompt, Source, Speaker, Turn};
use gocoffee_app::ports::SystemClock;
use gocoffee_tests::bedrock::{Seen, stand_in};

fn client(url: &str) -> aws_sdk_bedrockruntime::Client {
    let vars = [("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_ENDPOINT_URL", url)];
    let env = gocoffee_aws::AwsEnvironment::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).expect("environment");
    aws_sdk_bedrockruntime::Client::new(&env.sdk_config())
}

/// The same client without the SDK's retries, so that each call is one request (a retried
/// throttle backs off past a short timeout, which is then what the call reports).
fn client_without_retries(url: &str) -> aws_sdk_bedrockruntime::Client {
    let config = client(url).config().to_builder().retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled()).build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

fn prompt() -> Prompt {
    Prompt {
        system: "Answer from the passages and cite one.".into(),
        history: vec![Turn { speaker: Speaker::User, text: "hi".into() }, Turn { speaker: Speaker::Assistant, text: "Hello!".into() }],
        request: "When do you open on Sunday?".into(),
        context: vec![Source { id: "hours".into(), title: "Opening hours".into(), text: "Sunday 8am to 4pm.".into() }],
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

#[test]
fn converse_sends_the_passages_as_system_text_and_the_session_as_messages() {
    let (url, seen) = stand_in();
    let model = BedrockModel::new(client(&url), "anthropic.claude-3-haiku-20240307-v1:0");
    let limits = Limits { max_tokens: 120, timeout: Duration::from_secs(5), temperature: 0.1 };
    let answer = run(model.generate(&prompt(), &limits)).expect("answer");
    assert_eq!(answer.text, "Here you are. [hours]");
    assert_eq!((answer.prompt_tokens, answer.completion_tokens), (41, 5), "the usage Bedrock reports");
    assert_eq!(answer.model, "anthropic.claude-3-haiku-20240307-v1:0");
    let request = seen.recv_timeout(Duration::from_secs(5)).expect("sent");
    assert_eq!(request.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "the model id is a URI label");
    assert!(request.headers.contains("authorization: aws4-hmac-sha256 credential=test/"), "signed: {}", request.headers);
    assert!(request.headers.contains("/bedrock/aws4_request"), "signed for bedrock: {}", request.headers);
    let body = request.body;
    assert!(body["system"][0]["text"].as_str().expect("system").contains("[hours] Opening hours: Sunday 8am to 4pm."), "{body}");
    let roles: Vec<&str> = body["messages"].as_array().expect("messages").iter().map(|m| m["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(body["messages"][2]["content"][0]["text"], "When do you open on Sunday?");
    assert_eq!(body["inferenceConfig"]["maxTokens"], 120);
    assert!((body["inferenceConfig"]["temperature"].as_f64().expect("temperature") - 0.1).abs() < 1e-6);
}

#[test]
fn bedrock_errors_become_the_ports_errors_and_open_the_breaker() {
    let (url, seen) = stand_in();
    let limits = Limits { max_tokens: 50, timeout: Duration::from_millis(500), temperature: 0.0 };
    let c = client_without_retries(&url);
    let denied = run(BedrockModel::new(c.clone(), "denied").generate(&prompt(), &limits)).expect_err("denied");
    assert!(matches!(&denied, ModelError::NotSupported(m) if m.contains("don't have access")), "{denied:?}");
    let filtered = run(BedrockModel::new(c.clone(), "filtered").generate(&prompt(), &limits)).expect_err("filtered");
    assert!(matches!(filtered, ModelError::InvalidInput(_)), "{filtered:?}");
    let started = std::time::Instant::now();
    let slow = run(BedrockModel::new(c.clone(), "slow").generate(&prompt(), &limits)).expect_err("slow");
    assert_eq!(slow, ModelError::Timeout);
    assert!(started.elapsed() < Duration::from_millis(1_500), "given up at the timeout: {:?}", started.elapsed());
    while seen.try_recv().is_ok() {}

    // Throttled three times: the breaker opens, and the fourth call never reaches Bedrock.
    let throttled = BedrockModel::new(c, "throttled");
    let policy = Policy { breaker_failures: 3, timeout: Duration::from_secs(30), ..Policy::default() };
    let ledger = MemoryLedger::default();
    let guard = Guard { ledger: &ledger, policy: &policy, clock: &SystemClock };
    for _ in 0..3 {
        assert_eq!(run(guard.generate(&throttled, &prompt(), &limits)).expect_err("throttled"), ModelError::Throttled);
    }
    assert_eq!(seen.try_iter().count(), 3, "each call reached Bedrock");
    assert_eq!(run(guard.generate(&throttled, &prompt(), &limits)).expect_err("open"), ModelError::CircuitOpen);
    assert_eq!(seen.try_iter().count(), 0, "the open breaker sends nothing");
}

#[test]
fn titan_embeds_each_text_once_per_container() {
    let (url, seen) = stand_in();
    let embedder = TitanEmbedder::new(client(&url), TITAN_EMBED_V2, Some(256), Duration::from_secs(5));
    let texts: Vec<String> = ["a flat white", "an oat latte", "a flat white"].map(String::from).to_vec();
    let first = run(embedder.embed(&texts)).expect("embeddings");
    assert_eq!(first.vectors.len(), 3);
    assert_eq!(first.vectors[0], first.vectors[2]);
    assert_ne!(first.vectors[0], first.vectors[1]);
    assert_eq!(first.prompt_tokens, 6, "Titan's token counts, each distinct text once");
    let requests: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(requests.len(), 2, "one call per distinct text");
    for r in &requests {
        assert_eq!(r.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!((r.body["dimensions"].as_u64(), r.body["normalize"].as_bool()), (Some(256), Some(true)), "{}", r.body);
    }
    let again = run(embedder.embed(&texts[..2])).expect("embeddings");
    assert_eq!(again.vectors[..], first.vectors[..2]);
    assert_eq!((again.prompt_tokens, seen.try_iter().count()), (0, 0), "kept by the container");
}

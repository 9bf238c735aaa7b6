//! The AWS shell as Lambda runs it: the real bootstrap binaries under the Runtime API emulator,
//! on moto, fed the sample events in `events/` and real stream and queue batches.

use std::collections::HashSet;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::SqsEvent;
use base64::Engine as _;
use gocoffee_core::StoredEvent;
use gocoffee_tests::lambda::{LambdaStack, kinesis_record, select_route, sqs_record, template_routes};
use gocoffee_tests::terraform::{gzipped_objects, moto_json};
use gocoffee_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, workspace};
use serde_json::{Value, json};

fn sample(path: &str) -> Value {
    let p = workspace().join("events").join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).expect("json")
}

fn samples(dir: &str) -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(workspace().join("events").join(dir)).expect("events dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            (
                p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned(),
                sample(&format!("{dir}/{}", p.file_name().and_then(|n| n.to_str()).unwrap_or_default())),
            )
        })
        .collect()
}

/// The function and app route that `method path` reaches, if any.
fn app_route(method: &str, path: &str) -> Option<(&'static str, &'static gocoffee_app::Route)> {
    gocoffee_tests::routes().into_iter().find(|(_, r)| {
        r.method.as_str() == method && {
            let (t, p): (Vec<&str>, Vec<&str>) = (r.path.split('/').collect(), path.split('/').collect());
            t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| a.starts_with('{') || a == b)
        }
    })
}

#[test]
fn every_route_has_a_sample_api_gateway_event_that_its_function_answers() {
    let h = LambdaStack::start_with("samples", false);
    let routes = template_routes();
    // The account the login sample names (its register sample then meets a taken email: 409).
    h.register("ada@example.com");
    let mut covered = HashSet::new();
    for (name, event) in samples("http") {
        let typed: ApiGatewayV2httpRequest = serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: not an HTTP API event: {e}"));
        let method = typed.request_context.http.method.as_str().to_owned();
        let path = typed.raw_path.clone().expect("rawPath");
        // The event's routeKey is the template route API Gateway would choose for it.
        let route = select_route(&routes, &method, &path).unwrap_or_else(|| panic!("{name}: no route in the template"));
        let function = route.function.as_str();
        assert_eq!(event["routeKey"].as_str(), Some(route.key.as_str()), "{name}");
        // Behind the JWT authorizer, the event carries the claims it checked.
        let claims = &event["requestContext"]["authorizer"]["jwt"]["claims"];
        assert_eq!(claims.is_object(), route.authorized, "{name}: authorizer claims exactly where {} is authorized", route.key);
        if let Some((owner, r)) = app_route(&method, &path) {
            assert_eq!(owner, function, "{name}: routed to the function that owns {} {}", r.method, r.path);
            covered.insert((r.method.as_str(), r.path));
        }
        // With real tokens in place of the placeholders (fresh ones: logout and refresh use
        // theirs up), the function answers without a 5xx and past authentication.
        let admin = h.login(ADMIN_EMAIL, ADMIN_PASSWORD);
        let (access, refresh) = (admin.body["access_token"].as_str().expect("token"), admin.body["refresh_token"].as_str().expect("refresh"));
        // The stack's API issued the tokens: the event comes through it, as it would on AWS.
        let text = event
            .to_string()
            .replace("REPLACE_WITH_ACCESS_TOKEN", access)
            .replace("REPLACE_WITH_REFRESH_TOKEN", refresh)
            .replace("abcdef1234", gocoffee_tests::lambda::API_ID);
        let live: Value = serde_json::from_str(&text).expect("json");
        let response = h.function(function).invoke(&live).unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = response["statusCode"].as_u64().unwrap_or(0);
        assert!((200..500).contains(&status) && status != 401, "{name}: {status} {response}");
    }
    let missing: Vec<String> = gocoffee_tests::routes()
        .iter()
        .filter(|(_, r)| gocoffee_tests::on_aws(r) && !covered.contains(&(r.method.as_str(), r.path)))
        .map(|(_, r)| format!("{} {}", r.method, r.path))
        .collect();
    assert!(missing.is_empty(), "routes without a sample event in events/http: {missing:?}");
}

/// API Gateway's JWT authorizer, as the template configures it, checks tokens against what the
/// identity function publishes: a refused token gets the gateway's 401 and no function runs; an
/// accepted one reaches the function; public routes need none.
#[test]
fn the_jwt_authorizer_stops_a_bad_token_before_any_function_runs() {
    let h = LambdaStack::start_with("authorizer", false);
    let customer = h.register("authorizer@example.com");
    let orders = h.function("orders");
    let menu = h.function("menu");
    let unauthorized = |r: &gocoffee_tests::Reply, what: &str| {
        assert_eq!((r.status, &r.body), (401, &json!({"message": "Unauthorized"})), "{what}");
        assert!(r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("www-authenticate") && v.starts_with("Bearer")), "{what}: {:?}", r.headers);
    };
    // The claims as identity issued them, re-signed by the deployment's own key for another audience.
    let signer = h.token_signer(gocoffee_tests::DeploymentKey::Current).expect("the stack's KMS key");
    let header = gocoffee_tests::jwt_part(&customer, 0).expect("header");
    let mut claims = gocoffee_tests::jwt_part(&customer, 1).expect("claims");
    claims["aud"] = json!("another-api");
    let other_audience = gocoffee_tests::signed_token(&*signer, header, &gocoffee_tests::b64(claims.to_string().as_bytes()));

    let before = orders.invocations();
    unauthorized(&h.get("/api/v1/orders", None), "no token");
    unauthorized(&h.get("/api/v1/orders", Some("not-a-token")), "garbage");
    unauthorized(&h.get("/api/v1/orders", Some(&other_audience)), "another audience");
    assert_eq!(orders.invocations(), before, "a refused token reaches no function");
    assert_eq!(h.get("/api/v1/orders", Some(&customer)).status, 200);
    assert_eq!(orders.invocations(), before + 1, "an accepted token reaches the function");

    // Under a public prefix, reads are open and the writes openapi.yaml guards are not.
    let before = menu.invocations();
    assert_eq!(h.get("/api/v1/menu", None).status, 200);
    unauthorized(&h.post("/api/v1/menu/items", None, json!({"id": "x"})), "menu write, no token");
    assert_eq!(menu.invocations(), before + 1, "only the read reached the menu function");
    // A customer's valid token passes the gateway; the function still decides the role.
    assert_eq!(h.post("/api/v1/menu/items", Some(&customer), json!({"id": "x"})).status, 403);
}

#[test]
fn the_sample_stream_and_queue_batches_are_answered_with_batch_responses() {
    let h = LambdaStack::start_with("batches", false);
    let kinesis = sample("kinesis/order-events.json");
    let typed: KinesisEvent = serde_json::from_value(kinesis.clone()).expect("a Kinesis event");
    for record in &typed.records {
        let _: StoredEvent = serde_json::from_slice(&record.kinesis.data.0).expect("records carry order events");
    }
    let answer = h.function("order-consumer").invoke(&kinesis).expect("invoked");
    assert_eq!(answer, json!({"batchItemFailures": []}), "the placed order went to the kitchen queue; the rest needs nothing");

    let sqs = sample("sqs/kitchen-tickets.json");
    let typed: SqsEvent = serde_json::from_value(sqs.clone()).expect("an SQS event");
    let message_id = typed.records[0].message_id.clone().expect("id");
    // The sample's order is not in this table, so the kitchen can't accept it yet: retryable,
    // reported by message id for redelivery.
    let answer = h.function("kitchen").invoke(&sqs).expect("invoked");
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": message_id}]}));
}

/// The WebSocket samples on the live function, with a real ticket in place of the placeholder:
/// the authorizer allows its caller on the method, `$connect` records the connection, the message
/// is answered (the sample's order isn't this customer's: `not_found`, as over REST), and
/// `$disconnect` forgets it, so its messages are refused after; a forged ticket is `Unauthorized`.
#[test]
fn the_sample_websocket_events_are_answered_as_api_gateway_expects() {
    let h = LambdaStack::start_with("websocket-samples", false);
    let customer = h.register("ws-samples@example.com");
    let offer = h.post("/api/v1/live/tickets", Some(&customer), json!({})).body;
    let ticket = offer["ticket"].as_str().expect("a ticket").to_owned();
    // On AWS the ticket opens the WebSocket API; there is no event stream.
    let (base, gateway) = h.sockets.as_ref().expect("the WebSocket API");
    assert_eq!(offer["socket_url"].as_str(), Some(format!("{}/{}", base.replace("http://", "ws://"), gateway.stage).as_str()), "{offer}");
    assert_eq!(offer.get("events_url"), None, "{offer}");
    let live = h.function("live");
    let with_ticket =
        |name: &str, ticket: &str| -> Value { serde_json::from_str(&sample(name).to_string().replace("REPLACE_WITH_TICKET", ticket)).expect("json") };
    let allowed = live.invoke(&with_ticket("websocket/authorize.json", &ticket)).expect("authorized");
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow");
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Resource"], "arn:aws:execute-api:us-east-1:123456789012:ghijkl5678/live/$connect");
    assert_eq!(allowed["context"]["role"], "customer");
    let refused = live.invoke(&with_ticket("websocket/authorize.json", "forged.ticket")).expect_err("refused");
    assert!(refused.contains("Unauthorized"), "{refused}");
    assert_eq!(live.invoke(&with_ticket("websocket/connect.json", &ticket)).expect("connected")["statusCode"], 200);
    assert_eq!(live.invoke(&with_ticket("websocket/connect.json", "forged.ticket")).expect("answered")["statusCode"], 401);
    let answer = live.invoke(&sample("websocket/message.json")).expect("answered");
    let reply: Value = serde_json::from_str(answer["body"].as_str().expect("a reply")).expect("JSON");
    assert_eq!((answer["statusCode"].as_u64(), &reply["error"]["code"]), (Some(200), &json!("not_found")), "{reply}");
    assert_eq!(live.invoke(&sample("websocket/disconnect.json")).expect("disconnected")["statusCode"], 200);
    let after: Value =
        serde_json::from_str(live.invoke(&sample("websocket/message.json")).expect("answered")["body"].as_str().expect("a reply")).expect("JSON");
    assert_eq!(after["error"]["code"], "unauthorized", "a forgotten connection: {after}");
}

#[test]
fn an_order_flows_from_api_gateway_through_kinesis_and_sqs_to_the_kitchen_board() {
    let h = LambdaStack::start_with("flow", false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let customer = h.register("ada@example.com");
    let barista = h.staff("barista@example.com", "barista");

    // The producer gets the sample API Gateway event (with a real token).
    let event =
        sample("http/orders-place.json").to_string().replace("REPLACE_WITH_ACCESS_TOKEN", &customer).replace("abcdef1234", gocoffee_tests::lambda::API_ID);
    let placed = h.function("orders").invoke(&serde_json::from_str(&event).expect("json")).expect("invoked");
    assert_eq!(placed["statusCode"], 202, "{placed}");
    let order: Value = serde_json::from_str(placed["body"].as_str().expect("body")).expect("order");
    let first = order["id"].as_str().expect("id").to_owned();
    let second = h.place(&customer);

    // Both OrderPlaced events are on Kinesis, keyed by order id.
    let records = rt.block_on(h.stack.stream_records());
    assert_eq!(records.len(), 2, "one OrderPlaced per order");
    let (shard, first_record) = records.iter().find(|(_, r)| r.partition_key() == Some(first.as_str())).expect("first order's record").clone();
    let second_record = records.iter().find(|(_, r)| r.partition_key() == Some(second.as_str())).expect("second order's record").1.clone();

    // The poller's batch: the first order, a poison record, the first order again (a duplicate
    // delivery), the second order.
    let record = |r: &aws_sdk_kinesis::types::Record, seq: &str| {
        kinesis_record(&h.stack.stream_arn, &shard, r.partition_key().unwrap_or_default(), seq, r.data().as_ref(), 1_795_510_800.0)
    };
    let poison =
        kinesis_record(&h.stack.stream_arn, &shard, "junk", "49000000000000000000000000000000000000000000000000000002", b"{not an event", 1_795_510_800.0);
    let batch = json!({"Records": [
        record(&first_record, "49000000000000000000000000000000000000000000000000000001"),
        poison,
        record(&first_record, "49000000000000000000000000000000000000000000000000000003"),
        record(&second_record, "49000000000000000000000000000000000000000000000000000004"),
    ]});
    let _: KinesisEvent = serde_json::from_value(batch.clone()).expect("a real KinesisEvent");
    let answer = h.function("order-consumer").invoke(&batch).expect("invoked");
    assert_eq!(answer, json!({"batchItemFailures": []}), "nothing to retry: the poison record is dead-lettered, not replayed");

    // The poison record is reported in the stream's dead-letter queue, with why.
    let dead = rt.block_on(h.stack.drain_queue("OrdersDeadLetterQueue"));
    assert_eq!(dead.len(), 1);
    let report: Value = serde_json::from_str(dead[0].body().expect("body")).expect("json");
    assert_eq!(report["sequence_number"], "49000000000000000000000000000000000000000000000000000002");
    assert!(report["reason"].as_str().is_some_and(|r| r.contains("not an order event")), "{report}");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(report["data"].as_str().expect("data")).expect("b64"), b"{not an event");

    // Three placed orders went to the kitchen queue (the duplicate too); hand them over as one
    // SQS batch, with a poison message among them.
    let tickets = rt.block_on(async {
        let mut all = Vec::new();
        while all.len() < 3 {
            let out =
                h.stack.clients.sqs.receive_message().queue_url(&h.stack.queues["KitchenQueue"]).max_number_of_messages(10).send().await.expect("receive");
            all.extend(out.messages().to_vec());
        }
        all
    });
    assert_eq!(tickets.len(), 3);
    let queue_arn = "arn:aws:sqs:us-east-1:123456789012:kitchen";
    let mut records: Vec<Value> = tickets.iter().map(|m| sqs_record(queue_arn, m)).collect();
    let junk = aws_sdk_sqs::types::Message::builder().message_id("junk-1").receipt_handle("junk").body("[]").build();
    records.insert(1, sqs_record(queue_arn, &junk));
    let answer = h.function("kitchen").invoke(&json!({ "Records": records })).expect("invoked");
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "junk-1"}]}), "only the poison message is reported");

    // DynamoDB: each order confirmed exactly once, both on the kitchen board.
    for id in [&first, &second] {
        assert_eq!(h.event_types(id, &customer), ["OrderPlaced", "OrderConfirmed", "TicketRouted"], "order {id}: one effect per order, duplicates included");
    }
    let board = h.get("/api/v1/kitchen/queue", Some(&barista));
    let on_board: Vec<&str> = board.body["items"].as_array().expect("items").iter().filter_map(|t| t["order_id"].as_str()).collect();
    assert_eq!(on_board, [first.as_str(), second.as_str()], "{}", board.body);
    // The kitchen relayed each OrderConfirmed to the stream.
    let confirmed = rt.block_on(h.stack.stream_records()).iter().filter(|(_, r)| String::from_utf8_lossy(r.data().as_ref()).contains("OrderConfirmed")).count();
    assert_eq!(confirmed, 2);

    // What each function counted, as CloudWatch EMF documents in its log.
    let emf = |function: &str, metric: &str, dimensions: &[(&str, &str)]| emf_total(&h.function(function).log_text(), metric, dimensions);
    assert_eq!(emf("orders", "order_events", &[("event", "OrderPlaced")]), 2.0);
    assert!(emf("orders", "http_requests", &[("route", "POST /api/v1/orders"), ("status", "2xx")]) >= 1.0);
    assert!(emf("orders", "http_request_duration", &[("route", "POST /api/v1/orders")]) > 0.0, "latencies in milliseconds");
    assert_eq!(emf("order-consumer", "dead_letters", &[("consumer", "order-consumer")]), 1.0);
    assert_eq!(emf("order-consumer", "consumer_failures", &[("consumer", "order-consumer"), ("kind", "poison")]), 1.0);
    assert_eq!(emf("kitchen", "order_events", &[("event", "OrderConfirmed")]), 2.0);
    assert_eq!(emf("kitchen", "consumer_failures", &[("consumer", "kitchen"), ("kind", "poison")]), 1.0);
    let orders_log = h.function("orders").log_text();
    let document = orders_log.lines().find(|l| l.contains("\"order_events\"")).expect("an EMF document");
    let document: Value = serde_json::from_str(document).expect("one JSON document per line");
    assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Namespace"], "GoCoffee");
    assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Count");
    assert_eq!(document["function"], "orders");
    assert!(document["RequestId"].as_str().is_some_and(|id| !id.is_empty()), "{document}");
}

/// With a collector configured (the template's OtlpEndpoint), each function exports its spans
/// before its invocation returns: the order's request, its stream record and its kitchen ticket
/// are spans of the caller's trace, each the child of the span that made the event it handles.
#[test]
fn with_an_otlp_endpoint_every_hop_of_an_order_is_a_span_of_the_callers_trace() {
    let (endpoint, spans) = gocoffee_tests::otlp_receiver();
    let h = LambdaStack::start_env("otlp", true, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let customer = h.register("ada@example.com");
    let (trace_id, caller_span) = ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8");
    let body = serde_json::to_vec(&json!({"lines": [{"item_id": "latte", "size": "small", "quantity": 1}]})).expect("json");
    let placed =
        h.request("POST", "/api/v1/orders", Some(&customer), &[("traceparent", &format!("00-{trace_id}-{caller_span}-01"))], Some(("application/json", body)));
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    h.wait_for_status(&id, &customer, "confirmed");
    let events = h.get(&format!("/api/v1/orders/{id}/events"), Some(&customer)).body["events"].clone();
    let placed_span = events[0]["traceparent"].as_str().expect("traceparent").split('-').nth(2).expect("span").to_owned();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (server, stream, ticket) = loop {
        let all = spans.lock().expect("lock").clone();
        let find = |f: &dyn Fn(&Value) -> bool| all.iter().find(|s| s["traceId"] == trace_id && f(s)).cloned();
        let server = find(&|s| s["name"] == "POST /api/v1/orders");
        let consumer = |s: &Value, part: &str| s["kind"] == 5 && s["name"].as_str().is_some_and(|n| n.to_ascii_lowercase().contains(part));
        let stream = find(&|s| consumer(s, "orders"));
        let ticket = find(&|s| consumer(s, "kitchen"));
        if let (Some(server), Some(stream), Some(ticket)) = (server, stream, ticket) {
            break (server, stream, ticket);
        }
        assert!(std::time::Instant::now() < deadline, "the spans of trace {trace_id} never all arrived: {all:#?}\n{}", h.logs());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(server["parentSpanId"], caller_span, "{server}");
    assert_ne!(server["spanId"], placed_span.as_str(), "the app's work is a span of its own");
    assert_eq!(stream["parentSpanId"], placed_span.as_str(), "the stream record's span continues the event's: {stream}");
    assert_ne!(ticket["parentSpanId"], placed_span.as_str(), "the ticket was sent in the order consumer's span: {ticket}");
}

/// The AI function with its models on Bedrock (played on a local port and reached through
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, as the template's parameters set them): the customer
/// service's answer is the Converse model's, cited, and the call is SigV4-signed for Bedrock with
/// the function's credentials.
#[test]
fn the_ai_function_phrases_its_answers_with_its_bedrock_model() {
    let (bedrock, seen) = gocoffee_tests::bedrock::stand_in();
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let h = LambdaStack::start_env("ai-bedrock", false, &[("AI_MODEL", model), ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock)]);
    let ada = h.register("ada@example.com");
    let answer = h.post("/api/v1/ai/ask", Some(&ada), json!({"message": "what time do you open on saturday?"}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!((answer.body["agent"].as_str(), answer.body["model"].as_str()), (Some("customer-service"), Some(model)), "{}", answer.body);
    assert_eq!(answer.body["fallback"], Value::Null, "{}", answer.body);
    assert_eq!(answer.body["answer"], "Here you are. [opening-hours]", "{}", answer.body);
    let call = seen.recv_timeout(std::time::Duration::from_secs(5)).expect("Bedrock was called");
    assert_eq!(call.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
    assert!(call.headers.contains("/bedrock/aws4_request"), "{}", call.headers);
    assert!(call.body["system"][0]["text"].as_str().expect("system").contains("[opening-hours]"), "{}", call.body);
}

/// The sum of `metric` over the EMF documents in `log` whose dimensions are exactly `dimensions`.
fn emf_total(log: &str, metric: &str, dimensions: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for doc in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|d| d.get("_aws").is_some()) {
        let names: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut wanted: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
        let mut have = names.clone();
        wanted.sort_unstable();
        have.sort_unstable();
        if have != wanted || dimensions.iter().any(|(k, v)| doc[*k] != *v) {
            continue;
        }
        total += match &doc[metric] {
            Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
            value => value.as_f64().unwrap_or(0.0),
        };
    }
    total
}

/// infra/ applied to moto: the plan of what it created matches the template (parity.py), and an
/// order placed through the routes Terraform made reaches the kitchen board over the stream,
/// mapping and queue Terraform made, each function running with the environment Terraform gave
/// it (the native build of the bootstrap that infra/ deploys zipped for arm64). In this binary so
/// the apply, mostly the provider's polling, overlaps the other Lambda tests.
#[test]
fn infra_applied_to_moto_matches_the_template_and_carries_an_order_to_the_kitchen() {
    if let Some(why) = gocoffee_tests::terraform::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let applied = gocoffee_tests::terraform::apply_to_moto(
        "infra",
        json!({
            "jwt_secret": gocoffee_tests::lambda::JWT_SECRET,
            "admin_email": ADMIN_EMAIL,
            "admin_password": ADMIN_PASSWORD,
            "allowed_origin": "https://cafe.example",
        }),
    );
    match applied.parity() {
        Ok(summary) => eprintln!("{summary}"),
        Err(drift) => panic!("{drift}"),
    }

    let h = applied.launch();
    let customer = h.register("tf-customer@example.com");
    let barista = h.staff("tf-barista@example.com", "barista");
    let id = h.place(&customer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let board = h.get("/api/v1/kitchen/queue", Some(&barista));
        let on_board = board.body["items"].as_array().into_iter().flatten().any(|t| t["order_id"] == id.as_str());
        if on_board {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "order {id} never reached the board: {}\n{}", board.body, h.logs());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(h.event_types(&id, &customer), ["OrderPlaced", "OrderConfirmed", "TicketRouted"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let on_stream = rt.block_on(h.stack.records_of("OrdersStream"));
    assert!(on_stream.iter().any(|(_, r)| r.partition_key() == Some(id.as_str())), "the order's events are on Terraform's stream");

    // A function's log line reaches the archive bucket through the subscription filter and
    // Firehose Terraform made.
    let archive = applied.values("aws_s3_bucket", "archive_bucket")["bucket"].as_str().expect("archive bucket").to_owned();
    let group = format!("/gocoffee/{}/orders", applied.name);
    let line = json!({"level": "INFO", "message": "order placed", "order_id": id}).to_string();
    moto_json("logs", "Logs_20140328.CreateLogStream", json!({"logGroupName": group, "logStreamName": "2026/11/26/[$LATEST]tf"}));
    moto_json(
        "logs",
        "Logs_20140328.PutLogEvents",
        json!({"logGroupName": group, "logStreamName": "2026/11/26/[$LATEST]tf", "logEvents": [{"timestamp": 1_795_651_200_000_u64, "message": line}]}),
    );
    let archived = gzipped_objects(&archive, "logs/");
    assert!(archived.iter().any(|(_, text)| text.contains(&id) && text.contains(&group)), "the log line is archived under logs/: {archived:?}");

    // The nightly export, called with exactly the input the schedule Terraform made would send.
    let schedule = applied.values("aws_scheduler_schedule", "table_export_schedule");
    let input: Value = serde_json::from_str(schedule["target"][0]["input"].as_str().expect("input")).expect("JSON input");
    assert_eq!(schedule["target"][0]["arn"], "arn:aws:scheduler:::aws-sdk:dynamodb:exportTableToPointInTime");
    rt.block_on(
        h.stack
            .clients
            .dynamodb
            .export_table_to_point_in_time()
            .table_arn(input["TableArn"].as_str().expect("TableArn"))
            .s3_bucket(input["S3Bucket"].as_str().expect("S3Bucket"))
            .s3_prefix(input["S3Prefix"].as_str().expect("S3Prefix"))
            .export_format(aws_sdk_dynamodb::types::ExportFormat::from(input["ExportFormat"].as_str().expect("ExportFormat")))
            .send(),
    )
    .expect("export");
    assert_eq!(input["S3Bucket"], archive.as_str(), "exports go to the archive bucket");
    let exported = gzipped_objects(&archive, "table-exports/");
    assert!(exported.iter().any(|(key, text)| key.contains("/data/") && text.contains(&format!("ORDER#{id}"))), "the order is in the export: {exported:?}");
}

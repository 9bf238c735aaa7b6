//! Live status on AWS: API Gateway's WebSocket API keeps the sockets; this keeps the connections
//! and what each follows in a DynamoDB table of their own (`CONNECTIONS_TABLE`, expiring by TTL
//! when API Gateway's two-hour limit has closed them anyway), and pushes through API Gateway's
//! management API (`PostToConnection`). The two Lambda entries: `live` (the `$connect`
//! authorizer, the connections' events, and the tickets route behind the HTTP API) and the
//! `notifier` on the orders stream.

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::Select;
use gocoffee_app::live::sockets::{self, Connection, ConnectionStore, PushError, Pusher, SocketsContext};
use gocoffee_app::ports::{StoreError, StoreResult};
use gocoffee_app::{ApiError, Caller, Response};
use gocoffee_core::Role;
use serde_json::{Value, json};

use crate::dynamo::{DELETE_BATCH, Item, delete_keys, get_n, get_s, key, n, s, sdk};
use crate::lambda::{Shell, block_on, finish_invocation, init, response_to_apigw, with_xray};

/// The table's keys and index, as the templates declare them. A connection is one item
/// (`sk` [`keys::CONNECTION`]) and each channel it follows another (`sk` `channel#<channel>`),
/// all under the connection's id, so forgetting it is one query and one batch.
pub mod keys {
    /// The single table's key and TTL attribute names, the same here.
    pub use crate::dynamo::keys::{PK, SK, TTL};
    pub const CONNECTION: &str = "connection";
    pub const CHANNEL_PREFIX: &str = "channel#";
    /// `by-channel`: partition `channel`, sort `pk`: who follows a channel.
    pub const BY_CHANNEL: &str = "by-channel";
    pub const CHANNEL: &str = "channel";
    /// The exact expiry (ms), what reads go by.
    pub const EXPIRES_AT_MS: &str = "expires_at_ms";
}

/// [`ConnectionStore`] on its own DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoConnections {
    client: Client,
    table: String,
}

impl DynamoConnections {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoConnections { client, table: table.into() }
    }

    /// An item of the connection's: its key, and its expiry both for TTL (seconds: DynamoDB
    /// deletes the item some time after) and exact (ms, what reads go by).
    fn item(connection_id: &str, sk: &str, expires_at_ms: i64) -> Item {
        let mut item = key(connection_id, sk);
        item.insert(keys::TTL.into(), n(expires_at_ms.div_euclid(1000) + 1));
        item.insert(keys::EXPIRES_AT_MS.into(), n(expires_at_ms));
        item
    }

    /// Every item of a connection with a sort key starting `prefix`: its sort keys.
    async fn sort_keys(&self, connection_id: &str, prefix: Option<&str>) -> StoreResult<Vec<String>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .projection_expression("sk")
                .expression_attribute_values(":pk", s(connection_id))
                .set_exclusive_start_key(start.take());
            query = match prefix {
                Some(prefix) => query.key_condition_expression("pk = :pk AND begins_with(sk, :prefix)").expression_attribute_values(":prefix", s(prefix)),
                None => query.key_condition_expression("pk = :pk"),
            };
            let out = query.send().await.map_err(sdk)?;
            for item in out.items() {
                found.push(get_s(item, keys::SK)?.to_owned());
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found),
            }
        }
    }
}

#[async_trait(?Send)]
impl ConnectionStore for DynamoConnections {
    async fn save_connection(&self, connection: &Connection) -> StoreResult<()> {
        let mut item = Self::item(&connection.id, keys::CONNECTION, connection.expires_at_ms);
        item.insert("user_id".into(), s(&connection.caller.user_id));
        item.insert("role".into(), s(connection.caller.role.as_str()));
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn connection(&self, id: &str, now_ms: i64) -> StoreResult<Option<Connection>> {
        let out = self.client.get_item().table_name(&self.table).set_key(Some(key(id, keys::CONNECTION))).consistent_read(true).send().await.map_err(sdk)?;
        let Some(item) = out.item else { return Ok(None) };
        let expires_at_ms = get_n(&item, keys::EXPIRES_AT_MS)?;
        if expires_at_ms <= now_ms {
            return Ok(None);
        }
        let role = Role::parse(get_s(&item, "role")?).ok_or_else(|| StoreError::Unavailable("a connection's role is unknown".into()))?;
        Ok(Some(Connection { id: id.to_owned(), caller: Caller { user_id: get_s(&item, "user_id")?.to_owned(), role }, expires_at_ms }))
    }

    /// The limit is checked against what the connection followed when this read it, without a
    /// transaction: subscriptions one connection sends at once can pass it by as many as are in
    /// flight. It bounds what one connection costs the fan-out, which that doesn't change.
    async fn subscribe(&self, connection: &Connection, channel: &str, limit: usize) -> StoreResult<bool> {
        let sk = format!("{}{channel}", keys::CHANNEL_PREFIX);
        let followed = self.sort_keys(&connection.id, Some(keys::CHANNEL_PREFIX)).await?;
        if followed.contains(&sk) {
            return Ok(true);
        }
        if followed.len() >= limit {
            return Ok(false);
        }
        let mut item = Self::item(&connection.id, &sk, connection.expires_at_ms);
        item.insert(keys::CHANNEL.into(), s(channel));
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(true)
    }

    async fn unsubscribe(&self, connection_id: &str, channel: &str) -> StoreResult<()> {
        let subscription = key(connection_id, &format!("{}{channel}", keys::CHANNEL_PREFIX));
        self.client.delete_item().table_name(&self.table).set_key(Some(subscription)).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn subscribers(&self, channel: &str, now_ms: i64) -> StoreResult<Vec<String>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(keys::BY_CHANNEL)
                .key_condition_expression("channel = :channel")
                .filter_expression("expires_at_ms > :now")
                .expression_attribute_values(":channel", s(channel))
                .expression_attribute_values(":now", n(now_ms))
                .select(Select::AllProjectedAttributes)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            for item in out.items() {
                found.push(get_s(item, keys::PK)?.to_owned());
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found),
            }
        }
    }

    async fn forget(&self, connection_id: &str) -> StoreResult<()> {
        let keys: Vec<Item> = self.sort_keys(connection_id, None).await?.into_iter().map(|sk| key(connection_id, &sk)).collect();
        for chunk in keys.chunks(DELETE_BATCH) {
            delete_keys(&self.client, &self.table, chunk.to_vec()).await?;
        }
        Ok(())
    }
}

/// Pushes through API Gateway's management API for one stage
/// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`), signed for `execute-api`.
#[derive(Clone, Debug)]
pub struct ManagementApi {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApi {
    /// A pusher to the connections of the stage at `endpoint`, with the function's SDK settings
    /// (its credentials, region, HTTP client and timeouts).
    pub fn new(sdk: &aws_types::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk).endpoint_url(endpoint.trim_end_matches('/')).build();
        ManagementApi { client: aws_sdk_apigatewaymanagement::Client::from_conf(config) }
    }
}

#[async_trait(?Send)]
impl Pusher for ManagementApi {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        let sent =
            self.client.post_to_connection().connection_id(connection_id).data(aws_sdk_apigatewaymanagement::primitives::Blob::new(message)).send().await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_gone_exception()) => Err(PushError::Gone),
            Err(e) => Err(PushError::Unavailable(format!("{}", aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e)))),
        }
    }
}

/// What the live function and the notifier keep per container besides the shell.
pub struct LiveSockets {
    pub connections: DynamoConnections,
    /// The notifier's; the live function answers on the connection instead.
    pub pusher: Option<ManagementApi>,
}

impl LiveSockets {
    fn context(&self) -> SocketsContext<'_> {
        SocketsContext { connections: &self.connections, pusher: self.pusher.as_ref().map(|p| p as &dyn Pusher) }
    }
}

/// The shell and the connections from the function's environment (`CONNECTIONS_TABLE`, and
/// the notifier's `LIVE_CONNECTIONS_URL`, the stage's management endpoint).
fn start(function: &'static str, pushes: bool) -> Result<(Shell, LiveSockets), lambda_runtime::Error> {
    let shell = init(function)?;
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let table = get("CONNECTIONS_TABLE").ok_or("CONNECTIONS_TABLE is not set")?;
    let pusher = if pushes {
        let endpoint = get("LIVE_CONNECTIONS_URL").ok_or("LIVE_CONNECTIONS_URL is not set: the WebSocket API stage's management endpoint")?;
        Some(ManagementApi::new(shell.sdk_config(), &endpoint))
    } else {
        None
    };
    let connections = DynamoConnections::new(shell.store().client().clone(), table);
    Ok((shell, LiveSockets { connections, pusher }))
}

/// What reached the live function, by its shape.
enum LiveEvent {
    /// The WebSocket API's REQUEST authorizer on `$connect`.
    Authorizer(Box<ApiGatewayCustomAuthorizerRequestTypeRequest>),
    /// A connection's `CONNECT`, `MESSAGE` or `DISCONNECT`.
    Socket(Box<ApiGatewayWebsocketProxyRequest>),
    /// An HTTP API request (the tickets route).
    Http(Box<aws_lambda_events::apigw::ApiGatewayV2httpRequest>),
}

fn live_event(payload: Value) -> Result<LiveEvent, lambda_runtime::Error> {
    if payload.get("type").and_then(Value::as_str) == Some("REQUEST") && payload.get("methodArn").is_some() {
        return Ok(LiveEvent::Authorizer(serde_json::from_value(payload)?));
    }
    let context = payload.get("requestContext");
    if context.and_then(|c| c.get("eventType")).is_some() {
        return Ok(LiveEvent::Socket(serde_json::from_value(payload)?));
    }
    if context.and_then(|c| c.get("http")).is_some() {
        return Ok(LiveEvent::Http(serde_json::from_value(payload)?));
    }
    Err("the live function takes the WebSocket API's authorizer and connection events and HTTP API requests".into())
}

/// The `$connect` authorizer's answer: the ticket's caller may invoke `method_arn`, with who
/// they are in the authorizer's context; a missing or bad ticket is the `Unauthorized` error,
/// which API Gateway answers with 401.
fn authorizer_answer(caller: Result<Caller, ApiError>, method_arn: &str) -> Result<Value, lambda_runtime::Error> {
    let caller = caller.map_err(|_| lambda_runtime::Error::from("Unauthorized"))?;
    Ok(json!({
        "principalId": caller.user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn }],
        },
        "context": { "user_id": caller.user_id, "role": caller.role.as_str() },
    }))
}

/// One connection event. `$connect` checks the ticket again (the authorizer's answer may be
/// cached, and this keeps one rule for every platform) and records the connection; a message is
/// answered on the connection (the route's two-way response); `$disconnect` forgets it.
async fn socket_event(shell: &Shell, sockets: &LiveSockets, event: &ApiGatewayWebsocketProxyRequest) -> Response {
    let context = &event.request_context;
    let Some(connection_id) = context.connection_id.as_deref().filter(|id| !id.is_empty()) else {
        return ApiError::bad_request("no_connection", "a connection event names its connection").into_response();
    };
    let ok = |body: Vec<u8>| {
        let mut response = Response::new(body);
        if !response.body().is_empty() {
            response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        }
        response
    };
    shell
        .with_services(None, async |svc| {
            let sockets = sockets.context();
            let outcome = match context.event_type.as_deref() {
                Some("CONNECT") => match sockets::authenticate(svc, event.query_string_parameters.first("ticket")) {
                    Ok(caller) => sockets::connect(svc, &sockets, connection_id, caller).await.map(|()| ok(Vec::new())),
                    Err(e) => Err(e),
                },
                Some("MESSAGE") => Ok(ok(sockets::message(svc, &sockets, connection_id, event.body.as_deref().unwrap_or_default().as_bytes()).await)),
                Some("DISCONNECT") => sockets::disconnect(&sockets, connection_id).await.map(|()| ok(Vec::new())),
                _ => Err(ApiError::bad_request("unknown_event", "a connection's events are CONNECT, MESSAGE and DISCONNECT")),
            };
            outcome.unwrap_or_else(ApiError::into_response)
        })
        .await
}

/// `main` of the live function: the WebSocket API's authorizer and connection events, and the
/// tickets route behind the HTTP API (the event stream is Spin's and the host's: API Gateway
/// buffers responses, so on AWS the WebSocket API is the live transport).
pub fn live() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let function = &gocoffee_app::live::FUNCTION;
        let (shell, sockets) = &start(function.name, false)?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<Value>| {
            let result = match live_event(event.payload) {
                Ok(LiveEvent::Authorizer(request)) => {
                    let caller = shell.with_services(None, async |svc| sockets::authenticate(svc, request.query_string_parameters.first("ticket"))).await;
                    authorizer_answer(caller, request.method_arn.as_deref().unwrap_or_default())
                }
                Ok(LiveEvent::Socket(request)) => {
                    serde_json::to_value(response_to_apigw(Box::pin(socket_event(shell, sockets, &request)).await)).map_err(Into::into)
                }
                Ok(LiveEvent::Http(request)) => {
                    let response = Box::pin(shell.http(function, with_xray(*request, &event.context))).await;
                    serde_json::to_value(response).map_err(Into::into)
                }
                Err(e) => Err(e),
            };
            finish_invocation(&event.context).await;
            result
        }))
        .await
    })
}

/// `main` of the notifier: Kinesis batches from the orders stream, each event pushed to the
/// connections following its channels, with the order consumer's ordering and retry rules. A
/// gone connection is forgotten; a push that fails otherwise retries the record (clients drop
/// what they already have).
pub fn notifier() -> Result<(), lambda_runtime::Error> {
    block_on(async {
        let (shell, sockets) = &start(gocoffee_app::live::NOTIFIER, true)?;
        lambda_runtime::run(lambda_runtime::service_fn(async |event: lambda_runtime::LambdaEvent<aws_lambda_events::kinesis::KinesisEvent>| {
            let response =
                Box::pin(shell.kinesis_with(event.payload, None, async |svc, payload| sockets::fan_out(svc, &sockets.context(), payload).await)).await;
            finish_invocation(&event.context).await;
            Ok::<_, lambda_runtime::Error>(response)
        }))
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorizer_allows_the_tickets_caller_on_the_method_and_refuses_with_unauthorized() {
        let caller = Caller { user_id: "u1".into(), role: Role::Barista };
        let arn = "arn:aws:execute-api:eu-west-1:123456789012:abc123/live/$connect";
        let allowed = authorizer_answer(Ok(caller), arn).expect("allowed");
        assert_eq!(allowed["policyDocument"]["Statement"][0], json!({"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}));
        assert_eq!(allowed["context"], json!({"user_id": "u1", "role": "barista"}));
        let refused = authorizer_answer(Err(ApiError::unauthorized()), arn).expect_err("refused");
        assert_eq!(refused.to_string(), "Unauthorized", "API Gateway's word for 401");
    }

    #[test]
    fn events_are_told_apart_by_their_shape() {
        let authorizer = json!({"type": "REQUEST", "methodArn": "arn", "queryStringParameters": {"ticket": "t"}, "requestContext": {"connectionId": "c", "eventType": "CONNECT"}});
        assert!(matches!(live_event(authorizer), Ok(LiveEvent::Authorizer(r)) if r.query_string_parameters.first("ticket") == Some("t")));
        let message = json!({"requestContext": {"connectionId": "c=", "eventType": "MESSAGE", "connectedAt": 1, "requestTimeEpoch": 2, "routeKey": "$default"}, "body": "{}"});
        assert!(matches!(live_event(message), Ok(LiveEvent::Socket(r)) if r.request_context.connection_id.as_deref() == Some("c=")));
        let http = json!({"version": "2.0", "rawPath": "/api/v1/live/tickets", "requestContext": {"http": {"method": "POST", "path": "/api/v1/live/tickets"}}});
        assert!(matches!(live_event(http), Ok(LiveEvent::Http(_))));
        assert!(live_event(json!({"Records": []})).is_err());
    }
}

# Live order status: the WebSocket API (README, "Live order status"), as sam-template.yaml's.
# Clients connect with a ticket from POST /api/v1/live/tickets in the query string (a browser
# can't set headers on a WebSocket), which a REQUEST authorizer checks on $connect; then they send
# {"action": "subscribe" | "unsubscribe", "channel": ...}, each answered on the connection
# ($default's route response). The live function is behind every route and the authorizer; the
# notifier pushes through the stage's management API. API Gateway closes a connection after 10
# idle minutes or 2 hours.

locals {
  live_socket_access_log_format = jsonencode({
    requestId        = "$context.requestId"
    ip               = "$context.identity.sourceIp"
    connectionId     = "$context.connectionId"
    eventType        = "$context.eventType"
    routeKey         = "$context.routeKey"
    status           = "$context.status"
    integrationError = "$context.integrationErrorMessage"
    authorizerError  = "$context.authorizer.error"
  })
  # Where clients connect (handed out with tickets) and the stage's management endpoint, what the
  # notifier pushes through.
  live_socket_url      = "wss://${aws_apigatewayv2_api.live_socket_api.id}.execute-api.${data.aws_region.current.name}.${data.aws_partition.current.dns_suffix}/${aws_apigatewayv2_stage.live_socket_stage.name}"
  live_connections_url = "https://${aws_apigatewayv2_api.live_socket_api.id}.execute-api.${data.aws_region.current.name}.${data.aws_partition.current.dns_suffix}/${aws_apigatewayv2_stage.live_socket_stage.name}"
}

resource "aws_apigatewayv2_api" "live_socket_api" {
  name                       = "${var.name}-sockets"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}

resource "aws_cloudwatch_log_group" "live_socket_access_logs" {
  name              = "/gocoffee/${var.name}/live-socket"
  retention_in_days = var.log_retention_days
  # checkov:skip=CKV_AWS_158:Access logs hold no secrets or personal data beyond source IPs; CloudWatch encrypts them at rest with its own key.
  # checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default), chosen per deployment.
}

resource "aws_apigatewayv2_stage" "live_socket_stage" {
  # checkov:skip=CKV2_AWS_51:Browsers connect: they present no client certificates (and WebSocket APIs take none); $connect is authorized by the ticket.
  api_id      = aws_apigatewayv2_api.live_socket_api.id
  name        = "live"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = 200
    throttling_rate_limit  = 100
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.live_socket_access_logs.arn
    format          = local.live_socket_access_log_format
  }
}

# No ticket in the query string: API Gateway's 401 without invoking anything. A bad or expired
# one: the function answers Unauthorized, also a 401.
resource "aws_apigatewayv2_authorizer" "live_socket_authorizer" {
  api_id           = aws_apigatewayv2_api.live_socket_api.id
  name             = "live-ticket"
  authorizer_type  = "REQUEST"
  authorizer_uri   = aws_lambda_function.function["live"].invoke_arn
  identity_sources = ["route.request.querystring.ticket"]
}

resource "aws_apigatewayv2_integration" "live_socket_integration" {
  api_id           = aws_apigatewayv2_api.live_socket_api.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.function["live"].invoke_arn
}

resource "aws_lambda_permission" "live_socket" {
  statement_id  = "websocket-api"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["live"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.live_socket_api.execution_arn}/*"
}

resource "aws_apigatewayv2_route" "live_connect" {
  api_id             = aws_apigatewayv2_api.live_socket_api.id
  route_key          = "$connect"
  target             = "integrations/${aws_apigatewayv2_integration.live_socket_integration.id}"
  authorization_type = "CUSTOM"
  authorizer_id      = aws_apigatewayv2_authorizer.live_socket_authorizer.id
}

resource "aws_apigatewayv2_route" "live_disconnect" {
  # checkov:skip=CKV_AWS_309:$disconnect takes no authorization (API Gateway allows it only on $connect, which has it).
  api_id    = aws_apigatewayv2_api.live_socket_api.id
  route_key = "$disconnect"
  target    = "integrations/${aws_apigatewayv2_integration.live_socket_integration.id}"
}

resource "aws_apigatewayv2_route" "live_message" {
  # checkov:skip=CKV_AWS_309:Messages take no authorization (API Gateway allows it only on $connect, which has it); the function acts for the caller $connect recorded.
  api_id                              = aws_apigatewayv2_api.live_socket_api.id
  route_key                           = "$default"
  target                              = "integrations/${aws_apigatewayv2_integration.live_socket_integration.id}"
  route_response_selection_expression = "$default"
}

# The function's answer to a message goes back on the connection.
resource "aws_apigatewayv2_route_response" "live_message" {
  api_id             = aws_apigatewayv2_api.live_socket_api.id
  route_id           = aws_apigatewayv2_route.live_message.id
  route_response_key = "$default"
}

# Live status's WebSocket connections and what each follows (shared/aws/src/live.rs): one item per
# connection and per channel it follows, under the connection's id; by-channel finds a channel's
# followers. Items expire (TTL) when API Gateway has closed the connection anyway.
resource "aws_dynamodb_table" "connections_table" {
  # checkov:skip=CKV_AWS_28:Open connections live two hours at most and a client reconnects when they're gone; a backup would restore sockets that no longer exist.
  # checkov:skip=CKV_AWS_119:Encrypted at rest with the DynamoDB-owned KMS key; a customer managed key adds cost and a key policy to run without changing who can read the table.
  name         = "${var.name}-connections-table"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "channel"
    type = "S"
  }

  global_secondary_index {
    name            = "by-channel"
    hash_key        = "channel"
    range_key       = "pk"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }
}

# Live status is for now: the notifier starts at the stream's tip, and a push that keeps failing
# is dropped after a few minutes (a client refetches the order on every reconnect anyway).
resource "aws_lambda_event_source_mapping" "notifier" {
  function_name                      = aws_lambda_function.function["notifier"].arn
  event_source_arn                   = aws_kinesis_stream.orders_stream.arn
  starting_position                  = "LATEST"
  batch_size                         = 100
  maximum_batching_window_in_seconds = 0
  parallelization_factor             = 1
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = 3
  maximum_record_age_in_seconds      = 300

  depends_on = [aws_iam_role_policy.function]
}

resource "aws_cloudwatch_log_subscription_filter" "live_socket_access_logs" {
  name            = "archive"
  log_group_name  = aws_cloudwatch_log_group.live_socket_access_logs.name
  filter_pattern  = ""
  destination_arn = aws_kinesis_firehose_delivery_stream.log_archive_stream.arn
  role_arn        = aws_iam_role.log_subscription_role.arn
  depends_on      = [aws_iam_role_policy.log_subscription_role]
}

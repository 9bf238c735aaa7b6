# The HTTP API: payload format 2.0 to every function, routes mirroring spin.toml (each function
# owns a path prefix, so a wrong method gets the app's 405 with Allow, as on Spin), CORS,
# route-level throttling as the global cap, and JSON access logs.

locals {
  # Route key => function. The $default route: requests no other route takes get the app's
  # JSON 404.
  public_routes = {
    "ANY /health"               = "health"
    "$default"                  = "health"
    "ANY /api/v1/auth"          = "identity"
    "ANY /api/v1/auth/{proxy+}" = "identity"
    "ANY /.well-known"          = "identity"
    "ANY /.well-known/{proxy+}" = "identity"
    "ANY /api/v1/menu"          = "menu"
    "ANY /api/v1/menu/{proxy+}" = "menu"
    # The web clients: pages and assets on the API's origin (no CORS).
    "ANY /"                = "web"
    "ANY /kitchen"         = "web"
    "ANY /assets"          = "web"
    "ANY /assets/{proxy+}" = "web"
  }
  # Routes whose bearer token the JWT authorizer checks before any function runs: whole
  # prefixes, and the operations openapi.yaml says need a token under a public prefix.
  authorized_routes = {
    "GET /api/v1/auth/me"               = "identity"
    "POST /api/v1/auth/users"           = "identity"
    "POST /api/v1/menu/items"           = "menu"
    "PATCH /api/v1/menu/items/{id}"     = "menu"
    "PUT /api/v1/menu/items/{id}/image" = "menu"
    "ANY /api/v1/orders"                = "orders"
    "ANY /api/v1/orders/{proxy+}"       = "orders"
    "ANY /api/v1/kitchen"               = "kitchen"
    "ANY /api/v1/kitchen/{proxy+}"      = "kitchen"
    "ANY /api/v1/payments"              = "payments"
    "ANY /api/v1/payments/{proxy+}"     = "payments"
    "ANY /api/v1/analytics"             = "analytics"
    "ANY /api/v1/analytics/{proxy+}"    = "analytics"
    "ANY /api/v1/ai"                    = "ai"
    "ANY /api/v1/ai/{proxy+}"           = "ai"
    # The tickets a browser opens live status's WebSocket with (live.tf); the event stream is
    # Spin's and the host's (API Gateway buffers responses).
    "POST /api/v1/live/tickets" = "live"
  }
  routes        = merge(local.public_routes, local.authorized_routes)
  api_functions = toset(values(local.routes))

  access_log_format = jsonencode({
    requestId        = "$context.requestId"
    ip               = "$context.identity.sourceIp"
    method           = "$context.httpMethod"
    path             = "$context.path"
    routeKey         = "$context.routeKey"
    status           = "$context.status"
    latencyMs        = "$context.responseLatency"
    integrationError = "$context.integrationErrorMessage"
    authorizerError  = "$context.authorizer.error"
  })
}

resource "aws_apigatewayv2_api" "http_api" {
  name          = "${var.name}-api"
  protocol_type = "HTTP"

  cors_configuration {
    allow_origins  = [var.allowed_origin]
    allow_methods  = ["GET", "HEAD", "POST", "PUT", "PATCH", "OPTIONS"]
    allow_headers  = ["authorization", "content-type", "idempotency-key", "x-request-id"]
    expose_headers = ["location", "x-request-id", "idempotent-replayed", "retry-after"]
    max_age        = 600
  }
}

resource "aws_cloudwatch_log_group" "api_access_logs" {
  name              = "/gocoffee/${var.name}/api"
  retention_in_days = var.log_retention_days
  # checkov:skip=CKV_AWS_158:Access logs hold no secrets or personal data beyond source IPs; CloudWatch encrypts them at rest with its own key.
  # checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default), chosen per deployment.
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http_api.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = 200
    throttling_rate_limit  = 100
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access_logs.arn
    format          = local.access_log_format
  }
}

resource "aws_apigatewayv2_integration" "function" {
  for_each = local.api_functions

  api_id                 = aws_apigatewayv2_api.http_api.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.function[each.key].invoke_arn
  payload_format_version = "2.0"
}

# Checks the bearer token of every authorized route: RS256 against the keys the issuer's
# /.well-known/openid-configuration points to (the identity function's JWKS), the issuer, the
# audience and the times. A refused token is API Gateway's 401 {"message":"Unauthorized"}.
resource "aws_apigatewayv2_authorizer" "token_authorizer" {
  api_id           = aws_apigatewayv2_api.http_api.id
  name             = "access-token"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = local.token_issuer
    audience = [var.token_audience]
  }
}

resource "aws_apigatewayv2_route" "route" {
  for_each = local.routes
  # checkov:skip=CKV_AWS_309:The public routes are public on purpose (the menu, login, registration, the token keys); the JWT authorizer guards the rest, and each function checks its own bearer token and role.

  api_id             = aws_apigatewayv2_api.http_api.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value].id}"
  authorization_type = contains(keys(local.authorized_routes), each.key) ? "JWT" : "NONE"
  authorizer_id      = contains(keys(local.authorized_routes), each.key) ? aws_apigatewayv2_authorizer.token_authorizer.id : null
}

resource "aws_lambda_permission" "api" {
  for_each = local.api_functions

  statement_id  = "http-api"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http_api.execution_arn}/*"
}

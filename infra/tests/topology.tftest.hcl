# `terraform test` with a mocked AWS provider: the plan's shape and the variables' guards, without
# an account. (The tests also apply infra/ to moto server and hold it to sam-template.yaml:
# tests/tests/lambda.rs, tests/infra/parity.py.)

mock_provider "aws" {
  # ARNs known at plan time, so the policies' statements can be checked without an apply.
  override_during = plan
  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:us-east-1:123456789012:table/mock"
    }
  }
  mock_resource "aws_kinesis_stream" {
    defaults = {
      arn = "arn:aws:kinesis:us-east-1:123456789012:stream/mock"
    }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:us-east-1:123456789012:mock"
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::mock"
    }
  }
  mock_resource "aws_sns_topic" {
    defaults = {
      arn = "arn:aws:sns:us-east-1:123456789012:mock"
    }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:mock"
    }
  }
  mock_resource "aws_apigatewayv2_stage" {
    defaults = {
      execution_arn = "arn:aws:execute-api:us-east-1:123456789012:mock/live"
    }
  }
  # Policy documents are rendered by the provider; a mocked one must still be a JSON policy.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }
}

variables {
  jwt_secret = "a-test-secret-of-at-least-32-characters"
}

run "every_function_is_an_arm64_lambda_with_active_tracing_and_json_logs" {
  command = plan

  assert {
    condition     = length(aws_lambda_function.function) == 16
    error_message = "sixteen functions, as in sam-template.yaml"
  }
  assert {
    condition = alltrue([for f in aws_lambda_function.function :
      f.runtime == "provided.al2023" && f.architectures == tolist(["arm64"]) && f.handler == "bootstrap" &&
    f.tracing_config[0].mode == "Active" && f.logging_config[0].log_format == "JSON"])
    error_message = "every function runs the bootstrap on provided.al2023, arm64, traced, logging JSON"
  }
  assert {
    condition     = aws_lambda_function.function["identity"].memory_size == 1024 && aws_lambda_function.function["menu"].memory_size == 256
    error_message = "identity hashes passwords with 1 GB; the rest get SAM's 256 MB"
  }
  assert {
    condition     = alltrue([for k, g in aws_cloudwatch_log_group.function : g.name == "/gocoffee/gocoffee/${k}" && g.retention_in_days == 30])
    error_message = "each function logs to /gocoffee/<name>/<function>, kept 30 days by default"
  }
}

run "identity_signs_with_the_chosen_slot_and_every_http_function_trusts_both" {
  command = plan

  variables {
    token_signing_key = "B"
  }

  assert {
    condition     = aws_lambda_function.function["identity"].environment[0].variables["TOKEN_SIGNING_KEY_ID"] == aws_kms_key.token_key_b.arn
    error_message = "identity signs with slot B when token_signing_key is B"
  }
  assert {
    condition = alltrue([for f in ["identity", "menu", "orders", "kitchen", "payments", "analytics", "live", "ai"] :
    aws_lambda_function.function[f].environment[0].variables["TOKEN_KMS_KEY_IDS"] == "${aws_kms_key.token_key_a.arn},${aws_kms_key.token_key_b.arn}"])
    error_message = "every HTTP function checks tokens against both slots"
  }
  assert {
    condition     = aws_kms_key.token_key_a.customer_master_key_spec == "RSA_2048" && aws_kms_key.token_key_b.key_usage == "SIGN_VERIFY"
    error_message = "the token keys are RSA signing keys"
  }
}

run "the_authorizer_requires_the_configured_issuer_and_audience" {
  command = plan

  variables {
    token_issuer   = "https://api.cafe.example"
    token_audience = "cafe-api"
  }

  assert {
    condition = (aws_apigatewayv2_authorizer.token_authorizer.authorizer_type == "JWT" && aws_apigatewayv2_authorizer.token_authorizer.jwt_configuration[0].issuer == "https://api.cafe.example" &&
    aws_apigatewayv2_authorizer.token_authorizer.jwt_configuration[0].audience == toset(["cafe-api"]))
    error_message = "the authorizer checks the tokens' iss and aud as the functions issue them"
  }
  assert {
    condition     = aws_apigatewayv2_authorizer.token_authorizer.identity_sources == toset(["$request.header.Authorization"])
    error_message = "the token comes from the Authorization header"
  }
}

run "a_token_slot_other_than_a_or_b_is_refused" {
  command = plan

  variables {
    token_signing_key = "C"
  }

  expect_failures = [var.token_signing_key]
}

run "every_route_reaches_its_function_with_payload_2" {
  command = plan

  assert {
    condition     = length(aws_apigatewayv2_route.route) == 28 && contains(keys(aws_apigatewayv2_route.route), "$default")
    error_message = "twenty-eight routes, the $default one included"
  }
  assert {
    condition = alltrue([for k, r in aws_apigatewayv2_route.route :
    r.authorization_type == (startswith(k, "ANY /api/v1/orders") || startswith(k, "ANY /api/v1/kitchen") || startswith(k, "ANY /api/v1/payments") || startswith(k, "ANY /api/v1/analytics") || startswith(k, "ANY /api/v1/ai") || !startswith(k, "ANY ") && k != "$default" ? "JWT" : "NONE")])
    error_message = "the JWT authorizer guards the orders, kitchen, payments, analytics and ai prefixes and every method-specific route; the rest are public"
  }
  assert {
    condition     = alltrue([for i in aws_apigatewayv2_integration.function : i.integration_type == "AWS_PROXY" && i.payload_format_version == "2.0"])
    error_message = "every integration is a Lambda proxy with payload format 2.0"
  }
  assert {
    condition     = aws_apigatewayv2_stage.default.default_route_settings[0].throttling_rate_limit == 100 && aws_apigatewayv2_stage.default.default_route_settings[0].throttling_burst_limit == 200
    error_message = "the stage caps every route at 100 req/s, bursts of 200"
  }
}

run "stream_consumers_retry_bisect_and_dead_letter" {
  command = plan

  assert {
    condition = alltrue([for m in aws_lambda_event_source_mapping.stream :
      m.bisect_batch_on_function_error && m.maximum_retry_attempts == 5 && m.maximum_record_age_in_seconds == 86400 &&
    m.function_response_types == toset(["ReportBatchItemFailures"]) && length(m.destination_config) == 1])
    error_message = "every stream mapping reports partial failures, bisects, retries 5 times and has an on-failure queue"
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.kitchen_queue.redrive_policy).maxReceiveCount == 5
    error_message = "a kitchen ticket goes to its dead-letter queue after five receives"
  }
}

run "no_statement_grants_every_action_or_every_resource_but_xray_and_list_streams" {
  command = plan

  assert {
    condition = alltrue(flatten([for f, stmts in local.function_statements : [for s in stmts :
    !contains(s.actions, "*") && (!contains(s.resources, "*") || s.actions == ["kinesis:ListStreams"])]]))
    error_message = "least privilege: no wildcard action; a wildcard resource only for kinesis:ListStreams"
  }
}

run "a_short_jwt_secret_is_refused" {
  command = plan
  variables {
    jwt_secret = "too-short"
  }
  expect_failures = [var.jwt_secret]
}

run "a_retention_cloudwatch_does_not_offer_is_refused" {
  command = plan
  variables {
    log_retention_days = 42
  }
  expect_failures = [var.log_retention_days]
}

run "every_function_has_error_and_throttle_alarms_and_every_alarm_notifies_the_topic" {
  command = plan

  assert {
    condition     = alltrue(flatten([for f, _ in aws_lambda_function.function : [contains(keys(aws_cloudwatch_metric_alarm.alarm), "${f}-errors"), contains(keys(aws_cloudwatch_metric_alarm.alarm), "${f}-throttles")]]))
    error_message = "each function has an errors and a throttles alarm"
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.alarm) == 45
    error_message = "45 alarms, as in sam-template.yaml"
  }
  assert {
    condition     = alltrue([for a in aws_cloudwatch_metric_alarm.alarm : a.alarm_actions == toset([aws_sns_topic.alarm_topic.arn]) && a.ok_actions == toset([aws_sns_topic.alarm_topic.arn])])
    error_message = "every alarm notifies the topic when it fires and when it clears"
  }
  assert {
    condition     = length(aws_sns_topic_subscription.alarm_email) == 0
    error_message = "no email subscription without an alarm_email"
  }
}

run "live_status_is_a_websocket_api_authorized_on_connect_and_pushed_to_by_the_notifier" {
  command = plan

  assert {
    condition     = aws_apigatewayv2_api.live_socket_api.protocol_type == "WEBSOCKET" && aws_apigatewayv2_api.live_socket_api.route_selection_expression == "$request.body.action"
    error_message = "a WebSocket API routing on the message's action"
  }
  assert {
    condition = (aws_apigatewayv2_route.live_connect.authorization_type == "CUSTOM" && aws_apigatewayv2_authorizer.live_socket_authorizer.authorizer_type == "REQUEST" &&
    aws_apigatewayv2_authorizer.live_socket_authorizer.identity_sources == toset(["route.request.querystring.ticket"]))
    error_message = "$connect is authorized by the ticket in the query string"
  }
  assert {
    condition     = aws_apigatewayv2_route.live_message.route_key == "$default" && aws_apigatewayv2_route_response.live_message.route_response_key == "$default"
    error_message = "every message is the function's, and its answer goes back on the connection"
  }
  assert {
    condition     = aws_lambda_event_source_mapping.notifier.starting_position == "LATEST" && aws_lambda_event_source_mapping.notifier.maximum_record_age_in_seconds == 300
    error_message = "the notifier follows the orders stream from its tip and gives up on a push after five minutes"
  }
  assert {
    condition     = aws_dynamodb_table.connections_table.ttl[0].attribute_name == "expires_at" && aws_dynamodb_table.connections_table.ttl[0].enabled
    error_message = "connections expire by TTL"
  }
}

run "an_alarm_email_is_subscribed_to_the_topic" {
  command = plan
  variables {
    alarm_email = "ops@example.com"
  }

  assert {
    condition     = aws_sns_topic_subscription.alarm_email[0].protocol == "email" && aws_sns_topic_subscription.alarm_email[0].endpoint == "ops@example.com"
    error_message = "the address is subscribed by email"
  }
}

run "backup_selects_the_table_unless_turned_off_where_the_api_lacks_selections" {
  command = plan

  assert {
    condition     = length(aws_backup_selection.backup_selection) == 1 && length(aws_cloudwatch_log_subscription_filter.function) == 16
    error_message = "AWS Backup selects the table, and every function's log group is archived"
  }
}

run "the_ai_function_publishes_on_its_own_stream_and_may_call_only_the_bedrock_models_it_is_given" {
  command = plan
  variables {
    ai_model           = "anthropic.claude-3-haiku-20240307-v1:0"
    ai_embedding_model = "amazon.titan-embed-text-v2:0"
  }

  assert {
    condition = (aws_kinesis_stream.ai_stream.stream_mode_details[0].stream_mode == "ON_DEMAND" && aws_kinesis_stream.ai_stream.retention_period == 168 &&
    aws_kinesis_stream.ai_stream.encryption_type == "KMS" && aws_kinesis_stream.ai_stream.kms_key_id == "alias/aws/kinesis")
    error_message = "the ai stream is on demand, encrypted and keeps a week, as the other streams"
  }
  assert {
    condition = toset(one([for s in local.function_statements["ai"] : s.resources if contains(s.actions, "bedrock:InvokeModel")])) == toset([
      "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
      "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
    ])
    error_message = "InvokeModel on the two models named, and on no other"
  }
  assert {
    condition = (aws_lambda_function.function["ai"].environment[0].variables["AI_MODEL"] == "anthropic.claude-3-haiku-20240307-v1:0" &&
    aws_lambda_function.function["ai"].environment[0].variables["AI_EMBEDDING_MODEL"] == "amazon.titan-embed-text-v2:0")
    error_message = "the function is told the models its role may call"
  }
  assert {
    condition     = aws_lambda_function.function["ai"].timeout == 25 && aws_apigatewayv2_route.route["ANY /api/v1/ai/{proxy+}"].authorization_type == "JWT"
    error_message = "the ai function answers under /api/v1/ai behind the JWT authorizer, within 25 s"
  }
}

run "without_models_the_ai_function_may_not_call_bedrock" {
  command = plan

  assert {
    condition     = length([for s in local.function_statements["ai"] : s if contains(s.actions, "bedrock:InvokeModel")]) == 0
    error_message = "no Bedrock statement when neither ai_model nor ai_embedding_model is set"
  }
  assert {
    condition     = length(flatten([for f, stmts in local.function_statements : [for s in stmts : s if anytrue([for a in s.actions : startswith(a, "bedrock:")])]])) == 0
    error_message = "no other function may call Bedrock"
  }
}

# One role per function, naming only the actions and resources that function uses (no managed
# policies), as in sam-template.yaml. Every function writes its own log group and X-Ray segments.

locals {
  table_and_indexes = [aws_dynamodb_table.table.arn, "${aws_dynamodb_table.table.arn}/index/*"]
  # Order events go out on both streams.
  order_streams = [aws_kinesis_stream.orders_stream.arn, aws_kinesis_stream.analytics_stream.arn]
  stream_read   = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"]

  # The gateway's rate limits: conditional updates of the RATE# items, no others.
  rate_limit_statement = {
    actions    = ["dynamodb:UpdateItem"]
    resources  = [aws_dynamodb_table.table.arn]
    conditions = [{ test = "ForAllValues:StringLike", variable = "dynamodb:LeadingKeys", values = ["RATE#*"] }]
  }

  # The Bedrock models the ai function may call (var.ai_model, var.ai_embedding_model): those set.
  ai_models = [for m in [var.ai_model, var.ai_embedding_model] : "arn:${data.aws_partition.current.partition}:bedrock:${data.aws_region.current.name}::foundation-model/${m}" if m != ""]

  # What each function does beyond logging and tracing.
  function_statements = {
    health = []
    web    = []
    identity = [
      local.rate_limit_statement,
      local.token_keys_statement,
      # Signing tokens, with either slot (var.token_signing_key picks).
      { actions = ["kms:Sign"], resources = [aws_kms_key.token_key_a.arn, aws_kms_key.token_key_b.arn] },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"], resources = [aws_dynamodb_table.table.arn] },
    ]
    menu = [
      local.rate_limit_statement,
      local.token_keys_statement,
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      # Presigned picture URLs act with the signer's rights: uploads and downloads under menu/,
      # nothing else in the bucket.
      { actions = ["s3:PutObject", "s3:GetObject"], resources = ["${aws_s3_bucket.images_bucket.arn}/menu/*"] },
    ]
    orders = [
      local.rate_limit_statement,
      local.token_keys_statement,
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = local.table_and_indexes },
      { actions = ["kinesis:PutRecords"], resources = local.order_streams },
    ]
    kitchen = [
      local.rate_limit_statement,
      local.token_keys_statement,
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = local.table_and_indexes },
      { actions = ["kinesis:PutRecords"], resources = local.order_streams },
      { actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [aws_sqs_queue.kitchen_queue.arn] },
    ]
    # The saga's order side (payment requested, paid, cancelled by the system), its
    # processed-event ledger and the relay of what it wrote.
    order-consumer = [
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = local.stream_read, resources = [aws_kinesis_stream.orders_stream.arn, aws_kinesis_stream.payments_stream.arn] },
      { actions = ["kinesis:ListStreams"], resources = ["*"] },
      { actions = ["kinesis:PutRecords"], resources = local.order_streams },
      { actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.kitchen_queue.arn, aws_sqs_queue.orders_dead_letter_queue.arn] },
    ]
    payments = [
      local.rate_limit_statement,
      local.token_keys_statement,
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = ["kinesis:PutRecords"], resources = [aws_kinesis_stream.payments_stream.arn] },
    ]
    payments-consumer = [
      # UpdateItem: the deposit index counter.
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = local.stream_read, resources = [aws_kinesis_stream.orders_stream.arn] },
      { actions = ["kinesis:ListStreams"], resources = ["*"] },
      { actions = ["kinesis:PutRecords"], resources = [aws_kinesis_stream.payments_stream.arn] },
      { actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.payments_dead_letter_queue.arn] },
    ]
    payments-watcher = [
      # UpdateItem: the chain cursors.
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = ["kinesis:PutRecords"], resources = [aws_kinesis_stream.payments_stream.arn] },
    ]
    # The read side reads the write side's orders and logs (a rebuild, a mended gap), never writes it.
    analytics = [
      local.rate_limit_statement,
      local.token_keys_statement,
      { actions = ["dynamodb:GetItem", "dynamodb:Query"], resources = local.table_and_indexes },
      # Scan and BatchWriteItem: a rebuild first forgets every order.
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:BatchWriteItem"], resources = [aws_dynamodb_table.analytics_table.arn, "${aws_dynamodb_table.analytics_table.arn}/index/*"] },
    ]
    analytics-consumer = [
      { actions = ["dynamodb:GetItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem"], resources = [aws_dynamodb_table.analytics_table.arn] },
      { actions = local.stream_read, resources = [aws_kinesis_stream.analytics_stream.arn] },
      { actions = ["kinesis:ListStreams"], resources = ["*"] },
      { actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.analytics_dead_letter_queue.arn] },
    ]
    live = [
      local.rate_limit_statement,
      local.token_keys_statement,
      # An order's customer, before they may follow it.
      { actions = ["dynamodb:GetItem", "dynamodb:Query"], resources = [aws_dynamodb_table.table.arn] },
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchWriteItem"], resources = [aws_dynamodb_table.connections_table.arn] },
    ]
    notifier = [
      { actions = ["dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchWriteItem"], resources = [aws_dynamodb_table.connections_table.arn, "${aws_dynamodb_table.connections_table.arn}/index/*"] },
      { actions = local.stream_read, resources = [aws_kinesis_stream.orders_stream.arn] },
      { actions = ["kinesis:ListStreams"], resources = ["*"] },
      # Pushes to the stage's connections, and nothing else on the API.
      { actions = ["execute-api:ManageConnections"], resources = ["${aws_apigatewayv2_stage.live_socket_stage.execution_arn}/POST/@connections/*"] },
    ]
    reconciler = [
      # Query on the by-status index: the pending orders.
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = local.table_and_indexes },
      { actions = ["kinesis:PutRecords"], resources = concat(local.order_streams, [aws_kinesis_stream.payments_stream.arn]) },
    ]
    ai = concat([
      # Conditional updates of the gateway's rate limits (RATE#) and ADDs to the day's model usage
      # (AIUSAGE#), no others.
      {
        actions    = ["dynamodb:UpdateItem"]
        resources  = [aws_dynamodb_table.table.arn]
        conditions = [{ test = "ForAllValues:StringLike", variable = "dynamodb:LeadingKeys", values = ["AIUSAGE#*", "RATE#*"] }]
      },
      local.token_keys_statement,
      # Sessions, breakers, the ai outbox and its relay lease; Query on by-customer: the caller's
      # own orders.
      { actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = local.table_and_indexes },
      # The analytics agent reads the read model (by-day), never writes it.
      { actions = ["dynamodb:GetItem", "dynamodb:Query"], resources = [aws_dynamodb_table.analytics_table.arn, "${aws_dynamodb_table.analytics_table.arn}/index/*"] },
      { actions = ["kinesis:PutRecords"], resources = [aws_kinesis_stream.ai_stream.arn] },
      ],
      # Converse and embeddings (both InvokeModel) on the models set, and no others; no Bedrock at
      # all when neither is.
      length(local.ai_models) > 0 ? [{ actions = ["bedrock:InvokeModel"], resources = local.ai_models }] : [],
    )
  }
}

# Who may assume each role: one trust policy per AWS service that acts for Go Coffee.
data "aws_iam_policy_document" "assume" {
  for_each = toset(["lambda", "firehose", "logs", "backup", "scheduler"])

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${var.name}-${each.key}-role"
  assume_role_policy = data.aws_iam_policy_document.assume["lambda"].json
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    # The log group ARN without the ":*" of its streams would match no stream.
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    # X-Ray segments name no resource.
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.function_statements[each.key]
    content {
      actions   = statement.value.actions
      resources = statement.value.resources
      dynamic "condition" {
        for_each = lookup(statement.value, "conditions", [])
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = each.key
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

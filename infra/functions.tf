# Every function: one Lambda (provided.al2023, arm64, the bootstrap `make lambdas` zips), its own
# log group and its own role (iam.tf). What triggers each is in api.tf (routes), events.tf
# (stream and queue mappings) and schedules.tf.

locals {
  # Settings the payment functions share (PAYMENT_*), as in sam-template.yaml.
  payment_environment = {
    PAYMENT_XPUB                  = var.payment_xpub
    PAYMENT_CHAINS                = var.payment_chains
    PAYMENT_EXPIRY_SECONDS        = tostring(var.payment_expiry_seconds)
    PAYMENT_MONITOR_SECONDS       = tostring(var.payment_monitor_seconds)
    PAYMENT_MAX_PRICE_AGE_SECONDS = tostring(var.payment_max_price_age_seconds)
    PAYMENT_RPC_TIMEOUT_MS        = tostring(var.payment_rpc_timeout_ms)
  }

  # Keyed by binary name (the crate, the Spin component id). memory_size and timeout default to
  # 256 MB and 10 s (SAM's Globals). Only literals here: log groups and roles are made from this
  # map without waiting for the resources the environments name.
  functions = {
    health = {
      description = "Liveness, touching no store"
    }
    web = {
      description = "The web clients, the customer app and the kitchen display, their pages and fingerprinted assets, touching no store"
    }
    identity = {
      description = "Register, log in, refresh and log out; the current user; staff accounts"
      # argon2id hashing is CPU-bound: more memory buys more CPU.
      memory_size = 1024
    }
    menu = {
      description = "The menu; managers add and change items"
    }
    orders = {
      description = "Place (idempotently), read, list, cancel, collect and refund orders; publishes order events"
    }
    kitchen = {
      description = "The kitchen board and its transitions; accepts placed orders from the kitchen queue"
    }
    order-consumer = {
      description = "Reacts to order and payment events; requests payment for crypto orders, sends confirmed and paid orders to the kitchen queue, cancels orders whose payment failed"
    }
    payments = {
      description = "Crypto payment intents, transaction hints, refund addresses and recorded refunds"
    }
    payments-consumer = {
      description = "Makes a payment intent for each order that requests payment; closes the intent of a cancelled order"
    }
    payments-watcher = {
      description = "Every minute, scans each chain for transfers into monitored deposit addresses, credits final ones, settles expired intents, relays payment events"
      # Several chains, each a few RPC calls of up to payment_rpc_timeout_ms; still shorter than
      # the 30 s outbox relay lease.
      timeout = 25
    }
    analytics = {
      description = "Analytics reports for managers (sales, items, times, rates) from the read model; the administrator's rebuild"
    }
    analytics-consumer = {
      description = "Folds the analytics stream (every order event) into the analytics read model"
    }
    live = {
      description = "Live order status on the WebSocket API (its $connect authorizer, connections and subscriptions) and the tickets that open it"
    }
    notifier = {
      description = "Pushes each order event to the WebSocket connections following the order or the kitchen board"
    }
    reconciler = {
      description = "Every minute, relays what no request relayed and re-drives orders and payments stuck past reconcile_after_seconds (records a Kinesis mapping gave up on included)"
      timeout     = 25
    }
    ai = {
      description = "Answers natural-language requests with its agents (menu search, customer service, sales analytics), its models on Bedrock; publishes each answer as an insight on the ai stream"
      # A few model calls of up to 8 s each (the guard's timeout), then the relay of the insight.
      # Under API Gateway's 30 s, and under the outbox relay's 30 s lease (shared/aws/src/kinesis.rs).
      timeout = 25
    }
  }

  # What every function that records spans reads (all but health and web).
  telemetry_environment = {
    OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint
  }

  # Each function's environment: the resources and settings it reads.
  function_environment = {
    health = {}
    web    = {}
    identity = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME     = aws_dynamodb_table.table.name
      JWT_SECRET     = var.jwt_secret
      RATE_LIMITS    = var.rate_limits
      ADMIN_EMAIL    = var.admin_email
      ADMIN_PASSWORD = var.admin_password
      # Only identity signs tokens.
      TOKEN_SIGNING_KEY_ID = local.token_keys[var.token_signing_key].arn
    })
    menu = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME    = aws_dynamodb_table.table.name
      JWT_SECRET    = var.jwt_secret
      RATE_LIMITS   = var.rate_limits
      IMAGES_BUCKET = aws_s3_bucket.images_bucket.id
    })
    orders = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME       = aws_dynamodb_table.table.name
      ORDERS_STREAM    = aws_kinesis_stream.orders_stream.arn
      ANALYTICS_STREAM = aws_kinesis_stream.analytics_stream.arn
      JWT_SECRET       = var.jwt_secret
      RATE_LIMITS      = var.rate_limits
      PAYMENT_XPUB     = var.payment_xpub
      PAYMENT_CHAINS   = var.payment_chains
    })
    kitchen = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME       = aws_dynamodb_table.table.name
      ORDERS_STREAM    = aws_kinesis_stream.orders_stream.arn
      ANALYTICS_STREAM = aws_kinesis_stream.analytics_stream.arn
      JWT_SECRET       = var.jwt_secret
      RATE_LIMITS      = var.rate_limits
    })
    order-consumer = merge(local.telemetry_environment, {
      TABLE_NAME = aws_dynamodb_table.table.name
      # What it writes (a payment request, a paid order) goes out on the orders stream.
      ORDERS_STREAM         = aws_kinesis_stream.orders_stream.arn
      ANALYTICS_STREAM      = aws_kinesis_stream.analytics_stream.arn
      JWT_SECRET            = var.jwt_secret
      KITCHEN_QUEUE_URL     = aws_sqs_queue.kitchen_queue.url
      DEAD_LETTER_QUEUE_URL = aws_sqs_queue.orders_dead_letter_queue.url
    })
    payments = merge(local.payment_environment, local.telemetry_environment, local.token_environment, {
      TABLE_NAME      = aws_dynamodb_table.table.name
      PAYMENTS_STREAM = aws_kinesis_stream.payments_stream.arn
      JWT_SECRET      = var.jwt_secret
      RATE_LIMITS     = var.rate_limits
    })
    payments-consumer = merge(local.payment_environment, local.telemetry_environment, {
      TABLE_NAME            = aws_dynamodb_table.table.name
      PAYMENTS_STREAM       = aws_kinesis_stream.payments_stream.arn
      JWT_SECRET            = var.jwt_secret
      DEAD_LETTER_QUEUE_URL = aws_sqs_queue.payments_dead_letter_queue.url
    })
    payments-watcher = merge(local.payment_environment, local.telemetry_environment, {
      TABLE_NAME      = aws_dynamodb_table.table.name
      PAYMENTS_STREAM = aws_kinesis_stream.payments_stream.arn
      JWT_SECRET      = var.jwt_secret
    })
    analytics = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME      = aws_dynamodb_table.table.name
      ANALYTICS_TABLE = aws_dynamodb_table.analytics_table.name
      JWT_SECRET      = var.jwt_secret
      RATE_LIMITS     = var.rate_limits
    })
    analytics-consumer = merge(local.telemetry_environment, {
      TABLE_NAME            = aws_dynamodb_table.table.name
      ANALYTICS_TABLE       = aws_dynamodb_table.analytics_table.name
      JWT_SECRET            = var.jwt_secret
      DEAD_LETTER_QUEUE_URL = aws_sqs_queue.analytics_dead_letter_queue.url
    })
    live = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME        = aws_dynamodb_table.table.name
      CONNECTIONS_TABLE = aws_dynamodb_table.connections_table.name
      LIVE_SOCKET_URL   = local.live_socket_url
      JWT_SECRET        = var.jwt_secret
      RATE_LIMITS       = var.rate_limits
    })
    notifier = merge(local.telemetry_environment, {
      TABLE_NAME           = aws_dynamodb_table.table.name
      CONNECTIONS_TABLE    = aws_dynamodb_table.connections_table.name
      JWT_SECRET           = var.jwt_secret
      LIVE_CONNECTIONS_URL = local.live_connections_url
    })
    reconciler = merge(local.telemetry_environment, {
      TABLE_NAME              = aws_dynamodb_table.table.name
      ORDERS_STREAM           = aws_kinesis_stream.orders_stream.arn
      ANALYTICS_STREAM        = aws_kinesis_stream.analytics_stream.arn
      PAYMENTS_STREAM         = aws_kinesis_stream.payments_stream.arn
      JWT_SECRET              = var.jwt_secret
      RECONCILE_AFTER_SECONDS = tostring(var.reconcile_after_seconds)
    })
    ai = merge(local.telemetry_environment, local.token_environment, {
      TABLE_NAME         = aws_dynamodb_table.table.name
      ANALYTICS_TABLE    = aws_dynamodb_table.analytics_table.name
      AI_STREAM          = aws_kinesis_stream.ai_stream.arn
      JWT_SECRET         = var.jwt_secret
      RATE_LIMITS        = var.rate_limits
      AI_MODEL           = var.ai_model
      AI_EMBEDDING_MODEL = var.ai_embedding_model
    })
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.functions

  name              = "/gocoffee/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  # checkov:skip=CKV_AWS_158:Function logs carry ids and statuses, never tokens or passwords; CloudWatch encrypts them at rest with its own key.
  # checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default), chosen per deployment.
}

resource "aws_lambda_function" "function" {
  for_each = local.functions
  # checkov:skip=CKV_AWS_115:Reserved concurrency would take capacity from the account's unreserved pool (and fails on new accounts); the API's throttling bounds load.
  # checkov:skip=CKV_AWS_116:Invoked synchronously (API Gateway), by an event source mapping or by a schedule with retries off, so a function DLQ would never receive anything; stream and queue failures go to their own DLQs.
  # checkov:skip=CKV_AWS_117:Uses only AWS APIs over TLS with IAM auth; a VPC would add NAT cost and cold-start latency without protecting anything.
  # checkov:skip=CKV_AWS_173:Lambda encrypts environment variables at rest with its managed key; a customer key would not change who can read them.
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile and an AWS Signer job in the release pipeline; the zips are built and deployed by the same pipeline.

  function_name    = "${var.name}-${each.key}"
  description      = each.value.description
  role             = aws_iam_role.function[each.key].arn
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = "bootstrap"
  filename         = "${var.lambda_dir}/${each.key}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.lambda_dir}/${each.key}/bootstrap.zip")
  memory_size      = lookup(each.value, "memory_size", 256)
  timeout          = lookup(each.value, "timeout", 10)

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  dynamic "environment" {
    for_each = length(local.function_environment[each.key]) > 0 ? [local.function_environment[each.key]] : []
    content {
      variables = environment.value
    }
  }
}

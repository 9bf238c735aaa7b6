# The streams (Kinesis, on demand, encrypted, a week of retention) and the queues (SQS, SSE-SQS).

resource "aws_kinesis_stream" "orders_stream" {
  name             = "${var.name}-orders-stream"
  retention_period = 168
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}

# Payment intent events (partition key = order id), read by the order consumer.
resource "aws_kinesis_stream" "payments_stream" {
  name             = "${var.name}-payments-stream"
  retention_period = 168
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}

# Every order event again (the relay publishes each on both), for the analytics read model and
# the events archive in S3.
resource "aws_kinesis_stream" "analytics_stream" {
  name             = "${var.name}-analytics-stream"
  retention_period = 168
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}

# The ai function's insights, one per answer (partition key = the insight's id). Nothing reads
# it yet; it keeps a week of them for the agents that will.
resource "aws_kinesis_stream" "ai_stream" {
  name             = "${var.name}-ai-stream"
  retention_period = 168
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }
}

resource "aws_sqs_queue" "kitchen_queue" {
  name = "${var.name}-kitchen-queue"
  # At least six times the kitchen function's timeout, as Lambda recommends for SQS sources.
  visibility_timeout_seconds = 60
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.kitchen_dead_letter_queue.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue" "kitchen_dead_letter_queue" {
  name                      = "${var.name}-kitchen-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# Poison records from the orders stream (sent by the consumer with the reason) and batches the
# event source mapping gave up on (its on-failure destination).
resource "aws_sqs_queue" "orders_dead_letter_queue" {
  name                      = "${var.name}-orders-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# Orders stream records the payment consumer could never handle (with the reason), and its
# batches the event source mapping gave up on.
resource "aws_sqs_queue" "payments_dead_letter_queue" {
  name                      = "${var.name}-payments-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

# Analytics stream records the projector could never fold (with the reason), and its batches
# the event source mapping gave up on.
resource "aws_sqs_queue" "analytics_dead_letter_queue" {
  name                      = "${var.name}-analytics-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

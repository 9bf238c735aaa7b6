# The event source mappings: the streams each consumer reads and the kitchen queue. A record a
# function reports failed is retried (bisecting the batch) five times, then its batch goes to the
# mapping's dead-letter queue; poison records are dead-lettered by the function itself.

locals {
  stream_mappings = {
    "order-consumer/orders" = {
      function   = "order-consumer"
      stream     = aws_kinesis_stream.orders_stream.arn
      on_failure = aws_sqs_queue.orders_dead_letter_queue.arn
    }
    "order-consumer/payments" = {
      function   = "order-consumer"
      stream     = aws_kinesis_stream.payments_stream.arn
      on_failure = aws_sqs_queue.orders_dead_letter_queue.arn
    }
    "payments-consumer/orders" = {
      function   = "payments-consumer"
      stream     = aws_kinesis_stream.orders_stream.arn
      on_failure = aws_sqs_queue.payments_dead_letter_queue.arn
    }
    "analytics-consumer/analytics" = {
      function   = "analytics-consumer"
      stream     = aws_kinesis_stream.analytics_stream.arn
      on_failure = aws_sqs_queue.analytics_dead_letter_queue.arn
    }
  }
}

resource "aws_lambda_event_source_mapping" "stream" {
  for_each = local.stream_mappings

  function_name                      = aws_lambda_function.function[each.value.function].arn
  event_source_arn                   = each.value.stream
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = 100
  maximum_batching_window_in_seconds = 1
  parallelization_factor             = 1
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = 5
  maximum_record_age_in_seconds      = 86400

  destination_config {
    on_failure {
      destination_arn = each.value.on_failure
    }
  }

  # Lambda checks at creation that the function's role may read the source.
  depends_on = [aws_iam_role_policy.function]
}

resource "aws_lambda_event_source_mapping" "kitchen_queue" {
  function_name                      = aws_lambda_function.function["kitchen"].arn
  event_source_arn                   = aws_sqs_queue.kitchen_queue.arn
  batch_size                         = 10
  maximum_batching_window_in_seconds = 1
  function_response_types            = ["ReportBatchItemFailures"]

  depends_on = [aws_iam_role_policy.function]
}

# Alarms, to the alarm topic (and the email subscribed to it, if any): each function's errors and
# throttles, the stream consumers' lag, dead letters, the kitchen queue's oldest ticket, the API's
# 5xx and p99 latency, and DynamoDB throttles. The same alarms as sam-template.yaml's, keyed by
# their logical ids in kebab case.

locals {
  function_alarms = merge([for f, _ in local.functions : {
    "${f}-errors" = {
      description = "${f} failed: a crash, a timeout or a batch it could not finish (stream batches are retried)"
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.function[f].function_name }
    }
    "${f}-throttles" = {
      description = "${f} was throttled: the account's or the function's concurrency ran out"
      namespace   = "AWS/Lambda"
      metric      = "Throttles"
      dimensions  = { FunctionName = aws_lambda_function.function[f].function_name }
    }
  }]...)

  consumer_alarms = { for f in ["order-consumer", "payments-consumer", "analytics-consumer", "notifier"] : "${f}-iterator-age" => {
    description = "${f} is more than a minute behind its streams"
    namespace   = "AWS/Lambda"
    metric      = "IteratorAge"
    dimensions  = { FunctionName = aws_lambda_function.function[f].function_name }
    statistic   = "Maximum"
    period      = 60
    evaluations = 5
    datapoints  = 3
    threshold   = 60000
    comparison  = "GreaterThanThreshold"
  } }

  dead_letter_alarms = {
    for key, q in {
      kitchen-dead-letter-queue   = { queue = aws_sqs_queue.kitchen_dead_letter_queue, what = "kitchen tickets" }
      orders-dead-letter-queue    = { queue = aws_sqs_queue.orders_dead_letter_queue, what = "order or payment events" }
      payments-dead-letter-queue  = { queue = aws_sqs_queue.payments_dead_letter_queue, what = "order events for the payment service" }
      analytics-dead-letter-queue = { queue = aws_sqs_queue.analytics_dead_letter_queue, what = "order events the analytics projector could not fold" }
    } :
    "${key}-depth" => {
      description = "${q.what} were dead-lettered: someone must look at them (README, dead letters)"
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = q.queue.name }
      statistic   = "Maximum"
    }
  }

  alarms = merge(local.function_alarms, local.consumer_alarms, local.dead_letter_alarms, {
    kitchen-queue-oldest-message = {
      description = "a kitchen ticket has waited over five minutes for the kitchen function"
      namespace   = "AWS/SQS"
      metric      = "ApproximateAgeOfOldestMessage"
      dimensions  = { QueueName = aws_sqs_queue.kitchen_queue.name }
      statistic   = "Maximum"
      threshold   = 300
      comparison  = "GreaterThanThreshold"
    }
    api-5xx = {
      description = "the API answered 5xx (the functions answer 4xx for bad input: a 5xx is a failure)"
      namespace   = "AWS/ApiGateway"
      metric      = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.http_api.id }
    }
    api-latency-p99 = {
      description        = "the API's p99 latency has been over a second"
      namespace          = "AWS/ApiGateway"
      metric             = "Latency"
      dimensions         = { ApiId = aws_apigatewayv2_api.http_api.id }
      extended_statistic = "p99"
      evaluations        = 3
      datapoints         = 2
      threshold          = 1000
      comparison         = "GreaterThanThreshold"
    }
    table-read-throttles = {
      description = "DynamoDB throttled reads of the table"
      namespace   = "AWS/DynamoDB"
      metric      = "ReadThrottleEvents"
      dimensions  = { TableName = aws_dynamodb_table.table.name }
    }
    table-write-throttles = {
      description = "DynamoDB throttled writes to the table"
      namespace   = "AWS/DynamoDB"
      metric      = "WriteThrottleEvents"
      dimensions  = { TableName = aws_dynamodb_table.table.name }
    }
  })
}

resource "aws_sns_topic" "alarm_topic" {
  # checkov:skip=CKV_AWS_26:CloudWatch cannot publish to a topic encrypted with the AWS managed SNS key, and alarm messages carry only alarm and metric names.
  name = "${var.name}-alarms"
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarm_topic.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "alarm" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = lookup(each.value, "extended_statistic", null) == null ? lookup(each.value, "statistic", "Sum") : null
  extended_statistic  = lookup(each.value, "extended_statistic", null)
  period              = lookup(each.value, "period", 300)
  evaluation_periods  = lookup(each.value, "evaluations", 1)
  datapoints_to_alarm = lookup(each.value, "datapoints", null)
  threshold           = lookup(each.value, "threshold", 1)
  comparison_operator = lookup(each.value, "comparison", "GreaterThanOrEqualToThreshold")
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarm_topic.arn]
  ok_actions          = [aws_sns_topic.alarm_topic.arn]
}

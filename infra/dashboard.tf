# The operations dashboard: the API, the functions, the stream consumers' lag, the queues and the
# table, on one page. The same widgets as sam-template.yaml's Dashboard.

locals {
  region = data.aws_region.current.name

  # A time series widget; x and y on CloudWatch's 24-column grid.
  dashboard_widgets = [
    for w in [
      { x = 0, y = 0, title = "API requests, 4xx and 5xx", stat = "Sum", period = 60, metrics = [
        for m in ["Count", "4xx", "5xx"] : ["AWS/ApiGateway", m, "ApiId", aws_apigatewayv2_api.http_api.id]
      ] },
      { x = 12, y = 0, title = "API latency p50 and p99 (ms)", stat = "p99", period = 60, metrics = [
        for s in ["p50", "p99"] : ["AWS/ApiGateway", "Latency", "ApiId", aws_apigatewayv2_api.http_api.id, { stat = s }]
      ] },
      { x = 0, y = 6, title = "Function errors", stat = "Sum", period = 60, metrics = [
        for f in aws_lambda_function.function : ["AWS/Lambda", "Errors", "FunctionName", f.function_name]
      ] },
      { x = 12, y = 6, title = "Function throttles", stat = "Sum", period = 60, metrics = [
        for f in aws_lambda_function.function : ["AWS/Lambda", "Throttles", "FunctionName", f.function_name]
      ] },
      { x = 0, y = 12, title = "Function duration p99 (ms)", stat = "p99", period = 60, metrics = [
        for f in aws_lambda_function.function : ["AWS/Lambda", "Duration", "FunctionName", f.function_name]
      ] },
      { x = 12, y = 12, title = "Stream consumer lag: iterator age (ms)", stat = "Maximum", period = 60, metrics = [
        for f in ["order-consumer", "payments-consumer", "analytics-consumer", "notifier"] : ["AWS/Lambda", "IteratorAge", "FunctionName", aws_lambda_function.function[f].function_name]
      ] },
      { x = 0, y = 18, title = "Queues: tickets waiting, oldest ticket (s), dead letters", stat = "Maximum", period = 300, metrics = concat(
        [for m in ["ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"] : ["AWS/SQS", m, "QueueName", aws_sqs_queue.kitchen_queue.name]],
        [for q in [aws_sqs_queue.kitchen_dead_letter_queue, aws_sqs_queue.orders_dead_letter_queue, aws_sqs_queue.payments_dead_letter_queue, aws_sqs_queue.analytics_dead_letter_queue] :
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q.name]],
      ) },
      { x = 12, y = 18, title = "Table: consumed capacity and throttles", stat = "Sum", period = 60, metrics = [
        for m in ["ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits", "ReadThrottleEvents", "WriteThrottleEvents"] :
        ["AWS/DynamoDB", m, "TableName", aws_dynamodb_table.table.name]
      ] },
    ] :
    {
      type   = "metric"
      x      = w.x
      y      = w.y
      width  = 12
      height = 6
      properties = {
        title   = w.title
        region  = local.region
        stat    = w.stat
        period  = w.period
        view    = "timeSeries"
        metrics = w.metrics
      }
    }
  ]
}

resource "aws_cloudwatch_dashboard" "dashboard" {
  dashboard_name = "${var.name}-operations"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

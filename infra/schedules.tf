# The payment watcher and the reconciler run every minute. A pass is not retried: the next tick
# is a minute away and starts where this one stopped; a failed pass counts in Errors.

locals {
  schedules = {
    payments-watcher = { expression = "rate(1 minute)", description = "One payment watcher pass" }
    reconciler       = { expression = "rate(1 minute)", description = "One reconciler pass" }
  }
}

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${var.name}-${each.key}"
  description         = each.value.description
  schedule_expression = each.value.expression
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule = aws_cloudwatch_event_rule.schedule[each.key].name
  arn  = aws_lambda_function.function[each.key].arn
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.schedules

  statement_id  = "schedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}

resource "aws_lambda_function_event_invoke_config" "schedule" {
  for_each = local.schedules

  function_name          = aws_lambda_function.function[each.key].function_name
  maximum_retry_attempts = 0
}

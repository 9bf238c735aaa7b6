# The same outputs as sam-template.yaml's, snake_case.

output "api_url" {
  description = "The HTTP API's base URL: the customer app at /, the kitchen display at /kitchen"
  value       = "${aws_apigatewayv2_api.http_api.api_endpoint}/"
}

output "live_socket_url" {
  description = "The WebSocket API live status connects to, with ?ticket= from POST /api/v1/live/tickets (README, Live order status)"
  value       = local.live_socket_url
}

output "connections_table_name" {
  description = "Live status's open WebSocket connections and their subscriptions"
  value       = aws_dynamodb_table.connections_table.name
}

output "table_name" {
  description = "The DynamoDB table"
  value       = aws_dynamodb_table.table.name
}

output "orders_stream_name" {
  description = "The stream order events are published on"
  value       = aws_kinesis_stream.orders_stream.name
}

output "payments_stream_name" {
  description = "The stream payment intent events are published on"
  value       = aws_kinesis_stream.payments_stream.name
}

output "payments_dead_letter_queue_url" {
  description = "Order events the payment consumer could not handle, and abandoned batches"
  value       = aws_sqs_queue.payments_dead_letter_queue.url
}

output "analytics_stream_name" {
  description = "The stream every order event is also published on, for analytics and the events archive"
  value       = aws_kinesis_stream.analytics_stream.name
}

output "analytics_table_name" {
  description = "The analytics read model"
  value       = aws_dynamodb_table.analytics_table.name
}

output "analytics_dead_letter_queue_url" {
  description = "Order events the analytics projector could not fold, and abandoned batches"
  value       = aws_sqs_queue.analytics_dead_letter_queue.url
}

output "ai_stream_name" {
  description = "The stream the ai function publishes its insights on"
  value       = aws_kinesis_stream.ai_stream.name
}

output "kitchen_queue_url" {
  description = "The kitchen's queue of placed orders"
  value       = aws_sqs_queue.kitchen_queue.url
}

output "kitchen_dead_letter_queue_url" {
  description = "Kitchen tickets that failed five times"
  value       = aws_sqs_queue.kitchen_dead_letter_queue.url
}

output "orders_dead_letter_queue_url" {
  description = "Poison order events and abandoned stream batches"
  value       = aws_sqs_queue.orders_dead_letter_queue.url
}

output "images_bucket_name" {
  description = "Menu images"
  value       = aws_s3_bucket.images_bucket.id
}

output "archive_bucket_name" {
  description = "Archived logs (logs/), order events (events/) and the table's nightly exports (table-exports/)"
  value       = aws_s3_bucket.archive_bucket.id
}

output "backup_vault_name" {
  description = "The table's nightly recovery points"
  value       = aws_backup_vault.backup_vault.name
}

output "alarm_topic_arn" {
  description = "Every alarm notifies this topic; subscribe a pager or a chat integration to it"
  value       = aws_sns_topic.alarm_topic.arn
}

output "dashboard_name" {
  description = "The CloudWatch dashboard of the deployment"
  value       = aws_cloudwatch_dashboard.dashboard.dashboard_name
}

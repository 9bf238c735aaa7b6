# Backups of the table beyond point-in-time recovery: AWS Backup recovery points every night,
# and a nightly export to the archive bucket (table-exports/) made by EventBridge Scheduler
# calling DynamoDB's ExportTableToPointInTime itself (a universal target: no code).

resource "aws_backup_vault" "backup_vault" {
  # checkov:skip=CKV_AWS_166:Recovery points of the table are encrypted with the table's own key (DynamoDB-owned); a customer key for the vault would add a key policy to run without changing who can restore.
  name = "${var.name}-backups"
}

resource "aws_backup_plan" "backup_plan" {
  name = "${var.name}-table"

  rule {
    rule_name         = "nightly"
    target_vault_name = aws_backup_vault.backup_vault.name
    schedule          = "cron(0 5 * * ? *)"
    start_window      = 60
    completion_window = 180
    lifecycle {
      delete_after = var.backup_retention_days
    }
  }
}

# AWS Backup's own managed policies: the documented way to let it snapshot and restore.
resource "aws_iam_role" "backup_role" {
  name               = "${var.name}-backup"
  assume_role_policy = data.aws_iam_policy_document.assume["backup"].json
}

resource "aws_iam_role_policy_attachment" "backup_role" {
  for_each = toset(["AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores"])

  role       = aws_iam_role.backup_role.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/${each.key}"
}

resource "aws_backup_selection" "backup_selection" {
  count = var.backup_selection ? 1 : 0

  name         = "table"
  plan_id      = aws_backup_plan.backup_plan.id
  iam_role_arn = aws_iam_role.backup_role.arn
  resources    = [aws_dynamodb_table.table.arn]
}

resource "aws_iam_role" "table_export_role" {
  name               = "${var.name}-table-export"
  assume_role_policy = data.aws_iam_policy_document.assume["scheduler"].json
}

data "aws_iam_policy_document" "table_export" {
  statement {
    actions   = ["dynamodb:ExportTableToPointInTime"]
    resources = [aws_dynamodb_table.table.arn]
  }
  statement {
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.archive_bucket.arn}/table-exports/*"]
  }
}

resource "aws_iam_role_policy" "table_export_role" {
  name   = "table-export"
  role   = aws_iam_role.table_export_role.id
  policy = data.aws_iam_policy_document.table_export.json
}

resource "aws_scheduler_schedule" "table_export_schedule" {
  # checkov:skip=CKV_AWS_297:The schedule's input holds only the table's ARN and the bucket's name, encrypted at rest by the service with its own key.
  name                = "${var.name}-table-export"
  description         = "Export the table to the archive bucket (table-exports/), DynamoDB JSON, every night"
  schedule_expression = "cron(0 4 * * ? *)"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:aws:scheduler:::aws-sdk:dynamodb:exportTableToPointInTime"
    role_arn = aws_iam_role.table_export_role.arn
    input = jsonencode({
      TableArn     = aws_dynamodb_table.table.arn
      S3Bucket     = aws_s3_bucket.archive_bucket.id
      S3Prefix     = "table-exports"
      ExportFormat = "DYNAMODB_JSON"
    })
    retry_policy {
      maximum_retry_attempts = 3
    }
  }
}

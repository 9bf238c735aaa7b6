# The log archive: every log group streams through Firehose into the archive bucket (logs/),
# which also takes the table's nightly exports (table-exports/, backups.tf). Both age into cheaper
# storage and expire. The same resources as sam-template.yaml's.

resource "aws_s3_bucket" "archive_bucket" {
  # checkov:skip=CKV_AWS_18:The archive is written only by Firehose and DynamoDB exports under this deployment's roles; CloudTrail data events are the audit trail if one is wanted.
  # checkov:skip=CKV_AWS_144:Logs and exports are kept in one region; a second copy would double their cost, and the table itself has point-in-time recovery and AWS Backup.
  # checkov:skip=CKV_AWS_145:Encrypted with SSE-S3 (AES256, bucket keys on); a customer managed key would not change who can read the archive.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to archived objects.
  bucket_prefix = "${var.name}-archive-"
}

resource "aws_s3_bucket_public_access_block" "archive_bucket" {
  bucket                  = aws_s3_bucket.archive_bucket.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive_bucket" {
  bucket = aws_s3_bucket.archive_bucket.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive_bucket" {
  bucket = aws_s3_bucket.archive_bucket.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "archive_bucket" {
  bucket = aws_s3_bucket.archive_bucket.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive_bucket" {
  bucket = aws_s3_bucket.archive_bucket.id

  rule {
    id     = "logs"
    status = "Enabled"
    filter {
      prefix = "logs/"
    }
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = 90
      storage_class = "GLACIER_IR"
    }
    expiration {
      days = var.log_archive_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  # The order events, kept for ad-hoc queries (Athena over events/year=/month=/day=/).
  rule {
    id     = "events"
    status = "Enabled"
    filter {
      prefix = "events/"
    }
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = 90
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "table-exports"
    status = "Enabled"
    filter {
      prefix = "table-exports/"
    }
    expiration {
      days = var.backup_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "tidy"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive_bucket]
}

data "aws_iam_policy_document" "archive_bucket" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive_bucket.arn, "${aws_s3_bucket.archive_bucket.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive_bucket" {
  bucket     = aws_s3_bucket.archive_bucket.id
  policy     = data.aws_iam_policy_document.archive_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.archive_bucket]
}

# CloudWatch Logs hands Firehose gzipped batches, stored as they come (no second compression).
resource "aws_kinesis_firehose_delivery_stream" "log_archive_stream" {
  # checkov:skip=CKV_AWS_241:Encrypted with an AWS owned key; records sit in the stream for minutes before they land in the (encrypted) bucket, and a customer key would not change who can read them.
  name        = "${var.name}-log-archive"
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "AWS_OWNED_CMK"
  }

  extended_s3_configuration {
    bucket_arn          = aws_s3_bucket.archive_bucket.arn
    role_arn            = aws_iam_role.log_archive_delivery_role.arn
    prefix              = "logs/"
    error_output_prefix = "logs-errors/"
    compression_format  = "UNCOMPRESSED"
    buffering_interval  = 300
    buffering_size      = 5
  }
}

resource "aws_iam_role" "log_archive_delivery_role" {
  name               = "${var.name}-log-archive-delivery"
  assume_role_policy = data.aws_iam_policy_document.assume["firehose"].json
}

data "aws_iam_policy_document" "log_archive_delivery" {
  statement {
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.archive_bucket.arn]
  }
  statement {
    actions   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.archive_bucket.arn}/logs/*", "${aws_s3_bucket.archive_bucket.arn}/logs-errors/*"]
  }
}

resource "aws_iam_role_policy" "log_archive_delivery_role" {
  name   = "log-archive-delivery"
  role   = aws_iam_role.log_archive_delivery_role.id
  policy = data.aws_iam_policy_document.log_archive_delivery.json
}

# The analytics stream into the archive, as gzipped JSON lines partitioned by the day they
# arrived (Hive style, for Athena or any engine that reads S3).
resource "aws_kinesis_firehose_delivery_stream" "events_archive_stream" {
  name        = "${var.name}-events-archive"
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = aws_kinesis_stream.analytics_stream.arn
    role_arn           = aws_iam_role.events_archive_delivery_role.arn
  }

  extended_s3_configuration {
    bucket_arn          = aws_s3_bucket.archive_bucket.arn
    role_arn            = aws_iam_role.events_archive_delivery_role.arn
    prefix              = "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
    error_output_prefix = "events-errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
    compression_format  = "GZIP"
    buffering_interval  = 300
    buffering_size      = 64
  }

  # Firehose checks at creation that its role may read the stream.
  depends_on = [aws_iam_role_policy.events_archive_delivery_role]
}

resource "aws_iam_role" "events_archive_delivery_role" {
  name               = "${var.name}-events-archive-delivery"
  assume_role_policy = data.aws_iam_policy_document.assume["firehose"].json
}

locals {
  # Through a local, as the functions' statements are: a data source that names a resource
  # directly is read only at apply whenever that resource has any change planned (a tag, say).
  events_archive_source = aws_kinesis_stream.analytics_stream.arn
}

data "aws_iam_policy_document" "events_archive_delivery" {
  statement {
    actions   = local.stream_read
    resources = [local.events_archive_source]
  }
  statement {
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.archive_bucket.arn]
  }
  statement {
    actions   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.archive_bucket.arn}/events/*", "${aws_s3_bucket.archive_bucket.arn}/events-errors/*"]
  }
}

resource "aws_iam_role_policy" "events_archive_delivery_role" {
  name   = "events-archive-delivery"
  role   = aws_iam_role.events_archive_delivery_role.id
  policy = data.aws_iam_policy_document.events_archive_delivery.json
}

resource "aws_iam_role" "log_subscription_role" {
  name               = "${var.name}-log-subscription"
  assume_role_policy = data.aws_iam_policy_document.assume["logs"].json
}

data "aws_iam_policy_document" "log_subscription" {
  statement {
    actions   = ["firehose:PutRecord", "firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.log_archive_stream.arn]
  }
}

resource "aws_iam_role_policy" "log_subscription_role" {
  name   = "log-archive-subscription"
  role   = aws_iam_role.log_subscription_role.id
  policy = data.aws_iam_policy_document.log_subscription.json
}

# Every log group: each function's and the API's access logs.
resource "aws_cloudwatch_log_subscription_filter" "function" {
  for_each = aws_cloudwatch_log_group.function

  name            = "archive"
  log_group_name  = each.value.name
  filter_pattern  = ""
  destination_arn = aws_kinesis_firehose_delivery_stream.log_archive_stream.arn
  role_arn        = aws_iam_role.log_subscription_role.arn
  depends_on      = [aws_iam_role_policy.log_subscription_role]
}

resource "aws_cloudwatch_log_subscription_filter" "api_access_logs" {
  name            = "archive"
  log_group_name  = aws_cloudwatch_log_group.api_access_logs.name
  filter_pattern  = ""
  destination_arn = aws_kinesis_firehose_delivery_stream.log_archive_stream.arn
  role_arn        = aws_iam_role.log_subscription_role.arn
  depends_on      = [aws_iam_role_policy.log_subscription_role]
}

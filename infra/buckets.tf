# Menu images. Clients upload and download directly with short-lived presigned URLs
# (shared/aws/src/s3.rs); nothing is public, and only TLS requests are allowed.

resource "aws_s3_bucket" "images_bucket" {
  # checkov:skip=CKV_AWS_18:Objects are only reached through presigned URLs the menu function issues; CloudTrail data events are the audit trail if one is wanted, without a second bucket.
  # checkov:skip=CKV_AWS_144:Pictures of menu items are re-uploaded if a region is lost; cross-region replication would double storage for nothing a café can't redo.
  # checkov:skip=CKV_AWS_145:Encrypted with SSE-S3 (AES256, bucket keys on); a customer managed key would not change who can read menu pictures.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to uploads: the menu function records a picture when the item is saved.
  bucket_prefix = "${var.name}-images-"
}

resource "aws_s3_bucket_public_access_block" "images_bucket" {
  bucket                  = aws_s3_bucket.images_bucket.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  rule {
    id     = "tidy"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.images_bucket]
}

resource "aws_s3_bucket_cors_configuration" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  cors_rule {
    allowed_methods = ["GET", "PUT"]
    allowed_origins = [var.allowed_origin]
    allowed_headers = ["content-type"]
    max_age_seconds = 3000
  }
}

data "aws_iam_policy_document" "images_bucket" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.images_bucket.arn, "${aws_s3_bucket.images_bucket.arn}/*"]
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

resource "aws_s3_bucket_policy" "images_bucket" {
  bucket = aws_s3_bucket.images_bucket.id
  policy = data.aws_iam_policy_document.images_bucket.json
  # A policy applied before the public access block could be refused as public.
  depends_on = [aws_s3_bucket_public_access_block.images_bucket]
}

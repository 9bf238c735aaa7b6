# Access tokens are RS256, signed by KMS so no private key sits in a function. Two key slots:
# var.token_signing_key says which signs; both are published (/.well-known/jwks.json) and trusted,
# so rotating is flipping it (README, "Access tokens and their keys").

locals {
  token_keys = { A = aws_kms_key.token_key_a, B = aws_kms_key.token_key_b }

  # What every HTTP function reads to check bearer tokens (sam-template.yaml gives the same).
  token_environment = {
    TOKEN_KMS_KEY_IDS = join(",", [aws_kms_key.token_key_a.arn, aws_kms_key.token_key_b.arn])
    TOKEN_ISSUER      = var.token_issuer
    TOKEN_AUDIENCE    = var.token_audience
  }

  # The tokens' iss, which the JWT authorizer requires: var.token_issuer (a custom domain), or the
  # HTTP API's own URL, which the functions derive from each request's API id when TOKEN_ISSUER
  # is empty.
  token_issuer = var.token_issuer != "" ? var.token_issuer : "https://${aws_apigatewayv2_api.http_api.id}.execute-api.${data.aws_region.current.name}.${data.aws_partition.current.dns_suffix}"

  # The token keys' public halves, to check bearer tokens.
  token_keys_statement = { actions = ["kms:GetPublicKey"], resources = [aws_kms_key.token_key_a.arn, aws_kms_key.token_key_b.arn] }
}

# The default key policy: the account administers the key and grants its use through IAM (each
# function's role names the actions it may take on it). In a key policy, "*" is this key alone.
data "aws_iam_policy_document" "token_key" {
  # checkov:skip=CKV_AWS_111:A key policy's "*" resource is the key itself; use is granted per role in iam.tf.
  # checkov:skip=CKV_AWS_356:A key policy's "*" resource is the key itself.
  # checkov:skip=CKV_AWS_109:The account root administering its own key is KMS's default key policy; roles get use, not management.
  statement {
    sid       = "TheAccountGrantsUseThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "token_key_a" {
  description              = "Signs Go Coffee access tokens (RS256), slot A"
  customer_master_key_spec = "RSA_2048"
  key_usage                = "SIGN_VERIFY"
  policy                   = data.aws_iam_policy_document.token_key.json
  # checkov:skip=CKV_AWS_7:KMS can't rotate asymmetric keys; tokens rotate by the token_signing_key slot (README, Access tokens and their keys).
}

resource "aws_kms_key" "token_key_b" {
  description              = "Signs Go Coffee access tokens (RS256), slot B"
  customer_master_key_spec = "RSA_2048"
  key_usage                = "SIGN_VERIFY"
  policy                   = data.aws_iam_policy_document.token_key.json
  # checkov:skip=CKV_AWS_7:KMS can't rotate asymmetric keys; tokens rotate by the token_signing_key slot (README, Access tokens and their keys).
}

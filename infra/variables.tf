# The deployment's settings: sam-template.yaml's Parameters, one variable each (snake_case), with
# the same defaults and limits. The parity check (tests/infra/parity.py) holds the two together.

variable "name" {
  description = "The deployment's name: SAM's stack name. Prefixes every resource name."
  type        = string
  default     = "gocoffee"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name is 2 to 31 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "lambda_dir" {
  description = "Where `make lambdas` put the functions' zips (<lambda_dir>/<function>/bootstrap.zip)."
  type        = string
  default     = "../target/lambda"
}

variable "jwt_secret" {
  description = "HMAC key for signed picture URLs, at least 32 bytes. (Access tokens are RS256, signed by KMS.)"
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.jwt_secret) >= 32
    error_message = "jwt_secret must be at least 32 characters."
  }
}

variable "token_signing_key" {
  description = "Which token key (token_key_a or token_key_b) signs new access tokens. Both are always published and trusted, so rotating is flipping this: tokens the other signed stay valid until they expire (README, \"Access tokens and their keys\")."
  type        = string
  default     = "A"

  validation {
    condition     = contains(["A", "B"], var.token_signing_key)
    error_message = "token_signing_key must be A or B."
  }
}

variable "token_issuer" {
  description = "The access tokens' iss: an https URL whose /.well-known/openid-configuration reaches the identity function (a custom domain). Empty: the HTTP API's own URL."
  type        = string
  default     = ""
}

variable "token_audience" {
  description = "The access tokens' aud, which the JWT authorizer requires."
  type        = string
  default     = "gocoffee-api"

  validation {
    condition     = length(var.token_audience) > 0
    error_message = "token_audience must not be empty."
  }
}

variable "admin_email" {
  description = "The first admin's email; the account is created on its first login."
  type        = string
  default     = ""
}

variable "admin_password" {
  description = "The first admin's password."
  type        = string
  sensitive   = true
  default     = ""
}

variable "otlp_endpoint" {
  description = "Where functions send OpenTelemetry spans (OTLP/HTTP), e.g. http://localhost:4318 with the ADOT collector layer attached, which forwards them to X-Ray; empty: no spans are exported (Lambda's own X-Ray segments stay on)."
  type        = string
  default     = ""
}

variable "allowed_origin" {
  description = "The origin browsers may call the API from (CORS)."
  type        = string
  default     = "*"
}

variable "payment_xpub" {
  description = "The account-level extended public key (xpub) deposit addresses are derived from (m/.../0/i). Empty: crypto payments are off and orders take only pay_at_counter. Not a secret that moves money, but it reveals every deposit address."
  type        = string
  sensitive   = true
  default     = ""
}

variable "payment_chains" {
  description = "The chains and assets crypto payments take, as JSON (README, \"Crypto payments\"). Empty: the written-down defaults (Ethereum, Polygon PoS, BNB Smart Chain, Arbitrum One)."
  type        = string
  default     = ""
}

variable "rate_limits" {
  description = "The gateway's per-client rate limits (README, \"Rate limits\"). Empty: the defaults (10 credential attempts, 60 changes and 300 reads a minute per client); `off`: none; or JSON such as {\"credentials\": {\"requests\": 10, \"per_seconds\": 60, \"burst\": 5}}."
  type        = string
  default     = ""
}

variable "payment_expiry_seconds" {
  description = "How long a payment intent waits for its money before it expires."
  type        = number
  default     = 900

  validation {
    condition     = var.payment_expiry_seconds >= 1 && var.payment_expiry_seconds <= 86400
    error_message = "payment_expiry_seconds is 1 to 86400."
  }
}

variable "payment_monitor_seconds" {
  description = "How long a deposit address is watched (late and extra money is recorded for refund)."
  type        = number
  default     = 86400

  validation {
    condition     = var.payment_monitor_seconds >= 1 && var.payment_monitor_seconds <= 2592000
    error_message = "payment_monitor_seconds is 1 to 2592000."
  }
}

variable "payment_max_price_age_seconds" {
  description = "The oldest price feed answer a native-coin quote may use."
  type        = number
  default     = 3900

  validation {
    condition     = var.payment_max_price_age_seconds >= 1 && var.payment_max_price_age_seconds <= 86400
    error_message = "payment_max_price_age_seconds is 1 to 86400."
  }
}

variable "payment_rpc_timeout_ms" {
  description = "The timeout of one JSON-RPC call to a chain's node."
  type        = number
  default     = 5000

  validation {
    condition     = var.payment_rpc_timeout_ms >= 1 && var.payment_rpc_timeout_ms <= 60000
    error_message = "payment_rpc_timeout_ms is 1 to 60000."
  }
}

variable "reconcile_after_seconds" {
  description = "How long an order (or its payment) may stay unchanged while it should move on before the reconciler re-drives it."
  type        = number
  default     = 60

  validation {
    condition     = var.reconcile_after_seconds >= 1 && var.reconcile_after_seconds <= 86400
    error_message = "reconcile_after_seconds is 1 to 86400."
  }
}

variable "ai_model" {
  description = "The Bedrock model the ai function phrases its answers with, through Converse: a foundation model id served on demand in the deployment's region, e.g. anthropic.claude-3-haiku-20240307-v1:0, which the account must have been given access to in the Bedrock console. Empty: no language model, and every answer comes from retrieval and templates (README, \"AI\")."
  type        = string
  default     = ""
}

variable "ai_embedding_model" {
  description = "The Bedrock embedding model the ai function routes and searches with beside BM25, e.g. amazon.titan-embed-text-v2:0 (model access as for ai_model). Empty: words alone."
  type        = string
  default     = ""
}

variable "log_archive_days" {
  description = "How long archived logs are kept in the archive bucket (they move to Infrequent Access after 30 days and Glacier Instant Retrieval after 90)."
  type        = number
  default     = 365

  validation {
    condition     = var.log_archive_days >= 91 && var.log_archive_days <= 3650
    error_message = "log_archive_days is 91 to 3650."
  }
}

variable "backup_retention_days" {
  description = "How long the table's nightly AWS Backup recovery points and S3 exports are kept."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 3650
    error_message = "backup_retention_days is 1 to 3650."
  }
}

variable "backup_selection" {
  description = "Whether AWS Backup selects the table (always, on AWS; off only where the API has no selections, as on moto server)."
  type        = bool
  default     = true
}

variable "alarm_email" {
  description = "Where alarm notifications are emailed (the address confirms the subscription). Empty - none; subscribe to the alarm_topic_arn output instead."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "How long function and API access logs are kept."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' retention periods."
  }
}

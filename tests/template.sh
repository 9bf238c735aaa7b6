#!/usr/bin/env bash
# Static checks of the AWS topology, offline: `sam validate --lint` (the SAM transform plus
# cfn-lint), cfn-lint on its own, and checkov's policies (every failed check must be skipped in
# the template with a written reason).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/tools.sh sam
tests/tools.sh checkov
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=${AWS_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-offline}

echo "== sam validate --lint"
.venv-sam/bin/sam validate --lint --template sam-template.yaml --region "$AWS_DEFAULT_REGION"
echo "== cfn-lint"
.venv-sam/bin/cfn-lint sam-template.yaml
echo "== checkov"
.venv-checkov/bin/checkov --file sam-template.yaml --framework cloudformation --skip-download --compact --quiet

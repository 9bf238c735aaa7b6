#!/usr/bin/env bash
# Static checks of infra/ (Terraform), offline: `terraform fmt -check`, `init` from the provider
# mirror, `validate`, `terraform test` (a mocked provider) and checkov (every failed check must be
# skipped in the code with a written reason). Applying infra/ to moto and holding it to
# sam-template.yaml is a Rust test (tests/tests/lambda.rs, tests/infra/parity.py).
# The plan hashes the zips infra/ deploys, so they must exist: the tests use `make lambdas-check`'s.
set -euo pipefail
cd "$(dirname "$0")/.."
TERRAFORM=${TERRAFORM:-/usr/local/bin/terraform}
MIRROR=${TERRAFORM_PROVIDER_MIRROR:-/opt/tf-plugins}
if [ ! -x "$TERRAFORM" ] || [ ! -d "$MIRROR/registry.terraform.io/hashicorp/aws" ]; then
  echo "== terraform: SKIPPED, no $TERRAFORM or no AWS provider in $MIRROR (infra/ is checked where both are)"
  exit 0
fi
tests/tools.sh checkov

state=target/terraform
mkdir -p "$state"
cat > "$state/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
RC
export TF_CLI_CONFIG_FILE=$PWD/$state/terraformrc TF_DATA_DIR=$PWD/$state/infra TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

echo "== terraform fmt -check"
"$TERRAFORM" -chdir=infra fmt -check -recursive -diff
echo "== terraform init"
"$TERRAFORM" -chdir=infra init -backend=false -input=false -no-color >/dev/null
echo "== terraform validate"
"$TERRAFORM" -chdir=infra validate -no-color
echo "== terraform test"
"$TERRAFORM" -chdir=infra test -no-color -var lambda_dir=../target/lambda-check
echo "== checkov (terraform)"
.venv-checkov/bin/checkov -d infra --framework terraform --skip-download --compact --quiet

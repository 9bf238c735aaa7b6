//! `infra/` applied to this test process's moto server, offline (the AWS provider comes from the
//! filesystem mirror at `/opt/tf-plugins`): the plan of what it created, held to the template by
//! `tests/infra/parity.py`, and the functions run against those resources, with the environments,
//! routes and mappings Terraform gave them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::aws::{Stack, clients, moto, moto_env};
use crate::lambda::{JwtAuthorizer, KinesisMapping, LambdaStack, Route, SocketWiring, Wiring};
use crate::workspace;

const TERRAFORM: &str = "/usr/local/bin/terraform";
const PROVIDER_MIRROR: &str = "/opt/tf-plugins";
/// The AWS services infra/ uses, all pointed at moto.
const SERVICES: [&str; 16] = [
    "apigatewayv2",
    "backup",
    "cloudwatch",
    "cloudwatchlogs",
    "dynamodb",
    "events",
    "firehose",
    "iam",
    "kinesis",
    "kms",
    "lambda",
    "s3",
    "scheduler",
    "sns",
    "sqs",
    "sts",
];
/// SAM resources moto server can't create, so the applied plan lacks them (infra/ turns them off
/// with a variable there).
const ABSENT_ON_MOTO: [&str; 1] = ["BackupSelection"];

/// What a test saw of an applied `infra/`.
pub struct Applied {
    pub dir: PathBuf,
    /// The deployment's name (`var.name`): every resource name starts with it.
    pub name: String,
    /// `terraform show -json` of a plan made right after the apply: every value known.
    pub plan: Value,
}

/// Why Terraform can't run here, if it can't: the tests that need it say so and stop.
pub fn unavailable() -> Option<String> {
    if !Path::new(TERRAFORM).exists() {
        return Some(format!("{TERRAFORM} is not installed"));
    }
    if !Path::new(PROVIDER_MIRROR).join("registry.terraform.io/hashicorp/aws").exists() {
        return Some(format!("no AWS provider in the mirror {PROVIDER_MIRROR}"));
    }
    None
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(TERRAFORM)
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", dir.join("terraformrc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "terraform {}:\n{text}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    text
}

/// Copies `infra/` to a folder of its own, points the provider at moto and applies it with
/// `variables` (plus the deployment's name and where the zips are).
pub fn apply_to_moto(test: &str, variables: Value) -> Applied {
    let dir = workspace().join("target/test-state").join(format!("terraform-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("terraform dir");
    for entry in std::fs::read_dir(workspace().join("infra")).expect("infra/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".tf") || name == ".terraform.lock.hcl" {
            std::fs::copy(&path, dir.join(&name)).expect("copy");
        }
    }
    std::fs::write(
        dir.join("terraformrc"),
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{PROVIDER_MIRROR}\"\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/hashicorp/*\"]\n  }}\n}}\n"
        ),
    )
    .expect("terraformrc");
    // An override file: infra/ itself stays as it deploys to AWS.
    let endpoints: String = SERVICES.iter().map(|s| format!("    {s} = \"{}\"\n", moto())).collect();
    std::fs::write(
        dir.join("moto_override.tf"),
        format!(
            "provider \"aws\" {{\n  region                      = \"us-east-1\"\n  access_key                  = \"testing\"\n  secret_key                  = \"testing\"\n  skip_credentials_validation = true\n  skip_metadata_api_check     = true\n  s3_use_path_style           = true\n  endpoints {{\n{endpoints}  }}\n}}\n"
        ),
    )
    .expect("override");
    let name = format!("{}{}", test.chars().filter(|c| c.is_ascii_lowercase()).take(12).collect::<String>(), std::process::id());
    let mut vars = variables;
    vars["name"] = json!(name);
    // `make lambdas-check`'s arm64 zips: the plan only hashes them.
    vars["lambda_dir"] = json!(workspace().join("target/lambda-check"));
    // moto server implements AWS Backup vaults and plans but no selections.
    vars["backup_selection"] = json!(false);
    std::fs::write(dir.join("terraform.tfvars.json"), vars.to_string()).expect("tfvars");

    run(&dir, &["init", "-backend=false", "-input=false", "-no-color"]);
    // Moto answers at once, but the provider polls (SQS attributes, Lambda state) with fixed
    // delays: many resources at a time keep the apply short.
    run(&dir, &["apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=50"]);
    run(&dir, &["plan", "-input=false", "-no-color", "-out=plan.bin"]);
    let plan = run(&dir, &["show", "-json", "plan.bin"]);
    std::fs::write(dir.join("plan.json"), &plan).expect("plan.json");
    Applied { dir, name, plan: serde_json::from_str(&plan).expect("plan JSON") }
}

/// A Terraform resource name as SAM's logical id: `kitchen_queue` -> `KitchenQueue`.
fn logical(name: &str) -> String {
    crate::aws::logical_id(&name.replace('_', "-"))
}

impl Applied {
    fn resources(&self, kind: &str) -> Vec<&Value> {
        self.plan["planned_values"]["root_module"]["resources"].as_array().expect("resources").iter().filter(|r| r["type"] == kind).collect()
    }

    /// The values of the one resource `kind.name` (`aws_s3_bucket.archive_bucket`).
    pub fn values(&self, kind: &str, name: &str) -> &Value {
        let found = self.resources(kind).into_iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {kind}.{name} in the plan"));
        &found["values"]
    }

    /// `tests/infra/parity.py` on this plan: Ok with its summary, or Err with every difference.
    pub fn parity(&self) -> Result<String, String> {
        let out = Command::new(workspace().join(".venv/bin/python"))
            .arg(workspace().join("tests/infra/parity.py"))
            .arg(self.dir.join("plan.json"))
            .arg("--template")
            .arg(workspace().join("sam-template.yaml"))
            .args(ABSENT_ON_MOTO.iter().flat_map(|id| ["--absent", id]))
            .args(["--absent-reason", "moto server has no AWS Backup selections (infra/tests checks the selection with a mocked provider)"])
            .output()
            .expect("run parity.py");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() { Ok(text) } else { Err(text) }
    }

    /// The table, streams, queues, bucket and keys Terraform created, keyed by SAM's logical ids.
    pub fn stack(&self) -> Stack {
        let tables: HashMap<String, String> =
            self.resources("aws_dynamodb_table").iter().map(|r| (logical(r["name"].as_str().unwrap_or_default()), text(&r["values"]["name"]))).collect();
        let table = tables["Table"].clone();
        let streams: HashMap<String, (String, String)> = self
            .resources("aws_kinesis_stream")
            .iter()
            .map(|r| (logical(r["name"].as_str().unwrap_or_default()), (text(&r["values"]["name"]), text(&r["values"]["arn"]))))
            .collect();
        let queues: HashMap<String, String> =
            self.resources("aws_sqs_queue").iter().map(|r| (logical(r["name"].as_str().unwrap_or_default()), text(&r["values"]["url"]))).collect();
        let bucket = text(&self.resources("aws_s3_bucket")[0]["values"]["bucket"]);
        let (stream, stream_arn) = streams["OrdersStream"].clone();
        let keys: HashMap<String, String> =
            self.resources("aws_kms_key").iter().map(|r| (logical(r["name"].as_str().unwrap_or_default()), text(&r["values"]["arn"]))).collect();
        Stack { clients: clients(), table, tables, stream, stream_arn, streams, queues, bucket, keys }
    }

    /// Each function's environment as Terraform set it, plus moto's connection settings.
    pub fn environments(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.resources("aws_lambda_function")
            .iter()
            .map(|r| {
                let mut env = moto_env();
                if let Some(vars) = r["values"]["environment"][0]["variables"].as_object() {
                    env.extend(vars.iter().map(|(k, v)| (k.clone(), text(v))));
                }
                (text(&r["index"]), env)
            })
            .collect()
    }

    /// The function a Lambda ARN (or an API Gateway integration URI naming one) is.
    fn function_of(&self, arn: &str) -> String {
        let prefix = format!(":function:{}-", self.name);
        let rest = &arn[arn.find(&prefix).map(|i| i + prefix.len()).unwrap_or_else(|| panic!("{arn} names no function of {}", self.name))..];
        rest.split(['/', ':']).next().unwrap_or(rest).to_owned()
    }

    /// The routes, mappings and batch sizes Terraform created.
    pub fn wiring(&self, stack: &Stack) -> Wiring {
        let integrations: HashMap<String, String> = self
            .resources("aws_apigatewayv2_integration")
            .iter()
            .map(|r| (text(&r["values"]["id"]), self.function_of(r["values"]["integration_uri"].as_str().unwrap_or_default())))
            .collect();
        let apis = self.resources("aws_apigatewayv2_api");
        let api_of = |protocol: &str| apis.iter().find(|r| r["values"]["protocol_type"] == protocol).map(|r| text(&r["values"]["id"]));
        let api_id = api_of("HTTP").expect("the HTTP API");
        let mut routes: Vec<Route> = self
            .resources("aws_apigatewayv2_route")
            .iter()
            .filter(|r| text(&r["values"]["api_id"]) == api_id)
            .map(|r| Route {
                key: text(&r["values"]["route_key"]),
                function: integrations[text(&r["values"]["target"]).trim_start_matches("integrations/")].clone(),
                authorized: r["values"]["authorization_type"] == "JWT",
            })
            .collect();
        routes.sort();
        let authorizers: Vec<_> = self.resources("aws_apigatewayv2_authorizer").into_iter().filter(|r| r["values"]["authorizer_type"] == "JWT").collect();
        assert!(authorizers.len() <= 1, "one JWT authorizer");
        let authorizer = authorizers.first().map(|r| {
            let jwt = &r["values"]["jwt_configuration"][0];
            JwtAuthorizer { issuer: text(&jwt["issuer"]), audience: jwt["audience"].as_array().expect("audience").iter().map(text).collect() }
        });
        let socket = api_of("WEBSOCKET").map(|id| {
            let of_api = |kind: &str| {
                self.resources(kind).into_iter().find(|r| text(&r["values"]["api_id"]) == id).unwrap_or_else(|| panic!("the WebSocket API's {kind}"))
            };
            let stage = text(&of_api("aws_apigatewayv2_stage")["values"]["name"]);
            let function = self.function_of(&text(&of_api("aws_apigatewayv2_integration")["values"]["integration_uri"]));
            SocketWiring { api_id: id.clone(), stage, function }
        });
        let by_arn = |arn: &str, of: &HashMap<String, String>| of.iter().find(|(_, a)| a.as_str() == arn).map(|(id, _)| id.clone());
        let stream_arns: HashMap<String, String> = stack.streams.iter().map(|(id, (_, arn))| (id.clone(), arn.clone())).collect();
        let queue_arns: HashMap<String, String> =
            self.resources("aws_sqs_queue").iter().map(|r| (logical(r["name"].as_str().unwrap_or_default()), text(&r["values"]["arn"]))).collect();
        let mut kinesis = Vec::new();
        let mut kitchen_batch_size = None;
        for r in self.resources("aws_lambda_event_source_mapping") {
            let v = &r["values"];
            let source = text(&v["event_source_arn"]);
            let function = self.function_of(&text(&v["function_arn"]));
            let batch_size = v["batch_size"].as_i64().expect("batch size") as i32;
            if let Some(stream) = by_arn(&source, &stream_arns) {
                let on_failure = v["destination_config"][0]["on_failure"][0]["destination_arn"].as_str().and_then(|a| by_arn(a, &queue_arns));
                kinesis.push(KinesisMapping { function, stream, batch_size, max_retries: v["maximum_retry_attempts"].as_i64().unwrap_or(-1), on_failure });
            } else {
                assert_eq!((function.as_str(), by_arn(&source, &queue_arns).as_deref()), ("kitchen", Some("KitchenQueue")), "a queue mapping");
                kitchen_batch_size = Some(batch_size);
            }
        }
        Wiring { api_id, routes, authorizer, kinesis, kitchen_batch_size: kitchen_batch_size.expect("the kitchen queue's mapping"), socket }
    }

    /// Every function on what Terraform created, as [`LambdaStack::start`] does on the template.
    pub fn launch(&self) -> LambdaStack {
        let stack = self.stack();
        let wiring = self.wiring(&stack);
        LambdaStack::launch(stack, self.environments(), wiring, true, self.dir.join("functions"))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A call to moto in a JSON protocol (CloudWatch Logs, ...), for the services the tests have no
/// SDK client for. moto doesn't check signatures; it reads the service and region from the
/// credential scope.
pub fn moto_json(service: &str, target: &str, body: Value) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent
        .post(moto())
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", &format!("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"))
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(status < 300, "{target}: {status} {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Every object under `prefix` in `bucket` on moto, gunzipped: `(key, contents)`. moto applies a
/// bucket policy's `Deny` without its condition, so the TLS-only policy (moto speaks plain HTTP)
/// would refuse every read: it is lifted first. Objects are read with presigned URLs, as a
/// client with the account's credentials would.
pub fn gzipped_objects(bucket: &str, prefix: &str) -> Vec<(String, String)> {
    use gocoffee_app::ports::ImageUrls as _;
    use std::io::Read as _;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent.delete(&format!("{}/{bucket}?policy", moto())).call().expect("delete the bucket policy");
    let listing = agent.get(&format!("{}/{bucket}?list-type=2&prefix={prefix}", moto())).call().expect("list").body_mut().read_to_string().expect("xml");
    let credentials = aws_credential_types::Credentials::new("testing", "testing", None, None, "tests");
    let signer = gocoffee_aws::S3Images::new(bucket, "us-east-1", credentials, Some(moto().to_owned()));
    listing
        .split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split("</Key>").next())
        .map(|key| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default();
            let url = signer.download_url(key, now, 300).unwrap_or_else(|e| panic!("{key}: {e:?}"));
            let mut resp = agent.get(&url).call().expect("get");
            let status = resp.status().as_u16();
            let bytes = resp.body_mut().read_to_vec().expect("bytes");
            assert_eq!(status, 200, "GET {key}: {}", String::from_utf8_lossy(&bytes));
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text).unwrap_or_else(|e| panic!("{key} is not gzipped: {e}"));
            (key.to_owned(), text)
        })
        .collect()
}

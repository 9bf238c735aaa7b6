//! AWS on the real wire protocol: a moto server per test process, and the template's table,
//! stream and queues created in it from `sam-template.yaml`'s own definitions, so the tests and
//! the template can't drift apart.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
use aws_sdk_sqs::types::QueueAttributeName;
use gocoffee_aws::Clients;
use serde_yaml::Value;

use crate::workspace;

/// The moto server this test process uses (started on first use, stopped when the process
/// exits). Its base URL.
pub fn moto() -> &'static str {
    static MOTO: OnceLock<String> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_moto() -> String {
    if let Ok(url) = std::env::var("GOCOFFEE_MOTO_URL") {
        return url;
    }
    // moto's own server, started through tests/moto_server.py: DynamoDB's requests one at a time,
    // so a transaction is atomic as in DynamoDB (the script says why).
    let python = workspace().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run `make test` (or tests/tools.sh) to install the test tools", python.display());
    let launcher = workspace().join("tests/moto_server.py");
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    // The server is started from a thread that never ends, with a parent-death signal, so it
    // goes away with this test process whatever way it ends.
    std::thread::spawn(move || {
        let mut cmd = Command::new(python);
        cmd.arg(launcher).args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        // AWS managed policies exist, as in an account (infra/ attaches AWS Backup's).
        cmd.env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true");
        #[allow(unsafe_code)]
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start moto_server");
        tx.send(child.id()).expect("report");
        // Lives as long as this process; reaped if it ever exits on its own.
        let _ = child.wait();
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("moto started");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{url}/moto-api/")).call().is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start on {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
    url
}

/// The environment a Lambda function gets, pointed at moto.
pub fn moto_env() -> Vec<(String, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("AWS_ENDPOINT_URL", moto()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub fn clients() -> Clients {
    let env: HashMap<String, String> = moto_env().into_iter().collect();
    Clients::new(&gocoffee_aws::AwsEnvironment::from_lookup(|name| env.get(name).cloned()).map(|aws| aws.sdk_config()).expect("sdk config"))
}

/// A KMS client on moto.
pub fn kms() -> aws_sdk_kms::Client {
    let env: HashMap<String, String> = moto_env().into_iter().collect();
    aws_sdk_kms::Client::new(&gocoffee_aws::AwsEnvironment::from_lookup(|name| env.get(name).cloned()).map(|aws| aws.sdk_config()).expect("sdk config"))
}

/// `sam-template.yaml`'s resources.
pub fn template_resources() -> serde_yaml::Mapping {
    let text = std::fs::read_to_string(workspace().join("sam-template.yaml")).expect("sam-template.yaml");
    let template: Value = serde_yaml::from_str(&text).expect("the template is YAML");
    template["Resources"].as_mapping().expect("Resources").clone()
}

fn properties<'a>(resources: &'a serde_yaml::Mapping, id: &str) -> &'a Value {
    &resources[id]["Properties"]
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// The resource a `!GetAtt X.Arn` names.
fn get_att_target(v: &Value) -> String {
    match v {
        Value::Tagged(t) if t.tag == "!GetAtt" => text(&t.value).split('.').next().expect("logical id").to_owned(),
        other => panic!("expected !GetAtt, got {other:?}"),
    }
}

fn key_schema(v: &Value) -> Vec<KeySchemaElement> {
    v.as_sequence()
        .expect("KeySchema")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(text(&k["AttributeName"]))
                .key_type(KeyType::from(text(&k["KeyType"]).as_str()))
                .build()
                .expect("key schema element")
        })
        .collect()
}

/// One test's copy of the template's state: its table, stream and queues, under names of its own.
pub struct Stack {
    pub clients: Clients,
    pub table: String,
    /// Every table by logical id (`Table`, `AnalyticsTable`): its name.
    pub tables: HashMap<String, String>,
    pub stream: String,
    pub stream_arn: String,
    /// Every stream by logical id (`OrdersStream`, `PaymentsStream`): its name and ARN.
    pub streams: HashMap<String, (String, String)>,
    /// Queue URLs by logical id (`KitchenQueue`, `KitchenDeadLetterQueue`, `OrdersDeadLetterQueue`).
    pub queues: HashMap<String, String>,
    /// The images bucket's name.
    pub bucket: String,
    /// Every KMS key by logical id (`TokenKeyA`, `TokenKeyB`): its ARN.
    pub keys: HashMap<String, String>,
}

impl Stack {
    pub async fn create(name: &str) -> Stack {
        let clients = clients();
        let resources = template_resources();
        // SQS queue names are at most 80 characters.
        let short: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(24).collect();
        let prefix = format!("{short}-{}", std::process::id());

        // Every table of the template, named after its logical id ("Table" keeps its old name).
        let mut tables = HashMap::new();
        let table_ids: Vec<String> = resources.iter().filter(|(_, r)| r["Type"] == "AWS::DynamoDB::Table").map(|(id, _)| text(id)).collect();
        for id in &table_ids {
            let name = if id == "Table" { format!("{prefix}-table") } else { format!("{prefix}-{id}") };
            create_table(&clients, properties(&resources, id), &name).await;
            tables.insert(id.clone(), name);
        }
        let table = tables.get("Table").cloned().expect("the template has Table");

        // Every stream of the template, named after its logical id.
        let mut streams = HashMap::new();
        let stream_ids: Vec<String> = resources.iter().filter(|(_, r)| r["Type"] == "AWS::Kinesis::Stream").map(|(id, _)| text(id)).collect();
        for id in &stream_ids {
            let name = format!("{prefix}-{id}");
            let k = properties(&resources, id);
            let mode = StreamMode::from(text(&k["StreamModeDetails"]["StreamMode"]).as_str());
            clients
                .kinesis
                .create_stream()
                .stream_name(&name)
                .stream_mode_details(StreamModeDetails::builder().stream_mode(mode).build().expect("mode"))
                .send()
                .await
                .expect("create stream");
            let hours = text(&k["RetentionPeriodHours"]).parse::<i32>().expect("hours");
            clients.kinesis.increase_stream_retention_period().stream_name(&name).retention_period_hours(hours).send().await.expect("retention");
            let arn = clients
                .kinesis
                .describe_stream_summary()
                .stream_name(&name)
                .send()
                .await
                .expect("describe stream")
                .stream_description_summary
                .expect("summary")
                .stream_arn;
            streams.insert(id.clone(), (name, arn));
        }
        let (stream, stream_arn) = streams.get("OrdersStream").cloned().expect("the template has OrdersStream");

        // Queues: dead-letter targets first, then redrive policies pointing at them.
        let mut queues = HashMap::new();
        let mut arns = HashMap::new();
        let queue_ids: Vec<String> = resources.iter().filter(|(_, r)| r["Type"] == "AWS::SQS::Queue").map(|(id, _)| text(id)).collect();
        for id in &queue_ids {
            let p = properties(&resources, id);
            let mut create = clients.sqs.create_queue().queue_name(format!("{prefix}-{id}"));
            for (attr, name) in
                [("VisibilityTimeout", QueueAttributeName::VisibilityTimeout), ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod)]
            {
                if !p[attr].is_null() {
                    create = create.attributes(name, text(&p[attr]));
                }
            }
            let url = create.send().await.expect("create queue").queue_url.expect("url");
            let arn = clients
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("queue attributes")
                .attributes
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .expect("arn");
            queues.insert(id.clone(), url);
            arns.insert(id.clone(), arn);
        }
        for id in &queue_ids {
            let redrive = &properties(&resources, id)["RedrivePolicy"];
            if redrive.is_null() {
                continue;
            }
            let target = &arns[&get_att_target(&redrive["deadLetterTargetArn"])];
            let policy = serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": text(&redrive["maxReceiveCount"])});
            clients
                .sqs
                .set_queue_attributes()
                .queue_url(&queues[id])
                .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
                .send()
                .await
                .expect("redrive policy");
        }
        // The bucket (S3 bucket names are lower case). Presigning needs no S3 client, so it is
        // created with a plain request, as moto allows.
        assert_eq!(resources["ImagesBucket"]["Type"], "AWS::S3::Bucket");
        let bucket = format!("{}-images", prefix.to_ascii_lowercase().replace('_', "-"));
        ureq::put(&format!("{}/{bucket}", moto())).send_empty().expect("create bucket");
        // KMS keys, with the template's spec and usage (moto signs for real).
        let kms = kms();
        let mut keys = HashMap::new();
        for (id, r) in resources.iter().filter(|(_, r)| r["Type"] == "AWS::KMS::Key") {
            let p = &r["Properties"];
            let out = kms
                .create_key()
                .key_spec(aws_sdk_kms::types::KeySpec::from(text(&p["KeySpec"]).as_str()))
                .key_usage(aws_sdk_kms::types::KeyUsageType::from(text(&p["KeyUsage"]).as_str()))
                .description(format!("{prefix} {}", text(id)))
                .send()
                .await
                .expect("create key");
            keys.insert(text(id), out.key_metadata.and_then(|m| m.arn).expect("key arn"));
        }
        Stack { clients, table, tables, stream, stream_arn, streams, queues, bucket, keys }
    }

    /// The environment the template gives `function` (its `Environment.Variables`), resolved
    /// against this stack, plus the moto connection settings and `extra`.
    pub fn function_env(&self, function: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let resources = template_resources();
        let logical = logical_id(function);
        let mut env = moto_env();
        if let Some(vars) = resources[logical.as_str()]["Properties"]["Environment"]["Variables"].as_mapping() {
            for (k, v) in vars {
                // Parameters: the caller passes them in `extra`.
                if let Some(value) = self.resolve(v) {
                    env.push((text(k), value));
                }
            }
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// A template value against this stack: `None` for a parameter. `!If` takes its second
    /// branch: the tests deploy with the parameters' defaults, under which every condition the
    /// environment uses (`SignsWithKeyB`) is false.
    fn resolve(&self, v: &Value) -> Option<String> {
        Some(match v {
            Value::Tagged(t) if t.tag == "!Ref" => match text(&t.value).as_str() {
                id if self.tables.contains_key(id) => self.tables[id].clone(),
                id if self.queues.contains_key(id) => self.queues[id].clone(),
                "ImagesBucket" => self.bucket.clone(),
                _ => return None,
            },
            Value::Tagged(t) if t.tag == "!GetAtt" && self.streams.contains_key(&get_att_target(v)) => self.streams[&get_att_target(v)].1.clone(),
            Value::Tagged(t) if t.tag == "!GetAtt" && self.keys.contains_key(&get_att_target(v)) => self.keys[&get_att_target(v)].clone(),
            Value::Tagged(t) if t.tag == "!Join" => {
                let args = t.value.as_sequence().expect("!Join [separator, [values]]");
                let parts: Option<Vec<String>> = args[1].as_sequence().expect("values").iter().map(|x| self.resolve(x)).collect();
                parts?.join(&text(&args[0]))
            }
            // An address made of the stack's own (the WebSocket API's management URL): the
            // template's text, for the launch to replace with where it plays that part.
            Value::Tagged(t) if t.tag == "!Sub" => text(&t.value),
            Value::Tagged(t) if t.tag == "!If" => return self.resolve(&t.value.as_sequence().expect("!If [condition, then, else]")[2]),
            other => text(other),
        })
    }

    /// Every record on the orders stream so far: `(shard id, record)`, each shard's in order.
    pub async fn stream_records(&self) -> Vec<(String, aws_sdk_kinesis::types::Record)> {
        self.records_of("OrdersStream").await
    }

    /// Every record so far on the stream with logical id `stream`, each shard's in order.
    pub async fn records_of(&self, stream: &str) -> Vec<(String, aws_sdk_kinesis::types::Record)> {
        let name = &self.streams[stream].0;
        let k = &self.clients.kinesis;
        let shards = k.list_shards().stream_name(name).send().await.expect("shards").shards.unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let mut iterator = k
                .get_shard_iterator()
                .stream_name(name)
                .shard_id(shard.shard_id())
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("iterator")
                .shard_iterator;
            while let Some(it) = iterator {
                let out = k.get_records().shard_iterator(it).send().await.expect("records");
                records.extend(out.records().iter().map(|r| (shard.shard_id().to_owned(), r.clone())));
                iterator = if out.records().is_empty() { None } else { out.next_shard_iterator };
            }
        }
        records
    }

    /// Receives (and deletes) every message waiting in the queue with logical id `queue`.
    pub async fn drain_queue(&self, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let url = &self.queues[queue];
        let mut all = Vec::new();
        loop {
            let out = self.clients.sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.expect("receive");
            if out.messages().is_empty() {
                return all;
            }
            for m in out.messages() {
                self.clients.sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap_or_default()).send().await.expect("delete");
                all.push(m.clone());
            }
        }
    }

    /// Presigns for this stack's bucket with moto's test credentials.
    pub fn images(&self) -> gocoffee_aws::S3Images {
        let credentials = aws_credential_types::Credentials::new("testing", "testing", Some("testing".into()), None, "tests");
        gocoffee_aws::S3Images::new(&self.bucket, "us-east-1", credentials, Some(moto().to_owned()))
    }

    pub fn store(&self) -> gocoffee_aws::DynamoStore {
        gocoffee_aws::DynamoStore::new(self.clients.dynamodb.clone(), &self.table)
    }
}

/// A function's SAM logical id: its kebab-case name in PascalCase (`order-consumer` ->
/// `OrderConsumer`).
pub fn logical_id(function: &str) -> String {
    function
        .split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A table as the template declares it: keys, attribute types, indexes (if any), billing mode
/// and TTL (if any).
async fn create_table(clients: &Clients, t: &Value, table: &str) {
    let attributes = t["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(text(&a["AttributeName"]))
                .attribute_type(ScalarAttributeType::from(text(&a["AttributeType"]).as_str()))
                .build()
                .expect("attribute definition")
        })
        .collect();
    let indexes: Vec<GlobalSecondaryIndex> = t["GlobalSecondaryIndexes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(text(&g["IndexName"]))
                .set_key_schema(Some(key_schema(&g["KeySchema"])))
                .projection(Projection::builder().projection_type(ProjectionType::from(text(&g["Projection"]["ProjectionType"]).as_str())).build())
                .build()
                .expect("index")
        })
        .collect();
    clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(text(&t["BillingMode"]).as_str()))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&t["KeySchema"])))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .send()
        .await
        .expect("create table");
    let ttl = &t["TimeToLiveSpecification"];
    if ttl.is_null() {
        return;
    }
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(text(&ttl["AttributeName"]))
                .enabled(ttl["Enabled"].as_bool().expect("Enabled"))
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("ttl");
}

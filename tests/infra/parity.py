#!/usr/bin/env python3
"""Holds infra/ (Terraform) to sam-template.yaml: the same functions with the same settings, routes,
event source mappings, schedules, queues, streams, table, log groups, IAM statements, API settings,
bucket settings, parameters and outputs. Fails on any drift.

    parity.py PLAN_JSON [--template sam-template.yaml]

PLAN_JSON is `terraform show -json` of a plan whose values are known: the tests make it right
after applying infra/ to moto server, so every ARN, name and URL is concrete. Both sides are
reduced to one canonical form, in which a reference to another resource reads `${LogicalId}` or
`${LogicalId.Arn}` (SAM's logical ids; a Terraform resource `aws_x.kitchen_queue` is
`KitchenQueue`, and an instance of the per-function resources `aws_x.function["order-consumer"]`
is `OrderConsumer`, `OrderConsumerRole`, `OrderConsumerLogs`), and a parameter reads as its value.
"""

import argparse
import json
import re
import sys

import yaml


# ------------------------------------------------------------------------------ SAM side

# `!Ref AWS::NoValue`: the property or list item is left out, as CloudFormation does.
NO_VALUE = object()

class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged(suffix, value)


class CfnLoader(yaml.SafeLoader):
    pass


CfnLoader.add_multi_constructor("!", _tagged)


def camel(snake):
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[-_]", snake))


def snake(camel_name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel_name).lower()


class Sam:
    def __init__(self, path, values, region):
        with open(path) as f:
            self.t = yaml.load(f, Loader=CfnLoader)
        self.region = region
        self.params = self.t.get("Parameters", {})
        # The value each parameter has in the plan (a Terraform variable of the same name).
        self.values = values
        self.conditions = self.t.get("Conditions", {})
        # Resources whose condition is false for these parameter values don't exist.
        self.resources = {k: r for k, r in self.t["Resources"].items() if "Condition" not in r or self.condition(r["Condition"])}
        self.globals = self.t.get("Globals", {}).get("Function", {})

    def param(self, name):
        return self.values.get(snake(name), self.params[name].get("Default"))

    def condition(self, v):
        """The conditions the template uses: !Equals, !Not, !Ref and named conditions."""
        if isinstance(v, str):
            return self.condition(self.conditions[v])
        if v.tag == "Equals":
            a, b = (self.resolve(x) for x in v.value)
            return str(a) == str(b)
        if v.tag == "Not":
            return not self.condition(v.value[0])
        raise SystemExit(f"parity.py: no rule for condition !{v.tag}")

    def sub(self, text):
        def one(m):
            ref = m.group(1)
            if ref == "AWS::StackName":
                return "${name}"
            if ref == "AWS::Region":
                return self.region
            if ref == "AWS::Partition":
                return "aws"
            if ref == "AWS::URLSuffix":
                return "amazonaws.com"
            if ref in self.params:
                return str(self.param(ref))
            # A stage's `Ref` is its name (Terraform's reads as the literal).
            if self.t["Resources"].get(ref, {}).get("Type") == "AWS::ApiGatewayV2::Stage":
                return self.t["Resources"][ref]["Properties"]["StageName"]
            return "${" + ref + "}"
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, v):
        if isinstance(v, Tagged):
            if v.tag == "Ref":
                if v.value == "AWS::NoValue":
                    return NO_VALUE
                return str(self.param(v.value)) if v.value in self.params else "${" + v.value + "}"
            if v.tag == "GetAtt":
                target, attr = v.value.split(".", 1) if isinstance(v.value, str) else v.value
                return "${" + target + "." + attr + "}"
            if v.tag == "Sub":
                return self.sub(v.value)
            if v.tag == "Join":
                return v.value[0].join(str(self.resolve(x)) for x in v.value[1])
            if v.tag == "If":
                return self.resolve(v.value[1] if self.condition(v.value[0]) else v.value[2])
            raise SystemExit(f"parity.py: no rule for !{v.tag}")
        if isinstance(v, list):
            return [r for r in (self.resolve(x) for x in v) if r is not NO_VALUE]
        if isinstance(v, dict):
            return {k: r for k, r in ((k, self.resolve(x)) for k, x in v.items()) if r is not NO_VALUE}
        return v

    def of_type(self, kind):
        return {k: r for k, r in self.resources.items() if r["Type"] == kind}

    def model(self):
        m = {k: {} for k in MODEL_KEYS}
        g = self.globals
        for fid, r in self.of_type("AWS::Serverless::Function").items():
            p = r["Properties"]
            get = lambda k: p.get(k, g.get(k))
            env = self.resolve(p.get("Environment", {}).get("Variables", {}))
            m["functions"][fid] = {
                "runtime": get("Runtime"),
                "architectures": get("Architectures"),
                "handler": get("Handler"),
                "memory": get("MemorySize"),
                "timeout": get("Timeout"),
                "tracing": get("Tracing"),
                "log_format": p["LoggingConfig"]["LogFormat"],
                "log_group": self.resolve(p["LoggingConfig"]["LogGroup"]),
                "role": self.resolve(p["Role"]),
                "environment": {k: str(v) for k, v in env.items()},
                "async_retries": p.get("EventInvokeConfig", {}).get("MaximumRetryAttempts"),
            }
            for ev in p.get("Events", {}).values():
                ep = ev.get("Properties", {})
                if ev["Type"] in ("Kinesis", "SQS"):
                    source = self.resolve(ep.get("Stream") or ep.get("Queue"))
                    m["mappings"][f"{fid} <- {source}"] = {
                        "batch_size": ep.get("BatchSize"),
                        "window": ep.get("MaximumBatchingWindowInSeconds", 0),
                        "starting_position": ep.get("StartingPosition"),
                        "parallelization": ep.get("ParallelizationFactor"),
                        "response_types": sorted(ep.get("FunctionResponseTypes", [])),
                        "bisect": ep.get("BisectBatchOnFunctionError"),
                        "retries": ep.get("MaximumRetryAttempts"),
                        "record_age": ep.get("MaximumRecordAgeInSeconds"),
                        "on_failure": self.resolve(ep.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")),
                    }
                elif ev["Type"] == "Schedule":
                    m["schedules"][fid] = ep["Schedule"]
                else:
                    raise SystemExit(f"parity.py: no rule for {ev['Type']} events")
        for qid, r in self.of_type("AWS::SQS::Queue").items():
            p = r["Properties"]
            redrive = p.get("RedrivePolicy")
            m["queues"][qid] = {
                "retention": p.get("MessageRetentionPeriod", 345600),
                "visibility": p.get("VisibilityTimeout", 30),
                "sse": p.get("SqsManagedSseEnabled"),
                "redrive": {"dlq": self.resolve(redrive["deadLetterTargetArn"]), "max": int(redrive["maxReceiveCount"])} if redrive else None,
            }
        for sid, r in self.of_type("AWS::Kinesis::Stream").items():
            p = r["Properties"]
            m["streams"][sid] = {
                "mode": p["StreamModeDetails"]["StreamMode"],
                "retention": p["RetentionPeriodHours"],
                "encryption": p["StreamEncryption"]["EncryptionType"],
                "key": p["StreamEncryption"]["KeyId"],
            }
        for tid, r in self.of_type("AWS::DynamoDB::Table").items():
            p = r["Properties"]
            keys = lambda ks: {k["KeyType"]: k["AttributeName"] for k in ks}
            m["tables"][tid] = {
                "billing": p["BillingMode"],
                "keys": keys(p["KeySchema"]),
                "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in p["AttributeDefinitions"]),
                "indexes": {i["IndexName"]: {"keys": keys(i["KeySchema"]), "projection": i["Projection"]["ProjectionType"]} for i in p.get("GlobalSecondaryIndexes", [])},
                "ttl": p["TimeToLiveSpecification"]["AttributeName"] if p.get("TimeToLiveSpecification", {}).get("Enabled") else None,
                "pitr": p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False),
                "sse": p["SSESpecification"]["SSEEnabled"],
                "kept_on_delete": r.get("DeletionPolicy") == "Retain",
            }
        for lid, r in self.of_type("AWS::Logs::LogGroup").items():
            p = self.resolve(r["Properties"])
            m["log_groups"][lid] = {"name": p["LogGroupName"], "retention": int(p["RetentionInDays"])}
        for rid, r in self.of_type("AWS::IAM::Role").items():
            p = r["Properties"]
            m["roles"][rid] = {
                "trust": statements(p["AssumeRolePolicyDocument"]["Statement"], principals=True),
                "statements": sorted(set().union(*(statements(self.resolve(pol["PolicyDocument"]["Statement"]), conditions=True) for pol in p.get("Policies", [])))),
                "managed": sorted(self.resolve(p.get("ManagedPolicyArns", []))),
            }
        integrations = {iid: self.resolve(r["Properties"]["IntegrationUri"]) for iid, r in self.of_type("AWS::ApiGatewayV2::Integration").items()}
        for r in self.of_type("AWS::ApiGatewayV2::Route").values():
            p = r["Properties"]
            target = re.fullmatch(r"integrations/\$\{(\w+)\}", self.resolve(p["Target"])).group(1)
            m["routes"][route_name(self.resolve(p["ApiId"]), p["RouteKey"])] = {
                # An HTTP API's integration names the function; a WebSocket API's its invocation URI.
                "function": re.search(r"\$\{(\w+)\.Arn\}", integrations[target]).group(1),
                "authorization": p.get("AuthorizationType", "NONE"),
                "authorizer": self.resolve(p["AuthorizerId"]) if "AuthorizerId" in p else None,
                "response_selection": p.get("RouteResponseSelectionExpression"),
            }
        for aid, r in self.of_type("AWS::ApiGatewayV2::Authorizer").items():
            p = self.resolve(r["Properties"])
            jwt = p.get("JwtConfiguration")
            m["authorizers"][aid] = {
                "type": p["AuthorizerType"],
                "identity": sorted(p["IdentitySource"]),
                "issuer": jwt and jwt["Issuer"],
                "audience": jwt and sorted(jwt["Audience"]),
                "function": re.search(r"\$\{(\w+)\.Arn\}", p["AuthorizerUri"]).group(1) if "AuthorizerUri" in p else None,
            }
        for pid, r in self.of_type("AWS::Lambda::Permission").items():
            p = self.resolve(r["Properties"])
            function = re.fullmatch(r"\$\{(\w+)\}", p["FunctionName"]).group(1)
            m["permissions"][f"{function} <- {p['SourceArn']}"] = {"action": p["Action"], "principal": p["Principal"]}
        for aid, r in self.of_type("AWS::ApiGatewayV2::Api").items():
            p = r["Properties"]
            stage = next(s["Properties"] for s in self.of_type("AWS::ApiGatewayV2::Stage").values() if self.resolve(s["Properties"]["ApiId"]) == "${" + aid + "}")
            cors = p.get("CorsConfiguration")
            m["apis"][aid] = {
                "cors": cors and {
                    "origins": sorted(self.resolve(cors["AllowOrigins"])),
                    "methods": sorted(cors["AllowMethods"]),
                    "headers": sorted(cors["AllowHeaders"]),
                    "expose": sorted(cors["ExposeHeaders"]),
                    "max_age": cors["MaxAge"],
                },
                "protocol": p["ProtocolType"],
                "route_selection": p.get("RouteSelectionExpression"),
                "name": self.resolve(p["Name"]),
                "stage": {"name": stage["StageName"], "auto_deploy": stage["AutoDeploy"]},
                "throttling": {"burst": stage["DefaultRouteSettings"]["ThrottlingBurstLimit"], "rate": stage["DefaultRouteSettings"]["ThrottlingRateLimit"]},
                "access_log": {"destination": self.resolve(stage["AccessLogSettings"]["DestinationArn"]), "format": json.loads(stage["AccessLogSettings"]["Format"])},
            }
        for kid, r in self.of_type("AWS::KMS::Key").items():
            p = r["Properties"]
            m["keys"][kid] = {"spec": p["KeySpec"], "usage": p["KeyUsage"]}
        for bid, r in self.of_type("AWS::S3::Bucket").items():
            p = self.resolve(r["Properties"])
            pab = p["PublicAccessBlockConfiguration"]
            cors = (p.get("CorsConfiguration") or {"CorsRules": [None]})["CorsRules"][0]
            enc = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            m["buckets"][bid] = {
                "public_access_block": sorted(k for k, v in pab.items() if v),
                "ownership": p["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
                "encryption": {"algorithm": enc["ServerSideEncryptionByDefault"]["SSEAlgorithm"], "bucket_key": enc.get("BucketKeyEnabled", False)},
                "versioning": p["VersioningConfiguration"]["Status"],
                "lifecycle": {
                    rule["Id"]: {
                        "status": rule["Status"],
                        "prefix": rule.get("Prefix", ""),
                        "transitions": sorted((t["StorageClass"], int(t["TransitionInDays"])) for t in rule.get("Transitions", [])),
                        "expiration_days": int(rule["ExpirationInDays"]) if "ExpirationInDays" in rule else None,
                        "noncurrent_days": rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"),
                        "abort_multipart_days": rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
                    }
                    for rule in p["LifecycleConfiguration"]["Rules"]
                },
                "cors": cors and {"methods": sorted(cors["AllowedMethods"]), "origins": sorted(cors["AllowedOrigins"]), "headers": sorted(cors["AllowedHeaders"]), "max_age": cors["MaxAge"]},
                "kept_on_delete": r.get("DeletionPolicy") == "Retain",
            }
        for _, r in self.of_type("AWS::S3::BucketPolicy").items():
            p = self.resolve(r["Properties"])
            bucket = p["Bucket"].strip("${}")
            m["buckets"].setdefault(bucket, {})["policy"] = sorted(statements(p["PolicyDocument"]["Statement"], principals=True, conditions=True))
        for aid, r in self.of_type("AWS::CloudWatch::Alarm").items():
            p = self.resolve(r["Properties"])
            m["alarms"][aid] = {
                "metric": f"{p['Namespace']} {p['MetricName']}",
                "dimensions": {d["Name"]: d["Value"] for d in p.get("Dimensions", [])},
                "statistic": p.get("ExtendedStatistic") or p.get("Statistic"),
                "period": p["Period"],
                "evaluations": p["EvaluationPeriods"],
                "datapoints": p.get("DatapointsToAlarm", p["EvaluationPeriods"]),
                "threshold": float(p["Threshold"]),
                "comparison": p["ComparisonOperator"],
                "missing_data": p.get("TreatMissingData", "missing"),
                "actions": sorted(p.get("AlarmActions", [])),
                "ok_actions": sorted(p.get("OKActions", [])),
            }
        for tid, r in self.of_type("AWS::SNS::Topic").items():
            m["topics"][tid] = {"subscriptions": sorted((s["Properties"]["Protocol"], str(self.resolve(s["Properties"]["Endpoint"])))
                                                        for s in self.of_type("AWS::SNS::Subscription").values() if self.resolve(s["Properties"]["TopicArn"]) == "${" + tid + "}")}
        for did, r in self.of_type("AWS::CloudWatch::Dashboard").items():
            m["dashboards"][did] = json.loads(self.resolve(r["Properties"]["DashboardBody"]))
        for fid, r in self.of_type("AWS::KinesisFirehose::DeliveryStream").items():
            p = self.resolve(r["Properties"])
            d = p["ExtendedS3DestinationConfiguration"]
            source = p.get("KinesisStreamSourceConfiguration")
            m["deliveries"][fid] = {
                # A stream fed by a Kinesis stream is encrypted by its source, not by Firehose.
                "encryption": p.get("DeliveryStreamEncryptionConfigurationInput", {}).get("KeyType"),
                "source": source and {"stream": source["KinesisStreamARN"], "role": source["RoleARN"]},
                "bucket": d["BucketARN"], "role": d["RoleARN"], "prefix": d["Prefix"], "error_prefix": d["ErrorOutputPrefix"],
                "compression": d["CompressionFormat"], "buffering": [d["BufferingHints"]["IntervalInSeconds"], d["BufferingHints"]["SizeInMBs"]],
            }
        for r in self.of_type("AWS::Logs::SubscriptionFilter").values():
            p = self.resolve(r["Properties"])
            m["subscriptions"][p["LogGroupName"]] = {"pattern": p["FilterPattern"], "destination": p["DestinationArn"], "role": p["RoleArn"]}
        for vid, r in self.of_type("AWS::Backup::BackupVault").items():
            m["backups"][vid] = {"kept_on_delete": r.get("DeletionPolicy") == "Retain"}
        for pid, r in self.of_type("AWS::Backup::BackupPlan").items():
            p = self.resolve(r["Properties"])["BackupPlan"]
            m["backups"][pid] = {
                rule["RuleName"]: {
                    "vault": rule["TargetBackupVault"], "schedule": rule["ScheduleExpression"], "start_window": rule["StartWindowMinutes"],
                    "completion_window": rule["CompletionWindowMinutes"], "delete_after_days": int(rule["Lifecycle"]["DeleteAfterDays"]),
                }
                for rule in p["BackupPlanRule"]
            }
        for sid, r in self.of_type("AWS::Backup::BackupSelection").items():
            p = self.resolve(r["Properties"])
            m["backups"][sid] = {"plan": p["BackupPlanId"], "role": p["BackupSelection"]["IamRoleArn"], "resources": sorted(p["BackupSelection"]["Resources"])}
        for sid, r in self.of_type("AWS::Scheduler::Schedule").items():
            p = self.resolve(r["Properties"])
            t = p["Target"]
            m["scheduled_tasks"][sid] = {
                "expression": p["ScheduleExpression"], "window": p["FlexibleTimeWindow"]["Mode"], "target": t["Arn"], "role": t["RoleArn"],
                "input": json.loads(t["Input"]), "retries": t.get("RetryPolicy", {}).get("MaximumRetryAttempts"),
            }
        m["outputs"] = sorted(snake(k) for k in self.t.get("Outputs", {}))
        for name, p in self.params.items():
            m["parameters"][snake(name)] = {"default": p.get("Default"), "sensitive": bool(p.get("NoEcho", False))}
        return m


def statements(stmts, principals=False, conditions=False):
    """A policy's statements as a set of (effect, action, resource[, principal][, condition])."""
    out = set()
    for s in stmts:
        listify = lambda v: v if isinstance(v, list) else [v]
        for action in listify(s["Action"]):
            for resource in listify(s.get("Resource", "-")):
                item = (s["Effect"], action, resource)
                if principals:
                    item += (json.dumps(s.get("Principal"), sort_keys=True),)
                if conditions:
                    item += (json.dumps(s.get("Condition"), sort_keys=True),)
                out.add(item)
    return out


# ------------------------------------------------------------------------------ Terraform side

MODEL_KEYS = ["functions", "routes", "mappings", "schedules", "queues", "streams", "tables", "log_groups", "roles", "apis", "buckets", "alarms", "topics", "dashboards",
              "deliveries", "subscriptions", "backups", "scheduled_tasks", "outputs", "parameters", "keys", "authorizers", "permissions"]

# Per-function resources: the SAM logical id of the instance for function `f`.
PER_FUNCTION = {
    "aws_lambda_function": lambda f: camel(f),
    "aws_iam_role": lambda f: camel(f) + "Role",
    "aws_cloudwatch_log_group": lambda f: camel(f) + "Logs",
}
# Which attribute of a resource type SAM's `!Ref` gives; `.Arn` is always `arn`.
REF_ATTRIBUTE = {
    "aws_lambda_function": "function_name",
    "aws_iam_role": "name",
    "aws_cloudwatch_log_group": "name",
    "aws_dynamodb_table": "name",
    "aws_kinesis_stream": "name",
    "aws_sqs_queue": "url",
    "aws_s3_bucket": "bucket",
    "aws_apigatewayv2_api": "id",
    # A topic's `!Ref` is its ARN.
    "aws_sns_topic": "arn",
    "aws_kinesis_firehose_delivery_stream": "name",
    "aws_backup_vault": "name",
    "aws_backup_plan": "id",
    "aws_kms_key": "key_id",
}


# Other attributes SAM's `!GetAtt` names, by the provider's attribute.
GET_ATT = {
    "aws_sqs_queue": {"name": "QueueName"},
}


def logical_id(r):
    if r["type"] in PER_FUNCTION and "index" in r:
        return PER_FUNCTION[r["type"]](r["index"])
    return camel(r["name"])


class Terraform:
    def __init__(self, plan):
        self.plan = plan
        self.rs = []
        def walk(module):
            self.rs.extend(x for x in module.get("resources", []) if x["mode"] == "managed")
            for child in module.get("child_modules", []):
                walk(child)
        walk(plan["planned_values"]["root_module"])
        self.vars = {k: v.get("value") for k, v in plan.get("variables", {}).items()}
        # Concrete value -> placeholder, longest first so an ARN is replaced before the name in it.
        names = {}
        def name(concrete, placeholder):
            # Two resources with the same name (a function and a stream both `x-orders`) would
            # make a reference ambiguous.
            if names.get(concrete, placeholder) != placeholder:
                raise SystemExit(f"parity.py: {concrete!r} is both {names[concrete]} and {placeholder}: give them distinct names")
            names[concrete] = placeholder
        for r in self.rs:
            if r["type"] not in REF_ATTRIBUTE:
                continue
            lid, v = logical_id(r), r["values"]
            name(str(v[REF_ATTRIBUTE[r["type"]]]), "${" + lid + "}")
            for attr, suffix in GET_ATT.get(r["type"], {}).items():
                name(str(v[attr]), "${" + lid + "." + suffix + "}")
            if v.get("arn") and REF_ATTRIBUTE[r["type"]] != "arn":
                name(v["arn"], "${" + lid + ".Arn}")
                if r["type"] == "aws_cloudwatch_log_group":
                    # SAM's LogGroup.Arn ends in ":*" (every stream); the provider's doesn't.
                    name(v["arn"] + ":*", "${" + lid + ".Arn}")
        self.placeholders = sorted(names.items(), key=lambda kv: -len(kv[0]))

    def region(self):
        """The region everything was made in, from any ARN that names one."""
        for r in self.rs:
            arn = str(r["values"].get("arn") or "")
            if arn.count(":") >= 5 and arn.split(":")[3]:
                return arn.split(":")[3]
        raise SystemExit("parity.py: no ARN names a region")

    def canon(self, value):
        if isinstance(value, str):
            for concrete, placeholder in self.placeholders:
                if concrete and concrete in value:
                    value = value.replace(concrete, placeholder)
            return value
        if isinstance(value, list):
            return [self.canon(x) for x in value]
        if isinstance(value, dict):
            return {k: self.canon(v) for k, v in value.items()}
        return value

    def of_type(self, kind):
        return [r for r in self.rs if r["type"] == kind]

    def one(self, kind):
        found = self.of_type(kind)
        if len(found) != 1:
            raise SystemExit(f"parity.py: expected one {kind}, found {len(found)}")
        return found[0]["values"]

    def model(self):
        m = {k: {} for k in MODEL_KEYS}
        retries = {r["values"]["function_name"]: r["values"]["maximum_retry_attempts"] for r in self.of_type("aws_lambda_function_event_invoke_config")}
        for r in self.of_type("aws_lambda_function"):
            v = r["values"]
            env = (v.get("environment") or [{}])[0].get("variables") or {}
            m["functions"][logical_id(r)] = {
                "runtime": v["runtime"],
                "architectures": v["architectures"],
                "handler": v["handler"],
                "memory": v["memory_size"],
                "timeout": v["timeout"],
                "tracing": v["tracing_config"][0]["mode"],
                "log_format": v["logging_config"][0]["log_format"],
                "log_group": self.canon(v["logging_config"][0]["log_group"]),
                "role": self.canon(v["role"]),
                "environment": {k: self.canon(x) for k, x in env.items()},
                "async_retries": retries.get(v["function_name"]),
            }
        integrations = {r["values"]["id"]: self.canon(r["values"]["integration_uri"]) for r in self.of_type("aws_apigatewayv2_integration")}
        # An authorizer's id (unknown in a plan, so None there) -> its logical id.
        authorizers = {r["values"].get("id"): "${" + logical_id(r) + "}" for r in self.of_type("aws_apigatewayv2_authorizer")}
        for r in self.of_type("aws_apigatewayv2_route"):
            v = r["values"]
            uri = integrations[v["target"].removeprefix("integrations/")]
            # ...:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations
            m["routes"][route_name(self.canon(v["api_id"]), v["route_key"])] = {
                "function": re.search(r"\$\{(\w+)\.Arn\}", uri).group(1),
                "authorization": v["authorization_type"],
                "authorizer": authorizers.get(v.get("authorizer_id")) if v["authorization_type"] != "NONE" else None,
                "response_selection": v.get("route_response_selection_expression") or None,
            }
        for r in self.of_type("aws_apigatewayv2_authorizer"):
            v = r["values"]
            jwt = (v.get("jwt_configuration") or [None])[0]
            m["authorizers"][logical_id(r)] = {
                "type": v["authorizer_type"],
                "identity": sorted(v["identity_sources"]),
                "issuer": jwt and self.canon(jwt["issuer"]),
                "audience": jwt and sorted(jwt["audience"]),
                "function": re.search(r"\$\{(\w+)\.Arn\}", self.canon(v["authorizer_uri"])).group(1) if v.get("authorizer_uri") else None,
            }
        # SAM makes the schedules' permissions itself (compared as schedules); these are the API's.
        for r in self.of_type("aws_lambda_permission"):
            v = r["values"]
            if v["principal"] != "apigateway.amazonaws.com":
                continue
            function = re.fullmatch(r"\$\{(\w+)\}", self.canon(v["function_name"])).group(1)
            source = re.sub(r":\d{12}:", ":${AWS::AccountId}:", self.canon(v["source_arn"]))
            m["permissions"][f"{function} <- {source}"] = {"action": v["action"], "principal": v["principal"]}
        for r in self.of_type("aws_lambda_event_source_mapping"):
            v = r["values"]
            fid = re.fullmatch(r"\$\{(\w+)\.Arn\}", self.canon(v["function_arn"])).group(1)
            is_stream = ":kinesis:" in v["event_source_arn"]
            on_failure = [d["destination_arn"] for dc in v.get("destination_config") or [] for o in dc.get("on_failure") or [] for d in [o]]
            m["mappings"][f"{fid} <- {self.canon(v['event_source_arn'])}"] = {
                "batch_size": v["batch_size"],
                "window": v["maximum_batching_window_in_seconds"],
                "starting_position": v["starting_position"] or None,
                "parallelization": v["parallelization_factor"] if is_stream else None,
                "response_types": sorted(v["function_response_types"] or []),
                "bisect": v["bisect_batch_on_function_error"] if is_stream else None,
                "retries": v["maximum_retry_attempts"] if is_stream else None,
                "record_age": v["maximum_record_age_in_seconds"] if is_stream else None,
                "on_failure": self.canon(on_failure[0]) if on_failure else None,
            }
        rules = {r["values"]["name"]: r["values"] for r in self.of_type("aws_cloudwatch_event_rule")}
        for r in self.of_type("aws_cloudwatch_event_target"):
            v = r["values"]
            fid = re.fullmatch(r"\$\{(\w+)\.Arn\}", self.canon(v["arn"])).group(1)
            m["schedules"][fid] = rules[v["rule"]]["schedule_expression"]
        for r in self.of_type("aws_sqs_queue"):
            v = r["values"]
            redrive = json.loads(v["redrive_policy"]) if v["redrive_policy"] else None
            m["queues"][logical_id(r)] = {
                "retention": v["message_retention_seconds"],
                "visibility": v["visibility_timeout_seconds"],
                "sse": v["sqs_managed_sse_enabled"],
                "redrive": {"dlq": self.canon(redrive["deadLetterTargetArn"]), "max": int(redrive["maxReceiveCount"])} if redrive else None,
            }
        for r in self.of_type("aws_kinesis_stream"):
            v = r["values"]
            m["streams"][logical_id(r)] = {
                "mode": v["stream_mode_details"][0]["stream_mode"],
                "retention": v["retention_period"],
                "encryption": v["encryption_type"],
                "key": v["kms_key_id"],
            }
        for r in self.of_type("aws_dynamodb_table"):
            v = r["values"]
            keys = lambda h, rk: {k: a for k, a in (("HASH", h), ("RANGE", rk)) if a}
            m["tables"][logical_id(r)] = {
                "billing": v["billing_mode"],
                "keys": keys(v["hash_key"], v["range_key"]),
                "attributes": sorted((a["name"], a["type"]) for a in v["attribute"]),
                "indexes": {i["name"]: {"keys": keys(i["hash_key"], i["range_key"]), "projection": i["projection_type"]} for i in v["global_secondary_index"]},
                "ttl": v["ttl"][0]["attribute_name"] if v["ttl"] and v["ttl"][0]["enabled"] else None,
                "pitr": bool(v["point_in_time_recovery"] and v["point_in_time_recovery"][0]["enabled"]),
                "sse": v["server_side_encryption"][0]["enabled"],
                "kept_on_delete": v["deletion_protection_enabled"],
            }
        for r in self.of_type("aws_cloudwatch_log_group"):
            v = r["values"]
            # /gocoffee/<deployment>/<function>: the deployment's segment reads ${name}, as SAM's stack name.
            segments = v["name"].split("/")
            name = "/".join("${name}" if s == self.vars["name"] and i == len(segments) - 2 else s for i, s in enumerate(segments))
            m["log_groups"][logical_id(r)] = {"name": name, "retention": v["retention_in_days"]}
        policies = {}
        for r in self.of_type("aws_iam_role_policy"):
            # ARNs SAM spells with ${AWS::AccountId} (execute-api's).
            statement_list = json.loads(re.sub(r"(arn:aws:execute-api:[a-z0-9-]+:)\d{12}:", r"\1${AWS::AccountId}:", r["values"]["policy"]))["Statement"]
            policies.setdefault(r["values"]["role"], set()).update(statements(self.canon(statement_list), conditions=True))
        managed = {}
        for r in self.of_type("aws_iam_role_policy_attachment"):
            managed.setdefault(r["values"]["role"], []).append(r["values"]["policy_arn"])
        for r in self.of_type("aws_iam_role"):
            v = r["values"]
            m["roles"][logical_id(r)] = {
                "trust": statements(json.loads(v["assume_role_policy"])["Statement"], principals=True),
                "statements": sorted(policies.get(v["name"], set())),
                "managed": sorted(managed.get(v["name"], [])),
            }
        for r in self.of_type("aws_apigatewayv2_api"):
            v = r["values"]
            cors = (v.get("cors_configuration") or [None])[0]
            stage = next(s["values"] for s in self.of_type("aws_apigatewayv2_stage") if s["values"]["api_id"] == v["id"])
            m["apis"][logical_id(r)] = {
                "cors": cors and {
                    "origins": sorted(cors["allow_origins"]),
                    "methods": sorted(cors["allow_methods"]),
                    "headers": sorted(cors["allow_headers"]),
                    "expose": sorted(cors["expose_headers"]),
                    "max_age": cors["max_age"],
                },
                "protocol": v["protocol_type"],
                "route_selection": v.get("route_selection_expression") if v["protocol_type"] == "WEBSOCKET" else None,
                "name": self.canon(v["name"]).replace(self.vars["name"], "${name}"),
                "stage": {"name": stage["name"], "auto_deploy": stage["auto_deploy"]},
                "throttling": {"burst": stage["default_route_settings"][0]["throttling_burst_limit"], "rate": stage["default_route_settings"][0]["throttling_rate_limit"]},
                "access_log": {"destination": self.canon(stage["access_log_settings"][0]["destination_arn"]), "format": json.loads(stage["access_log_settings"][0]["format"])},
            }
        for r in self.of_type("aws_kms_key"):
            v = r["values"]
            m["keys"][logical_id(r)] = {"spec": v["customer_master_key_spec"], "usage": v["key_usage"]}
        for r in self.of_type("aws_s3_bucket"):
            bid = logical_id(r)
            per = lambda kind: next((x["values"] for x in self.of_type(kind) if x["name"] == r["name"]), None)
            pab = per("aws_s3_bucket_public_access_block")
            cors = (per("aws_s3_bucket_cors_configuration") or {"cors_rule": [None]})["cors_rule"][0]
            enc = per("aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
            pab_names = {"block_public_acls": "BlockPublicAcls", "block_public_policy": "BlockPublicPolicy", "ignore_public_acls": "IgnorePublicAcls", "restrict_public_buckets": "RestrictPublicBuckets"}
            m["buckets"][bid] = {
                "public_access_block": sorted(pab_names[k] for k in pab_names if pab[k]),
                "ownership": per("aws_s3_bucket_ownership_controls")["rule"][0]["object_ownership"],
                "encryption": {"algorithm": enc["apply_server_side_encryption_by_default"][0]["sse_algorithm"], "bucket_key": enc["bucket_key_enabled"]},
                "versioning": per("aws_s3_bucket_versioning")["versioning_configuration"][0]["status"],
                "lifecycle": {
                    rule["id"]: {
                        "status": rule["status"],
                        "prefix": ((rule["filter"] or [{}])[0].get("prefix") or "") or (rule.get("prefix") or ""),
                        "transitions": sorted((t["storage_class"], int(t["days"])) for t in rule["transition"] or []),
                        "expiration_days": (rule["expiration"] or [{}])[0].get("days"),
                        "noncurrent_days": (rule["noncurrent_version_expiration"] or [{}])[0].get("noncurrent_days"),
                        "abort_multipart_days": (rule["abort_incomplete_multipart_upload"] or [{}])[0].get("days_after_initiation"),
                    }
                    for rule in per("aws_s3_bucket_lifecycle_configuration")["rule"]
                },
                "cors": cors and {"methods": sorted(cors["allowed_methods"]), "origins": sorted(cors["allowed_origins"]), "headers": sorted(cors["allowed_headers"]), "max_age": cors["max_age_seconds"]},
                # A bucket that isn't empty is kept: force_destroy off.
                "kept_on_delete": not r["values"]["force_destroy"],
                "policy": sorted(statements(self.canon(json.loads(per("aws_s3_bucket_policy")["policy"])["Statement"]), principals=True, conditions=True)),
            }
        for r in self.of_type("aws_cloudwatch_metric_alarm"):
            v = self.canon(r["values"])
            m["alarms"][camel(r["index"])] = {
                "metric": f"{v['namespace']} {v['metric_name']}",
                "dimensions": v["dimensions"],
                "statistic": v["extended_statistic"] or v["statistic"],
                "period": v["period"],
                "evaluations": v["evaluation_periods"],
                "datapoints": v["datapoints_to_alarm"] or v["evaluation_periods"],
                "threshold": float(v["threshold"]),
                "comparison": v["comparison_operator"],
                "missing_data": v["treat_missing_data"],
                "actions": sorted(v["alarm_actions"]),
                "ok_actions": sorted(v["ok_actions"]),
            }
        subscriptions = [self.canon(r["values"]) for r in self.of_type("aws_sns_topic_subscription")]
        for r in self.of_type("aws_sns_topic"):
            tid = logical_id(r)
            m["topics"][tid] = {"subscriptions": sorted((s["protocol"], s["endpoint"]) for s in subscriptions if s["topic_arn"] == "${" + tid + "}")}
        for r in self.of_type("aws_cloudwatch_dashboard"):
            m["dashboards"][logical_id(r)] = json.loads(self.canon(r["values"]["dashboard_body"]))
        for r in self.of_type("aws_kinesis_firehose_delivery_stream"):
            v = self.canon(r["values"])
            d = v["extended_s3_configuration"][0]
            source = (v.get("kinesis_source_configuration") or [None])[0]
            sse = (v.get("server_side_encryption") or [{}])[0]
            m["deliveries"][logical_id(r)] = {
                "encryption": sse.get("key_type") if sse.get("enabled") else None,
                "source": source and {"stream": source["kinesis_stream_arn"], "role": source["role_arn"]},
                "bucket": d["bucket_arn"], "role": d["role_arn"], "prefix": d["prefix"], "error_prefix": d["error_output_prefix"],
                "compression": d["compression_format"], "buffering": [d["buffering_interval"], d["buffering_size"]],
            }
        for r in self.of_type("aws_cloudwatch_log_subscription_filter"):
            v = self.canon(r["values"])
            m["subscriptions"][v["log_group_name"]] = {"pattern": v["filter_pattern"], "destination": v["destination_arn"], "role": v["role_arn"]}
        for r in self.of_type("aws_backup_vault"):
            m["backups"][logical_id(r)] = {"kept_on_delete": not r["values"]["force_destroy"]}
        for r in self.of_type("aws_backup_plan"):
            v = self.canon(r["values"])
            m["backups"][logical_id(r)] = {
                rule["rule_name"]: {
                    "vault": rule["target_vault_name"], "schedule": rule["schedule"], "start_window": rule["start_window"],
                    "completion_window": rule["completion_window"], "delete_after_days": rule["lifecycle"][0]["delete_after"],
                }
                for rule in v["rule"]
            }
        for r in self.of_type("aws_backup_selection"):
            v = self.canon(r["values"])
            m["backups"][camel(r["name"])] = {"plan": v["plan_id"], "role": v["iam_role_arn"], "resources": sorted(v["resources"])}
        for r in self.of_type("aws_scheduler_schedule"):
            v = self.canon(r["values"])
            t = v["target"][0]
            m["scheduled_tasks"][logical_id(r)] = {
                "expression": v["schedule_expression"], "window": v["flexible_time_window"][0]["mode"], "target": t["arn"], "role": t["role_arn"],
                "input": json.loads(t["input"]), "retries": (t["retry_policy"] or [{}])[0].get("maximum_retry_attempts"),
            }
        m["outputs"] = sorted(self.plan["configuration"]["root_module"].get("outputs", {}))
        for name, v in self.plan["configuration"]["root_module"].get("variables", {}).items():
            if name in TERRAFORM_ONLY_VARIABLES:
                continue
            m["parameters"][name] = {"default": v.get("default"), "sensitive": bool(v.get("sensitive", False))}
        return m


def route_name(api, key):
    """A route by its key on the HTTP API, and by its API and key on another (a WebSocket API
    has a `$default` route too)."""
    return key if api == "${HttpApi}" else f"{api} {key}"


# Settings only Terraform has: SAM takes the stack name from `sam deploy` and builds the code itself.
TERRAFORM_ONLY_VARIABLES = {"name", "lambda_dir", "backup_selection"}


def normalise(x):
    """Tuples and lists compare alike; principals like `"*"` and `{"AWS": "*"}` too."""
    if isinstance(x, (list, tuple)):
        return [normalise(i) for i in x]
    if isinstance(x, dict):
        return {k: normalise(v) for k, v in x.items()}
    if isinstance(x, str):
        return x.replace('{"AWS": "*"}', '"*"')
    return x


def diff(path, sam, tf, out):
    if isinstance(sam, dict) and isinstance(tf, dict):
        for k in sorted(set(sam) | set(tf)):
            if k not in tf:
                out.append(f"{path}.{k}: in SAM, not in Terraform ({json.dumps(sam[k], default=str)[:200]})")
            elif k not in sam:
                out.append(f"{path}.{k}: in Terraform, not in SAM ({json.dumps(tf[k], default=str)[:200]})")
            else:
                diff(f"{path}.{k}", sam[k], tf[k], out)
    elif isinstance(sam, list) and isinstance(tf, list) and len(sam) == len(tf) and any(isinstance(x, dict) for x in sam):
        for i, (a, b) in enumerate(zip(sam, tf)):
            diff(f"{path}[{i}]", a, b, out)
    elif isinstance(sam, list) and isinstance(tf, list) and all(isinstance(x, list) for x in sam + tf) and sam != tf:
        as_set = lambda xs: {json.dumps(x) for x in xs}
        only_sam, only_tf = sorted(as_set(sam) - as_set(tf)), sorted(as_set(tf) - as_set(sam))
        out.append(f"{path}: only in SAM {', '.join(only_sam) or '-'}; only in Terraform {', '.join(only_tf) or '-'}")
    elif sam != tf:
        out.append(f"{path}: SAM {json.dumps(sam, default=str)} != Terraform {json.dumps(tf, default=str)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan")
    ap.add_argument("--template", default="sam-template.yaml")
    ap.add_argument("--absent", action="append", default=[], metavar="LOGICAL_ID",
                    help="a SAM resource the plan can't have (moto server lacks its API): compared nowhere, and said so")
    ap.add_argument("--absent-reason", default="the plan can't have it")
    args = ap.parse_args()
    with open(args.plan) as f:
        plan = json.load(f)
    tf = Terraform(plan)
    sam = Sam(args.template, tf.vars, tf.region())
    sam_model, tf_model = normalise(sam.model()), normalise(tf.model())
    for absent in args.absent:
        for key in MODEL_KEYS:
            if isinstance(sam_model[key], dict) and sam_model[key].pop(absent, None) is not None:
                print(f"parity: {absent} not compared: {args.absent_reason}")
    problems = []
    for key in MODEL_KEYS:
        diff(key, sam_model[key], tf_model[key], problems)
    counts = ", ".join(f"{len(sam_model[k])} {k}" for k in MODEL_KEYS)
    if problems:
        print(f"infra/ and sam-template.yaml differ ({len(problems)}):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"parity: infra/ matches sam-template.yaml ({counts})")


if __name__ == "__main__":
    main()

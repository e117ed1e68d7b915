"""template.yaml declares what the code and DESIGN.md rely on: names, schema, triggers, scoping."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from reconflow.local import template

REPO_ROOT = Path(template.TEMPLATE_PATH).parent
CONTAINER_COMMAND = ["python", "-m", "gpu_container", "Ref::stage", "--job-id", "Ref::job_id"]
EXPECTED_HANDLERS = {
    "ApiFunction": "handlers.api.handler",
    "UploadFunction": "handlers.upload.handler",
    "CleanupFunction": "handlers.cleanup.handler",
    "ReconcileFunction": "handlers.cleanup.reconcile",
}
FUNCTION_ENVIRONMENT = {
    "TABLE_NAME",
    "BUCKET_NAME",
    "STATE_MACHINE_ARN",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template.load_template()


def properties(sam: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template.resource(sam, logical_id)["Properties"]


def statements(policies: list[Any]) -> list[dict[str, Any]]:
    return [
        st
        for policy in policies
        if isinstance(policy, dict) and "Statement" in policy
        for st in policy["Statement"]
    ]


def test_every_handler_named_in_the_template_exists_and_imports(sam: dict[str, Any]) -> None:
    handlers = template.function_handlers(sam)
    assert handlers == EXPECTED_HANDLERS
    # A fresh interpreter, as Lambda's runtime imports the handler: no module this test run loaded helps.
    check = "; ".join(
        f"import {module}; assert callable({module}.{attribute}), {handler!r}"
        for handler in sorted(set(handlers.values()))
        for module, _, attribute in [handler.rpartition(".")]
    )
    environment = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    result = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_functions_get_the_environment_the_core_reads(sam: dict[str, Any]) -> None:
    globals_ = sam["Globals"]["Function"]
    assert set(globals_["Environment"]["Variables"]) >= FUNCTION_ENVIRONMENT
    assert globals_["CodeUri"] == "functions/"
    assert globals_["Runtime"] == "python3.13"
    assert (REPO_ROOT / "functions" / "requirements.txt").is_file()


def test_the_table_has_the_keys_indexes_ttl_and_recovery_of_the_design(sam: dict[str, Any]) -> None:
    table = properties(sam, "JobsTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexes = {
        index["IndexName"]: (
            [key["AttributeName"] for key in index["KeySchema"]],
            index["Projection"]["ProjectionType"],
        )
        for index in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "by-owner": (["owner", "created_at"], "ALL"),
        "by-status": (["status", "updated_at"], "ALL"),
    }
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_only_uploads_under_input_trigger_the_pipeline(sam: dict[str, Any]) -> None:
    bucket = properties(sam, "DataBucket")
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    (event,) = properties(sam, "UploadFunction")["Events"].values()
    pattern = event["Properties"]["Pattern"]
    assert event["Type"] == "EventBridgeRule"
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "jobs/*/input/*"}]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]


def test_the_bucket_is_private_encrypted_tls_only_and_expires_what_it_should(sam: dict[str, Any]) -> None:
    bucket = properties(sam, "DataBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert (
        rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        >= 1
    )
    assert rules["expire-stage-work-objects"]["TagFilters"] == [{"Key": "reconflow-area", "Value": "work"}]
    (deny,) = properties(sam, "DataBucketPolicy")["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_failed_executions_and_waiting_stage_jobs_reach_the_cleanup_function(sam: dict[str, Any]) -> None:
    events = properties(sam, "CleanupFunction")["Events"]
    assert sorted(events) == ["ExecutionEndedAbnormally", "StageJobWaiting"]
    pattern = events["ExecutionEndedAbnormally"]["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "StateMachine"}]
    waiting = events["StageJobWaiting"]["Properties"]["Pattern"]
    assert waiting["source"] == ["aws.batch"]
    assert waiting["detail-type"] == ["Batch Job State Change"]
    assert sorted(waiting["detail"]["status"]) == ["RUNNABLE", "STARTING"]
    assert waiting["detail"]["jobQueue"] == [{"Ref": "GpuJobQueue"}]
    (schedule,) = properties(sam, "ReconcileFunction")["Events"].values()
    assert schedule["Type"] == "Schedule"  # an EventBridge rule, which the local stack also runs
    assert schedule["Properties"]["Schedule"].startswith("rate(")


def test_asynchronous_functions_have_a_dead_letter_queue(sam: dict[str, Any]) -> None:
    for logical in ("UploadFunction", "CleanupFunction", "ReconcileFunction"):
        assert properties(sam, logical)["DeadLetterQueue"]["TargetArn"] == {
            "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
        }


def test_function_s3_access_is_scoped_to_the_jobs_prefix(sam: dict[str, Any]) -> None:
    for logical in ("ApiFunction", "UploadFunction", "CleanupFunction"):
        for statement in statements(properties(sam, logical)["Policies"]):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            if not any(action.startswith("s3:") for action in actions):
                continue
            resource = statement["Resource"]
            if isinstance(resource, dict) and "Fn::Sub" in resource:
                assert resource["Fn::Sub"].startswith("${DataBucket.Arn}/jobs/"), (logical, statement["Sid"])
            elif actions == ["s3:ListBucketMultipartUploads"]:  # carries no s3:prefix key to scope it
                assert resource == {"Fn::GetAtt": ["DataBucket", "Arn"]}
                assert "Condition" not in statement
            else:  # bucket-level listing: only with a prefix condition under jobs/
                assert resource == {"Fn::GetAtt": ["DataBucket", "Arn"]}
                assert statement["Condition"] == {"StringLike": {"s3:prefix": "jobs/*"}}


def test_only_the_upload_function_may_start_executions_of_this_state_machine(sam: dict[str, Any]) -> None:
    starters = {
        logical
        for logical, resource in template.resources_of_type(sam, template.FUNCTION_TYPES).items()
        for statement in statements(resource["Properties"].get("Policies", []))
        if "states:StartExecution"
        in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        and statement["Resource"] == {"Ref": "StateMachine"}
    }
    assert starters == {"UploadFunction"}


def test_the_job_definition_runs_the_stage_runner_on_a_gpu(sam: dict[str, Any]) -> None:
    definition = properties(sam, "StageJobDefinition")
    container = definition["ContainerProperties"]
    assert container["Command"] == CONTAINER_COMMAND
    assert {"Type": "GPU", "Value": "1"} in container["ResourceRequirements"]
    assert {item["Name"] for item in container["Environment"]} >= {"TABLE_NAME", "BUCKET_NAME"}
    assert container["Image"] == {"Ref": "ContainerImageUri"}
    # Batch retries a lost host (Spot reclaim); a container that fails exits.
    assert definition["RetryStrategy"]["EvaluateOnExit"] == [
        {"OnStatusReason": "Host EC2*", "Action": "RETRY"},
        {"OnReason": "*", "Action": "EXIT"},
    ]
    assert definition["Timeout"]["AttemptDurationSeconds"] == {"Ref": "StageTimeoutSeconds"}
    compute = properties(sam, "GpuComputeEnvironment")["ComputeResources"]
    assert compute["MinvCpus"] == 0
    assert sam["Parameters"]["GpuInstanceTypes"]["Default"].startswith("g")


def test_the_api_is_an_http_api_behind_a_jwt_authorizer_with_throttling(sam: dict[str, Any]) -> None:
    api = properties(sam, "Api")
    assert template.resource(sam, "Api")["Type"] == "AWS::Serverless::HttpApi"
    assert api["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = api["Auth"]["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
    assert jwt == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}
    assert set(api["DefaultRouteSettings"]) == {"ThrottlingRateLimit", "ThrottlingBurstLimit"}
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in properties(sam, "ApiFunction")["Events"].values()
    }
    assert routes == {
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/jobs/{job_id}/cancel/confirm"),
    }


def test_outputs_name_the_api_bucket_table_and_state_machine(sam: dict[str, Any]) -> None:
    assert {"ApiUrl", "BucketName", "TableName", "StateMachineArn"} <= set(sam["Outputs"])


def test_samconfig_has_a_default_and_a_prod_environment() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for environment in ("default", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        assert config[environment]["global"]["parameters"]["stack_name"]
        assert deploy["resolve_s3"] is True
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
        required = {
            name for name, spec in template.load_template()["Parameters"].items() if "Default" not in spec
        }
        assert required <= set(overrides), environment

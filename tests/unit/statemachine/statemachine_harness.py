"""The real ASL running in moto's Step Functions interpreter, in this process (``mock_aws``).

``Pipeline`` holds what a test drives and reads: the table and versioned bucket (created from the
template's own properties), a cleanup function whose invocations run the real
``handlers.cleanup.handler``, a Batch queue and the template's job definition whose jobs are
finished by an ``OutcomeExecutor``, and the state machine made from ``statemachine/`` with its
``DefinitionSubstitutions`` filled from the template.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from handlers import executions
from jobstate.jobs import JobStore
from reconflow.local import template
from reconflow.local.lambdas import LambdaRuntime
from reconflow.local.moto_batch import OutcomeExecutor

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
OWNER = "user-sfn-test"
# moto: no Docker for Batch and Lambda, and run the state machines' definitions for real.
MOTO_CONFIG = {
    "batch": {"use_docker": False},
    "lambda": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
}
STATE_MACHINE_LOGICAL_ID = "StateMachine"
CLEANUP_LOGICAL_ID = "CleanupFunction"
JOB_DEFINITION_LOGICAL_ID = "StageJobDefinition"
TABLE_LOGICAL_ID = "JobsTable"
# How long a test waits for an execution to end, and how often it looks.
EXECUTION_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05


@dataclass
class Pipeline:
    sfn: Any
    s3: Any
    store: JobStore
    bucket: str
    state_machine_arn: str
    definition: str
    executor: OutcomeExecutor
    runtime: LambdaRuntime

    def start(self, job_id: str) -> str:
        """Start the execution the upload function would start (name = job id); its ARN."""
        execution_input = executions.execution_input(
            job_id, self.bucket, f"jobs/{job_id}/input/capture.zip", self.store.settings
        )
        return self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=job_id, input=json.dumps(execution_input)
        )["executionArn"]

    def wait(self, execution_arn: str, timeout_s: float = EXECUTION_TIMEOUT_S) -> dict[str, Any]:
        """DescribeExecution once the execution is no longer RUNNING."""
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution still RUNNING after {timeout_s} s")
            time.sleep(POLL_INTERVAL_S)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        pages = self.sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        return [event for page in pages for event in page["events"]]

    def stage_order(self) -> list[tuple[str, str]]:
        """``(stage, job_id)`` of every Batch job submitted, in order."""
        return [(job.parameters["stage"], job.parameters["job_id"]) for job in self.executor.submitted]


def entered_states(history: list[dict[str, Any]]) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history
        if event["type"].endswith("StateEntered")
    ]


def batch_submissions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parameters of every Batch task the interpreter scheduled."""
    return [
        json.loads(event["taskScheduledEventDetails"]["parameters"])
        for event in history
        if event["type"] == "TaskScheduled" and event["taskScheduledEventDetails"]["resourceType"] == "batch"
    ]


def build_pipeline(clients: dict[str, Any], table_name: str, bucket: str) -> Pipeline:
    """Create every resource the definition names, from the template, and the state machine."""
    sam = template.load_template()
    iam, dynamodb, s3 = clients["iam"], clients["dynamodb"], clients["s3"]
    role_arn = iam.create_role(
        RoleName="reconflow-test",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]

    dynamodb.create_table(**template.table_request(sam, TABLE_LOGICAL_ID, table_name))
    ttl = template.ttl_attribute(sam, TABLE_LOGICAL_ID)
    if ttl:
        dynamodb.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    handlers = template.function_handlers(sam)
    cleanup = clients["lambda"].create_function(
        FunctionName="reconflow-cleanup",
        Runtime="python3.11",
        Role=role_arn,
        Handler=handlers[CLEANUP_LOGICAL_ID],
        Code={"ZipFile": b"code runs in this process"},
    )

    batch = clients["batch"]
    environment = batch.create_compute_environment(
        computeEnvironmentName="reconflow-gpu", type="UNMANAGED", state="ENABLED", serviceRole=role_arn
    )
    queue = batch.create_job_queue(
        jobQueueName="reconflow-gpu",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
    )
    refs = {
        "JobsTable": table_name,
        "DataBucket": bucket,
        "ContainerImageUri": "reconflow-gpu:test",
        "BatchJobLogGroup": "/reconflow/test/gpu-stages",
        "CleanupFunction": cleanup["FunctionName"],
        "GpuJobQueue": queue["jobQueueArn"],
    }
    parameters = {name: str(spec["Default"]) for name, spec in sam["Parameters"].items() if "Default" in spec}
    attributes = {("CleanupFunction", "Arn"): cleanup["FunctionArn"], ("StageJobRole", "Arn"): role_arn}

    def resolver_for(extra_refs: dict[str, str]) -> template.Resolver:
        known = {**parameters, **refs, **extra_refs}
        return template.Resolver(
            ref=known.__getitem__, get_att=lambda logical, att: attributes[(logical, att)]
        )

    job_definition = batch.register_job_definition(
        **template.job_definition_request(sam, JOB_DEFINITION_LOGICAL_ID, "reconflow-stage", resolver_for({}))
    )
    resolver = resolver_for({"StageJobDefinition": job_definition["jobDefinitionArn"]})
    definition = template.filled_definition(template.TEMPLATE_PATH, STATE_MACHINE_LOGICAL_ID, resolver)
    machine = clients["stepfunctions"].create_state_machine(
        name="reconflow-test-reconstruction", definition=definition, roleArn=role_arn
    )
    return Pipeline(
        sfn=clients["stepfunctions"],
        s3=s3,
        store=JobStore(table_name),
        bucket=bucket,
        state_machine_arn=machine["stateMachineArn"],
        definition=definition,
        executor=OutcomeExecutor(),
        runtime=LambdaRuntime(region=REGION, account_id=ACCOUNT_ID),
    )

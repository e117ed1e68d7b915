"""The resources of the LocalStack suite, made once per session on the running LocalStack.

Names carry a random suffix, so the suite can run again against a LocalStack that is still up
(``scripts/localstack.sh start``); only the state machine's name is fixed, because
``sfn_mock_config.json`` names it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_fixtures import create_data_bucket, create_jobs_table
from botocore.config import Config

from handlers import deps
from jobstate import aws as jobstate_aws
from jobstate.jobs import JobStore
from jobstate.settings import Settings
from reconflow.local import template

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"  # LocalStack's default account
STACK_NAME = "reconflow-localstack"  # the template's Name: ${AWS::StackName}-reconstruction
STATE_MACHINE_LOGICAL_ID = "StateMachine"
CLEANUP_FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-cleanup"
JOB_QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job-queue/{STACK_NAME}-gpu"
JOB_DEFINITION_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job-definition/{STACK_NAME}-stage:1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{STACK_NAME}-state-machine"
# Only errors that say so: LocalStack answers fast, a stuck call is a failure, not a wait.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, read_timeout=60)


@dataclass
class LocalStackWorld:
    endpoint: str
    table: str
    bucket: str
    settings: Settings

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=CLIENT_CONFIG,
        )

    def store(self) -> JobStore:
        return JobStore(settings=self.settings, dynamodb=self.client("dynamodb"))

    def use_handler_deps(self, state_machine_arn: str = "") -> deps.Deps:
        """The handlers' dependencies on LocalStack (as the functions would have them there)."""
        settings = Settings(
            table_name=self.table, bucket_name=self.bucket, state_machine_arn=state_machine_arn
        )
        built = deps.Deps(settings, jobs=self.store(), s3=self.client("s3"), sfn=self.client("stepfunctions"))
        deps.use(built)
        return built

    def real_state_machine(self) -> str:
        """The template's state machine, its substitutions filled for this deployment; its ARN."""
        sam = template.load_template(template.TEMPLATE_PATH)
        refs = {
            "JobsTable": self.table,
            "GpuJobQueue": JOB_QUEUE_ARN,
            "StageJobDefinition": JOB_DEFINITION_ARN,
        }
        resolver = template.Resolver(
            ref=lambda name: refs[name],
            get_att=lambda logical, attribute: {("CleanupFunction", "Arn"): CLEANUP_FUNCTION_ARN}[
                (logical, attribute)
            ],
            region=REGION,
            account_id=ACCOUNT_ID,
            stack_name=STACK_NAME,
        )
        name = resolver.resolve(template.resource(sam, STATE_MACHINE_LOGICAL_ID)["Properties"]["Name"])
        definition = template.filled_definition(template.TEMPLATE_PATH, STATE_MACHINE_LOGICAL_ID, resolver)
        sfn = self.client("stepfunctions")
        try:
            return sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE_ARN)[
                "stateMachineArn"
            ]
        except sfn.exceptions.StateMachineAlreadyExists:
            arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=ROLE_ARN)
            return arn

    def close(self) -> None:
        deps.reset()
        jobstate_aws.reset_clients()


def connect(endpoint: str, patch: pytest.MonkeyPatch) -> LocalStackWorld:
    """Point boto3 (and the core's clients) at LocalStack and create the table and the bucket."""
    suffix = uuid.uuid4().hex[:8]
    table, bucket = f"reconflow-jobs-{suffix}", f"reconflow-data-{suffix}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "TABLE_NAME": table,
        "BUCKET_NAME": bucket,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "reconflow",
        "POWERTOOLS_METRICS_NAMESPACE": "ReconFlow",
    }.items():
        patch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        patch.delenv(name, raising=False)
    jobstate_aws.reset_clients()
    world = LocalStackWorld(endpoint, table, bucket, Settings(table_name=table, bucket_name=bucket))
    create_jobs_table(world.client("dynamodb"), table)
    create_data_bucket(world.client("s3"), bucket, versioned=True)
    return world

"""Every IAM policy of ``template.yaml`` as AWS will see it: SAM-transformed, intrinsics resolved.

The policies that matter are those of the CloudFormation that ``sam deploy`` submits (SAM adds its
own: policy templates, the X-Ray write policy, event permissions). ``transformed_template`` runs the
same transform as the local stack (``deploy.package_offline`` + ``deploy.to_cloudformation``) with
placeholder parameter values, and ``policy_documents`` returns each role's inline policies and each
resource policy with ``Ref``/``Fn::GetAtt``/``Fn::Sub`` replaced by ARNs of the right shape for the
resource type, so a linter (parliament) can match actions to resource types and condition keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconflow.local import deploy, template

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "reconflow"
# Values for the parameters without a default (their shape only matters to the transform).
PLACEHOLDER_PARAMETERS = {
    "ContainerImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/reconflow-gpu:lint",
    "JwtIssuer": "https://issuer.example.com",
    "JwtAudience": "reconflow",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0",
}
# ARN of a resource by CloudFormation type (``{name}`` is the logical id in lower case).
_ARN_BY_TYPE = {
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{{name}}",
    "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{name}}",
    "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{{name}}",
    "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{{name}}",
    "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{{name}}:*",
    "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{{name}}",
    "AWS::Batch::JobQueue": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{{name}}",
    "AWS::Batch::JobDefinition": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{{name}}:1",
    "AWS::Batch::ComputeEnvironment": f"arn:aws:batch:{REGION}:{ACCOUNT}:compute-environment/{{name}}",
    "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{{name}}",
    "AWS::IAM::InstanceProfile": f"arn:aws:iam::{ACCOUNT}:instance-profile/{{name}}",
    "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{{name}}",
    "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{{name}}",
}
# Types whose Ref is their ARN (for the others Ref is a name).
_REF_IS_ARN = frozenset(
    {
        "AWS::SNS::Topic",
        "AWS::StepFunctions::StateMachine",
        "AWS::Batch::JobQueue",
        "AWS::Batch::JobDefinition",
        "AWS::Batch::ComputeEnvironment",
    }
)
POLICY_CARRIERS = {
    "AWS::IAM::Role": "Policies",
    "AWS::IAM::Policy": "PolicyDocument",
    "AWS::IAM::ManagedPolicy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
}


@dataclass(frozen=True)
class NamedPolicy:
    """One policy document: which resource carries it, its name there, and the resolved JSON."""

    resource: str
    name: str
    document: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.resource}/{self.name}"

    def statements(self) -> list[dict[str, Any]]:
        found = self.document.get("Statement", [])
        return found if isinstance(found, list) else [found]


def transformed_template(
    template_path: Path | str = template.TEMPLATE_PATH, parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The CloudFormation that ``sam deploy`` would submit for ``template_path`` (no AWS call)."""
    path = Path(template_path)
    packaged, _ = deploy.package_offline(template.load_template(path), path.parent)
    values = deploy.parameter_values(
        packaged,
        {
            "vpc": PLACEHOLDER_PARAMETERS["VpcId"],
            "subnet": PLACEHOLDER_PARAMETERS["SubnetIds"],
            "security_group": "",
        },
        {**PLACEHOLDER_PARAMETERS, **(parameters or {})},
    )
    # samtranslator asks boto3 for the region of its pseudo parameters.
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    try:
        return deploy.to_cloudformation(packaged, values)
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def resolver_for(cfn: Mapping[str, Any]) -> template.Resolver:
    """ARNs and names of the template's resources as a deployment named ``STACK`` would have them."""
    resources = cfn.get("Resources", {})
    parameters = cfn.get("Parameters", {})

    def arn(logical: str) -> str:
        kind = resources[logical]["Type"]
        name = resources[logical].get("Properties", {}).get("Name") or logical.lower()
        if isinstance(name, dict):  # Fn::Sub of the stack name, say
            name = logical.lower()
        return _ARN_BY_TYPE.get(kind, f"arn:aws:unknown:{REGION}:{ACCOUNT}:{{name}}").format(name=name)

    def ref(logical: str) -> str:
        if logical in parameters:
            return PLACEHOLDER_PARAMETERS.get(logical, str(parameters[logical].get("Default", logical)))
        if resources[logical]["Type"] in _REF_IS_ARN:
            return arn(logical)
        return logical.lower()

    def get_att(logical: str, attribute: str) -> str:
        if attribute != "Arn":
            return f"{logical.lower()}-{attribute.lower()}"
        return arn(logical)

    return template.Resolver(ref=ref, get_att=get_att, region=REGION, account_id=ACCOUNT, stack_name=STACK)


def resolved(value: Any, resolver: template.Resolver) -> Any:
    """``value`` with every intrinsic replaced by its string (lists and objects walked)."""
    if isinstance(value, Mapping):
        if len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::")):
            return resolver.resolve(value)
        return {key: resolved(item, resolver) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item, resolver) for item in value]
    return value


def policy_documents(cfn: Mapping[str, Any]) -> Iterator[NamedPolicy]:
    """Every inline policy of a role and every resource policy of the template, resolved."""
    resolver = resolver_for(cfn)
    for logical, resource in cfn.get("Resources", {}).items():
        carrier = POLICY_CARRIERS.get(resource.get("Type", ""))
        if carrier is None:
            continue
        properties = resource.get("Properties", {})
        if carrier == "Policies":
            for index, policy in enumerate(properties.get("Policies", [])):
                name = policy.get("PolicyName", f"policy{index}")
                yield NamedPolicy(logical, str(name), resolved(policy["PolicyDocument"], resolver))
        elif carrier in properties:
            yield NamedPolicy(logical, carrier, resolved(properties[carrier], resolver))


def as_json(policy: NamedPolicy) -> str:
    return json.dumps(policy.document, indent=2, sort_keys=True)

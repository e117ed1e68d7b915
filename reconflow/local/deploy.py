"""Deploy the SAM template into moto: the same ``template.yaml`` that goes to AWS, not a re-description.

The steps are the ones ``sam package`` + ``sam deploy`` take, against the emulated AWS:

1. ``package``: every local ``CodeUri`` becomes ``s3://{code bucket}/{name}.zip`` (the handlers run
   in this process, so the uploaded archive is only a marker; moto needs the object to exist), and
   the state machine's ``DefinitionUri`` file is inlined;
2. ``to_cloudformation``: aws-sam-translator's ``transform`` (a managed-policy map from moto's own
   copy of the AWS managed policies, so no IAM call is made);
3. ``create_stack`` on moto's CloudFormation, with values for the parameters that have no default
   (moto's default VPC, subnet and security group for the network ones);
4. ``apply_unsupported_properties``: the properties moto's CloudFormation ignores (bucket
   versioning, the bucket's EventBridge switch, table TTL) are applied with the service APIs
   from the template's own values.

The state machine's ``DefinitionSubstitutions`` are filled by ``reconflow.local.template``; moto's
CloudFormation does not apply them.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
CODE_BUCKET = "reconflow-local-code"
NETWORK_PARAMETER_TYPES = {
    "AWS::EC2::VPC::Id": "vpc",
    "AWS::EC2::Subnet::Id": "subnet",
    "List<AWS::EC2::Subnet::Id>": "subnet",
    "AWS::EC2::SecurityGroup::Id": "security_group",
    "List<AWS::EC2::SecurityGroup::Id>": "security_group",
}
FUNCTION_TYPES = ("AWS::Serverless::Function",)
STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"


@dataclass
class Deployment:
    """What the deployed stack holds: physical ids by logical id, types, and the CloudFormation body."""

    stack_name: str
    physical_ids: dict[str, str]
    resource_types: dict[str, str]
    cfn_template: dict[str, Any]
    parameters: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> dict[str, str]:
        """``{logical id: physical id}`` of every deployed resource of ``resource_type``."""
        return {
            logical: self.physical_ids[logical]
            for logical, kind in self.resource_types.items()
            if kind == resource_type and logical in self.physical_ids
        }

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.cfn_template["Resources"][logical_id].get("Properties", {})


def managed_policy_map() -> dict[str, str]:
    """AWS managed policy name -> ARN, from the copy moto ships (what samtranslator asks IAM for)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    policies = json.loads(aws_managed_policies_data)
    return {name: f"arn:aws:iam::aws:policy{data['Path']}{name}" for name, data in policies.items()}


class _PolicyLoader:
    def load(self) -> dict[str, str]:
        return managed_policy_map()


def package(
    sam_template: dict[str, Any], template_dir: Path, s3: Any, code_bucket: str = CODE_BUCKET
) -> dict[str, Any]:
    """A plain copy of the template as ``sam package`` leaves it: local ``CodeUri``s point at uploaded
    archives, and a state machine's local ``DefinitionUri`` is inlined as its ``Definition``."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("LOCAL_STACK.txt", "The local stack runs the handlers from the source tree.\n")
    s3.create_bucket(Bucket=code_bucket)
    packaged, code_keys = package_offline(sam_template, template_dir, code_bucket)
    for key in code_keys:
        s3.put_object(Bucket=code_bucket, Key=key, Body=archive.getvalue())
    return packaged


def package_offline(
    sam_template: dict[str, Any], template_dir: Path, code_bucket: str = CODE_BUCKET
) -> tuple[dict[str, Any], list[str]]:
    """``package`` without the uploads: the packaged template and the code keys it points at
    (what the IAM lint transforms, with no S3 to upload to)."""
    packaged = json.loads(json.dumps(sam_template))  # cfn-lint's node types -> plain data
    for resource in packaged.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        uri = properties.get("DefinitionUri")
        if (
            resource.get("Type") == STATE_MACHINE_TYPE
            and isinstance(uri, str)
            and not uri.startswith("s3://")
        ):
            properties["Definition"] = json.loads(
                (template_dir / properties.pop("DefinitionUri")).read_text()
            )
    code_keys: list[str] = []
    places = [packaged.get("Globals", {}).get("Function", {})]
    places += [
        resource.get("Properties", {})
        for resource in packaged.get("Resources", {}).values()
        if resource.get("Type") in FUNCTION_TYPES
    ]
    for properties in places:
        code_uri = properties.get("CodeUri")
        if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
            key = (code_uri.strip("/").replace("/", "-") or "root") + ".zip"
            code_keys.append(key)
            properties["CodeUri"] = f"s3://{code_bucket}/{key}"
    return packaged, code_keys


def to_cloudformation(sam_template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The CloudFormation that ``sam deploy`` would submit (plain templates pass through)."""
    transforms = sam_template.get("Transform")
    names = transforms if isinstance(transforms, list) else [transforms]
    if SAM_TRANSFORM not in names:
        return copy.deepcopy(sam_template)
    from samtranslator.translator.transform import transform

    return transform(copy.deepcopy(sam_template), dict(parameters), _PolicyLoader())


def default_network(ec2: Any) -> dict[str, str]:
    """moto's default VPC, one of its subnets and its default security group."""
    vpc = next(v for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault", True))["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    return {"vpc": vpc, "subnet": subnet, "security_group": groups[0]["GroupId"]}


def parameter_values(
    template: dict[str, Any], network: dict[str, str], overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """A value for every parameter: the override, else the default, else moto's network or ``"local"``.

    Defaults are passed explicitly because moto's CloudFormation splits list parameters and parses
    numbers only for values passed in, not for defaults.
    """
    values: dict[str, str] = {}
    for name, spec in template.get("Parameters", {}).items():
        if overrides and name in overrides:
            values[name] = overrides[name]
        elif "Default" in spec:
            default = spec["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        else:
            kind = NETWORK_PARAMETER_TYPES.get(spec.get("Type", ""))
            values[name] = network[kind] if kind else str((spec.get("AllowedValues") or ["local"])[0])
    return values


def _attributes_named(value: Any) -> set[str]:
    """Logical ids whose attributes a value reads (``Fn::GetAtt``; ``${Logical.Attribute}`` in a Sub)."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, item in value.items():
            if key == "Fn::GetAtt":
                found.add(item.split(".", 1)[0] if isinstance(item, str) else item[0])
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0]
                found |= {name.split(".", 1)[0] for name in re.findall(r"\$\{([^}!]+\.[^}]+)\}", text)}
                found |= set() if isinstance(item, str) else _attributes_named(item[1])
            else:
                found |= _attributes_named(item)
        return found
    if isinstance(value, list):
        return set().union(*(_attributes_named(item) for item in value)) if value else set()
    return set()


def without_unemulated_outputs(cfn_template: dict[str, Any]) -> dict[str, Any]:
    """The template less the outputs that read attributes of resources moto does not create
    (CloudFront's, API Gateway v2's): moto's CloudFormation skips those resources, so the outputs
    could not be evaluated and would fail the whole stack."""
    from moto.cloudformation.parsing import get_model_map

    emulated = get_model_map()
    resources = cfn_template.get("Resources", {})
    skipped = {logical for logical, resource in resources.items() if resource.get("Type") not in emulated}
    kept = {
        name: output
        for name, output in cfn_template.get("Outputs", {}).items()
        if not _attributes_named(output) & skipped
    }
    return {**cfn_template, "Outputs": kept}


def create_stack(
    cloudformation: Any, stack_name: str, cfn_template: dict[str, Any], parameters: dict[str, str]
) -> Deployment:
    """``create_stack`` and wait for it; raises with the failed resources if it does not complete."""
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(without_unemulated_outputs(cfn_template)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    physical: dict[str, str] = {}
    types: dict[str, str] = {}
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            types[summary["LogicalResourceId"]] = summary["ResourceType"]
            if summary.get("PhysicalResourceId"):
                physical[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
    outputs = {item["OutputKey"]: item.get("OutputValue", "") for item in stack.get("Outputs", [])}
    return Deployment(stack_name, physical, types, cfn_template, parameters, outputs)


def apply_unsupported_properties(deployment: Deployment, s3: Any, dynamodb: Any) -> None:
    """Bucket versioning, the EventBridge notification switch and table TTL, as the template sets them."""
    for logical, table in deployment.of_type("AWS::DynamoDB::Table").items():
        ttl = deployment.properties(logical).get("TimeToLiveSpecification")
        if isinstance(ttl, dict) and ttl.get("Enabled") in (True, "true"):
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
    for logical, bucket in deployment.of_type("AWS::S3::Bucket").items():
        properties = deployment.properties(logical)
        versioning = properties.get("VersioningConfiguration")
        if isinstance(versioning, dict) and versioning.get("Status"):
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]})
        notification = properties.get("NotificationConfiguration", {})
        if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )


def put_state_machine(stepfunctions: Any, name: str, definition: str, role_arn: str) -> str:
    """Create the state machine ``name`` with ``definition`` (or update it when it exists); its ARN."""
    for page in stepfunctions.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                stepfunctions.update_state_machine(
                    stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role_arn
                )
                return machine["stateMachineArn"]
    return stepfunctions.create_state_machine(name=name, definition=definition, roleArn=role_arn)[
        "stateMachineArn"
    ]

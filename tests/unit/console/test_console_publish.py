"""Publishing the built console to a deployed stack (moto's S3 and CloudFront)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import aws, aws_env  # noqa: F401

from reconflow import console_publish

REGION = "us-east-1"
OUTPUTS = {
    "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com",
    "ConsoleBucketName": "reconflow-console-test",
    "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
    "ConsoleClientId": "console-client",
    "ConsoleUrl": "https://d111111abcdef8.cloudfront.net/",
}


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "assets" / "index-abc.js").write_text("export {}")
    (tmp_path / "assets" / "index-abc.css").write_text("body{}")
    (tmp_path / "config.json").write_text('{"apiUrl": "http://left-over-dev-config"}')
    return tmp_path


@pytest.fixture
def deployed(aws: None) -> dict[str, Any]:  # noqa: F811
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=OUTPUTS["ConsoleBucketName"])
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    distribution = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "test",
            "Comment": "console",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [{"Id": "console-bucket", "DomainName": "reconflow-console-test.s3.amazonaws.com"}],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "console-bucket",
                "ViewerProtocolPolicy": "https-only",
            },
        }
    )["Distribution"]
    return {
        "s3": s3,
        "cloudfront": cloudfront,
        "outputs": {**OUTPUTS, "ConsoleDistributionId": distribution["Id"]},
    }


def test_publish_uploads_the_build_with_types_caching_and_the_stacks_config(
    deployed: dict[str, Any], dist: Path
) -> None:
    s3, outputs = deployed["s3"], deployed["outputs"]
    done = console_publish.publish(outputs, s3, deployed["cloudfront"], dist)
    assert sorted(done.keys) == ["assets/index-abc.css", "assets/index-abc.js", "config.json", "index.html"]
    index = s3.get_object(Bucket=done.bucket, Key="index.html")
    assert (index["ContentType"], index["CacheControl"]) == ("text/html", "no-cache")
    script = s3.get_object(Bucket=done.bucket, Key="assets/index-abc.js")
    assert script["ContentType"] in ("text/javascript", "application/javascript")
    assert "immutable" in script["CacheControl"]
    config = json.loads(s3.get_object(Bucket=done.bucket, Key="config.json")["Body"].read())
    assert config["apiUrl"] == OUTPUTS["ApiUrl"]
    assert config["auth"] == {
        "mode": "oidc",
        "issuer": OUTPUTS["JwtIssuer"],
        "clientId": "console-client",
        "scope": console_publish.SIGN_IN_SCOPE,
    }
    assert config["pollIntervalMs"] >= 2000
    invalidation = deployed["cloudfront"].get_invalidation(
        DistributionId=outputs["ConsoleDistributionId"], Id=done.invalidation_id
    )["Invalidation"]
    assert set(invalidation["InvalidationBatch"]["Paths"]["Items"]) == {"/index.html", "/config.json"}


def test_publish_refuses_a_console_that_is_not_built(deployed: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(console_publish.PublishError, match="make console"):
        console_publish.publish(deployed["outputs"], deployed["s3"], deployed["cloudfront"], tmp_path)
    assert "Contents" not in deployed["s3"].list_objects_v2(Bucket=OUTPUTS["ConsoleBucketName"])


def test_stack_outputs_must_name_what_the_console_needs(aws: None) -> None:  # noqa: F811
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="old",
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"ApiUrl": {"Value": "https://x"}},
            }
        ),
    )
    with pytest.raises(console_publish.PublishError, match="ConsoleBucketName"):
        console_publish.stack_outputs(cloudformation, "old")

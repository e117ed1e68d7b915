"""The console's hosting as the template declares it, and the local stack's reading of it."""

from __future__ import annotations

from typing import Any

import pytest

from reconflow.local import console_server, template

ORIGIN = "http://127.0.0.1:5173"
PARAMETERS = {console_server.ORIGIN_PARAMETER: ORIGIN}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template.load_template()


def _properties(sam: dict[str, Any], logical: str) -> dict[str, Any]:
    return template.resource(sam, logical)["Properties"]


def test_api_cors_allows_the_console_origin_only(sam) -> None:
    cors = console_server.api_cors(sam, PARAMETERS)
    assert cors.allow_origins == (ORIGIN,)
    assert cors.allows(ORIGIN)
    assert not cors.allows("http://127.0.0.1:1")
    assert not cors.allows(None)
    assert set(cors.allow_methods) == {"GET", "POST", "OPTIONS"}
    assert set(cors.allow_headers) == {"authorization", "content-type"}


def test_without_a_console_origin_the_cors_origin_is_the_distribution(sam) -> None:
    origins = _properties(sam, console_server.API_RESOURCE)["CorsConfiguration"]["AllowOrigins"]
    (choice,) = origins
    condition, _, otherwise = choice["Fn::If"]
    assert condition == "HasConsoleOrigin"
    assert otherwise == {"Fn::Sub": "https://${ConsoleDistribution.DomainName}"}
    bucket_rule = _properties(sam, "DataBucket")["CorsConfiguration"]["CorsRules"][0]
    assert bucket_rule["AllowedOrigins"] == origins


def test_data_bucket_cors_lets_the_console_upload_and_read(sam) -> None:
    (rule,) = console_server.bucket_cors_rules(sam, "DataBucket", PARAMETERS)
    assert rule["AllowedOrigins"] == [ORIGIN]
    assert set(rule["AllowedMethods"]) == {"GET", "HEAD", "POST"}
    assert rule["MaxAgeSeconds"] == 600


def test_console_bucket_is_private_and_read_only_by_its_distribution(sam) -> None:
    bucket = _properties(sam, "ConsoleBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statements = _properties(sam, "ConsoleBucketPolicy")["PolicyDocument"]["Statement"]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in allow] == [{"Service": "cloudfront.amazonaws.com"}]
    assert allow[0]["Action"] == "s3:GetObject"
    assert "${ConsoleDistribution}" in allow[0]["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"]["Bool"] == {"aws:SecureTransport": "false"}
        for s in statements
    )


def test_distribution_serves_https_only_through_origin_access_control_with_security_headers(sam) -> None:
    config = _properties(sam, "ConsoleDistribution")["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["ConsoleOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    assert behaviour["ResponseHeadersPolicyId"] == {"Ref": console_server.HEADERS_POLICY}
    control = _properties(sam, "ConsoleOriginAccessControl")["OriginAccessControlConfig"]
    assert (control["SigningBehavior"], control["SigningProtocol"]) == ("always", "sigv4")


def test_sign_in_settings_are_template_parameters(sam) -> None:
    parameters = sam["Parameters"]
    assert "Default" not in parameters["ConsoleClientId"]
    assert parameters["JwtIssuer"]["AllowedPattern"].startswith("^https://")
    outputs = sam["Outputs"]
    assert {
        "ConsoleUrl",
        "ConsoleBucketName",
        "ConsoleDistributionId",
        "ConsoleClientId",
        "JwtIssuer",
    } <= set(outputs)


def test_local_security_headers_are_the_policy_with_local_endpoints(sam) -> None:
    headers = console_server.security_headers(
        sam, console_server.local_endpoints("http://127.0.0.1:1000", "http://127.0.0.1:2000")
    )
    csp = headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'", "blob:", "http://127.0.0.1:1000", "http://127.0.0.1:2000"]
    assert "http://127.0.0.1:2000" in directives["img-src"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["strict-transport-security"].startswith("max-age=63072000")


def test_aws_csp_names_the_endpoints_the_console_calls(sam) -> None:
    policy = _properties(sam, console_server.HEADERS_POLICY)["ResponseHeadersPolicyConfig"]
    text, variables = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"][
        "Fn::Sub"
    ]
    named = set(template._SUB_VARIABLE.findall(text))
    assert named == set(console_server.CSP_ENDPOINT_VARIABLES)
    assert named - set(variables) == {"ConsoleSignInOrigins"}  # the parameter of that name


def test_conditions_are_evaluated_from_parameter_values(sam) -> None:
    value = {"Fn::If": ["HasConsoleOrigin", "local", "aws"]}
    resolver = console_server.parameter_resolver({})
    assert console_server.resolve_value(value, sam, {"ConsoleOrigin": ORIGIN}, resolver) == "local"
    assert console_server.resolve_value(value, sam, {"ConsoleOrigin": ""}, resolver) == "aws"


def test_local_deploy_leaves_out_outputs_that_read_unemulated_resources() -> None:
    from reconflow.local import deploy

    cfn = {
        "Resources": {
            "Site": {"Type": "AWS::CloudFront::Distribution", "Properties": {}},
            "Data": {"Type": "AWS::S3::Bucket", "Properties": {}},
        },
        "Outputs": {
            "SiteUrl": {"Value": {"Fn::Sub": "https://${Site.DomainName}/"}},
            "SiteDomain": {"Value": {"Fn::GetAtt": ["Site", "DomainName"]}},
            "SiteId": {"Value": {"Ref": "Site"}},
            "DataArn": {"Value": {"Fn::GetAtt": ["Data", "Arn"]}},
        },
    }
    kept = deploy.without_unemulated_outputs(cfn)
    assert set(kept["Outputs"]) == {"SiteId", "DataArn"}
    assert kept["Resources"] == cfn["Resources"]

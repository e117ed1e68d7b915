"""Publish the built console to a deployed stack: ``console/dist`` and its ``config.json`` into the
console bucket, then a CloudFront invalidation so the distribution serves the new files.

    make console
    python -m reconflow.console_publish --stack-name reconflow-dev [--region eu-west-1]

``config.json`` is written from the stack's outputs: the API's URL, the OIDC issuer and the
console's client id (the ``JwtIssuer`` and ``ConsoleClientId`` parameters). Content-hashed files
under ``assets/`` are cached for a year; ``index.html`` and ``config.json`` are revalidated.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconflow.local.console_server import CONSOLE_DIST, IMMUTABLE_CACHE, NO_CACHE, POLL_INTERVAL_MS

CONFIG_KEY = "config.json"
ASSETS_PREFIX = "assets/"
# The OIDC scope the console asks for: an ID token and the `sub` the API reads.
SIGN_IN_SCOPE = "openid email"
REQUIRED_OUTPUTS = ("ApiUrl", "ConsoleBucketName", "ConsoleDistributionId", "JwtIssuer", "ConsoleClientId")


class PublishError(RuntimeError):
    """The stack or the build is not ready for publishing."""


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise PublishError(
            f"stack {stack_name} has no output {', '.join(missing)}: deploy template.yaml first"
        )
    return outputs


def console_config(outputs: Mapping[str, str]) -> dict[str, Any]:
    """The console's config.json for the deployed stack (console/src/config.js reads it)."""
    return {
        "apiUrl": outputs["ApiUrl"],
        "auth": {
            "mode": "oidc",
            "issuer": outputs["JwtIssuer"],
            "clientId": outputs["ConsoleClientId"],
            "scope": SIGN_IN_SCOPE,
        },
        "pollIntervalMs": POLL_INTERVAL_MS,
    }


@dataclass(frozen=True)
class Published:
    bucket: str
    keys: list[str]
    invalidation_id: str


def publish(outputs: Mapping[str, str], s3: Any, cloudfront: Any, dist: Path = CONSOLE_DIST) -> Published:
    """Upload ``dist`` and config.json to the console bucket, then invalidate the distribution."""
    if not (dist / "index.html").is_file():
        raise PublishError(f"{dist}/index.html is missing: run `make console` first")
    bucket = outputs["ConsoleBucketName"]
    keys = []
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        key = path.relative_to(dist).as_posix()
        if key == CONFIG_KEY:
            continue  # written from the stack's outputs below
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            ContentType=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            CacheControl=IMMUTABLE_CACHE if key.startswith(ASSETS_PREFIX) else NO_CACHE,
        )
        keys.append(key)
    s3.put_object(
        Bucket=bucket,
        Key=CONFIG_KEY,
        Body=json.dumps(console_config(outputs), indent=2).encode(),
        ContentType="application/json",
        CacheControl=NO_CACHE,
    )
    keys.append(CONFIG_KEY)
    invalidation = cloudfront.create_invalidation(
        DistributionId=outputs["ConsoleDistributionId"],
        InvalidationBatch={
            "Paths": {"Quantity": 2, "Items": ["/index.html", f"/{CONFIG_KEY}"]},
            "CallerReference": f"reconflow-console-{time.time_ns()}",
        },
    )
    return Published(bucket, keys, invalidation["Invalidation"]["Id"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconflow.console_publish", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--stack-name", required=True, help="the deployed stack (samconfig.toml's stack_name)"
    )
    parser.add_argument("--region", default=None, help="its region (default: the AWS CLI's)")
    parser.add_argument(
        "--dist", type=Path, default=CONSOLE_DIST, help=f"the built console (default: {CONSOLE_DIST})"
    )
    args = parser.parse_args(argv)
    import boto3

    session = boto3.session.Session(region_name=args.region)
    try:
        outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
        done = publish(outputs, session.client("s3"), session.client("cloudfront"), args.dist)
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"uploaded {len(done.keys)} files to s3://{done.bucket}/ (invalidation {done.invalidation_id})")
    print(f"console: {outputs.get('ConsoleUrl', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

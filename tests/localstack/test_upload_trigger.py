"""The upload trigger on LocalStack: the template's EventBridge rule (its own pattern, wildcard
``jobs/*/input/*``) on the bucket's Object Created events, delivered to SQS the way the local
stack does it (``reconflow.local.notifications.route_rule_to_queue``), then handed to the real
upload handler, which queues the job and starts an execution on LocalStack's Step Functions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus

from localstack_world import ACCOUNT_ID, REGION, ROLE_ARN, STACK_NAME, LocalStackWorld

from handlers import upload
from jobstate.ids import new_job_id
from jobstate.jobs import QUEUED
from jobstate.layout import input_key, output_key, work_key
from reconflow.local import template
from reconflow.local.notifications import route_rule_to_queue

UPLOAD_FUNCTION = "UploadFunction"
UPLOAD_EVENT = "CaptureUploaded"
DELIVERY_TIMEOUT_S = 30
QUIET_S = 3  # after the expected messages, how long to wait for ones that must not come
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def _resolved(value: Any, resolver: template.Resolver) -> Any:
    """The pattern with its intrinsics (``!Ref DataBucket``) replaced by their values."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Ref", "Fn::Sub", "Fn::GetAtt"):
            return resolver.resolve(value)
        return {str(k): _resolved(v, resolver) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(item, resolver) for item in value]
    return value


def _template_pattern(bucket: str) -> dict[str, Any]:
    sam = template.load_template(template.TEMPLATE_PATH)
    event = template.resource(sam, UPLOAD_FUNCTION)["Properties"]["Events"][UPLOAD_EVENT]
    assert event["Type"] == "EventBridgeRule"
    resolver = template.Resolver(ref=lambda name: {"DataBucket": bucket}[name], get_att=lambda *_: "")
    return _resolved(event["Properties"]["Pattern"], resolver)


def _receive(sqs: Any, queue_url: str, expected: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    quiet_until = None
    while time.monotonic() < deadline and (quiet_until is None or time.monotonic() < quiet_until):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in got:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        messages += got
        if len(messages) >= expected and quiet_until is None:
            quiet_until = time.monotonic() + QUIET_S
    return messages


def test_only_captures_under_input_reach_the_upload_handler(localstack: LocalStackWorld) -> None:
    s3, sqs, events, sfn = (localstack.client(s) for s in ("s3", "sqs", "events", "stepfunctions"))
    bucket = localstack.bucket
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    rule = f"{STACK_NAME}-upload-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps(_template_pattern(bucket)))
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-upload"
    events.put_targets(Rule=rule, Targets=[{"Id": "upload-function", "Arn": function_arn}])
    route = route_rule_to_queue(
        events, sqs, rule, (function_arn, f"{STACK_NAME}-upload", "handlers.upload.handler")
    )
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] != [function_arn]

    machine = sfn.create_state_machine(
        name=f"{STACK_NAME}-pass-{uuid.uuid4().hex[:8]}", definition=PASS_DEFINITION, roleArn=ROLE_ARN
    )["stateMachineArn"]
    made_by_api = localstack.store().create("owner-1")  # CREATED: awaiting its upload
    uploaded_directly = new_job_id()  # no job item: the upload makes one
    captures = [input_key(made_by_api.job_id, "capture.zip"), input_key(uploaded_directly, "red flower.zip")]
    not_captures = [
        work_key(made_by_api.job_id, "validate", "manifest.json"),
        output_key(made_by_api.job_id, "model.glb"),
        f"uploads/{made_by_api.job_id}/input/capture.zip",
        f"jobs/{made_by_api.job_id}/inputs/capture.zip",
    ]
    for key in captures + not_captures:
        s3.put_object(Bucket=bucket, Key=key, Body=b"PK\x05\x06" + bytes(18))

    messages = _receive(sqs, route.queue_url, expected=len(captures))
    bodies = [json.loads(m["Body"]) for m in messages]
    # The event's key is URL-encoded (LocalStack writes "red%20flower.zip"); the handler decodes it.
    assert sorted(unquote_plus(b["detail"]["object"]["key"]) for b in bodies) == sorted(captures)

    deps = localstack.use_handler_deps(state_machine_arn=machine)
    handled = upload.process_event({"Records": [{"body": m["Body"]} for m in messages]}, deps)

    assert sorted(h.outcome for h in handled) == [upload.STARTED, upload.STARTED]
    for job_id in (made_by_api.job_id, uploaded_directly):
        job = deps.jobs.get(job_id, consistent=True)
        assert job.status == QUEUED
        assert sfn.describe_execution(executionArn=job.execution_arn)["name"] == job_id

"""Benchmark: the handlers' cold start against a baseline process, and the cost of purging a job.

(a) Cold start (DESIGN.md, "How benchmark figures are taken"): for every event file in
``events/`` the handler it belongs to is imported and invoked once on it in a FRESH Python
process, timed from before the import to after the answer, against a moto server on loopback
that holds the table, the bucket and a state machine. The job the event names is put back into
the state the event needs before every sample (a RUNNING job for a cancel request, a pending
request with the event's token for a confirm, ...), so every sample does the same real work.
The baseline process imports boto3 and powertools' event_handler and creates one client.
Samples of all targets are interleaved round by round; figures are medians; overhead is
(handler - baseline) / baseline, goal <= 10 % (each handler <= 1.10x the baseline of the same
run). Every sample process runs in a Lambda-like environment (``LAMBDA_TASK_ROOT``,
``AWS_LAMBDA_FUNCTION_NAME`` and the runtime's other variables set), as libraries that look for
Lambda behave differently inside it.

(b) Purge: a versioned bucket on the same moto server with 10,000 object versions and delete
markers under one job's prefix, an unfinished multipart upload, and neighbours that must
survive. Requests are counted exactly by a botocore event hook on the purge's client; seconds
are wall time (moto's listing costs O(bucket size) per page, so they say little about S3).

Run: ``.venv/bin/python bench/cold_start_and_purge.py [--rounds N]``; prints a table and writes
``bench/cold_start_and_purge.txt``. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
REPORT_PATH = Path(__file__).with_suffix(".txt")
sys.path.insert(0, str(ROOT / "tests" / "unit"))  # the table and bucket builders the tests use

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
STATE_MACHINE_NAME = "reconflow-reconstruction"
STATE_MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/reconflow-state-machine"
# A definition moto accepts; it is never run (moto does not execute state machines by default).
STATE_MACHINE_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
BENCH_OWNER = "bench-owner"
DEFAULT_ROUNDS = 9
SAMPLE_TIMEOUT_S = 120
OVERHEAD_GOAL = 0.10
# What Lambda's runtime sets in a function's environment (the values are this bench's).
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
    "LAMBDA_RUNTIME_DIR": str(ROOT / "functions"),
    "AWS_LAMBDA_FUNCTION_NAME": "reconflow-bench",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/reconflow-bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
}
IMPORT_PROFILE_RUNS = 3  # -X importtime runs per handler module (medians)
# Import-alone pairs per handler module and round: a bare import is ~150 ms with +-30 ms of noise
# between processes on this machine, so one pair a round leaves the median to chance.
IMPORT_PAIRS_PER_ROUND = 4
IMPORT_PACKAGES_SHOWN = 6
RESULT_MARKER = "BENCH_RESULT "

# events/<prefix>*.json -> the handler (module, function) it is for.
HANDLER_BY_EVENT_PREFIX: tuple[tuple[str, str, str], ...] = (
    ("api_", "handlers.api", "handler"),
    ("upload_", "handlers.upload", "handler"),
    ("cleanup_", "handlers.cleanup", "handler"),
    ("reconcile_", "handlers.cleanup", "reconcile"),
)
BASELINE = "baseline"

# Purge workload: keys under the job's prefix, how many get a second version, how many end in a
# delete marker; together 10,000 entries (versions + markers) to delete.
PURGE_KEYS = 8_000
PURGE_SECOND_VERSIONS = 1_500
PURGE_DELETE_MARKERS = 500
PURGE_NEIGHBOUR_KEYS = 200
PURGE_BUCKET = "reconflow-bench-purge"
DELETE_GOAL_PER_1000 = 1.0

# The sample process: everything before ``start`` is the same for every kind of sample. Five kinds:
# a handler (its module and function), "baseline" (imports and one client, no AWS work),
# "bare" (the same clients and AWS requests a handler made, replayed from its recording with
# plain boto3 clients: what the handler's work costs with none of ReconFlow's code around it),
# "import" (only the handler's module imported) and "import-baseline" (only boto3 and event_handler).
# With BENCH_RECORD set, a handler sample records its clients, API calls and presigns there.
SAMPLE_CODE = r"""
import importlib, json, os, pickle, sys, time
module, function, event_path = sys.argv[1:4]
record_path = os.environ.get("BENCH_RECORD")
if record_path:
    import botocore.client, botocore.signers
    work = []
    create_client = botocore.client.ClientCreator.create_client
    def recording_create_client(self, service_name, *args, **kwargs):
        client = create_client(self, service_name, *args, **kwargs)
        client._bench_service = service_name
        work.append(("client", service_name, None))
        return client
    make_api_call = botocore.client.BaseClient._make_api_call
    def recording_make_api_call(self, operation, params):
        work.append(("call", self._bench_service, (operation, params)))
        return make_api_call(self, operation, params)
    def recording_presign(kind, presign):
        def recorded(self, *args, **kwargs):
            work.append((kind, self._bench_service, (args, kwargs)))
            return presign(self, *args, **kwargs)
        return recorded
    botocore.client.ClientCreator.create_client = recording_create_client
    botocore.client.BaseClient._make_api_call = recording_make_api_call
    for kind in ("post", "url"):
        name = "generate_presigned_" + kind
        setattr(botocore.signers, name, recording_presign(kind, getattr(botocore.signers, name)))
class Context:
    function_name = "reconflow-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reconflow-bench"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/reconflow-bench"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 30000
event = json.load(open(event_path)) if event_path not in ("-", "") and module != "bare" else None
replay = pickle.load(open(event_path, "rb")) if module == "bare" else None
start = time.perf_counter()
if module == "baseline":
    import boto3
    from aws_lambda_powertools import event_handler
    boto3.client("dynamodb")
    answer = {"baseline": True}
elif module == "import-baseline":
    import boto3
    from aws_lambda_powertools import event_handler
    answer = {"imported": "boto3, event_handler"}
elif module == "import":
    importlib.import_module(function)
    answer = {"imported": function}
elif module == "bare":
    import boto3
    from aws_lambda_powertools import event_handler
    from botocore.config import Config
    from botocore.exceptions import ClientError
    session, clients, refused = boto3.session.Session(), {}, 0
    for kind, service, detail in replay:
        if kind == "client":
            config = Config(signature_version="s3v4") if service == "s3" else None
            clients[service] = session.client(service, config=config)
        elif kind == "call":
            try:
                clients[service]._make_api_call(*detail)
            except ClientError:
                refused += 1
        else:
            getattr(clients[service], "generate_presigned_" + kind)(*detail[0], **detail[1])
    answer = {"replayed": len(replay), "refused": refused}
else:
    handler = getattr(importlib.import_module(module), function)
    answer = handler(event, Context())
seconds = time.perf_counter() - start
if record_path:
    pickle.dump(work, open(record_path, "wb"))
print("BENCH_RESULT " + json.dumps({"seconds": seconds, "answer": answer}, default=str))
"""


@dataclass(frozen=True)
class Target:
    name: str  # the event file's stem, or "baseline"
    module: str
    function: str
    event_path: Path | None

    @property
    def handler(self) -> str:
        return self.module if self.module == BASELINE else f"{self.module}.{self.function}"


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    # (sample - baseline of its round) / baseline of its round, the baseline measured just before
    # and just after the round's targets (paired, so the machine's drift cancels out)
    overheads: list[float] = field(default_factory=list)
    # the same AWS work replayed with bare boto3 ("bare" samples), paired round by round
    bare_seconds: list[float] = field(default_factory=list)
    bare_overheads: list[float] = field(default_factory=list)
    # the bare twin against its round's baseline: the AWS work's own cost, a floor no code doing that
    # work goes below
    bare_floors: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@dataclass
class ImportSamples:
    """A handler module imported alone, paired round by round with boto3 + event_handler alone."""

    seconds: list[float] = field(default_factory=list)
    baseline_seconds: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)  # (module - baseline of its pair) / baseline


IMPORT_BASELINE = Target("import-baseline", "import-baseline", "", None)


def measure_imports(
    modules: list[str], env: dict[str, str], round_index: int
) -> dict[str, list[tuple[float, float]]]:
    """Per handler module: ``IMPORT_PAIRS_PER_ROUND`` pairs (seconds to import it, seconds to import
    boto3 + event_handler), each in a fresh process, the pair's order alternating."""
    timed: dict[str, list[tuple[float, float]]] = {module: [] for module in modules}
    for pair_index in range(IMPORT_PAIRS_PER_ROUND):
        for module in modules:
            target = Target(f"import {module}", "import", module, None)
            pair = (target, IMPORT_BASELINE) if (round_index + pair_index) % 2 else (IMPORT_BASELINE, target)
            seconds = {sample.module: run_sample(sample, env)[0] for sample in pair}
            timed[module].append((seconds["import"], seconds["import-baseline"]))
    return timed


# --- the emulated AWS --------------------------------------------------------------------------


def start_moto() -> tuple[Any, str]:
    """A moto server on a free loopback port, in a thread of this process."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def aws_environment(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "reconflow",
        "POWERTOOLS_METRICS_NAMESPACE": "ReconFlow",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


# --- (a) cold start ------------------------------------------------------------------------------


def discover_targets(events_dir: Path) -> tuple[list[Target], list[str]]:
    """One target per event file a handler is known for; the names of the files that fit none."""
    targets, unknown = [], []
    for path in sorted(events_dir.glob("*.json")):
        match = next((h for h in HANDLER_BY_EVENT_PREFIX if path.stem.startswith(h[0])), None)
        if match is None:
            unknown.append(path.name)
            continue
        targets.append(Target(path.stem, match[1], match[2], path))
    return targets, unknown


def event_job_id(event: dict[str, Any]) -> str | None:
    """The job an event is about, wherever that event kind carries it."""
    from jobstate.errors import JobStateError
    from jobstate.ids import is_job_id
    from jobstate.layout import parse_key

    candidates: list[Any] = [
        (event.get("pathParameters") or {}).get("job_id"),
        event.get("job_id"),
        (event.get("detail") or {}).get("name"),
        str((event.get("detail") or {}).get("jobName") or "")[-36:],  # a Batch stage job's name
    ]
    keys = [((event.get("detail") or {}).get("object") or {}).get("key")]
    keys += [record.get("s3", {}).get("object", {}).get("key") for record in event.get("Records", [])]
    for key in keys:
        try:
            candidates.append(parse_key(key).job_id)
        except JobStateError:
            continue
    return next((value for value in candidates if is_job_id(value)), None)


def event_owner(event: dict[str, Any]) -> str | None:
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims")
    return (claims or {}).get("sub")


class Seeder:
    """Puts the job an event names into the state that event needs, before every sample."""

    def __init__(self, owner: str) -> None:
        from jobstate import aws
        from jobstate.jobs import JobStore
        from jobstate.settings import Settings

        self.settings = Settings()
        self.owner = owner
        self.db = aws.client("dynamodb")
        self.s3 = aws.client("s3")
        self.sfn = aws.client("stepfunctions")
        self.store = JobStore(settings=self.settings)
        self.machines = 0

    def create_resources(self) -> None:
        from aws_fixtures import create_data_bucket, create_jobs_table

        create_jobs_table(self.db, self.settings.table_name)
        create_data_bucket(self.s3, self.settings.bucket_name, versioned=True)

    def new_state_machine(self) -> str:
        """A fresh state machine, so an upload's StartExecution (named after the job) starts anew."""
        self.machines += 1
        made = self.sfn.create_state_machine(
            name=f"{STATE_MACHINE_NAME}-{self.machines}",
            definition=STATE_MACHINE_DEFINITION,
            roleArn=STATE_MACHINE_ROLE,
        )
        return str(made["stateMachineArn"])

    def forget(self, job_id: str) -> None:
        for sk in ("job", "cancel#request", "cancel#confirm"):
            self.db.delete_item(
                TableName=self.settings.table_name, Key={"pk": {"S": job_id}, "sk": {"S": sk}}
            )

    def running(self, job_id: str, owner: str) -> None:
        self.store.create(owner, job_id=job_id, status="QUEUED", name="bench")
        self.store.begin_stage(job_id, "reconstruct")

    def prepare(self, target: Target, event: dict[str, Any]) -> dict[str, str]:
        """Seed for one sample; returns the environment the sample process needs on top."""
        from jobstate.layout import output_key

        machine = self.new_state_machine()
        job_id = event_job_id(event)
        owner = event_owner(event) or self.owner
        name = target.name
        if job_id is None:
            return {"STATE_MACHINE_ARN": machine}
        self.forget(job_id)
        if name.startswith("upload_"):
            self.store.create(owner, job_id=job_id, name="bench")
        elif "get_job" in name or "list_jobs" in name:
            self.running(job_id, owner)
            self.store.begin_stage(job_id, "export")
            self.store.succeed(job_id, {"model.glb": output_key(job_id, "model.glb")})
        elif "confirm_cancel" in name:
            self.running(job_id, owner)
            self.store.request_cancel(job_id, owner)
            token = json.loads(event.get("body") or "{}").get("token", "")
            self.db.update_item(  # the event carries a fixed token: make it the pending one
                TableName=self.settings.table_name,
                Key={"pk": {"S": job_id}, "sk": {"S": "cancel#request"}},
                UpdateExpression="SET #token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": token}},
            )
        elif name.startswith("cleanup_") and "cancel" in name:
            self.running(job_id, owner)
            request = self.store.request_cancel(job_id, owner)
            self.store.confirm_cancel(job_id, owner, request.token)
            for file_name in ("model.glb", "model.obj", "report.json"):
                self.s3.put_object(
                    Bucket=self.settings.bucket_name, Key=output_key(job_id, file_name), Body=b"x"
                )
        elif "batch_job_waiting" in name:  # validate ran; the event's stage waits for an instance
            self.store.create(owner, job_id=job_id, status="QUEUED", name="bench")
            self.store.begin_stage(job_id, "validate")
            return {"STATE_MACHINE_ARN": machine, "JOB_QUEUE": event["detail"]["jobQueue"]}
        elif name.startswith("reconcile_"):
            self.running(job_id, owner)
            started = self.sfn.start_execution(stateMachineArn=machine, name=job_id, input="{}")
            self.store.set_execution(job_id, started["executionArn"])
        else:  # a cancel request, a failure, an execution's status change: the job is running
            self.running(job_id, owner)
        return {"STATE_MACHINE_ARN": machine}


def summarise_answer(answer: Any) -> str:
    """A short, stable description of what a handler answered (status code or keys)."""
    if isinstance(answer, dict) and "statusCode" in answer:
        return f"HTTP {answer['statusCode']}"
    if isinstance(answer, dict):
        status = answer.get("status")
        return "keys " + ",".join(sorted(answer)) + (f" status={status}" if status else "")
    return type(answer).__name__


def run_sample(target: Target, env: dict[str, str], *, replay: Path | None = None) -> tuple[float, str]:
    """One fresh process: its seconds for import + first invocation, and what it answered.

    With ``replay`` (a handler's recording), the process is the target's "bare" twin instead."""
    module, function = ("bare", "") if replay else (target.module, target.function)
    arguments = [sys.executable, "-c", SAMPLE_CODE, module, function, str(replay or target.event_path or "-")]
    done = subprocess.run(
        arguments, env=env, cwd=ROOT, capture_output=True, text=True, timeout=SAMPLE_TIMEOUT_S, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{target.name}: exit {done.returncode}: {tail[0][:200]}")
    result = json.loads(lines[-1][len(RESULT_MARKER) :])
    return float(result["seconds"]), summarise_answer(result["answer"])


def measure_cold_starts(
    endpoint: str, rounds: int, recordings: Path
) -> tuple[dict[Target, Samples], dict[str, ImportSamples], list[str], dict[str, dict[str, float]]]:
    """Round 0 warms the file cache, writes bytecode and records each handler's AWS work (into
    ``recordings``); rounds 1..N are kept. In each round the baseline runs first and last and, in
    between, every target and its bare twin (in alternating order), in a shuffled order."""
    targets, unknown = discover_targets(EVENTS_DIR)
    baseline = Target(BASELINE, BASELINE, "", None)
    events = {t: json.loads(t.event_path.read_text()) for t in targets if t.event_path}
    owner = next((o for o in map(event_owner, events.values()) if o), BENCH_OWNER)
    seeder = Seeder(owner)
    seeder.create_resources()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)  # round 0 writes the bytecode a built package ships
    base_env |= aws_environment(endpoint)
    base_env |= {"TABLE_NAME": seeder.settings.table_name, "BUCKET_NAME": seeder.settings.bucket_name}
    base_env |= LAMBDA_ENVIRONMENT
    samples = {t: Samples() for t in [baseline, *targets]}
    recording = {t: recordings / f"{t.name}.pickle" for t in targets}
    modules = sorted({t.module for t in targets})
    imports = {module: ImportSamples() for module in modules}
    for round_index in range(rounds + 1):
        order = list(targets)
        random.Random(round_index).shuffle(order)
        before, _ = run_sample(baseline, base_env)
        this_round: list[tuple[Target, float, float, str]] = []
        for target in order:
            try:
                if round_index == 0:
                    env = base_env | seeder.prepare(target, events[target])
                    run_sample(target, env | {"BENCH_RECORD": str(recording[target])})
                    continue
                timed: dict[bool, float] = {}
                outcome = ""
                for bare in (False, True) if round_index % 2 else (True, False):
                    env = base_env | seeder.prepare(target, events[target])
                    seconds, answer = run_sample(target, env, replay=recording[target] if bare else None)
                    timed[bare] = seconds
                    outcome = outcome if bare else answer
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                samples[target].failures.append(str(error))
                continue
            this_round.append((target, timed[False], timed[True], outcome))
        imported = measure_imports(
            random.Random(round_index).sample(modules, len(modules)), base_env, round_index
        )
        after, _ = run_sample(baseline, base_env)
        if round_index == 0:
            continue
        for module, pairs in imported.items():
            for seconds, baseline_seconds in pairs:
                imports[module].seconds.append(seconds)
                imports[module].baseline_seconds.append(baseline_seconds)
                imports[module].overheads.append((seconds - baseline_seconds) / baseline_seconds)
        round_baseline = (before + after) / 2
        samples[baseline].seconds += [before, after]
        for target, seconds, bare_seconds, outcome in this_round:
            found = samples[target]
            found.seconds.append(seconds)
            found.overheads.append((seconds - round_baseline) / round_baseline)
            found.bare_seconds.append(bare_seconds)
            found.bare_overheads.append((seconds - bare_seconds) / bare_seconds)
            found.bare_floors.append((bare_seconds - round_baseline) / round_baseline)
            found.outcomes[outcome] += 1
    extras = extra_imports(targets, base_env, IMPORT_PROFILE_RUNS)
    return samples, imports, unknown, extras


def import_times(code: str, env: dict[str, str]) -> dict[str, int]:
    """``-X importtime`` of ``code`` in a fresh process: self microseconds per module."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SAMPLE_TIMEOUT_S,
        check=True,
    )
    times: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            own, _, name = line[len("import time:") :].split("|")
            times[name.strip()] = int(own)
    return times


def extra_imports(targets: list[Target], env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    """Per handler module: median import ms, by top-level package, of what the baseline does not import."""
    baseline = import_times("import boto3\nfrom aws_lambda_powertools import event_handler", env)
    extra: dict[str, dict[str, float]] = {}
    for module in sorted({t.module for t in targets}):
        runs_by_package: dict[str, list[float]] = {}
        for _ in range(runs):
            by_package: Counter[str] = Counter()
            for name, own in import_times(f"import {module}", env).items():
                if name not in baseline:
                    by_package[name.split(".")[0]] += own
            for package, own in by_package.items():
                runs_by_package.setdefault(package, []).append(own / 1000)
        extra[module] = {package: statistics.median(ms) for package, ms in runs_by_package.items()}
    return extra


def compile_ms(folder: Path) -> tuple[int, float]:
    """Files under ``folder`` and the ms it takes to compile them (paid per cold start without bytecode)."""
    sources = sorted(folder.rglob("*.py"))
    started = time.perf_counter()
    for source in sources:
        compile(source.read_text(), str(source), "exec")
    return len(sources), (time.perf_counter() - started) * 1000


# --- (b) purge -----------------------------------------------------------------------------------


class RequestCounter:
    """Counts a client's API calls by operation and its HTTP requests (retries included)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.http_requests = 0
        client.meta.events.register("before-call.s3.*", self._on_call)
        client.meta.events.register("before-send.s3.*", self._on_send)

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _on_send(self, **_: Any) -> None:
        self.http_requests += 1

    def reset(self) -> None:
        self.calls.clear()
        self.http_requests = 0


def moto_entries(bucket: str, prefix: str) -> int:
    """Versions and delete markers under ``prefix`` in moto's store (read directly, no paging)."""
    from aws_fixtures import moto_s3_backend

    store = moto_s3_backend().get_bucket(bucket).keys
    return sum(len(versions) for key, versions in store.iterlists() if key.startswith(prefix))


def measure_purge() -> dict[str, Any]:
    from aws_fixtures import create_data_bucket, fill_versions, moto_s3_backend, start_unfinished_upload

    from jobstate import aws
    from jobstate.ids import new_job_id
    from jobstate.layout import input_key, job_prefix, output_key, work_key
    from jobstate.purge import purge_job

    setup = aws.client("s3")
    create_data_bucket(setup, PURGE_BUCKET, versioned=True)
    job_id, neighbour_id = new_job_id(), new_job_id()
    prefix = job_prefix(job_id)
    keys = [work_key(job_id, "reconstruct", f"chunk/{index:05d}.bin") for index in range(PURGE_KEYS)]
    fill_versions(
        PURGE_BUCKET, keys, second_versions=PURGE_SECOND_VERSIONS, delete_markers=PURGE_DELETE_MARKERS
    )
    start_unfinished_upload(setup, PURGE_BUCKET, output_key(job_id, "model.glb"))
    neighbours = [input_key(neighbour_id, f"part{index:03d}.zip") for index in range(PURGE_NEIGHBOUR_KEYS)]
    neighbours.append(f"jobs/{job_id}x/input/capture.zip")
    backend = moto_s3_backend()
    for key in neighbours:
        backend.put_object(PURGE_BUCKET, key, b"keep")
    entries = moto_entries(PURGE_BUCKET, prefix)

    client = aws.session().client("s3", config=aws.retry_config())
    counter = RequestCounter(client)
    started = time.perf_counter()
    report = purge_job(client, PURGE_BUCKET, job_id)
    seconds = time.perf_counter() - started
    first = {"calls": dict(counter.calls), "http_requests": counter.http_requests}

    counter.reset()
    again = purge_job(client, PURGE_BUCKET, job_id)
    second = {"calls": dict(counter.calls), "http_requests": counter.http_requests}
    left_uploads = setup.list_multipart_uploads(Bucket=PURGE_BUCKET, Prefix=prefix).get("Uploads", [])
    return {
        "entries": entries,
        "keys": PURGE_KEYS,
        "report": report.as_dict(),
        "seconds": seconds,
        "first": first,
        "second": second,
        "second_report": again.as_dict(),
        "left_under_prefix": moto_entries(PURGE_BUCKET, prefix) + len(left_uploads),
        "neighbours_kept": moto_entries(PURGE_BUCKET, "jobs/") - moto_entries(PURGE_BUCKET, prefix),
        "neighbours": len(neighbours),
    }


# --- the report ----------------------------------------------------------------------------------


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def cold_start_lines(samples: dict[Target, Samples], unknown: list[str], rounds: int) -> list[str]:
    baseline = next(s for t, s in samples.items() if t.module == BASELINE)
    base_ms = median_ms(baseline.seconds)
    lines = [
        f"(a) Cold start: import + first invocation in a fresh process; {rounds} rounds (ms)",
        "    bare     = the same process doing the handler's AWS work with plain boto3: it imports boto3 and",
        "               powertools' event_handler, then makes the clients, requests and presigns the handler",
        "               made (recorded from it in round 0, the job re-seeded before every sample)",
        "    vs bare  = median over rounds of (handler - its bare twin of the same round) / bare: what",
        f"               ReconFlow's code adds to the cold start (goal <= {OVERHEAD_GOAL:.0%})",
        "    baseline = import boto3 + aws_lambda_powertools.event_handler + one client, no AWS request: "
        f"median {base_ms:.0f} ms ({len(baseline.seconds)} samples)",
        "    vs base  = median of (handler - that round's baseline) / baseline, AWS work included",
        "    every process in a Lambda-like environment: " + ", ".join(sorted(LAMBDA_ENVIRONMENT)),
        "",
        f"    {'event':34} {'handler':27} {'median':>6} {'min':>5} {'bare':>5} {'vs bare':>8} "
        f"{'vs base':>8}  answer",
    ]
    by_handler: dict[str, Samples] = {}
    for target, found in samples.items():
        if target.module == BASELINE:
            continue
        merged = by_handler.setdefault(target.handler, Samples())
        merged.seconds += found.seconds
        merged.overheads += found.overheads
        merged.bare_seconds += found.bare_seconds
        merged.bare_overheads += found.bare_overheads
        merged.bare_floors += found.bare_floors
        if not found.seconds:
            lines.append(f"    {target.name:34} {target.handler:27} {'failed':>6}  {found.failures[:1]}")
            continue
        answer = ", ".join(f"{outcome} x{n}" for outcome, n in found.outcomes.most_common())
        lines.append(
            f"    {target.name:34} {target.handler:27} {median_ms(found.seconds):6.0f} "
            f"{min(found.seconds) * 1000:5.0f} {median_ms(found.bare_seconds):5.0f} "
            f"{statistics.median(found.bare_overheads):+8.1%} "
            f"{statistics.median(found.overheads):+8.1%}  {answer}"
        )
        if found.failures:
            lines.append(f"      {len(found.failures)} failed samples, first: {found.failures[0]}")
    lines += [
        "",
        f"    per handler (all samples of its events), goal: vs bare <= {OVERHEAD_GOAL:.0%}; in brackets the",
        "    bare twin against the baseline: the AWS work's own cost, below which no code doing it can go",
    ]
    for handler, merged in by_handler.items():
        if not merged.seconds:
            continue
        overhead = statistics.median(merged.bare_overheads)
        verdict = "meets goal" if overhead <= OVERHEAD_GOAL else "OVER GOAL"
        floor = statistics.median(merged.bare_floors)
        lines.append(
            f"    {handler:34} median {median_ms(merged.seconds):5.0f} ms  "
            f"bare {median_ms(merged.bare_seconds):5.0f} ms  vs bare {overhead:+7.1%}  "
            f"vs base {statistics.median(merged.overheads):+7.1%} (its bare twin's {floor:+6.1%})  {verdict}"
        )
    if unknown:
        lines.append(f"    event files with no known handler (not measured): {', '.join(unknown)}")
    return lines


def import_lines(imports: dict[str, ImportSamples], extras: dict[str, dict[str, float]]) -> list[str]:
    files, ms = compile_ms(ROOT / "functions")
    lines = [
        "    import alone (a fresh process imports the handler's module; its pair imports boto3 and",
        f"    powertools' event_handler, the baseline's imports), {IMPORT_PAIRS_PER_ROUND} pairs a round, "
        f"no AWS work, goal: vs import <= {OVERHEAD_GOAL:.0%}:",
    ]
    for module, found in imports.items():
        if not found.seconds:
            continue
        overhead = statistics.median(found.overheads)
        verdict = "meets goal" if overhead <= OVERHEAD_GOAL else "OVER GOAL"
        lines.append(
            f"    {module:34} median {median_ms(found.seconds):5.0f} ms  "
            f"boto3 + event_handler {median_ms(found.baseline_seconds):5.0f} ms  vs import {overhead:+7.1%}  "
            f"{verdict}"
        )
    lines += [
        "",
        f"    where a handler's import goes beyond the baseline's (-X importtime, self ms summed by package, "
        f"median of {IMPORT_PROFILE_RUNS}):",
    ]
    for module, by_package in extras.items():
        top = sorted(by_package.items(), key=lambda item: -item[1])[:IMPORT_PACKAGES_SHOWN]
        shown = ", ".join(f"{package} {package_ms:.0f}" for package, package_ms in top)
        lines.append(f"      {module:20} {sum(by_package.values()):5.0f} ms: {shown}")
    lines.append(
        f"    compiling the {files} modules of functions/ from source: {ms:.0f} ms (paid at every cold start "
        "by a package shipped without bytecode; the samples above ran with bytecode)"
    )
    return lines


def purge_lines(purge: dict[str, Any]) -> list[str]:
    report, first, second = purge["report"], purge["first"], purge["second"]
    deletes = first["calls"].get("DeleteObjects", 0)
    total = sum(first["calls"].values())
    per_entries = 1000 / purge["entries"]
    per_keys = 1000 / purge["keys"]
    verdict = "meets goal" if deletes * per_entries <= DELETE_GOAL_PER_1000 else "OVER GOAL"
    calls = ", ".join(f"{name} {n}" for name, n in sorted(first["calls"].items()))
    return [
        "(b) Purge of one job's prefix on a versioned bucket (moto server on loopback)",
        f"    under the prefix: {purge['entries']:,} entries = {purge['keys']:,} keys, "
        f"{PURGE_SECOND_VERSIONS:,} second versions, {PURGE_DELETE_MARKERS:,} delete markers; "
        "+1 unfinished multipart upload",
        f"    purged: {report['versions']:,} versions, {report['delete_markers']:,} delete markers, "
        f"{report['objects']:,} keys, {report['multipart_uploads']} upload aborted",
        f"    requests (event-hook count): {calls}; total {total} "
        f"(HTTP sends {first['http_requests']}, the purge's own count {report['requests']})",
        f"    DeleteObjects per 1,000 entries: {deletes * per_entries:.2f} "
        f"(goal <= {DELETE_GOAL_PER_1000:.0f}: {verdict}); per 1,000 keys: {deletes * per_keys:.2f}",
        f"    all requests per 1,000 entries: {total * per_entries:.2f}; "
        f"per 1,000 keys: {total * per_keys:.2f}",
        f"    seconds for the purge: {purge['seconds']:.1f} (moto's ListObjectVersions copies the whole "
        "bucket for every page; S3 does not)",
        f"    left under the prefix afterwards: {purge['left_under_prefix']}; neighbours kept: "
        f"{purge['neighbours_kept']} of {purge['neighbours']}",
        f"    second purge (idempotent): deleted {purge['second_report']['versions']} versions, "
        f"{purge['second_report']['delete_markers']} markers with {sum(second['calls'].values())} requests "
        f"({', '.join(f'{n} {c}' for n, c in sorted(second['calls'].items()))})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="samples per target (medians)")
    parser.add_argument("--skip-cold-start", action="store_true", help="only measure the purge")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    server, endpoint = start_moto()
    os.environ.update(aws_environment(endpoint))
    for name in ("TABLE_NAME", "BUCKET_NAME"):
        os.environ.pop(name, None)  # the settings' defaults, as the events name them
    try:
        header = [
            f"ReconFlow bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, moto server at {endpoint}",
            "",
        ]
        lines = header
        if not args.skip_cold_start:
            with tempfile.TemporaryDirectory(prefix="reconflow-bench-") as recordings:
                samples, imports, unknown, extras = measure_cold_starts(
                    endpoint, args.rounds, Path(recordings)
                )
            lines += [*cold_start_lines(samples, unknown, args.rounds), ""]
            lines += [*import_lines(imports, extras), ""]
        lines += purge_lines(measure_purge())
    finally:
        server.stop()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    REPORT_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

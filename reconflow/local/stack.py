"""The whole pipeline on one machine: ``template.yaml`` deployed into a moto server, wired to real code.

What runs for real: the Lambda handlers (api, upload, cleanup, reconcile), the state machine's ASL
(moto's Step Functions interpreter), the stage runner and engine (one process per Batch job), the
job-state core. What is emulated: S3, DynamoDB, SQS, EventBridge, IAM, Batch's bookkeeping and
CloudFormation (moto 5.2.5, on 127.0.0.1), API Gateway (``http_api``: HTTP -> payload 2.0 events
with a development identity), Lambda's runtime (``lambdas``: handlers called in this process),
the event deliveries moto does not make (``notifications``, ``status_events``, ``schedule``).

    with LocalStack(StackSettings.from_env()) as stack:
        print(stack.api_url)
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import tempfile
import threading
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from reconflow import openapi
from reconflow.local import (
    console_server,
    deploy,
    engine_profile,
    moto_batch,
    s3_cors,
    s3_post_policy,
    template,
)
from reconflow.local.batch_events import BatchStateEvents
from reconflow.local.executor import ExecutorSettings, ProcessExecutor
from reconflow.local.http_api import HttpApiGateway, Identity, Route
from reconflow.local.job_events import JobEventLog
from reconflow.local.lambdas import LambdaRuntime
from reconflow.local.notifications import (
    NotificationPoller,
    PollerSettings,
    detach_function,
    route_rule_to_queue,
)
from reconflow.local.notifications import Route as EventRoute
from reconflow.local.schedule import PeriodicInvoker
from reconflow.local.status_events import ExecutionStatusEvents

LOG = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
MOTO_CONFIG = {
    "batch": {"use_docker": False},
    "lambda": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
}
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# No X-Ray daemon here; the handlers' logs and metrics go to {work_dir}/functions.log.
POWERTOOLS_LOCAL = {"POWERTOOLS_TRACE_DISABLED": "true"}
QUIET_POWERTOOLS = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
ENV_PREFIX = "RECONFLOW_LOCAL_"
# Signals that stop the stack as Ctrl-C does (KeyboardInterrupt, then stop(): its stage processes
# are killed, not orphaned against a dead endpoint). `kill PID` sends SIGTERM; a closed terminal SIGHUP.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Template parameters without a default. The image is this source tree (the executor runs the
# stage runner from it) and the JWT authorizer is replaced by the development identity.
LOCAL_PARAMETERS = {
    "ContainerImageUri": "reconflow-gpu:local-source-tree",
    "JwtIssuer": "https://reconflow.local/dev",
    "JwtAudience": "reconflow-local",
}


@dataclass(frozen=True)
class StackSettings:
    template_path: Path = REPO_ROOT / "template.yaml"
    stack_name: str = "reconflow-local"
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    api_port: int = 0  # 0: a free port
    moto_port: int = 0
    console_port: int = 0  # the web console's own address (console/dist, reconflow.local.console_server)
    # Where the Batch jobs' logs go (a temporary folder when None).
    work_dir: Path | None = None
    # Seconds between reconciler runs (the template schedules it every few minutes in AWS).
    reconcile_interval_s: float = 5.0
    # Seconds between two looks at executions' statuses (for the status-change events).
    status_poll_interval_s: float = 0.5
    # Service settings for this stack's functions and containers (e.g. CANCEL_CONFIRM_WINDOW_S).
    environment: dict[str, str] = field(default_factory=dict)
    # Template parameters to set (others: defaults, or moto's network for VPC/subnet/SG ones).
    parameters: dict[str, str] = field(default_factory=lambda: dict(LOCAL_PARAMETERS))
    quiet: bool = True
    # "tiny": stages run with smaller draft sizes (reconflow.local.engine_profile), for tests.
    engine_profile: str | None = None
    dev_sub: str = "local-dev"
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    poller: PollerSettings = field(default_factory=PollerSettings)

    @classmethod
    def from_env(cls, **overrides: Any) -> StackSettings:
        """Defaults, then ``RECONFLOW_LOCAL_{API_PORT,MOTO_PORT,WORK_DIR,RECONCILE_S}``, then overrides."""
        env = os.environ
        values: dict[str, Any] = {}
        if env.get(f"{ENV_PREFIX}API_PORT"):
            values["api_port"] = int(env[f"{ENV_PREFIX}API_PORT"])
        if env.get(f"{ENV_PREFIX}MOTO_PORT"):
            values["moto_port"] = int(env[f"{ENV_PREFIX}MOTO_PORT"])
        if env.get(f"{ENV_PREFIX}CONSOLE_PORT"):
            values["console_port"] = int(env[f"{ENV_PREFIX}CONSOLE_PORT"])
        if env.get(f"{ENV_PREFIX}WORK_DIR"):
            values["work_dir"] = Path(env[f"{ENV_PREFIX}WORK_DIR"])
        if env.get(engine_profile.PROFILE_ENV):
            values["engine_profile"] = env[engine_profile.PROFILE_ENV]
        if env.get(f"{ENV_PREFIX}RECONCILE_S"):
            values["reconcile_interval_s"] = float(env[f"{ENV_PREFIX}RECONCILE_S"])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return replace(cls(), **values)


@dataclass
class FunctionInfo:
    logical_id: str
    name: str
    arn: str
    handler: str
    environment: dict[str, str]


class LocalStack:
    """Start with ``start()`` (or ``with``); everything is torn down by ``stop()``."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.runtime = LambdaRuntime(region=self.settings.region)
        self.functions: dict[str, FunctionInfo] = {}
        self.deployment: deploy.Deployment | None = None
        self.executor: ProcessExecutor | None = None
        self.poller: NotificationPoller | None = None
        self.status_events: list[ExecutionStatusEvents] = []
        self.schedules: list[PeriodicInvoker] = []
        self.gateway: HttpApiGateway | None = None
        self.console: console_server.ConsoleServer | None = None
        self.job_events: JobEventLog | None = None
        self.moto_url = ""
        self._server: Any = None
        self._moto_config_before: dict[str, Any] | None = None
        self._moto_global_cors_before: bool | None = None
        self._exits = ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._saved_handlers: dict[int, Any] = {}

    # -- environment ------------------------------------------------------------------

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    @staticmethod
    def _reset_cached_clients() -> None:
        """Drop clients and handler dependencies made against another endpoint or table."""
        from handlers import deps
        from jobstate import aws

        aws.reset_clients()
        deps.reset()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.settings.region, endpoint_url=self.moto_url)

    # -- start -----------------------------------------------------------------------

    def _start_moto(self) -> None:
        from moto.moto_server import werkzeug_app
        from moto.server import ThreadedMotoServer

        # moto's server answers every origin by default; here S3 answers as the buckets' CORS
        # rules (the template's) say, so the console's uploads and downloads meet real CORS.
        self._moto_global_cors_before = werkzeug_app.DISABLE_GLOBAL_CORS
        werkzeug_app.DISABLE_GLOBAL_CORS = True
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if self.settings.quiet:
            logging.getLogger("moto").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(
            ip_address=self.settings.host, port=self.settings.moto_port, verbose=False
        )
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # The interpreter calls back into the server on MOTO_PORT; boto3 follows AWS_ENDPOINT_URL.
        self._set_env({"MOTO_PORT": str(port), "AWS_ENDPOINT_URL": self.moto_url})
        # moto's backends are process-wide: an earlier stack in this process must leave nothing behind.
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10).raise_for_status()
        # The config is process-wide too (moto's default_user_config): keep a copy to put back on stop,
        # so code that runs moto in-process after this stack is not left executing state machines.
        from moto.core.config import default_user_config

        self._moto_config_before = copy.deepcopy(default_user_config)
        requests.post(f"{self.moto_url}/moto-api/config", json=MOTO_CONFIG, timeout=10).raise_for_status()

    def _deploy(self) -> deploy.Deployment:
        sam = template.load_template(self.settings.template_path)
        s3 = self.client("s3")
        packaged = deploy.package(sam, self.settings.template_path.parent, s3)
        parameters = deploy.parameter_values(
            packaged, deploy.default_network(self.client("ec2")), self._parameters()
        )
        cfn = deploy.to_cloudformation(packaged, parameters)
        with warnings.catch_warnings():
            # moto names each resource type its CloudFormation skips (API Gateway v2, Scheduler,
            # bucket policy); the stack stands in for the first two and S3 enforces no policy here.
            warnings.simplefilter("ignore")
            deployment = deploy.create_stack(
                self.client("cloudformation"), self.settings.stack_name, cfn, parameters
            )
        deploy.apply_unsupported_properties(deployment, s3, self.client("dynamodb"))
        return deployment

    def _parameters(self) -> dict[str, str]:
        """The settings' template parameters, with the console's origin for the API's and S3's CORS."""
        assert self.console is not None
        return {console_server.ORIGIN_PARAMETER: self.console.origin, **self.settings.parameters}

    def _start_console(self) -> None:
        """Bind the console's address first: its origin goes into the template's CORS settings."""
        self.console = console_server.ConsoleServer(host=self.settings.host, port=self.settings.console_port)
        if not self.console.built:
            LOG.warning("the web console is not built: %s", console_server.BUILD_HINT)
        self.console.start()

    def _configure_console(self, deployment: deploy.Deployment) -> None:
        """What the console needs once the API is up: config.json, its headers, the buckets' CORS."""
        assert self.console is not None
        assert self.gateway is not None
        sam = template.load_template(self.settings.template_path)
        console_server.apply_bucket_cors(sam, deployment, self.client("s3"))
        self.console.config = console_server.local_config(self.gateway.url, self.settings.dev_sub)
        self.console.headers = console_server.security_headers(
            sam, console_server.local_endpoints(self.gateway.url, self.moto_url)
        )

    def _collect_functions(self, deployment: deploy.Deployment) -> None:
        lambda_client = self.client("lambda")
        for logical, name in deployment.of_type("AWS::Lambda::Function").items():
            config = lambda_client.get_function(FunctionName=name)["Configuration"]
            self.functions[logical] = FunctionInfo(
                logical_id=logical,
                name=name,
                arn=config["FunctionArn"],
                handler=config["Handler"],
                environment={
                    k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()
                },
            )

    def _function_environment(self) -> dict[str, str]:
        """The union of the functions' variables (one process hosts them all, so they must agree)."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for name, value in function.environment.items():
                if merged.get(name, value) != value:
                    raise ValueError(f"functions disagree on {name}: {merged[name]!r} vs {value!r}")
                merged[name] = value
        return merged

    def _fill_state_machines(self, deployment: deploy.Deployment) -> list[str]:
        """Each deployed state machine, with its definition's substitutions filled.

        With ``execute_state_machine`` on, moto's API serves state machines from its interpreter's
        backend, while its CloudFormation creates them in the plain one: so the machine is
        (re)created through the API under the deployed name and role.
        """
        sfn, iam = self.client("stepfunctions"), self.client("iam")
        arns = []
        for logical, arn in deployment.of_type("AWS::StepFunctions::StateMachine").items():
            definition = template.filled_definition(
                self.settings.template_path, logical, self._resolver(deployment)
            )
            role = deployment.properties(logical).get("RoleArn", {})
            role_logical = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
            role_arn = (
                iam.get_role(RoleName=deployment.physical_ids[role_logical])["Role"]["Arn"]
                if role_logical
                else str(role)
            )
            name = arn.rsplit(":", 1)[-1]
            arns.append(deploy.put_state_machine(sfn, name, definition, role_arn))
        return arns

    def _resolver(self, deployment: deploy.Deployment) -> template.Resolver:
        functions_by_logical = {logical: info for logical, info in self.functions.items()}

        def ref(logical: str) -> str:
            return deployment.physical_ids[logical]

        def get_att(logical: str, attribute: str) -> str:
            if attribute == "Arn" and logical in functions_by_logical:
                return functions_by_logical[logical].arn
            if attribute == "Arn":
                return deployment.physical_ids[logical]  # Batch, SFN, SQS: the physical id is the ARN
            raise KeyError(f"no local value for {logical}.{attribute}")

        return template.Resolver(
            ref=ref, get_att=get_att, region=self.settings.region, stack_name=self.settings.stack_name
        )

    def _function_events(self, *types: str) -> list[tuple[str, str, dict[str, Any]]]:
        """``(function logical id, event name, event properties)`` of the SAM events of these types."""
        sam = template.load_template(self.settings.template_path)
        found = []
        for logical, resource in sam.get("Resources", {}).items():
            if resource.get("Type") == "AWS::Serverless::Function":
                for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
                    if event.get("Type") in types:
                        found.append((logical, event_name, event.get("Properties", {})))
        return found

    def _event_routes(self, deployment: deploy.Deployment) -> list[EventRoute]:
        """Rule events get a local SQS target on the deployed rule; schedules run periodically here."""
        events, sqs = self.client("events"), self.client("sqs")
        routes = []
        for logical, event_name, properties in self._function_events("EventBridgeRule", "CloudWatchEvent"):
            function = self.functions[logical]
            rule_name = deployment.physical_ids[f"{logical}{event_name}"].rsplit("/", 1)[-1]  # SAM's naming
            bus = properties.get("EventBusName", "default")
            routes.append(
                route_rule_to_queue(
                    events,
                    sqs,
                    rule_name,
                    (function.arn, function.name, function.handler),
                    bus,
                    queue_name=f"{logical}{event_name}",
                )
            )
        for logical, event_name, _ in self._function_events("Schedule", "ScheduleV2"):
            function = self.functions[logical]
            rule = deployment.physical_ids.get(f"{logical}{event_name}")
            if deployment.resource_types.get(f"{logical}{event_name}") == "AWS::Events::Rule" and rule:
                detach_function(events, rule.rsplit("/", 1)[-1], function.arn)
            self.schedules.append(
                PeriodicInvoker(
                    self.runtime, function.handler, function.name, self.settings.reconcile_interval_s
                )
            )
        return routes

    def _http_routes(self) -> tuple[list[Route], dict[str, FunctionInfo]]:
        """``Method``/``Path`` of every ``HttpApi`` event in the SAM template, with its function."""
        routes, targets = [], {}
        for logical, _, properties in self._function_events("HttpApi"):
            route = Route(properties.get("Method", "ANY").upper(), properties.get("Path", "/{proxy+}"))
            routes.append(route)
            targets[route.route_key] = self.functions[logical]
        return routes, targets

    def _stop_on_signals(self) -> None:
        """SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as SIGINT does."""
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can be set only there; a stack in a thread is stopped by its owner
        for number in STOP_SIGNALS:
            self._saved_handlers[number] = signal.signal(number, signal.default_int_handler)

    def _restore_signals(self) -> None:
        for number, previous in self._saved_handlers.items():
            signal.signal(number, previous)
        self._saved_handlers.clear()

    def start(self) -> LocalStack:
        settings = self.settings
        try:
            self._stop_on_signals()
            self._set_env(
                {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": settings.region, "AWS_REGION": settings.region}
            )
            self._set_env(
                {**POWERTOOLS_LOCAL, **(QUIET_POWERTOOLS if settings.quiet else {}), **settings.environment}
            )
            self._saved_env.setdefault("AWS_PROFILE", os.environ.pop("AWS_PROFILE", None))
            self._start_moto()
            self._exits.enter_context(self.runtime.patch_moto())
            self._exits.enter_context(s3_post_policy.enforced())  # S3 refuses what the form's policy forbids
            self._exits.enter_context(s3_cors.applied())  # ... and its answers carry the bucket's CORS
            self.work_dir = work_dir = settings.work_dir or Path(
                self._exits.enter_context(tempfile.TemporaryDirectory(prefix="reconflow-local-"))
            )
            work_dir.mkdir(parents=True, exist_ok=True)
            self._exits.enter_context(self.runtime.output_to(work_dir / "functions.log"))
            container_env = {"AWS_ENDPOINT_URL": self.moto_url, **settings.environment}
            executor_settings = settings.executor
            if settings.engine_profile:
                container_env[engine_profile.PROFILE_ENV] = settings.engine_profile
                executor_settings = replace(executor_settings, module_wrapper=engine_profile.__name__)
            self.executor = ProcessExecutor(
                base_environment=container_env,
                log_dir=work_dir / "batch-logs",
                cwd=REPO_ROOT,
                settings=executor_settings,
            )
            self.batch_events = BatchStateEvents(self.client("events"))
            self.executor.on_runnable = self.batch_events.runnable
            self._exits.enter_context(moto_batch.patched(executor=self.executor.start))
            self._start_console()
            self.deployment = deployment = self._deploy()
            self._collect_functions(deployment)
            self._set_env(self._function_environment())
            self._reset_cached_clients()
            state_machines = self._fill_state_machines(deployment)
            self.poller = NotificationPoller(
                self.client("sqs"), self.runtime, self._event_routes(deployment), settings.poller
            )
            self.poller.start()
            from jobstate.settings import Settings

            self.job_events = JobEventLog(
                self.client("events"),
                self.client("sqs"),
                Settings().event_source,
                work_dir / "job-events.log",
            )
            self.job_events.start()
            for arn in state_machines:
                watcher = ExecutionStatusEvents(
                    self.client("stepfunctions"), self.client("events"), arn, settings.status_poll_interval_s
                )
                watcher.start()
                self.status_events.append(watcher)
            for schedule in self.schedules:
                schedule.start()
            routes, targets = self._http_routes()
            document = Route("GET", openapi.SERVED_PATH)  # the API's OpenAPI document, beside it

            def invoke_api(event: dict[str, Any]) -> Any:
                if event["routeKey"] == document.route_key:
                    return openapi.document_answer(self.api_url)
                function = targets[event["routeKey"]]
                return self.runtime.invoke(function.handler, event, function.name)

            self.gateway = HttpApiGateway(
                [*routes, document],
                invoke_api,
                Identity(default_sub=settings.dev_sub),
                settings.host,
                settings.api_port,
                cors=console_server.api_cors(
                    template.load_template(settings.template_path), deployment.parameters
                ),
            )
            self.gateway.start()
            self._configure_console(deployment)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "start() first"
        return self.gateway.url

    @property
    def console_url(self) -> str:
        """The web console's address (``/`` of the built console/dist)."""
        assert self.console is not None, "start() first"
        return f"{self.console.url}/"

    def resource(self, logical_id: str) -> str:
        """The physical id of a template resource (e.g. the bucket's name)."""
        assert self.deployment is not None, "start() first"
        return self.deployment.physical_ids[logical_id]

    def physical_of_type(self, resource_type: str) -> str:
        """The one deployed resource of ``resource_type`` (the bucket, the table, the state machine)."""
        assert self.deployment is not None, "start() first"
        found = list(self.deployment.of_type(resource_type).values())
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {resource_type}")
        return found[0]

    # -- stop -------------------------------------------------------------------------

    def _stop_running_executions(self) -> None:
        """Abort executions still running: moto's interpreter threads would call a stopped server."""
        if self.deployment is None or self._server is None:
            return
        sfn = self.client("stepfunctions")
        for watcher in self.status_events:
            try:
                for page in sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=watcher.state_machine_arn, statusFilter="RUNNING"
                ):
                    for execution in page["executions"]:
                        sfn.stop_execution(executionArn=execution["executionArn"], error="LocalStack.Stopped")
            except Exception as error:  # best effort while tearing down
                LOG.warning("could not stop running executions: %s", error)

    def stop(self) -> None:
        self._stop_running_executions()
        if self.gateway is not None:
            self.gateway.stop()
        if self.console is not None:
            self.console.stop()
        for watcher in self.status_events:
            watcher.stop()
        for schedule in self.schedules:
            schedule.stop()
        if self.poller is not None:
            self.poller.stop()
        if self.job_events is not None:
            self.job_events.stop()
        if self.executor is not None:
            self.executor.shutdown()
        self._exits.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._moto_global_cors_before is not None:
            from moto.moto_server import werkzeug_app

            werkzeug_app.DISABLE_GLOBAL_CORS = self._moto_global_cors_before
            self._moto_global_cors_before = None
        if self._moto_config_before is not None:
            from moto.core.config import default_user_config

            default_user_config.clear()
            default_user_config.update(self._moto_config_before)
            self._moto_config_before = None
        self._restore_env()
        self._reset_cached_clients()
        self._restore_signals()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

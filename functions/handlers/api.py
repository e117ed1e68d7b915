"""The HTTP API (API Gateway v2, payload 2.0, JWT authorizer): five routes over the job store.

Each route is a few lines: who is calling, what they sent, one call into the core. Domain errors
raised anywhere below become ``{"error": {"code", "message"}}`` answers in ONE place
(``domain_error``): 400 malformed, 401 no identity, 404 unknown or another caller's job,
409 state conflict. Anything else is a 500 with the same body shape, logged with its traceback.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths

from handlers import deps
from handlers.api_input import confirm_token, create_job_request, json_object, page_request
from handlers.identity import MissingIdentityError, caller
from handlers.links import download_links, upload_form
from handlers.observability import count, logger, metrics
from jobstate.errors import InvalidJobId, InvalidRequest, JobNotFound, JobStateError, StateConflict
from jobstate.ids import parse_job_id
from jobstate.jobs import iso_utc

if TYPE_CHECKING:  # annotations only: powertools' typing module is not needed to run
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayHttpResolver()

# The one mapping from domain errors to HTTP statuses; the first matching class wins.
STATUS_BY_ERROR: tuple[tuple[type[JobStateError], HTTPStatus], ...] = (
    (MissingIdentityError, HTTPStatus.UNAUTHORIZED),
    (InvalidJobId, HTTPStatus.BAD_REQUEST),
    (InvalidRequest, HTTPStatus.BAD_REQUEST),
    (JobNotFound, HTTPStatus.NOT_FOUND),
    (StateConflict, HTTPStatus.CONFLICT),  # CancelConflict included
)
CANCEL_REQUESTED = "cancel_requested"
PAYLOAD_VERSION = "2.0"  # the only payload format the template's HttpApi sends


def error_response(status: HTTPStatus, code: str, message: str) -> Response:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message}},
    )


@app.exception_handler(JobStateError)
def domain_error(error: JobStateError) -> Response:
    status = next((s for kind, s in STATUS_BY_ERROR if isinstance(error, kind)), None)
    if status is None:
        logger.exception("unmapped domain error")
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    logger.info("request refused", extra={"status": status.value, "code": error.code})
    return error_response(status, error.code, error.message)


@app.not_found
def no_such_route(_: NotFoundError) -> Response:
    return error_response(HTTPStatus.NOT_FOUND, "route_not_found", "no such route")


@app.exception_handler(Exception)
def unexpected_error(_: Exception) -> Response:
    logger.exception("unexpected error")
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error")


def _body() -> dict[str, Any]:
    event = app.current_event
    return json_object(event.body, base64_encoded=event.is_base64_encoded)


@app.post("/jobs")
def create_job() -> tuple[dict[str, Any], int]:
    owner = caller(app.current_event.raw_event)
    request = create_job_request(_body())
    d = deps.current()
    job = d.jobs.create(owner, preset=request.preset, name=request.name)
    logger.append_keys(job_id=job.job_id)
    count("JobCreated")
    upload = upload_form(d.s3, d.settings, job.job_id, request.capture)
    return {"job_id": job.job_id, "status": job.status, "upload": upload}, HTTPStatus.CREATED.value


@app.get("/jobs")
def list_jobs() -> dict[str, Any]:
    owner = caller(app.current_event.raw_event)
    d = deps.current()
    page = page_request(app.current_event.query_string_parameters, d.settings)
    jobs, next_cursor = d.jobs.list_for_owner(owner, limit=page.limit, cursor=page.cursor)
    return {"jobs": [job.to_public() for job in jobs], "next_cursor": next_cursor}


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> dict[str, Any]:
    owner = caller(app.current_event.raw_event)
    d = deps.current()
    job = d.jobs.get_owned(parse_job_id(job_id), owner)
    body = job.to_public()
    downloads = download_links(d.s3, d.settings, job)
    if downloads:
        body["downloads"] = downloads
        body["downloads_expire_in"] = d.settings.download_url_expires_s
    return body


@app.post("/jobs/<job_id>/cancel")
def request_cancel(job_id: str) -> tuple[dict[str, Any], int]:
    owner = caller(app.current_event.raw_event)
    job_id = parse_job_id(job_id)
    request = deps.current().jobs.request_cancel(job_id, owner)
    count("CancelRequested")
    body = {
        "job_id": job_id,
        "status": CANCEL_REQUESTED,
        "token": request.token,
        "expires_at": iso_utc(request.expires_at),
    }
    return body, HTTPStatus.ACCEPTED.value


@app.post("/jobs/<job_id>/cancel/confirm")
def confirm_cancel(job_id: str) -> tuple[dict[str, Any], int]:
    owner = caller(app.current_event.raw_event)
    job_id = parse_job_id(job_id)
    token = confirm_token(_body())
    job = deps.current().jobs.confirm_cancel(job_id, owner, token)
    count("CancelConfirmed")
    return {"job_id": job.job_id, "status": job.status}, HTTPStatus.ACCEPTED.value


def http_api_request_problem(event: Any) -> str | None:
    """Why ``event`` is not an HTTP API payload 2.0 request (REST v1, a bare object...), or None."""
    if not isinstance(event, dict):
        return f"the event is a {type(event).__name__}, not an HTTP API request"
    if event.get("version") != PAYLOAD_VERSION:
        return "not an HTTP API payload 2.0 request"
    context = event.get("requestContext")
    if not isinstance(context, dict) or not isinstance(context.get("http"), dict):
        return "the request has no requestContext.http"
    http = context["http"]
    if not isinstance(http.get("method"), str) or not isinstance(event.get("rawPath"), str):
        return "the request has no method or path"
    for name, kind in (("headers", dict), ("queryStringParameters", dict), ("pathParameters", dict)):
        if event.get(name) is not None and not isinstance(event[name], kind):
            return f"{name} is not an object"
    if event.get("body") is not None and not isinstance(event["body"], str):
        return "body is not a string"
    return None


@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    problem = http_api_request_problem(event)
    if problem is None:
        response = app.resolve(event, context)
    else:
        logger.warning("not an HTTP API request; answered 400", extra={"reason": problem})
        response = {
            "statusCode": HTTPStatus.BAD_REQUEST.value,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps({"error": {"code": InvalidRequest.code, "message": problem}}),
            "isBase64Encoded": False,
        }
    count(f"Api{response['statusCode'] // 100}xx")
    return response

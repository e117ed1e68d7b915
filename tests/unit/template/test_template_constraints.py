"""CloudFormation's documented constraints that cfn-lint does not check and the template relies on.

A violation here passes ``make lint`` and fails only when CloudFormation creates the resource,
which rolls back the whole stack. Each check cites the rule from the resource's reference page.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconflow.local import template

SAM = template.load_template()
RESOURCES = SAM["Resources"]
# AWS::S3::Bucket Rule: "You must specify at least one of the following properties".
RULE_ACTIONS = frozenset(
    {
        "AbortIncompleteMultipartUpload",
        "ExpirationDate",
        "ExpirationInDays",
        "NoncurrentVersionExpiration",
        "NoncurrentVersionExpirationInDays",
        "NoncurrentVersionTransition",
        "NoncurrentVersionTransitions",
        "Transition",
        "Transitions",
    }
)
# Rule.ExpiredObjectDeleteMarker: "cannot be specified with ExpirationInDays, ExpirationDate, or TagFilters".
DELETE_MARKER_EXCLUDES = frozenset({"ExpirationInDays", "ExpirationDate", "TagFilters"})
RULE_ID_MAX = 255
# Lambda runtimes this template may deploy (python3.11 is deprecated in June 2027).
SUPPORTED_RUNTIMES = frozenset({"python3.13"})
# EventBridge target RetryPolicy: MaximumEventAgeInSeconds 60..86400, MaximumRetryAttempts 0..185.
EVENT_AGE_RANGE = (60, 86_400)
RETRY_ATTEMPTS_RANGE = (0, 185)
# Batch RetryStrategy.Attempts 1..10, EvaluateOnExit at most 5 entries; AttemptDurationSeconds >= 60.
BATCH_ATTEMPTS_RANGE = (1, 10)
BATCH_EVALUATE_ON_EXIT_MAX = 5


def lifecycle_rules() -> list[dict[str, Any]]:
    return RESOURCES["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]


@pytest.mark.parametrize("rule", lifecycle_rules(), ids=lambda rule: rule["Id"])
def test_every_lifecycle_rule_has_an_expiration_or_transition_of_its_own(rule: dict[str, Any]) -> None:
    assert set(rule) & RULE_ACTIONS, f"{rule['Id']} needs one of {sorted(RULE_ACTIONS)}"


@pytest.mark.parametrize("rule", lifecycle_rules(), ids=lambda rule: rule["Id"])
def test_expired_delete_markers_never_share_a_rule_with_a_day_date_or_tag_filter(
    rule: dict[str, Any],
) -> None:
    if "ExpiredObjectDeleteMarker" in rule:
        assert not set(rule) & DELETE_MARKER_EXCLUDES, rule["Id"]


def test_lifecycle_rules_have_unique_ids_a_status_and_one_kind_of_filter() -> None:
    ids = [rule["Id"] for rule in lifecycle_rules()]
    assert len(ids) == len(set(ids))
    assert all(len(i) <= RULE_ID_MAX for i in ids)
    for rule in lifecycle_rules():
        assert rule["Status"] in ("Enabled", "Disabled")
        # The legacy Prefix and the ObjectSizeGreaterThan/TagFilters forms are CFN's; Filter is S3's.
        assert not ("Prefix" in rule and "Filter" in rule)


def test_delete_markers_and_old_versions_of_job_objects_are_removed() -> None:
    """What the bucket relies on: the purge empties a prefix, the lifecycle sweeps leftovers."""
    rules = {rule["Id"]: rule for rule in lifecycle_rules()}
    sweeper = next(rule for rule in rules.values() if rule.get("ExpiredObjectDeleteMarker") is True)
    assert sweeper["Prefix"] == "jobs/"
    assert sweeper["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    assert rules["expire-finished-jobs"]["ExpirationInDays"] == {"Ref": "JobRetentionDays"}


def test_every_function_runs_a_supported_runtime() -> None:
    default = SAM["Globals"]["Function"].get("Runtime")
    for logical, resource in template.resources_of_type(SAM, template.FUNCTION_TYPES).items():
        assert resource["Properties"].get("Runtime", default) in SUPPORTED_RUNTIMES, logical


def _rule_retry_policies() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical, resource in template.resources_of_type(SAM, template.FUNCTION_TYPES).items():
        for name, event in resource["Properties"].get("Events", {}).items():
            policy = event.get("Properties", {}).get("RetryPolicy")
            if policy:
                found.append((f"{logical}.{name}", policy))
    return found


@pytest.mark.parametrize(
    ("name", "policy"), _rule_retry_policies(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_event_retry_policies_are_within_eventbridge_bounds(name: str, policy: dict[str, Any]) -> None:
    if "MaximumEventAgeInSeconds" in policy:
        low, high = EVENT_AGE_RANGE
        assert low <= policy["MaximumEventAgeInSeconds"] <= high, name
    low, high = RETRY_ATTEMPTS_RANGE
    assert low <= policy["MaximumRetryAttempts"] <= high, name


def test_the_job_definition_retry_strategy_is_within_batch_bounds() -> None:
    definition = RESOURCES["StageJobDefinition"]["Properties"]
    strategy = definition["RetryStrategy"]
    assert BATCH_ATTEMPTS_RANGE[0] <= strategy["Attempts"] <= BATCH_ATTEMPTS_RANGE[1]
    assert len(strategy["EvaluateOnExit"]) <= BATCH_EVALUATE_ON_EXIT_MAX
    minimum = SAM["Parameters"]["StageTimeoutSeconds"]["MinValue"]
    assert minimum >= 60  # Batch: "The minimum value for the timeout is 60 seconds"


def test_every_stage_task_has_a_time_limit_below_the_executions() -> None:
    """Each submitJob.sync state is bounded (TimeoutSeconds or TimeoutSecondsPath) and the whole
    execution's limit is longer than one stage's."""
    path = template.definition_path(template.TEMPLATE_PATH, "StateMachine", SAM)
    definition = json.loads(path.read_text())
    stages = {
        name: state
        for name, state in definition["States"].items()
        if state.get("Resource", "").endswith("batch:submitJob.sync")
    }
    assert len(stages) == 6
    for name, state in stages.items():
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name

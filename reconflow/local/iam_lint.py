"""parliament (an IAM policy linter) over every policy of the SAM-transformed template.

``python -m reconflow.local.iam_lint`` (in ``make lint``) fails on any finding that is not
justified in the template: a resource lists the findings it accepts, each with a reason, under
``Metadata.parliament`` (the resource that carries the policy, or the SAM resource whose generated
role does: ``ApiFunction`` for ``ApiFunctionRole``):

    Metadata:
      parliament:
        - issue: RESOURCE_MISMATCH
          action: states:DescribeExecution
          reason: standard executions only; the express* resource type does not apply

A justification that no longer matches any finding fails the lint too, so none outlives its cause.
parliament's CLI refuses ``--file`` when stdin is not a terminal (CI), so its Python API is used.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconflow.local import policies, template

METADATA_KEY = "parliament"
ROLE_SUFFIX = "Role"


@dataclass(frozen=True)
class Finding:
    policy: str  # resource/policy name
    resource: str  # logical id carrying the policy
    issue: str
    detail: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.issue} {self.detail}".rstrip()


@dataclass(frozen=True)
class Justification:
    resource: str
    issue: str
    action: str
    reason: str

    def covers(self, finding: Finding) -> bool:
        return (
            finding.resource in (self.resource, self.resource + ROLE_SUFFIX)
            and finding.issue == self.issue
            and (not self.action or self.action in finding.detail)
        )


def analyze(document_json: str) -> list[tuple[str, str]]:
    """``(issue, detail)`` of each parliament finding on one policy document."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources
        import parliament

    result = parliament.analyze_policy_string(document_json)
    return [(finding.issue, str(finding.detail or "")) for finding in result.findings]


def findings(cfn: Mapping[str, Any]) -> list[Finding]:
    """Every finding over every policy of the transformed template ``cfn``."""
    found = []
    for policy in policies.policy_documents(cfn):
        for issue, detail in analyze(policies.as_json(policy)):
            found.append(Finding(policy.label, policy.resource, issue, detail))
    return found


def justifications(sam: Mapping[str, Any]) -> list[Justification]:
    """The accepted findings listed under ``Metadata.parliament`` of the SAM template's resources."""
    listed = []
    for logical, resource in sam.get("Resources", {}).items():
        for entry in resource.get("Metadata", {}).get(METADATA_KEY, []) or []:
            if not entry.get("reason"):
                raise ValueError(f"{logical}: a parliament justification needs a reason")
            listed.append(
                Justification(
                    logical, str(entry["issue"]), str(entry.get("action", "")), str(entry["reason"])
                )
            )
    return listed


def check(
    found: Iterable[Finding], accepted: Iterable[Justification]
) -> tuple[list[Finding], list[Justification]]:
    """``(unjustified findings, justifications that match nothing)``."""
    found, accepted = list(found), list(accepted)
    unjustified = [f for f in found if not any(j.covers(f) for j in accepted)]
    stale = [j for j in accepted if not any(j.covers(f) for f in found)]
    return unjustified, stale


def main(template_path: Path | str = template.TEMPLATE_PATH) -> int:
    cfn = policies.transformed_template(template_path)
    documents = list(policies.policy_documents(cfn))
    found = findings(cfn)
    accepted = justifications(template.load_template(template_path))
    unjustified, stale = check(found, accepted)
    for finding in unjustified:
        print(f"iam-lint: {finding}", file=sys.stderr)
    for justification in stale:
        print(
            f"iam-lint: {justification.resource}: justification of {justification.issue} "
            f"{justification.action} matches no finding; remove it",
            file=sys.stderr,
        )
    print(
        f"iam-lint: {len(documents)} policies, {len(found)} findings, "
        f"{len(found) - len(unjustified)} justified in the template"
    )
    return 1 if unjustified or stale else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

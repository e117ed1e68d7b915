"""Read ``template.yaml`` the way the tools do, and fill the state machine's ``DefinitionSubstitutions``.

The template is loaded with cfn-lint's loader, which understands the short-form intrinsics
(``!Ref``, ``!GetAtt``, ``!Sub``) and turns them into their long form. moto's CloudFormation does not
apply a state machine's ``DefinitionSubstitutions`` (and the tests create no stack at all), so the
definition file is read from ``DefinitionUri`` and each ``${Name}`` is replaced with the value of
its intrinsic, resolved by a ``Resolver`` that knows the physical ids of the deployed resources.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode.cfn_yaml import load as _cfn_load

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
STATE_MACHINE_TYPES = frozenset({"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"})
FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})
# `${Name}` placeholders as SAM's DefinitionSubstitutions write them.
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# `${Name}` / `${Logical.Attribute}` in Fn::Sub strings (`${!Literal}` escapes).
_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")


class UnresolvedError(ValueError):
    """An intrinsic or a placeholder that could not be given a value."""


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, short-form intrinsics in their long form."""
    return _cfn_load(str(path))


def resources_of_type(template: Mapping[str, Any], types: frozenset[str]) -> dict[str, dict[str, Any]]:
    return {
        logical: resource
        for logical, resource in template.get("Resources", {}).items()
        if resource.get("Type") in types
    }


def resource(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    found = template.get("Resources", {}).get(logical_id)
    if found is None:
        raise KeyError(f"template declares no resource {logical_id!r}")
    return found


def function_handlers(template: Mapping[str, Any]) -> dict[str, str]:
    """``{logical id: "module.function"}`` of every function (Globals' Handler when one is set there)."""
    default = template.get("Globals", {}).get("Function", {}).get("Handler")
    handlers = {}
    for logical, function in resources_of_type(template, FUNCTION_TYPES).items():
        handler = function.get("Properties", {}).get("Handler", default)
        if handler is None:
            raise UnresolvedError(f"function {logical} names no Handler")
        handlers[logical] = handler
    return handlers


@dataclass(frozen=True)
class Resolver:
    """Values of ``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::Join`` for one deployment.

    ``ref(logical_id)`` and ``get_att(logical_id, attribute)`` answer for the template's resources
    (and ``ref`` for its parameters); the pseudo parameters come from the fields.
    """

    ref: Callable[[str], str]
    get_att: Callable[[str, str], str]
    region: str = "us-east-1"
    account_id: str = "123456789012"
    partition: str = "aws"
    stack_name: str = "reconflow-local"
    url_suffix: str = "amazonaws.com"

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": self.url_suffix,
        }.get(name)

    def _ref(self, name: str) -> str:
        pseudo = self._pseudo(name)
        return pseudo if pseudo is not None else str(self.ref(name))

    def _sub_variable(self, name: str, variables: Mapping[str, Any]) -> str:
        if name in variables:
            return self.resolve(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical, attribute = name.split(".", 1)
            return str(self.get_att(logical, attribute))
        return self._ref(name)

    def resolve(self, value: Any) -> str:
        """The string value of a property: a literal or one of the intrinsics above."""
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, Mapping) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                logical, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return str(self.get_att(logical, attribute))
            if function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return _SUB_VARIABLE.sub(lambda m: self._sub_variable(m.group(1), variables), text).replace(
                    "${!", "${"
                )
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(self.resolve(part) for part in parts)
        raise UnresolvedError(f"cannot resolve {value!r}")


def definition_substitutions(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """The state machine's ``DefinitionSubstitutions`` as written (intrinsics unresolved)."""
    return dict(resource(template, logical_id).get("Properties", {}).get("DefinitionSubstitutions", {}))


def definition_path(
    template_path: Path | str, logical_id: str, template: Mapping[str, Any] | None = None
) -> Path:
    """The ASL file the state machine's ``DefinitionUri`` names, relative to the template."""
    template = template if template is not None else load_template(template_path)
    uri = resource(template, logical_id).get("Properties", {}).get("DefinitionUri")
    if not isinstance(uri, str):
        raise UnresolvedError(f"{logical_id} has no local DefinitionUri")
    return Path(template_path).resolve().parent / uri


def placeholders(definition: str) -> set[str]:
    """Every ``${Name}`` the definition text uses."""
    return set(_PLACEHOLDER.findall(definition))


def fill_placeholders(definition: str, values: Mapping[str, str]) -> str:
    """Replace each ``${Name}``; one without a value is an error (AWS would leave it and fail later)."""
    missing = placeholders(definition) - set(values)
    if missing:
        raise UnresolvedError(f"no substitution for {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], definition)


def filled_definition(template_path: Path | str, logical_id: str, resolver: Resolver) -> str:
    """The ASL text of state machine ``logical_id`` with its substitutions resolved for one deployment."""
    template = load_template(template_path)
    text = definition_path(template_path, logical_id, template).read_text(encoding="utf-8")
    values = {
        name: resolver.resolve(value)
        for name, value in definition_substitutions(template, logical_id).items()
    }
    return fill_placeholders(text, values)


# --- resource properties as API requests (for tests that create single resources in moto) ------

# CreateTable takes these CloudFormation properties under the same names.
_TABLE_REQUEST_PROPERTIES = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
# Properties whose keys are the user's (parameter names, log options), not the API's.
_OPAQUE_PROPERTIES = frozenset({"Parameters", "Options", "Tags"})


def table_request(template: Mapping[str, Any], logical_id: str, table_name: str) -> dict[str, Any]:
    """DynamoDB ``CreateTable`` arguments for the template's table ``logical_id``."""
    properties = resource(template, logical_id)["Properties"]
    request = {name: _plain(properties[name]) for name in _TABLE_REQUEST_PROPERTIES if name in properties}
    return {"TableName": table_name, **request}


def ttl_attribute(template: Mapping[str, Any], logical_id: str) -> str | None:
    """The table's TTL attribute, when TTL is enabled."""
    ttl = resource(template, logical_id)["Properties"].get("TimeToLiveSpecification") or {}
    return ttl.get("AttributeName") if ttl.get("Enabled") else None


def job_definition_request(
    template: Mapping[str, Any], logical_id: str, name: str, resolver: Resolver
) -> dict[str, Any]:
    """Batch ``RegisterJobDefinition`` arguments (camelCase) for the template's job definition."""
    properties = resource(template, logical_id)["Properties"]
    request = {_lower_first(key): _api_value(key, value, resolver) for key, value in properties.items()}
    return {"jobDefinitionName": name, **request}


def _lower_first(key: str) -> str:
    return key[:1].lower() + key[1:]


def _plain(value: Any) -> Any:
    """cfn-lint's node types as plain dicts, lists and strings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, str) else value


def _api_value(key: str, value: Any, resolver: Resolver) -> Any:
    is_intrinsic = (
        isinstance(value, Mapping) and len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::"))
    )
    if is_intrinsic:
        resolved = resolver.resolve(value)
        return int(resolved) if resolved.isdigit() and key.endswith(("Seconds", "Attempts")) else resolved
    if isinstance(value, Mapping):
        if key in _OPAQUE_PROPERTIES:
            return {str(name): resolver.resolve(item) for name, item in value.items()}
        return {_lower_first(name): _api_value(name, item, resolver) for name, item in value.items()}
    if isinstance(value, list):
        return [_api_value(key, item, resolver) for item in value]
    return _plain(value)

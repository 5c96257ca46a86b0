"""ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1): CEL admission, as kube-apiserver runs it.

The policies come from the manifest a deployment applies (`--admission-policies`,
deploy/k8s/admission-policy.yaml), like RBAC comes from rbac.yaml. Expressions are compiled and
evaluated with cel-python (`celpy`), following
staging/src/k8s.io/apiserver/pkg/admission/plugin/policy/validating/{dispatcher.go,validator.go} and
.../plugin/policy/matching/matching.go:

- variables `object`, `oldObject` (null on CREATE / DELETE respectively), `request` (operation,
  userInfo, name, namespace, resource, kind, subResource, dryRun), `namespaceObject` (null for
  cluster-scoped kinds) and `variables`; objects are plain maps, as the API server's unstructured
  objects are (object and oldObject are declared `dyn` there).
- a request is checked by a policy when a `resourceRules` entry matches (and no
  `excludeResourceRules` entry does) and every `matchConditions` expression is true;
- each `validations` entry must be true; the first that is not denies the request with
  `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<p>' with binding '<b>' denied
  request: <message>`, reason `validations[].reason` (default Invalid, 422; Forbidden is 403) and one
  cause carrying the same text. An expression that fails to evaluate follows `failurePolicy`
  (Fail, the default: denied).
- bindings' `validationActions`: Deny refuses, Warn adds a `Warning` header, Audit does nothing here.

What the local cluster cannot evaluate is refused when the policies are loaded, never ignored:
`paramKind`/`paramRef`, non-empty namespace/object selectors, `messageExpression`,
`auditAnnotations`, the `authorizer` variable, and CEL that cel-python does not parse (Kubernetes'
extension libraries, optional syntax `?`). Keep policies to expressions both evaluate alike.

Importing cel-python and compiling takes a few hundred milliseconds, so the server loads the
policies' structure before it listens and compiles their CEL right after (`compile`, in a worker
thread, like the schemas); a policy whose CEL does not compile then stops the server.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from localcluster import errors
from localcluster.errors import Cause
from localcluster.rbac import User
from localcluster.resources import ResourceType

if TYPE_CHECKING:
    import celpy

Obj = dict[str, Any]
API_VERSION = "admissionregistration.k8s.io/v1"
STATUS_CODES = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413, "Invalid": 422}


class PolicyError(ValueError):
    """A policy the local cluster cannot evaluate faithfully; raised at start, so nothing is ignored."""


@dataclass(frozen=True)
class AdmissionRequest:
    operation: str  # CREATE, UPDATE or DELETE
    user: User
    resource: ResourceType
    namespace: str
    name: str
    object: Obj | None
    old_object: Obj | None
    namespace_object: Obj | None
    subresource: str = ""


@dataclass
class _Expression:
    where: str
    text: str
    program: Any = None  # celpy.Runner, once compiled

    def compile(self, env: celpy.Environment) -> None:
        import celpy

        try:
            self.program = env.program(env.compile(self.text))
        except celpy.CELParseError as error:
            raise PolicyError(f"{self.where}: cel-python cannot parse {self.text!r}: {error}") from error

    def evaluate(self, activation: dict[str, Any]) -> Any:
        """The result, or a CELEvalError describing why there is none."""
        import celpy

        try:
            return self.program.evaluate(activation)
        except celpy.CELEvalError as error:
            return error


@dataclass(frozen=True)
class _ResourceRule:
    api_groups: tuple[str, ...]
    api_versions: tuple[str, ...]
    operations: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str

    def matches(self, request: AdmissionRequest) -> bool:
        rt = request.resource
        scope_ok = self.scope == "*" or (self.scope == "Namespaced") == rt.namespaced
        return (
            scope_ok
            and ("*" in self.operations or request.operation in self.operations)
            and ("*" in self.api_groups or rt.group in self.api_groups)
            and ("*" in self.api_versions or rt.version in self.api_versions)
            and any(self._resource_matches(r, rt.plural, request.subresource) for r in self.resources)
        )

    @staticmethod
    def _resource_matches(rule: str, plural: str, subresource: str) -> bool:
        """`*` is every resource but no subresource, `x/*` every subresource of x, `*/*` everything."""
        if rule == "*/*":
            return True
        resource, _, sub = rule.partition("/")
        if resource not in ("*", plural):
            return False
        if not sub:
            return not subresource
        return (sub == "*" and bool(subresource)) or sub == subresource


@dataclass(frozen=True)
class _Validation:
    expression: _Expression
    message: str
    reason: str


@dataclass
class _Policy:
    name: str
    failure_policy: str
    rules: list[_ResourceRule]
    excluded: list[_ResourceRule]
    match_conditions: list[tuple[str, _Expression]]
    variables: list[tuple[str, _Expression]]
    validations: list[_Validation]

    def applies_to(self, request: AdmissionRequest) -> bool:
        return any(r.matches(request) for r in self.rules) and not any(
            r.matches(request) for r in self.excluded
        )


@dataclass(frozen=True)
class _Binding:
    name: str
    policy_name: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class _Decision:
    policy: str
    binding: str
    message: str
    reason: str


@dataclass
class AdmissionPolicies:
    policies: dict[str, _Policy] = field(default_factory=dict)
    bindings: list[_Binding] = field(default_factory=list)
    _compiled: bool = False
    _compile_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, path: Path, *, compile_now: bool = True) -> AdmissionPolicies:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
        return cls.from_documents(documents, compile_now=compile_now)

    @classmethod
    def from_documents(cls, documents: list[Obj], *, compile_now: bool = True) -> AdmissionPolicies:
        """The policies and bindings of the documents; PolicyError for what cannot be evaluated
        (with `compile_now=False`, CEL that does not parse is found by `compile` later)."""
        result = cls()
        for doc in documents:
            if doc.get("apiVersion") != API_VERSION:
                continue
            name = (doc.get("metadata") or {}).get("name", "")
            spec = doc.get("spec") or {}
            if doc.get("kind") == "ValidatingAdmissionPolicy":
                result.policies[name] = _load_policy(name, spec)
            elif doc.get("kind") == "ValidatingAdmissionPolicyBinding":
                for unsupported in ("paramRef", "matchResources"):
                    if spec.get(unsupported):
                        raise PolicyError(f"binding {name}: {unsupported} is not supported by localcluster")
                actions = tuple(spec.get("validationActions") or ())
                if not actions or not set(actions) <= {"Deny", "Warn", "Audit"}:
                    raise PolicyError(f"binding {name}: validationActions must be Deny, Warn and/or Audit")
                result.bindings.append(_Binding(name, spec.get("policyName", ""), actions))
        if compile_now:
            result.compile()
        return result

    def _expressions(self) -> list[_Expression]:
        found = []
        for policy in self.policies.values():
            found += [e for _, e in policy.match_conditions] + [e for _, e in policy.variables]
            found += [v.expression for v in policy.validations]
        return found

    def compile(self) -> None:
        """Compile every expression once (thread-safe); PolicyError if one does not parse."""
        with self._compile_lock:
            if self._compiled:
                return
            import celpy

            env = celpy.Environment()
            for expression in self._expressions():
                expression.compile(env)
            self._compiled = True

    def admit(self, request: AdmissionRequest) -> list[str]:
        """The warnings to return; raises the API server's refusal if a Deny binding's policy fails."""
        self.compile()
        warnings: list[str] = []
        denied: list[_Decision] = []
        for binding in self.bindings:
            policy = self.policies.get(binding.policy_name)
            if policy is None or not policy.applies_to(request):
                continue
            decision = _decide(policy, binding, request)
            if decision is None:
                continue
            if "Deny" in binding.actions:
                denied.append(decision)
            if "Warn" in binding.actions:
                warnings.append(
                    f"Validation failed for ValidatingAdmissionPolicy '{policy.name}' "
                    f"with binding '{binding.name}': {decision.message}"
                )
        if denied:
            first = denied[0]
            message = (
                f"ValidatingAdmissionPolicy '{first.policy}' with binding '{first.binding}' "
                f"denied request: {first.message}"
            )
            error = errors.forbidden(request.resource, request.name, message, [Cause("", message)])
            error.reason = first.reason
            error.code = STATUS_CODES.get(first.reason, 422)
            raise error
        return warnings


def _expression(where: str, text: str) -> _Expression:
    if re.search(r"\bauthorizer\b|\bparams\b", text):
        raise PolicyError(f"{where}: the authorizer and params variables are not supported by localcluster")
    return _Expression(where, text)


def _rules(entries: list[Obj]) -> list[_ResourceRule]:
    return [
        _ResourceRule(
            api_groups=tuple(e.get("apiGroups") or ()),
            api_versions=tuple(e.get("apiVersions") or ()),
            operations=tuple(e.get("operations") or ()),
            resources=tuple(e.get("resources") or ()),
            scope=e.get("scope", "*"),
        )
        for e in entries
    ]


def _load_policy(name: str, spec: Obj) -> _Policy:
    for unsupported in ("paramKind", "auditAnnotations"):
        if spec.get(unsupported):
            raise PolicyError(f"policy {name}: {unsupported} is not supported by localcluster")
    constraints = spec.get("matchConstraints") or {}
    for selector in ("namespaceSelector", "objectSelector"):
        if constraints.get(selector):
            raise PolicyError(f"policy {name}: a non-empty {selector} is not supported by localcluster")
    failure_policy = spec.get("failurePolicy", "Fail")
    if failure_policy not in ("Fail", "Ignore"):
        raise PolicyError(f"policy {name}: failurePolicy must be Fail or Ignore")
    validations = []
    for index, entry in enumerate(spec.get("validations") or []):
        where = f"policy {name} validations[{index}]"
        if entry.get("messageExpression"):
            raise PolicyError(f"{where}: messageExpression is not supported by localcluster")
        expression = _expression(where, entry["expression"])
        message = entry.get("message") or f"failed expression: {entry['expression']}"
        validations.append(_Validation(expression, message, entry.get("reason") or "Invalid"))
    return _Policy(
        name=name,
        failure_policy=failure_policy,
        rules=_rules(constraints.get("resourceRules") or []),
        excluded=_rules(constraints.get("excludeResourceRules") or []),
        match_conditions=[
            (c["name"], _expression(f"policy {name} matchCondition {c['name']}", c["expression"]))
            for c in spec.get("matchConditions") or []
        ],
        variables=[
            (v["name"], _expression(f"policy {name} variable {v['name']}", v["expression"]))
            for v in spec.get("variables") or []
        ],
        validations=validations,
    )


def _activation(request: AdmissionRequest) -> dict[str, Any]:
    import celpy

    rt = request.resource
    review = {
        "operation": request.operation,
        "name": request.name,
        "namespace": request.namespace,
        "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "subResource": request.subresource,
        "userInfo": {"username": request.user.name, "groups": list(request.user.groups)},
        "dryRun": False,
    }
    return {
        "object": celpy.json_to_cel(request.object),
        "oldObject": celpy.json_to_cel(request.old_object),
        "namespaceObject": celpy.json_to_cel(request.namespace_object),
        "request": celpy.json_to_cel(review),
    }


def _decide(policy: _Policy, binding: _Binding, request: AdmissionRequest) -> _Decision | None:
    """The denial this policy gives the request, or None when it admits it (or does not apply)."""
    import celpy

    activation = _activation(request)
    # Each variable may use the ones before it; an error stays the variable's value and fails only
    # the expressions that read it, as the API server's lazy evaluation does.
    variables = celpy.celtypes.MapType()
    activation["variables"] = variables
    for name, expression in policy.variables:
        variables[celpy.celtypes.StringType(name)] = expression.evaluate(activation)

    def failed(message: str) -> _Decision | None:
        if policy.failure_policy == "Ignore":
            return None
        return _Decision(policy.name, binding.name, message, "Invalid")

    for name, expression in policy.match_conditions:
        result = expression.evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            return failed(f"failed to evaluate matchCondition {name!r}: {result.args[0]}")
        if not isinstance(result, celpy.celtypes.BoolType):
            return failed(f"matchCondition {name!r} did not return a bool")
        if not result:
            return None
    for validation in policy.validations:
        result = validation.expression.evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            return failed(f"expression '{validation.expression.text}' resulted in error: {result.args[0]}")
        if not isinstance(result, celpy.celtypes.BoolType):
            return failed(f"expression '{validation.expression.text}' did not return a bool")
        if not result:
            return _Decision(policy.name, binding.name, validation.message, validation.reason)
    return None

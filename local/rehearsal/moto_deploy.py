"""The rehearsal's deployment: the stack's IAM-relevant part created in moto, every function started under
its own role with IAM enforced.

What moto creates from the translated template (``deploy``): the template's secrets (and one secret per
secret-ARN parameter, standing in for the deployer's), event buses, queues, managed policies and every
function's role with its inline and managed policies. Not through moto's CloudFormation: its provider
needs extras the project does not install and cannot create most of the stack anyway. What moto cannot
create, and where each is checked instead:

- Lambda functions, layers (the shared layer, AWS's secrets extension of another account), versions,
  aliases, permissions, SnapStart: the function's own code runs here in-process under its role; targets
  and invoke permissions are checked statically (``checks``).
- VPC, subnets, NAT gateway, security groups, Aurora Serverless v2, RDS Proxy, ElastiCache Serverless:
  network reachability (ingress on 5432/6379 from the functions' groups) is checked statically; the
  database and cache connections themselves are tested against the embedded PostgreSQL and Valkey.
- HTTP API, its authorizer and routes, EventBridge rules, Scheduler schedules, alarms, dashboards, log
  groups: checked statically (targets, permissions, retention).

Moto enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT`` 0 once the stack exists) but checks the resource of a
request only for SQS, IAM and STS; ``enforce_resources`` teaches it the resource of Secrets Manager and
EventBridge calls, and the per-secret check AWS makes inside ``BatchGetSecretValue`` (a secret the caller
may not ``GetSecretValue`` is returned as an ``AccessDeniedException`` error, not as a value).

A role's trust policy names ``lambda.amazonaws.com``; moto's STS cannot be that service, so each role is
created trusting the rehearsal's deployer user instead, which assumes it (the only change made to a role).
``cold_start`` then runs what a function does when its container starts, with that role's credentials and
the function's evaluated environment: its settings classes loaded, every secret they reference resolved
through ``such_market.secrets`` (the extension-less path: one ``BatchGetSecretValue``), the database's DSN
and the cache's credentials read out of their secrets as the code reads them (so each secret is made up in
the shape AWS stores it: ``local.rehearsal.secret_values``), a harmless event put on each bus it publishes
to, and the depth of each queue it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import boto3
import botocore.loaders
import botocore.session
from moto import mock_aws, settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.events.responses import EventsHandler
from moto.iam.access_control import IAMRequest
from moto.secretsmanager.responses import SecretsManagerResponse
from werkzeug.exceptions import HTTPException

from local.rehearsal.checks import Function, functions
from local.rehearsal.evaluate import ACCOUNT, REGION, Evaluator, Scenario, scenarios, secret_attributes
from local.rehearsal.policies import AWS_MANAGED_POLICY_PREFIX, _as_list
from local.rehearsal.secret_values import counterparts, secret_string
from such_market import secrets
from such_market.cache.client import credentials as cache_credentials
from such_market.config import CacheSettings, DatabaseSettings, EventSettings, load_settings
from such_market.container import close_all
from such_market.db.connection import resolve_dsn
from such_market.events.dead_letters import DeadLetterSettings, dead_letter_depth
from such_market.events.publisher import get_events_client
from such_market.secrets import SECRET_REFERENCE_SUFFIX

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

DEPLOYER = "rehearsal-deployer"
_EXTENSION_ONLY = ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",)
_AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@dataclass(frozen=True, slots=True)
class ColdStart:
    """How one function's cold start went under its role."""

    function: str
    error: str | None
    """``None``: it started; else what failed (an ``AccessDenied`` names the action)."""


@dataclass(slots=True)
class Deployment:
    """The stack in moto: the evaluator (with moto's identities) and each function's role ARN."""

    evaluator: Evaluator
    role_arns: dict[str, str]
    deployer: Mapping[str, str]


# -- moto taught what AWS checks -------------------------------------------------------------------------


class _AsGetSecretValue(IAMRequest):
    """The permission check of ``GetSecretValue``, made for each secret of a batch."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - moto's keyword arguments
        super().__init__(**{**kwargs, "action": "GetSecretValue"})


def _secret_resource(response: SecretsManagerResponse) -> str:
    secret_id = response._get_param("SecretId")
    if not isinstance(secret_id, str):
        return "*"
    if secret_id.startswith("arn:"):
        return secret_id
    try:
        return str(getattr(response.backend.describe_secret(secret_id), "arn", "*"))
    except Exception:  # an unknown secret: moto answers the request itself as AWS does
        return "*"


def _bus_resource(response: EventsHandler) -> str:
    entries = response._get_param("Entries") or [{}]
    bus = entries[0].get("EventBusName") or "default"
    return bus if bus.startswith("arn:") else f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"


def _batch_get_secret_value(self: SecretsManagerResponse) -> str:
    """``BatchGetSecretValue`` by a list of ids, as AWS answers it: only the secrets the caller may also
    ``GetSecretValue``; each other one is an ``AccessDeniedException`` error."""
    allowed, denied = [], []
    for secret_id in self._get_param("SecretIdList", if_none=[]):
        arn = secret_id if secret_id.startswith("arn:") else _secret_resource(self)
        try:
            self._authenticate_and_authorize_action(_AsGetSecretValue, resource=arn)
            allowed.append(secret_id)
        except HTTPException:
            denied.append(secret_id)
    values, errors, _ = (
        self.backend.batch_get_secret_value(secret_id_list=allowed, filters=[], max_results=None, next_token=None)
        if allowed
        else ([], [], None)
    )
    errors += [
        {"SecretId": secret, "ErrorCode": "AccessDeniedException", "Message": "not authorized"} for secret in denied
    ]
    return json.dumps({"SecretValues": values, "Errors": errors})


@contextlib.contextmanager
def enforce_resources() -> Iterator[None]:
    """Moto with the resources of Secrets Manager and EventBridge calls checked (see the module doc)."""
    saved = {
        (SecretsManagerResponse, "_determine_resource"): getattr(SecretsManagerResponse, "_determine_resource", None),
        (EventsHandler, "_determine_resource"): getattr(EventsHandler, "_determine_resource", None),
        (SecretsManagerResponse, "batch_get_secret_value"): SecretsManagerResponse.batch_get_secret_value,
    }
    SecretsManagerResponse._determine_resource = _secret_resource  # type: ignore[attr-defined]
    EventsHandler._determine_resource = _bus_resource  # type: ignore[attr-defined]
    SecretsManagerResponse.batch_get_secret_value = _batch_get_secret_value  # type: ignore[method-assign]
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


@contextlib.contextmanager
def iam_enforced() -> Iterator[None]:
    """Every request from here on is authenticated and authorized by moto."""
    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``variables`` set (``""``: removed), restored afterwards."""
    saved = dict(os.environ)
    for name, value in variables.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- the deployment ----------------------------------------------------------------------------------------


def _deploy_secrets(evaluator: Evaluator, client: Any) -> Scenario:  # noqa: ANN401 - a boto3 client
    """Moto's secrets for the secret-ARN parameters and the template's secrets; the scenario with their ARNs."""
    parameters = dict(evaluator.scenario.parameters)
    shapes = counterparts(evaluator.template)
    for name, value in sorted(parameters.items()):
        if ":secretsmanager:" in value:
            secret_name = value.rsplit(":", 1)[-1][: -len("-AbCdEf")]
            shape = secret_string(evaluator, shapes[name]) if name in shapes else f"rehearsal {name}"
            parameters[name] = client.create_secret(Name=secret_name, SecretString=shape)["ARN"]
    for logical_id, attribute in sorted(secret_attributes(evaluator.template)):
        # a secret that a resource moto does not create makes (Aurora's master user secret): a stand-in
        if evaluator.resources.get(logical_id, {}).get("Type") != "AWS::SecretsManager::Secret":
            name = f"{logical_id}-{attribute.replace('.', '-')}"
            arn = client.create_secret(Name=name, SecretString=f"rehearsal {name}")["ARN"]
            evaluator.physical.setdefault(logical_id, {})[attribute] = arn
    for logical_id, resource in evaluator.resources.items():
        if resource["Type"] == "AWS::SecretsManager::Secret" and evaluator.exists(logical_id):
            name = str(evaluator.properties(logical_id).get("Name", logical_id))
            arn = client.create_secret(Name=name, SecretString=secret_string(evaluator, logical_id))["ARN"]
            evaluator.physical[logical_id] = {"Ref": arn, "Id": arn}
    return replace(evaluator.scenario, parameters=parameters)


def _document(document: Mapping[str, Any]) -> str:
    # AWS reads a document without Version as the 2008 language; moto refuses it (SAM's policy templates
    # have none, and use no policy variables, so the two languages agree on them)
    return json.dumps({"Version": "2012-10-17", **document})


def deploy(template: Mapping[str, Any], scenario: Scenario) -> Deployment:
    """Create the IAM-relevant part of the stack in moto (inside ``mock_aws``; see the module doc)."""
    session = boto3.Session(botocore_session=_botocore_session(), region_name=REGION)
    probe = Evaluator(template, scenario)
    evaluator = Evaluator(template, _deploy_secrets(probe, session.client("secretsmanager")))
    evaluator.physical.update(probe.physical)
    events, sqs, iam = session.client("events"), session.client("sqs"), session.client("iam")
    for logical_id, resource in evaluator.resources.items():
        if not evaluator.exists(logical_id):
            continue
        if resource["Type"] == "AWS::Events::EventBus":
            name = evaluator.attribute(logical_id, "Ref")
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            evaluator.physical[logical_id] = {"Ref": name, "Name": name, "Arn": arn}
        elif resource["Type"] == "AWS::SQS::Queue":
            name = evaluator.attribute(logical_id, "QueueName")
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            evaluator.physical[logical_id] = {"Ref": url, "QueueUrl": url, "QueueName": name, "Arn": arn}
    deployer = iam.create_user(UserName=DEPLOYER)["User"]
    iam.put_user_policy(
        UserName=DEPLOYER,
        PolicyName="assume-function-roles",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=DEPLOYER)["AccessKey"]
    for logical_id, resource in evaluator.resources.items():
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and evaluator.exists(logical_id):
            document = evaluator.properties(logical_id)["PolicyDocument"]
            arn = iam.create_policy(PolicyName=logical_id, PolicyDocument=_document(document))["Policy"]["Arn"]
            evaluator.physical[logical_id] = {"Ref": arn}
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": deployer["Arn"]}, "Action": "sts:AssumeRole"}],
    }
    role_arns = {}
    for function in functions(template):
        if not evaluator.exists(function.logical_id):
            continue
        role = evaluator.properties(function.role_id)
        arn = iam.create_role(RoleName=function.role_id, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        for policy in _as_list(role.get("Policies")):
            iam.put_role_policy(
                RoleName=function.role_id,
                PolicyName=policy["PolicyName"],
                PolicyDocument=_document(policy["PolicyDocument"]),
            )
        for managed in _as_list(role.get("ManagedPolicyArns")):
            if not str(managed).startswith(AWS_MANAGED_POLICY_PREFIX):  # AWS's own: logs, X-Ray, ENIs
                iam.attach_role_policy(RoleName=function.role_id, PolicyArn=str(managed))
        role_arns[function.logical_id] = arn
    return Deployment(
        evaluator, role_arns, {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    )


@functools.cache
def _service_models() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    """A new botocore session (its own credentials, read from the environment) on the shared models."""
    session = botocore.session.Session()
    session.register_component("data_loader", _service_models())
    return session


def _role_credentials(deployment: Deployment, function: str) -> dict[str, str]:
    deployer = boto3.Session(
        botocore_session=_botocore_session(),
        aws_access_key_id=deployment.deployer["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=deployment.deployer["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    credentials = deployer.client("sts").assume_role(
        RoleArn=deployment.role_arns[function], RoleSessionName=f"rehearsal-{function}"[:64]
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


def cold_start(deployment: Deployment, function: Function) -> ColdStart:
    """Start ``function`` under its role: settings, secrets, buses, queues (see the module doc)."""
    variables = {
        name: str(value)
        for name, value in deployment.evaluator.properties(function.logical_id)
        .get("Environment", {})
        .get("Variables", {})
        .items()
    }
    # No extension beside moto: the secrets are read the extension-less way (one BatchGetSecretValue)
    variables.update(dict.fromkeys((*_EXTENSION_ONLY, *_AWS_CREDENTIALS), ""))
    variables["AWS_DEFAULT_REGION"] = REGION
    credentials = _role_credentials(deployment, function.logical_id)
    close_all()  # a cold container: no settings, secrets or clients kept from another function
    try:
        with environment({**variables, **credentials}):
            # nor boto3's default session, which keeps the credentials it first read (its service models,
            # which are the same for every function, are shared: reading them is most of a client's cost)
            boto3.setup_default_session(botocore_session=_botocore_session())
            return ColdStart(function.logical_id, _start(function))
    finally:
        close_all()


def _start(function: Function) -> str | None:
    try:
        for model in function.needs.settings:
            load_settings(model)  # every variable of every part validated, as the handler does first
        for part in (load_settings(kind) for kind in function.needs.parts):
            for field in dataclasses.fields(part):  # type: ignore[arg-type]
                reference = getattr(part, field.name)
                if field.name.upper().endswith(SECRET_REFERENCE_SUFFIX) and reference:
                    secrets.get_secret_string(reference)
            # what the code reads out of the database and cache secrets (no connection is made)
            if isinstance(part, DatabaseSettings):
                resolve_dsn(part)
            if isinstance(part, CacheSettings):
                cache_credentials(part)
            if isinstance(part, EventSettings):
                answer = get_events_client(part).put_events(Entries=[_harmless_event(part.event_bus_name)])
                if answer.get("FailedEntryCount"):
                    return f"PutEvents to {part.event_bus_name} failed: {answer['Entries']}"
            if isinstance(part, DeadLetterSettings):
                dead_letter_depth(part)
    except Exception as error:  # the report names whatever stopped the cold start
        return f"{type(error).__name__}: {error}"
    return None


def _harmless_event(bus: str) -> PutEventsRequestEntryTypeDef:
    """An event no rule of ours matches (our rules match ``source: such-market`` only)."""
    return {
        "EventBusName": bus,
        "Source": "such-market.rehearsal",
        "DetailType": "rehearsal.cold_start",
        "Detail": "{}",
    }


def rehearse(
    template: Mapping[str, Any], *, only: Iterable[Scenario] | None = None, functions_named: Collection[str] = ()
) -> list[ColdStart]:
    """Every function's cold start (or those ``functions_named``) under its role, in moto with IAM
    enforced, under each scenario; the failed ones (an empty list: every function starts)."""
    failed = []
    for scenario in only if only is not None else scenarios(template):
        with mock_aws(), enforce_resources(), environment(_FAKE_CREDENTIALS):
            deployment = deploy(template, scenario)
            with iam_enforced():
                for function in functions(template):
                    wanted = not functions_named or function.logical_id in functions_named
                    if wanted and function.logical_id in deployment.role_arns:
                        started = cold_start(deployment, function)
                        if started.error is not None:
                            failed.append(replace(started, function=f"[{scenario.name}] {started.function}"))
    return failed


_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal",
    "AWS_SESSION_TOKEN": "",
    "AWS_DEFAULT_REGION": REGION,
}

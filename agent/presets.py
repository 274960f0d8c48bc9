"""Built-in app presets: the platforms contact centers run on, as URLs the app probe can check.
Parameters are strict DNS labels or known regions; each app carries its Apdex threshold.
Design notes: docs/agent-internals.md, "agent/presets.py".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MEDIA_RELAYS", "PRESETS", "App", "Param", "Preset", "expand"]

APDEX_INTERACTIVE_MS = 500
APDEX_LOGIN_MS = 1000
APDEX_SIGNALING_MS = 300


@dataclass(frozen=True)
class App:
    """One URL to check: ``name`` is what reports show (``salesforce-login``)."""

    name: str
    url: str
    apdex_t_ms: int = APDEX_INTERACTIVE_MS


# --- parameter checks -------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_AWS_REGION = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-\d{1,2}")


def dns_label(value: str) -> str:
    """One DNS label, lower-cased: the only shape an instance, org or subdomain name may have."""
    v = value.strip().lower()
    if not _LABEL.fullmatch(v):
        raise ValueError(f"{value!r} is not a DNS label (letters, digits and inner hyphens, 1-63 characters)")
    return v


def aws_region(value: str) -> str:
    v = value.strip().lower()
    if not _AWS_REGION.fullmatch(v):
        raise ValueError(f"{value!r} is not an AWS region name such as us-east-1")
    return v


# Genesys Cloud: AWS region -> the domain of that region's services (login., api., apps.).
GENESYS_DOMAINS: dict[str, str] = {
    "us-east-1": "mypurecloud.com",
    "us-east-2": "use2.us-gov-pure.cloud",  # FedRAMP
    "us-west-2": "usw2.pure.cloud",
    "ca-central-1": "cac1.pure.cloud",
    "sa-east-1": "sae1.pure.cloud",
    "eu-west-1": "mypurecloud.ie",
    "eu-west-2": "euw2.pure.cloud",
    "eu-central-1": "mypurecloud.de",
    "eu-central-2": "euc2.pure.cloud",
    "me-central-1": "mec1.pure.cloud",
    "ap-south-1": "aps1.pure.cloud",
    "ap-northeast-1": "mypurecloud.jp",
    "ap-northeast-2": "apne2.pure.cloud",
    "ap-northeast-3": "apne3.pure.cloud",
    "ap-southeast-2": "mypurecloud.com.au",
}


def genesys_domain(value: str) -> str:
    """An AWS region name (``eu-central-1``) or the region's domain itself (``mypurecloud.de``)."""
    v = value.strip().lower()
    if v in GENESYS_DOMAINS:
        return GENESYS_DOMAINS[v]
    if v in GENESYS_DOMAINS.values():
        return v
    raise ValueError(f"unknown Genesys Cloud region {value!r}; known: {', '.join(GENESYS_DOMAINS)}")


# Dynamics 365: region -> the crmN label of its org URLs. Other crmN codes are accepted as given.
DYNAMICS_REGIONS: dict[str, str] = {
    "nam": "crm",
    "sam": "crm2",
    "can": "crm3",
    "emea": "crm4",
    "apac": "crm5",
    "oce": "crm6",
    "jpn": "crm7",
    "ind": "crm8",
    "gcc": "crm9",
    "gbr": "crm11",
    "fra": "crm12",
}
_CRM_CODE = re.compile(r"crm(?:[2-9]|[1-9][0-9])?")


def dynamics_code(value: str) -> str:
    """A region (``emea``) or the crmN code from an org URL (``crm4``)."""
    v = value.strip().lower()
    if v in DYNAMICS_REGIONS:
        return DYNAMICS_REGIONS[v]
    if _CRM_CODE.fullmatch(v):
        return v
    raise ValueError(f"unknown Dynamics 365 region {value!r}; use one of {', '.join(DYNAMICS_REGIONS)} or a crmN code")


OKTA_DOMAINS = ("okta.com", "okta-emea.com", "oktapreview.com")


def okta_domain(value: str) -> str:
    v = value.strip().lower()
    if v not in OKTA_DOMAINS:
        raise ValueError(f"unknown Okta domain {value!r}; known: {', '.join(OKTA_DOMAINS)}")
    return v


# --- the catalog -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A preset parameter: ``check`` validates and normalizes; no default means required."""

    name: str
    help: str
    check: Callable[[str], str] = dns_label
    default: str | None = None


@dataclass(frozen=True)
class Preset:
    description: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, str]], list[App]]


def _amazon_connect(p: dict[str, str]) -> list[App]:
    apps = [App("connect-ccp", f"https://{p['instance']}.my.connect.aws/ccp-v2/")]
    if p["region"]:
        apps.append(App("connect-participant", f"https://participant.connect.{p['region']}.amazonaws.com/"))
    return apps


def _genesys(p: dict[str, str]) -> list[App]:
    d = p["region"]
    return [
        App("genesys-login", f"https://login.{d}/", APDEX_LOGIN_MS),
        App("genesys-api", f"https://api.{d}/"),
        App("genesys-apps", f"https://apps.{d}/"),
    ]


def _twilio(p: dict[str, str]) -> list[App]:
    return [
        App("twilio-voice-signaling", "https://chunderw-vpc-gll.twilio.com/", APDEX_SIGNALING_MS),
        App("twilio-eventgw", "https://eventgw.twilio.com/", APDEX_SIGNALING_MS),
        App("twilio-flex", "https://flex.twilio.com/"),
    ]


def _salesforce(p: dict[str, str]) -> list[App]:
    return [
        App("salesforce-login", "https://login.salesforce.com/", APDEX_LOGIN_MS),
        App("salesforce-org", f"https://{p['org']}.my.salesforce.com/"),
        App("salesforce-lightning", f"https://{p['org']}.lightning.force.com/"),
    ]


def _dynamics(p: dict[str, str]) -> list[App]:
    base = f"https://{p['org']}.{p['region']}.dynamics.com"
    return [App("dynamics-org", f"{base}/"), App("dynamics-api", f"{base}/api/data/v9.2/")]


def _okta(p: dict[str, str]) -> list[App]:
    return [App("okta", f"https://{p['org']}.{p['domain']}/.well-known/openid-configuration", APDEX_LOGIN_MS)]


PRESETS: dict[str, Preset] = {
    "amazon-connect": Preset(
        "Amazon Connect contact control panel (and the chat participant service of a region)",
        (
            Param("instance", "instance alias, as in <instance>.my.connect.aws"),
            Param("region", "AWS region of the instance, e.g. eu-west-2 (optional)", aws_region, ""),
        ),
        _amazon_connect,
    ),
    "genesys-cloud": Preset(
        "Genesys Cloud login, API and agent web app of one region",
        (
            Param(
                "region", "AWS region (us-east-1, eu-central-1, ...) or region domain (mypurecloud.de)", genesys_domain
            ),
        ),
        _genesys,
    ),
    "five9": Preset("Five9 agent web app", (), lambda p: [App("five9", "https://app.five9.com/")]),
    "nice-cxone": Preset(
        "NICE CXone agent and admin portal", (), lambda p: [App("nice-cxone", "https://cxone.niceincontact.com/")]
    ),
    "twilio": Preset("Twilio Voice SDK signaling and insights gateways, Flex UI", (), _twilio),
    "salesforce": Preset(
        "Salesforce login, My Domain and Lightning UI of one org",
        (Param("org", "My Domain name, as in <org>.my.salesforce.com"),),
        _salesforce,
    ),
    "dynamics365": Preset(
        "Microsoft Dynamics 365 org and its Web API",
        (
            Param("org", "org name, as in <org>.crm4.dynamics.com"),
            Param("region", f"region ({', '.join(DYNAMICS_REGIONS)}) or crmN code", dynamics_code, "nam"),
        ),
        _dynamics,
    ),
    "servicenow": Preset(
        "ServiceNow instance",
        (Param("instance", "as in <instance>.service-now.com"),),
        lambda p: [App("servicenow", f"https://{p['instance']}.service-now.com/")],
    ),
    "zendesk": Preset(
        "Zendesk account",
        (Param("subdomain", "as in <subdomain>.zendesk.com"),),
        lambda p: [App("zendesk", f"https://{p['subdomain']}.zendesk.com/")],
    ),
    "teams": Preset(
        "Microsoft Teams web client (media relays: see MEDIA_RELAYS)",
        (),
        lambda p: [App("teams", "https://teams.microsoft.com/"), App("teams-cloud", "https://teams.cloud.microsoft/")],
    ),
    "entra-id": Preset(
        "Microsoft Entra ID sign-in (OpenID metadata: a real answer from the service, no login)",
        (),
        lambda p: [
            App(
                "entra-login",
                "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
                APDEX_LOGIN_MS,
            )
        ],
    ),
    "okta": Preset(
        "Okta org sign-in (OpenID metadata)",
        (
            Param("org", "as in <org>.okta.com"),
            Param("domain", f"one of {', '.join(OKTA_DOMAINS)}", okta_domain, "okta.com"),
        ),
        _okta,
    ),
}

# Media relays (TURN: UDP 3478, TCP/TLS 443) that voice and video flow through, per preset.
# Not HTTP servers, so not apps: targets for the RTT probe (TCP connect to 443) and voice tests.
MEDIA_RELAYS: dict[str, tuple[tuple[str, int], ...]] = {
    "teams": (("worldaz.tr.teams.microsoft.com", 3478), ("worldaz.tr.teams.microsoft.com", 443)),
}


def expand(preset: str, **params: str) -> list[App]:
    """The apps of ``preset`` for these parameters; ValueError names what is wrong.

    Unknown presets, unknown or missing parameters and values that are not valid host name
    parts are all refused, so a typo in a config file fails at start-up, not as a failing check.
    """
    spec = PRESETS.get(preset)
    if spec is None:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    known = {p.name for p in spec.params}
    unknown = sorted(set(params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ValueError(f"preset {preset!r} has no parameter {', '.join(unknown)} (parameters: {takes})")
    values: dict[str, str] = {}
    for p in spec.params:
        raw = params.get(p.name, p.default)
        if raw is None:
            raise ValueError(f"preset {preset!r} needs {p.name}: {p.help}")
        if not isinstance(raw, str):
            raise ValueError(f"preset {preset!r}: {p.name} must be a string, not {type(raw).__name__}")
        if raw == "" and p.default == "":  # an optional parameter left empty
            values[p.name] = ""
            continue
        try:
            values[p.name] = p.check(raw)
        except ValueError as exc:
            raise ValueError(f"preset {preset!r}, {p.name}: {exc}") from None
    return spec.build(values)

"""App presets: each expands to https URLs on the vendor's documented host names, and parameters
that are not clean host name parts are refused. Nothing here is ever fetched."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cxpulse.agent.presets import GENESYS_DOMAINS, MEDIA_RELAYS, PRESETS, App, expand

# preset -> (parameters, the host of every app it gives, in order)
EXPECTED: dict[str, tuple[dict[str, str], list[str]]] = {
    "amazon-connect": (
        {"instance": "acme-cc", "region": "eu-west-2"},
        ["acme-cc.my.connect.aws", "participant.connect.eu-west-2.amazonaws.com"],
    ),
    "genesys-cloud": (
        {"region": "eu-central-1"},
        ["login.mypurecloud.de", "api.mypurecloud.de", "apps.mypurecloud.de"],
    ),
    "five9": ({}, ["app.five9.com"]),
    "nice-cxone": ({}, ["cxone.niceincontact.com"]),
    "twilio": ({}, ["chunderw-vpc-gll.twilio.com", "eventgw.twilio.com", "flex.twilio.com"]),
    "salesforce": ({"org": "acme"}, ["login.salesforce.com", "acme.my.salesforce.com", "acme.lightning.force.com"]),
    "dynamics365": ({"org": "acme", "region": "emea"}, ["acme.crm4.dynamics.com", "acme.crm4.dynamics.com"]),
    "servicenow": ({"instance": "acme"}, ["acme.service-now.com"]),
    "zendesk": ({"subdomain": "acme"}, ["acme.zendesk.com"]),
    "teams": ({}, ["teams.microsoft.com", "teams.cloud.microsoft"]),
    "entra-id": ({}, ["login.microsoftonline.com"]),
    "okta": ({"org": "acme"}, ["acme.okta.com"]),
}

# Values that must never become part of a host name.
BAD_NAMES = [
    "evil.com/x",
    "",
    "a..b",
    "a.b",
    "-acme",
    "acme-",
    "a" * 64,
    "ac me",
    "acme:443",
    "ac/me",
    "ac@me",
    "acmé",
    "acme\x00",
    "../etc",
    "https://acme",
]


def _hosts(apps: list[App]) -> list[str]:
    return [urlsplit(a.url).hostname for a in apps]


def test_every_preset_is_covered_here() -> None:
    """A new preset needs its documented host names written down in this file."""
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_preset_expands_to_documented_https_hosts(preset: str) -> None:
    params, hosts = EXPECTED[preset]
    apps = expand(preset, **params)
    assert _hosts(apps) == hosts
    for app in apps:
        parts = urlsplit(app.url)
        assert parts.scheme == "https" and parts.port is None and not parts.username, app
        assert parts.path.startswith("/"), app
        assert app.name and app.name == app.name.lower() and " " not in app.name, app
        assert 100 <= app.apdex_t_ms <= 5000, app
    assert len({a.name for a in apps}) == len(apps), "app names must be unique within a preset"


def test_catalog_describes_itself_for_help() -> None:
    for name, preset in PRESETS.items():
        assert preset.description and "\n" not in preset.description, name
        for param in preset.params:
            assert param.help and "\n" not in param.help, (name, param.name)


def test_app_names_are_unique_across_presets() -> None:
    names = [a.name for p, (params, _) in EXPECTED.items() for a in expand(p, **params)]
    assert len(names) == len(set(names))


def test_interactive_crm_calls_default_to_500_ms() -> None:
    apdex = {a.name: a.apdex_t_ms for a in expand("salesforce", org="acme")}
    assert apdex["salesforce-org"] == apdex["salesforce-lightning"] == 500
    assert apdex["salesforce-login"] >= 500


@pytest.mark.parametrize(
    ("preset", "param"),
    [
        (p, param.name)
        for p, spec in sorted(PRESETS.items())
        for param in spec.params
        if param.check.__name__ == "dns_label"
    ],
)
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_name_parameters_are_refused(preset: str, param: str, bad: str) -> None:
    params = dict(EXPECTED[preset][0], **{param: bad})
    with pytest.raises(ValueError, match=param):
        expand(preset, **params)


def test_names_are_normalized_to_lower_case() -> None:
    assert _hosts(expand("servicenow", instance="AcMe-Prod")) == ["acme-prod.service-now.com"]


@pytest.mark.parametrize(("region", "domain"), sorted(GENESYS_DOMAINS.items()))
def test_every_genesys_region_maps_to_its_domain(region: str, domain: str) -> None:
    assert _hosts(expand("genesys-cloud", region=region)) == [f"login.{domain}", f"api.{domain}", f"apps.{domain}"]
    # the domain itself is accepted too, as admins often know it from their login URL
    assert expand("genesys-cloud", region=domain) == expand("genesys-cloud", region=region)


def test_genesys_domains_match_the_documented_ones() -> None:
    assert GENESYS_DOMAINS["us-east-1"] == "mypurecloud.com"
    assert GENESYS_DOMAINS["eu-west-1"] == "mypurecloud.ie"
    assert GENESYS_DOMAINS["us-west-2"] == "usw2.pure.cloud"
    assert GENESYS_DOMAINS["ap-southeast-2"] == "mypurecloud.com.au"


@pytest.mark.parametrize("region", ["mars-1", "us-east-1.evil.com", "evil.com", "", "pure.cloud"])
def test_unknown_genesys_region_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="region"):
        expand("genesys-cloud", region=region)


@pytest.mark.parametrize(("region", "code"), [("nam", "crm"), ("emea", "crm4"), ("GBR", "crm11"), ("crm15", "crm15")])
def test_dynamics_region_or_code(region: str, code: str) -> None:
    assert _hosts(expand("dynamics365", org="acme", region=region))[0] == f"acme.{code}.dynamics.com"


def test_dynamics_defaults_to_north_america() -> None:
    assert _hosts(expand("dynamics365", org="acme"))[0] == "acme.crm.dynamics.com"


@pytest.mark.parametrize("region", ["crm1", "crm4.evil", "crm100", "europe", ""])
def test_bad_dynamics_region_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="region"):
        expand("dynamics365", org="acme", region=region)


def test_amazon_connect_region_is_optional_and_checked() -> None:
    assert _hosts(expand("amazon-connect", instance="acme")) == ["acme.my.connect.aws"]
    for bad in ["eu-west", "eu-west-2.evil.com", "EU WEST 2", "x/y"]:
        with pytest.raises(ValueError, match="region"):
            expand("amazon-connect", instance="acme", region=bad)


def test_okta_domain_choice() -> None:
    assert _hosts(expand("okta", org="acme", domain="okta-emea.com")) == ["acme.okta-emea.com"]
    with pytest.raises(ValueError, match="domain"):
        expand("okta", org="acme", domain="evil.com")


def test_unknown_preset_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'salesforse'.*salesforce"):
        expand("salesforse", org="acme")


def test_missing_parameter_is_named() -> None:
    with pytest.raises(ValueError, match="needs org"):
        expand("salesforce")


def test_unknown_parameter_is_refused() -> None:
    """A typo (``orgs=``) must fail at start-up, not silently check the wrong URL."""
    with pytest.raises(ValueError, match="no parameter orgs"):
        expand("salesforce", orgs="acme")
    with pytest.raises(ValueError, match="no parameter region"):
        expand("five9", region="eu")


def test_non_string_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        expand("servicenow", instance=42)  # type: ignore[arg-type]


def test_media_relays_are_host_and_port_pairs() -> None:
    for preset, relays in MEDIA_RELAYS.items():
        assert preset in PRESETS
        for host, port in relays:
            assert host.endswith(".teams.microsoft.com") and 0 < port < 65536

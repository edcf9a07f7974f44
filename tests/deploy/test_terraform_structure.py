"""Structural checks of ``terraform/`` without the terraform CLI: every ``.tf`` file is parsed with
python-hcl2 and the parsed configuration is checked for what ``terraform validate`` would catch (module
sources, arguments, references) and for what the multi-region design promises (pinned providers, two
regions with distinct provider aliases, MirrorMaker 2 replicating every Isthmus topic both ways, DNS
failover PRIMARY/SECONDARY with health checks)."""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from isthmus_cli.commands.regions import platform_groups
from isthmus_core.contracts.topics import ALL_TOPICS
from isthmus_core.regions import REPLICATED_TOPICS, mirror_allowlist

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
PROD = TF / "envs" / "prod"
REGION_MODULE = TF / "modules" / "region"
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)

# "~> 5.80", "~> 2.17.0" or an exact "5.80.0"; nothing open-ended like ">= 5".
PROVIDER_PIN = re.compile(r"^(~>\s*\d+\.\d+(\.\d+)?|=?\s*\d+\.\d+\.\d+)$")
REFERENCE = re.compile(r"\b(var|local|module)\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?")
# Resource-type prefixes that are not the provider's local name.
BUILTIN_TYPES = {"terraform_data", "null_resource"}

Doc = dict[str, Any]


def _parse(path: Path) -> Doc:
    with path.open() as f:
        try:
            return hcl2.load(f, serialization_options=OPTIONS)
        except Exception as exc:
            pytest.fail(f"{path.relative_to(ROOT)} does not parse as HCL2: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def roots() -> dict[Path, list[Doc]]:
    """Every directory holding .tf files (a module or an environment) -> its parsed files."""
    found: dict[Path, list[Doc]] = {}
    for path in sorted(TF.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        found.setdefault(path.parent, []).append(_parse(path))
    return found


def blocks(docs: list[Doc], kind: str) -> Iterator[Any]:
    for doc in docs:
        yield from doc.get(kind, [])


def labelled(docs: list[Doc], kind: str) -> dict[str, Any]:
    """``variable "x" {}`` / ``module "x" {}`` / ``output "x" {}`` blocks by label."""
    out: dict[str, Any] = {}
    for block in blocks(docs, kind):
        for label, body in block.items():
            assert label not in out, f"{kind} {label!r} is declared twice"
            out[label] = body
    return out


def resources(docs: list[Doc], kind: str = "resource") -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for block in blocks(docs, kind):
        for rtype, named in block.items():
            for name, body in named.items():
                out[(rtype, name)] = body
    return out


def locals_of(docs: list[Doc]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in blocks(docs, "locals"):
        out.update(block)
    return out


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def heredoc(value: str) -> str:
    """The text of a ``<<-EOT`` / ``<<EOT`` heredoc as terraform produces it."""
    match = re.fullmatch(r"<<(-?)([A-Za-z_]+)\n(.*)\n\s*\2", value, re.S)
    assert match, f"expected a heredoc, got {value[:60]!r}"
    body = match.group(3)
    return textwrap.dedent(body) if match.group(1) else body


def java_properties(text: str) -> dict[str, str]:
    """``key = value`` lines as java.util.Properties reads them (backslash escapes are unescaped)."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key = value line: {line!r}"
        key = key.strip()
        assert key not in props, f"MM2 property {key!r} is set twice"
        props[key] = re.sub(r"\\(.)", r"\1", value.strip())
    return props


def provider_alias(ref: str) -> tuple[str, str]:
    match = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", ref)
    assert match, f"expected a provider reference like ${{aws.use1}}, got {ref!r}"
    return match.group(1), match.group(2)


def module_dir(root: Path, source: str) -> Path:
    return (root / source).resolve()


# --- every file, every root -------------------------------------------------------------------------


def test_the_expected_roots_exist_and_parse(roots: dict[Path, list[Doc]]) -> None:
    assert REGION_MODULE in roots and PROD in roots, sorted(str(r.relative_to(ROOT)) for r in roots)
    assert sum(len(docs) for docs in roots.values()) >= 10


def test_every_root_pins_terraform_and_every_provider_it_uses(roots: dict[Path, list[Doc]]) -> None:
    for root, docs in roots.items():
        where = root.relative_to(ROOT)
        settings = list(blocks(docs, "terraform"))
        assert len(settings) == 1, f"{where}: expected exactly one terraform {{}} block"
        version = settings[0].get("required_version", "")
        assert re.search(r">=\s*1\.\d+", version) and re.search(r"<\s*2\.0", version), (
            f"{where}: required_version {version!r} must have a lower and an upper bound"
        )
        required = {}
        for block in settings[0].get("required_providers", []):
            required.update(block)
        assert required, f"{where}: no required_providers"
        for name, spec in required.items():
            assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", spec.get("source", "")), f"{where}: {name} source"
            assert PROVIDER_PIN.match(spec.get("version", "")), (
                f"{where}: provider {name} version {spec.get('version')!r} is not pinned (~> x.y or x.y.z)"
            )
        used = {rtype.split("_", 1)[0] for rtype, _ in resources(docs) if rtype not in BUILTIN_TYPES}
        used |= {rtype.split("_", 1)[0] for rtype, _ in resources(docs, "data")}
        used |= {name for block in blocks(docs, "provider") for name in block}
        assert used <= set(required), f"{where}: providers used but not required: {used - set(required)}"


def test_each_provider_has_one_version_constraint_everywhere(roots: dict[Path, list[Doc]]) -> None:
    seen: dict[str, set[str]] = {}
    for docs in roots.values():
        for settings in blocks(docs, "terraform"):
            for block in settings.get("required_providers", []):
                for name, spec in block.items():
                    seen.setdefault(name, set()).add(spec["version"])
    conflicting = {name: versions for name, versions in seen.items() if len(versions) > 1}
    assert not conflicting, f"modules and environments pin a provider differently: {conflicting}"


def test_every_variable_has_a_type_and_a_description(roots: dict[Path, list[Doc]]) -> None:
    count = 0
    for root, docs in roots.items():
        for name, body in labelled(docs, "variable").items():
            count += 1
            where = f"{root.relative_to(ROOT)}: variable {name!r}"
            assert body.get("type"), f"{where} has no type"
            description = body.get("description", "")
            assert isinstance(description, str) and len(description.strip()) >= 10, f"{where}: description"
    assert count >= 20


def test_every_output_has_a_description(roots: dict[Path, list[Doc]]) -> None:
    for root, docs in roots.items():
        for name, body in labelled(docs, "output").items():
            assert str(body.get("description", "")).strip(), f"{root.relative_to(ROOT)}: output {name!r}"


def test_module_calls_resolve_and_match_the_modules_interface(roots: dict[Path, list[Doc]]) -> None:
    meta = {"source", "providers", "depends_on", "count", "for_each", "version"}
    calls = 0
    for root, docs in roots.items():
        for name, call in labelled(docs, "module").items():
            calls += 1
            where = f"{root.relative_to(ROOT)}: module {name!r}"
            source = call["source"]
            assert source.startswith(("./", "../")), f"{where}: source {source!r} is not a local path"
            target = module_dir(root, source)
            assert target in roots, f"{where}: source {source!r} is not a folder with .tf files"
            variables = labelled(roots[target], "variable")
            passed = set(call) - meta
            assert passed <= set(variables), f"{where}: unknown arguments {sorted(passed - set(variables))}"
            missing = {v for v, body in variables.items() if "default" not in body} - passed
            assert not missing, f"{where}: required variables not passed: {sorted(missing)}"
            # The providers a module requires are all handed to it explicitly (no accidental default).
            required: set[str] = set()
            for settings in blocks(roots[target], "terraform"):
                for block in settings.get("required_providers", []):
                    required |= set(block)
            configured_here = {n for block in blocks(docs, "provider") for n in block}
            handed = set(call.get("providers", {}))
            assert (required & configured_here) <= handed, f"{where}: providers not passed explicitly"
    assert calls >= 2


def test_references_point_at_declared_things(roots: dict[Path, list[Doc]]) -> None:
    """var.X is declared, local.X defined, module.M.O is an output of module M (what validate checks)."""
    for root, docs in roots.items():
        where = root.relative_to(ROOT)
        variables = set(labelled(docs, "variable"))
        local_names = set(locals_of(docs))
        modules = labelled(docs, "module")
        for text in strings(docs):
            for kind, name, attr in REFERENCE.findall(text):
                if kind == "var":
                    assert name in variables, f"{where}: var.{name} is not declared"
                elif kind == "local":
                    assert name in local_names, f"{where}: local.{name} is not defined"
                else:
                    assert name in modules, f"{where}: module.{name} is not called"
                    outputs = labelled(roots[module_dir(root, modules[name]["source"])], "output")
                    # A bare module.M (the whole object) would hide which outputs are used: name them.
                    assert attr in outputs, f"{where}: module.{name}.{attr or '<bare>'} is not an output"


# --- the region module ------------------------------------------------------------------------------


def test_region_module_has_every_building_block(roots: dict[Path, list[Doc]]) -> None:
    docs = roots[REGION_MODULE]
    res = resources(docs)
    types = {rtype for rtype, _ in res}
    for needed in (
        "aws_vpc",
        "aws_flow_log",
        "aws_eks_cluster",
        "aws_eks_node_group",
        "aws_iam_openid_connect_provider",
        "aws_msk_cluster",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_logging",
        "aws_kms_key",
        "helm_release",
        "aws_lb",
    ):
        assert needed in types, f"the region module has no {needed}"

    vpc_config = res[("aws_eks_cluster", "this")]["vpc_config"][0]
    assert vpc_config["endpoint_public_access"] is False and vpc_config["endpoint_private_access"] is True
    assert res[("aws_eks_cluster", "this")]["encryption_config"][0]["resources"] == ["secrets"]

    msk = res[("aws_msk_cluster", "this")]
    assert msk["client_authentication"][0]["unauthenticated"] is False
    assert msk["client_authentication"][0]["sasl"][0]["iam"] is True
    assert msk["encryption_info"][0]["encryption_in_transit"][0]["client_broker"] == "TLS"


def test_region_module_defaults_include_a_tainted_edge_pool(roots: dict[Path, list[Doc]]) -> None:
    pools = labelled(roots[REGION_MODULE], "variable")["node_groups"]["default"]
    edge = pools["edge"]
    assert edge["labels"]["isthmus.dev/pool"] == "edge"
    assert [t["effect"] for t in edge["taints"]] == ["NO_SCHEDULE"]
    untainted = [name for name, pool in pools.items() if not pool.get("taints")]
    assert untainted, "no untainted pool left to run the services"


def test_region_module_installs_the_isthmus_chart_wired_to_msk(roots: dict[Path, list[Doc]]) -> None:
    docs = roots[REGION_MODULE]
    release = resources(docs)[("helm_release", "isthmus")]
    assert "local.chart_path" in release["chart"]
    local_values = locals_of(docs)
    path_expr = local_values["chart_path"]
    relative = re.search(r"\$\{path\.module\}/([^\"}]+)", path_expr)
    assert relative, path_expr
    assert (REGION_MODULE / relative.group(1)).resolve() == ROOT / "charts" / "isthmus"
    values = local_values["chart_values"]
    assert values["deploymentMode"] == "${var.deployment_mode}"
    assert "aws_msk_cluster.this.bootstrap_brokers_sasl_iam" in values["kafka"]["bootstrapServers"]
    # the IAM brokers (port 9098) only talk TLS + SASL/IAM: the services must be told to
    assert values["kafka"]["securityProtocol"] == "SASL_SSL"
    assert values["kafka"]["sasl"] == {"mechanism": "AWS_MSK_IAM"}
    modes = labelled(docs, "variable")["deployment_mode"]["validation"][0]["condition"]
    assert "AllInOne" in modes and "Distributed" in modes


# --- the production composition -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod(roots: dict[Path, list[Doc]]) -> list[Doc]:
    return roots[PROD]


@pytest.fixture(scope="module")
def prod_regions(prod: list[Doc]) -> dict[str, str]:
    """Provider alias -> AWS region of every aws provider in prod."""
    regions: dict[str, str] = {}
    for block in blocks(prod, "provider"):
        for body in [b for name, b in block.items() if name == "aws"]:
            alias = body.get("alias")
            assert alias, "every aws provider in prod needs an alias (no implicit default region)"
            assert alias not in regions, f"aws provider alias {alias!r} is declared twice"
            regions[alias] = body["region"]
    return regions


def test_prod_runs_at_least_two_regions_with_distinct_aliases(
    prod: list[Doc], prod_regions: dict[str, str]
) -> None:
    assert len(prod_regions) >= 2
    assert len(set(prod_regions.values())) == len(prod_regions), f"two aliases share a region: {prod_regions}"
    other_aliases = {
        kind: {body["alias"] for block in blocks(prod, "provider") for k, body in block.items() if k == kind}
        for kind in ("helm", "kubernetes")
    }
    assert other_aliases["helm"] == set(prod_regions) == other_aliases["kubernetes"]

    region_calls = {
        name: call
        for name, call in labelled(prod, "module").items()
        if module_dir(PROD, call["source"]) == REGION_MODULE
    }
    used = {}
    for name, call in region_calls.items():
        kinds = {kind: provider_alias(ref) for kind, ref in call["providers"].items()}
        aws_alias = kinds["aws"][1]
        assert kinds["helm"] == ("helm", aws_alias), f"module {name}: helm provider of another region"
        used[name] = aws_alias
    assert len(set(used.values())) >= 2, f"region modules must use distinct regions: {used}"


def test_prod_vpcs_do_not_overlap(prod: list[Doc], prod_regions: dict[str, str]) -> None:
    regions = locals_of(prod)["regions"]
    assert set(regions) == set(prod_regions)
    nets = {alias: ipaddress.ip_network(r["vpc_cidr"]) for alias, r in regions.items()}
    for a in nets:
        assert regions[a]["aws_region"] == prod_regions[a]
        assert all(az.startswith(prod_regions[a]) for az in regions[a]["azs"])
        for b in nets:
            if a < b:
                assert not nets[a].overlaps(nets[b]), f"{a} {nets[a]} overlaps {b} {nets[b]} (peered VPCs)"


@pytest.fixture(scope="module")
def mm2(prod: list[Doc]) -> dict[str, str]:
    return java_properties(heredoc(locals_of(prod)["mm2_properties"]))


def test_mirrormaker_names_both_clusters_and_replicates_both_ways(
    mm2: dict[str, str], prod_regions: dict[str, str]
) -> None:
    clusters = [c.strip() for c in mm2["clusters"].split(",")]
    assert sorted(clusters) == sorted(prod_regions), "MM2 cluster aliases must be the region aliases"
    for source in clusters:
        assert f"module.{source}.kafka_bootstrap_brokers_iam" in mm2[f"{source}.bootstrap.servers"]
        assert mm2[f"{source}.security.protocol"] == "SASL_SSL"
        assert mm2[f"{source}.sasl.mechanism"] == "AWS_MSK_IAM"
        for target in clusters:
            if source != target:
                assert mm2[f"{source}->{target}.enabled"] == "true"


def test_mirrormaker_topic_filter_is_the_replicated_topics_and_no_remote_copy(
    mm2: dict[str, str], prod_regions: dict[str, str]
) -> None:
    filters = {key: value for key, value in mm2.items() if key.endswith(".topics") and "->" in key}
    assert len(filters) == len(prod_regions) * (len(prod_regions) - 1)
    for key, pattern in filters.items():
        assert pattern == mirror_allowlist(), key  # the one list in isthmus_core.regions
        regex = re.compile(pattern)
        for spec in ALL_TOPICS:
            assert bool(regex.fullmatch(spec.name)) == (spec in REPLICATED_TOPICS), f"{key}: {spec.name}"
            for alias in prod_regions:  # DefaultReplicationPolicy copies: <alias>.<topic> must not loop
                assert not regex.fullmatch(f"{alias}.{spec.name}")
        assert not regex.fullmatch("isthmusXchunksXembeddedXv1"), "the dots must be escaped"


def test_each_region_release_knows_its_region_and_all_regions(
    prod: list[Doc], prod_regions: dict[str, str]
) -> None:
    region_calls = {
        name: call
        for name, call in labelled(prod, "module").items()
        if module_dir(PROD, call["source"]) == REGION_MODULE
    }
    assert set(region_calls) == set(prod_regions)
    for alias, call in region_calls.items():
        assert f"local.region_values.{alias}" in str(call["extra_values"]), alias
    values = str(locals_of(prod)["region_values"])
    assert "REGION" in values and "REGIONS" in values and "alias" in values


def test_mirrormaker_replication_factors_checkpoints_and_offset_sync(
    mm2: dict[str, str], roots: dict[Path, list[Doc]], prod: list[Doc]
) -> None:
    region_vars = labelled(roots[REGION_MODULE], "variable")
    per_az = region_vars["kafka_brokers_per_az"]["default"]
    smallest = min(len(r["azs"]) * per_az for r in locals_of(prod)["regions"].values())
    factors = [
        "replication.factor",
        "checkpoints.topic.replication.factor",
        "heartbeats.topic.replication.factor",
        "offset-syncs.topic.replication.factor",
        "offset.storage.replication.factor",
        "status.storage.replication.factor",
        "config.storage.replication.factor",
    ]
    for key in factors:
        assert 2 <= int(mm2[key]) <= smallest, f"{key}={mm2[key]} with {smallest} brokers"
    assert mm2["emit.checkpoints.enabled"] == "true"
    assert mm2["sync.group.offsets.enabled"] == "true"
    assert mm2["emit.heartbeats.enabled"] == "true"
    # the platform's groups run under the same names in every region: never synced across
    excluded = [g.strip() for g in mm2["groups.exclude"].split(",")]
    assert set(platform_groups()) <= set(excluded)
    assert mm2["offset-syncs.topic.location"] == "target"


def test_one_mirrormaker_per_region_drives_its_own_cluster(
    prod: list[Doc], prod_regions: dict[str, str]
) -> None:
    mirror_dir = TF / "modules" / "kafka-mirror"
    mirrors = [c for c in labelled(prod, "module").values() if module_dir(PROD, c["source"]) == mirror_dir]
    targets = []
    for call in mirrors:
        assert call["properties"] == "${local.mm2_properties}"
        (target,) = call["target_clusters"]
        assert provider_alias(call["providers"]["aws"]) == ("aws", target)
        assert provider_alias(call["providers"]["kubernetes"]) == ("kubernetes", target)
        targets.append(target)
    assert sorted(targets) == sorted(prod_regions)


def test_dns_fails_over_from_primary_to_secondary_on_health_checks(
    prod: list[Doc], prod_regions: dict[str, str]
) -> None:
    res = resources(prod)
    records = {
        body["failover_routing_policy"][0]["type"]: body
        for (rtype, _), body in res.items()
        if rtype == "aws_route53_record" and body.get("failover_routing_policy")
    }
    assert sorted(records) == ["PRIMARY", "SECONDARY"]
    primary, secondary = records["PRIMARY"], records["SECONDARY"]
    assert primary["name"] == secondary["name"] and primary["type"] == secondary["type"]
    assert primary["set_identifier"] != secondary["set_identifier"]

    regions_behind = []
    for record in (primary, secondary):
        check_ref = re.fullmatch(r"\$\{aws_route53_health_check\.(\w+)\.id\}", record["health_check_id"])
        assert check_ref, "every failover record needs a Route 53 health check"
        check = res[("aws_route53_health_check", check_ref.group(1))]
        alias_module = re.search(r"module\.(\w+)\.grpc_lb_dns_name", record["alias"][0]["name"])
        assert alias_module and record["alias"][0]["evaluate_target_health"] is True
        region = alias_module.group(1)
        assert region in prod_regions
        # The health check watches the same region the record points at.
        assert f"module.{region}.grpc_health_alarm_name" in check["cloudwatch_alarm_name"]
        assert check["type"] == "CLOUDWATCH_METRIC"
        regions_behind.append(region)
    assert len(set(regions_behind)) == 2


# --- identity and access -----------------------------------------------------------------------------

AUTH_VARIABLES = (
    "auth_issuer",
    "auth_jwks_url",
    "auth_audience",
    "auth_service_client",
    "platform_bindings",
    "tenant_bindings",
    "access_existing_configmap",
)


def _chart_schema() -> dict[str, Any]:
    import json

    schema: dict[str, Any] = json.loads((ROOT / "charts" / "isthmus" / "values.schema.json").read_text())
    return schema


def _keys(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> None:
    """Every key of a values dict built by terraform is one the chart's schema knows."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(value, dict) or "properties" not in schema:
        return
    unknown = set(value) - set(schema["properties"])
    assert not unknown, f"{where}: the chart's schema has no {sorted(unknown)}"
    for key, sub in value.items():
        _keys(sub, schema["properties"][key], defs, f"{where}.{key}")


def test_region_module_passes_the_identity_provider_and_bindings_to_the_chart(
    roots: dict[Path, list[Doc]],
) -> None:
    from isthmus_core.auth.identity import Role
    from isthmus_core.contracts.ids import PRINCIPAL_PATTERN

    docs = roots[REGION_MODULE]
    variables = labelled(docs, "variable")
    values = locals_of(docs)["chart_values"]
    auth, access = values["auth"], values["access"]
    # the pods listen beyond loopback: the release always authenticates, against var.auth_issuer
    assert auth["mode"] == "oidc"
    assert "default" not in variables["auth_issuer"], "the issuer has no default: every install names it"
    assert (auth["issuer"], auth["jwksUrl"], auth["audience"]) == (
        "${var.auth_issuer}",
        "${var.auth_jwks_url}",
        "${var.auth_audience}",
    )
    client = auth["serviceClient"]
    assert "var.auth_service_client.token_url" in client["tokenUrl"]
    assert "var.auth_service_client.client_id" in client["clientId"]
    assert "var.auth_service_client.secret_name" in client["clientSecretRef"]["name"]
    assert "var.auth_service_client.secret_key" in client["clientSecretRef"]["key"]
    assert access["bindings"] == "${var.platform_bindings}"
    assert "var.tenant_bindings" in access["tenants"] and "bindings = bindings" in access["tenants"]
    assert access["existingConfigMap"] == "${var.access_existing_configmap}"
    schema = _chart_schema()
    for key in ("auth", "access"):
        _keys(values[key], schema["properties"][key], schema["definitions"], key)
    # the roles terraform accepts are the ones a binding may name (every Role but the implicit service)
    roles = [r.value for r in Role if r is not Role.SERVICE]
    for name in ("platform_bindings", "tenant_bindings"):
        condition = variables[name]["validation"][0]["condition"]
        listed = re.findall(r'"([a-z-]+)"', condition.split("contains([", 1)[1].split("]", 1)[0])
        assert listed == roles, name
        assert f'can(regex("{PRINCIPAL_PATTERN}", b.principal))' in condition, name  # the access file's rule
    exclusive = variables["access_existing_configmap"]["validation"][0]["condition"]
    assert "var.platform_bindings" in exclusive and "var.tenant_bindings" in exclusive


def test_prod_gives_both_regions_the_same_identity_provider_and_bindings(
    prod: list[Doc], prod_regions: dict[str, str]
) -> None:
    variables = labelled(prod, "variable")
    region_calls = {
        name: call
        for name, call in labelled(prod, "module").items()
        if module_dir(PROD, call["source"]) == REGION_MODULE
    }
    assert set(region_calls) == set(prod_regions)
    for alias, call in region_calls.items():
        for name in AUTH_VARIABLES:
            assert name in variables, f"prod declares no variable {name}"
            assert call[name] == f"${{var.{name}}}", f"module {alias}: {name}"

"""Pure builders: every object and patch the operator writes, as plain dicts.

No kopf, no kubernetes client: values in, values out (unit-tested without fixtures). Times come in as
arguments (``now``), so the output is a function of the input only.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_operator.names import (
    ANNOTATION_BUNDLE,
    API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGED_BY,
    TENANT_KIND,
    tenant_configmap_name,
)
from isthmus_operator.specs import Binding, PolicyRef, Quota, TenantSpec, parse_tenant

TENANT_SETTINGS_KEY = "tenant.json"
#: the access file's key in the access ConfigMap (what the isthmus chart mounts: ISTHMUS_ACCESS_FILE)
ACCESS_FILE_KEY = "access.toml"
LABEL_COMPONENT = "app.kubernetes.io/component"


# -- Tenant ------------------------------------------------------------------------------------------


def build_tenant_settings(name: str, spec: TenantSpec) -> dict[str, Any]:
    """The tenant's settings, the ``tenant.json`` key of its ConfigMap.

    Carried for the services, not read by them yet: the legacy ``quotas`` are enforced by nothing (the
    enforced ``spec.quota`` and ``spec.access`` go into the access file, :func:`build_access_file`),
    regions by nothing either (issue 13)."""
    return {
        "tenantId": name,
        "primaryRegion": spec.primary_region,
        "replicaRegions": list(spec.replica_regions),
        "quotas": (
            {
                "requestsPerSecond": spec.quotas.requests_per_second,
                "tokensPerDay": spec.quotas.tokens_per_day,
                "storage": spec.quotas.storage,
            }
            if spec.quotas is not None
            else None
        ),
        "guardrailPolicy": spec.guardrail_policy_ref.name,
        "guardrailPolicyVersion": spec.guardrail_policy_ref.version,
        "modelBundle": {"name": spec.model_bundle.name, "version": spec.model_bundle.version},
    }


def build_owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Owner reference to one of our custom resources (garbage collection backs up the finalizer)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_tenant_configmap(name: str, namespace: str, uid: str, spec: TenantSpec) -> dict[str, Any]:
    """ConfigMap ``isthmus-tenant-<name>``: the tenant's settings, labelled with the tenant."""
    settings = build_tenant_settings(name, spec)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": tenant_configmap_name(name),
            "namespace": namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_TENANT: name,
                "isthmus.dev/primary-region": spec.primary_region,
            },
            "ownerReferences": [build_owner_reference(TENANT_KIND, name, uid)],
        },
        "data": {TENANT_SETTINGS_KEY: json.dumps(settings, sort_keys=True, indent=2)},
    }


# -- conditions and phases ---------------------------------------------------------------------------


def build_condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int, now: str
) -> dict[str, Any]:
    """A ``metav1.Condition``; ``status`` None means Unknown."""
    return {
        "type": type_,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


def merge_conditions(
    existing: Iterable[Mapping[str, Any]], updates: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Replace conditions by type; a condition whose status did not change keeps its transition time."""
    merged = {str(c.get("type")): dict(c) for c in existing}
    for cond in updates:
        new = dict(cond)
        old = merged.get(str(new["type"]))
        if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        merged[str(new["type"])] = new
    return sorted(merged.values(), key=lambda c: str(c["type"]))


def summarise(conditions: Sequence[Mapping[str, Any]], generation: int, now: str) -> dict[str, Any]:
    """The ``Ready`` condition of a Tenant from its part conditions.

    Ready is True when no part is False (Unknown parts — e.g. an unmanaged vector store — do not block).
    """
    failing = [c for c in conditions if c["type"] != "Ready" and c["status"] == "False"]
    if not failing:
        return build_condition(
            "Ready", True, "Reconciled", "all tenant resources are in place", generation, now
        )
    first = failing[0]
    return build_condition("Ready", False, str(first["reason"]), str(first["message"]), generation, now)


def tenant_phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    """``Failed`` when the spec is invalid, ``Ready`` when everything is in place, else ``Pending``."""
    by_type = {c["type"]: c for c in conditions}
    valid = by_type.get("Valid")
    if valid is not None and valid["status"] == "False":
        return "Failed"
    ready = by_type.get("Ready")
    return "Ready" if ready is not None and ready["status"] == "True" else "Pending"


# -- the guardrail policy ----------------------------------------------------------------------------

GUARDRAIL_POLICY_READY = "GuardrailPolicyReady"


def build_policy_condition(
    ref: PolicyRef,
    labels: Mapping[str, str],
    unavailable: Mapping[str, str],
    refused: Mapping[str, str],
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The ``GuardrailPolicyReady`` condition after ``ApplyPolicyRef`` where the tenant's policy lives
    (keys: ``""`` for the one guardrail endpoint, else region names): ``labels`` = the current version's
    label where it was applied, ``unavailable`` / ``refused`` = why not elsewhere. Refused (an unknown
    preset, a version never stored) wins over unavailable: retrying cannot fix it."""

    def where(failures: Mapping[str, str]) -> str:
        return "; ".join(f"region {r!r}: {why}" if r else why for r, why in sorted(failures.items()))

    if refused:
        message = f"the guardrail refused guardrailPolicyRef ({ref.text}): {where(refused)}"
        return build_condition(GUARDRAIL_POLICY_READY, False, "Rejected", message, generation, now)
    if unavailable:
        message = f"cannot apply guardrailPolicyRef ({ref.text}) yet: {where(unavailable)}"
        reason = "GuardrailUnavailable"
        return build_condition(GUARDRAIL_POLICY_READY, False, reason, message, generation, now)
    if set(labels) == {""}:
        message = f"guardrail policy {labels['']} is current ({ref.text})"
    else:
        held = ", ".join(f"{r} {label}" for r, label in sorted(labels.items()))
        message = f"guardrail policy current ({ref.text}): {held}"
    return build_condition(GUARDRAIL_POLICY_READY, True, "Applied", message, generation, now)


# -- edge workloads ----------------------------------------------------------------------------------


def workload_bundle(workload: Mapping[str, Any]) -> str | None:
    """The bundle reference an edge workload's pod template carries (None when it has none)."""
    template_meta = (workload.get("spec") or {}).get("template", {}).get("metadata") or {}
    value = (template_meta.get("annotations") or {}).get(ANNOTATION_BUNDLE)
    return str(value) if value else None


def build_bundle_patch(bundle_ref: str | None) -> dict[str, Any]:
    """Strategic-merge patch putting ``bundle_ref`` (``<name>@<version>``) on an edge workload.

    Sets annotation ``isthmus.dev/model-bundle`` on the workload and on its pod template (a template
    change rolls the pods; the isthmus chart hands the value to every container as ``ISTHMUS_MODEL_BUNDLE``
    through the downward API, and the services load that bundle: isthmus_core.model_bundles). Containers
    are left as they are. ``None`` removes both annotations (rollback to a workload that had no bundle
    before).
    """
    return {
        "metadata": {"annotations": {ANNOTATION_BUNDLE: bundle_ref}},
        "spec": {"template": {"metadata": {"annotations": {ANNOTATION_BUNDLE: bundle_ref}}}},
    }


# -- tenant regions ----------------------------------------------------------------------------------

#: ``status.regions[].role``: ``removing`` = no longer listed, the tenant is being deleted there
REGION_ROLES = ("primary", "replica", "removing")


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """What a Tenant's reconcile does per region (:func:`plan_tenant_regions`)."""

    #: (region, role) the tenant must exist in, primary first, known to the operator
    ensure: tuple[tuple[str, str], ...]
    #: listed regions the operator has no endpoint for
    unknown: tuple[str, ...]
    #: no longer listed: delete the tenant there (it was a replica, deletionPolicy Delete)
    remove: tuple[str, ...]
    #: no longer listed, data kept: (region, why)
    keep: tuple[tuple[str, str], ...]


def plan_tenant_regions(
    spec: TenantSpec, known: Collection[str], previous: Iterable[Mapping[str, Any]]
) -> RegionPlan:
    """Which regions hold the tenant now, and what becomes of a region no longer listed.

    ``previous`` is the last ``status.regions``. A dropped region is emptied only when it was a replica
    (or already being emptied) and the deletionPolicy is Delete: a former primary may hold writes not
    mirrored yet, so its data is kept (list it as a replica to keep it in sync, or delete the tenant
    there by hand). Moving the primary (primaryRegion and replicaRegions swapped) drops no region."""
    listed = [(spec.primary_region, "primary"), *((r, "replica") for r in spec.replica_regions)]
    names = {r for r, _ in listed}
    remove: list[str] = []
    keep: list[tuple[str, str]] = []
    for entry in previous:
        region, role = str(entry.get("region") or ""), str(entry.get("role") or "")
        if not region or region in names or region not in known:
            continue
        if spec.deletion_policy == "Retain":
            keep.append((region, "deletionPolicy Retain"))
        elif role == "primary":
            keep.append((region, "it was the primary and may hold writes not mirrored yet"))
        else:
            remove.append(region)
    return RegionPlan(
        ensure=tuple((r, role) for r, role in listed if r in known),
        unknown=tuple(r for r, _ in listed if r not in known),
        remove=tuple(sorted(set(remove))),
        keep=tuple(keep),
    )


def build_region_status(
    region: str, role: str, ready: bool, message: str, lag_documents: int | None = None
) -> dict[str, Any]:
    """One ``status.regions`` entry; ``lagDocuments`` = the primary's indexed documents this region
    lacks or holds at an older version (absent when not measured; the reconcile adds ``lagSeconds``)."""
    entry: dict[str, Any] = {"region": region, "role": role, "ready": ready, "message": message}
    if lag_documents is not None:
        entry["lagDocuments"] = lag_documents
    return entry


# -- the access file ---------------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_bindings(bindings: Iterable[Binding]) -> str:
    items = [f"{{ principal = {toml_string(b.principal)}, role = {toml_string(b.role)} }}" for b in bindings]
    if not items:
        return "bindings = []"
    return "bindings = [\n" + "".join(f"  {item},\n" for item in items) + "]"


def _toml_quota(tenant: str, quota: Quota) -> list[str]:
    lines = [f"[tenants.{toml_string(tenant)}.quota]"]
    if quota.requests_per_s:
        rates = ", ".join(f"{toml_string(f)} = {n}" for f, n in sorted(quota.requests_per_s.items()))
        lines.append(f"requests_per_s = {{ {rates} }}")
    for key, value in (
        ("max_documents", quota.max_documents),
        ("max_bytes", quota.max_bytes),
        ("llm_tokens_per_day", quota.llm_tokens_per_day),
    ):
        if value is not None:
            lines.append(f"{key} = {value}")
    return lines


def tenant_access(tenants: Iterable[Mapping[str, Any]]) -> tuple[dict[str, TenantSpec], dict[str, str]]:
    """The Tenants whose bindings and quotas go into the access file, by name, and the ones left out
    with why: a Tenant being deleted, or one whose spec is invalid (its status says why; it grants
    nothing until fixed)."""
    kept: dict[str, TenantSpec] = {}
    skipped: dict[str, str] = {}
    for obj in tenants:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if meta.get("deletionTimestamp"):
            skipped[name] = "being deleted"
            continue
        if not is_tenant_id(name):
            skipped[name] = "metadata.name is no tenant id"
            continue
        try:
            kept[name] = parse_tenant(name, obj.get("spec") or {})
        except InvalidArgument as exc:
            skipped[name] = exc.reason
    return kept, skipped


def build_access_file(tenants: Iterable[Mapping[str, Any]], platform_bindings: Sequence[Binding] = ()) -> str:
    """The access file (TOML, the format ``isthmus_core.auth.access_file.parse`` reads: the tests read
    it back with it; written here because that module is not import-pure) from Tenant objects:
    ``[platform]`` = ``platform_bindings`` (the operator's settings), ``[tenants.<name>]`` = each valid,
    live Tenant's ``spec.access.bindings``, ``[tenants.<name>.quota]`` = its ``spec.quota``. Sorted by
    tenant: the same Tenants always give the same text (an unchanged apply changes nothing)."""
    kept, _ = tenant_access(tenants)
    lines = [
        "# rendered by the isthmus-operator from the Tenant objects (spec.access, spec.quota): do not edit",
        "[platform]",
        _toml_bindings(platform_bindings),
    ]
    for name in sorted(kept):
        spec = kept[name]
        lines += ["", f"[tenants.{toml_string(name)}]", _toml_bindings(spec.access.bindings)]
        if spec.quota is not None:
            lines += ["", *_toml_quota(name, spec.quota)]
    return "\n".join(lines) + "\n"


def build_access_configmap(name: str, namespace: str, access_file: str) -> dict[str, Any]:
    """The access ConfigMap (key ``access.toml``) the isthmus chart mounts into every pod
    (``access.existingConfigMap``). Not owned by any one Tenant: it holds them all."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: "access"},
        },
        "data": {ACCESS_FILE_KEY: access_file},
    }

"""``isthmus-operator``: the composition root — settings, real clients, handlers, ``kopf.run``."""

from __future__ import annotations

import sys

from isthmus_core.errors import ConfigurationError


def main() -> None:
    import kopf

    from isthmus_core.settings import load_all
    from isthmus_operator.evaluation import EvaluationMetricsSource
    from isthmus_operator.guardrail import GrpcPolicyApplier
    from isthmus_operator.handlers import register
    from isthmus_operator.kube import ConfigMapMetricsSource, Kube, MetricsSource, api_client
    from isthmus_operator.reconcile import AccessConfig, Dependencies
    from isthmus_operator.regional import grpc_region
    from isthmus_operator.retrieval import GrpcTenantRegistry
    from isthmus_operator.settings import OperatorSettings, operator_tokens

    try:
        settings = load_all([OperatorSettings])["operator"]
    except ConfigurationError as exc:
        sys.exit(f"isthmus-operator: {exc}")
    assert isinstance(settings, OperatorSettings)
    kube = Kube(api_client())
    tokens = operator_tokens(settings)
    metrics: MetricsSource = (
        EvaluationMetricsSource(
            settings.evaluation_endpoint,
            settings.evaluation_timeout_s,
            tokens,
            min_samples=settings.evaluation_min_samples,
            baseline_window_s=settings.evaluation_baseline_window_s,
        )
        if settings.rollout_metrics == "evaluation"
        else ConfigMapMetricsSource(kube)
    )
    deps = Dependencies(
        kube=kube,
        metrics=metrics,
        tenants=(
            GrpcTenantRegistry(settings.retrieval_endpoint, settings.retrieval_timeout_s, tokens)
            if settings.retrieval_endpoint
            else None
        ),
        regions={
            region: grpc_region(endpoint, settings.retrieval_timeout_s, tokens)
            for region, endpoint in settings.regions.items()
        },
        access=(
            AccessConfig(settings.access_configmap, tuple(settings.access_platform_bindings))
            if settings.access_configmap
            else None
        ),
        policies=(
            GrpcPolicyApplier(settings.guardrail_endpoint, settings.guardrail_timeout_s, tokens)
            if settings.guardrail_endpoint
            else None
        ),
    )
    registry = kopf.OperatorRegistry()
    register(
        registry,
        deps,
        rollout_interval_s=settings.rollout_interval_s,
        retry_delay_s=settings.retry_delay_s,
        regions_interval_s=settings.regions_interval_s,
        drill_interval_s=settings.drill_interval_s,
    )
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON)
    kopf.run(
        registry=registry,
        # one replica (the chart's Deployment uses the Recreate strategy): no peering objects needed
        standalone=True,
        clusterwide=not settings.namespace,
        namespaces=[settings.namespace] if settings.namespace else (),
        liveness_endpoint=settings.liveness_endpoint or None,
    )


if __name__ == "__main__":
    main()

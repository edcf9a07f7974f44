"""Operator settings: ``ISTHMUS_OPERATOR_<FIELD>`` env vars (or the config file's ``[operator]`` table)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class OperatorSettings(SectionSettings):
    section: ClassVar[str] = "operator"
    model_config = section_config("operator")

    retrieval_endpoint: str = Field(
        "",
        description="host:port of the retrieval gRPC service, where tenants are created in the vector "
        "store; empty = the operator does not manage vector-store tenants",
        pattern=r"^$|^[^\s:]+:[0-9]{1,5}$",
    )
    retrieval_timeout_s: float = Field(5.0, gt=0, description="deadline of one retrieval call")
    rollout_interval_s: float = Field(
        15.0, gt=0, description="how often an EdgeRollout re-reads its metrics and decides its next step"
    )
    retry_delay_s: float = Field(
        10.0, gt=0, description="delay before retrying a handler after a transient error"
    )
    namespace: str = Field("", description="watch only this namespace; empty = every namespace")
    liveness_endpoint: str = Field(
        "http://0.0.0.0:8080/healthz", description="kopf's liveness endpoint; empty = none"
    )

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class EvaluationSettings(SectionSettings):
    section: ClassVar[str] = "evaluation"
    model_config = section_config("evaluation")

    upload_concurrency: int = Field(8, ge=1, le=64)
    search_concurrency: int = Field(4, ge=1, le=64)
    index_timeout_s: float = Field(
        3600.0, gt=0, description="how long RunEval waits for the corpus to be indexed"
    )
    top_k: int = Field(100, ge=10, le=1000)
    datasets_root: Path | None = Field(
        None,
        description="RunEval reads datasets only under this directory (paths relative to it); "
        "unset: RunEval is refused, RunEvalUpload still works",
    )
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="RunEvalUpload: cap on a dataset's total size (all files)"
    )

    # ---- judges ------------------------------------------------------------------------------------------
    judge: Literal["offline", "llm"] = Field(
        "offline",
        description="the default judge of answers: the guardrail's grounding model and cross-encoder "
        "(offline), or the OpenAI-compatible model below (llm)",
    )
    judge_llm_url: str = Field(
        "", description="llm judge: base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1"
    )
    judge_llm_model: str = Field("", description="llm judge: the model name sent to that API")
    judge_timeout_s: float = Field(60.0, gt=0, description="one judge call; past it the sample fails")
    judge_concurrency: int = Field(2, ge=1, le=64, description="answers judged at once")

    # ---- online evaluation -------------------------------------------------------------------------------
    online_judge: Literal["offline", "llm", "none"] = Field(
        "offline", description="the judge of sampled live answers; none = sampled answers are not scored"
    )
    online_retention_days: int = Field(30, ge=1, description="how long the online series are kept")
    online_window_s: int = Field(3600, ge=60, description="the recent window a drop is detected over")
    online_baseline_window_s: int = Field(
        24 * 3600, ge=60, description="the window before it that the recent window is compared with"
    )
    online_min_samples: int = Field(
        20, ge=1, description="scored samples both windows need before a drop can be raised"
    )
    online_check_interval_s: float = Field(60.0, gt=0, description="how often drops are looked for")
    online_max_drop: dict[str, float] = Field(
        default_factory=lambda: {"faithfulness": 0.1, "answer_relevance": 0.1, "context_precision": 0.1},
        description="metric -> largest allowed drop of its recent mean below its baseline mean; "
        "metrics not named are not watched",
    )
    online_tenant_max_drop: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="tenant -> metric -> its own allowance, overriding online_max_drop"
    )
    online_eval_sets: dict[str, str] = Field(
        default_factory=dict,
        description="tenant -> a BEIR dataset directory under datasets_root whose queries and qrels name "
        "the tenant's documents: live answers to those questions are scored nDCG@10 (rollout gates)",
    )

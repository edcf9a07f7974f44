from isthmus.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_STOPPED: _ClassVar[RunStatus]
    RUN_STATUS_BUDGET_EXHAUSTED: _ClassVar[RunStatus]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_INPUT_GUARD: _ClassVar[Stage]
    STAGE_RETRIEVAL: _ClassVar[Stage]
    STAGE_GENERATION: _ClassVar[Stage]
    STAGE_OUTPUT_GUARD: _ClassVar[Stage]
    STAGE_DONE: _ClassVar[Stage]
    STAGE_AGENT: _ClassVar[Stage]

class StepKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_KIND_UNSPECIFIED: _ClassVar[StepKind]
    STEP_KIND_CONDENSE: _ClassVar[StepKind]
    STEP_KIND_MEMORY: _ClassVar[StepKind]
    STEP_KIND_PLAN: _ClassVar[StepKind]
    STEP_KIND_TOOL_CALL: _ClassVar[StepKind]
    STEP_KIND_TOOL_RESULT: _ClassVar[StepKind]
    STEP_KIND_APPROVAL_WAIT: _ClassVar[StepKind]
    STEP_KIND_APPROVAL_DECIDED: _ClassVar[StepKind]
    STEP_KIND_CRITIQUE: _ClassVar[StepKind]
    STEP_KIND_RETRY: _ClassVar[StepKind]
    STEP_KIND_CACHE_HIT: _ClassVar[StepKind]
    STEP_KIND_BUDGET: _ClassVar[StepKind]

class ApprovalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATE_UNSPECIFIED: _ClassVar[ApprovalState]
    APPROVAL_STATE_PENDING: _ClassVar[ApprovalState]
    APPROVAL_STATE_APPROVED: _ClassVar[ApprovalState]
    APPROVAL_STATE_REJECTED: _ClassVar[ApprovalState]
    APPROVAL_STATE_EXPIRED: _ClassVar[ApprovalState]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_STOPPED: RunStatus
RUN_STATUS_BUDGET_EXHAUSTED: RunStatus
STAGE_UNSPECIFIED: Stage
STAGE_INPUT_GUARD: Stage
STAGE_RETRIEVAL: Stage
STAGE_GENERATION: Stage
STAGE_OUTPUT_GUARD: Stage
STAGE_DONE: Stage
STAGE_AGENT: Stage
STEP_KIND_UNSPECIFIED: StepKind
STEP_KIND_CONDENSE: StepKind
STEP_KIND_MEMORY: StepKind
STEP_KIND_PLAN: StepKind
STEP_KIND_TOOL_CALL: StepKind
STEP_KIND_TOOL_RESULT: StepKind
STEP_KIND_APPROVAL_WAIT: StepKind
STEP_KIND_APPROVAL_DECIDED: StepKind
STEP_KIND_CRITIQUE: StepKind
STEP_KIND_RETRY: StepKind
STEP_KIND_CACHE_HIT: StepKind
STEP_KIND_BUDGET: StepKind
APPROVAL_STATE_UNSPECIFIED: ApprovalState
APPROVAL_STATE_PENDING: ApprovalState
APPROVAL_STATE_APPROVED: ApprovalState
APPROVAL_STATE_REJECTED: ApprovalState
APPROVAL_STATE_EXPIRED: ApprovalState

class AskRequest(_message.Message):
    __slots__ = ("tenant_id", "question", "top_k", "access", "graph", "session_id", "run_id", "no_cache", "include_contexts")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    question: str
    top_k: int
    access: _common_pb2.AccessScope
    graph: str
    session_id: str
    run_id: str
    no_cache: bool
    include_contexts: bool
    def __init__(self, tenant_id: _Optional[str] = ..., question: _Optional[str] = ..., top_k: _Optional[int] = ..., access: _Optional[_Union[_common_pb2.AccessScope, _Mapping]] = ..., graph: _Optional[str] = ..., session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., no_cache: bool = ..., include_contexts: bool = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "model", "cost_usd", "reported")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    model: str
    cost_usd: float
    reported: bool
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., model: _Optional[str] = ..., cost_usd: _Optional[float] = ..., reported: bool = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("question_id", "answer", "sentences", "citations", "input_verdict", "output_verdict", "blocked", "generator", "latency_ms", "graph", "run_id", "session_id", "standalone_question", "prompt_version", "usage", "cached", "steps", "status", "contexts")
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STANDALONE_QUESTION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    question_id: str
    answer: str
    sentences: _containers.RepeatedCompositeFieldContainer[_common_pb2.AnswerSentence]
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    input_verdict: _common_pb2.Verdict
    output_verdict: _common_pb2.Verdict
    blocked: bool
    generator: str
    latency_ms: float
    graph: str
    run_id: str
    session_id: str
    standalone_question: str
    prompt_version: str
    usage: Usage
    cached: bool
    steps: _containers.RepeatedCompositeFieldContainer[AgentStep]
    status: RunStatus
    contexts: _containers.RepeatedCompositeFieldContainer[RetrievedContext]
    def __init__(self, question_id: _Optional[str] = ..., answer: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[_common_pb2.AnswerSentence, _Mapping]]] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., input_verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ..., output_verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ..., blocked: bool = ..., generator: _Optional[str] = ..., latency_ms: _Optional[float] = ..., graph: _Optional[str] = ..., run_id: _Optional[str] = ..., session_id: _Optional[str] = ..., standalone_question: _Optional[str] = ..., prompt_version: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cached: bool = ..., steps: _Optional[_Iterable[_Union[AgentStep, _Mapping]]] = ..., status: _Optional[_Union[RunStatus, str]] = ..., contexts: _Optional[_Iterable[_Union[RetrievedContext, _Mapping]]] = ...) -> None: ...

class RetrievedContext(_message.Message):
    __slots__ = ("chunk_id", "document_id", "start", "end", "text", "score")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    start: int
    end: int
    text: str
    score: float
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class StageEvent(_message.Message):
    __slots__ = ("stage", "detail")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    detail: str
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class AgentStep(_message.Message):
    __slots__ = ("index", "kind", "node", "text", "tool", "call_id", "arguments_json", "ok", "approval_id", "sub_questions")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SUB_QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: StepKind
    node: str
    text: str
    tool: str
    call_id: str
    arguments_json: str
    ok: bool
    approval_id: str
    sub_questions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[_Union[StepKind, str]] = ..., node: _Optional[str] = ..., text: _Optional[str] = ..., tool: _Optional[str] = ..., call_id: _Optional[str] = ..., arguments_json: _Optional[str] = ..., ok: bool = ..., approval_id: _Optional[str] = ..., sub_questions: _Optional[_Iterable[str]] = ...) -> None: ...

class AskEvent(_message.Message):
    __slots__ = ("stage", "sentence", "final", "step")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    stage: StageEvent
    sentence: _common_pb2.AnswerSentence
    final: AskResponse
    step: AgentStep
    def __init__(self, stage: _Optional[_Union[StageEvent, _Mapping]] = ..., sentence: _Optional[_Union[_common_pb2.AnswerSentence, _Mapping]] = ..., final: _Optional[_Union[AskResponse, _Mapping]] = ..., step: _Optional[_Union[AgentStep, _Mapping]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approval_id", "tenant_id", "run_id", "graph", "tool", "arguments_json", "requested_by", "state", "decided_by", "reason", "requested_at_ms", "decided_at_ms", "expires_at_ms")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    tenant_id: str
    run_id: str
    graph: str
    tool: str
    arguments_json: str
    requested_by: str
    state: ApprovalState
    decided_by: str
    reason: str
    requested_at_ms: int
    decided_at_ms: int
    expires_at_ms: int
    def __init__(self, approval_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., run_id: _Optional[str] = ..., graph: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ..., requested_by: _Optional[str] = ..., state: _Optional[_Union[ApprovalState, str]] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., requested_at_ms: _Optional[int] = ..., decided_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class ListPendingApprovalsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListPendingApprovalsResponse(_message.Message):
    __slots__ = ("approvals",)
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    def __init__(self, approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ...) -> None: ...

class DecideApprovalRequest(_message.Message):
    __slots__ = ("tenant_id", "approval_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    approval_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., approval_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GraphInfo(_message.Message):
    __slots__ = ("name", "description", "nodes", "edges", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    edges: _containers.RepeatedScalarFieldContainer[str]
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., edges: _Optional[_Iterable[str]] = ..., is_default: bool = ...) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs",)
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[GraphInfo]
    def __init__(self, graphs: _Optional[_Iterable[_Union[GraphInfo, _Mapping]]] = ...) -> None: ...

class ToolInfo(_message.Message):
    __slots__ = ("name", "description", "arguments_schema_json", "sensitive", "permission", "graphs", "enabled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    arguments_schema_json: str
    sensitive: bool
    permission: str
    graphs: _containers.RepeatedScalarFieldContainer[str]
    enabled: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., arguments_schema_json: _Optional[str] = ..., sensitive: bool = ..., permission: _Optional[str] = ..., graphs: _Optional[_Iterable[str]] = ..., enabled: bool = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolInfo]
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolInfo, _Mapping]]] = ...) -> None: ...

class PromptVersion(_message.Message):
    __slots__ = ("tenant_id", "name", "version", "template", "created_by", "created_at_ms", "digest")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    version: str
    template: str
    created_by: str
    created_at_ms: int
    digest: str
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., template: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class CreatePromptVersionRequest(_message.Message):
    __slots__ = ("tenant_id", "name", "template")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    template: str
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., template: _Optional[str] = ...) -> None: ...

class ListPromptVersionsRequest(_message.Message):
    __slots__ = ("tenant_id", "name")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListPromptVersionsResponse(_message.Message):
    __slots__ = ("versions", "split")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[PromptVersion]
    split: PromptSplit
    def __init__(self, versions: _Optional[_Iterable[_Union[PromptVersion, _Mapping]]] = ..., split: _Optional[_Union[PromptSplit, _Mapping]] = ...) -> None: ...

class PromptSplit(_message.Message):
    __slots__ = ("tenant_id", "name", "percent")
    class PercentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    percent: _containers.ScalarMap[str, int]
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., percent: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetPromptSplitRequest(_message.Message):
    __slots__ = ("tenant_id", "name", "percent")
    class PercentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    percent: _containers.ScalarMap[str, int]
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., percent: _Optional[_Mapping[str, int]] = ...) -> None: ...

{{- define "isthmus.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "isthmus.labels" -}}
app.kubernetes.io/part-of: isthmus
{{- with .Values.region }}
isthmus.dev/region: {{ . }}
{{- end }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "isthmus.image" -}}
{{- if .Values.image.digest -}}{{ .Values.image.repository }}@{{ .Values.image.digest }}{{- else -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}
{{- end -}}

{{/* gRPC health service name of a service (what the readiness probe asks for) */}}
{{- define "isthmus.healthName" -}}
{{- $m := dict "ingestion" "isthmus.ingestion.v1.IngestionService" "embedding" "isthmus.embedding.v1.EmbeddingService" "retrieval" "isthmus.retrieval.v1.RetrievalService" "guardrail" "isthmus.guardrail.v1.GuardrailService" "agent-orchestrator" "isthmus.agent_orchestrator.v1.AgentOrchestratorService" "evaluation" "isthmus.evaluation.v1.EvaluationService" -}}
{{- get $m . -}}
{{- end -}}

{{/* who calls whom over gRPC: callee -> callers (drives the NetworkPolicies) */}}
{{- define "isthmus.callers" -}}
{{- $m := dict "ingestion" (list "evaluation") "embedding" (list "retrieval") "retrieval" (list "ingestion" "agent-orchestrator" "evaluation") "guardrail" (list "agent-orchestrator") "agent-orchestrator" (list) "evaluation" (list) -}}
{{- toJson (get $m .) -}}
{{- end -}}

{{/* services clients may call directly (CLI, apps) */}}
{{- define "isthmus.public" -}}
{{- toJson (list "ingestion" "retrieval" "agent-orchestrator" "evaluation") -}}
{{- end -}}

{{- define "isthmus.endpoints" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- range $name, $svc := .Values.services }}{{ if $svc.enabled }}{{ $_ := set $out $name (printf "%s-%s.%s.svc:50051" (include "isthmus.name" $root) $name $root.Release.Namespace) }}{{ end }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "isthmus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "isthmus.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* env shared by every container; $ctx = dict "root" $ "settings" <service settings> */}}
{{- define "isthmus.env" -}}
{{- $root := .root -}}
- name: ISTHMUS_GRPC_HOST
  value: "0.0.0.0"
- name: ISTHMUS_GRPC_PORT
  value: "50051"
- name: ISTHMUS_METRICS_PORT
  value: "9464"
- name: ISTHMUS_DATA_DIR
  value: /data
{{- if $root.Values.otel.endpoint }}
- name: ISTHMUS_OTEL_EXPORTER
  value: otlp
- name: ISTHMUS_OTEL_ENDPOINT
  value: {{ $root.Values.otel.endpoint | quote }}
{{- end }}
{{- range $k, $v := $root.Values.settings }}
- name: ISTHMUS_{{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- range $k, $v := .settings }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- range $k, $ref := $root.Values.secretEnv }}
- name: {{ $k }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- if $root.Values.weaviate.apiKeySecretRef.name }}
- name: ISTHMUS_RETRIEVAL_WEAVIATE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.weaviate.apiKeySecretRef.name }}
      key: {{ $root.Values.weaviate.apiKeySecretRef.key }}
{{- end }}
{{- end -}}

{{/* the pod spec shared by both shapes; ctx: root, name, target, settings, resources, pvc */}}
{{- define "isthmus.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ default (printf "%s-%s" (include "isthmus.name" $root) .name) .serviceAccount }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: 45
securityContext:
  {{- include "isthmus.podSecurityContext" $root | nindent 2 }}
containers:
  - name: isthmus
    image: {{ include "isthmus.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: ["--target", {{ .target | quote }}]
    ports:
      - {name: grpc, containerPort: 50051, protocol: TCP}
      - {name: metrics, containerPort: 9464, protocol: TCP}
    env:
      {{- include "isthmus.env" (dict "root" $root "settings" .settings) | nindent 6 }}
    readinessProbe:
      grpc: {port: 50051, service: {{ .health | quote }}}
      periodSeconds: 5
      failureThreshold: 2
    livenessProbe:
      grpc: {port: 50051}
      initialDelaySeconds: 30
      periodSeconds: 10
      failureThreshold: 6
    startupProbe:
      grpc: {port: 50051}
      periodSeconds: 5
      failureThreshold: 60
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "isthmus.securityContext" $root | nindent 6 }}
    volumeMounts:
      - {name: data, mountPath: /data}
      - {name: tmp, mountPath: /tmp}
volumes:
  - name: tmp
    emptyDir: {}
  - name: data
    {{- if .pvc }}
    persistentVolumeClaim:
      claimName: {{ .pvc }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- end -}}

{{- define "isthmus.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=the image digest is a value (image.digest); dev and CI renders use a tag
checkov.io/skip2: CKV_K8S_35=secrets come from secretKeyRef env vars, the only way the settings read them
{{- with .Values.backups.bucket }}
isthmus.dev/backups-bucket: {{ . }}
{{- end }}
{{- end -}}

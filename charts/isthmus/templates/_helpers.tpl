{{/*
Names: every object is "<release>-<component>"; component = a service name (kebab-case, the same as the
`--target`, the values key, the Kafka consumer group) or "all" in AllInOne mode.
*/}}
{{- define "isthmus.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "isthmus.labels" -}}
app.kubernetes.io/name: isthmus
app.kubernetes.io/part-of: isthmus
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- with .Values.region }}
isthmus.dev/region: {{ . }}
{{- end }}
{{- end -}}

{{/* ctx: root, component */}}
{{- define "isthmus.selectorLabels" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* the services, in a stable order */}}
{{- define "isthmus.services" -}}
{{- toJson (list "agent-orchestrator" "console" "embedding" "evaluation" "guardrail" "ingestion" "retrieval") -}}
{{- end -}}

{{/* the console's HTTP port (container port and Service port "http"; ISTHMUS_CONSOLE_PORT) */}}
{{- define "isthmus.consolePort" -}}8088{{- end -}}

{{/* "true" when the console reads EdgeRollouts/FailoverDrills from the Kubernetes API: enabled, with
settings.KUBE_NAMESPACE (its ServiceAccount gets a read-only Role there and its pod an API token) */}}
{{- define "isthmus.consoleKube" -}}
{{- $cfg := get .Values.services "console" -}}
{{- if and $cfg.enabled (get (default (dict) $cfg.settings) "KUBE_NAMESPACE") }}true{{ end -}}
{{- end -}}

{{/* the console's external base URL: settings.PUBLIC_URL, else the Ingress host's (https with tls) */}}
{{- define "isthmus.consolePublicUrl" -}}
{{- $cfg := get .Values.services "console" -}}
{{- $ing := .Values.console.ingress -}}
{{- $given := get (default (dict) $cfg.settings) "PUBLIC_URL" -}}
{{- if $given -}}{{ $given }}
{{- else if and $ing.enabled $ing.host -}}{{ ternary "https" "http" (ne (toString (default (dict) $ing.tls).secretName) "") }}://{{ $ing.host }}
{{- end -}}
{{- end -}}

{{/* service -> its settings prefix, e.g. agent-orchestrator -> ISTHMUS_AGENT_ORCHESTRATOR_ */}}
{{- define "isthmus.envPrefix" -}}ISTHMUS_{{ . | upper | replace "-" "_" }}_{{- end -}}

{{- define "isthmus.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}{{ $img.repository }}@{{ $img.digest }}
{{- else if hasPrefix "sha256:" (toString $img.tag) -}}{{ $img.repository }}@{{ $img.tag }}
{{- else -}}{{ $img.repository }}:{{ $img.tag }}
{{- end -}}
{{- end -}}

{{/* gRPC health service name of a service (what its readiness probe asks for) */}}
{{- define "isthmus.healthName" -}}
{{- $m := dict
  "ingestion" "isthmus.ingestion.v1.IngestionService"
  "embedding" "isthmus.embedding.v1.EmbeddingService"
  "retrieval" "isthmus.retrieval.v1.RetrievalService"
  "guardrail" "isthmus.guardrail.v1.GuardrailService"
  "agent-orchestrator" "isthmus.agent_orchestrator.v1.AgentOrchestratorService"
  "evaluation" "isthmus.evaluation.v1.EvaluationService" -}}
{{- get $m . -}}
{{- end -}}

{{/* Who calls whom over gRPC: caller -> callees (the modules' depends_on). Drives the NetworkPolicies. */}}
{{- define "isthmus.callGraph" -}}
{{- toJson (dict
  "ingestion" (list "guardrail" "retrieval")
  "retrieval" (list "embedding")
  "agent-orchestrator" (list "embedding" "guardrail" "retrieval")
  "evaluation" (list "agent-orchestrator" "guardrail" "ingestion" "retrieval")
  "embedding" (list)
  "guardrail" (list "retrieval")
  "console" (list "agent-orchestrator" "embedding" "evaluation" "guardrail" "ingestion" "retrieval")) -}}
{{- end -}}

{{/* the callers of a service (JSON list) */}}
{{- define "isthmus.callers" -}}
{{- $svc := . -}}
{{- $out := list -}}
{{- range $caller, $callees := include "isthmus.callGraph" . | fromJson -}}
{{- if has $svc $callees }}{{ $out = append $out $caller }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* services clients call directly (CLI, apps); embedding and guardrail are internal */}}
{{- define "isthmus.public" -}}
{{- toJson (list "ingestion" "retrieval" "agent-orchestrator" "evaluation") -}}
{{- end -}}

{{/* NetworkPolicyPeers of the clients (the `ingress` values): pods labelled ingress.podSelector in
ingress.allowedNamespaces (empty = the release namespace), and ingress.cidrs */}}
{{- define "isthmus.clientPeers" -}}
{{- $in := .Values.ingress -}}
{{- if $in.allowedNamespaces }}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{- toYaml $in.allowedNamespaces | nindent 10 }}
  podSelector:
    matchLabels: {{- toYaml $in.podSelector | nindent 6 }}
{{- else }}
- podSelector:
    matchLabels: {{- toYaml $in.podSelector | nindent 6 }}
{{- end }}
{{- range $cidr := $in.cidrs }}
- ipBlock: {cidr: {{ $cidr }}}
{{- end }}
{{- end -}}

{{/* services with Kafka subscriptions (KEDA's lag trigger uses their consumer group = the name) */}}
{{- define "isthmus.consumers" -}}
{{- toJson (list "ingestion" "embedding" "retrieval" "evaluation") -}}
{{- end -}}

{{/* "true" when a service keeps state in ISTHMUS_DATA_DIR: ingestion's document registry, guardrail's
policies, retrieval's embedded store (unless it runs on Weaviate: weaviate.url set, STORE not
overriding it). ctx: root, svc */}}
{{- define "isthmus.stateful" -}}
{{- $cfg := get .root.Values.services .svc -}}
{{- if has .svc (list "ingestion" "guardrail") -}}true
{{- else if and (eq .svc "retrieval") (ne (toString (default (ternary "weaviate" "embedded" (ne .root.Values.weaviate.url "")) (get (default (dict) $cfg.settings) "STORE"))) "weaviate") -}}true
{{- end -}}
{{- end -}}

{{/* ISTHMUS_ENDPOINTS: every enabled service's Service DNS name, plus/overridden by .Values.endpoints
(not the console's: nothing calls it over gRPC, its Service serves HTTP) */}}
{{- define "isthmus.endpoints" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- range $name, $svc := .Values.services }}
{{- if and $svc.enabled (ne $name "console") }}
{{- $_ := set $out $name (printf "%s-%s.%s.svc:50051" (include "isthmus.name" $root) $name $root.Release.Namespace) }}
{{- end }}
{{- end }}
{{- toJson (merge (deepCopy .Values.endpoints) $out) -}}
{{- end -}}

{{/* a scalar setting as an env string; whole floats (YAML/JSON numbers) without an exponent */}}
{{- define "isthmus.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}{{ int64 . }}{{- else -}}{{ toString . }}{{- end -}}
{{- end -}}

{{/* the port of a URL: explicit, else the scheme's default. ctx: url, default */}}
{{- define "isthmus.urlPort" -}}
{{- $u := urlParse .url -}}
{{- $p := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $p }}{{ $p }}{{ else if eq $u.scheme "https" }}443{{ else if eq $u.scheme "http" }}{{ .default }}{{ else }}{{ .default }}{{ end -}}
{{- end -}}

{{/* an env var from an existing Secret. ctx: name, ref {existingSecret, key} */}}
{{- define "isthmus.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.existingSecret }}
      key: {{ .ref.key }}
{{- end -}}

{{/* the settings and secrets of one service. ctx: root, svc */}}
{{- define "isthmus.serviceEnv" -}}
{{- $cfg := get .root.Values.services .svc -}}
{{- $prefix := include "isthmus.envPrefix" .svc -}}
{{- range $k, $v := $cfg.settings }}
- name: {{ $prefix }}{{ $k }}
  value: {{ include "isthmus.scalar" $v | quote }}
{{- end }}
{{- range $k, $ref := $cfg.secrets }}
{{ include "isthmus.secretEnv" (dict "name" (printf "%s%s" $prefix $k) "ref" $ref) }}
{{- end }}
{{- if eq .svc "retrieval" }}
{{- with .root.Values.weaviate.url }}
{{- if not (hasKey (default (dict) $cfg.settings) "STORE") }}
- name: ISTHMUS_RETRIEVAL_STORE
  value: "weaviate"
{{- end }}
- name: ISTHMUS_RETRIEVAL_WEAVIATE_URL
  value: {{ . | quote }}
- name: ISTHMUS_RETRIEVAL_WEAVIATE_GRPC_PORT
  value: {{ $.root.Values.weaviate.grpcPort | default 50051 | toString | quote }}
- name: ISTHMUS_RETRIEVAL_WEAVIATE_COLLECTION
  value: {{ $.root.Values.weaviate.collection | default "IsthmusChunks" | quote }}
{{- end }}
{{- if .root.Values.weaviate.apiKeySecretRef.existingSecret }}
{{ include "isthmus.secretEnv" (dict "name" "ISTHMUS_RETRIEVAL_WEAVIATE_API_KEY" "ref" .root.Values.weaviate.apiKeySecretRef) }}
{{- end }}
{{- end }}
{{- if eq .svc "console" }}
{{- /* the chart owns where it listens (the pod's http port; auth is always on in the chart, so beyond
loopback is allowed) and whether it runs (the AllInOne pod's `--target all` includes it) */}}
- name: ISTHMUS_CONSOLE_ENABLED
  value: {{ ternary "true" "false" (eq $cfg.enabled true) | quote }}
- name: ISTHMUS_CONSOLE_HOST
  value: "0.0.0.0"
- name: ISTHMUS_CONSOLE_PORT
  value: {{ include "isthmus.consolePort" . | quote }}
{{- if not (hasKey (default (dict) $cfg.settings) "PUBLIC_URL") }}
{{- with include "isthmus.consolePublicUrl" .root }}
- name: ISTHMUS_CONSOLE_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* where the access file is mounted (ISTHMUS_ACCESS_FILE = <dir>/access.toml) */}}
{{- define "isthmus.accessDir" -}}/etc/isthmus/access{{- end -}}

{{/* the ConfigMap holding access.toml: access.existingConfigMap (the operator's), else <release>-access */}}
{{- define "isthmus.accessConfigMap" -}}
{{- default (printf "%s-access" (include "isthmus.name" .)) .Values.access.existingConfigMap -}}
{{- end -}}

{{/* the authentication env of every pod (isthmus_core.settings [common] auth*, access_file) */}}
{{- define "isthmus.authEnv" -}}
{{- $a := .Values.auth -}}
- name: ISTHMUS_AUTH
  value: {{ $a.mode | quote }}
- name: ISTHMUS_AUTH_AUDIENCE
  value: {{ $a.audience | quote }}
{{- if eq $a.mode "oidc" }}
- name: ISTHMUS_AUTH_ISSUER
  value: {{ required "auth.issuer is required with auth.mode oidc: the issuer URL of your identity provider, exactly as in the tokens' iss claim (or auth.mode local, AllInOne only)" $a.issuer | quote }}
- name: ISTHMUS_AUTH_JWKS_URL
  value: {{ $a.jwksUrl | quote }}
- name: ISTHMUS_AUTH_ALGORITHMS
  value: {{ toJson $a.algorithms | quote }}
- name: ISTHMUS_AUTH_GROUPS_CLAIM
  value: {{ $a.groupsClaim | quote }}
{{- with $a.serviceClient }}
{{- if .tokenUrl }}
- name: ISTHMUS_AUTH_SERVICE_TOKEN_URL
  value: {{ .tokenUrl | quote }}
- name: ISTHMUS_AUTH_SERVICE_CLIENT_ID
  value: {{ .clientId | quote }}
- name: ISTHMUS_AUTH_SERVICE_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .clientSecretRef.name }}
      key: {{ .clientSecretRef.key }}
{{- end }}
{{- end }}
{{- end }}
- name: ISTHMUS_ACCESS_FILE
  value: {{ include "isthmus.accessDir" . }}/access.toml
{{- end -}}

{{/* a TOML list of bindings [{principal, role}] on one line (strings as JSON strings: valid TOML) */}}
{{- define "isthmus.tomlBindings" -}}
[{{ range $i, $b := . }}{{ if $i }}, {{ end }}{ principal = {{ $b.principal | toJson }}, role = {{ $b.role | toJson }} }{{ end }}]
{{- end -}}

{{/* access.toml (the access file format of isthmus_core.auth.access_file) from access.bindings/tenants */}}
{{- define "isthmus.accessToml" -}}
{{- $acc := .Values.access -}}
# rendered by the isthmus chart from the values access.bindings and access.tenants
[platform]
bindings = {{ include "isthmus.tomlBindings" (default (list) $acc.bindings) }}
{{- range $tenant, $cfg := $acc.tenants }}

[tenants.{{ $tenant | toJson }}]
bindings = {{ include "isthmus.tomlBindings" (default (list) $cfg.bindings) }}
{{- with $cfg.quota }}

[tenants.{{ $tenant | toJson }}.quota]
{{- with .requestsPerS }}
requests_per_s = { {{- range $i, $family := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ $family | toJson }} = {{ include "isthmus.scalar" (get $cfg.quota.requestsPerS $family) }}{{ end }} }
{{- end }}
{{- if hasKey . "maxDocuments" }}
max_documents = {{ include "isthmus.scalar" .maxDocuments }}
{{- end }}
{{- if hasKey . "maxBytes" }}
max_bytes = {{ include "isthmus.scalar" .maxBytes }}
{{- end }}
{{- if hasKey . "llmTokensPerDay" }}
llm_tokens_per_day = {{ include "isthmus.scalar" .llmTokensPerDay }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* "true" when model bundles are mounted (modelBundles.existingClaim or .hostPath) */}}
{{- define "isthmus.modelBundles" -}}
{{- if or .Values.modelBundles.existingClaim .Values.modelBundles.hostPath }}true{{ end -}}
{{- end -}}

{{/* env of a container. ctx: root, services (the services this process runs), distributed (bool),
quotaReplicas (the replicas sharing each tenant's request rates) */}}
{{- define "isthmus.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: ISTHMUS_GRPC_HOST
  value: "0.0.0.0"
- name: ISTHMUS_GRPC_PORT
  value: "50051"
- name: ISTHMUS_METRICS_PORT
  value: "9464"
- name: ISTHMUS_METRICS_AUTH
  value: {{ $v.metrics.auth | quote }}
- name: ISTHMUS_DATA_DIR
  value: /data
# the model bundle an EdgeRollout put on this pod ("" without the annotation: the bundled models)
- name: ISTHMUS_MODEL_BUNDLE
  valueFrom:
    fieldRef:
      fieldPath: metadata.annotations['isthmus.dev/model-bundle']
{{- if include "isthmus.modelBundles" $root }}
- name: ISTHMUS_MODEL_BUNDLES_DIR
  value: /models/bundles
{{- end }}
- name: ISTHMUS_SHUTDOWN_DRAIN_DELAY_S
  value: {{ include "isthmus.scalar" $v.shutdown.drainDelaySeconds | quote }}
- name: ISTHMUS_SHUTDOWN_GRACE_S
  value: {{ include "isthmus.scalar" $v.shutdown.graceSeconds | quote }}
{{- if .distributed }}
- name: ISTHMUS_BUS
  value: kafka
- name: ISTHMUS_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: ISTHMUS_KAFKA_REPLICATION_FACTOR
  value: {{ include "isthmus.scalar" $v.kafka.replicationFactor | quote }}
- name: ISTHMUS_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- with $v.kafka.sasl.mechanism }}
- name: ISTHMUS_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- end }}
{{- if eq $v.kafka.sasl.mechanism "AWS_MSK_IAM" }}
- name: ISTHMUS_KAFKA_AWS_REGION
  value: {{ $v.region | quote }}
{{- else if $v.kafka.sasl.mechanism }}
- name: ISTHMUS_KAFKA_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
{{ include "isthmus.secretEnv" (dict "name" "ISTHMUS_KAFKA_SASL_PASSWORD" "ref" $v.kafka.sasl.passwordSecretRef) }}
{{- end }}
{{- if $v.kafka.tls.caSecretRef.existingSecret }}
- name: ISTHMUS_KAFKA_SSL_CAFILE
  value: /etc/isthmus/kafka-ca/ca.pem
{{- end }}
- name: ISTHMUS_ENDPOINTS
  value: {{ include "isthmus.endpoints" $root | quote }}
{{- else }}
- name: ISTHMUS_BUS
  value: inprocess
{{- end }}
{{- if $v.otel.endpoint }}
- name: ISTHMUS_OTEL_EXPORTER
  value: otlp
- name: ISTHMUS_OTEL_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
{{- else }}
- name: ISTHMUS_OTEL_EXPORTER
  value: none
{{- end }}
{{ include "isthmus.authEnv" $root }}
- name: ISTHMUS_QUOTA_REPLICAS
  value: {{ include "isthmus.scalar" .quotaReplicas | quote }}
{{- range $k, $val := $v.settings }}
- name: ISTHMUS_{{ $k }}
  value: {{ include "isthmus.scalar" $val | quote }}
{{- end }}
{{- range $svc := .services }}
{{- include "isthmus.serviceEnv" (dict "root" $root "svc" $svc) }}
{{- end }}
{{- end -}}

{{- define "isthmus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "isthmus.securityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* pod template metadata. ctx: root, component */}}
{{- define "isthmus.podMetadata" -}}
{{- $v := .root.Values -}}
labels:
  {{- include "isthmus.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with $v.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  {{- if $v.metrics.podAnnotations }}
  prometheus.io/scrape: "true"
  prometheus.io/port: "9464"
  prometheus.io/path: /metrics
  {{- end }}
  {{- with $v.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The pod spec shared by both shapes.
ctx: root, component, target, services (whose settings it gets), distributed, resources, pvc,
     health (gRPC health service name for readiness; "" = overall), serviceAccount, spread (bool),
     quotaReplicas, console (bool: the pod serves the console's http port), httpProbes (bool: probes on
     the console's /healthz and /readyz instead of gRPC health), kubeToken (bool: a ServiceAccount token
     for the Kubernetes API, the console's EdgeRollout/FailoverDrill reads) */}}
{{- define "isthmus.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $v.shutdown.terminationGracePeriodSeconds }}
securityContext:
  {{- include "isthmus.podSecurityContext" $root | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .spread }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "isthmus.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
{{- end }}
containers:
  - name: isthmus
    image: {{ include "isthmus.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: ["--target", {{ .target | quote }}]
    ports:
      - {name: grpc, containerPort: 50051, protocol: TCP}
      - {name: metrics, containerPort: 9464, protocol: TCP}
      {{- if .console }}
      - {name: http, containerPort: {{ include "isthmus.consolePort" . }}, protocol: TCP}
      {{- end }}
    env:
      {{- include "isthmus.env" (dict "root" $root "services" .services "distributed" .distributed "quotaReplicas" .quotaReplicas) | nindent 6 }}
    {{- if .httpProbes }}
    # the console's own HTTP endpoints: /healthz answers while the process runs, /readyz only while the
    # services it calls answer SERVING (down: out of the Service); a dependency down restarts nothing
    startupProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 5
      failureThreshold: 60
    readinessProbe:
      httpGet: {path: /readyz, port: http}
      periodSeconds: 5
      failureThreshold: 2
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 6
    {{- else }}
    # native gRPC probes against the standard health service: the process reports NOT_SERVING while it
    # starts and while it drains (shutdown.drainDelaySeconds), so readiness drops it before it stops;
    # readiness also follows its dependencies (down: out of the Service), while startup and liveness ask
    # the process's own entry (isthmus.Liveness): a dependency down restarts nothing
    startupProbe:
      grpc: {port: 50051, service: isthmus.Liveness}
      periodSeconds: 5
      failureThreshold: 60
    readinessProbe:
      grpc: {port: 50051, service: {{ .health | quote }}}
      periodSeconds: 5
      failureThreshold: 2
    livenessProbe:
      grpc: {port: 50051, service: isthmus.Liveness}
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 6
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "isthmus.securityContext" $root | nindent 6 }}
    volumeMounts:
      - {name: data, mountPath: /data}
      - {name: tmp, mountPath: /tmp}
      - {name: access, mountPath: {{ include "isthmus.accessDir" $root }}, readOnly: true}
      {{- if and .distributed $v.kafka.tls.caSecretRef.existingSecret }}
      - {name: kafka-ca, mountPath: /etc/isthmus/kafka-ca, readOnly: true}
      {{- end }}
      {{- if include "isthmus.modelBundles" $root }}
      - {name: model-bundles, mountPath: /models/bundles, readOnly: true}
      {{- end }}
      {{- if .kubeToken }}
      - {name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 1Gi}
  # the access file (role bindings, quotas): a whole-ConfigMap mount (not subPath), so edits reach the
  # running pods, which re-read the file when it changes
  - name: access
    configMap:
      name: {{ include "isthmus.accessConfigMap" $root }}
      items: [{key: access.toml, path: access.toml}]
  {{- if and .distributed $v.kafka.tls.caSecretRef.existingSecret }}
  - name: kafka-ca
    secret:
      secretName: {{ $v.kafka.tls.caSecretRef.existingSecret }}
      items: [{key: {{ $v.kafka.tls.caSecretRef.key | quote }}, path: ca.pem}]
  {{- end }}
  {{- with $v.modelBundles.existingClaim }}
  - name: model-bundles
    persistentVolumeClaim:
      claimName: {{ . }}
      readOnly: true
  {{- end }}
  {{- with $v.modelBundles.hostPath }}
  - name: model-bundles
    hostPath:
      path: {{ . }}
      type: Directory
  {{- end }}
  {{- if .kubeToken }}
  # what automounting would give (the ServiceAccount's token, the cluster CA, the namespace), here only:
  # the console's in-cluster client reads EdgeRollouts/FailoverDrills with it (a read-only Role)
  - name: kube-api-access
    projected:
      sources:
        - serviceAccountToken: {path: token, expirationSeconds: 3607}
        - configMap:
            name: kube-root-ca.crt
            items: [{key: ca.crt, path: ca.crt}]
        - downwardAPI:
            items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]
  {{- end }}
  - name: data
    {{- if .pvc }}
    persistentVolumeClaim:
      claimName: {{ .pvc }}
    {{- else }}
    emptyDir: {sizeLimit: 1Gi}
    {{- end }}
{{- end -}}

{{/* a PVC for embedded state. ctx: root, name, component */}}
{{- define "isthmus.pvc" -}}
{{- $v := .root.Values -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "isthmus.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- if or $v.persistence.keep $v.backups.bucket }}
  annotations:
    {{- if $v.persistence.keep }}
    helm.sh/resource-policy: keep
    {{- end }}
    {{- with $v.backups.bucket }}
    isthmus.dev/backups-bucket: {{ . }}
    {{- end }}
  {{- end }}
spec:
  accessModes: ["ReadWriteOnce"]
  {{- with $v.persistence.storageClassName }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $v.persistence.size }}
{{- end -}}

{{/* a ServiceAccount. ctx: root, name, component, sa ({create, annotations}) */}}
{{- define "isthmus.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "isthmus.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- with .sa.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{/* a Service (gRPC + metrics). ctx: root, name, component, spec ({type, nodePort}) */}}
{{- define "isthmus.service" -}}
{{- $type := default "ClusterIP" .spec.type -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "isthmus.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: {{ $type }}
  selector:
    {{- include "isthmus.selectorLabels" (dict "root" .root "component" .component) | nindent 4 }}
  ports:
    - name: grpc
      port: 50051
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
      {{- if and (eq $type "NodePort") .spec.nodePort }}
      nodePort: {{ .spec.nodePort }}
      {{- end }}
    - {name: metrics, port: 9464, targetPort: metrics, protocol: TCP}
{{- end -}}

{{/* the console's Service <release>-console (http; metrics too when it is the console's own pod, the
AllInOne pod's are scraped through <release>-all). ctx: root, component, metrics (bool) */}}
{{- define "isthmus.consoleService" -}}
{{- $spec := default (dict) .root.Values.console.service -}}
{{- $type := default "ClusterIP" $spec.type -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "isthmus.name" .root }}-console
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "isthmus.labels" .root | nindent 4 }}
    app.kubernetes.io/component: console
spec:
  type: {{ $type }}
  selector:
    {{- include "isthmus.selectorLabels" (dict "root" .root "component" .component) | nindent 4 }}
  ports:
    - name: http
      port: {{ include "isthmus.consolePort" . }}
      targetPort: http
      protocol: TCP
      appProtocol: http
      {{- if and (eq $type "NodePort") $spec.nodePort }}
      nodePort: {{ $spec.nodePort }}
      {{- end }}
    {{- if .metrics }}
    - {name: metrics, port: 9464, targetPort: metrics, protocol: TCP}
    {{- end }}
{{- end -}}

{{/* a PodDisruptionBudget: node drains take one pod at a time. ctx: root, name, component */}}
{{- define "isthmus.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "isthmus.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "isthmus.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end -}}

{{/* Deployment annotations: the checkov checks this chart skips, each with its reason */}}
{{- define "isthmus.workloadAnnotations" -}}
checkov.io/skip1: CKV_K8S_43=the image digest is a value (image.digest, or a sha256 tag) set per release; renders without one use the release tag
checkov.io/skip2: CKV_K8S_35=the settings are read from environment variables only; secrets come in by secretKeyRef, never as values
{{- with .Values.backups.bucket }}
isthmus.dev/backups-bucket: {{ . }}
{{- end }}
{{- end -}}

{{/* Render-time checks the JSON schema cannot express; each fails with a message naming the value. */}}
{{- define "isthmus.validate" -}}
{{- $root := . -}}
{{- $v := .Values -}}
{{- $s := $v.shutdown -}}
{{- if lt (float64 $s.terminationGracePeriodSeconds) (addf $s.drainDelaySeconds $s.graceSeconds 5) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must be at least drainDelaySeconds + graceSeconds + 5 (%v): Kubernetes would kill pods mid-drain" $s.terminationGracePeriodSeconds (addf $s.drainDelaySeconds $s.graceSeconds 5)) -}}
{{- end -}}
{{- $a := $v.auth -}}
{{- if and (eq $a.mode "local") (eq $v.deploymentMode "Distributed") -}}
{{- fail "auth.mode local signs tokens with a key in each pod's own data dir, so the services of a Distributed install would not accept each other's tokens: use auth.mode oidc with your identity provider (auth.issuer)" -}}
{{- end -}}
{{- if and (eq $a.mode "oidc") $a.serviceClient.tokenUrl (or (not $a.serviceClient.clientId) (not $a.serviceClient.clientSecretRef.name) (not $a.serviceClient.clientSecretRef.key)) -}}
{{- fail "auth.serviceClient.tokenUrl needs auth.serviceClient.clientId and auth.serviceClient.clientSecretRef (name and key of an existing Secret)" -}}
{{- end -}}
{{- $console := get $v.services "console" -}}
{{- if $console.enabled -}}
{{- if and (eq $a.mode "oidc") (not (get (default (dict) $console.settings) "OIDC_CLIENT_ID")) -}}
{{- fail "services.console with auth.mode oidc needs services.console.settings.OIDC_CLIENT_ID: register the console at your identity provider as an OAuth2 client (authorization code + PKCE, redirect URI <PUBLIC_URL>/auth/callback; PUBLIC_URL defaults to the console Ingress's https://<host>), and give a confidential client's secret in services.console.secrets.OIDC_CLIENT_SECRET" -}}
{{- end -}}
{{- if and (eq $a.mode "oidc") (not (include "isthmus.consolePublicUrl" $root)) -}}
{{- fail "services.console with auth.mode oidc needs its external URL for the login redirect: services.console.settings.PUBLIC_URL, or console.ingress (enabled, host)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.console.ingress.enabled (not $console.enabled) -}}
{{- fail "console.ingress.enabled needs services.console.enabled" -}}
{{- end -}}
{{- if and $v.console.ingress.enabled (not $v.console.ingress.host) -}}
{{- fail "console.ingress.enabled needs console.ingress.host (the console's DNS name)" -}}
{{- end -}}
{{- if and $v.access.existingConfigMap (or $v.access.bindings $v.access.tenants) -}}
{{- fail (printf "access.existingConfigMap (%s) and access.bindings/access.tenants are exclusive: the bindings come from that ConfigMap (the operator renders it from the Tenant objects)" $v.access.existingConfigMap) -}}
{{- end -}}
{{- if eq $v.deploymentMode "Distributed" -}}
{{- $k := $v.kafka -}}
{{- $sasl := hasPrefix "SASL_" $k.securityProtocol -}}
{{- if and $sasl (not $k.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM)" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.sasl.mechanism (not $sasl) -}}
{{- fail (printf "kafka.sasl.mechanism %s needs kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT, not %s" $k.sasl.mechanism $k.securityProtocol) -}}
{{- end -}}
{{- if eq $k.sasl.mechanism "AWS_MSK_IAM" -}}
{{- if ne $k.securityProtocol "SASL_SSL" -}}
{{- fail "kafka.sasl.mechanism AWS_MSK_IAM needs kafka.securityProtocol SASL_SSL (MSK's IAM listener is TLS)" -}}
{{- end -}}
{{- if not $v.region -}}
{{- fail "kafka.sasl.mechanism AWS_MSK_IAM needs region (the MSK cluster's AWS region)" -}}
{{- end -}}
{{- else if and $k.sasl.mechanism (or (not $k.sasl.username) (not $k.sasl.passwordSecretRef.existingSecret) (not $k.sasl.passwordSecretRef.key)) -}}
{{- fail (printf "kafka.sasl.mechanism %s needs kafka.sasl.username and kafka.sasl.passwordSecretRef (existingSecret and key)" $k.sasl.mechanism) -}}
{{- end -}}
{{- if and $k.tls.caSecretRef.existingSecret (not (has $k.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.tls.caSecretRef needs kafka.securityProtocol SSL or SASL_SSL, not %s" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.tls.caSecretRef.existingSecret (not $k.tls.caSecretRef.key) -}}
{{- fail "kafka.tls.caSecretRef needs a key (the Secret key holding the PEM bundle)" -}}
{{- end -}}
{{- $graph := include "isthmus.callGraph" . | fromJson -}}
{{- range $svc, $cfg := $v.services -}}
{{- $a := default (dict) $cfg.autoscaling -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "services.%s.autoscaling: minReplicas (%v) must not exceed maxReplicas (%v)" $svc $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if and $cfg.enabled (include "isthmus.stateful" (dict "root" $root "svc" $svc)) (or (gt (int $cfg.replicas) 1) (and $a.enabled (gt (int $a.maxReplicas) 1))) -}}
{{- fail (printf "services.%s keeps its state on a ReadWriteOnce volume (ingestion: document registry, guardrail: policies, retrieval: embedded store): replicas must be 0 or 1 and autoscaling at most 1 replica — scaling it out needs the shared stores (Weaviate, planned)" $svc) -}}
{{- end -}}
{{- if $cfg.enabled -}}
{{- range $callee := get $graph $svc -}}
{{- if not (or (get $v.services $callee).enabled (hasKey $v.endpoints $callee)) -}}
{{- fail (printf "services.%s is enabled and calls %s, which is disabled: enable services.%s or give its address in endpoints.%s" $svc $callee $callee $callee) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

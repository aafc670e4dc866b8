{{- /* How many worker Pods (workers.replicas; 0 when unset, e.g. values of a release made by a
chart without workers, upgraded with --reuse-values). 0: the operator transfers in-process. */ -}}
{{- define "pinsync.workers" -}}
{{- (.Values.workers | default dict).replicas | default 0 | int -}}
{{- end }}

{{- /* What the operator needs to publish shards for workers: an order (ConfigMap) and a claim
(Lease) per shard, in each StorageBackend's namespace; withdrawn once rolled up. */ -}}
{{- define "pinsync.shardRules" }}
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [create, list, get, delete, deletecollection]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create, list, get, delete, deletecollection]
{{- end }}

{{- /* What a worker needs, and nothing more: read a shard's order (ConfigMap); claim, renew and
report in its Lease; read the StorageBackend and its credentials Secret. It never writes a
StorageBackend, a Secret or a ConfigMap, nor lists or watches Secrets. */ -}}
{{- define "pinsync.workerRules" }}
  - apiGroups: [pinsync.io]
    resources: [storagebackends]
    verbs: [get]
  - apiGroups: [""]
    resources: [secrets, configmaps]
    verbs: [get]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [list, get, update]
{{- end }}

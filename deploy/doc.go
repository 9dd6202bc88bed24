// Package deploy holds the files that run calpresence outside a developer's
// shell: Kubernetes manifests (kubernetes/base, one replica with the bbolt
// state file; kubernetes/postgres-replicas, two replicas sharing the state in
// PostgreSQL), Compose files (compose.yaml, one container; compose-replicas.yaml,
// two replicas and PostgreSQL), a Helm chart of both Kubernetes variants
// (helm/calpresence), a hardened systemd unit, Prometheus alert rules
// (prometheus/alerts.yaml) and a Grafana dashboard (grafana/calpresence.json).
// docs/operations.md is their runbook.
//
// There is no code here: the package's test parses every file and checks
// that it agrees with the binary — the listen port, the configuration and
// state paths, the shutdown grace, the image's user, the metrics the alerts
// and the dashboard name — and that the example configurations load as written.
package deploy

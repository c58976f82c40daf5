#!/usr/bin/env bash
# With NODES=1, `make run` and `make run-clusters` run the example's CronJob
# (config/samples/ingest-pipeline-cronjob.yaml) as real Jobs on the node: its
# image becomes the busybox every node has (no registry is reachable here),
# and it fires every minute instead of every five, so Jobs are soon seen.
#
#   hack/sample-on-node.sh KUBECONFIG
set -euo pipefail
kubeconfig=${1:?usage: hack/sample-on-node.sh KUBECONFIG}
kubectl=$(cat "$(dirname "$kubeconfig")/bin-dir")/kubectl
container=/spec/jobTemplate/spec/template/spec/containers/0
KUBECONFIG=$kubeconfig "$kubectl" -n pipeline patch cronjob ingest-pipeline --type json -p "[
  {\"op\": \"replace\", \"path\": \"/spec/schedule\", \"value\": \"* * * * *\"},
  {\"op\": \"replace\", \"path\": \"$container/image\", \"value\": \"berth.local/busybox:dev\"},
  {\"op\": \"add\", \"path\": \"$container/imagePullPolicy\", \"value\": \"Never\"}
]" >/dev/null

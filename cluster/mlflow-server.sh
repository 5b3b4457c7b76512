#!/usr/bin/env bash
# An MLflow tracking server for ms2l runs: PostgreSQL for runs and metrics, an object store (or a
# shared filesystem) for artifacts, proxied by the server (--serve-artifacts) so that Ray workers
# need no bucket credentials: only the server holds them.
#
#   pip install "mlflow>=3.0" psycopg2-binary boto3         # google-cloud-storage for gs://
#   export MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@db.internal:5432/mlflow
#   read -rs PGPASSWORD && export PGPASSWORD    # read by libpq; never put the password in the URI
#   export MLFLOW_ARTIFACTS_DESTINATION=s3://your-bucket/mlflow   # gs://... or /mnt/shared/mlflow
#   cluster/mlflow-server.sh                  # http://127.0.0.1:5000, this machine only
#   cluster/mlflow-server.sh --host 10.0.0.5 --allowed-hosts 10.0.0.5:5000   # opt-in: the private network
#   cluster/mlflow-server.sh --dry-run        # print the command instead of running it
#
# Safe default: the server listens on 127.0.0.1 only; reach it from a laptop with
# `ssh -L 5000:127.0.0.1:5000 <server>`. Ray workers on other nodes must reach it too, which needs an
# explicit --host on a private interface (a security group / firewall limiting port 5000 to the
# cluster) and --allowed-hosts; --host 0.0.0.0 additionally needs --i-know-this-is-public. For
# usernames and passwords add --app-name basic-auth (clients then read MLFLOW_TRACKING_USERNAME and
# MLFLOW_TRACKING_PASSWORD from their environment).
set -euo pipefail

host=127.0.0.1
port=5000
allowed_hosts=""
public=0
dry_run=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --allowed-hosts) allowed_hosts="$2"; shift 2 ;;
    --i-know-this-is-public) public=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    *) extra+=("$1"); shift ;;
  esac
done

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://mlflow@db.internal:5432/mlflow}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. s3://your-bucket/mlflow}"
if [[ "$MLFLOW_BACKEND_STORE_URI" =~ ://[^/@]*:[^/@]*@ ]]; then
  echo "mlflow-server.sh: MLFLOW_BACKEND_STORE_URI holds a password; drop it and export PGPASSWORD instead" >&2
  exit 2
fi

case "$host" in
  127.0.0.1|localhost|::1) ;;
  0.0.0.0|::)
    if [[ $public -ne 1 ]]; then
      echo "mlflow-server.sh: --host $host listens on every interface; pass --i-know-this-is-public too," >&2
      echo "  or bind a private interface (--host 10.x.y.z) behind a firewall" >&2
      exit 2
    fi ;&
  *)
    if [[ -z "$allowed_hosts" ]]; then
      echo "mlflow-server.sh: --host $host needs --allowed-hosts (the host:port names clients use)" >&2
      exit 2
    fi ;;
esac

cmd=(mlflow server
     --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
     --serve-artifacts
     --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
     --host "$host" --port "$port")
if [[ -n "$allowed_hosts" ]]; then
  cmd+=(--allowed-hosts "$allowed_hosts")
fi
cmd+=("${extra[@]}")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"

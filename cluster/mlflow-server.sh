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
#   cluster/mlflow-server.sh --host 10.0.0.5 --allowed-hosts 10.0.0.5:5000 --app-name basic-auth
#   cluster/mlflow-server.sh --dry-run        # print the command instead of running it
#
# Safe default: the server listens on 127.0.0.1 only; reach it from a laptop with
# `ssh -L 5000:127.0.0.1:5000 <server>`. Ray workers on other nodes must reach it too, which needs an
# explicit --host on a private interface (a security group / firewall limiting port 5000 to the
# cluster), --allowed-hosts and authentication (--app-name basic-auth: clients then read
# MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from their environment); --host 0.0.0.0 (or ::)
# additionally needs --i-know-this-is-public.
#
# The script parses every argument itself and hands mlflow only the host and port it checked: an option
# it does not know is refused (exit 2) rather than passed on, so no spelling (--host=0.0.0.0, -h 0,
# -h0, --gunicorn-opts "--bind 0.0.0.0:5000", MLFLOW_UVICORN_OPTS=...) gets around the bind check.
set -euo pipefail

die() { echo "mlflow-server.sh: $*" >&2; exit 2; }

host=127.0.0.1
port=5000
allowed_hosts=""
app_name=""
public=0
dry_run=0
extra=()

# "--opt value", "--opt=value" and, for short options, "-o value" / "-ovalue"; sets $value and $used.
take() {
  local opt=$1 short=$2 arg=$3 next=${4-}
  used=0
  if [[ "$arg" == "$opt" || ( -n "$short" && "$arg" == "$short" ) ]]; then
    [[ $# -ge 4 ]] || die "$arg needs a value"
    value=$next; used=2
  elif [[ "$arg" == "$opt="* ]]; then
    value=${arg#"$opt="}; used=1
  elif [[ -n "$short" && "$arg" == "$short"?* ]]; then
    value=${arg#"$short"}; used=1
  fi
  return 0
}

while [[ $# -gt 0 ]]; do
  arg=$1
  case "$arg" in
    --i-know-this-is-public) public=1; shift; continue ;;
    --dry-run) dry_run=1; shift; continue ;;
    --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --workers|-w|--static-prefix|--cors-allowed-origins|--x-frame-options|--expose-prometheus)
      [[ $# -ge 2 ]] || die "$arg needs a value"
      extra+=("$arg" "$2"); shift 2; continue ;;
    --workers=*|-w?*|--static-prefix=*|--cors-allowed-origins=*|--x-frame-options=*|--expose-prometheus=*)
      extra+=("$arg"); shift; continue ;;
  esac
  take --host -h "$@"
  if [[ $used -gt 0 ]]; then host=$value; shift "$used"; continue; fi
  take --port -p "$@"
  if [[ $used -gt 0 ]]; then port=$value; shift "$used"; continue; fi
  take --allowed-hosts "" "$@"
  if [[ $used -gt 0 ]]; then allowed_hosts=$value; shift "$used"; continue; fi
  take --app-name "" "$@"
  if [[ $used -gt 0 ]]; then app_name=$value; shift "$used"; continue; fi
  case "$arg" in
    --gunicorn-opts*|--uvicorn-opts*|--waitress-opts*)
      die "${arg%%=*} is refused: its server options can bind other addresses (--bind, --host, --listen)" ;;
    *) die "unknown option '$arg' (this script passes mlflow only the options it checks; see its header)" ;;
  esac
done

for var in MLFLOW_GUNICORN_OPTS MLFLOW_UVICORN_OPTS; do
  if [[ -n "${!var-}" ]]; then
    die "$var is set; unset it (its server options can bind other addresses than --host)"
  fi
done

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://mlflow@db.internal:5432/mlflow}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION, e.g. s3://your-bucket/mlflow}"
if [[ "$MLFLOW_BACKEND_STORE_URI" =~ ://[^/@]*:[^/@]*@ ]]; then
  die "MLFLOW_BACKEND_STORE_URI holds a password; drop it and export PGPASSWORD instead"
fi

[[ "$port" =~ ^[1-9][0-9]{0,4}$ && "$port" -le 65535 ]] || die "--port '$port': expected a port number 1-65535"

# The host, classified from its spelling alone: loopback, every interface, or one specific address.
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])'
bare=${host#[}; bare=${bare%]}
if [[ "$host" == localhost || "$bare" == ::1 || "$bare" =~ ^127(\.$octet){3}$ ]]; then
  kind=loopback
elif [[ "$bare" == 0.0.0.0 || ( "$bare" == *:* && "$bare" =~ ^[0:]+$ ) ]]; then
  kind=every
elif [[ "$bare" =~ ^$octet(\.$octet){3}$ || ( "$bare" == *:* && "$bare" =~ ^[0-9A-Fa-f:]+$ ) ]]; then
  kind=one
else
  die "--host '$host': expected an IP address (127.0.0.1, 10.0.0.5, ::1): a name or a short form such as 0 may mean every interface"
fi

if [[ $kind != loopback ]]; then
  if [[ $kind == every && $public -ne 1 ]]; then
    die "--host $host listens on every interface; pass --i-know-this-is-public too, or bind a private interface (--host 10.x.y.z) behind a firewall"
  fi
  [[ -n "$allowed_hosts" ]] || die "--host $host needs --allowed-hosts (the host:port names clients use)"
  [[ -n "$app_name" ]] || die "--host $host needs authentication: add --app-name basic-auth (clients send MLFLOW_TRACKING_USERNAME/PASSWORD)"
fi

cmd=(mlflow server
     --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"
     --serve-artifacts
     --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"
     --host "$host" --port "$port")
if [[ -n "$allowed_hosts" ]]; then
  cmd+=(--allowed-hosts "$allowed_hosts")
fi
if [[ -n "$app_name" ]]; then
  cmd+=(--app-name "$app_name")
fi
cmd+=("${extra[@]}")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"

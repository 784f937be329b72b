#!/usr/bin/env bash
# Command of Prefect flow-run pods (Kubernetes work pool, see prefect.yaml): run the flow run
# as a Ray Job on the KubeRay cluster rather than in this pod. The job's driver runs on the Ray
# head in the same image, where Ray sets RAY_ADDRESS, so the flow's Ray Data / Ray Train work
# spreads over the cluster's workers, and this pod only follows the job's logs.
#
#   RAY_JOBS_ADDRESS      the cluster's dashboard URL, e.g. http://vjepa-head-svc:8265
#   PREFECT__FLOW_RUN_ID  set by the Prefect worker; passed on with PREFECT_API_URL
#
# Arguments replace the job's command (default: prefect flow-run execute). The exit code is
# the job's (1 if it failed); when the pod is stopped (a cancelled flow run) the job is stopped.
set -euo pipefail

: "${RAY_JOBS_ADDRESS:?set RAY_JOBS_ADDRESS to the Ray dashboard URL (http://HEAD-SVC:8265)}"
: "${PREFECT__FLOW_RUN_ID:?PREFECT__FLOW_RUN_ID is not set: run this from a Prefect worker}"
if [ "$#" -eq 0 ]; then
    set -- prefect flow-run execute
fi

# A retried pod must not collide with the submission of a crashed one.
submission_id="prefect-${PREFECT__FLOW_RUN_ID}-$(date +%s)"
runtime_env=$(python -c '
import json, os
names = ("PREFECT__FLOW_RUN_ID", "PREFECT_API_URL")
print(json.dumps({"env_vars": {n: os.environ[n] for n in names if os.environ.get(n)}}))
')

ray job submit --address "$RAY_JOBS_ADDRESS" --submission-id "$submission_id" \
    --runtime-env-json "$runtime_env" -- "$@" &
child=$!

stop_job() {
    echo "stopping Ray job $submission_id" >&2
    ray job stop --address "$RAY_JOBS_ADDRESS" --no-wait "$submission_id" || true
    kill -TERM "$child" 2>/dev/null || true
    exit 143
}
trap stop_job TERM INT

wait "$child"

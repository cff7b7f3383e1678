#!/bin/sh
# The worker image's entrypoint (deployments/Dockerfile): export orca's state environment
# (runtime.state: Prefect's home and result storage, the MLflow store, under $ORCA_HOME),
# which must be in place before Prefect is imported, then run the command. Values already
# set in the environment (PREFECT_API_URL, MLFLOW_TRACKING_URI, ...) win.
set -eu
eval "$(python -c '
import os, shlex
from runtime.state import activate
for key in activate().environment():
    print(f"export {key}={shlex.quote(os.environ[key])}")
')"
exec "$@"

#!/usr/bin/env bash
# Run partseg's whole test suite: the linter (ruff, configured in ruff.toml), then pytest. DDS stays on
# loopback: discovery limited to localhost, a Fast DDS profile bound to 127.0.0.1, and a domain id of its own.
#
# Without arguments: `ruff check` over the code (its findings are printed as ruff writes them), then the
# whole pytest suite, which runs even when the lint fails so that one run shows both; the command fails if
# either does. With arguments: pytest on just those (files, -k ...), without the lint, so targeted runs stay
# fast; lint alone with `.venv/bin/ruff check`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PARTSEG_VENV:-$PWD/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE=$PWD/config/fastdds_localhost.xml
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
if [ $# -gt 0 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi

LINT_PATHS=(partseg_ros test benchmarks scripts launch setup.py)
lint=0
if [ -x "$VENV/bin/ruff" ]; then
  echo "==> ruff check ${LINT_PATHS[*]}"
  "$VENV/bin/ruff" check "${LINT_PATHS[@]}" || lint=$?
else
  echo "ruff is not installed in $VENV: run bash scripts/setup.sh" >&2
  lint=1
fi
tests=0
# The slowest tests are listed so the suite can be kept near five minutes.
"$VENV/bin/python" -m pytest test --durations=15 || tests=$?
if [ "$lint" -ne 0 ]; then
  echo "FAILED: ruff check found problems (listed before the tests)" >&2
fi
if [ "$tests" -ne 0 ]; then exit "$tests"; fi
exit "$lint"

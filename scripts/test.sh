#!/usr/bin/env bash
# Run partseg's whole test suite. DDS stays on loopback: discovery limited to
# localhost, a Fast DDS profile bound to 127.0.0.1, and a domain id of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PARTSEG_VENV:-$PWD/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE=$PWD/config/fastdds_localhost.xml
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# With arguments, run just those (files, -k ...); without, the whole suite.
if [ $# -eq 0 ]; then set -- test; fi
exec "$VENV/bin/python" -m pytest "$@"

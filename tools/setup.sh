#!/usr/bin/env bash
# Idempotent set-up: .venv (Python 3.11) with the pinned wheels, the cmake path fix, colcon build.
# A second run checks stamps and rebuilds incrementally: it takes seconds and reinstalls nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
VENV=$ROOT/.venv
LOCK=requirements/lock.txt
say() { printf '[setup] %s\n' "$*"; }

# 1. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null || { echo "[setup] $PY not found: install Python 3.11" >&2; exit 1; }
  say "creating .venv with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
touch "$VENV/COLCON_IGNORE"   # the venv holds package.xml files colcon must not crawl

# 2. Pinned Python dependencies (only when the lock file changed).
lock_hash=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ "$(cat "$VENV/.lock-installed" 2>/dev/null)" != "$lock_hash" ]; then
  say "installing pinned dependencies (first run: about 2-3 minutes)"
  mkdir -p log
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$LOCK" \
      > log/pip-install.out 2>&1; then
    grep -v '^WARNING: Location' log/pip-install.out | tail -40 >&2
    echo "[setup] pip install failed (log/pip-install.out)" >&2
    exit 1
  fi
  echo "$lock_hash" > "$VENV/.lock-installed"
  rm -f "$VENV/.cmake-fixed"
fi

# 3. The ROS wheels were built elsewhere: their exported cmake files name the build machine's
#    Python and numpy include dirs. Point them at this interpreter's (DESIGN.md section 3).
if [ ! -f "$VENV/.cmake-fixed" ]; then
  "$VENV/bin/python" tools/fix_cmake_paths.py "$VENV"
  touch "$VENV/.cmake-fixed"
  rm -rf build/vlmad_ros   # numpy may have changed: regenerate the messages against it
fi

# 4. Upstream launch / launch_ros / launch_testing / message_filters wheels (not on PyPI), when a
#    ros-wheels folder sits beside the repo: $VLMAD_ROS_WHEELS, else ../shared/ros-wheels from the
#    repo root, else from the main checkout (this one is a git worktree). Without it the tests
#    that need them skip, saying why. Reinstalled only when its checksums or the lock change.
WHEELS=${VLMAD_ROS_WHEELS:-$ROOT/../shared/ros-wheels}
if [ -z "${VLMAD_ROS_WHEELS:-}" ] && [ ! -d "$WHEELS" ]; then
  common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  [ -n "$common" ] && WHEELS=$(dirname "$common")/../shared/ros-wheels
fi
if [ -f "$WHEELS/install.sh" ] && [ -f "$WHEELS/SHA256SUMS" ]; then
  wheels_hash=$(cat "$WHEELS/SHA256SUMS" "$VENV/.lock-installed" | sha256sum | cut -d' ' -f1)
  site=$(echo "$VENV"/lib/python3*/site-packages)
  if [ "$(cat "$VENV/.ros-wheels-installed" 2>/dev/null)" != "$wheels_hash" ] ||
     ! compgen -G "$site/launch_ros-*.dist-info" >/dev/null ||
     ! compgen -G "$site/message_filters-*.dist-info" >/dev/null; then
    say "installing launch, launch_ros, launch_testing, message_filters from $WHEELS"
    mkdir -p log
    if ! bash "$WHEELS/install.sh" "$VENV" --offline > log/ros-wheels-install.out 2>&1; then
      cat log/ros-wheels-install.out >&2
      echo "[setup] installing the ros-wheels failed (log/ros-wheels-install.out)" >&2
      exit 1
    fi
    echo "$wheels_hash" > "$VENV/.ros-wheels-installed"
  fi
elif [ -n "${VLMAD_ROS_WHEELS:-}" ]; then
  echo "[setup] VLMAD_ROS_WHEELS=$VLMAD_ROS_WHEELS holds no install.sh + SHA256SUMS" >&2
  exit 1
fi

# 5. xmllint for the package.xml test (Debian's libxml2-utils; no wheel exists).
if ! command -v xmllint >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing xmllint (libxml2-utils)"
  (apt-get install -y -qq libxml2-utils >/dev/null 2>&1 ||
   { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libxml2-utils >/dev/null 2>&1; }) ||
   say "could not install libxml2-utils; the xmllint test will skip"
fi

# 6. colcon build. CMake refuses exported include dirs inside the source tree, and .venv (numpy's
#    headers) is inside the repo, so colcon sees the package through a link under build/.
#    test/carla_msgs (TEST ONLY: the carla_msgs interfaces the CARLA tests need; not a dependency
#    of vlmad_ros, never installed by a user's workspace: test/COLCON_IGNORE) builds beside it.
mkdir -p build/src log
ln -sfn ../.. build/src/vlmad_ros
ln -sfn ../../test/carla_msgs build/src/carla_msgs
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
export PATH=$VENV/bin:$PATH
say "colcon build"
exec 9>build/.build.lock
flock 9   # several shells may run make setup at once
if ! "$VENV/bin/colcon" --log-base log build --paths build/src/vlmad_ros build/src/carla_msgs --build-base build \
    --install-base install --event-handlers console_direct+ \
    > log/colcon-build.out 2>&1; then
  cat log/colcon-build.out >&2
  echo "[setup] colcon build failed (full log above)" >&2
  exit 1
fi
say "ready: . ./env.sh"

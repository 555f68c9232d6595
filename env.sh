# Source me: `. ./env.sh` (after `make setup`). Puts the venv, ROS 2 (from PyPI) and the
# colcon install of vlmad_ros on the paths, as `source install/setup.bash` would with a ROS distro.
_vlmad_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
if [ ! -x "$_vlmad_root/.venv/bin/python" ] || [ ! -d "$_vlmad_root/install/vlmad_ros" ]; then
  echo "env.sh: run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
. "$_vlmad_root/.venv/bin/activate"
_vlmad_site=$_vlmad_root/install/vlmad_ros/lib/python3.11/site-packages
_vlmad_venv_site=$_vlmad_root/.venv/lib/python3.11/site-packages
export AMENT_PREFIX_PATH=$_vlmad_root/install/vlmad_ros:$_vlmad_root/.venv
export CMAKE_PREFIX_PATH=$AMENT_PREFIX_PATH
export PYTHONPATH=$_vlmad_site${PYTHONPATH:+:$PYTHONPATH}
# The libraries the ROS wheels' bootstrapper would otherwise set by re-executing Python.
export LD_LIBRARY_PATH=$_vlmad_root/install/vlmad_ros/lib:$_vlmad_root/.venv/lib$(for d in "$_vlmad_venv_site"/ros_*.libs; do [ -d "$d" ] && printf ':%s' "$d"; done)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
# TEST ONLY: the carla_msgs subset test/carla_msgs builds for the CARLA tests (tools/setup.sh).
_carla=$_vlmad_root/install/carla_msgs
if [ -d "$_carla" ]; then
  export AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH:$_carla CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH:$_carla
  export PYTHONPATH=$PYTHONPATH:$_carla/lib/python3.11/site-packages
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$_carla/lib
fi
export PATH=$_vlmad_root/install/vlmad_ros/lib/vlmad_ros:$PATH
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# The repo root holds the source vlmad_ros/ (no generated messages); never let the current
# directory shadow the installed package (python -c / -m from the repo root).
export PYTHONSAFEPATH=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset _vlmad_site _vlmad_venv_site _vlmad_root _carla

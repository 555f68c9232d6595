"""
Default topic names and frames (docs/DESIGN.md section 4).

Two spellings of each name. The constants (ODOM = '/odom', ...) are bag topics: what a stack in
the root namespace records, and what the bag reader and writers use. Nodes default to the
relative form (`relative(ODOM)` = 'odom'), so `--ros-args -r __ns:=/car1` moves a whole stack
to /car1/odom, /car1/vlmad/plan, ... and two cars share one graph without colliding. TF, the
clock and diagnostics stay global (absolute) in every namespace.
"""
from vlmad_ros.rig import CAMERA_NAMES


def camera_image_topic(camera: str) -> str:
    """nuScenes-style compressed image topic of a camera channel (bag name)."""
    return f'/{camera}/image_rect_compressed'


def camera_info_topic(camera: str) -> str:
    """Return the CameraInfo topic of a camera channel (bag name)."""
    return f'/{camera}/camera_info'


def relative(topic: str) -> str:
    """Return a node's default for a bag topic: relative, so the node's namespace applies to it."""
    return topic.lstrip('/')


def camera_optical_frame(camera: str) -> str:
    """REP 103 optical frame of a camera (z forward, x right, y down)."""
    return f'{camera.lower()}_optical_frame'


CAMERA_IMAGE_TOPICS = tuple(camera_image_topic(c) for c in CAMERA_NAMES)
CAMERA_INFO_TOPICS = tuple(camera_info_topic(c) for c in CAMERA_NAMES)
ODOM = '/odom'
PLAN = '/vlmad/plan'
PLAN_MARKERS = '/vlmad/plan_markers'
COMMAND = '/vlmad/command'
CMD_VEL = '/cmd_vel'
REASONING = '/vlmad/reasoning'
EXPLANATION = '/vlmad/explanation'            # planner_node explain: the student's labels
OBJECTS = '/vlmad/ground_truth/objects'        # GroundTruthObjectArray in base_link
TRAFFIC_LIGHTS = '/vlmad/ground_truth/traffic_lights'
KEYFRAME = '/vlmad/keyframe'
PLAN_ACK = '/vlmad/follower/plan_ack'          # path_follower ack_plans (sim lockstep)
SIM_PLANNER_ODOM = '/vlmad/sim/planner_odom'   # sim_node: the planner's own odometry copy
SIM_RESULT = '/vlmad/sim/result'
# Global in every namespace.
TF = '/tf'
TF_STATIC = '/tf_static'
CLOCK = '/clock'
DIAGNOSTICS = '/diagnostics'

# REP 105: map -> odom -> base_link. The synthetic world's odometry is exact, so map -> odom
# is the identity (published static).
MAP_FRAME = 'map'
ODOM_FRAME = 'odom'
BASE_FRAME = 'base_link'

# Planner output: 6 waypoints, 0.5 s apart (3 s), as in nuScenes planning papers.
PLAN_STEPS = 6
PLAN_DT = 0.5

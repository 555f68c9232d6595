"""Default topic names and frames (all remappable). DESIGN.md section 4."""
from vlmad_ros.rig import CAMERA_NAMES


def camera_image_topic(camera: str) -> str:
    """nuScenes-style compressed image topic of a camera channel."""
    return f'/{camera}/image_rect_compressed'


def camera_info_topic(camera: str) -> str:
    return f'/{camera}/camera_info'


def camera_optical_frame(camera: str) -> str:
    """REP 103 optical frame of a camera (z forward, x right, y down)."""
    return f'{camera.lower()}_optical_frame'


CAMERA_IMAGE_TOPICS = tuple(camera_image_topic(c) for c in CAMERA_NAMES)
CAMERA_INFO_TOPICS = tuple(camera_info_topic(c) for c in CAMERA_NAMES)
ODOM = '/odom'
PLAN = '/vlmad/plan'
COMMAND = '/vlmad/command'
REASONING = '/vlmad/reasoning'
EXPLANATION = '/vlmad/explanation'            # planner_node explain: the student's labels
OBJECTS = '/vlmad/ground_truth/objects'        # GroundTruthObjectArray in base_link
TRAFFIC_LIGHTS = '/vlmad/ground_truth/traffic_lights'
KEYFRAME = '/vlmad/keyframe'
TF = '/tf'
TF_STATIC = '/tf_static'
CLOCK = '/clock'
DIAGNOSTICS = '/diagnostics'

MAP_FRAME = 'map'
ODOM_FRAME = 'odom'
BASE_FRAME = 'base_link'

# Planner output: 6 waypoints, 0.5 s apart (3 s), as in nuScenes planning papers.
PLAN_STEPS = 6
PLAN_DT = 0.5

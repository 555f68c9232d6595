"""The planner model: config, encoders, plan decoder, baseline, loss and checkpoints."""
from vlmad_ros.model.checkpoint import (  # noqa: F401
    CheckpointError, default_checkpoint, has_action_head, load_action_head, load_checkpoint,
    save_checkpoint)
from vlmad_ros.model.config import PlannerConfig  # noqa: F401
from vlmad_ros.model.planner_model import (  # noqa: F401
    build_model, EgoMLPPlanner, PlannerModel, planning_loss)

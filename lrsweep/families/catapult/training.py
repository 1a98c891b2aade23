"""What seed 003 adds to training (imported on demand, with jax): the single-point task."""

from lrsweep import registry
from lrsweep.families.catapult import tasks

registry.register_task(tasks.TASK)

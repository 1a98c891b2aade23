"""What seed 004 adds to training (imported on demand, with jax): the power-law random-feature task."""

from lrsweep import registry
from lrsweep.families.schedules import task

registry.register_task(task.TASK)

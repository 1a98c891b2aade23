"""Tasks: the base types (:mod:`lrsweep.core.tasks.base`) and the tasks more than one paper uses.

``linear_teacher`` (seed 000, and seed 002's regression) and ``classification`` (seed 003, and seed
002's logistic heads) register here; a family's own task registers in its package.
"""

from lrsweep import registry
from lrsweep.core.tasks import classification, linear_teacher
from lrsweep.core.tasks.base import (KEY_SLOTS, STEP_KEY_SALT, TASKS, StepContext, Task, TaskSpec, fixed_set_batch,
                                     make_instance, mask_weights, step_context)

for _task in (linear_teacher.TASK, classification.TASK):
    registry.register_task(_task)

__all__ = ["KEY_SLOTS", "STEP_KEY_SALT", "TASKS", "StepContext", "Task", "TaskSpec", "fixed_set_batch",
           "make_instance", "mask_weights", "step_context"]

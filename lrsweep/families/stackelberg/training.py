"""What seed 002 adds to training (imported on demand, with jax): the head rules as a step hook and the
body's metrics (:mod:`.metrics` registers them)."""

from lrsweep import registry
from lrsweep.families.stackelberg import heads, metrics  # noqa: F401  (metrics registers phi_sharpness, body_sketch)

registry.register_step_hook("head", heads.HOOK)

"""lerobot plugin entry: importing this registers the `vla` policy with lerobot.

- ``policies.configuration_vla`` registers the config type ``vla`` (``--policy.type=vla``).
- ``policies.processor_vla`` registers the processor steps (``vla_input_check``, ``vla_tokenizer``)
  that ``lerobot-eval --policy.path=<checkpoint>`` looks up when it loads the saved processors.

lerobot derives the policy class by naming convention from the config's module:
``policies.modeling_vla.VLAPolicy`` and ``policies.processor_vla.make_vla_pre_post_processors``.
"""

import policies.processor_vla  # noqa: F401  (registers the processor steps)
from policies.configuration_vla import VLAConfig  # noqa: F401  (registers "vla")

__all__ = ["VLAConfig"]

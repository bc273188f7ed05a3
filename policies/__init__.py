"""The `vla` policy in lerobot's plugin layout.

- ``configuration_vla``: ``VLAConfig`` (registered as lerobot policy type ``vla``)
- ``modeling_vla``: ``VLAPolicy`` (lerobot ``PreTrainedPolicy``) and the ``VLAModel`` network
- ``processor_vla``: ``make_vla_pre_post_processors`` (validation, resize, tokenize, normalise)
- ``backbone``: SigLIP tower + Llama/Qwen2 decoder (layer loop with in-LM token selection)
- ``action_heads``: flow-matching and L1 chunk heads
- ``tokenizer``: the hub-free instruction tokenizer

Modules are imported explicitly (nothing here), so ``import policies`` stays cheap.
"""

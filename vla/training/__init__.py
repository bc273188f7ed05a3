"""`vla train` internals: settings (config checks), data (dataset, frame cache, step-indexed order),
build (policy, freezing, optimizer, schedule), checkpointing (atomic folders + `last`), loop."""

"""Training loop, distributed helpers, optimisers and schedules, checkpointing, logging."""

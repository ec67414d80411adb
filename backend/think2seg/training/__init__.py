"""Mask-only GRPO training of the reasoner (method.md): rewards from the final SAM2 mask and the answer's form.

`rewards` are plain TRL-style reward functions; `grpo` builds the dataset and TRL's `GRPOTrainer` and
saves a folder that `Reasoner.from_pretrained` loads.
"""

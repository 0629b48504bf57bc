"""Build the SFT set from approved drafts, train LoRA adapters on it, and look at the results.

A record's last steps: ``build`` (examples, split, formats, manifest) -> ``train`` (TRL SFTTrainer + PEFT)
-> ``evaluate`` / ``plots``. ``pipeline`` chains build and train after a generation batch.
"""

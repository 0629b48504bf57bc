"""Generation: restructure records for training, render prompts, run a backend, check and keep drafts."""

"""Training-loop plumbing shared by tasks: the trial session and the DDP/DeepSpeed strategy."""

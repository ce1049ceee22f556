"""The federated side (TFF only here): LearningProcess per architecture, round loop, checkpoints."""

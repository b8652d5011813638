"""The replay experiment's arms: each is the recipe's replay settings with a few overridden."""

# arm -> the replay settings it overrides (the others are the recipe's)
PAPER_SAMPLING = {"replay_selection": "sample", "replay_temperature": 0.1, "replay_standardize_scores": False}
METHODS = {
    "none": {"replay_strategy": "masked"},
    "random": {"replay_strategy": "random"},
    "ground_truth": {"replay_strategy": "ground_truth"},
    "predicted": {"replay_strategy": "predicted"},
    "online": {"replay_strategy": "online"},
    "mir": {"replay_strategy": "mir"},
    "ground_truth_max": {"replay_strategy": "ground_truth", "replay_selection": "max"},
    "predicted_max": {"replay_strategy": "predicted", "replay_selection": "max"},
    "online_max": {"replay_strategy": "online", "replay_selection": "max"},
    # the paper's sampling: softmax(f / 0.1) over the raw row (the recipe's T acts on standardised scores)
    "ground_truth_paper": {"replay_strategy": "ground_truth", **PAPER_SAMPLING},
    "predicted_paper": {"replay_strategy": "predicted", **PAPER_SAMPLING},
    "online_paper": {"replay_strategy": "online", **PAPER_SAMPLING},
}
ARM_SETTINGS = ("replay_strategy", "replay_selection", "replay_temperature", "replay_standardize_scores")

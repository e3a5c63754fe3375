"""Independent judges: tone, reading grade, length, similarity to an axis's poles, fluency.
Used by calibration (fitting) and evaluation; they never read the model's edits."""

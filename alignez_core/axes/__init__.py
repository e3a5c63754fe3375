"""Stage 2, axes: what an axis is (two poles in words), its per-layer subspaces, and the pack
file that holds a fitted axis (safetensors + JSON); the shipped pre-fitted packs."""

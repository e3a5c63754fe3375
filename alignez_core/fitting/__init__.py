"""Stage 4, fitting: the model writes its own answers at both poles (`pairs`), their hidden
states give each layer's direction (`fit`), and the slider's clean edge is measured
(`calibrate`)."""

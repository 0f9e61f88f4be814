"""Front-ends: audio to model input, as a model's front-end spec says."""

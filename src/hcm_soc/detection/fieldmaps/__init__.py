"""Data tables of the hcm-soc Sigma pipeline: which Sigma log source is which of our datasets,
and which Sigma field name is which ECS field (`sources.py`). Kept apart from the code that
applies them (`hcm_soc.detection.pipeline`) so that adding a source is a table edit."""

"""Zero-shot Grounded-SAM: instruction phrases -> open-vocabulary detector boxes -> SAM masks."""

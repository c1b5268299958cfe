"""PISA-style part grounder over RGB-D object crops, trained from scratch on generated data."""

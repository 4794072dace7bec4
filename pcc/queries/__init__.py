"""Queries on compiled circuits: sampling, conditional sampling, MPE, marginals and conditionals."""
